//! Server processes of a mini cluster as the operating system sees them: finding the
//! binaries, spawning one with its log and address file, signalling it, and telling
//! whether it is running, stopped or gone (from `/proc`).
//!
//! [`crate::cluster`] decides *what* to start; this module knows *how*. Every process gets
//! its own process group, so a Ctrl-C aimed at the terminal's foreground job (say, the
//! `minicluster up` that started it) does not reach it; a process started for a test also
//! asks the kernel to SIGKILL it when the test's thread dies, so a test killed half-way
//! leaves nothing behind.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::spec::ProcessSpec;

/// Environment variable naming the directory of the server binaries.
pub const BIN_DIR_ENV: &str = "MINICLUSTER_BIN_DIR";

/// Binaries the harness starts or hands to tests.
pub const BINARIES: [&str; 3] = ["master", "chunkserver", "dfs"];

/// Lines of a process's log quoted in errors.
const TAIL_LINES: usize = 20;
/// Start of the line [`spawn`] writes to the log before each start.
const BANNER: &str = "==== minicluster: starting";

/// Finds the directory holding `master`, `chunkserver` and `dfs`.
///
/// `MINICLUSTER_BIN_DIR` if set; otherwise the directory of the running executable, or its
/// parent (test executables live in `target/<profile>/deps/`, the binaries one level up).
///
/// # Errors
/// [`Error::BinaryNotFound`] naming the first missing binary and the directory searched.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        let dir = PathBuf::from(dir);
        check_binaries(&dir)?;
        return Ok(dir);
    }
    let exe = std::env::current_exe().map_err(Error::io("cannot find the running executable"))?;
    let here = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if check_binaries(&here).is_ok() {
        return Ok(here);
    }
    match here.parent() {
        Some(up) if here.ends_with("deps") || check_binaries(up).is_ok() => {
            check_binaries(up)?;
            Ok(up.to_path_buf())
        }
        _ => check_binaries(&here).map(|()| here),
    }
}

/// Binaries a cluster with MapReduce also needs.
pub const MAPREDUCE_BINARIES: [&str; 4] = ["coordinator", "worker", "mapred", "mapred-examples"];

/// Checks that the MapReduce binaries are in `dir`.
///
/// # Errors
/// [`Error::BinaryNotFound`] naming the first missing one.
pub fn check_mapreduce_binaries(dir: &Path) -> Result<()> {
    for name in MAPREDUCE_BINARIES {
        if !dir.join(name).is_file() {
            return Err(Error::BinaryNotFound { name: name.to_owned(), dir: dir.to_path_buf() });
        }
    }
    Ok(())
}

fn check_binaries(dir: &Path) -> Result<()> {
    for name in BINARIES {
        if !dir.join(name).is_file() {
            return Err(Error::BinaryNotFound { name: name.to_owned(), dir: dir.to_path_buf() });
        }
    }
    Ok(())
}

/// Starts `spec.program` with `args`, stdout and stderr appended to `spec.log`.
///
/// Removes a stale address file first, so that [`wait_for_addr_file`] only ever sees the
/// new process's address. With `die_with_parent`, the kernel kills the process when the
/// thread that started it exits (`PR_SET_PDEATHSIG`).
///
/// # Errors
/// [`Error::Io`] if the log cannot be opened or the program cannot be executed.
pub fn spawn(spec: &ProcessSpec, args: &[String], die_with_parent: bool) -> Result<Child> {
    match fs::remove_file(&spec.addr_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("cannot remove {}", spec.addr_file.display()))(e)),
    }
    for dir in
        [spec.log.parent(), spec.addr_file.parent(), Some(spec.dir.as_path())].into_iter().flatten()
    {
        fs::create_dir_all(dir).map_err(Error::io(format!("cannot create {}", dir.display())))?;
    }
    let open_log = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(Error::io(format!("cannot open {}", spec.log.display())))
    };
    let mut log = open_log()?;
    // Logs are appended to across restarts; a banner tells the incarnations apart.
    writeln!(log, "{BANNER} {} {}", spec.program.display(), args.join(" "))
        .map_err(Error::io(format!("cannot write {}", spec.log.display())))?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(args).stdin(Stdio::null()).stdout(open_log()?).stderr(log).process_group(0);
    // Logs are files people read with less and tests quote: no colour escapes.
    cmd.env("NO_COLOR", "1");
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        cmd.env("RUST_BACKTRACE", "1");
    }
    if die_with_parent {
        // SAFETY: the closure runs in the forked child before exec and only makes the
        // prctl system call, which is async-signal-safe; it touches no locks or allocator.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
    }
    cmd.spawn().map_err(Error::io(format!(
        "cannot start {} ({})",
        spec.name,
        spec.program.display()
    )))
}

/// Waits until `child` has written its address file, and returns the address in it.
///
/// # Errors
/// [`Error::Exited`] if the process exits first, [`Error::NotListening`] after `timeout`;
/// both quote the end of its log.
pub async fn wait_for_addr_file(
    spec: &ProcessSpec,
    child: &mut Child,
    timeout: Duration,
) -> Result<String> {
    let start = Instant::now();
    loop {
        // The file is written to a temporary name and renamed, so it is never half-written.
        if let Ok(text) = fs::read_to_string(&spec.addr_file) {
            let addr = text.trim();
            if !addr.is_empty() {
                return Ok(addr.to_owned());
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Exited {
                name: spec.name.clone(),
                status: status.to_string(),
                reason: exit_reason(&log_tail(&spec.log, TAIL_LINES)),
                log: spec.log.clone(),
                tail: log_tail(&spec.log, TAIL_LINES),
            });
        }
        if start.elapsed() > timeout {
            return Err(Error::NotListening {
                name: spec.name.clone(),
                addr_file: spec.addr_file.clone(),
                secs: timeout.as_secs(),
                log: spec.log.clone(),
                tail: log_tail(&spec.log, TAIL_LINES),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The one line of a log tail that says why the process stopped, for an error message
/// that fits on one line: of what it printed since it was last started, its last
/// `NAME: error: ...` line (how every server binary reports a failed start), `error: ...`
/// line (clap's, for a bad flag) or panic message, else its last line.
pub fn exit_reason(tail: &str) -> String {
    let since_start = match tail.rfind(BANNER) {
        Some(i) => tail[i..].split_once('\n').map_or("", |(_, rest)| rest),
        None => tail,
    };
    let lines: Vec<&str> = since_start.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let why = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("error:") || l.contains(": error:") || l.contains("panicked at"))
        .or(lines.last());
    why.map_or_else(|| "it printed nothing".to_owned(), |l| (*l).to_owned())
}

/// The last `lines` lines of a log file (empty if it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    // Only the end matters, and logs of long tests can be large.
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a process is doing, as far as the harness can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    /// Alive and scheduled.
    Running,
    /// Frozen by SIGSTOP.
    Stopped,
    /// Gone (or a zombie, or its pid now belongs to another program).
    Exited,
}

impl std::fmt::Display for ProcessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProcessState::Running => "up",
            ProcessState::Stopped => "stopped",
            ProcessState::Exited => "dead",
        })
    }
}

/// Reads a process's state from `/proc`.
///
/// The pid only counts as `spec`'s process if its command line names `spec`'s address
/// file: a pid recorded in `cluster.json` may have been reused by an unrelated program.
pub fn probe(spec: &ProcessSpec) -> ProcessState {
    if spec.pid == 0 || !is_ours(spec) {
        return ProcessState::Exited;
    }
    let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", spec.pid)) else {
        return ProcessState::Exited;
    };
    // The format is "pid (comm) S ..."; comm may itself contain spaces and parentheses.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    match state {
        Some('T' | 't') => ProcessState::Stopped,
        Some('Z' | 'X' | 'x') | None => ProcessState::Exited,
        Some(_) => ProcessState::Running,
    }
}

fn is_ours(spec: &ProcessSpec) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{}/cmdline", spec.pid)) else {
        return false;
    };
    let want = spec.addr_file.as_os_str().as_encoded_bytes();
    cmdline.split(|&b| b == 0).any(|arg| arg == want)
}

/// Sends `sig` to `spec`'s process if it is still that process.
///
/// Returns whether a signal was sent (false if the process is already gone).
///
/// # Errors
/// [`Error::Signal`] if the kernel refuses the signal (for example, permissions).
pub fn send_signal(spec: &ProcessSpec, sig: Signal) -> Result<bool> {
    if probe(spec) == ProcessState::Exited {
        return Ok(false);
    }
    let pid = i32::try_from(spec.pid).map_err(|_| Error::Signal {
        name: spec.name.clone(),
        pid: spec.pid,
        signal: sig.to_string(),
        source: nix::Error::EINVAL,
    })?;
    match signal::kill(Pid::from_raw(pid), sig) {
        Ok(()) => Ok(true),
        Err(nix::Error::ESRCH) => Ok(false),
        Err(source) => Err(Error::Signal {
            name: spec.name.clone(),
            pid: spec.pid,
            signal: sig.to_string(),
            source,
        }),
    }
}

/// Polls until `spec`'s process is gone or `timeout` passes; returns whether it is gone.
pub fn wait_gone(spec: &ProcessSpec, timeout: Duration) -> bool {
    let start = Instant::now();
    while probe(spec) != ProcessState::Exited {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Role;

    fn sleeper(dir: &Path) -> ProcessSpec {
        ProcessSpec {
            name: "sleeper".into(),
            role: Role::Chunkserver,
            addr: String::new(),
            pid: 0,
            rack: None,
            dir: dir.join("data"),
            log: dir.join("logs/sleeper.log"),
            addr_file: dir.join("run/sleeper.addr"),
            program: "/bin/sh".into(),
            args: vec![],
        }
    }

    #[tokio::test]
    async fn spawn_signal_and_probe() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = sleeper(dir.path());
        // `sh -c SCRIPT ADDR_FILE`: the address file is in the command line, as `probe` wants.
        let script = "echo hello; echo 127.0.0.1:7 > \"$0\"; sleep 30";
        let args = vec!["-c".to_owned(), script.to_owned(), spec.addr_file.display().to_string()];
        let mut child = spawn(&spec, &args, true).unwrap();
        spec.pid = child.id();
        let addr = wait_for_addr_file(&spec, &mut child, Duration::from_secs(10)).await.unwrap();
        assert_eq!(addr, "127.0.0.1:7");
        assert!(log_tail(&spec.log, 5).contains("hello"));
        assert_eq!(probe(&spec), ProcessState::Running);
        assert!(send_signal(&spec, Signal::SIGSTOP).unwrap());
        let start = Instant::now();
        while probe(&spec) != ProcessState::Stopped && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(probe(&spec), ProcessState::Stopped);
        assert!(send_signal(&spec, Signal::SIGCONT).unwrap());
        assert!(send_signal(&spec, Signal::SIGKILL).unwrap());
        child.wait().unwrap();
        assert_eq!(probe(&spec), ProcessState::Exited);
        assert!(!send_signal(&spec, Signal::SIGKILL).unwrap());
        // A recorded pid that now runs something else is not ours.
        let other = ProcessSpec { pid: std::process::id(), ..spec.clone() };
        assert_eq!(probe(&other), ProcessState::Exited);
    }

    #[tokio::test]
    async fn exit_before_listening_quotes_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let spec = sleeper(dir.path());
        let args = vec!["-c".to_owned(), "echo boom: bad flag >&2; exit 3".to_owned()];
        let mut child = spawn(&spec, &args, true).unwrap();
        let err = wait_for_addr_file(&spec, &mut child, Duration::from_secs(10)).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("exited") && msg.contains("boom: bad flag"), "{msg}");
    }

    #[test]
    fn the_reason_is_the_error_line_of_the_last_start() {
        let tail = "==== minicluster: starting /bin/master --dir d\n\
                    master: error: old failure\n\
                    ==== minicluster: starting /bin/master --dir d\n\
                    2024-01-01T00:00:00Z  INFO recovering\n\
                    master: error: d/log/seg-1.log at offset 0: record checksum mismatch\n\
                    \n";
        assert_eq!(
            exit_reason(tail),
            "master: error: d/log/seg-1.log at offset 0: record checksum mismatch"
        );
        assert_eq!(exit_reason("line one\nlast words\n"), "last words");
        let clap = "error: unexpected argument '--nope' found\n\nUsage: master [OPTIONS]\n\n\
                    For more information, try '--help'.\n";
        assert_eq!(exit_reason(clap), "error: unexpected argument '--nope' found");
        assert_eq!(exit_reason("==== minicluster: starting x\n"), "it printed nothing");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(&path, (0..100).map(|i| format!("line {i}\n")).collect::<String>()).unwrap();
        assert_eq!(log_tail(&path, 2), "line 98\nline 99");
        assert_eq!(log_tail(&dir.path().join("missing"), 2), "");
    }
}
