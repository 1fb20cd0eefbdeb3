//! Master durability on a real mini cluster: the master SIGKILLed under concurrent
//! writers and restarted (every acknowledged change survives, nothing half-applied),
//! calls in flight across a restart applied exactly once (the retry cache), a checkpoint
//! taken under load, and safe mode after a restart with the chunkservers frozen.
//!
//! The master is started by the harness with its default safe-mode extension (5 s; the
//! harness has no way to pass extra master flags), so each restart costs a few seconds of
//! safe mode that the clients ride through by retrying.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dfs::{Client, ClientConfig, CreateOptions};
use proto::gfs::{self, RenameRequest};
use proto::reason::{self, ErrorReason};
use rand::Rng;
use tests::data::random_bytes;
use tests::workload::{verify, writer};
use tests::{ClusterOptions, DEFAULT_POLL, MiniCluster, wait_until};

const MIB: usize = 1 << 20;

async fn cluster() -> MiniCluster {
    match MiniCluster::start(ClusterOptions { chunkservers: 3, ..ClusterOptions::for_tests() })
        .await
    {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    }
}

/// A client that keeps retrying for up to two minutes (a restart plus safe mode).
async fn client(c: &MiniCluster) -> Client {
    let cfg =
        ClientConfig { master_retry_deadline: Duration::from_secs(120), ..ClientConfig::default() };
    Client::connect(c.master_addr(), cfg).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_changes_survive_master_sigkills() {
    let mut c = cluster().await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 1..=3u64 {
        let client = client(&c).await;
        writers.push(tokio::spawn(writer(client, w, stop.clone())));
    }
    let mut rng = rand::rng();
    for round in 1..=3 {
        let before = Duration::from_millis(rng.random_range(1000..3000));
        tokio::time::sleep(before).await;
        c.kill("master").expect("kill master");
        eprintln!("round {round}: master killed after {before:?}");
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..800))).await;
        c.restart("master").await.expect("restart master");
    }
    // Let the writers get past safe mode and make progress on the last incarnation.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut ledgers = Vec::new();
    for w in writers {
        ledgers.push(w.await.expect("writer task"));
    }
    let total: usize = ledgers.iter().map(|l| l.acked).sum();
    assert!(total >= 10, "the writers made progress ({total} acknowledged operations)");
    // One more restart with nothing in flight: the log alone must rebuild it all.
    c.restart("master").await.expect("restart master");
    let reader = client(&c).await;
    for (w, ledger) in (1..=3u64).zip(&ledgers) {
        verify(&reader, w, ledger).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_and_a_rename_in_flight_across_a_restart_complete_once() {
    let mut c = cluster().await;
    let client = client(&c).await;
    client.mkdir("/r/a", true).await.expect("mkdir");
    let data = random_bytes(42, 5 * MIB + 777);
    let opts = CreateOptions { create_parents: true, ..CreateOptions::default() };
    let mut w = client.create("/r/big", opts).await.expect("create");
    // Two chunks allocated before the crash; the rest (AddChunk, Complete) after it.
    w.write_all(&data[..2 * MIB + MIB / 2]).await.expect("first part");
    c.kill("master").expect("kill master");
    let rest = data[2 * MIB + MIB / 2..].to_vec();
    let put = tokio::spawn(async move {
        w.write_all(&rest).await?;
        w.close().await
    });
    let mover = client.clone();
    let rename = tokio::spawn(async move { mover.rename("/r/a", "/r/b").await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    c.restart("master").await.expect("restart master");
    let len = put.await.expect("put task").expect("the put completes after the restart");
    assert_eq!(len, data.len() as u64);
    let moved = rename.await.expect("rename task").expect("the rename completes");
    assert_eq!(moved.as_str(), "/r/b");
    assert!(client.try_stat("/r/a").await.expect("stat").is_none());
    assert!(client.stat("/r/b").await.expect("stat").is_dir());
    assert!(client.read_all("/r/big").await.expect("read") == data, "the put's file is intact");

    // The reply of an applied rename lost in a crash: the retry (same client and call id)
    // after the restart gets the original answer instead of "no such file".
    let mut master = c.master_client().await.expect("master client");
    let req = RenameRequest {
        src: "/r/b".into(),
        dst: "/r/c".into(),
        client_id: "durability-test".into(),
        call_id: 7,
    };
    let first = master.rename(req.clone()).await.expect("rename").into_inner();
    c.kill("master").expect("kill master");
    c.restart("master").await.expect("restart master");
    let mut master = c.master_client().await.expect("master client");
    // A cached answer is given even in safe mode: the change it reports is already made.
    let again = master.rename(req.clone()).await.expect("retried rename").into_inner();
    assert_eq!(again, first);
    assert_eq!(first.new_path, "/r/c");
    // A new call with the same arguments is a new rename (retried through safe mode, as
    // the client library does), and /r/b is gone.
    let fresh = RenameRequest { call_id: 8, ..req };
    let err = loop {
        match master.rename(fresh.clone()).await {
            Err(s) if reason::of(&s) == ErrorReason::SafeMode => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => break other.expect_err("src is gone"),
        }
    };
    assert_eq!(err.code(), tonic::Code::NotFound, "{}", err.message());
}

/// Every path under `/` with its kind and length, recursively.
async fn namespace(client: &Client) -> BTreeSet<(String, bool, u64)> {
    let mut out = BTreeSet::new();
    let mut dirs = vec!["/".to_owned()];
    while let Some(d) = dirs.pop() {
        for e in client.list(d.as_str()).await.expect("list") {
            if e.is_dir() {
                dirs.push(e.path.to_string());
            }
            out.insert((e.path.to_string(), e.is_dir(), e.length));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkpoint_under_load_restores_the_live_namespace() {
    let mut c = cluster().await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 1..=2u64 {
        let client = client(&c).await;
        writers.push(tokio::spawn(writer(client, w, stop.clone())));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = c.dfs(&["admin", "checkpoint"]);
    out.assert_ok();
    let text = out.stdout_str();
    assert!(text.starts_with("Checkpoint written at txid "), "{text}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut ledgers = Vec::new();
    for w in writers {
        ledgers.push(w.await.expect("writer task"));
    }
    let ckpts: Vec<_> = std::fs::read_dir(c.data_dir("master").expect("dir"))
        .expect("read master dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".ckpt"))
        .collect();
    assert!(!ckpts.is_empty(), "a checkpoint file was written");
    let client = client(&c).await;
    let live = namespace(&client).await;
    c.kill("master").expect("kill master");
    c.restart("master").await.expect("restart master");
    assert_eq!(namespace(&client).await, live, "checkpoint + log rebuild the live namespace");
    for (w, ledger) in (1..=2u64).zip(&ledgers) {
        verify(&client, w, ledger).await;
    }
}

/// Runs `dfs ARGS` with no retrying, so a refusal is seen at once.
fn run(c: &MiniCluster, args: &[&str]) -> tests::CmdOutput {
    let mut cmd = c.dfs_cmd();
    cmd.env("DFS_RETRY_SECONDS", "0");
    tests::command::run(cmd, args, None).expect("run dfs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn safe_mode_refuses_changes_until_chunkservers_report() {
    let mut c = cluster().await;
    let client = client(&c).await;
    let opts = CreateOptions { create_parents: true, ..CreateOptions::default() };
    client.put_bytes("/s/f", &random_bytes(5, 3 * MIB), opts).await.expect("put");
    let names: Vec<String> = c.chunkservers().iter().map(|p| p.name.clone()).collect();
    for n in &names {
        c.stop(n).expect("SIGSTOP");
    }
    c.kill("master").expect("kill master");
    c.restart("master").await.expect("restart master");
    let out = run(&c, &["mkdir", "/x"]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.starts_with("dfs: mkdir: "), "{}", out.stderr);
    assert!(out.stderr.contains("safe mode"), "{}", out.stderr);
    assert!(out.stderr.contains("chunks reported"), "says why: {}", out.stderr);
    let get = run(&c, &["admin", "safemode", "get"]);
    assert!(get.stdout_str().starts_with("Safe mode is ON"), "{}", get.describe());
    // Reads are served meanwhile.
    run(&c, &["stat", "/s/f"]).assert_ok();
    for n in &names {
        c.cont(n).expect("SIGCONT");
    }
    wait_until(
        "the master to leave safe mode by itself",
        Duration::from_secs(60),
        DEFAULT_POLL,
        || {
            let out = run(&c, &["admin", "safemode", "get"]);
            async move { out.stdout_str().starts_with("Safe mode is OFF") }
        },
    )
    .await
    .expect("safe mode ends");
    run(&c, &["mkdir", "/x"]).assert_ok();
    let dump = run(&c, &["admin", "metasave"]);
    dump.assert_ok();
    let text = dump.stdout_str();
    assert!(text.contains("safe mode: OFF") && text.contains("chunkservers: 3"), "{text}");
    // Not a dfs call: make sure the raw protocol agrees.
    let mut admin = c.admin_client().await.expect("admin client");
    let sm = admin
        .safe_mode(gfs::SafeModeRequest { action: gfs::SafeModeAction::Get as i32 })
        .await
        .expect("safe mode")
        .into_inner();
    assert!(!sm.on);
}
