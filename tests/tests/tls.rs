//! TLS on a real mini cluster (`--tls`: a throwaway CA and certificate, every server
//! serving TLS only and calling the others over TLS): files go in and come out byte for
//! byte through the `dfs` CLI and the library, across a chunkserver restart (pipeline
//! peers, re-registration), in token mode too; a plain-TCP client gets nothing.

use std::time::Duration;

use proto::gfs as pb;
use proto::gfs::client_protocol_client::ClientProtocolClient;
use tests::data::random_bytes;
use tests::{ClusterOptions, MiniCluster};

async fn cluster(token_auth: bool) -> MiniCluster {
    let options = ClusterOptions {
        chunkservers: 3,
        replication: 3,
        tls: true,
        token_auth,
        ..ClusterOptions::for_tests()
    };
    match MiniCluster::start(options).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip_over_tls_and_plain_tcp_gets_nothing() {
    let mut c = cluster(false).await;
    let data = random_bytes(1, 2 * (1 << 20) + 12_345);
    c.dfs_with_stdin(&["put", "-p", "-", "/t/f"], Some(&data)).assert_ok();
    c.assert_cat("/t/f", &data);
    // The library, trusting the cluster's CA.
    let client = c.client().await.expect("client");
    let got = client.read_all("/t/f").await.expect("read");
    assert!(got == data, "the library read different bytes");
    // Plain TCP to the master's TLS port: the call fails, nothing is served.
    let plain = tonic::transport::Endpoint::new(format!("http://{}", c.master_addr()))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5));
    let outcome = match plain.connect().await {
        Err(_) => None,
        Ok(ch) => {
            let attach =
                security::Credentials::simple(security::os_user()).attach().expect("attach");
            let mut m = ClientProtocolClient::with_interceptor(ch, attach);
            let req = pb::ListDirRequest { path: "/t".into(), ..Default::default() };
            let res = tokio::time::timeout(Duration::from_secs(10), m.list_dir(req)).await;
            Some(matches!(res, Ok(Ok(_))))
        }
    };
    assert_ne!(outcome, Some(true), "a plain-TCP call was answered");
    // A client without the CA can't connect either: the CLI says where.
    let mut cmd = c.dfs_cmd();
    cmd.env_remove(security::tls::CA_ENV).env("DFS_RETRY_SECONDS", "0");
    let out = tests::command::run(cmd, &["ls", "/t"], None).expect("run dfs");
    let line = out.assert_fails(1, "dfs: ls: ");
    assert!(line.contains(c.master_addr()), "{line}");
    // A chunkserver restarted re-registers over TLS and serves its replicas again.
    c.kill("cs-1").expect("kill");
    c.restart("cs-1").await.expect("restart");
    c.wait_for_live_chunkservers(3, Duration::from_secs(30)).await.expect("live");
    let more = random_bytes(2, 1 << 20);
    c.dfs_with_stdin(&["put", "-", "/t/g"], Some(&more)).assert_ok();
    c.assert_cat("/t/g", &more);
    c.assert_cat("/t/f", &data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mode_over_tls() {
    let c = cluster(true).await;
    let data = random_bytes(3, 1 << 20);
    c.dfs_with_stdin(&["put", "-p", "-", "/t/f"], Some(&data)).assert_ok();
    c.assert_cat("/t/f", &data);
    let out = c.dfs(&["auth", "token", "--user", "alice"]);
    assert!(out.assert_ok().stdout_str().trim().contains('.'));
}

/// Words of `text`, counted the way wordcount counts them.
fn count_words(text: &[u8]) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for w in text.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()) {
        *counts.entry(String::from_utf8_lossy(w).into_owned()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_count_runs_over_tls_in_token_mode() {
    let options = ClusterOptions {
        chunkservers: 2,
        replication: 2,
        tls: true,
        token_auth: true,
        ..ClusterOptions::for_mapreduce_tests()
    };
    let c = match MiniCluster::start(options).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    };
    // Text over several 1 MiB chunks, so maps read remote and local replicas and the
    // reducers fetch from both workers.
    let mut text = Vec::new();
    let mut g = tests::data::DataGen::new(7);
    let mut b = [0u8; 4];
    while text.len() < 3 << 20 {
        g.fill(&mut b);
        text.extend_from_slice(format!("w{} ", u16::from_le_bytes([b[0], b[1]]) % 500).as_bytes());
        if b[2] % 9 == 0 {
            text.push(b'\n');
        }
    }
    c.dfs_with_stdin(&["put", "-p", "-", "/in/text"], Some(&text)).assert_ok();
    let out = c.mr(
        "mapred-examples",
        &["submit", "wordcount", "--input", "/in", "--output", "/out", "--reducers", "2"],
    );
    out.assert_ok();
    let client = c.client().await.expect("client");
    let mut got = std::collections::BTreeMap::new();
    for f in client.list("/out").await.expect("list") {
        if f.path.as_str().rsplit('/').next().is_some_and(|n| n.starts_with("part-")) {
            let data = client.read_all(f.path.as_str()).await.expect("read");
            for line in String::from_utf8(data).expect("utf-8").lines() {
                let (w, n) = line.split_once('\t').expect("word TAB count");
                got.insert(w.to_owned(), n.parse::<u64>().expect("count"));
            }
        }
    }
    assert!(got == count_words(&text), "word counts differ ({} words)", got.len());
}
