//! A client against a replicated master group of in-process stand-ins: a follower sends
//! the call on to the leader it names, a member that cannot be reached is passed over,
//! a leader without a quorum is retried under the same call id and named in one line,
//! and followers answer lookups only when the client allows stale reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::gfs as pb;
use proto::gfs::admin_protocol_server::{AdminProtocol, AdminProtocolServer};
use proto::gfs::client_protocol_server::{ClientProtocol, ClientProtocolServer};
use proto::reason::{self, ErrorReason};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::{Code, Request, Response, Status};

/// What a stand-in member is.
#[derive(Debug, Clone)]
enum Role {
    /// Answers everything.
    Leader,
    /// Refuses with NOT_LEADER naming this leader (or none), except lookups that allow
    /// stale reads.
    Follower(Option<String>),
    /// Leads, but answers changes with NO_QUORUM this many more times.
    NoQuorum(u32),
}

/// One member: its role, and what it was asked.
#[derive(Debug)]
struct Member {
    role: Mutex<Role>,
    /// (client id, call id) of every mkdir that reached it.
    mkdirs: Mutex<Vec<(String, u64)>>,
    /// Whether each GetFileInfo it received allowed a stale answer.
    lookups: Mutex<Vec<bool>>,
    /// Every membership change it carried out, as (id, addr).
    changes: Mutex<Vec<(u64, String)>>,
}

impl Member {
    fn new(role: Role) -> Arc<Member> {
        Arc::new(Member {
            role: Mutex::new(role),
            mkdirs: Mutex::new(Vec::new()),
            lookups: Mutex::new(Vec::new()),
            changes: Mutex::new(Vec::new()),
        })
    }

    fn set(&self, role: Role) {
        *self.role.lock().unwrap() = role;
    }

    /// `Ok` if it may carry out a change now, else its refusal.
    fn may_change(&self) -> Result<(), Status> {
        let mut role = self.role.lock().unwrap();
        match &mut *role {
            Role::Leader | Role::NoQuorum(0) => Ok(()),
            Role::Follower(leader) => Err(reason::not_leader("a follower", leader.as_deref())),
            Role::NoQuorum(n) => {
                *n -= 1;
                Err(reason::status(
                    Code::Unavailable,
                    "no quorum: 2 of 3 members unreachable",
                    ErrorReason::NoQuorum,
                ))
            }
        }
    }
}

/// A served member and the way to stop it.
struct Served {
    addr: String,
    member: Arc<Member>,
    stop: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl Served {
    /// Stops serving, its connections closed.
    async fn stop(&mut self) {
        if let Some((stop, served)) = self.stop.take() {
            let _ = stop.send(());
            tokio::time::timeout(Duration::from_secs(10), served)
                .await
                .expect("the server stops")
                .expect("the server task ends");
        }
    }

    fn mkdirs(&self) -> Vec<(String, u64)> {
        self.member.mkdirs.lock().unwrap().clone()
    }
}

async fn serve(role: Role) -> Served {
    let member = Member::new(role);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(ClientProtocolServer::from_arc(Arc::clone(&member)))
        .add_service(AdminProtocolServer::from_arc(Arc::clone(&member)))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            async {
                let _ = stopped.await;
            },
        );
    let served = tokio::spawn(async move {
        let _ = server.await;
    });
    Served { addr, member, stop: Some((stop, served)) }
}

/// An address nothing listens on.
async fn dead_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

fn config(deadline: Duration, initial_backoff: Duration) -> dfs::ClientConfig {
    dfs::ClientConfig {
        master_retry_deadline: deadline,
        backoff: dfs::Backoff { initial: initial_backoff, max: initial_backoff * 2 },
        user: "u".into(),
        ..dfs::ClientConfig::default()
    }
}

fn file(path: &str) -> pb::FileStatus {
    pb::FileStatus {
        path: path.into(),
        permission: 0o644,
        replication: 1,
        owner: "u".into(),
        group: "g".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_call_reaches_the_leader_once_past_a_dead_member_and_a_follower() {
    let leader = serve(Role::Leader).await;
    let follower = serve(Role::Follower(Some(leader.addr.clone()))).await;
    let bystander = serve(Role::Follower(Some(leader.addr.clone()))).await;
    let dead = dead_addr().await;
    // The follower is the first member up; the bystander comes next in the list, but the
    // follower's answer names the leader, so only the leader is asked after it.
    let list = format!("{dead}, {},{},{}", follower.addr, bystander.addr, leader.addr);
    // A backoff step would cost at least a second: nothing here may wait one.
    let cfg = config(Duration::from_secs(30), Duration::from_secs(2));
    let started = Instant::now();
    let client = dfs::Client::connect(&list, cfg).await.expect("connects to a live member");
    client.mkdir("/a", false).await.expect("mkdir lands on the leader");
    assert!(started.elapsed() < Duration::from_secs(1), "no backoff: {:?}", started.elapsed());
    let (asked, applied) = (follower.mkdirs(), leader.mkdirs());
    assert_eq!(applied.len(), 1, "applied once: {applied:?}");
    assert_eq!(asked, applied, "the follower saw the same call id first");
    assert!(bystander.mkdirs().is_empty(), "straight to the named leader");
    assert_eq!(client.master_addr(), leader.addr, "errors now name the leader");
    // The next call goes straight to the leader.
    client.mkdir("/b", false).await.expect("mkdir");
    assert_eq!(follower.mkdirs().len(), 1, "the follower is not asked again");
    assert_eq!(leader.mkdirs().len(), 2);
    assert_ne!(leader.mkdirs()[0].1, leader.mkdirs()[1].1, "two calls, two call ids");
}

#[tokio::test]
async fn a_leader_that_goes_away_is_passed_over_for_the_next_member() {
    let mut old = serve(Role::Leader).await;
    let next = serve(Role::Follower(Some(old.addr.clone()))).await;
    let cfg = config(Duration::from_secs(5), Duration::from_millis(50));
    let client = dfs::Client::connect(&format!("{},{}", old.addr, next.addr), cfg).await.unwrap();
    client.mkdir("/a", false).await.expect("mkdir on the first leader");
    // The leader dies; the other member is elected.
    old.stop().await;
    next.member.set(Role::Leader);
    client.mkdir("/b", false).await.expect("mkdir on the new leader");
    assert_eq!(old.mkdirs().len(), 1, "only the first call reached the old leader");
    assert_eq!(next.mkdirs().len(), 1, "the second was applied once, by the new leader");
    assert_eq!(client.master_addr(), next.addr);
}

#[tokio::test]
async fn no_quorum_is_retried_under_one_call_id_then_reported_as_such() {
    let leader = serve(Role::NoQuorum(2)).await;
    let cfg = config(Duration::from_secs(30), Duration::from_millis(10));
    let client = dfs::Client::connect(&leader.addr, cfg).await.unwrap();
    client.mkdir("/a", false).await.expect("applied once a quorum is back");
    let calls = leader.mkdirs();
    assert_eq!(calls.len(), 3, "two refusals, then the change: {calls:?}");
    assert!(calls.iter().all(|c| *c == calls[0]), "one call id throughout: {calls:?}");

    leader.member.set(Role::NoQuorum(u32::MAX));
    let cfg = config(Duration::from_millis(300), Duration::from_millis(10));
    let client = dfs::Client::connect(&leader.addr, cfg).await.unwrap();
    let err = client.mkdir("/b", false).await.expect_err("no quorum past the deadline");
    assert!(matches!(err, dfs::Error::NoQuorum { .. }), "{err:?}");
    assert_eq!(err.reason(), ErrorReason::NoQuorum);
    assert_eq!(err.to_string(), "no quorum: 2 of 3 members unreachable");
}

#[tokio::test]
async fn a_follower_answers_lookups_only_when_stale_reads_are_allowed() {
    // Two of three members are down and the survivor knows no leader.
    let survivor = serve(Role::Follower(None)).await;
    let list = format!("{},{},{}", survivor.addr, dead_addr().await, dead_addr().await);
    let strict = config(Duration::from_millis(300), Duration::from_millis(10));
    let client = dfs::Client::connect(&list, strict.clone()).await.unwrap();
    let err = client.stat("/f").await.expect_err("no leader to answer");
    assert_eq!(err.reason(), ErrorReason::NotLeader, "{err:?}");

    let stale = dfs::ClientConfig { stale_ok: true, ..strict };
    let client = dfs::Client::connect(&list, stale).await.unwrap();
    let status = client.stat("/f").await.expect("the follower answers a stale-ok lookup");
    assert_eq!(status.path.as_str(), "/f");
    let lookups = survivor.member.lookups.lock().unwrap().clone();
    assert_eq!(lookups.iter().filter(|&&stale| stale).count(), 1, "{lookups:?}");
    assert_eq!(lookups.last(), Some(&true), "only the stale-ok client said so: {lookups:?}");
    let err = client.mkdir("/d", false).await.expect_err("changes still need the leader");
    assert_eq!(err.reason(), ErrorReason::NotLeader, "{err:?}");
}

#[tokio::test]
async fn membership_changes_go_to_the_leader() {
    let leader = serve(Role::Leader).await;
    let follower = serve(Role::Follower(Some(leader.addr.clone()))).await;
    let cfg = config(Duration::from_secs(30), Duration::from_secs(2));
    let list = format!("{},{}", follower.addr, leader.addr);
    let client = dfs::Client::connect(&list, cfg).await.unwrap();
    let group = client.change_masters(4, Some("127.0.0.4:9000")).await.expect("added");
    assert_eq!(group.leader, 1);
    client.change_masters(2, None).await.expect("removed");
    assert_eq!(
        *leader.member.changes.lock().unwrap(),
        [(4, "127.0.0.4:9000".to_owned()), (2, String::new())],
        "an empty address removes"
    );
    assert!(follower.member.changes.lock().unwrap().is_empty());
    let group = client.masters().await.expect("listed");
    assert_eq!(group.members.len(), 1);
}

/// Refuses the RPCs a test does not use (the trait has no default methods); the
/// signature is the one `tonic::async_trait` gives them.
macro_rules! unused {
    ($($name:ident: $req:ty => $resp:ty;)*) => {$(
        fn $name<'life0, 'async_trait>(
            &'life0 self,
            _: Request<$req>,
        ) -> Pin<Box<dyn Future<Output = Result<Response<$resp>, Status>> + Send + 'async_trait>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Err(Status::unimplemented(stringify!($name))) })
        }
    )*};
}

#[tonic::async_trait]
impl ClientProtocol for Member {
    async fn mkdir(
        &self,
        req: Request<pb::MkdirRequest>,
    ) -> Result<Response<pb::MkdirResponse>, Status> {
        let r = req.into_inner();
        self.mkdirs.lock().unwrap().push((r.client_id, r.call_id));
        self.may_change()?;
        Ok(Response::new(pb::MkdirResponse::default()))
    }

    async fn get_file_info(
        &self,
        req: Request<pb::GetFileInfoRequest>,
    ) -> Result<Response<pb::GetFileInfoResponse>, Status> {
        let stale_ok = security::stale_ok(req.metadata());
        self.lookups.lock().unwrap().push(stale_ok);
        let role = self.role.lock().unwrap().clone();
        if let Role::Follower(leader) = role
            && !stale_ok
        {
            return Err(reason::not_leader("a follower", leader.as_deref()));
        }
        let path = req.into_inner().path;
        Ok(Response::new(pb::GetFileInfoResponse { status: Some(file(&path)) }))
    }

    unused! {
        create: pb::CreateRequest => pb::CreateResponse;
        add_chunk: pb::AddChunkRequest => pb::AddChunkResponse;
        complete: pb::CompleteRequest => pb::CompleteResponse;
        list_dir: pb::ListDirRequest => pb::ListDirResponse;
        get_chunk_locations: pb::GetChunkLocationsRequest => pb::GetChunkLocationsResponse;
        rename: pb::RenameRequest => pb::RenameResponse;
        delete: pb::DeleteRequest => pb::DeleteResponse;
        set_replication: pb::SetReplicationRequest => pb::SetReplicationResponse;
        set_permission: pb::SetPermissionRequest => pb::SetPermissionResponse;
        set_owner: pb::SetOwnerRequest => pb::SetOwnerResponse;
        get_content_summary: pb::GetContentSummaryRequest => pb::GetContentSummaryResponse;
        report_bad_replica: pb::ReportBadReplicaRequest => pb::ReportBadReplicaResponse;
        update_pipeline: pb::UpdatePipelineRequest => pb::UpdatePipelineResponse;
        renew_lease: pb::RenewLeaseRequest => pb::RenewLeaseResponse;
        renew_token: pb::RenewTokenRequest => pb::TokenResponse;
    }
}

#[tonic::async_trait]
impl AdminProtocol for Member {
    async fn masters(
        &self,
        _: Request<pb::MastersRequest>,
    ) -> Result<Response<pb::MastersResponse>, Status> {
        let member = pb::MasterMember {
            id: 1,
            addr: "127.0.0.1:9000".into(),
            role: "leader".into(),
            voter: true,
            ..Default::default()
        };
        Ok(Response::new(pb::MastersResponse { members: vec![member], answered_by: 1, leader: 1 }))
    }

    async fn change_masters(
        &self,
        req: Request<pb::ChangeMastersRequest>,
    ) -> Result<Response<pb::MastersResponse>, Status> {
        self.may_change()?;
        let r = req.into_inner();
        self.changes.lock().unwrap().push((r.id, r.addr));
        Ok(Response::new(pb::MastersResponse { members: vec![], answered_by: 1, leader: 1 }))
    }

    unused! {
        fsck: pb::FsckRequest => pb::FsckResponse;
        cluster_report: pb::ClusterReportRequest => pb::ClusterReportResponse;
        checkpoint: pb::CheckpointRequest => pb::CheckpointResponse;
        safe_mode: pb::SafeModeRequest => pb::SafeModeResponse;
        meta_save: pb::MetaSaveRequest => pb::MetaSaveResponse;
        decommission: pb::DecommissionRequest => pb::DecommissionResponse;
        balance: pb::BalanceRequest => pb::BalanceResponse;
        issue_token: pb::IssueTokenRequest => pb::TokenResponse;
    }
}
