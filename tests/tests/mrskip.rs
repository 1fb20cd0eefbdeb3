//! Record skipping on a real mini cluster (3 chunkservers + 3 workers, 1 MiB chunks):
//! crashes that have nothing to do with the record never cost a record, and records that
//! crash every time (panic, abort, segfault, hang) are skipped, listed and reported.
//!
//! The two scenarios run one at a time (a shared lock): the second leans on task
//! timeouts measured in seconds, which a machine running both clusters would stretch.

use std::collections::BTreeMap;
use std::time::Duration;

use proto::mapred as pb;
use tests::data::{join_lines, word_lines};
use tests::{ClusterOptions, MiniCluster};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const JOB_TIMEOUT: Duration = Duration::from_secs(240);

async fn cluster() -> MiniCluster {
    let options = ClusterOptions { chunkservers: 3, ..ClusterOptions::for_mapreduce_tests() };
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

/// Every line of every file under `OUT/_skipped` (none if it does not exist).
async fn skipped_lines(c: &MiniCluster, out: &str) -> Vec<String> {
    let client = c.client().await.unwrap();
    let dir = format!("{out}/_skipped");
    if client.try_stat(dir.as_str()).await.unwrap().is_none() {
        return Vec::new();
    }
    let mut lines = Vec::new();
    for f in client.list(dir.as_str()).await.unwrap() {
        let data = client.read_all(f.path.as_str()).await.unwrap();
        lines.extend(String::from_utf8(data).unwrap().lines().map(str::to_owned));
    }
    lines.sort();
    lines
}

fn submit(c: &MiniCluster, args: &[&str]) -> tests::CmdOutput {
    let mut all = vec!["submit", "faulty", "--reducers", "2"];
    all.extend_from_slice(args);
    c.mr("mapred-examples", &all)
}

async fn wait_end(c: &MiniCluster, job: &str) -> pb::JobStatus {
    c.wait_job_end(job, JOB_TIMEOUT).await.expect("the job ends")
}

fn counter(s: &pb::JobStatus, group: &str, name: &str) -> u64 {
    mapred::Counters::from_proto(&s.counters).get(group, name)
}

/// The scenario: every map and reduce attempt, replays included, exits with
/// probability 1/3 at the first record or key group it processes, with default skip
/// settings, for seeds 1 to 8 (the old rule, skipping after two crashes, lost records
/// with seeds 1, 5 and 6). The faults are seeded per task and attempt number, so each
/// seed replays the same faults run after run. Every job must succeed with output
/// identical to the fault-free run, and nothing skipped.
#[tokio::test]
async fn random_exits_at_the_first_record_never_cost_a_record() {
    let _serial = SERIAL.lock().await;
    let c = cluster().await;
    // ~1.2 MiB: two splits, two reduces.
    put(&c, "/in/text", &join_lines(&word_lines(5, 40_000, 9000))).await;
    submit(&c, &["--input", "/in", "--output", "/ref"]).assert_ok();
    let want = read_parts(&c, "/ref").await;
    assert_eq!(want.len(), 2);
    let seeds = 1..=8;
    let mut jobs = Vec::new();
    for seed in seeds.clone() {
        let (out, seed) = (format!("/out{seed}"), format!("faulty.seed={seed}"));
        let args = ["--input", "/in", "--output", &out, "-D", "faulty.first.rate=0.3333"];
        let mut args = args.to_vec();
        args.extend(["-D", &seed, "--detach"]);
        jobs.push(submit(&c, &args).assert_ok().stdout_str().trim().to_owned());
    }
    let mut crashes = 0;
    for (seed, job) in seeds.zip(&jobs) {
        let end = wait_end(&c, job).await;
        let out = format!("/out{seed}");
        assert_eq!(end.state, "succeeded", "seed {seed}: {}", end.error);
        assert_eq!(end.skipped_records, 0, "seed {seed}: {:?}", end.counters);
        assert!(skipped_lines(&c, &out).await.is_empty(), "seed {seed}");
        assert!(read_parts(&c, &out).await == want, "seed {seed}: output differs");
        crashes += counter(&end, "job", "NUM_FAILED_MAPS")
            + counter(&end, "job", "NUM_FAILED_REDUCES")
            + counter(&end, "job", "NUM_REPLAYS_CRASHED");
        // What a user sees: a clean success.
        let st = c.mr("mapred", &["status", job]);
        assert_eq!(st.code(), Some(0), "{}", st.describe());
        assert!(!st.stdout_str().contains("skipped record"), "{}", st.describe());
    }
    assert!(crashes >= 8, "faults happened: {crashes}");
}

/// True poison: one line per map split that panics, aborts, segfaults or hangs every
/// time, and one key group that panics the reducer every time. Exactly those are skipped
/// (after two crashes and three crashed replays each) and listed with where they are,
/// `submit` says so and exits 3, `mapred status` shows it, and everything else is
/// counted exactly as in a fault-free run over the input without them.
#[tokio::test]
async fn poison_records_and_groups_are_skipped_listed_and_reported() {
    let _serial = SERIAL.lock().await;
    let c = cluster().await;
    // ~3.8 MiB: four 1 MiB splits, a poison line 100 kB into each.
    let clean = word_lines(23, 120_000, 9000);
    let poison = [
        "POISON_PANIC alpha w1",
        "POISON_ABORT beta w2",
        "POISON_SEGV gamma w3",
        "POISON_HANG delta w4",
    ];
    let mut dirty: Vec<Vec<u8>> = Vec::new();
    let (mut bytes, mut next) = (0usize, 0usize);
    for l in &clean {
        if next < poison.len() && bytes >= (next << 20) + 100_000 {
            dirty.push(poison[next].as_bytes().to_vec());
            next += 1;
        }
        bytes += l.len() + 1;
        dirty.push(l.clone());
    }
    assert_eq!(next, poison.len(), "the input spans four splits");
    dirty.insert(60_000, b"BADKEY_PANIC".to_vec());
    let dirty_bytes = join_lines(&dirty);
    put(&c, "/clean/text", &join_lines(&clean)).await;
    put(&c, "/dirty/text", &dirty_bytes).await;
    submit(&c, &["--input", "/clean", "--output", "/ref"]).assert_ok();
    let want = read_parts(&c, "/ref").await;
    // A bad allowance is refused before anything runs.
    let bad = submit(&c, &["--input", "/dirty", "--output", "/x", "-D", "mapred.skip.allowed=x"]);
    assert_eq!(bad.code(), Some(1), "{}", bad.describe());
    let timeouts = ["-D", "mapred.task.timeout.ms=3000", "-D", "faulty.hang.ms=60000"];
    let mut args = vec!["--input", "/dirty", "--output", "/out"];
    args.extend(timeouts);
    let out = submit(&c, &args);
    assert_eq!(out.code(), Some(3), "{}", out.describe());
    assert!(!out.stderr.contains("panicked at"), "only the tasks panic: {}", out.describe());
    let summary = "succeeded with 5 skipped records (listed in /out/_skipped)";
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.ends_with(summary), "{}", out.describe());
    assert!(read_parts(&c, "/out").await == want, "every other record counted exactly once");
    // Listed: where each is (file, byte offset, index in its split) and what it is.
    let listed = skipped_lines(&c, "/out").await;
    assert_eq!(listed.len(), 5, "{listed:#?}");
    let mut records = Vec::new();
    for l in &listed {
        let f: Vec<&str> = l.splitn(4, '\t').collect();
        assert_eq!(f.len(), 4, "{l}");
        if f[0].starts_with("partition ") {
            assert_eq!((f[1], f[3]), ("-", "BADKEY_PANIC"), "{l}");
            continue;
        }
        assert_eq!(f[0], "/dirty/text", "{l}");
        let offset: usize = f[1].parse().unwrap();
        assert_eq!(&dirty_bytes[offset..offset + f[3].len() + 1], format!("{}\n", f[3]).as_bytes());
        records.push(f[3].to_owned());
    }
    records.sort();
    let mut expected: Vec<String> = poison.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(records, expected);
    let client = c.client().await.unwrap();
    assert!(client.try_stat("/out/_SUCCESS").await.unwrap().is_some());
    // `mapred status` shows the same, and exits 3 as well.
    let job = out
        .stdout_str()
        .lines()
        .find_map(|l| l.strip_prefix("job ").and_then(|r| r.split_whitespace().next()))
        .unwrap()
        .to_owned();
    let st = c.mr("mapred", &["status", &job]);
    assert_eq!(st.code(), Some(3), "{}", st.describe());
    let text = st.stdout_str();
    assert!(text.contains(summary), "{text}");
    assert!(text.contains("(replay of record"), "{text}");
    let s = c.job_client().await.unwrap().status(&job).await.unwrap();
    assert_eq!(counter(&s, "mapred", "MAP_SKIPPED_RECORDS"), 4);
    assert_eq!(counter(&s, "mapred", "REDUCE_SKIPPED_GROUPS"), 1);
    assert_eq!(counter(&s, "job", "NUM_REPLAYS_CRASHED"), 15, "three replays each");
    assert_eq!(counter(&s, "job", "NUM_SUSPECTS_CLEARED"), 0);
}
