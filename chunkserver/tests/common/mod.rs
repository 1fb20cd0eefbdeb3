//! A stand-in master for in-process chunkserver tests: it answers `Register` and
//! `Heartbeat` with one chunk token key and counts registrations, so the tests can sign
//! the tokens every chunkserver request needs.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    registered: Arc<AtomicUsize>,
}

struct Service {
    keys: Vec<pb::ChunkTokenKey>,
    registered: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl ChunkserverProtocol for Service {
    async fn register(
        &self,
        _: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        self.registered.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(pb::RegisterResponse {
            heartbeat_interval_ms: 100,
            chunk_size: 0,
            token_keys: self.keys.clone(),
        }))
    }

    async fn heartbeat(
        &self,
        _: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Ok(Response::new(pb::HeartbeatResponse {
            commands: vec![],
            reregister: false,
            token_keys: self.keys.clone(),
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
        let registered = Arc::new(AtomicUsize::new(0));
        let service = Service { keys, registered: Arc::clone(&registered) };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ChunkserverProtocolServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        FakeMaster { addr, minter: Arc::new(minter), registered }
    }

    /// Waits until `n` chunkservers have registered (and so hold the key).
    pub async fn wait_registered(&self, n: usize) {
        for _ in 0..500 {
            if self.registered.load(Ordering::SeqCst) >= n {
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
