//! MapReduce end to end on a real mini cluster (master, chunkservers, coordinator, one
//! worker per chunkserver host; 1 MiB chunks, 100 ms heartbeats): word count against an
//! independent count, line boundaries, empty input, parallelism, exactly-once maps,
//! `_SUCCESS`, inverted index, terasort + teravalidate, and the one-line errors.

use std::collections::{BTreeMap, HashMap};

use tests::{ClusterOptions, MiniCluster};

async fn cluster(chunkservers: usize) -> MiniCluster {
    let options = ClusterOptions { chunkservers, ..ClusterOptions::for_mapreduce_tests() };
    match MiniCluster::start(options).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    }
}

/// Deterministic text: `lines` lines of words from a small vocabulary, some empty lines.
fn text(seed: u64, lines: usize) -> Vec<u8> {
    let mut g = tests::data::DataGen::new(seed);
    let mut out = Vec::new();
    let mut b = [0u8; 8];
    for _ in 0..lines {
        g.fill(&mut b);
        let n = b[0] % 12; // 0 words = an empty line
        for i in 0..n {
            g.fill(&mut b);
            let w = u16::from_le_bytes([b[1], b[2]]) % 700;
            if i > 0 {
                out.push(if b[3] % 7 == 0 { b'\t' } else { b' ' });
            }
            out.extend_from_slice(format!("w{w}x{}", "y".repeat((w % 9) as usize)).as_bytes());
        }
        out.push(b'\n');
    }
    out
}

fn count_words(data: &[u8], into: &mut BTreeMap<Vec<u8>, u64>) {
    for w in data.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()) {
        *into.entry(w.to_vec()).or_default() += 1;
    }
}

/// Reads every `part-*` file of `dir` in name order.
async fn read_parts(c: &MiniCluster, dir: &str) -> Vec<(String, Vec<u8>)> {
    let client = c.client().await.unwrap();
    let mut out = Vec::new();
    for f in client.list(dir).await.unwrap() {
        let name = f.path.as_str().rsplit('/').next().unwrap().to_owned();
        if name.starts_with("part-") {
            out.push((name, client.read_all(f.path.as_str()).await.unwrap()));
        }
    }
    out
}

fn parse_counts(parts: &[(String, Vec<u8>)]) -> BTreeMap<Vec<u8>, u64> {
    let mut got = BTreeMap::new();
    for (_, data) in parts {
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let tab = line.iter().rposition(|&b| b == b'\t').expect("key<TAB>value");
            let n: u64 = std::str::from_utf8(&line[tab + 1..]).unwrap().parse().unwrap();
            assert!(got.insert(line[..tab].to_vec(), n).is_none(), "a key in two part files");
        }
    }
    got
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

fn submit(c: &MiniCluster, args: &[&str]) -> tests::CmdOutput {
    let mut all = vec!["submit"];
    all.extend_from_slice(args);
    c.mr("mapred-examples", &all)
}

#[tokio::test]
async fn wordcount_matches_an_independent_count() {
    let c = cluster(3).await;
    let client = c.client().await.unwrap();
    let opts = dfs::CreateOptions { create_parents: true, ..Default::default() };
    let mut want = BTreeMap::new();
    // Several multi-chunk files (1 MiB chunks: lines straddle chunk boundaries), an empty
    // file, a file without a final newline, and a file of empty lines.
    let files: Vec<(String, Vec<u8>)> = vec![
        ("/in/a".into(), text(1, 60_000)),
        ("/in/b".into(), text(2, 45_000)),
        ("/in/empty".into(), Vec::new()),
        ("/in/no-newline".into(), b"tail words here\nand the last".to_vec()),
        ("/in/blank".into(), b"\n\n\n".to_vec()),
        ("/in/_ignored".into(), b"not input\n".to_vec()),
    ];
    for (path, data) in &files {
        client.put_bytes(path.as_str(), data, opts).await.unwrap();
        if !path.contains("_ignored") {
            count_words(data, &mut want);
        }
    }
    assert!(files[0].1.len() > 2 << 20, "input spans several chunks");
    // A pattern, expanded at submit as `dfs` expands it.
    let out = submit(&c, &["wordcount", "--input", "/i?", "--output", "/out", "--reducers", "3"]);
    let stdout = out.assert_ok().stdout_str();
    let parts = read_parts(&c, "/out").await;
    assert_eq!(parts.len(), 3, "{stdout}");
    let got = parse_counts(&parts);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "word counts differ");
    assert!(client.try_stat("/out/_SUCCESS").await.unwrap().is_some());
    assert!(client.try_stat("/out/_temporary").await.unwrap().is_none());

    // Every map ran exactly once, and all of them next to their data (3 replicas, a
    // worker on every chunkserver host).
    let k = counters(&stdout);
    let splits = files
        .iter()
        .filter(|(p, d)| !p.contains("_ignored") && !d.is_empty())
        .map(|(_, d)| d.len().div_ceil(1 << 20))
        .sum::<usize>() as u64;
    // A loaded machine may start speculative backups of slow maps; each map's output
    // still comes from exactly one attempt, the others killed.
    let killed = k.get("job.NUM_KILLED_MAPS").copied().unwrap_or(0);
    let launched = k["job.TOTAL_LAUNCHED_MAPS"];
    assert_eq!(launched - killed, splits, "{stdout}");
    assert_eq!(k["job.DATA_LOCAL_MAPS"], launched, "{stdout}");
    assert_eq!(k["job.TOTAL_LAUNCHED_REDUCES"], 3);
    let lines: u64 = files
        .iter()
        .filter(|(p, _)| !p.contains("_ignored"))
        .map(|(_, d)| d.split_inclusive(|&b| b == b'\n').count() as u64)
        .sum();
    assert_eq!(k["mapred.MAP_INPUT_RECORDS"], lines, "every line read exactly once");
    assert_eq!(k["mapred.MAP_OUTPUT_RECORDS"], want.values().sum::<u64>());
    assert_eq!(k["mapred.REDUCE_OUTPUT_RECORDS"], want.len() as u64);

    // An existing output directory is refused, in one line.
    let err = submit(&c, &["wordcount", "--input", "/in", "--output", "/out"])
        .assert_fails(1, "mapred-examples: error: ");
    assert!(err.contains("/out already exists"), "{err}");
}

#[tokio::test]
async fn maps_and_reduces_run_in_parallel_on_both_workers_and_success_comes_last() {
    // One slot per worker: with two, whichever worker asks first could take both reduces
    // (it did on a loaded machine), and "ran on both workers" would hang on timing.
    let options = ClusterOptions {
        chunkservers: 2,
        worker_slots: 1,
        ..ClusterOptions::for_mapreduce_tests()
    };
    let c = match MiniCluster::start(options).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    };
    let out = submit(
        &c,
        &[
            "sleep",
            "--output",
            "/sleep",
            "--reducers",
            "2",
            "--detach",
            "-D",
            "mapred.generate.maps=4",
            "-D",
            "sleep.map.ms=1500",
            "-D",
            "sleep.reduce.ms=1500",
        ],
    );
    let job = out.assert_ok().stdout_str().trim().to_owned();
    let jobs = c.job_client().await.unwrap();
    let client = c.client().await.unwrap();
    let status = loop {
        let s = jobs.status(&job).await.unwrap();
        if s.state != "running" {
            break s;
        }
        if s.reduces_done < s.reduces {
            assert!(
                client.try_stat("/sleep/_SUCCESS").await.unwrap().is_none(),
                "_SUCCESS before the end"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(status.state, "succeeded", "{status:?}");
    assert!(client.try_stat("/sleep/_SUCCESS").await.unwrap().is_some());
    for kind in ["_m_", "_r_"] {
        let attempts: Vec<_> = status
            .tasks
            .iter()
            .filter(|t| t.task_id.contains(kind))
            .flat_map(|t| t.attempts.iter())
            .collect();
        let workers: std::collections::HashSet<&str> =
            attempts.iter().map(|a| a.worker.as_str()).collect();
        assert_eq!(workers.len(), 2, "{kind} attempts ran on both workers: {attempts:?}");
        // Two attempts on different workers overlapped in time.
        let overlap = attempts.iter().any(|a| {
            attempts
                .iter()
                .any(|b| a.worker != b.worker && a.start_ms < b.end_ms && b.start_ms < a.end_ms)
        });
        assert!(overlap, "{kind} attempts overlapped across workers: {attempts:?}");
        assert!(attempts.iter().all(|a| a.state == "succeeded"));
    }
    let k = mapred::Counters::from_proto(&status.counters);
    assert_eq!(k.get("job", "TOTAL_LAUNCHED_MAPS"), 4, "each map ran once");
}

#[tokio::test]
async fn invertedindex_and_grep() {
    let c = cluster(3).await;
    let client = c.client().await.unwrap();
    let opts = dfs::CreateOptions { create_parents: true, ..Default::default() };
    client.put_bytes("/docs/d1", b"apple banana\ncherry apple\n", opts).await.unwrap();
    client.put_bytes("/docs/d2", b"banana date\n", opts).await.unwrap();
    client.put_bytes("/docs/d3", b"apple\n", opts).await.unwrap();
    submit(&c, &["invertedindex", "--input", "/docs", "--output", "/index", "--reducers", "2"])
        .assert_ok();
    let mut lines: Vec<String> = read_parts(&c, "/index")
        .await
        .iter()
        .flat_map(|(_, d)| {
            String::from_utf8_lossy(d).lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    assert_eq!(lines, ["apple\td1,d3", "banana\td1,d2", "cherry\td1", "date\td2"]);

    // grep over the same documents: lines holding each match.
    submit(
        &c,
        &["grep", "--input", "/docs", "--output", "/grep", "-D", "grep.pattern=apple|banana"],
    )
    .assert_ok();
    let got = parse_counts(&read_parts(&c, "/grep").await);
    let want: BTreeMap<Vec<u8>, u64> = [(b"apple".to_vec(), 3), (b"banana".to_vec(), 2)].into();
    assert_eq!(got, want);
}

#[tokio::test]
async fn terasort_output_is_totally_ordered_and_validates() {
    let c = cluster(3).await;
    submit(
        &c,
        &[
            "teragen",
            "--output",
            "/tera/in",
            "-D",
            "teragen.rows=60000",
            "-D",
            "mapred.generate.maps=3",
        ],
    )
    .assert_ok();
    let input: Vec<u8> =
        read_parts(&c, "/tera/in").await.into_iter().flat_map(|(_, d)| d).collect();
    assert_eq!(input.len(), 60_000 * 100);
    let out = submit(
        &c,
        &["terasort", "--input", "/tera/in", "--output", "/tera/out", "--reducers", "3"],
    );
    out.assert_ok();
    let parts = read_parts(&c, "/tera/out").await;
    assert_eq!(parts.len(), 3);
    let sorted: Vec<&[u8]> = parts
        .iter()
        .flat_map(|(_, d)| d.split(|&b| b == b'\n').filter(|l| !l.is_empty()))
        .collect();
    assert!(sorted.windows(2).all(|w| w[0][..10] <= w[1][..10]), "globally sorted across parts");
    let mut a: Vec<&[u8]> = input.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let mut b = sorted.clone();
    a.sort_unstable();
    b.sort_unstable();
    assert!(a == b, "same multiset of rows");
    assert!(parts.iter().all(|(_, d)| !d.is_empty()), "the sampled cuts spread the rows");
    let client = c.client().await.unwrap();
    let st = client.stat("/tera/out/part-r-00000").await.unwrap();
    assert_eq!(st.replication, 1, "terasort writes one replica");

    submit(&c, &["teravalidate", "--input", "/tera/out", "--output", "/tera/report"]).assert_ok();
    let report = String::from_utf8(read_parts(&c, "/tera/report").await.remove(0).1).unwrap();
    let sum: u64 = a.iter().map(|l| u64::from(crc32fast::hash(l))).fold(0, u64::wrapping_add);
    assert!(report.contains("misordered\t0"), "{report}");
    assert!(report.contains("rows\t60000"), "{report}");
    assert!(report.contains(&format!("checksum\t{sum:016x}")), "{report}");
}

#[tokio::test]
async fn errors_are_one_line_and_failed_jobs_leave_no_success() {
    let c = cluster(2).await;
    let err = submit(&c, &["wordcount", "--input", "/missing", "--output", "/o"])
        .assert_fails(1, "mapred-examples: error: ");
    assert!(err.contains("input path /missing does not exist"), "{err}");
    let err = submit(&c, &["wordcount", "--input", "/miss*", "--output", "/o"])
        .assert_fails(1, "mapred-examples: error: ");
    assert!(err.contains("input pattern /miss* matches no path"), "{err}");
    // A reducer count no cluster could run is refused, and the coordinator lives on.
    // (Generated input: nothing else stands between the count and the core.)
    let huge =
        ["fail", "--output", "/o", "-D", "mapred.generate.maps=1", "--reducers", "4294967295"];
    let err = submit(&c, &huge).assert_fails(1, "mapred-examples: error: ");
    assert!(err.contains("4294967295 reducers asked for, at most 10000"), "{err}");
    let err = submit(&c, &["nosuchjob", "--input", "/x", "--output", "/o"])
        .assert_fails(1, "mapred-examples: error: ");
    assert!(err.contains("unknown job \"nosuchjob\""), "{err}");
    let mut cmd = c.mr_cmd("mapred-examples");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    cmd.env("MAPRED_COORDINATOR", &addr);
    let out =
        tests::command::run(cmd, &["submit", "wordcount", "--input", "/x", "--output", "/o"], None)
            .unwrap();
    let err = out.assert_fails(1, "mapred-examples: error: ");
    assert!(err.contains(&format!("cannot reach coordinator at {addr}")), "{err}");
    let out = c.mr("mapred", &["status", "job_0_0000"]);
    out.assert_fails(1, "mapred: error: ");

    // A job whose maps always fail: the job fails after 4 attempts, without _SUCCESS.
    let out = submit(&c, &["fail", "--output", "/failed", "-D", "mapred.generate.maps=1"]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("failed 4 times"), "{}", out.describe());
    let client = c.client().await.unwrap();
    assert!(client.try_stat("/failed/_SUCCESS").await.unwrap().is_none());
    let k = counters(&out.stdout_str());
    assert_eq!(k["job.NUM_FAILED_MAPS"], 4);
    let list = c.mr("mapred", &["list", "--all"]);
    assert!(list.assert_ok().stdout_str().contains("failed"));
}
