//! The built `chunkserver` binary: help, usage errors, and a clear bind failure.
//! (This file also makes `cargo test --workspace` build the binary.)

use std::process::{Command, Output};

fn chunkserver(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chunkserver"))
        .args(args)
        .env_remove("DFS_MASTER")
        .env_remove("CHUNKSERVER_DIR")
        .env_remove("CHUNKSERVER_ADDR")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_exits_zero() {
    let out = chunkserver(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in
        ["--addr", "--master", "--dir", "--rack", "--heartbeat-ms", "--capacity", "--addr-file"]
    {
        assert!(text.contains(flag), "--help lacks {flag}: {text}");
    }
}

#[test]
fn a_missing_dir_is_a_one_line_error() {
    let out = chunkserver(&["--master", "127.0.0.1:1"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("chunkserver: error: "), "{err}");
    assert!(err.contains("--dir"), "{err}");
}

#[test]
fn an_address_in_use_is_a_one_line_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out =
        chunkserver(&["--addr", &addr, "--master", "127.0.0.1:1", "--dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("chunkserver: error: "), "{err}");
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn a_bad_capacity_is_refused() {
    let out = chunkserver(&["--master", "m:1", "--dir", "/tmp/x", "--capacity", "lots"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("invalid size"), "{}", stderr(&out));
}
