//! Token mode (`--auth token`) on real mini clusters: every port refuses callers that
//! bring no token, a forged one or an expired one (UNAUTHENTICATED), and a user's token
//! where only cluster services may call (PERMISSION_DENIED); the user a token names is
//! who the master sees, whatever the request claims; `dfs auth` issues, renews and shows
//! tokens. Also, in both modes: no registration takes over a live chunkserver's id.
//!
//! Every cluster: 2 chunkservers, replication 2, 1 MiB chunks, 200 ms heartbeats. The
//! test runs as the OS user, the master's superuser.

use std::time::Duration;

use proto::gfs as pb;
use proto::gfs::admin_protocol_client::AdminProtocolClient;
use proto::gfs::chunkserver_client::ChunkserverClient;
use proto::gfs::chunkserver_protocol_client::ChunkserverProtocolClient;
use proto::gfs::client_protocol_client::ClientProtocolClient;
use proto::reason::{self, ErrorReason};
use security::token::{Kind, Secret};
use tests::data::random_bytes;
use tests::{ClusterOptions, MiniCluster};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

type Authed = InterceptedService<Channel, security::Attach>;

async fn cluster(token_auth: bool) -> MiniCluster {
    let options = ClusterOptions {
        chunkservers: 2,
        replication: 2,
        token_auth,
        ..ClusterOptions::for_tests()
    };
    match MiniCluster::start(options).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start the mini cluster: {e}"),
    }
}

async fn channel(addr: &str) -> Channel {
    Endpoint::new(format!("http://{addr}")).expect("endpoint").connect().await.expect("connect")
}

fn creds(user: &str, token: Option<String>) -> security::Attach {
    security::Credentials { user: user.to_owned(), token }.attach().expect("attach")
}

async fn master_as(c: &MiniCluster, attach: security::Attach) -> ClientProtocolClient<Authed> {
    ClientProtocolClient::with_interceptor(channel(c.master_addr()).await, attach)
}

/// The status and reason of a refusal, for exact assertions.
fn refusal(s: &Status) -> (Code, ErrorReason) {
    (s.code(), reason::of(s))
}

fn list(path: &str) -> pb::ListDirRequest {
    pb::ListDirRequest { path: path.into(), ..Default::default() }
}

/// A token for `user` signed by a secret this cluster never saw.
fn forged(user: &str, kind: Kind) -> String {
    let now = proto::clock::wall_ms();
    Secret::generate().issue(kind, user, &[], now, 60_000, 60_000)
}

/// A genuine token of this cluster that expired a second ago.
fn expired(c: &MiniCluster, user: &str) -> String {
    let secret = Secret::load(&tests::spec::secret_file(c.dir())).expect("the cluster secret");
    let then = proto::clock::wall_ms() - 10_000;
    secret.issue(Kind::User, user, &[], then, 9_000, 9_000)
}

fn service_token(c: &MiniCluster, name: &str) -> String {
    let secret = Secret::load(&tests::spec::secret_file(c.dir())).expect("the cluster secret");
    secret.issue(Kind::Service, name, &[], proto::clock::wall_ms(), 60_000, 60_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_valid_token_are_unauthenticated_everywhere() {
    let c = cluster(true).await;
    let data = random_bytes(1, 1 << 20);
    c.dfs_with_stdin(&["put", "-p", "-", "/d/f"], Some(&data)).assert_ok();
    let cases = [
        ("no token", None, "no token"),
        ("forged", Some(forged(&security::os_user(), Kind::User)), "not signed by this cluster"),
        ("expired", Some(expired(&c, &security::os_user())), "has expired"),
        ("junk", Some("abc.def".to_owned()), "bad token"),
    ];
    for (what, token, says) in cases {
        // The claim names the superuser: without a valid token it counts for nothing.
        let attach = creds(&security::os_user(), token);
        let err = master_as(&c, attach.clone()).await.list_dir(list("/d")).await.expect_err(what);
        assert_eq!(refusal(&err), (Code::Unauthenticated, ErrorReason::Unauthenticated), "{what}");
        assert!(err.message().contains(says), "{what}: {}", err.message());
        let mut admin =
            AdminProtocolClient::with_interceptor(channel(c.master_addr()).await, attach.clone());
        let err = admin.fsck(pb::FsckRequest::default()).await.expect_err(what);
        assert_eq!(err.code(), Code::Unauthenticated, "{what}: fsck");
        let cs = &c.chunkservers()[0].addr;
        let mut cs = ChunkserverClient::with_interceptor(channel(cs).await, attach);
        let read = pb::ReadChunkRequest { handle: 1, version: 1, ..Default::default() };
        let err = match cs.read_chunk(read).await {
            Err(s) => s,
            Ok(mut r) => r.get_mut().message().await.expect_err(what),
        };
        assert_eq!(err.code(), Code::Unauthenticated, "{what}: chunkserver read");
    }
    // The CLI without a token says what to do, on one line.
    let mut cmd = c.dfs_cmd();
    cmd.env_remove(security::TOKEN_FILE_ENV);
    let out = tests::command::run(cmd, &["ls", "/d"], None).expect("run dfs");
    let line = out.assert_fails(1, "dfs: ls: ");
    assert!(line.contains("DFS_TOKEN_FILE"), "{line}");
    // A token file that is not one is named.
    let bad = c.dir().join("bad.token");
    std::fs::write(&bad, "not a token\n").expect("write");
    let mut cmd = c.dfs_cmd();
    cmd.env(security::TOKEN_FILE_ENV, &bad);
    let out = tests::command::run(cmd, &["ls", "/d"], None).expect("run dfs");
    let line = out.assert_fails(1, "dfs: ls: ");
    assert!(line.contains(&bad.display().to_string()), "{line}");
    c.assert_cat("/d/f", &data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_tokens_cannot_speak_for_cluster_services() {
    let c = cluster(true).await;
    let data = random_bytes(2, (1 << 20) + 4096);
    c.dfs_with_stdin(&["put", "-p", "-", "/d/f"], Some(&data)).assert_ok();
    let chunk = c.locations("/d/f").await.expect("locations").remove(0);
    let alice = c.token_for("alice").expect("token");
    // A user's token on the master's chunkserver service.
    let spoof = pb::ChunkserverInfo {
        id: "mallory".into(),
        addr: "127.0.0.99:9".into(),
        rack: String::new(),
    };
    let register = pb::RegisterRequest { server: Some(spoof), ..Default::default() };
    let mut master = ChunkserverProtocolClient::with_interceptor(
        channel(c.master_addr()).await,
        creds("alice", Some(alice.clone())),
    );
    let err = master.register(register.clone()).await.expect_err("a user registering");
    assert_eq!(refusal(&err), (Code::PermissionDenied, ErrorReason::PermissionDenied));
    assert!(err.message().contains("alice is not a cluster service"), "{}", err.message());
    let hb = pb::HeartbeatRequest { id: "mallory".into(), ..Default::default() };
    let err = master.heartbeat(hb).await.expect_err("a user's heartbeat");
    assert_eq!(err.code(), Code::PermissionDenied);
    // A forged service token.
    let mut forged_cs = ChunkserverProtocolClient::with_interceptor(
        channel(c.master_addr()).await,
        creds("chunkserver", Some(forged("chunkserver", Kind::Service))),
    );
    let err = forged_cs.register(register).await.expect_err("a forged service");
    assert_eq!(err.code(), Code::Unauthenticated);
    // A user's token on a chunkserver's lease-recovery orders (which also need the
    // master's signed order: refused before that is even looked at).
    let addr = &chunk.replicas[0].addr;
    let mut cs =
        ChunkserverClient::with_interceptor(channel(addr).await, creds("alice", Some(alice)));
    let recover = pb::RecoverReplicaRequest {
        handle: chunk.handle,
        new_version: chunk.version + 1,
        token: Default::default(),
        term: 0,
    };
    let err = cs.recover_replica(recover).await.expect_err("a user's recovery order");
    assert_eq!(refusal(&err), (Code::PermissionDenied, ErrorReason::PermissionDenied));
    let finalize = pb::FinalizeReplicaRequest {
        handle: chunk.handle,
        version: chunk.version,
        length: 0,
        token: Default::default(),
        term: 0,
    };
    let err = cs.finalize_replica(finalize).await.expect_err("a user's finalize order");
    assert_eq!(err.code(), Code::PermissionDenied);
    // Nothing moved: the chunkservers are live and the file reads back whole.
    let report = c.cluster_report().await.expect("report");
    let live =
        report.chunkservers.iter().filter(|s| s.state == pb::ChunkserverState::Live as i32).count();
    assert_eq!(live, 2);
    assert!(
        report.chunkservers.iter().all(|s| s.server.as_ref().is_none_or(|i| i.id != "mallory"))
    );
    c.assert_cat("/d/f", &data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_says_who_calls_and_permissions_follow_it() {
    let c = cluster(true).await;
    c.dfs(&["mkdir", "-p", "/user/alice"]).assert_ok();
    c.dfs(&["chown", "alice", "/user/alice"]).assert_ok();
    let data = random_bytes(3, 300_000);
    let out = {
        let mut cmd = c.dfs_cmd();
        let alice = c.token_file("alice").expect("token").expect("token mode");
        cmd.env(security::TOKEN_FILE_ENV, alice);
        tests::command::run(cmd, &["put", "-", "/user/alice/f"], Some(&data)).expect("run dfs")
    };
    out.assert_ok();
    let ls = c.dfs(&["stat", "/user/alice/f"]);
    assert!(ls.assert_ok().stdout_str().contains("owner: alice"), "{}", ls.stdout_str());
    // Bob's token, claiming to be alice: the master sees bob.
    let mut cmd = c.dfs_cmd();
    let bob = c.token_file("bob").expect("token").expect("token mode");
    cmd.env(security::TOKEN_FILE_ENV, bob).env("DFS_USER", "alice");
    let out = tests::command::run(cmd, &["rm", "/user/alice/f"], None).expect("run dfs");
    let line = out.assert_fails(1, "dfs: rm: ");
    assert!(line.contains("user=bob, access=WRITE"), "{line}");
    // A raw call naming alice in the header but carrying bob's token: bob.
    let mut m = master_as(&c, creds("alice", Some(c.token_for("bob").expect("token")))).await;
    let del =
        pb::DeleteRequest { path: "/user/alice/f".into(), recursive: false, ..Default::default() };
    let err = m.delete(del).await.expect_err("bob deleting alice's file");
    assert_eq!(refusal(&err), (Code::PermissionDenied, ErrorReason::PermissionDenied));
    assert!(err.message().contains("user=bob"), "{}", err.message());
    c.assert_cat("/user/alice/f", &data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dfs_auth_issues_renews_and_shows_tokens() {
    let c = cluster(true).await;
    // The superuser asks the master for carol's token.
    let out = c.dfs(&["auth", "token", "--user", "carol", "--groups", "staff,dev"]);
    let token = out.assert_ok().stdout_str().trim().to_owned();
    let file = c.dir().join("carol.token");
    security::token::write_token_file(&file, &token).expect("write");
    let as_carol = |args: &[&str]| {
        let mut cmd = c.dfs_cmd();
        cmd.env(security::TOKEN_FILE_ENV, &file);
        tests::command::run(cmd, args, None).expect("run dfs")
    };
    let shown = as_carol(&["auth", "show"]).assert_ok().stdout_str();
    assert!(shown.contains("user: carol\ngroups: staff,dev\nkind: User\n"), "{shown}");
    as_carol(&["mkdir", "-p", "/tmp/carol"]).assert_fails(1, "dfs: mkdir: ");
    c.dfs(&["mkdir", "-p", "/tmp"]).assert_ok();
    c.dfs(&["chmod", "1777", "/tmp"]).assert_ok();
    as_carol(&["mkdir", "/tmp/carol"]).assert_ok();
    let st = c.dfs(&["stat", "/tmp/carol"]);
    assert!(st.assert_ok().stdout_str().contains("owner: carol"), "{}", st.stdout_str());
    // Renewal rewrites the file with a token that expires later and still works.
    let renewed = as_carol(&["auth", "renew"]).assert_ok().stdout_str();
    assert!(renewed.starts_with(&format!("renewed {} until ", file.display())), "{renewed}");
    let new = security::token::read_token_file(&file).expect("renewed token");
    assert_ne!(new, token);
    let (old_c, new_c) =
        (security::token::peek(&token).expect("old"), security::token::peek(&new).expect("new"));
    assert!(new_c.expires_ms >= old_c.expires_ms && new_c.id == old_c.id && new_c.user == "carol");
    as_carol(&["ls", "/tmp/carol"]).assert_ok();
    // Carol is no superuser: she can't issue tokens, nor renew bob's.
    let line = as_carol(&["auth", "token", "--user", "dave"]).assert_fails(1, "dfs: auth: ");
    assert!(line.contains("user=carol is not a superuser"), "{line}");
    let bob = c.dir().join("bob.token");
    security::token::write_token_file(&bob, &c.token_for("bob").expect("token")).expect("write");
    let line = as_carol(&["auth", "renew", "--token-file", &bob.display().to_string()])
        .assert_fails(1, "dfs: auth: ");
    assert!(line.contains("may not renew a token of bob"), "{line}");
    // A token signed locally with the secret (how a new cluster's first token is made).
    let secret = tests::spec::secret_file(c.dir()).display().to_string();
    let out = c.dfs(&["auth", "token", "--secret-file", &secret, "--user", "erin"]);
    let local = out.assert_ok().stdout_str().trim().to_owned();
    assert_eq!(security::token::peek(&local).map(|t| t.user), Some("erin".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_mode_issues_no_tokens_and_auth_secret_creates_a_private_file() {
    let c = cluster(false).await;
    let line = c.dfs(&["auth", "token", "--user", "alice"]).assert_fails(1, "dfs: auth: ");
    assert!(line.contains("simple mode"), "{line}");
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    let s = secret.display().to_string();
    c.dfs(&["auth", "secret", &s]).assert_ok();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&secret).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = Secret::load(&secret).expect("load");
    let token = before.issue(Kind::User, "alice", &[], proto::clock::wall_ms(), 60_000, 60_000);
    c.dfs(&["auth", "secret", &s]).assert_fails(1, "dfs: auth: ");
    c.dfs(&["auth", "secret", "--rotate", &s]).assert_ok();
    let after = Secret::load(&secret).expect("load");
    assert!(after.verify(&token, proto::clock::wall_ms()).is_ok(), "old tokens still verify");
    let fresh = after.issue(Kind::User, "alice", &[], proto::clock::wall_ms(), 60_000, 60_000);
    assert!(before.verify(&fresh, proto::clock::wall_ms()).is_err(), "the new key signs");
}

/// Both modes: the id a chunkserver keeps in its data directory comes with a secret;
/// a registration naming a live server's id without that secret is refused, and the
/// real server keeps its place.
async fn takeover_is_refused(token_auth: bool) {
    let c = cluster(token_auth).await;
    let data = random_bytes(4, 500_000);
    c.dfs_with_stdin(&["put", "-p", "-", "/d/f"], Some(&data)).assert_ok();
    let victim = &c.chunkservers()[0];
    let id = std::fs::read_to_string(c.data_dir(&victim.name).expect("dir").join("VERSION"))
        .expect("id");
    let id = id.trim().to_owned();
    let attach = if token_auth {
        creds("chunkserver", Some(service_token(&c, "chunkserver")))
    } else {
        creds("mallory", None)
    };
    let mut master =
        ChunkserverProtocolClient::with_interceptor(channel(c.master_addr()).await, attach);
    for (what, secret) in [("no secret", Vec::new()), ("a wrong secret", vec![7u8; 32])] {
        let spoof = pb::ChunkserverInfo {
            id: id.clone(),
            addr: "127.0.0.99:9".into(),
            rack: String::new(),
        };
        let req = pb::RegisterRequest {
            server: Some(spoof),
            id_secret: secret.into(),
            ..Default::default()
        };
        let err = master.register(req).await.expect_err(what);
        assert_eq!(
            refusal(&err),
            (Code::PermissionDenied, ErrorReason::PermissionDenied),
            "{what}"
        );
        assert!(
            err.message().contains(&format!("chunkserver {id}"))
                && err.message().contains("127.0.0.99:9"),
            "{}",
            err.message()
        );
    }
    let short = pb::RegisterRequest {
        server: Some(pb::ChunkserverInfo {
            id: id.clone(),
            addr: "127.0.0.99:9".into(),
            rack: String::new(),
        }),
        id_secret: vec![1u8; 5].into(),
        ..Default::default()
    };
    assert_eq!(master.register(short).await.expect_err("short").code(), Code::InvalidArgument);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let report = c.cluster_report().await.expect("report");
    let entry = report
        .chunkservers
        .iter()
        .find(|s| s.server.as_ref().is_some_and(|i| i.id == id))
        .expect("the victim");
    assert_eq!(
        entry.server.as_ref().map(|i| i.addr.as_str()),
        Some(victim.addr.as_str()),
        "the id still points at the real server"
    );
    assert_eq!(entry.state, pb::ChunkserverState::Live as i32);
    c.assert_cat("/d/f", &data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_cannot_take_over_a_live_id_in_simple_mode() {
    takeover_is_refused(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_cannot_take_over_a_live_id_in_token_mode() {
    takeover_is_refused(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_chunkserver_proves_its_id_and_rejoins() {
    let mut c = cluster(true).await;
    let data = random_bytes(5, 700_000);
    c.dfs_with_stdin(&["put", "-p", "-", "/d/f"], Some(&data)).assert_ok();
    c.kill("cs-1").expect("kill");
    c.restart("cs-1").await.expect("restart");
    c.wait_for_live_chunkservers(2, Duration::from_secs(30)).await.expect("both live");
    c.assert_cat("/d/f", &data);
}
