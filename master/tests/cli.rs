//! The `master` binary's command line: help, bad flags and startup errors are one line
//! and a non-zero exit, never a panic.

use std::process::Command;

fn master() -> Command {
    Command::new(env!("CARGO_BIN_EXE_master"))
}

#[test]
fn help_exits_zero() {
    let out = master().arg("--help").output().expect("run master");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--chunk-size"));
}

#[test]
fn bad_chunk_size_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = master()
        .args(["--addr", "127.0.0.1:0", "--chunk-size", "1000", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run master");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("master: error:") && err.contains("chunk size 1000"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn address_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let out =
        master().args(["--addr", &addr, "--dir"]).arg(dir.path()).output().expect("run master");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr) && err.lines().count() == 1, "{err}");
}
