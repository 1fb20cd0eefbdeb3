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
