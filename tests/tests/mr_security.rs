//! Who may do what with MapReduce jobs, on real clusters.
//!
//! Simple mode (users named with `DFS_USER`): a job belongs to whoever submitted it;
//! another user can't kill it or read its details and counters, and is told so in one
//! line; the job's owner and the coordinator's admins (`--admins`, by name or by group)
//! can; a submission may not name another user; a job can't read an input its user may
//! not.
//!
//! Token mode (master, chunkservers, coordinator and workers all with `--auth token`):
//! a word count submitted with alice's token runs end to end as alice, its output
//! alice's and right; the coordinator refuses calls without a valid token, and workers'
//! calls made with a user's token; a worker's shuffle refuses fetches without a token
//! and fetches by another user. The mini cluster harness speaks simple mode, so the
//! token-mode cluster is started here by [`TokenCluster`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use proto::mapred as pb;
use proto::mapred::coordinator_client::CoordinatorClient;
use proto::mapred::shuffle_client::ShuffleClient;
use proto::reason::{self, ErrorReason};
use security::token::{Kind, Secret};
use tempfile::TempDir;
use tests::command::CmdOutput;
use tests::spec::set_flag;
use tests::{ClusterOptions, ClusterSpec, MiniCluster, process, wait_until};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Groups of the simple-mode users: carol is in `ops`, the coordinator's admin group.
const MAPPING: &str = "alice: staff\nbob: bob\ncarol: ops\ndave:\n";

fn local_file(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write local file");
    p.display().to_string()
}

/// Runs the `mapred` CLI as `user` (simple mode).
fn mapred_as(c: &MiniCluster, user: &str, args: &[&str]) -> CmdOutput {
    let mut cmd = c.mr_cmd("mapred");
    cmd.env("DFS_USER", user);
    tests::command::run(cmd, args, None).expect("run mapred")
}

/// Submits a sleep job that runs until killed, as `user`; returns its id.
fn sleeping_job(c: &MiniCluster, user: &str, output: &str) -> String {
    let mut cmd = c.mr_cmd("mapred-examples");
    cmd.env("DFS_USER", user);
    let args = [
        "sleep",
        "--output",
        output,
        "--detach",
        "-D",
        "mapred.generate.maps=1",
        "-D",
        "sleep.map.ms=600000",
    ];
    let mut full = vec!["submit"];
    full.extend(args);
    let out = tests::command::run(cmd, &full, None).expect("run mapred-examples");
    out.assert_ok().stdout_str().trim().to_owned()
}

/// A raw client of the coordinator naming `user` (or no one).
async fn coordinator_as(
    addr: &str,
    user: Option<&str>,
) -> CoordinatorClient<InterceptedService<Channel, Attach>> {
    let channel = Endpoint::new(format!("http://{addr}")).expect("addr").connect().await;
    CoordinatorClient::with_interceptor(
        channel.expect("connect"),
        Attach(user.map(str::to_owned), None),
    )
}

/// Sends a simple-mode user claim and/or a bearer token, as given: unlike
/// `security::Attach` it can send nothing, or a token that does not parse.
#[derive(Clone)]
struct Attach(Option<String>, Option<String>);

impl tonic::service::Interceptor for Attach {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(u) = &self.0 {
            req.metadata_mut().insert(security::USER_HEADER, u.parse().expect("ascii user"));
        }
        if let Some(t) = &self.1 {
            let v = format!("Bearer {t}").parse().expect("ascii token");
            req.metadata_mut().insert(security::AUTHORIZATION_HEADER, v);
        }
        Ok(req)
    }
}

#[track_caller]
fn refused(
    res: Result<impl std::fmt::Debug, tonic::Status>,
    code: tonic::Code,
    reason: ErrorReason,
) -> String {
    let s = res.expect_err("refused");
    assert_eq!((s.code(), reason::of(&s)), (code, reason), "{s:?}");
    s.message().to_owned()
}

#[tokio::test]
async fn only_its_owner_and_admins_may_see_or_kill_a_job() {
    let groups = tempfile::tempdir().expect("tempdir");
    let mapping = local_file(groups.path(), "groups", MAPPING.as_bytes());
    let mapping_flag = ["--group-mapping".to_owned(), mapping];
    let options = ClusterOptions {
        chunkservers: 2,
        master_args: mapping_flag.to_vec(),
        coordinator_args: [&mapping_flag[..], &["--admins".into(), "dave ops".into()]].concat(),
        ..ClusterOptions::for_mapreduce_tests()
    };
    let c = MiniCluster::start(options).await.expect("mini cluster");
    c.dfs(&["mkdir", "-p", "/user/alice", "/user/bob"]).assert_ok();
    c.dfs(&["chown", "alice:staff", "/user/alice"]).assert_ok();
    c.dfs(&["chown", "bob:bob", "/user/bob"]).assert_ok();
    let first = sleeping_job(&c, "alice", "/user/alice/s1");
    let second = sleeping_job(&c, "alice", "/user/alice/s2");
    let coordinator = c.coordinator_addr().expect("coordinator").to_owned();

    // bob may neither kill alice's job nor see its details, and hears why in one line.
    for (args, access) in [
        (["kill", first.as_str()], "KILL_JOB"),
        (["counters", first.as_str()], "VIEW_JOB"),
        (["status", first.as_str()], "VIEW_JOB"),
    ] {
        let line = mapred_as(&c, "bob", &args).assert_fails(1, "mapred: error: ");
        assert_eq!(
            line,
            format!(
                "mapred: error: coordinator at {coordinator}: permission denied: user=bob, access={access}, job={first} (owner alice)"
            )
        );
    }
    // He sees the job in the list, without what only its owner may see.
    let list = mapred_as(&c, "bob", &["list"]);
    let line = list.assert_ok().stdout_str();
    let line = line.lines().find(|l| l.starts_with(&first)).expect("listed");
    assert!(line.contains(" running ") && line.contains(" alice "), "{line}");
    assert!(!line.contains("/user/alice"), "the output path is not bob's to see: {line}");
    let bob = coordinator_as(&coordinator, Some("bob")).await;
    let listed = bob.clone().list_jobs(pb::ListJobsRequest { all: true }).await.expect("list");
    let seen = listed.into_inner().jobs;
    let seen = seen.iter().find(|j| j.job_id == first).expect("listed");
    assert!(seen.counters.is_empty() && seen.output.is_empty(), "{seen:?}");
    // Nor may he submit in alice's name.
    let forged = pb::SubmitJobRequest {
        name: "sleep".into(),
        binary_path: "/x".into(),
        output: "/user/alice/forged".into(),
        user: "alice".into(),
        ..Default::default()
    };
    let msg = refused(
        bob.clone().submit_job(forged).await,
        tonic::Code::PermissionDenied,
        ErrorReason::PermissionDenied,
    );
    assert_eq!(msg, "permission denied: user=bob may not submit a job as alice");
    // A call naming no one is not taken.
    let anonymous = coordinator_as(&coordinator, None).await;
    let res = anonymous.clone().list_jobs(pb::ListJobsRequest { all: true }).await;
    refused(res, tonic::Code::Unauthenticated, ErrorReason::Unauthenticated);

    // Its owner and the admins, by name (dave) and by group (carol, in ops), may.
    for user in ["alice", "carol", "dave"] {
        let out = mapred_as(&c, user, &["counters", &first]);
        out.assert_ok();
        let out = mapred_as(&c, user, &["status", &first]);
        assert!(
            out.assert_ok().stdout_str().contains("output /user/alice/s1"),
            "{}",
            out.describe()
        );
    }
    mapred_as(&c, "alice", &["kill", &first]).assert_ok();
    mapred_as(&c, "dave", &["kill", &second]).assert_ok();
    for job in [&first, &second] {
        let s = c.wait_job_end(job, Duration::from_secs(30)).await.expect("ends");
        assert_eq!(s.state, "killed", "{s:?}");
    }
}

#[tokio::test]
async fn a_job_reads_only_what_its_submitter_may() {
    let c = MiniCluster::start(ClusterOptions {
        chunkservers: 2,
        ..ClusterOptions::for_mapreduce_tests()
    })
    .await
    .expect("mini cluster");
    let local = tempfile::tempdir().expect("tempdir");
    c.dfs(&["mkdir", "-p", "/user/alice", "/user/bob"]).assert_ok();
    c.dfs(&["chown", "alice", "/user/alice"]).assert_ok();
    c.dfs(&["chown", "bob", "/user/bob"]).assert_ok();
    let input = local_file(local.path(), "in", b"a b a\n");
    c.dfs_as("bob", &["put", &input, "/user/bob/secret"]).assert_ok();
    c.dfs_as("bob", &["chmod", "600", "/user/bob/secret"]).assert_ok();
    let mut cmd = c.mr_cmd("mapred-examples");
    cmd.env("DFS_USER", "alice");
    let args =
        ["submit", "wordcount", "--input", "/user/bob/secret", "--output", "/user/alice/out"];
    let out = tests::command::run(cmd, &args, None).expect("run");
    // Refused, saying so (not that the coordinator is unreachable): the submitter cuts
    // the splits as alice, and the store refuses it before the job reaches the
    // coordinator. (Splits forged past the submitter reach files its tasks then read as
    // alice, refused the same way.)
    let line = out.assert_fails(1, "mapred-examples: error: ");
    assert_eq!(
        line,
        "mapred-examples: error: /user/bob/secret: permission denied: user=alice, access=READ, inode=/user/bob/secret (bob:supergroup:-rw-------)"
    );
    assert!(
        c.client()
            .await
            .expect("client")
            .try_stat("/user/alice/out")
            .await
            .expect("stat")
            .is_none()
    );
}

/// A mini cluster whose every process runs with `--auth token` under one secret, started
/// and stopped (SIGKILL on drop) here: the harness's own clients speak simple mode.
struct TokenCluster {
    spec: ClusterSpec,
    children: Vec<Child>,
    secret: Secret,
    _dir: TempDir,
}

impl Drop for TokenCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in self.spec.processes() {
                eprintln!("---- last lines of {} ----\n{}", p.name, process::log_tail(&p.log, 30));
            }
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const HOUR_MS: i64 = 3_600_000;

impl TokenCluster {
    async fn start() -> TokenCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = Secret::generate();
        let secret_file = dir.path().join("secret");
        secret.create(&secret_file).expect("secret file");
        let auth: Vec<String> = vec![
            "--auth".into(),
            "token".into(),
            "--secret-file".into(),
            secret_file.display().to_string(),
        ];
        let options = ClusterOptions {
            chunkservers: 2,
            master_args: auth.clone(),
            chunkserver_args: auth.clone(),
            coordinator_args: auth.clone(),
            worker_args: auth,
            ..ClusterOptions::for_mapreduce_tests()
        };
        let bin = process::bin_dir().expect("binaries");
        let spec = ClusterSpec::plan(dir.path().join("cluster"), bin, options);
        let mut c = TokenCluster { spec, children: Vec::new(), secret, _dir: dir };
        let master = c.launch(|s| &mut s.master).await;
        for i in 0..c.spec.chunkservers.len() {
            set_flag(&mut c.spec.chunkservers[i].args, "--master", &master);
            c.launch(|s| &mut s.chunkservers[i]).await;
        }
        let su = c.client(&security::os_user()).await;
        wait_until(
            "chunkservers to register",
            Duration::from_secs(60),
            tests::DEFAULT_POLL,
            || async { su.cluster_report().await.is_ok_and(|r| r.live_chunkservers >= 2) },
        )
        .await
        .expect("chunkservers");
        if let Some(co) = c.spec.coordinator.as_mut() {
            set_flag(&mut co.args, "--master", &master);
        }
        let coordinator = c.launch(|s| s.coordinator.as_mut().expect("coordinator")).await;
        for i in 0..c.spec.workers.len() {
            set_flag(&mut c.spec.workers[i].args, "--master", &master);
            set_flag(&mut c.spec.workers[i].args, "--coordinator", &coordinator);
            c.launch(|s| &mut s.workers[i]).await;
        }
        let jobs = c.coordinator(Some(&c.user_token(&security::os_user(), &[]))).await;
        wait_until("workers to register", Duration::from_secs(60), tests::DEFAULT_POLL, || async {
            let res = jobs.clone().list_workers(pb::ListWorkersRequest {}).await;
            res.is_ok_and(|r| r.into_inner().workers.len() >= 2)
        })
        .await
        .expect("workers");
        c
    }

    /// Starts the process `which` picks and returns the address it listens on.
    async fn launch(
        &mut self,
        which: impl Fn(&mut ClusterSpec) -> &mut tests::ProcessSpec,
    ) -> String {
        let p = which(&mut self.spec);
        let mut child = process::spawn(p, &p.args, true).expect("spawn");
        let addr = process::wait_for_addr_file(p, &mut child, Duration::from_secs(30)).await;
        self.children.push(child);
        p.addr = addr.expect("listening");
        p.addr.clone()
    }

    fn user_token(&self, user: &str, groups: &[&str]) -> String {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        self.secret.issue(Kind::User, user, &groups, proto::clock::wall_ms(), HOUR_MS, HOUR_MS)
    }

    fn service_token(&self, name: &str) -> String {
        self.secret.issue(Kind::Service, name, &[], proto::clock::wall_ms(), HOUR_MS, HOUR_MS)
    }

    /// A DFS client of `user`'s, with a token.
    async fn client(&self, user: &str) -> dfs::Client {
        let cfg = dfs::ClientConfig {
            user: user.to_owned(),
            cwd: dfs::path::home_dir(user),
            token: Some(self.user_token(user, &[])),
            ..dfs::ClientConfig::default()
        };
        dfs::Client::connect(&self.spec.master.addr, cfg).await.expect("dfs client")
    }

    /// A raw client of the coordinator sending `token` (or none).
    async fn coordinator(
        &self,
        token: Option<&str>,
    ) -> CoordinatorClient<InterceptedService<Channel, Attach>> {
        let addr = &self.spec.coordinator.as_ref().expect("coordinator").addr;
        let channel = Endpoint::new(format!("http://{addr}")).expect("addr").connect().await;
        let attach = Attach(Some("mallory".into()), token.map(str::to_owned));
        CoordinatorClient::with_interceptor(channel.expect("connect"), attach)
    }
}

/// Counts of the words of `text`, as word count prints them (`word\tcount`, sorted).
fn word_counts(text: &str) -> Vec<String> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for w in text.split_whitespace() {
        *counts.entry(w).or_default() += 1;
    }
    counts.into_iter().map(|(w, n)| format!("{w}\t{n}")).collect()
}

#[tokio::test]
async fn token_mode_runs_a_job_as_its_user_and_refuses_the_unproven() {
    let c = TokenCluster::start().await;
    let su = c.client(&security::os_user()).await;
    su.mkdir("/user/alice", true).await.expect("mkdir");
    su.set_owner("/user/alice", Some("alice"), Some("staff")).await.expect("chown");
    let alice = c.client("alice").await;
    let text: String = (0..3000).map(|i| format!("w{} x{} common\n", i % 97, i % 13)).collect();
    alice
        .put_bytes("/user/alice/in", text.as_bytes(), dfs::CreateOptions::default())
        .await
        .expect("put");

    // A word count submitted with alice's token.
    let tokens = tempfile::tempdir().expect("tempdir");
    let token_file = tokens.path().join("alice.token");
    security::token::write_token_file(&token_file, &c.user_token("alice", &["staff"]))
        .expect("token file");
    let mut cmd = std::process::Command::new(c.spec.bin_dir.join("mapred-examples"));
    cmd.env("DFS_MASTER", &c.spec.master.addr)
        .env("MAPRED_COORDINATOR", &c.spec.coordinator.as_ref().expect("coordinator").addr)
        .env(security::TOKEN_FILE_ENV, &token_file)
        .env_remove("DFS_USER");
    let args =
        ["submit", "wordcount", "--input", "/user/alice/in", "--output", "out", "--reducers", "2"];
    let out = tests::command::run(cmd, &args, None).expect("run");
    out.assert_ok();
    // Its output is alice's, every file of it, and right to the byte.
    let mut parts: Vec<PathBuf> = Vec::new();
    for f in alice.list("/user/alice/out").await.expect("ls") {
        assert_eq!((f.owner.as_str(), f.group.as_str()), ("alice", "staff"), "{f:?}");
        if f.path.to_string().contains("part-") {
            parts.push(PathBuf::from(f.path.to_string()));
        }
    }
    assert_eq!(parts.len(), 2, "one part per reducer");
    let mut lines = Vec::new();
    for p in &parts {
        let bytes = alice.read_all(p.display().to_string().as_str()).await.expect("cat");
        lines.extend(String::from_utf8(bytes).expect("utf-8").lines().map(str::to_owned));
    }
    lines.sort();
    assert_eq!(lines, word_counts(&text));

    // The coordinator takes no call without a valid token: none, or one signed under
    // another secret.
    let forged = Secret::generate().issue(
        Kind::User,
        "alice",
        &[],
        proto::clock::wall_ms(),
        HOUR_MS,
        HOUR_MS,
    );
    for token in [None, Some(forged.as_str()), Some("not-a-token")] {
        let mut co = c.coordinator(token).await;
        let res = co.list_jobs(pb::ListJobsRequest { all: true }).await;
        refused(res, tonic::Code::Unauthenticated, ErrorReason::Unauthenticated);
        let res = co.register_worker(pb::RegisterWorkerRequest::default()).await;
        refused(res, tonic::Code::Unauthenticated, ErrorReason::Unauthenticated);
    }
    // Workers' calls take service tokens only: a user's is refused.
    let alice_token = c.user_token("alice", &["staff"]);
    let mut co = c.coordinator(Some(&alice_token)).await;
    let register = pb::RegisterWorkerRequest {
        host: "127.0.0.9".into(),
        slots: 4,
        shuffle_addr: "127.0.0.9:1".into(),
        ..Default::default()
    };
    let msg = refused(
        co.register_worker(register).await,
        tonic::Code::PermissionDenied,
        ErrorReason::PermissionDenied,
    );
    assert_eq!(msg, "alice is not a cluster service: this port takes service tokens only");
    let res =
        co.heartbeat(pb::HeartbeatRequest { worker_id: "w".into(), ..Default::default() }).await;
    refused(res, tonic::Code::PermissionDenied, ErrorReason::PermissionDenied);
    let report = pb::ReportAttemptRequest {
        attempt_id: "attempt_1_0001_m_000000_0".into(),
        ..Default::default()
    };
    let res = co.report_attempt(report).await;
    refused(res, tonic::Code::PermissionDenied, ErrorReason::PermissionDenied);
    // Her token is good for her own calls: the list shows her job.
    let jobs =
        co.list_jobs(pb::ListJobsRequest { all: true }).await.expect("list").into_inner().jobs;
    assert!(jobs.iter().any(|j| j.user == "alice" && j.state == "succeeded"), "{jobs:?}");
}

#[tokio::test]
async fn token_mode_shuffle_takes_services_and_the_jobs_own_user_only() {
    let c = TokenCluster::start().await;
    // A job's files on a worker as an attempt of it leaves them: the job's secret and
    // user (the map output itself is not needed: a fetch let through finds none).
    let worker = &c.spec.workers[0];
    let job = mapred::ids::JobId::parse("job_1_0001").expect("job id");
    let attempt = mapred::ids::AttemptId::parse("attempt_1_0001_m_000000_0").expect("attempt id");
    let job_dir = mapred::shuffle::job_dir(&worker.dir, job);
    let secret = mapred::job_token::JobToken::generate();
    secret.store(&job_dir).expect("job token");
    mapred::job_token::store_owner(&job_dir, "alice").expect("owner");
    let fetch = pb::FetchPartitionRequest {
        job_id: job.to_string(),
        map_attempt: attempt.to_string(),
        partition: 0,
        proof: secret.prove(attempt, 0).into(),
    };
    let channel = Endpoint::new(format!("http://{}", worker.addr))
        .expect("addr")
        .connect()
        .await
        .expect("connect");
    let shuffle = |token: Option<String>| {
        ShuffleClient::with_interceptor(channel.clone(), Attach(Some("alice".into()), token))
    };
    // Without a token, even with the job's proof: refused.
    let res = shuffle(None).fetch_partition(fetch.clone()).await;
    let msg = refused(res, tonic::Code::Unauthenticated, ErrorReason::Unauthenticated);
    assert!(msg.starts_with("no token"), "{msg}");
    // Another user's token: refused.
    let res = shuffle(Some(c.user_token("bob", &[]))).fetch_partition(fetch.clone()).await;
    let msg = refused(res, tonic::Code::PermissionDenied, ErrorReason::PermissionDenied);
    assert_eq!(
        msg,
        format!("permission denied: user=bob may not fetch map outputs of {job}: not its owner")
    );
    // A service's or the owner's token with the job's proof is let through to the files
    // (there is no map output here to serve).
    for token in [c.service_token("worker"), c.user_token("alice", &[])] {
        let res = shuffle(Some(token)).fetch_partition(fetch.clone()).await;
        let msg = refused(res, tonic::Code::NotFound, ErrorReason::Unspecified);
        assert!(msg.starts_with("no map output of"), "{msg}");
    }
    // The owner's token without the job's proof: refused.
    let unproven = pb::FetchPartitionRequest { proof: b"forged".to_vec().into(), ..fetch };
    let res = shuffle(Some(c.user_token("alice", &[]))).fetch_partition(unproven).await;
    refused(res, tonic::Code::PermissionDenied, ErrorReason::PermissionDenied);
}
