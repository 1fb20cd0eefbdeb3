//! The longest legal paths on a real mini cluster: a file open for writing whose path is
//! exactly at the limit, a rename that would push it over refused (nothing moves), one that
//! keeps within it accepted; then everything that walks the namespace's own paths in the
//! background or for an operator (fsck, du, ls -R, metasave, lease recovery of
//! the abandoned writer, a master restart replaying the log) works on them, and the
//! master's monitor is still alive afterwards (it notices a killed chunkserver).
//!
//! 3 chunkservers, replication 2, 1 MiB chunks, 200 ms heartbeats; leases: soft 1 s,
//! hard 3 s.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use proto::gfs as pb;
use proto::path::{MAX_COMPONENT_LEN, MAX_PATH_LEN};
use tests::data::random_bytes;
use tests::{ClusterOptions, DEFAULT_POLL, MiniCluster, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// `dfs put` writes to `DST._COPYING_` and renames it when done (as `hdfs dfs -put`).
const COPYING: &str = "._COPYING_";

/// `/d/<n x 200>/<n x 200>/...`: directories down to where one more would not fit, and
/// the destination of a `dfs put` there whose temporary name (the open file) is
/// `MAX_PATH_LEN` bytes long, the longest legal.
fn deep_paths() -> (String, String) {
    let name = "n".repeat(200);
    let mut dir = String::from("/d");
    while dir.len() + 1 + name.len() + 2 + COPYING.len() < MAX_PATH_LEN {
        dir = format!("{dir}/{name}");
    }
    let left = MAX_PATH_LEN - dir.len() - 1 - COPYING.len();
    assert!((1..=MAX_COMPONENT_LEN).contains(&left), "the file name fits a component");
    let dst = format!("{dir}/{}", "f".repeat(left));
    assert_eq!(dst.len() + COPYING.len(), MAX_PATH_LEN);
    (dir, dst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_paths_survive_renames_fsck_du_metasave_and_lease_recovery() {
    let options = ClusterOptions {
        chunkservers: 3,
        replication: 2,
        master_args: vec![
            "--lease-soft-limit-ms".into(),
            "1000".into(),
            "--lease-hard-limit-ms".into(),
            "3000".into(),
        ],
        ..ClusterOptions::for_tests()
    };
    let mut c = match MiniCluster::start(options).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    };
    let (dir, dst) = deep_paths();
    c.dfs(&["mkdir", "-p", &dir]).assert_ok();
    let done = random_bytes(1, 300_000);
    let closed_file = format!("{dir}/x");
    c.dfs_with_stdin(&["put", "-", &closed_file], Some(&done)).assert_ok();

    // A writer holds the longest file open, with a chunk finished, then dies.
    let data = random_bytes(2, 2 << 20);
    let mut cmd = c.dfs_cmd();
    let tmp = format!("{dst}{COPYING}");
    cmd.args(["put", "-", &dst]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut writer = cmd.spawn().expect("dfs put runs");
    let mut stdin = writer.stdin.take().expect("stdin");
    stdin.write_all(&data[..(1 << 20) + 4096]).expect("feed the writer");
    stdin.flush().expect("flush");
    let started = wait_until("the writer to finish a chunk", WAIT, DEFAULT_POLL, || {
        let fut = c.fsck("/");
        let tmp = tmp.clone();
        async move {
            fut.await.ok().is_some_and(|r| {
                r.files
                    .iter()
                    .any(|f| f.path == tmp && f.under_construction && !f.chunks.is_empty())
            })
        }
    })
    .await;
    assert!(started.is_ok(), "{}", started.unwrap_err());

    // One byte longer for everything below /d: refused, nothing moves.
    let out = c.dfs(&["mv", "/d", "/dd"]);
    let line = out.assert_fails(1, "dfs: mv: ");
    assert!(line.contains("over the limit of 8000"), "{line}");
    c.dfs(&["stat", &tmp]).assert_ok();
    // Into a directory whose name adds to every path below: refused too.
    c.dfs(&["mkdir", "/e"]).assert_ok();
    c.dfs(&["mv", "/d", "/e"]).assert_fails(1, "dfs: mv: ");
    // The same length: accepted, the open file moves with it.
    c.dfs(&["mv", "/d", "/z"]).assert_ok();
    let moved = format!("/z{}", &tmp[2..]);
    let moved_closed = format!("/z{}", &closed_file[2..]);
    assert_eq!(moved.len(), MAX_PATH_LEN);

    writer.kill().expect("kill the writer");
    let _ = writer.wait();
    drop(stdin);

    // What walks the namespace's own paths.
    let fsck = c.dfs(&["fsck", "/", "--openforwrite"]);
    assert!(fsck.stdout_str().contains(&moved), "fsck names the longest path");
    let du = c.dfs(&["du", "-s", "/z"]);
    du.assert_ok();
    let ls = c.dfs(&["ls", "-R", "/z"]);
    assert!(ls.assert_ok().stdout_str().contains(&moved_closed), "ls -R lists the deep file");
    let meta = c.dfs(&["admin", "metasave"]);
    assert!(meta.assert_ok().stdout_str().contains(&moved), "metasave names the open file");

    // Lease recovery closes the abandoned file at its full path.
    let client = c.client().await.expect("client");
    let closed = wait_until("lease recovery to close the longest file", WAIT, DEFAULT_POLL, || {
        let fut = client.stat(moved.as_str());
        async move { fut.await.is_ok_and(|s| !s.under_construction) }
    })
    .await;
    assert!(closed.is_ok(), "{}", closed.unwrap_err());
    let got = client.read_all(moved.as_str()).await.expect("read the recovered file");
    assert!(got.len() >= 1 << 20 && got[..] == data[..got.len()], "a prefix: {} bytes", got.len());

    // A restart replays the renames and the recovery through the same paths.
    c.restart("master").await.expect("restart the master");
    c.wait_for_live_chunkservers(3, WAIT).await.expect("chunkservers back");
    c.assert_cat(&moved_closed, &done);
    let again = c.client().await.expect("client").read_all(moved.as_str()).await.expect("read");
    assert!(again == got, "the same bytes after a restart");

    // The monitor still runs: it declares a killed chunkserver dead.
    c.kill("cs-3").expect("kill cs-3");
    let dead = wait_until("the master to see cs-3 dead", WAIT, DEFAULT_POLL, || {
        let fut = c.cluster_report();
        async move {
            fut.await.ok().is_some_and(|r| {
                r.chunkservers
                    .iter()
                    .filter(|s| s.state == pb::ChunkserverState::Dead as i32)
                    .count()
                    == 1
            })
        }
    })
    .await;
    assert!(dead.is_ok(), "{}", dead.unwrap_err());
}
