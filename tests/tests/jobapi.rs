//! The job author's API, from the outside: jobs written against `mapred`'s public API
//! alone (`apijobs`, in `tests/src/bin/`) and the example jobs, submitted to a real mini
//! cluster. An input format of the job's own, inputs bound to their own mappers and
//! formats, an intermediate type without a text form, where an attempt runs, input
//! patterns, what submit refuses before contacting anything, and how failures are
//! reported (a fatal error, a user error, a panic under `RUST_BACKTRACE`).

use std::collections::HashMap;
use std::process::Command;

use tests::{ClusterOptions, CmdOutput, MiniCluster};

async fn cluster() -> MiniCluster {
    let options = ClusterOptions { chunkservers: 3, ..ClusterOptions::for_mapreduce_tests() };
    match MiniCluster::start(options).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    }
}

fn apijobs(c: &MiniCluster, args: &[&str]) -> CmdOutput {
    let mut all = vec!["submit"];
    all.extend_from_slice(args);
    c.mr("apijobs", &all)
}

/// `submit`'s counters section as a map.
fn counters(stdout: &str) -> HashMap<String, u64> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("counters:"))
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// Every `part-*` file of `dir`, concatenated in name order.
async fn output(c: &MiniCluster, dir: &str) -> String {
    let client = c.client().await.expect("client");
    let mut out = String::new();
    for f in client.list(dir).await.expect("list") {
        if f.path.as_str().rsplit('/').next().is_some_and(|n| n.starts_with("part-")) {
            let bytes = client.read_all(f.path.as_str()).await.expect("read");
            out.push_str(&String::from_utf8(bytes).expect("utf-8"));
        }
    }
    out
}

async fn put(c: &MiniCluster, path: &str, data: &[u8]) {
    let client = c.client().await.expect("client");
    let opts = dfs::CreateOptions { create_parents: true, ..Default::default() };
    client.put_bytes(path, data, opts).await.expect("put");
}

/// `apijobs submit ARGS` against addresses where nothing listens.
fn offline(args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apijobs"));
    cmd.env("RUST_LOG", "off").env_remove("MAPRED_COORDINATOR").env_remove("DFS_MASTER");
    let mut all = vec!["submit"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--coordinator", "127.0.0.1:1", "--master", "127.0.0.1:1"]);
    tests::command::run(cmd, &all, None).expect("run apijobs")
}

#[test]
fn submit_refuses_what_the_submitter_controls_before_contacting_anything() {
    let io = ["--input", "/in", "--output", "/out"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> { [&io[..], extra].concat() };
    // A job that needs exactly one reducer.
    let err = offline(&[&["topone"][..], &with(&["--reducers", "3"])].concat())
        .assert_fails(1, "apijobs: error: ");
    assert!(err.ends_with("job topone needs exactly 1 reduce task: --reducers 3 contradicts it"));
    // A job with a reducer run map-only.
    let err = offline(&[&["failing"][..], &with(&["--reducers", "0"])].concat())
        .assert_fails(1, "apijobs: error: ");
    assert!(err.ends_with("job failing has a reducer: --reducers 0 would silently drop it"));
    // The job's own check of its options.
    let err = offline(&[&["fixedwidth"][..], &io].concat()).assert_fails(1, "apijobs: error: ");
    assert!(err.ends_with("fixedwidth needs -D fixedwidth.width=BYTES (> 0)"), "{err}");
    // A mistyped framework option, with the nearest known one.
    let bad = with(&["-D", "fixedwidth.width=4", "-D", "mapred.sort.mbb=5"]);
    let err = offline(&[&["fixedwidth"][..], &bad].concat()).assert_fails(1, "apijobs: error: ");
    assert!(err.ends_with("unknown job option mapred.sort.mbb; did you mean mapred.sort.mb?"));
    // The job's own keys pass: it gets as far as the (absent) coordinator.
    let good = with(&["-D", "fixedwidth.width=4", "-D", "fixedwidth.anything=else"]);
    let err = offline(&[&["fixedwidth"][..], &good].concat()).assert_fails(1, "apijobs: error: ");
    assert!(err.contains("cannot reach coordinator at 127.0.0.1:1"), "{err}");
    // A built-in input format by name, and an unknown one.
    let err = offline(&[&["topone"][..], &with(&["-D", "mapred.input.format=csv"])].concat())
        .assert_fails(1, "apijobs: error: ");
    assert!(err.contains("unknown input format \"csv\""), "{err}");
}

/// Fixed-width records of `width` bytes: `rec NNNNNN` padded with dots.
fn fixed_records(n: usize, width: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * width);
    for i in 0..n {
        let mut r = format!("rec {i:06}").into_bytes();
        r.resize(width, b'.');
        out.extend_from_slice(&r);
    }
    out
}

#[tokio::test]
async fn an_input_format_of_the_jobs_own_and_inputs_bound_to_their_own_mappers() {
    let c = cluster().await;
    // 3 MB of 100-byte records over 1 MiB chunks: records straddle chunk boundaries.
    let (n, width) = (30_000, 100);
    put(&c, "/fixed/data", &fixed_records(n, width)).await;
    let out = apijobs(
        &c,
        &[
            "fixedwidth",
            "--input",
            "/fixed",
            "--output",
            "/fixed-out",
            "-D",
            "fixedwidth.width=100",
        ],
    );
    let k = counters(&out.assert_ok().stdout_str());
    assert_eq!(k["job.TOTAL_LAUNCHED_MAPS"] - k.get("job.NUM_KILLED_MAPS").unwrap_or(&0), 3);
    let text = output(&c, "/fixed-out").await;
    let mut got: Vec<(u64, String)> = text
        .lines()
        .map(|l| {
            let (o, r) = l.split_once('\t').expect("offset<TAB>record");
            (o.parse().expect("offset"), r.to_owned())
        })
        .collect();
    got.sort();
    assert_eq!(got.len(), n, "every record exactly once");
    for (i, (offset, rec)) in got.iter().enumerate() {
        assert_eq!(*offset, (i * width) as u64);
        assert!(rec.starts_with(&format!("rec {i:06}.")), "{rec}");
        assert_eq!(rec.len(), width);
    }

    // A join: users as key/value text, orders as lines, each with its mapper, matched by
    // a pattern of the job definition; the input given as a pattern too.
    put(&c, "/join/users/u", b"1\tada\n2\tbob\n3\tcy\n").await;
    put(&c, "/join/orders/a", b"1 10\n2 5\n1 7\n").await;
    put(&c, "/join/orders/b", b"2 1\n9 100\n").await;
    let out = apijobs(&c, &["tagjoin", "--input", "/join/*", "--output", "/joined"]);
    let stdout = out.assert_ok().stdout_str();
    let mut lines: Vec<String> = output(&c, "/joined").await.lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["ada\t17", "bob\t6"]);
    // Where each map ran, as the attempt saw it: its file, host and worker.
    let k = counters(&stdout);
    assert_eq!((k["input.users"], k["input.orders"]), (1, 2), "{stdout}");
    assert_eq!(k["worker.known"], 3, "{stdout}");
    let hosts: u64 = k.iter().filter(|(n, _)| n.starts_with("host.127.0.0.")).map(|(_, v)| v).sum();
    assert_eq!(hosts, 3, "{stdout}");
}

#[tokio::test]
async fn failures_say_what_happened_once_and_fatal_errors_are_not_retried() {
    let c = cluster().await;
    put(&c, "/f/in", b"one line\n").await;
    let run = |how: &str, out: &str| {
        let how = format!("failing.how={how}");
        let args = ["failing", "--input", "/f", "--output", out, "-D", &how];
        let mut all = args.to_vec();
        all.extend_from_slice(&[
            "-D",
            "mapred.task.max.attempts=2",
            "-D",
            "mapred.skip.enabled=false",
        ]);
        apijobs(&c, &all)
    };

    // Fatal: one attempt, and the job fails with the user's message.
    let out = run("fatal", "/o-fatal");
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("fatal: the reference table /ref is missing"),
        "{}",
        out.describe()
    );
    let k = counters(&out.stdout_str());
    assert_eq!(k["job.TOTAL_LAUNCHED_MAPS"], 1, "{}", out.describe());

    // A user error: retried, and said once per attempt (plus the summary line), with no
    // empty "stderr ends with:".
    let out = run("error", "/o-error");
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert_eq!(out.stderr.matches("bad record at byte 0").count(), 3, "{}", out.describe());
    assert!(!out.stderr.contains("stderr ends with"), "{}", out.describe());

    // A panic, with RUST_BACKTRACE set on the workers (the harness sets it): the panic's
    // own line is reported, not a tail of backtrace frames.
    let out = run("panic", "/o-panic");
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("panicked at tests/src/bin/apijobs.rs:")
            && out.stderr.contains(": poison record at byte 0"),
        "{}",
        out.describe()
    );
}

#[tokio::test]
async fn example_jobs_chains_and_whole_files() {
    let c = cluster().await;
    let examples = |args: &[&str]| {
        let mut all = vec!["submit"];
        all.extend_from_slice(args);
        c.mr("mapred-examples", &all)
    };
    let text = b"the cat and the hat\nthe end\nan end of a cat\n";
    put(&c, "/books/a", text).await;
    put(&c, "/books/b", b"the last the\n").await;

    // A chain: word count, then the top 3 from its records; the intermediate output is
    // removed.
    let out = examples(&["wordfreq", "--input", "/books", "--output", "/freq", "-D", "topk.k=3"]);
    out.assert_ok();
    assert_eq!(output(&c, "/freq").await, "the\t5\ncat\t2\nend\t2\n");
    let client = c.client().await.unwrap();
    assert!(client.try_stat("/freq.stage-1-wordcount").await.unwrap().is_none());
    let out = examples(&[
        "wordfreq",
        "--input",
        "/books",
        "--output",
        "/freq2",
        "-D",
        "topk.k=1",
        "--keep-intermediate",
    ]);
    out.assert_ok();
    assert_eq!(output(&c, "/freq2").await, "the\t5\n");
    assert!(client.try_stat("/freq2.stage-1-wordcount/_SUCCESS").await.unwrap().is_some());

    // Whole files: each file one record.
    put(&c, "/small/x", b"b a\n").await;
    put(&c, "/small/y", b"a").await;
    put(&c, "/small/empty", b"").await;
    let out = examples(&["multifilewc", "--input", "/small", "--output", "/mf"]);
    let k = counters(&out.assert_ok().stdout_str());
    assert_eq!(k["multifilewc.FILES"], 3, "an empty file is a record too");
    let mut got: Vec<String> = output(&c, "/mf").await.lines().map(str::to_owned).collect();
    got.sort();
    assert_eq!(got, ["a\t2", "b\t1"]);

    // A join of two inputs with two mappers; an input under neither side is fatal.
    put(&c, "/shop/customers/c", b"1\tada\n2\tbob\n").await;
    put(&c, "/shop/orders/o", b"1\tpen\n1\tink\n3\tcap\n").await;
    let out = examples(&["join", "--input", "/shop/customers", "/shop/orders", "--output", "/j"]);
    out.assert_ok();
    let mut got: Vec<String> = output(&c, "/j").await.lines().map(str::to_owned).collect();
    got.sort();
    assert_eq!(got, ["ada\tink", "ada\tpen"]);
    let out = examples(&["join", "--input", "/books", "--output", "/j2"]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("is under neither customers nor orders"), "{}", out.describe());

    // Secondary sort, sort, word mean, pi.
    put(&c, "/pairs/p", b"3 9\n1 5\n3 1\n1 2\n2 7\n3 4\n").await;
    examples(&["secondarysort", "--input", "/pairs", "--output", "/ss", "--reducers", "2"])
        .assert_ok();
    let mut got: Vec<String> = output(&c, "/ss").await.lines().map(str::to_owned).collect();
    got.sort();
    assert_eq!(got, ["1\t2,5", "2\t7", "3\t1,4,9"]);
    put(&c, "/kv/k", b"b\t2\na\t1\nc\n").await;
    examples(&["sort", "--input", "/kv", "--output", "/sorted", "--reducers", "1"]).assert_ok();
    assert_eq!(output(&c, "/sorted").await, "a\t1\nb\t2\nc\t\n");
    examples(&["wordmean", "--input", "/books", "--output", "/wm"]).assert_ok();
    assert_eq!(output(&c, "/wm").await, "count\t15\nlength\t42\nmean\t2.800000\n");
    examples(&["pi", "--output", "/pi", "-D", "pi.samples=2000"]).assert_ok();
    let pi: f64 = output(&c, "/pi").await.trim().strip_prefix("pi\t").unwrap().parse().unwrap();
    assert!((pi - std::f64::consts::PI).abs() < 0.01, "{pi}");
}
