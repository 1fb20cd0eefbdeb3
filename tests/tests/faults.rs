//! Fault tests on a real mini cluster: a corrupt replica on disk, a chunkserver killed or
//! frozen, the master killed and restarted, chunkservers out of space. Conditions that
//! settle eventually are polled with generous deadlines, never timed.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use proto::gfs::ChunkserverState;
use tests::data::random_bytes;
use tests::{ClusterOptions, CmdOutput, DEFAULT_POLL, DEFAULT_TIMEOUT, MiniCluster, wait_until};

const MIB: usize = 1 << 20;

async fn cluster(options: ClusterOptions) -> MiniCluster {
    match MiniCluster::start(options).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    }
}

/// The chunks of `path` with replicas in the order the master gives this host's readers.
fn put(c: &MiniCluster, remote: &str, data: &[u8]) {
    c.dfs_with_stdin(&["put", "-p", "-", remote], Some(data)).assert_ok();
}

/// Runs `dfs ARGS` with `DFS_RETRY_SECONDS` set: 0 fails at once when the master is
/// unreachable (instead of waiting the default 60 s for it to come back).
fn dfs_retrying_for(c: &MiniCluster, secs: u32, args: &[&str], stdin: Option<&[u8]>) -> CmdOutput {
    let mut cmd = c.dfs_cmd();
    cmd.env("DFS_RETRY_SECONDS", secs.to_string());
    tests::command::run(cmd, args, stdin).expect("dfs runs")
}

async fn live_chunkservers(c: &MiniCluster) -> usize {
    let live = ChunkserverState::Live as i32;
    match c.cluster_report().await {
        Ok(r) => r.chunkservers.iter().filter(|s| s.state == live).count(),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn corrupt_replica_is_detected_and_read_around() {
    let c = cluster(ClusterOptions::for_tests()).await;
    let data = random_bytes(11, 3 * MIB + 4321);
    put(&c, "/c/file", &data);

    // Corrupt chunk 1's replica that readers on this host try first.
    let chunks = c.locations("/c/file").await.expect("locations");
    assert_eq!(chunks.len(), 4);
    let chunk = &chunks[1];
    let first = chunk.replicas.first().expect("chunk has replicas");
    let cs = c.chunkserver_by_addr(&first.addr).expect("replica on a known chunkserver").clone();
    let replica = c.replica_path(&cs.name, chunk.handle).unwrap();
    flip_byte(&replica, 12345);
    let handle = format!("{:016x}", chunk.handle);

    // Every read returns the right bytes; one of them reports the bad replica, after which
    // fsck shows it corrupt.
    let mut last = String::new();
    let reported =
        wait_until("fsck to show the replica corrupt", DEFAULT_TIMEOUT, DEFAULT_POLL, || {
            let out = c.dfs(&["cat", "/c/file"]);
            let read_ok = out.code() == Some(0) && out.stdout == data;
            assert!(read_ok, "read after corruption: {}", out.describe());
            let fsck = c.dfs(&["fsck", "/c", "--json"]);
            last = fsck.describe();
            let corrupt = serde_json::from_slice::<dfs::FsckReport>(&fsck.stdout).is_ok_and(|r| {
                r.files.iter().flat_map(|f| &f.chunks).any(|ch| {
                    ch.handle == handle
                        && ch.replicas.iter().any(|rep| {
                            rep.addr == cs.addr && rep.state == dfs::ReplicaState::Corrupt
                        })
                })
            });
            async move { corrupt }
        })
        .await;
    assert!(reported.is_ok(), "{}\nlast fsck: {last}", reported.unwrap_err());
    c.assert_cat("/c/file", &data);
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes[offset] ^= 0x5a;
    std::fs::write(path, &bytes).unwrap();
}

#[tokio::test]
async fn reads_fail_over_when_a_chunkserver_dies() {
    let mut c = cluster(ClusterOptions::for_tests()).await;
    let files: Vec<(String, Vec<u8>)> = [(1, 1536 * 1024), (2, 2 * MIB + 3), (3, 700 * 1024)]
        .into_iter()
        .map(|(seed, size)| (format!("/fo/f{seed}"), random_bytes(seed, size)))
        .collect();
    for (path, data) in &files {
        put(&c, path, data);
    }

    // Kill the chunkserver a reader here would try first for the first file.
    let first = c.locations(&files[0].0).await.expect("locations")[0].replicas[0].addr.clone();
    let victim = c.chunkserver_by_addr(&first).unwrap().name.clone();
    let victim_addr = c.chunkserver(&victim).unwrap().addr.clone();
    c.kill(&victim).unwrap();
    for (path, data) in &files {
        c.assert_cat(path, data);
    }

    // Once the master declares it dead, writes go elsewhere and reads still work.
    wait_until(
        "the master to declare the chunkserver dead",
        DEFAULT_TIMEOUT,
        DEFAULT_POLL,
        || async { live_chunkservers(&c).await == 3 },
    )
    .await
    .unwrap();
    let fresh = random_bytes(4, 2 * MIB + 100);
    put(&c, "/fo/after", &fresh);
    c.assert_cat("/fo/after", &fresh);
    for chunk in c.locations("/fo/after").await.expect("locations") {
        assert!(chunk.replicas.iter().all(|r| r.addr != victim_addr), "replica on the dead node");
    }
    for (path, data) in &files {
        c.assert_cat(path, data);
    }

    // It comes back on the same address with its data.
    c.restart(&victim).await.unwrap();
    assert_eq!(c.chunkserver(&victim).unwrap().addr, victim_addr);
    wait_until("the chunkserver to be live again", DEFAULT_TIMEOUT, DEFAULT_POLL, || async {
        live_chunkservers(&c).await == 4
    })
    .await
    .unwrap();
    for (path, data) in &files {
        c.assert_cat(path, data);
    }
}

#[tokio::test]
async fn frozen_chunkserver_is_declared_dead_and_avoided() {
    let mut c = cluster(ClusterOptions::for_tests()).await;
    c.stop("cs-2").unwrap();
    // SIGSTOP is delivered asynchronously; /proc shows it a moment later.
    let mut stopped = false;
    for _ in 0..600 {
        stopped = c.state("cs-2").unwrap() == tests::ProcessState::Stopped;
        if stopped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stopped, "cs-2 never showed as stopped");
    wait_until("the master to declare cs-2 dead", DEFAULT_TIMEOUT, DEFAULT_POLL, || async {
        live_chunkservers(&c).await == 3
    })
    .await
    .unwrap();
    let data = random_bytes(21, 2 * MIB + 1);
    put(&c, "/frozen/f", &data);
    let frozen = c.chunkserver("cs-2").unwrap().addr.clone();
    for chunk in c.locations("/frozen/f").await.expect("locations") {
        assert!(chunk.replicas.iter().all(|r| r.addr != frozen), "replica on the frozen node");
        let racks: BTreeSet<_> = chunk.replicas.iter().map(|r| r.rack.clone()).collect();
        assert_eq!((chunk.replicas.len(), racks.len()), (3, 2), "placement of {}", chunk.handle);
    }
    c.cont("cs-2").unwrap();
    wait_until("cs-2 to be live again", DEFAULT_TIMEOUT, DEFAULT_POLL, || async {
        live_chunkservers(&c).await == 4
    })
    .await
    .unwrap();
    c.assert_cat("/frozen/f", &data);
}

#[tokio::test]
async fn master_restart_keeps_the_namespace() {
    let mut c = cluster(ClusterOptions::for_tests()).await;
    let data = random_bytes(31, MIB + MIB / 2);
    put(&c, "/m/file", &data);
    c.dfs(&["mkdir", "-p", "/m/empty/dir"]).assert_ok();

    c.kill("master").unwrap();
    let err = dfs_retrying_for(&c, 0, &["ls", "/"], None).assert_fails(1, "dfs: ");
    assert!(err.contains(c.master_addr()), "the error names the master: {err}");
    let err = dfs_retrying_for(&c, 0, &["cat", "/m/file"], None).assert_fails(1, "dfs: ");
    assert!(err.contains(c.master_addr()), "the error names the master: {err}");

    c.restart("master").await.unwrap();
    c.dfs(&["stat", "/m/empty/dir"]).assert_ok();
    // The master may stay read-only (safe mode) until enough chunks are reported.
    let mut last = String::new();
    let readable = wait_until("the file to read back", DEFAULT_TIMEOUT, DEFAULT_POLL, || {
        let out = c.dfs(&["cat", "/m/file"]);
        last = out.describe();
        let ok = out.code() == Some(0) && out.stdout == data;
        async move { ok }
    })
    .await;
    assert!(readable.is_ok(), "{last}");
    // And it accepts writes again.
    let more = random_bytes(32, 100_000);
    let mut last = String::new();
    let writable =
        wait_until("a write to succeed", DEFAULT_TIMEOUT, Duration::from_millis(500), || {
            let out = c.dfs_with_stdin(&["put", "-f", "-", "/m/more"], Some(&more));
            last = out.describe();
            let ok = out.code() == Some(0);
            async move { ok }
        })
        .await;
    assert!(writable.is_ok(), "{last}");
    c.assert_cat("/m/more", &more);
}

#[tokio::test]
async fn full_disks_fail_the_write_cleanly() {
    let options = ClusterOptions { capacity: Some(3 * MIB as u64), ..ClusterOptions::for_tests() };
    let c = cluster(options).await;
    // A small file fits.
    let small = random_bytes(41, MIB / 2);
    put(&c, "/full/small", &small);

    // 4 chunkservers x 3 MiB hold 4 MiB at replication 3: 8 MiB cannot fit.
    let big = random_bytes(42, 8 * MIB);
    // Full disks are not a condition to wait out; a short retry budget bounds the test's
    // time if the client does treat it as one.
    let out = dfs_retrying_for(&c, 5, &["put", "-", "/full/big"], Some(&big));
    let err = out.assert_fails(1, "dfs: ");
    let lower = err.to_lowercase();
    assert!(
        ["space", "full", "capacity", "chunkserver"].iter().any(|w| lower.contains(w)),
        "the error says the chunkservers are full: {err}"
    );
    let client = c.client().await.unwrap();
    let names: Vec<String> =
        client.list("/full").await.unwrap().into_iter().map(|s| s.path.to_string()).collect();
    assert_eq!(names, ["/full/small"], "no partial file (nor ._COPYING_ temporary) is left");
    c.assert_cat("/full/small", &small);
}
