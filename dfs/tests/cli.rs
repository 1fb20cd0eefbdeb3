//! Runs the built `dfs` binary: help, usage errors, and a clear one-line error when no
//! master is listening.

use std::process::Command;

fn dfs() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dfs"));
    // No waiting for a master that will never come, unless a test asks for it.
    c.env_remove("DFS_MASTER").env_remove("RUST_LOG").env("DFS_RETRY_SECONDS", "0");
    c
}

#[test]
fn help_exits_0() {
    let out = dfs().arg("--help").output().expect("run dfs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "put", "get", "cat", "ls", "mkdir", "rm", "mv", "stat", "du", "setrep", "fsck", "report",
        "admin",
    ] {
        assert!(text.contains(cmd), "help lists {cmd}: {text}");
    }
}

#[test]
fn ls_help_works_although_h_means_human() {
    let out = dfs().args(["ls", "--help"]).output().expect("run dfs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("-R"));
}

#[test]
fn unknown_command_exits_2() {
    let out = dfs().arg("frobnicate").output().expect("run dfs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn missing_arguments_exit_2() {
    let out = dfs().arg("put").output().expect("run dfs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unreachable_master_is_one_clear_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let out = dfs().args(["--master", &addr, "ls", "/"]).output().expect("run dfs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("dfs: ls: "), "{err}");
    assert!(err.contains(&addr), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn master_address_comes_from_the_environment() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let out = dfs().env("DFS_MASTER", &addr).args(["stat", "/x"]).output().expect("run dfs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("dfs: stat: cannot reach master at "), "{err}");
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn waiting_for_the_master_is_said_once_then_gives_up() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let started = std::time::Instant::now();
    let out = dfs()
        .env("DFS_RETRY_SECONDS", "2")
        .args(["--master", &addr, "stat", "/x"])
        .output()
        .expect("run dfs");
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500), "it retried");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert_eq!(lines[0], format!("dfs: waiting for master at {addr} (connection refused)..."));
    assert!(lines[1].starts_with("dfs: stat: cannot reach master at "), "{err}");
}

#[test]
fn admin_subcommands_parse() {
    for args in [&["admin", "safemode", "--help"][..], &["admin", "metasave", "--help"]] {
        let out = dfs().args(args).output().expect("run dfs");
        assert!(out.status.success(), "{args:?}");
    }
    let out = dfs().args(["admin", "safemode", "sideways"]).output().expect("run dfs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn admin_masters_parses_its_changes() {
    for args in [
        &["admin", "masters", "--help"][..],
        &["admin", "masters", "add", "--help"],
        &["admin", "masters", "remove", "--help"],
        &["--stale-ok", "ls", "--help"],
    ] {
        let out = dfs().args(args).output().expect("run dfs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    for bad in [
        &["admin", "masters", "add", "127.0.0.1:9000"][..],
        &["admin", "masters", "add", "0=127.0.0.1:9000"],
        &["admin", "masters", "add", "x=127.0.0.1:9000"],
        &["admin", "masters", "add", "4="],
        &["admin", "masters", "remove", "two"],
    ] {
        let out = dfs().args(bad).output().expect("run dfs");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn a_master_group_that_is_all_down_is_one_clear_line() {
    let dead: Vec<String> = (0..3)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").to_string()
        })
        .collect();
    let out = dfs().args(["--master", &dead.join(","), "ls", "/"]).output().expect("run dfs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("dfs: ls: cannot reach master at "), "{err}");
    assert!(dead.iter().any(|a| err.contains(a.as_str())), "names a member: {err}");
    let out = dfs().args(["--master", ",", "ls", "/"]).output().expect("run dfs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("dfs: ls: master list \",\" has an empty member"), "{err}");
}
