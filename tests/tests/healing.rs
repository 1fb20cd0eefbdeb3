//! Self-healing fault tests on a real mini cluster (1 MiB chunks, 200 ms heartbeats, a
//! 2 s dead interval): re-replication after a chunkserver dies, pipeline recovery when a
//! chunkserver dies or hangs mid-write, failover when one hangs mid-read, stale replicas
//! deleted, the scrubber finding a corrupt replica, a read saying every replica is
//! corrupt, lease recovery of a killed writer, garbage collection (orphans included),
//! decommission under load, a whole rack lost.
//!
//! Everything that settles eventually is polled with generous deadlines, never timed.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use proto::gfs::{AdminState, ChunkHealth, FsckResponse, ReplicaState};
use tests::data::random_bytes;
use tests::{ClusterOptions, DEFAULT_POLL, MiniCluster, wait_until};

const MIB: usize = 1 << 20;
/// Healing waits: dead interval + a few dozen heartbeats, with room for a loaded machine.
const HEAL: Duration = Duration::from_secs(90);

async fn cluster(options: ClusterOptions) -> MiniCluster {
    match MiniCluster::start(options).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    }
}

fn options() -> ClusterOptions {
    ClusterOptions {
        master_args: vec!["--replication-timeout-ms".into(), "5000".into()],
        chunkserver_args: vec!["--pipeline-timeout-ms".into(), "1500".into()],
        ..ClusterOptions::for_tests()
    }
}

/// A client with short stream timeouts and small packets (so a chunk's pipeline is open
/// after a few hundred KiB), for tests that hang chunkservers.
async fn quick_client(c: &MiniCluster) -> dfs::Client {
    let cfg = dfs::ClientConfig {
        packet_size: 64 << 10,
        write_window: 256 << 10,
        ack_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(3),
        ..dfs::ClientConfig::default()
    };
    dfs::Client::connect(c.master_addr(), cfg).await.expect("client")
}

fn put(c: &MiniCluster, remote: &str, data: &[u8]) {
    c.dfs_with_stdin(&["put", "-p", "-", remote], Some(data)).assert_ok();
}

async fn fsck(c: &MiniCluster) -> Option<FsckResponse> {
    c.fsck("/").await.ok()
}

/// Per chunk of every closed file: (handle, healthy replica addrs, racks of those).
fn healthy_replicas(r: &FsckResponse) -> Vec<(u64, Vec<String>, BTreeSet<String>)> {
    let healthy = ReplicaState::Healthy as i32;
    r.files
        .iter()
        .filter(|f| !f.under_construction)
        .flat_map(|f| &f.chunks)
        .map(|ch| {
            let good: Vec<_> = ch
                .replicas
                .iter()
                .filter(|rep| rep.state == healthy)
                .filter_map(|rep| rep.server.clone())
                .collect();
            let racks = good.iter().map(|s| s.rack.clone()).collect();
            (ch.handle, good.into_iter().map(|s| s.addr).collect(), racks)
        })
        .collect()
}

/// Waits until every chunk has exactly `n` healthy replicas on at least `racks` racks,
/// none of them on `gone`.
async fn wait_replicated(c: &MiniCluster, n: usize, racks: usize, gone: &[String]) {
    let last = std::cell::RefCell::new(String::new());
    let done = wait_until("every chunk to be fully replicated", HEAL, DEFAULT_POLL, || {
        let fut = fsck(c);
        let last = &last;
        async move {
            let Some(r) = fut.await else { return false };
            let chunks = healthy_replicas(&r);
            *last.borrow_mut() = format!("{chunks:?}");
            !chunks.is_empty()
                && chunks.iter().all(|(_, addrs, rs)| {
                    addrs.len() == n && rs.len() >= racks && addrs.iter().all(|a| !gone.contains(a))
                })
        }
    })
    .await;
    assert!(done.is_ok(), "{}\nlast fsck: {}", done.unwrap_err(), last.borrow());
}

#[tokio::test]
async fn a_dead_chunkserver_is_replaced_and_every_file_reads_back() {
    let mut c = cluster(options()).await;
    let files: Vec<(String, Vec<u8>)> = (1..=3)
        .map(|i| (format!("/heal/f{i}"), random_bytes(100 + i, 2 * MIB + 777 * i as usize)))
        .collect();
    for (p, d) in &files {
        put(&c, p, d);
    }
    wait_replicated(&c, 3, 2, &[]).await;
    let victim = c.chunkservers()[0].clone();
    c.kill(&victim.name).unwrap();
    wait_replicated(&c, 3, 2, std::slice::from_ref(&victim.addr)).await;
    for (p, d) in &files {
        c.assert_cat(p, d);
    }
}

#[tokio::test]
async fn a_chunkserver_killed_mid_put_does_not_fail_the_put() {
    let mut c = cluster(options()).await;
    let client = quick_client(&c).await;
    let data = random_bytes(7, 4 * MIB + 12345);
    let opts = dfs::CreateOptions { create_parents: true, ..Default::default() };
    let mut w = client.create("/mid/put", opts).await.unwrap();
    w.write_all(&data[..2 * MIB + MIB / 2]).await.unwrap();
    let (_, pipeline) = c.writing_pipeline("/mid/put").await.expect("pipeline");
    assert_eq!(pipeline.len(), 3, "{pipeline:?}");
    let victim = c.name_of(&pipeline[1]).expect("a known chunkserver");
    c.kill(&victim).unwrap();
    w.write_all(&data[2 * MIB + MIB / 2..]).await.unwrap();
    assert_eq!(w.close().await.unwrap(), data.len() as u64);
    c.assert_cat("/mid/put", &data);
    let victim_addr = c.chunkserver(&victim).unwrap().addr.clone();
    wait_replicated(&c, 3, 2, &[victim_addr]).await;
    c.assert_cat("/mid/put", &data);
}

#[tokio::test]
async fn hung_chunkservers_are_timed_out_on_write_and_read_then_cleaned() {
    let mut c = cluster(options()).await;
    let client = quick_client(&c).await;
    let before = random_bytes(8, 3 * MIB + 5);
    put(&c, "/hang/before", &before);

    // Write: the middle node of the pipeline freezes.
    let data = random_bytes(9, 3 * MIB + 4321);
    let opts = dfs::CreateOptions { create_parents: true, ..Default::default() };
    let mut w = client.create("/hang/during", opts).await.unwrap();
    w.write_all(&data[..MIB / 2]).await.unwrap();
    let (stuck_chunk, pipeline) = c.writing_pipeline("/hang/during").await.expect("pipeline");
    let frozen = c.name_of(&pipeline[1]).expect("a known chunkserver");
    c.stop(&frozen).unwrap();
    w.write_all(&data[MIB / 2..]).await.unwrap();
    assert_eq!(w.close().await.unwrap(), data.len() as u64);
    // Every chunk written around the hung node has a replica elsewhere: the survivors of
    // its pipeline, or, for chunks finished before the freeze, the other replicas.
    c.assert_cat("/hang/during", &data);

    // Read: the replica a reader tries first freezes too (if it is another node). Only
    // the file written before any freeze is read now: a chunk written around the hang
    // may have been finished by fewer survivors (restored later by re-replication), and
    // freezing one of them would rightly leave it unreadable until then.
    let reader = client.open("/hang/before").await.unwrap();
    let first = reader.chunks()[0].replicas[0].addr.clone();
    let mut frozen_all = vec![frozen.clone()];
    let other = c.name_of(&first).expect("a known chunkserver");
    if other != frozen {
        c.stop(&other).unwrap();
        frozen_all.push(other);
    }
    let mut got = Vec::new();
    reader.copy_to(&mut got, |_| {}).await.unwrap();
    assert!(got == before, "read around a hung chunkserver");

    // Back to life: the frozen writer's replica is stale and is deleted.
    for n in &frozen_all {
        c.cont(n).unwrap();
    }
    let rbw = c.data_dir(&frozen).unwrap().join("rbw").join(format!("{stuck_chunk:016x}.data"));
    let gone = wait_until("the stale replica to be deleted", HEAL, DEFAULT_POLL, || {
        let exists = rbw.exists();
        async move { !exists }
    })
    .await;
    assert!(gone.is_ok(), "{} still exists", rbw.display());
    wait_replicated(&c, 3, 2, &[]).await;
    let r = c.fsck("/").await.unwrap();
    let stale = ReplicaState::Stale as i32;
    assert!(
        r.files
            .iter()
            .flat_map(|f| &f.chunks)
            .flat_map(|ch| &ch.replicas)
            .all(|x| x.state != stale),
        "no stale replica left"
    );
    c.assert_cat("/hang/during", &data);
    c.assert_cat("/hang/before", &before);
}

#[tokio::test]
async fn the_scrubber_finds_an_unread_corrupt_replica_and_it_is_repaired() {
    let mut opts = options();
    opts.chunkserver_args.extend(["--scrub-period-secs".into(), "1".into()]);
    let c = cluster(opts).await;
    let data = random_bytes(12, 2 * MIB + 99);
    put(&c, "/scrub/f", &data);
    wait_replicated(&c, 3, 2, &[]).await;
    let chunk = c.locations("/scrub/f").await.expect("locations").remove(1);
    let holder = c.name_of(&chunk.replicas[0].addr).expect("a known chunkserver");
    let path = c.replica_path(&holder, chunk.handle).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4242] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();
    // Nobody reads the file: only the scrubber can notice. The bad copy is replaced and
    // then deleted, so the file on disk goes away or comes back whole.
    let good = &data[MIB..2 * MIB];
    let repaired = wait_until("the corrupt replica to be repaired", HEAL, DEFAULT_POLL, || {
        let on_disk = std::fs::read(&path).ok();
        let fut = fsck(&c);
        async move {
            let fixed = on_disk.is_none_or(|b| b == good);
            fixed && fut.await.is_some_and(|r| healthy_replicas(&r).iter().all(|x| x.1.len() == 3))
        }
    })
    .await;
    assert!(repaired.is_ok(), "{}", repaired.unwrap_err());
    c.assert_cat("/scrub/f", &data);
}

#[tokio::test]
async fn a_read_of_a_chunk_whose_replicas_are_all_corrupt_says_so() {
    let c = cluster(options()).await;
    let data = random_bytes(13, 300_000);
    put(&c, "/rot/f", &data);
    wait_replicated(&c, 3, 2, &[]).await;
    let chunk = c.locations("/rot/f").await.expect("locations").remove(0);
    assert_eq!(chunk.replicas.len(), 3);
    for r in &chunk.replicas {
        let path = c
            .replica_path(&c.name_of(&r.addr).expect("a known chunkserver"), chunk.handle)
            .unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[1234] ^= 0x5a;
        std::fs::write(&path, &bytes).unwrap();
    }
    let want = format!("all 3 replicas of chunk {:016x} of /rot/f are corrupt", chunk.handle);
    // The first read finds every replica corrupt itself and reports them.
    let first = c.dfs(&["cat", "/rot/f"]).assert_fails(1, "dfs: ");
    assert!(first.contains(&want), "{first}");
    // Then the master knows: it hands out no replica, only the count of corrupt ones.
    let known = wait_until("the master to know every replica corrupt", HEAL, DEFAULT_POLL, || {
        let fut = c.locations("/rot/f");
        async move {
            let Some(l) = fut.await.ok().and_then(|mut l| (!l.is_empty()).then(|| l.remove(0)))
            else {
                return false;
            };
            l.replicas.is_empty() && l.corrupt_replicas == 3
        }
    })
    .await;
    assert!(known.is_ok(), "{}", known.unwrap_err());
    let err = c.dfs(&["cat", "/rot/f"]).assert_fails(1, "dfs: ");
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("knows no replica"), "{err}");
}

#[tokio::test]
async fn a_killed_writer_loses_its_lease_and_the_file_is_closed_readable() {
    let mut opts = options();
    opts.master_args.extend([
        "--lease-soft-limit-ms".into(),
        "1000".into(),
        "--lease-hard-limit-ms".into(),
        "3000".into(),
    ]);
    let c = cluster(opts).await;
    let data = random_bytes(13, 3 * MIB);
    let mut cmd = c.dfs_cmd();
    cmd.args(["put", "-p", "-", "/lease/f"]).stdin(Stdio::piped()).stdout(Stdio::null());
    cmd.stderr(Stdio::null());
    let mut writer = cmd.spawn().expect("dfs put runs");
    let mut stdin = writer.stdin.take().expect("stdin");
    stdin.write_all(&data[..2 * MIB + MIB / 3]).unwrap();
    stdin.flush().unwrap();
    let tmp = "/lease/f._COPYING_";
    // Wait until the first chunk is complete, so the file has durable bytes.
    let started = wait_until("the writer to finish a chunk", HEAL, DEFAULT_POLL, || {
        let fut = c.fsck("/");
        async move {
            fut.await.ok().is_some_and(|r| {
                r.files.iter().any(|f| f.path == tmp && f.under_construction && f.chunks.len() >= 2)
            })
        }
    })
    .await;
    assert!(started.is_ok(), "{}", started.unwrap_err());
    writer.kill().unwrap();
    let _ = writer.wait();
    drop(stdin);
    let client = c.client().await.unwrap();
    let closed = wait_until("lease recovery to close the file", HEAL, DEFAULT_POLL, || {
        let fut = client.stat(tmp);
        async move { fut.await.is_ok_and(|s| !s.under_construction) }
    })
    .await;
    assert!(closed.is_ok(), "{}", closed.unwrap_err());
    let got = client.read_all(tmp).await.unwrap();
    assert!(got.len() >= MIB, "at least the finished chunk: {} bytes", got.len());
    assert!(got.len() <= 2 * MIB + MIB / 3);
    assert!(got[..] == data[..got.len()], "the recovered file is a prefix of what was written");
    let open = c.dfs(&["fsck", "/", "--openforwrite"]);
    assert!(!open.stdout_str().contains("OPENFORWRITE"), "{}", open.stdout_str());
}

#[tokio::test]
async fn deleted_files_leave_no_chunk_on_any_disk_even_across_restarts() {
    let mut c = cluster(options()).await;
    let keep = random_bytes(20, MIB + 5);
    put(&c, "/gc/keep", &keep);
    let mut handles = Vec::new();
    for i in 0..3 {
        let p = format!("/gc/f{i}");
        put(&c, &p, &random_bytes(21 + i, 2 * MIB + 17));
        handles.extend(c.locations(&p).await.expect("locations").into_iter().map(|l| l.handle));
    }
    wait_replicated(&c, 3, 2, &[]).await;
    // One chunkserver is away while the files are deleted, and the master restarts, so
    // its delete commands are lost: its replicas come back as orphans.
    let away = c.chunkservers()[1].name.clone();
    c.kill(&away).unwrap();
    c.dfs(&["rm", "/gc/f0", "/gc/f1", "/gc/f2"]).assert_ok();
    c.kill("master").unwrap();
    c.restart("master").await.unwrap();
    c.restart(&away).await.unwrap();
    let clean = wait_until("every deleted chunk to leave every disk", HEAL, DEFAULT_POLL, || {
        let left: usize = handles.iter().map(|&h| c.replicas_on_disk(h).len()).sum();
        async move { left == 0 }
    })
    .await;
    assert!(clean.is_ok(), "{}", clean.unwrap_err());
    c.assert_cat("/gc/keep", &keep);
}

#[tokio::test]
async fn decommission_under_load_never_drops_a_chunk_below_its_factor() {
    let mut c = cluster(options()).await;
    let mut files = Vec::new();
    for i in 0..4 {
        let p = format!("/dec/f{i}");
        let d = random_bytes(30 + i, 2 * MIB + 100 * i as usize);
        put(&c, &p, &d);
        files.push((p, d));
    }
    wait_replicated(&c, 3, 2, &[]).await;
    let victim = c.chunkservers()[2].clone();
    c.dfs(&["admin", "decommission", &victim.addr]).assert_ok();
    // Load: more files written while it drains.
    let loader = {
        let dfs = c.binary("dfs");
        let master = c.master_addr().to_owned();
        std::thread::spawn(move || {
            let mut written = Vec::new();
            for i in 0..3 {
                let p = format!("/dec/load{i}");
                let d = random_bytes(40 + i, MIB + 3 * i as usize);
                let mut child = std::process::Command::new(&dfs)
                    .env("DFS_MASTER", &master)
                    .args(["put", "-", &p])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("dfs");
                child.stdin.take().expect("stdin").write_all(&d).expect("feed");
                assert!(child.wait().expect("wait").success(), "put {p} under decommission");
                written.push((p, d));
            }
            written
        })
    };
    let counted = [
        ReplicaState::Healthy as i32,
        ReplicaState::Decommissioning as i32,
        ReplicaState::Decommissioned as i32,
    ];
    let decommissioned = AdminState::Decommissioned as i32;
    let lowest = std::cell::Cell::new(usize::MAX);
    let done = wait_until("the chunkserver to be decommissioned", HEAL, DEFAULT_POLL, || {
        let f = fsck(&c);
        let rep = c.cluster_report();
        let lowest = &lowest;
        let addr = victim.addr.clone();
        async move {
            if let Some(r) = f.await {
                for ch in r.files.iter().filter(|f| !f.under_construction).flat_map(|f| &f.chunks) {
                    let n = ch.replicas.iter().filter(|x| counted.contains(&x.state)).count();
                    lowest.set(lowest.get().min(n));
                }
            }
            rep.await.ok().is_some_and(|r| {
                r.chunkservers.iter().any(|s| {
                    s.server.as_ref().is_some_and(|x| x.addr == addr)
                        && s.admin_state == decommissioned
                })
            })
        }
    })
    .await;
    assert!(done.is_ok(), "{}", done.unwrap_err());
    let lowest = lowest.get();
    assert!(lowest >= 3, "a chunk dropped to {lowest} replicas during decommission");
    let written = loader.join().expect("loader");
    c.kill(&victim.name).unwrap();
    let health = c.fsck("/").await.unwrap();
    let healthy = ChunkHealth::Healthy as i32;
    for ch in health.files.iter().flat_map(|f| &f.chunks) {
        assert_eq!(ch.health, healthy, "chunk {:016x} after the kill", ch.handle);
    }
    for (p, d) in files.iter().chain(&written) {
        c.assert_cat(p, d);
    }
}

#[tokio::test]
async fn losing_a_whole_rack_keeps_data_readable_and_replicates_what_it_can() {
    let mut c = cluster(options()).await;
    let mut files = Vec::new();
    for i in 0..3 {
        let p = format!("/rack/f{i}");
        let d = random_bytes(50 + i, 2 * MIB + 31 * i as usize);
        put(&c, &p, &d);
        files.push((p, d));
    }
    wait_replicated(&c, 3, 2, &[]).await;
    let rack_a: Vec<_> =
        c.chunkservers().iter().filter(|s| s.rack.as_deref() == Some("/rack-a")).cloned().collect();
    assert_eq!(rack_a.len(), 2);
    for s in &rack_a {
        c.kill(&s.name).unwrap();
    }
    for (p, d) in &files {
        c.assert_cat(p, d);
    }
    let gone: Vec<String> = rack_a.iter().map(|s| s.addr.clone()).collect();
    // Two chunkservers are left, both on /rack-b: two replicas each is all there can be.
    wait_replicated(&c, 2, 1, &gone).await;
    for (p, d) in &files {
        c.assert_cat(p, d);
    }
}
