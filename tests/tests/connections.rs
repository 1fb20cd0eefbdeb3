//! Idle connections from a hostile peer can't take a server's file descriptors: with a
//! cap of 40 connections, 400 idle sockets opened against the master and against a
//! chunkserver leave both serving a put and a cat, the servers' descriptor counts stay
//! near the cap, and the hostile sockets are closed by the servers.

use std::time::Duration;

use tests::data::random_bytes;
use tests::{ClusterOptions, MiniCluster};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const CAP: usize = 40;
const HOSTILE: usize = 400;

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Opens `n` connections to `addr` that never send a byte (refused ones are dropped).
async fn flood(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        if let Ok(s) = TcpStream::connect(addr).await {
            held.push(s);
        }
    }
    held
}

/// How many of `conns` the server has closed (a read sees end of file or an error).
async fn closed_by_server(conns: &mut [TcpStream]) -> usize {
    let mut closed = 0;
    for s in conns {
        let mut b = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(20), s.read(&mut b)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            closed += 1;
        }
    }
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_idle_sockets_leave_master_and_chunkservers_serving() {
    let cap = CAP.to_string();
    let options = ClusterOptions {
        chunkservers: 3,
        master_args: vec!["--max-connections".into(), cap.clone()],
        chunkserver_args: vec!["--max-connections".into(), cap],
        ..ClusterOptions::for_tests()
    };
    let c = MiniCluster::start(options).await.expect("mini cluster");
    let master = c.process("master").expect("master").clone();
    let cs = c.chunkservers()[0].clone();
    let (master_fds, cs_fds) = (fds(master.pid), fds(cs.pid));

    let mut at_master = flood(&master.addr, HOSTILE).await;
    let mut at_cs = flood(&cs.addr, HOSTILE).await;
    // Let the hostile sockets age past the minimum idle time that makes them evictable.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let data = random_bytes(7, 3 << 20);
    let local = c.dir().join("data");
    std::fs::write(&local, &data).expect("write");
    let out = c.dfs(&["put", local.to_str().expect("utf-8"), "/f"]);
    assert_eq!(out.code(), Some(0), "put under a flood: {}", out.describe());
    c.assert_cat("/f", &data);

    for (name, pid, before) in [("master", master.pid, master_fds), ("cs", cs.pid, cs_fds)] {
        let now = fds(pid);
        assert!(
            now <= before + CAP + 8,
            "{name} holds {now} descriptors (was {before}, cap {CAP}): the flood got through"
        );
    }
    let (m, s) = (closed_by_server(&mut at_master).await, closed_by_server(&mut at_cs).await);
    assert!(m >= HOSTILE - CAP, "the master closed only {m} of {HOSTILE} idle sockets");
    assert!(s >= HOSTILE - CAP, "the chunkserver closed only {s} of {HOSTILE} idle sockets");
    assert_eq!(c.dfs(&["mkdir", "/still-serving"]).code(), Some(0));
}
