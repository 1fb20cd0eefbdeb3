//! MapReduce fault tolerance on a real mini cluster (3 chunkservers + 3 workers, 1 MiB
//! chunks, 100 ms heartbeats, workers declared dead after 3 s): random crashes and hangs
//! with workers killed and restarted, a SIGKILLed worker, a SIGSTOPped one, lost and
//! corrupt map output, a reducer that always fails, a straggler, and a coordinator
//! restart (record skipping is in `mrskip.rs`). Every job that succeeds is compared byte
//! for byte with a fault-free run of the same job over the same input.
//!
//! The scenarios run one at a time (a shared lock): each leans on timeouts measured in
//! seconds, which a machine running several clusters at once would stretch.

use std::collections::BTreeMap;
use std::time::Duration;

use proto::mapred as pb;
use tests::data::{join_lines, word_lines};
use tests::{ClusterOptions, MiniCluster};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const JOB_TIMEOUT: Duration = Duration::from_secs(240);

async fn cluster() -> MiniCluster {
    let options = ClusterOptions {
        chunkservers: 3,
        coordinator_args: vec!["--dead-after-ms".into(), "3000".into()],
        ..ClusterOptions::for_mapreduce_tests()
    };
    match MiniCluster::start(options).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    }
}

async fn put(c: &MiniCluster, path: &str, data: &[u8]) {
    let client = c.client().await.unwrap();
    let opts = dfs::CreateOptions { create_parents: true, ..Default::default() };
    client.put_bytes(path, data, opts).await.unwrap();
}

/// The standard input: ~2.5 MiB over 3 splits.
async fn standard_input(c: &MiniCluster) {
    put(c, "/in/text", &join_lines(&word_lines(11, 110_000, 500))).await;
}

/// Every `part-*` file of `dir`, in name order.
async fn read_parts(c: &MiniCluster, dir: &str) -> BTreeMap<String, Vec<u8>> {
    let client = c.client().await.unwrap();
    let mut out = BTreeMap::new();
    for f in client.list(dir).await.unwrap() {
        let name = f.path.as_str().rsplit('/').next().unwrap().to_owned();
        if name.starts_with("part-") {
            out.insert(name, client.read_all(f.path.as_str()).await.unwrap());
        }
    }
    out
}

fn submit(c: &MiniCluster, args: &[&str]) -> tests::CmdOutput {
    let mut all = vec!["submit"];
    all.extend_from_slice(args);
    c.mr("mapred-examples", &all)
}

/// Submits with `--detach` and returns the job id.
fn start(c: &MiniCluster, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--detach");
    submit(c, &all).assert_ok().stdout_str().trim().to_owned()
}

async fn status(c: &MiniCluster, job: &str) -> pb::JobStatus {
    c.job_client().await.unwrap().status(job).await.unwrap()
}

async fn wait_end(c: &MiniCluster, job: &str) -> pb::JobStatus {
    c.wait_job_end(job, JOB_TIMEOUT).await.expect("the job ends")
}

/// The fault-free reference: `faulty` with no faults over `input`, into `/ref`.
async fn reference(c: &MiniCluster, input: &str) -> BTreeMap<String, Vec<u8>> {
    submit(c, &["faulty", "--input", input, "--output", "/ref", "--reducers", "2"]).assert_ok();
    let parts = read_parts(c, "/ref").await;
    assert_eq!(parts.len(), 2);
    parts
}

fn task<'a>(s: &'a pb::JobStatus, suffix: &str) -> &'a pb::TaskStatus {
    s.tasks
        .iter()
        .find(|t| t.task_id.ends_with(suffix))
        .unwrap_or_else(|| panic!("no task {suffix}: {s:?}"))
}

fn counter(s: &pb::JobStatus, group: &str, name: &str) -> u64 {
    mapred::Counters::from_proto(&s.counters).get(group, name)
}

/// The `w-i` process running as worker (incarnation) `worker_id` (`worker-0003-HOST`).
fn process_of(c: &MiniCluster, worker_id: &str) -> String {
    let host = worker_id.splitn(3, '-').nth(2).unwrap_or_default();
    c.workers().iter().find(|w| w.host() == host).map(|w| w.name.clone()).unwrap_or_default()
}

/// Waits until map `suffix` of `job` has a succeeded attempt; returns it.
async fn succeeded_attempt(c: &MiniCluster, job: &str, suffix: &str) -> pb::AttemptStatus {
    tests::wait_for(
        &format!("{suffix} to succeed"),
        JOB_TIMEOUT,
        Duration::from_millis(100),
        || async {
            let s = c.job_client().await.ok()?.status(job).await.ok()?;
            task(&s, suffix).attempts.iter().find(|a| a.state == "succeeded").cloned()
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn random_crashes_and_hangs_with_workers_killed_and_restarted() {
    let _serial = SERIAL.lock().await;
    let mut c = cluster().await;
    standard_input(&c).await;
    let want = reference(&c, "/in").await;
    let job = start(
        &c,
        &[
            "faulty",
            "--input",
            "/in",
            "--output",
            "/out",
            "--reducers",
            "2",
            "-D",
            "faulty.rate=0.33",
            "-D",
            "faulty.seed=17",
            "-D",
            "faulty.hang.ms=60000",
            "-D",
            "mapred.task.timeout.ms=3000",
            "-D",
            "mapred.task.max.attempts=12",
            "-D",
            "mapred.skip.enabled=false",
        ],
    );
    let mut round = 0;
    let end = loop {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let s = status(&c, &job).await;
        if s.state != "running" {
            break s;
        }
        assert!(round < 60, "the job does not end: {s:?}");
        let victim = format!("w-{}", round % 3 + 1);
        c.kill(&victim).unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        c.restart(&victim).await.unwrap();
        round += 1;
    };
    assert_eq!(end.state, "succeeded", "{}", end.error);
    assert!(read_parts(&c, "/out").await == want, "output differs from the fault-free run");
    let bad = counter(&end, "job", "NUM_FAILED_MAPS")
        + counter(&end, "job", "NUM_FAILED_REDUCES")
        + counter(&end, "job", "NUM_KILLED_MAPS")
        + counter(&end, "job", "NUM_KILLED_REDUCES");
    assert!(bad > 0, "faults happened: {:?}", end.counters);
}

#[tokio::test]
async fn a_killed_worker_has_its_completed_maps_run_again() {
    let _serial = SERIAL.lock().await;
    let mut c = cluster().await;
    standard_input(&c).await;
    let want = reference(&c, "/in").await;
    // Map 2's first attempt sleeps, so the map phase stays open after maps 0 and 1 end.
    let job = start(
        &c,
        &[
            "faulty",
            "--input",
            "/in",
            "--output",
            "/out",
            "--reducers",
            "2",
            "-D",
            "faulty.slow.tasks=m2",
            "-D",
            "faulty.slow.ms=8000",
            "-D",
            "mapred.speculative=false",
        ],
    );
    let done = succeeded_attempt(&c, &job, "_m_000000").await;
    let victim = process_of(&c, &done.worker);
    c.kill(&victim).unwrap();
    let end = wait_end(&c, &job).await;
    assert_eq!(end.state, "succeeded", "{}", end.error);
    assert!(read_parts(&c, "/out").await == want, "output differs from the fault-free run");
    let m0 = task(&end, "_m_000000");
    assert_eq!(m0.attempts[0].state, "killed", "{m0:?}");
    assert!(m0.attempts[0].error.contains("output lost with worker"), "{m0:?}");
    assert!(m0.attempts.iter().any(|a| a.state == "succeeded" && a.worker != done.worker));
    assert!(counter(&end, "job", "NUM_KILLED_MAPS") >= 1);
    assert!(counter(&end, "job", "TOTAL_LAUNCHED_MAPS") > end.maps as u64);
}

#[tokio::test]
async fn a_stopped_worker_declared_dead_has_its_late_output_ignored() {
    let _serial = SERIAL.lock().await;
    let mut c = cluster().await;
    standard_input(&c).await;
    let want = reference(&c, "/in").await;
    let job = start(
        &c,
        &[
            "faulty",
            "--input",
            "/in",
            "--output",
            "/out",
            "--reducers",
            "2",
            "-D",
            "faulty.slow.tasks=m0",
            "-D",
            "faulty.slow.ms=6000",
            "-D",
            "mapred.speculative=false",
        ],
    );
    let first =
        tests::wait_for("map 0 to start", JOB_TIMEOUT, Duration::from_millis(50), || async {
            let s = c.job_client().await.ok()?.status(&job).await.ok()?;
            task(&s, "_m_000000").attempts.first().cloned()
        })
        .await
        .unwrap();
    let victim = process_of(&c, &first.worker);
    c.stop(&victim).unwrap();
    // Declared dead (its attempt killed) while frozen; its child finishes meanwhile.
    tests::wait_until(
        "the frozen worker to be declared dead",
        JOB_TIMEOUT,
        Duration::from_millis(100),
        || async {
            let s = status(&c, &job).await;
            task(&s, "_m_000000").attempts[0].state == "killed"
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.cont(&victim).unwrap();
    let end = wait_end(&c, &job).await;
    assert_eq!(end.state, "succeeded", "{}", end.error);
    assert!(read_parts(&c, "/out").await == want, "output differs from the fault-free run");
    let m0 = task(&end, "_m_000000");
    assert_eq!(m0.attempts[0].state, "killed", "its late success was ignored: {m0:?}");
    assert!(m0.attempts[0].error.contains("lost with worker"), "{m0:?}");
    let winner = m0.attempts.iter().find(|a| a.state == "succeeded").unwrap();
    assert_ne!(winner.worker, first.worker);
    // The worker came back as a new incarnation.
    let workers = c.job_client().await.unwrap().workers().await.unwrap();
    assert!(workers.iter().all(|w| w.worker_id != first.worker));
}

#[tokio::test]
async fn deleted_and_corrupt_map_outputs_are_produced_again() {
    let _serial = SERIAL.lock().await;
    let c = cluster().await;
    standard_input(&c).await;
    let want = reference(&c, "/in").await;
    let job = start(
        &c,
        &[
            "faulty",
            "--input",
            "/in",
            "--output",
            "/out",
            "--reducers",
            "2",
            "-D",
            "faulty.slow.tasks=m2",
            "-D",
            "faulty.slow.ms=6000",
            "-D",
            "mapred.speculative=false",
            "-D",
            "mapred.reduce.fetch.backoff.ms=100",
        ],
    );
    let file = |a: &pb::AttemptStatus| {
        let w = process_of(&c, &a.worker);
        c.data_dir(&w).unwrap().join("jobs").join(&job).join(&a.attempt_id).join("file.out")
    };
    let m0 = succeeded_attempt(&c, &job, "_m_000000").await;
    let m1 = succeeded_attempt(&c, &job, "_m_000001").await;
    std::fs::remove_file(file(&m0)).unwrap();
    let corrupt = file(&m1);
    let mut bytes = std::fs::read(&corrupt).unwrap();
    assert!(bytes.len() > 100, "map 1 wrote output");
    for b in &mut bytes[20..] {
        *b ^= 0x5a;
    }
    std::fs::write(&corrupt, &bytes).unwrap();
    let end = wait_end(&c, &job).await;
    assert_eq!(end.state, "succeeded", "{}", end.error);
    assert!(read_parts(&c, "/out").await == want, "output differs from the fault-free run");
    for (suffix, attempt) in [("_m_000000", &m0), ("_m_000001", &m1)] {
        let t = task(&end, suffix);
        let old = t.attempts.iter().find(|a| a.attempt_id == attempt.attempt_id).unwrap();
        assert_eq!(old.state, "failed", "{t:?}");
        assert!(old.error.contains("could not be fetched"), "{t:?}");
        assert_eq!(t.attempts.last().unwrap().state, "succeeded", "{t:?}");
    }
    assert_eq!(counter(&end, "job", "NUM_FAILED_MAPS"), 2);
}

#[tokio::test]
async fn a_reducer_that_always_fails_fails_the_job_and_says_why() {
    let _serial = SERIAL.lock().await;
    let c = cluster().await;
    let out = submit(
        &c,
        &[
            "fail",
            "--output",
            "/failed",
            "--reducers",
            "1",
            "-D",
            "mapred.generate.maps=2",
            "-D",
            "fail.map=false",
            "-D",
            "fail.reduce=true",
        ],
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    let err = &out.stderr;
    assert!(err.contains("_r_000000 failed 4 times; last error: "), "{err}");
    for n in 0..4 {
        assert!(err.contains(&format!("_r_000000_{n} on worker-")), "attempt {n}: {err}");
    }
    assert!(err.contains("reduce failed on purpose"), "the stderr of the last attempt: {err}");
    let job = out
        .stdout_str()
        .lines()
        .find_map(|l| {
            l.strip_prefix("job ").and_then(|r| r.split_whitespace().next()).map(str::to_owned)
        })
        .unwrap();
    let st = c.mr("mapred", &["status", &job]);
    assert_eq!(st.code(), Some(1));
    let text = st.stdout_str();
    assert!(text.contains("failed 4 times"), "{text}");
    assert!(text.contains("reduce failed on purpose"), "{text}");
    let client = c.client().await.unwrap();
    assert!(client.try_stat("/failed/_SUCCESS").await.unwrap().is_none());
    tests::wait_until(
        "the temporaries to be cleaned",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { client.try_stat("/failed/_temporary").await.is_ok_and(|s| s.is_none()) },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_straggler_is_overtaken_by_a_backup_and_otherwise_tasks_run_once() {
    let _serial = SERIAL.lock().await;
    let c = cluster().await;
    standard_input(&c).await;
    // Without stragglers (speculation on): every task runs exactly once.
    let want = reference(&c, "/in").await;
    let jobs = c.job_client().await.unwrap();
    let first = jobs.list(true).await.unwrap().remove(0);
    let s = status(&c, &first.job_id).await;
    assert!(s.tasks.iter().all(|t| t.attempts.len() == 1), "{s:?}");
    assert_eq!(counter(&s, "job", "TOTAL_LAUNCHED_MAPS"), s.maps as u64);
    assert_eq!(counter(&s, "job", "TOTAL_LAUNCHED_REDUCES"), 2);
    // Map 1's first attempt takes a minute: a backup on another worker finishes first.
    let job = start(
        &c,
        &[
            "faulty",
            "--input",
            "/in",
            "--output",
            "/out",
            "--reducers",
            "2",
            "-D",
            "faulty.slow.tasks=m1",
            "-D",
            "faulty.slow.ms=60000",
        ],
    );
    let end = wait_end(&c, &job).await;
    assert_eq!(end.state, "succeeded", "{}", end.error);
    assert!(read_parts(&c, "/out").await == want, "output differs from the fault-free run");
    let m1 = task(&end, "_m_000001");
    assert_eq!(m1.attempts.len(), 2, "{m1:?}");
    assert_eq!(m1.attempts[0].state, "killed", "{m1:?}");
    assert!(m1.attempts[0].error.contains("finished first"), "{m1:?}");
    assert_eq!(m1.attempts[1].state, "succeeded", "{m1:?}");
    assert_ne!(m1.attempts[0].worker, m1.attempts[1].worker);
}

#[tokio::test]
async fn a_coordinator_restart_reports_running_jobs_failed() {
    let _serial = SERIAL.lock().await;
    let mut c = cluster().await;
    standard_input(&c).await;
    let job = start(
        &c,
        &[
            "faulty",
            "--input",
            "/in",
            "--output",
            "/out",
            "--reducers",
            "2",
            "-D",
            "faulty.slow.tasks=m0",
            "-D",
            "faulty.slow.ms=30000",
        ],
    );
    succeeded_attempt(&c, &job, "_m_000001").await;
    c.restart("coordinator").await.unwrap();
    let s = wait_end(&c, &job).await;
    assert_eq!(s.state, "failed");
    assert!(s.error.contains("coordinator restarted"), "{}", s.error);
    let client = c.client().await.unwrap();
    tests::wait_until(
        "the temporaries to be cleaned",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { client.try_stat("/out/_temporary").await.is_ok_and(|s| s.is_none()) },
    )
    .await
    .unwrap();
    assert!(client.try_stat("/out/_SUCCESS").await.unwrap().is_none());
    // The restarted coordinator runs new jobs on the re-registered workers.
    c.wait_for_workers(3, Duration::from_secs(30)).await.unwrap();
    submit(&c, &["faulty", "--input", "/in", "--output", "/again", "--reducers", "2"]).assert_ok();
}
