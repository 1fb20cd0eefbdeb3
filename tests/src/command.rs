//! Running command-line tools (`dfs`, `minicluster`) from tests and checking their output
//! contract: exit code 0 on success; on failure exit 1 with exactly one stderr line
//! starting with `NAME: `, and never a panic message.
//!
//! The assertions panic with the whole command, exit status, stdout and stderr, because a
//! failed integration test is only as useful as what it prints.

use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};

use crate::error::{Error, Result};

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub command: String,
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr (lossily decoded).
    pub stderr: String,
}

/// Runs `cmd` with `args` to completion, feeding it `stdin` (or nothing).
///
/// # Errors
/// [`Error::Io`] if the program cannot be started or its stdin written.
pub fn run(mut cmd: Command, args: &[&str], stdin: Option<&[u8]>) -> Result<CmdOutput> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let name = program.rsplit('/').next().unwrap_or(&program).to_owned();
    let command =
        std::iter::once(name).chain(args.iter().map(|a| a.to_string())).collect::<Vec<_>>();
    let command = command.join(" ");
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(Error::io(format!("cannot run {command}")))?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Write from another thread: the child may fill its stdout pipe before reading all
        // of stdin, and we only drain stdout in wait_with_output.
        let bytes = bytes.to_vec();
        let writer = std::thread::spawn(move || pipe.write_all(&bytes));
        let out = child.wait_with_output().map_err(Error::io(format!("cannot run {command}")))?;
        let _ = writer.join();
        return Ok(CmdOutput::new(command, out));
    }
    let out = child.wait_with_output().map_err(Error::io(format!("cannot run {command}")))?;
    Ok(CmdOutput::new(command, out))
}

impl CmdOutput {
    fn new(command: String, out: std::process::Output) -> CmdOutput {
        CmdOutput {
            command,
            status: out.status,
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Stdout as text (lossily decoded).
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        let mut stdout = self.stdout_str();
        if stdout.len() > 4000 {
            // Binary output decodes to multi-byte replacement characters: cut on a boundary.
            let end = (0..=4000).rev().find(|&i| stdout.is_char_boundary(i)).unwrap_or(0);
            stdout.truncate(end);
            stdout.push_str("...");
        }
        format!(
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, stdout, self.stderr
        )
    }

    /// Asserts the command succeeded; returns `self` for chaining.
    ///
    /// # Panics
    /// If the exit code is not 0 or stderr mentions a panic.
    #[track_caller]
    pub fn assert_ok(&self) -> &CmdOutput {
        assert!(self.status.success(), "expected success: {}", self.describe());
        assert!(!self.stderr.contains("panicked"), "panic on stderr: {}", self.describe());
        self
    }

    /// Asserts the command failed with exit `code`, without panicking, and (for code 1)
    /// with exactly one stderr line starting with `prefix` (`"dfs: "`). Returns that line
    /// (or all of stderr for other codes).
    ///
    /// # Panics
    /// If any of those does not hold.
    #[track_caller]
    pub fn assert_fails(&self, code: i32, prefix: &str) -> String {
        assert_eq!(self.code(), Some(code), "unexpected exit code: {}", self.describe());
        assert!(!self.stderr.contains("panicked"), "panic on stderr: {}", self.describe());
        if code != 1 {
            // Usage errors (exit 2) print clap's usage text: several lines by design.
            return self.stderr.clone();
        }
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected one stderr line: {}", self.describe());
        assert!(
            lines[0].starts_with(prefix),
            "stderr should start with {prefix:?}: {}",
            self.describe()
        );
        lines[0].to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> CmdOutput {
        run(Command::new("/bin/sh"), &["-c", script], None).unwrap()
    }

    #[test]
    fn captures_and_checks_output() {
        let out = sh("echo out; echo 'sh: no such thing' >&2; exit 1");
        assert_eq!(out.stdout_str(), "out\n");
        assert_eq!(out.assert_fails(1, "sh: "), "sh: no such thing");
        sh("true").assert_ok();
    }

    #[test]
    #[should_panic(expected = "expected one stderr line")]
    fn multi_line_errors_are_rejected() {
        sh("printf 'sh: a\\nb\\n' >&2; exit 1").assert_fails(1, "sh: ");
    }

    #[test]
    fn describe_cuts_long_binary_output() {
        let mut out = sh("true");
        out.stdout = vec![0xff; 10_000];
        assert!(out.describe().contains("..."));
    }

    #[test]
    fn feeds_stdin() {
        let data = vec![b'x'; 1 << 20];
        let out = run(Command::new("cat"), &[], Some(&data)).unwrap();
        assert_eq!(out.assert_ok().stdout.len(), 1 << 20);
    }
}
