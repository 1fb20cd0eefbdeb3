//! The `Chunkserver` gRPC service: `WriteChunk` (handed to [`crate::pipeline`]) and
//! `ReadChunk` (verified, read-ahead streaming from [`crate::store`]), and lease
//! recovery's `RecoverReplica`/`FinalizeReplica`. Every request must carry a chunk
//! access token from the master allowing it ([`crate::access`]) before anything is read,
//! created, cut or finalized; lease recovery's orders must also come from a master term
//! no older than the newest seen ([`crate::fence`]).
//!
//! Every data stream (a write, a read) first takes a permit from the chunkserver's
//! stream cap ([`crate::streams`]) and holds it until the stream ends; one over the cap
//! is refused before anything else is done. A write stream must send its header, and
//! then packets or keepalives, within the idle timeout ([`crate::pipeline`]).
//!
//! Reads go in windows of [`READ_WINDOW`] bytes aligned to blocks: a producer task reads
//! and verifies a window on a blocking thread, slices it into ~1 MiB messages without
//! copying, and queues them; the bounded queue lets it read the next window while the
//! previous one is still being sent.

use std::sync::Arc;
use std::time::Duration;

use proto::checksum::BLOCK_SIZE;
use proto::gfs::chunkserver_server::Chunkserver;
use proto::gfs::write_chunk_request::Msg as ReqMsg;
use proto::gfs::{
    FinalizeReplicaRequest, FinalizeReplicaResponse, ReadChunkRequest, ReadChunkResponse,
    RecoverReplicaRequest, RecoverReplicaResponse, WriteChunkRequest, WriteChunkResponse,
};
use proto::reason;
use security::chunk_token::Modes;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, instrument, warn};

use crate::access::Keys;
use crate::error::Error;
use crate::fence::Fence;
use crate::pipeline::{self, Peers, WriteContext};
use crate::store::{ReplicaReader, Store};
use crate::streams::{StreamPermit, Streams};

/// Bytes read and verified at a time by a read stream.
pub const READ_WINDOW: u64 = 4 << 20;
/// Bytes per `ReadChunkResponse`.
pub const READ_MESSAGE: u64 = 1 << 20;
/// Messages queued ahead of the client per read stream.
const READ_QUEUE: usize = 8;
/// Responses queued per write stream.
const WRITE_QUEUE: usize = 64;

/// How the service bounds its streams.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// How long a node waits for its downstream's ack (see [`crate::pipeline`]).
    pub pipeline_timeout: Duration,
    /// How long a write stream may receive nothing before it is closed.
    pub idle_timeout: Duration,
    /// The cap on data streams, shared with the copier.
    pub streams: Streams,
}

/// The service; cheap to construct, all state is shared.
#[derive(Debug)]
pub struct ChunkserverService {
    store: Store,
    keys: Keys,
    fence: Fence,
    addr: String,
    peers: Arc<Peers>,
    shutdown: watch::Receiver<bool>,
    limits: StreamLimits,
}

impl ChunkserverService {
    /// A service over `store`, checking tokens with `keys` and lease-recovery orders
    /// against `fence`, advertising `addr` in its error messages, using `peers` for
    /// downstream nodes, bounding streams by `limits`; streams end when `shutdown` turns
    /// true.
    pub fn new(
        store: Store,
        keys: Keys,
        fence: Fence,
        addr: String,
        peers: Arc<Peers>,
        shutdown: watch::Receiver<bool>,
        limits: StreamLimits,
    ) -> ChunkserverService {
        ChunkserverService { store, keys, fence, addr, peers, shutdown, limits }
    }

    /// A permit for one more data stream, or the refusal naming this node and the cap.
    fn open_stream(&self, what: &str) -> Result<StreamPermit, Status> {
        self.limits.streams.try_open().map_err(|e| {
            if let Some(refused) = self.limits.streams.refusals_to_log() {
                let cap = self.limits.streams.cap();
                warn!(
                    cap,
                    refused,
                    last = what,
                    "refused data streams: busy (--max-transfer-streams)"
                );
            }
            status(&self.addr, e)
        })
    }

    /// Refuses a lease-recovery order of a master `term` older than the newest seen. Run
    /// after the token check, so only a master's signed order can raise the newest term.
    fn check_term(&self, handle: u64, term: u64) -> Result<(), Status> {
        self.fence.check_order(term).map_err(|e| {
            info!(chunk = %format!("{handle:016x}"), term, cause = %e, "refused a deposed master's order");
            status(&self.addr, e)
        })
    }

    /// Refuses a request whose token does not allow `modes` on `handle` at `version`.
    fn check(&self, token: &[u8], handle: u64, version: u64, modes: Modes) -> Result<(), Status> {
        self.keys.check(token, handle, version, modes).map_err(|e| {
            warn!(chunk = %format!("{handle:016x}"), version, cause = %e, "refused a request");
            status(&self.addr, e)
        })
    }
}

/// Turns an error into a status naming this node.
fn status(addr: &str, err: Error) -> Status {
    let message = match &err {
        Error::Corrupt { handle, block } => {
            format!("chunk {handle:016x} on {addr}: checksum mismatch in block {block}")
        }
        other => format!("chunkserver {addr}: {other}"),
    };
    reason::status(err.code(), message, err.reason())
}

#[tonic::async_trait]
impl Chunkserver for ChunkserverService {
    type WriteChunkStream = ReceiverStream<Result<WriteChunkResponse, Status>>;
    type ReadChunkStream = ReceiverStream<Result<ReadChunkResponse, Status>>;

    #[instrument(skip_all)]
    async fn write_chunk(
        &self,
        request: Request<Streaming<WriteChunkRequest>>,
    ) -> Result<Response<Self::WriteChunkStream>, Status> {
        // Before anything else, even the header: a stream that never sends one holds a
        // permit for at most the idle timeout.
        let permit = self.open_stream("write")?;
        let mut inbound = request.into_inner();
        let idle = self.limits.idle_timeout;
        let first = match tokio::time::timeout(idle, inbound.message()).await {
            Ok(first) => first?,
            Err(_) => {
                let what = "write stream before its header".to_owned();
                return Err(status(&self.addr, Error::Idle { what, idle }));
            }
        };
        let header = match first {
            Some(WriteChunkRequest { msg: Some(ReqMsg::Header(h)) }) => h,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "chunkserver {}: the first message of a chunk write must be a header",
                    self.addr
                )));
            }
        };
        debug!(chunk = %format!("{:016x}", header.handle), version = header.version, "write");
        // The token names the handle and version: no replica is created or reopened for
        // a chunk the master did not hand this pipeline.
        self.check(&header.token, header.handle, header.version, Modes::WRITE)?;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let ctx = WriteContext {
            store: self.store.clone(),
            addr: self.addr.clone(),
            peers: Arc::clone(&self.peers),
            shutdown: self.shutdown.clone(),
            timeout: self.limits.pipeline_timeout,
            idle_timeout: idle,
        };
        tokio::spawn(async move {
            pipeline::run(ctx, header, inbound, tx).await;
            // The stream counts until its pipeline is done with it.
            drop(permit);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    #[instrument(skip_all, fields(chunk = %format!("{:016x}", request.get_ref().handle)))]
    async fn recover_replica(
        &self,
        request: Request<RecoverReplicaRequest>,
    ) -> Result<Response<RecoverReplicaResponse>, Status> {
        security::require_service(&request)?;
        let r = request.into_inner();
        self.check(&r.token, r.handle, r.new_version, Modes::RECOVER)?;
        self.check_term(r.handle, r.term)?;
        let store = self.store.clone();
        let info =
            tokio::task::spawn_blocking(move || store.recover_replica(r.handle, r.new_version))
                .await
                .map_err(|e| Status::internal(format!("chunkserver {}: recover: {e}", self.addr)))?
                .map_err(|e| status(&self.addr, e))?;
        info!(length = info.length, version = info.version, "replica recovered for lease recovery");
        Ok(Response::new(RecoverReplicaResponse { length: info.length, finalized: info.finalized }))
    }

    #[instrument(skip_all, fields(chunk = %format!("{:016x}", request.get_ref().handle)))]
    async fn finalize_replica(
        &self,
        request: Request<FinalizeReplicaRequest>,
    ) -> Result<Response<FinalizeReplicaResponse>, Status> {
        security::require_service(&request)?;
        let r = request.into_inner();
        self.check(&r.token, r.handle, r.version, Modes::RECOVER)?;
        self.check_term(r.handle, r.term)?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.settle(r.handle, r.version, r.length))
            .await
            .map_err(|e| Status::internal(format!("chunkserver {}: finalize: {e}", self.addr)))?
            .map_err(|e| status(&self.addr, e))?;
        Ok(Response::new(FinalizeReplicaResponse {}))
    }

    #[instrument(skip_all, fields(chunk = %format!("{:016x}", request.get_ref().handle)))]
    async fn read_chunk(
        &self,
        request: Request<ReadChunkRequest>,
    ) -> Result<Response<Self::ReadChunkStream>, Status> {
        let permit = self.open_stream("read")?;
        let req = request.into_inner();
        self.check(&req.token, req.handle, req.version, Modes::READ | Modes::REPLICATE)?;
        let addr = &self.addr;
        let store = self.store.clone();
        let reader = tokio::task::spawn_blocking(move || store.open_reader(req.handle))
            .await
            .map_err(|e| Status::internal(format!("chunkserver {addr}: open replica: {e}")))?
            .map_err(|e| status(addr, e))?;
        let info = reader.info();
        if info.version < req.version {
            let err =
                Error::Stale { handle: req.handle, stored: info.version, requested: req.version };
            return Err(status(addr, err));
        }
        if req.offset > info.length {
            return Err(status(
                addr,
                Error::InvalidArgument(format!(
                    "chunk {:016x}: offset {} is past its length {}",
                    req.handle, req.offset, info.length
                )),
            ));
        }
        let end = match req.length {
            0 => info.length,
            n => req.offset.saturating_add(n).min(info.length),
        };
        let (tx, rx) = mpsc::channel(READ_QUEUE);
        tokio::spawn(stream_range(
            reader,
            req.offset,
            end,
            tx,
            addr.clone(),
            self.shutdown.clone(),
            permit,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Sends `start..end` of a replica as verified ~1 MiB messages, holding the stream's
/// `_permit` until done.
async fn stream_range(
    reader: ReplicaReader,
    start: u64,
    end: u64,
    tx: mpsc::Sender<Result<ReadChunkResponse, Status>>,
    addr: String,
    mut shutdown: watch::Receiver<bool>,
    _permit: StreamPermit,
) {
    let reader = Arc::new(reader);
    let mut pos = start;
    while pos < end {
        // Windows end on multiples of READ_WINDOW so every block is read exactly once.
        let window_end = ((pos / READ_WINDOW + 1) * READ_WINDOW).min(end);
        let r = Arc::clone(&reader);
        let read = tokio::task::spawn_blocking(move || r.read_with_crcs(pos, window_end)).await;
        let aligned = pos.is_multiple_of(BLOCK_SIZE as u64);
        let (bytes, crcs) = match read {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                warn!(cause = %e, "read failed");
                let _ = tx.send(Err(status(&addr, e))).await;
                return;
            }
            Err(e) => {
                let msg = format!("chunkserver {addr}: read: {e}");
                let _ = tx.send(Err(Status::internal(msg))).await;
                return;
            }
        };
        let mut at = 0usize;
        while at < bytes.len() {
            let n = (bytes.len() - at).min(READ_MESSAGE as usize);
            // READ_MESSAGE is whole blocks, so every message of an aligned read starts on
            // a block boundary and carries its blocks' stored CRCs.
            let crcs = if aligned {
                crcs[at / BLOCK_SIZE..(at + n).div_ceil(BLOCK_SIZE)].to_vec()
            } else {
                Vec::new()
            };
            let msg =
                ReadChunkResponse { offset: pos + at as u64, data: bytes.slice(at..at + n), crcs };
            tokio::select! {
                sent = tx.send(Ok(msg)) => if sent.is_err() { return },
                _ = crate::stopped(&mut shutdown) => {
                    let msg = format!("chunkserver {addr}: shutting down");
                    let _ = tx.try_send(Err(Status::unavailable(msg)));
                    return;
                }
            }
            at += n;
        }
        pos = window_end;
    }
}
