//! A stand-in master for in-process chunkserver tests: it answers `Register` and
//! `Heartbeat` with one chunk token key and notes who heartbeats (a chunkserver
//! heartbeats only once registered, holding the key), so the tests can sign the tokens
//! every chunkserver request needs.

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::clock::wall_ms;
use proto::gfs::chunkserver_protocol_server::{ChunkserverProtocol, ChunkserverProtocolServer};
use proto::gfs::{self as pb};
use security::chunk_token::{Modes, SECRET_LEN, TokenMinter};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// The stand-in master; serves until the test ends.
#[derive(Clone)]
pub struct FakeMaster {
    /// Its `host:port`.
    pub addr: String,
    minter: Arc<TokenMinter>,
    registered: Arc<Mutex<HashSet<String>>>,
    /// Every heartbeat received, in order.
    heartbeats: Arc<Mutex<Vec<pb::HeartbeatRequest>>>,
}

struct Service {
    keys: Vec<pb::ChunkTokenKey>,
    registered: Arc<Mutex<HashSet<String>>>,
    heartbeats: Arc<Mutex<Vec<pb::HeartbeatRequest>>>,
}

#[tonic::async_trait]
impl ChunkserverProtocol for Service {
    async fn register(
        &self,
        _: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        Ok(Response::new(pb::RegisterResponse {
            heartbeat_interval_ms: 100,
            chunk_size: 0,
            token_keys: self.keys.clone(),
            leader: true,
            term: 0,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let hb = req.into_inner();
        self.registered.lock().unwrap().insert(hb.id.clone());
        self.heartbeats.lock().unwrap().push(hb);
        Ok(Response::new(pb::HeartbeatResponse {
            commands: vec![],
            reregister: false,
            token_keys: self.keys.clone(),
            leader: true,
            term: 0,
        }))
    }

    async fn report_chunks(
        &self,
        _: Request<pb::ReportChunksRequest>,
    ) -> Result<Response<pb::ReportChunksResponse>, Status> {
        Ok(Response::new(pb::ReportChunksResponse { reregister: false }))
    }
}

impl FakeMaster {
    /// Starts one on 127.0.0.1 port 0.
    pub async fn start() -> FakeMaster {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let minter =
            TokenMinter::new(1, [7; SECRET_LEN], [8; SECRET_LEN], wall_ms(), 3_600_000, 3_600_000);
        let keys = minter
            .keys()
            .iter()
            .map(|k| pb::ChunkTokenKey {
                id: k.id,
                secret: k.secret.to_vec().into(),
                expires_ms: k.expires_ms,
            })
            .collect();
        let registered = Arc::new(Mutex::new(HashSet::new()));
        let heartbeats = Arc::new(Mutex::new(Vec::new()));
        let service = Service {
            keys,
            registered: Arc::clone(&registered),
            heartbeats: Arc::clone(&heartbeats),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ChunkserverProtocolServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        FakeMaster { addr, minter: Arc::new(minter), registered, heartbeats }
    }

    /// The space the (one) chunkserver reports free, after reservations of writes under
    /// way, in a heartbeat sent after this call: what it is now, not what it was.
    pub async fn fresh_remaining(&self) -> u64 {
        let seen = self.heartbeats.lock().unwrap().len();
        for _ in 0..1000 {
            // The second heartbeat from now was certainly made after the call.
            if let Some(hb) = self.heartbeats.lock().unwrap().get(seen + 1) {
                return hb.remaining;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no heartbeat within 10 s");
    }

    /// Waits until `n` chunkservers have registered and heartbeated (so hold the key).
    pub async fn wait_registered(&self, n: usize) {
        for _ in 0..500 {
            if self.registered.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("chunkservers did not register");
    }

    /// A token for `modes` on `handle` at `version`.
    pub fn token(&self, handle: u64, version: u64, modes: Modes) -> bytes::Bytes {
        self.minter.sign(handle, version, modes, wall_ms()).into()
    }
}

/// A token for `modes` on `handle` at `version` under every fake master's key (they all
/// use the same one).
pub fn token(handle: u64, version: u64, modes: Modes) -> bytes::Bytes {
    let minter =
        TokenMinter::new(1, [7; SECRET_LEN], [8; SECRET_LEN], wall_ms(), 3_600_000, 3_600_000);
    minter.sign(handle, version, modes, wall_ms()).into()
}
