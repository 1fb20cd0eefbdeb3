//! The `minicluster` binary end to end: `up` in the background, `status`, `kill`, `stop`,
//! `cont`, `start`, a refused second `up`, and `down`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tests::command::{CmdOutput, run};
use tests::data::random_bytes;
use tests::{MiniCluster, ProcessState};

fn minicluster(args: &[&str]) -> CmdOutput {
    run(Command::new(env!("CARGO_BIN_EXE_minicluster")), args, None).expect("minicluster runs")
}

/// Kills whatever `minicluster up` left running if the test fails half-way: those
/// processes are detached on purpose and would otherwise outlive the test.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        if let Ok(mut cluster) = MiniCluster::attach(&self.0) {
            let _ = cluster.shutdown(Duration::ZERO);
        }
    }
}

/// `status` as (name, state) pairs.
fn status(dir: &str) -> Vec<(String, String)> {
    let out = minicluster(&["status", "--dir", dir]);
    out.assert_ok()
        .stdout_str()
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_owned(), cols[4].to_owned())
        })
        .collect()
}

/// Waits (a signal is delivered asynchronously) until `status` shows `name` as `want`.
#[track_caller]
fn assert_state(dir: &str, name: &str, want: &str) {
    let state_of =
        || status(dir).into_iter().find(|(n, _)| n == name).map(|(_, s)| s).unwrap_or_default();
    let start = std::time::Instant::now();
    while state_of() != want && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(state_of(), want, "state of {name}");
}

#[tokio::test]
async fn up_status_kill_start_down() {
    let temp = tempfile::tempdir().unwrap();
    let dir_path: &Path = temp.path();
    let dir = dir_path.to_str().unwrap();
    let _guard = Down(dir_path.to_owned());

    let up = minicluster(&[
        "up",
        "--dir",
        dir,
        "--chunkservers",
        "3",
        "--chunk-size",
        "1MiB",
        "--heartbeat-ms",
        "200",
        "--dead-after-ms",
        "2000",
    ]);
    let stdout = up.assert_ok().stdout_str();
    let master = stdout
        .lines()
        .next()
        .unwrap_or_default()
        .strip_prefix("export DFS_MASTER=")
        .unwrap_or_else(|| panic!("up prints the export line: {}", up.describe()))
        .to_owned();

    // cluster.json has stable field names that scripts can read.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir_path.join("cluster.json")).unwrap())
            .unwrap();
    assert_eq!(json["master"]["addr"], master.as_str());
    assert_eq!(json["chunkservers"].as_array().unwrap().len(), 3);
    assert_eq!(json["chunkservers"][1]["rack"], "/rack-b");
    assert_eq!(json["chunkservers"][2]["name"], "cs-3");

    let names: Vec<String> = status(dir).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["master", "cs-1", "cs-2", "cs-3", "coordinator", "w-1", "w-2", "w-3"]);
    assert!(status(dir).iter().all(|(_, s)| s == "up"), "{:?}", status(dir));

    // The cluster serves data through the printed address.
    let cluster = MiniCluster::attach(dir_path).unwrap();
    let data = random_bytes(1, 1_500_000);
    let mut dfs = Command::new(cluster.binary("dfs"));
    dfs.env("DFS_MASTER", &master);
    run(dfs, &["put", "-", "/hello"], Some(&data)).unwrap().assert_ok();

    // A second `up` on a live cluster is refused.
    let err = minicluster(&["up", "--dir", dir]).assert_fails(1, "minicluster: error: ");
    assert!(err.contains("already running"), "{err}");

    minicluster(&["kill", "--dir", dir, "cs-2"]).assert_ok();
    assert_state(dir, "cs-2", "dead");
    minicluster(&["kill", "--dir", dir, "cs-2"]).assert_fails(1, "minicluster: error: ");
    minicluster(&["stop", "--dir", dir, "cs-1"]).assert_ok();
    assert_state(dir, "cs-1", "stopped");
    minicluster(&["cont", "--dir", dir, "cs-1"]).assert_ok();
    assert_state(dir, "cs-1", "up");
    minicluster(&["start", "--dir", dir, "cs-2"]).assert_ok();
    assert_state(dir, "cs-2", "up");
    minicluster(&["kill", "--dir", dir, "cs-9"]).assert_fails(1, "minicluster: error: ");

    let mut dfs = Command::new(cluster.binary("dfs"));
    dfs.env("DFS_MASTER", &master);
    let cat = run(dfs, &["cat", "/hello"], None).unwrap();
    assert!(cat.assert_ok().stdout == data, "read back through the restarted cluster");

    minicluster(&["down", "--dir", dir]).assert_ok();
    assert!(status(dir).iter().all(|(_, s)| s == "dead"), "{:?}", status(dir));
    for p in cluster.spec().processes() {
        assert_eq!(tests::process::probe(p), ProcessState::Exited, "{} still running", p.name);
    }
    // Bad usage and a directory without a cluster.
    minicluster(&["up"]).assert_fails(2, "");
    let empty = tempfile::tempdir().unwrap();
    minicluster(&["status", "--dir", empty.path().to_str().unwrap()])
        .assert_fails(1, "minicluster: error: ");
}

/// The arguments of the running process `pid`, from `/proc`.
fn cmdline(pid: u64) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// The pid `cluster.json` records for `name`.
fn pid_of(dir: &Path, name: &str) -> u64 {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
    let all = std::iter::once(&json["master"]).chain(json["chunkservers"].as_array().unwrap());
    all.filter(|p| p["name"] == name).find_map(|p| p["pid"].as_u64()).unwrap()
}

/// The first line `minicluster` printed on stderr, which must carry the reason.
fn first_error_line(out: &CmdOutput) -> String {
    assert_eq!(out.code(), Some(1), "must fail: {}", out.describe());
    assert!(!out.stderr.contains("panicked"), "{}", out.describe());
    out.stderr.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn up_passes_extra_args_and_start_keeps_them() {
    let temp = tempfile::tempdir().unwrap();
    let dir_path: &Path = temp.path();
    let dir = dir_path.to_str().unwrap();
    let _guard = Down(dir_path.to_owned());
    // Both spellings: `--flag=VALUE` and a separate value that starts with a dash.
    minicluster(&[
        "up",
        "--dir",
        dir,
        "--no-mapreduce",
        "--chunkservers",
        "2",
        "--chunk-size",
        "1MiB",
        "--heartbeat-ms",
        "200",
        "--master-arg=--safemode-extension-ms=0",
        "--master-arg",
        "--lease-soft-limit-ms",
        "--master-arg",
        "30000",
        "--chunkserver-arg=--full-report-secs=7",
    ])
    .assert_ok();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir_path.join("cluster.json")).unwrap())
            .unwrap();
    assert_eq!(
        json["options"]["master_args"],
        serde_json::json!(["--safemode-extension-ms=0", "--lease-soft-limit-ms", "30000"])
    );
    assert_eq!(json["options"]["chunkserver_args"], serde_json::json!(["--full-report-secs=7"]));
    let master_has = |args: &[String]| {
        args.iter().any(|a| a == "--safemode-extension-ms=0")
            && args.windows(2).any(|w| w[0] == "--lease-soft-limit-ms" && w[1] == "30000")
    };
    let cs_has = |args: &[String]| args.iter().any(|a| a == "--full-report-secs=7");
    assert!(master_has(&cmdline(pid_of(dir_path, "master"))));
    assert!(cs_has(&cmdline(pid_of(dir_path, "cs-1"))));
    assert!(cs_has(&cmdline(pid_of(dir_path, "cs-2"))));

    // Restarted processes get the same arguments back from cluster.json.
    minicluster(&["kill", "--dir", dir, "cs-1"]).assert_ok();
    minicluster(&["start", "--dir", dir, "cs-1"]).assert_ok();
    assert!(cs_has(&cmdline(pid_of(dir_path, "cs-1"))));
    minicluster(&["kill", "--dir", dir, "master"]).assert_ok();
    minicluster(&["start", "--dir", dir, "master"]).assert_ok();
    assert!(master_has(&cmdline(pid_of(dir_path, "master"))));
    minicluster(&["down", "--dir", dir]).assert_ok();

    // A flag the master does not know: `up` fails with the master's own complaint.
    let other = tempfile::tempdir().unwrap();
    let _other_guard = Down(other.path().to_owned());
    let out = minicluster(&[
        "up",
        "--dir",
        other.path().to_str().unwrap(),
        "--no-mapreduce",
        "--chunkservers",
        "1",
        "--master-arg=--no-such-flag",
    ]);
    let line = first_error_line(&out);
    assert!(line.starts_with("minicluster: error: master exited"), "{}", out.describe());
    assert!(line.contains("unexpected argument '--no-such-flag'"), "{}", out.describe());
}

#[tokio::test]
async fn a_master_that_cannot_recover_fails_start_and_up_with_its_reason() {
    let temp = tempfile::tempdir().unwrap();
    let dir_path: &Path = temp.path();
    let dir = dir_path.to_str().unwrap();
    let _guard = Down(dir_path.to_owned());
    let up_args = [
        "up",
        "--dir",
        dir,
        "--no-mapreduce",
        "--chunkservers",
        "1",
        "--replication",
        "1",
        "--chunk-size",
        "1MiB",
        "--heartbeat-ms",
        "200",
        "--master-arg=--safemode-extension-ms=0",
    ];
    minicluster(&up_args).assert_ok();
    let cluster = MiniCluster::attach(dir_path).unwrap();
    for d in ["/a", "/b", "/c"] {
        cluster.dfs(&["mkdir", d]).assert_ok();
    }
    minicluster(&["kill", "--dir", dir, "master"]).assert_ok();

    // Damage the first of several records: recovery must refuse, whatever the tail.
    let log_dir = dir_path.join("master/log");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .collect();
    segs.sort();
    let seg = segs.pop().expect("a log segment with records");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[10] ^= 0x20;
    std::fs::write(&seg, bytes).unwrap();

    let out = minicluster(&["start", "--dir", dir, "master"]);
    let line = first_error_line(&out);
    assert!(line.starts_with("minicluster: error: master exited"), "{}", out.describe());
    assert!(
        line.contains("master: error:") && line.contains(&seg.display().to_string()),
        "the master's reason, naming the damaged file: {}",
        out.describe()
    );
    assert!(!out.stderr.contains("started on"), "{}", out.describe());

    // `up` on the same data fails the same way.
    minicluster(&["down", "--dir", dir]).assert_ok();
    let out = minicluster(&up_args);
    let line = first_error_line(&out);
    assert!(line.starts_with("minicluster: error: master exited"), "{}", out.describe());
    assert!(line.contains("master: error:") && line.contains("checksum"), "{}", out.describe());
}
