//! The example job binary's command line: it lists its jobs, and an unknown job or a
//! missing coordinator is a one-line error with a non-zero exit. (Also makes
//! `cargo test --workspace` build `mapred-examples`, which the mini cluster tests submit.)

use std::process::{Command, Output};

fn examples(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mapred-examples"))
        .args(args)
        .env("RUST_LOG", "off")
        .env_remove("MAPRED_COORDINATOR")
        .output()
        .expect("run mapred-examples")
}

#[test]
fn lists_the_example_jobs() {
    let out = examples(&["jobs"]);
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout);
    let jobs = ["wordcount", "grep", "invertedindex", "terasort", "teravalidate", "sleep", "fail"];
    let more = ["join", "secondarysort", "pi", "wordmean", "multifilewc", "sort", "topk"];
    for job in jobs.iter().chain(&more) {
        assert!(listed.lines().any(|l| l.starts_with(job)), "{job} missing from: {listed}");
    }
    let chain = listed.lines().find(|l| l.starts_with("wordfreq")).unwrap_or_default();
    assert!(chain.ends_with("(chain: wordcount -> topk)"), "{listed}");
}

#[test]
fn an_unknown_job_is_a_one_line_error() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("addr").to_string();
    drop(free);
    let out = examples(&[
        "submit",
        "no-such-job",
        "--input",
        "/in",
        "--output",
        "/out",
        "--coordinator",
        &addr,
        "--master",
        &addr,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(err.contains("no-such-job") && !err.contains("panicked"), "{err}");
}

#[test]
fn lists_every_framework_option_with_its_default() {
    let out = examples(&["options"]);
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout);
    // README's table and the job guide's are the same list: keep them true.
    let doc = |name: &str| {
        std::fs::read_to_string(format!("{}/../{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let (readme, guide) = (doc("README.md"), doc("docs/writing-jobs.md"));
    for o in mapred::config::OPTIONS {
        let line = listed.lines().find(|l| l.starts_with(o.key)).unwrap_or_default();
        assert!(line.split_whitespace().nth(1) == Some(o.default), "{}: {listed}", o.key);
        let row = format!("| `{}` | `{}` | {} |", o.key, o.default, o.help);
        assert!(readme.contains(&row), "README.md lacks the row {row}");
        assert!(guide.contains(&row), "docs/writing-jobs.md lacks the row {row}");
    }
}

#[test]
fn a_mistyped_option_is_refused_before_anything_is_contacted() {
    let out = examples(&[
        "submit",
        "wordcount",
        "--input",
        "/in",
        "--output",
        "/out",
        "-D",
        "mapred.task.timout.ms=5000",
        "--coordinator",
        "127.0.0.1:1",
        "--master",
        "127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "unknown job option mapred.task.timout.ms; did you mean mapred.task.timeout.ms?"
        ),
        "{err}"
    );
}

/// `submit JOB ARGS` against addresses where nothing listens: what fails must fail
/// before anything is contacted.
fn submit_offline(job: &str, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["submit", job, "--input", "/in", "--output", "/out"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--coordinator", "127.0.0.1:1", "--master", "127.0.0.1:1"]);
    let out = examples(&args);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_job_checks_its_own_options_and_reducer_count_at_submit() {
    let (code, err) = submit_offline("grep", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("grep needs -D grep.pattern=REGEX"), "{err}");
    let (code, err) = submit_offline("grep", &["-D", "grep.pattern=err["]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("bad pattern \"err[\""), "{err}");
    let (code, err) = submit_offline("wordcount", &["--reducers", "0"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("job wordcount has a reducer: --reducers 0 would silently drop it"),
        "{err}"
    );
}
