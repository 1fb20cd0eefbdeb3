//! An in-process chunkserver with a replicated master group of stand-ins (`--master
//! a,b,c`): it registers, heartbeats and reports to every member, a silent member delays
//! nobody, tokens of any member's keys pass, and orders are obeyed only from the leader
//! of the newest term seen (commands on heartbeat answers; lease recovery's calls are
//! refused with STALE_TERM).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::checksum::{self, BLOCK_SIZE};
use proto::clock::wall_ms;
use proto::gfs as pb;
use proto::gfs::chunk_command::Command;
use proto::gfs::chunkserver_client::ChunkserverClient;
use proto::gfs::chunkserver_protocol_server::{ChunkserverProtocol, ChunkserverProtocolServer};
use proto::gfs::write_chunk_request::Msg as ReqMsg;
use proto::gfs::write_chunk_response::Msg as RespMsg;
use proto::reason::{self, ErrorReason};
use security::chunk_token::{Modes, SECRET_LEN, TokenMinter};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::{Code, Request, Response, Status};

/// What a stand-in member says and what it has heard.
#[derive(Debug, Default)]
struct State {
    leader: bool,
    term: u64,
    /// Commands for the next heartbeat answer.
    pending: Vec<pb::ChunkCommand>,
    heartbeats: usize,
    /// Handles reported received, and deleted, in order.
    received: Vec<u64>,
    deleted: Vec<u64>,
}

/// A stand-in member with chunk token keys of its own.
#[derive(Clone)]
struct Member {
    addr: String,
    minter: Arc<TokenMinter>,
    state: Arc<Mutex<State>>,
}

struct Service {
    keys: Vec<pb::ChunkTokenKey>,
    state: Arc<Mutex<State>>,
}

#[tonic::async_trait]
impl ChunkserverProtocol for Service {
    async fn register(
        &self,
        _: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let s = self.state.lock().unwrap();
        Ok(Response::new(pb::RegisterResponse {
            heartbeat_interval_ms: 50,
            chunk_size: 0,
            token_keys: self.keys.clone(),
            leader: s.leader,
            term: s.term,
        }))
    }

    async fn heartbeat(
        &self,
        _: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let mut s = self.state.lock().unwrap();
        s.heartbeats += 1;
        Ok(Response::new(pb::HeartbeatResponse {
            commands: std::mem::take(&mut s.pending),
            reregister: false,
            token_keys: self.keys.clone(),
            leader: s.leader,
            term: s.term,
        }))
    }

    async fn report_chunks(
        &self,
        req: Request<pb::ReportChunksRequest>,
    ) -> Result<Response<pb::ReportChunksResponse>, Status> {
        let r = req.into_inner();
        let mut s = self.state.lock().unwrap();
        s.received.extend(r.received.iter().map(|c| c.handle));
        s.deleted.extend(r.deleted);
        Ok(Response::new(pb::ReportChunksResponse { reregister: false }))
    }
}

impl Member {
    /// Serves a member on 127.0.0.1 port 0; `seed` makes its key secrets its own (every
    /// member's first key has id 1, so ids collide as they may in a real group).
    async fn start(seed: u8, leader: bool, term: u64) -> Member {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let minter = TokenMinter::new(
            1,
            [seed; SECRET_LEN],
            [!seed; SECRET_LEN],
            wall_ms(),
            3_600_000,
            3_600_000,
        );
        let keys = minter
            .keys()
            .iter()
            .map(|k| pb::ChunkTokenKey {
                id: k.id,
                secret: k.secret.to_vec().into(),
                expires_ms: k.expires_ms,
            })
            .collect();
        let state = Arc::new(Mutex::new(State { leader, term, ..State::default() }));
        let service = Service { keys, state: Arc::clone(&state) };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ChunkserverProtocolServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Member { addr, minter: Arc::new(minter), state }
    }

    fn token(&self, handle: u64, version: u64, modes: Modes) -> bytes::Bytes {
        self.minter.sign(handle, version, modes, wall_ms()).into()
    }

    fn set(&self, leader: bool, term: u64) {
        let mut s = self.state.lock().unwrap();
        (s.leader, s.term) = (leader, term);
    }

    fn heartbeats(&self) -> usize {
        self.state.lock().unwrap().heartbeats
    }

    /// Waits until `done` holds of its state.
    async fn wait(&self, what: &str, done: impl Fn(&State) -> bool) {
        for _ in 0..1000 {
            if done(&self.state.lock().unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not within 10 s at {}", self.addr);
    }

    /// Waits for a heartbeat answered after this call, whose commands (if any) the
    /// chunkserver has dealt with by the one after it.
    async fn two_more_heartbeats(&self) {
        let seen = self.heartbeats();
        self.wait("two more heartbeats", |s| s.heartbeats >= seen + 2).await;
    }

    /// Sends a delete of `handle` at version 1 with its next heartbeat answer, and
    /// returns once the chunkserver has dealt with it.
    async fn order_delete(&self, handle: u64) {
        let delete = pb::DeleteChunks {
            replicas: vec![pb::DeleteReplica { handle, version: 1, rbw_only: false }],
        };
        self.state
            .lock()
            .unwrap()
            .pending
            .push(pb::ChunkCommand { command: Some(Command::Delete(delete)) });
        self.wait("the command taken", |s| s.pending.is_empty()).await;
        self.two_more_heartbeats().await;
    }
}

/// A chunkserver reporting to `masters` (comma-separated).
struct Node {
    addr: String,
    dir: TempDir,
    _stop: oneshot::Sender<()>,
}

async fn start(masters: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cfg = chunkserver::Config {
        master: masters.to_owned(),
        dir: dir.path().to_owned(),
        heartbeat_ms: 50,
        ..chunkserver::Config::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(chunkserver::run(cfg, listener, async {
        let _ = stopped.await;
    }));
    Node { addr, dir, _stop: stop }
}

impl Node {
    async fn client(&self) -> ChunkserverClient<tonic::transport::Channel> {
        ChunkserverClient::connect(format!("http://{}", self.addr)).await.unwrap()
    }

    /// Writes a one-block chunk `handle` at version 1 with `token`; panics on failure.
    async fn write(&self, handle: u64, token: bytes::Bytes) {
        let bytes = vec![7u8; BLOCK_SIZE];
        let header = pb::WriteHeader {
            handle,
            version: 1,
            chunk_size: 64 << 20,
            client_name: "test".into(),
            token,
            ..Default::default()
        };
        let packet = pb::Packet {
            seqno: 0,
            offset: 0,
            crcs: checksum::block_crcs(&bytes),
            data: bytes.into(),
            last: true,
        };
        let reqs = vec![
            pb::WriteChunkRequest { msg: Some(ReqMsg::Header(header)) },
            pb::WriteChunkRequest { msg: Some(ReqMsg::Packet(packet)) },
        ];
        let mut stream =
            self.client().await.write_chunk(tokio_stream::iter(reqs)).await.unwrap().into_inner();
        let mut acked = false;
        while let Some(m) = stream.message().await.unwrap() {
            match m.msg {
                Some(RespMsg::Ack(_)) => acked = true,
                other => panic!("write of chunk {handle} failed: {other:?}"),
            }
        }
        assert!(acked, "the last packet was acknowledged");
    }

    /// Whether a finalized replica of `handle` is on disk.
    fn holds(&self, handle: u64) -> bool {
        std::fs::read_dir(self.dir.path().join("finalized"))
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains(&format!("{handle:016x}")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_hears_every_report_and_a_silent_one_delays_nobody() {
    let leader = Member::start(1, true, 2).await;
    let follower = Member::start(2, false, 2).await;
    // Accepts connections (the kernel's backlog) but never answers: a frozen member.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let node = start(&format!("{},{silent_addr},{}", leader.addr, follower.addr)).await;
    // A call to the silent member waits 30 s; the others go on meanwhile.
    for m in [&leader, &follower] {
        m.wait("heartbeats", |s| s.heartbeats >= 2).await;
    }
    // A follower's token passes as well as the leader's (each member has its keys).
    node.write(1, follower.token(1, 1, Modes::WRITE)).await;
    node.write(2, leader.token(2, 1, Modes::WRITE)).await;
    for m in [&leader, &follower] {
        m.wait("both chunks reported", |s| s.received.contains(&1) && s.received.contains(&2))
            .await;
    }
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_obeyed_only_from_the_leader_of_the_newest_term() {
    let old = Member::start(1, true, 1).await;
    let new = Member::start(2, false, 1).await;
    let node = start(&format!("{},{}", old.addr, new.addr)).await;
    for m in [&old, &new] {
        m.wait("heartbeats", |s| s.heartbeats >= 1).await;
    }
    node.write(1, old.token(1, 1, Modes::WRITE)).await;
    assert!(node.holds(1));

    // An election the old leader missed: it still says leader, but at term 1.
    new.set(false, 2);
    new.two_more_heartbeats().await;
    old.order_delete(1).await;
    assert!(node.holds(1), "a deposed leader's delete is ignored");
    // A member of the newest term that does not lead sends no orders either.
    new.order_delete(1).await;
    assert!(node.holds(1), "a follower's delete is ignored");
    // The new leader's is carried out, and reported to every member.
    new.set(true, 2);
    new.order_delete(1).await;
    assert!(!node.holds(1), "the leader of the newest term is obeyed");
    for m in [&old, &new] {
        m.wait("the delete reported", |s| s.deleted.contains(&1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_recovery_orders_of_an_older_term_are_refused_as_stale() {
    let leader = Member::start(1, true, 3).await;
    let node = start(&leader.addr).await;
    leader.wait("heartbeats", |s| s.heartbeats >= 1).await;
    node.write(1, leader.token(1, 1, Modes::WRITE)).await;
    let mut c = node.client().await;
    let recover = |term| pb::RecoverReplicaRequest {
        handle: 1,
        new_version: 2,
        token: leader.token(1, 2, Modes::RECOVER),
        term,
    };
    let finalize = |term| pb::FinalizeReplicaRequest {
        handle: 1,
        version: 2,
        length: BLOCK_SIZE as u64,
        token: leader.token(1, 2, Modes::RECOVER),
        term,
    };
    fn stale<T>(r: Result<T, Status>) -> (Code, ErrorReason) {
        match r {
            Err(s) => (s.code(), reason::of(&s)),
            Ok(_) => panic!("an order of an older term was carried out"),
        }
    }
    let refused = (Code::FailedPrecondition, ErrorReason::StaleTerm);
    assert_eq!(stale(c.recover_replica(recover(2)).await), refused);
    assert_eq!(stale(c.finalize_replica(finalize(2)).await), refused);
    assert!(node.holds(1), "untouched");
    // The current term's order is carried out; a newer one raises the bar.
    c.recover_replica(recover(3)).await.expect("recovered at version 2");
    c.finalize_replica(finalize(4)).await.expect("settled by a newer leader");
    let later = pb::RecoverReplicaRequest {
        new_version: 3,
        token: leader.token(1, 3, Modes::RECOVER),
        ..recover(3)
    };
    assert_eq!(stale(c.recover_replica(later).await), refused, "term 3 is now stale");
}
