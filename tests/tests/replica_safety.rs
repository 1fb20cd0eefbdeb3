//! The replica protocol under ordinary faults, on real mini clusters (1 MiB chunks, 200 ms
//! heartbeats): chunkservers SIGKILLed at every moment of a put, a survivor's report of
//! the old version arriving after a pipeline recovery, two corrupt replicas out of three
//! on clusters of 3, 4 and 5 chunkservers, and a frozen node first, middle and last in a
//! pipeline. Every acknowledged byte must read back, and fsck must end healthy with no
//! replica left half-written.
//!
//! Whatever settles eventually is polled with generous deadlines; the one timed bound
//! (a put through a frozen node) is a multiple of the pipeline timeout with room to spare.

use std::time::{Duration, Instant};

use proto::gfs::{FsckResponse, ReplicaState, ReportedChunk};
use tests::data::random_bytes;
use tests::{ClusterOptions, DEFAULT_POLL, MiniCluster, wait_until};

const MIB: usize = 1 << 20;
/// Healing waits: the dead interval and a few dozen heartbeats, with room for a loaded
/// machine.
const HEAL: Duration = Duration::from_secs(90);
/// The chunkservers' pipeline timeout in these tests.
const PIPELINE_TIMEOUT: Duration = Duration::from_secs(3);

async fn cluster(options: ClusterOptions) -> MiniCluster {
    match MiniCluster::start(options).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    }
}

fn options(chunkservers: usize) -> ClusterOptions {
    ClusterOptions {
        chunkservers,
        master_args: vec!["--replication-timeout-ms".into(), "5000".into()],
        chunkserver_args: vec![
            "--pipeline-timeout-ms".into(),
            PIPELINE_TIMEOUT.as_millis().to_string(),
        ],
        ..ClusterOptions::for_tests()
    }
}

/// A client with small packets (a chunk's pipeline is open after a few hundred KiB) and
/// an ack timeout of twice the pipeline timeout, above what the first of three nodes
/// waits for a hung one below it.
async fn client(c: &MiniCluster) -> dfs::Client {
    let cfg = dfs::ClientConfig {
        packet_size: 64 << 10,
        write_window: 256 << 10,
        ack_timeout: PIPELINE_TIMEOUT * 2,
        io_timeout: Duration::from_secs(3),
        ..dfs::ClientConfig::default()
    };
    dfs::Client::connect(c.master_addr(), cfg).await.expect("client")
}

/// Replica states of every chunk of every closed file: (handle, states).
fn replica_states(r: &FsckResponse) -> Vec<(u64, Vec<i32>)> {
    r.files
        .iter()
        .filter(|f| !f.under_construction)
        .flat_map(|f| &f.chunks)
        .map(|ch| (ch.handle, ch.replicas.iter().map(|x| x.state).collect()))
        .collect()
}

/// Waits until every chunk of every closed file has exactly `n` healthy replicas and no
/// other (no writing, stale or corrupt one left).
async fn wait_healthy(c: &MiniCluster, n: usize) {
    let healthy = ReplicaState::Healthy as i32;
    let last = std::cell::RefCell::new(String::new());
    let done = wait_until("every chunk healthy, nothing half-written", HEAL, DEFAULT_POLL, || {
        let fut = c.fsck("/");
        let last = &last;
        async move {
            let Ok(r) = fut.await else { return false };
            let states = replica_states(&r);
            *last.borrow_mut() = format!("{states:?}");
            !states.is_empty()
                && states.iter().all(|(_, s)| s.len() == n && s.iter().all(|&x| x == healthy))
        }
    })
    .await;
    assert!(done.is_ok(), "{}\nlast fsck (handle, states): {}", done.unwrap_err(), last.borrow());
}

/// When, during a put, the chunkserver is killed.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// After `create`, before any byte is written.
    BeforeFirstPacket,
    /// Half-way through the second chunk.
    MidChunk,
    /// With everything but the last packet sent.
    AtLastPacket,
    /// While `close` sends the last packet and the nodes finalize.
    DuringFinalize,
}

const MOMENTS: [Moment; 4] =
    [Moment::BeforeFirstPacket, Moment::MidChunk, Moment::AtLastPacket, Moment::DuringFinalize];

#[tokio::test]
async fn puts_with_a_chunkserver_killed_at_any_moment_lose_no_acknowledged_byte() {
    let mut c = cluster(options(3)).await;
    let client = client(&c).await;
    let names: Vec<String> = c.chunkservers().iter().map(|s| s.name.clone()).collect();
    let mut written: Vec<(String, Vec<u8>)> = Vec::new();
    for round in 0..20usize {
        let moment = MOMENTS[round % MOMENTS.len()];
        let victim = &names[round % names.len()];
        let path = format!("/kill/f{round}");
        // 2.5 chunks and a few bytes: a finished chunk, a full one and a short last one.
        let data = random_bytes(round as u64 + 100, 2 * MIB + MIB / 2 + 17 * round);
        let opts = dfs::CreateOptions { create_parents: true, ..Default::default() };
        let mut w = client.create(path.as_str(), opts).await.expect("create");
        let cut = match moment {
            Moment::BeforeFirstPacket => 0,
            Moment::MidChunk => MIB + MIB / 2,
            Moment::AtLastPacket | Moment::DuringFinalize => data.len() - 1000,
        };
        if !matches!(moment, Moment::DuringFinalize) {
            w.write_all(&data[..cut]).await.expect("write before the kill");
            c.kill(victim).expect("kill");
            w.write_all(&data[cut..]).await.expect("write after the kill");
            assert_eq!(w.close().await.expect("close"), data.len() as u64, "round {round}");
        } else {
            w.write_all(&data).await.expect("write");
            let closing = tokio::spawn(async move { w.close().await });
            tokio::time::sleep(Duration::from_millis(5 * (round as u64 % 4))).await;
            c.kill(victim).expect("kill");
            let closed = closing.await.expect("close task");
            assert_eq!(closed.expect("close"), data.len() as u64, "round {round}");
        }
        c.restart(victim).await.expect("restart");
        c.assert_cat(&path, &data);
        written.push((path, data));
    }
    // Late reports, deletes and repairs have all had their chance: nothing acknowledged
    // is gone, and every chunk is back to three healthy replicas, none half-written.
    wait_healthy(&c, 3).await;
    for (path, data) in &written {
        c.assert_cat(path, data);
    }
}

#[tokio::test]
async fn a_late_report_of_the_old_version_deletes_nothing_current() {
    let mut c = cluster(options(3)).await;
    let client = client(&c).await;
    let data = random_bytes(31, MIB + MIB / 2);
    let opts = dfs::CreateOptions { create_parents: true, ..Default::default() };
    let mut w = client.create("/late/f", opts).await.expect("create");
    w.write_all(&data[..MIB / 2]).await.expect("write");
    let (handle, pipeline) = c.writing_pipeline("/late/f").await.expect("pipeline");
    assert_eq!(pipeline.len(), 3, "{pipeline:?}");
    let victim = c.name_of(&pipeline[2]).expect("a known chunkserver");
    c.kill(&victim).expect("kill");
    w.write_all(&data[MIB / 2..]).await.expect("write");
    assert_eq!(w.close().await.expect("close"), data.len() as u64);

    // Speaking as the survivors' chunkservers.
    let mut master = c.chunkserver_protocol_client().await.expect("master");
    let located = c.locations("/late/f").await.expect("locations");
    let recovered = located.iter().find(|ch| ch.handle == handle).expect("the recovered chunk");
    assert!(recovered.version >= 2, "the pipeline was recovered: {recovered:?}");
    assert_eq!(recovered.replicas.len(), 2, "{recovered:?}");
    // Each survivor's batched "received version 1" report (the write the failed node
    // interrupted, which it had finalized at the old version) arrives only now.
    for r in &recovered.replicas {
        let late = ReportedChunk {
            handle,
            version: recovered.version - 1,
            length: MIB as u64,
            finalized: true,
        };
        let req = proto::gfs::ReportChunksRequest {
            id: r.id.clone(),
            received: vec![late],
            deleted: vec![],
            corrupt: vec![],
        };
        master.report_chunks(req).await.expect("late report");
    }
    // Many heartbeats later both survivors still hold the current replica on disk.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for r in &recovered.replicas {
        let name = c.name_of(&r.addr).expect("a known chunkserver");
        let path = c.replica_path(&name, handle).expect("replica path");
        assert!(path.exists(), "{name} lost the recovered replica {}", path.display());
    }
    c.assert_cat("/late/f", &data);
    c.restart(&victim).await.expect("restart");
    wait_healthy(&c, 3).await;
    c.assert_cat("/late/f", &data);
}

async fn two_corrupt_replicas_heal_on(chunkservers: usize) {
    let mut opts = options(chunkservers);
    opts.chunkserver_args.extend(["--scrub-period-secs".into(), "1".into()]);
    let c = cluster(opts).await;
    let data = random_bytes(40 + chunkservers as u64, MIB / 2 + 99);
    c.dfs_with_stdin(&["put", "-p", "-", "/corrupt/f"], Some(&data)).assert_ok();
    wait_healthy(&c, 3).await;
    let chunk = c.locations("/corrupt/f").await.expect("locations").remove(0);
    for r in &chunk.replicas[..2] {
        let path = c
            .replica_path(&c.name_of(&r.addr).expect("a known chunkserver"), chunk.handle)
            .expect("path");
        let mut bytes = std::fs::read(&path).expect("replica");
        bytes[4242] ^= 0x5a;
        std::fs::write(&path, &bytes).expect("corrupt");
    }
    // The good replica serves reads meanwhile.
    c.assert_cat("/corrupt/f", &data);
    // The scrubbers find both; each is replaced (in place if no other server is free),
    // and a corrupt file left elsewhere is deleted.
    let repaired = wait_until("both corrupt replicas replaced", HEAL, DEFAULT_POLL, || {
        let on_disk = c.replicas_on_disk(chunk.handle);
        let whole = on_disk.len() == 3
            && on_disk.iter().all(|(_, p)| std::fs::read(p).is_ok_and(|b| b == data));
        async move { whole }
    })
    .await;
    assert!(repaired.is_ok(), "{}: {:?}", repaired.unwrap_err(), c.replicas_on_disk(chunk.handle));
    wait_healthy(&c, 3).await;
    c.assert_cat("/corrupt/f", &data);
}

#[tokio::test]
async fn two_corrupt_replicas_of_three_heal_on_three_chunkservers() {
    two_corrupt_replicas_heal_on(3).await;
}

#[tokio::test]
async fn two_corrupt_replicas_of_three_heal_on_four_chunkservers() {
    two_corrupt_replicas_heal_on(4).await;
}

#[tokio::test]
async fn two_corrupt_replicas_of_three_heal_on_five_chunkservers() {
    two_corrupt_replicas_heal_on(5).await;
}

/// Freezes the node at `position` of a chunk's pipeline mid-write: the put finishes
/// within three pipeline timeouts, without that node, and its stale write never
/// replaces the current replica once it thaws.
async fn frozen_node_at(position: usize) {
    let mut c = cluster(options(4)).await;
    let client = client(&c).await;
    let path = format!("/frozen/at{position}");
    let data = random_bytes(50 + position as u64, MIB / 2 + 3 * MIB / 4);
    let opts = dfs::CreateOptions { create_parents: true, ..Default::default() };
    let mut w = client.create(path.as_str(), opts).await.expect("create");
    w.write_all(&data[..MIB / 4]).await.expect("write");
    let (handle, pipeline) = c.writing_pipeline(&path).await.expect("pipeline");
    assert_eq!(pipeline.len(), 3, "{pipeline:?}");
    let frozen = c.name_of(&pipeline[position]).expect("a known chunkserver");
    let frozen_addr = pipeline[position].clone();
    c.stop(&frozen).expect("SIGSTOP");
    let started = Instant::now();
    w.write_all(&data[MIB / 4..]).await.expect("write around the frozen node");
    assert_eq!(w.close().await.expect("close"), data.len() as u64);
    let took = started.elapsed();
    assert!(
        took < PIPELINE_TIMEOUT * 3,
        "a put through a frozen node at {position} took {took:?} (pipeline timeout {PIPELINE_TIMEOUT:?})"
    );
    // The frozen node, and only it, was dropped.
    let r = c.fsck(&path).await.expect("fsck");
    let ch = r.files[0].chunks.iter().find(|ch| ch.handle == handle).expect("chunk");
    let holders: Vec<String> =
        ch.replicas.iter().filter_map(|x| x.server.as_ref()).map(|s| s.addr.clone()).collect();
    assert!(!holders.contains(&frozen_addr), "the frozen node was dropped: {holders:?}");
    for healthy in pipeline.iter().filter(|a| **a != frozen_addr) {
        assert!(holders.contains(healthy), "{healthy} was kept: {holders:?}");
    }
    // Thawed, it works through its queued write of the old version: that must never
    // replace the current replica anywhere.
    c.cont(&frozen).expect("SIGCONT");
    c.assert_cat(&path, &data);
    wait_healthy(&c, 3).await;
    c.assert_cat(&path, &data);
    // The chunk is the file's first MiB.
    for (_, file) in c.replicas_on_disk(handle) {
        assert!(std::fs::read(&file).expect("replica") == data[..MIB], "{}", file.display());
    }
}

#[tokio::test]
async fn a_frozen_first_node_is_dropped_within_three_pipeline_timeouts() {
    frozen_node_at(0).await;
}

#[tokio::test]
async fn a_frozen_middle_node_is_dropped_within_three_pipeline_timeouts() {
    frozen_node_at(1).await;
}

#[tokio::test]
async fn a_frozen_last_node_is_dropped_within_three_pipeline_timeouts() {
    frozen_node_at(2).await;
}
