//! The `coordinator`, `worker` and `mapred` binaries' command lines: help works, and bad
//! flags, taken addresses and an unreachable coordinator give one line and a non-zero
//! exit, never a panic. (Cargo builds a package's binaries for its integration tests, so
//! this file is also what makes `cargo test --workspace` build the binaries the mini
//! cluster tests spawn.)

use std::process::{Command, Output};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).env("RUST_LOG", "off").output().expect("run binary")
}

fn one_line_failure(out: &Output, prefix: &str) -> String {
    assert!(!out.status.success(), "expected failure");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one stderr line expected: {err}");
    assert!(lines[0].starts_with(prefix), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn help_exits_zero() {
    for bin in [
        env!("CARGO_BIN_EXE_coordinator"),
        env!("CARGO_BIN_EXE_worker"),
        env!("CARGO_BIN_EXE_mapred"),
    ] {
        let out = run(bin, &["--help"]);
        assert!(out.status.success(), "{bin} --help");
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn a_taken_address_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path().to_str().expect("utf-8 temp path");
    let out = run(
        env!("CARGO_BIN_EXE_coordinator"),
        &["--addr", &addr, "--master", "127.0.0.1:1", "--dir", dir],
    );
    let err = one_line_failure(&out, "coordinator: error:");
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn an_unreachable_coordinator_is_one_line() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("addr").to_string();
    drop(free);
    let out = run(env!("CARGO_BIN_EXE_mapred"), &["--coordinator", &addr, "list"]);
    let err = one_line_failure(&out, "mapred:");
    assert!(err.contains(&addr), "{err}");
}
