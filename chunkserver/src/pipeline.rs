//! The write pipeline of one `WriteChunk` stream: receive packets from upstream, verify
//! and store them, forward them downstream, and ack upstream in order.
//!
//! Three parts run at once so the pipeline streams instead of stopping and waiting:
//!
//! - the *receiver* (async task) reads upstream packets, checks their framing (offset,
//!   alignment, CRC count) and hands them to the disk worker through a bounded channel;
//! - the *disk worker* (one blocking thread per stream) verifies each packet's CRCs,
//!   forwards it downstream, writes it with positioned I/O, and on the `last` packet
//!   fsyncs and finalizes; it reports each stored packet as an event;
//! - the *acker* (the task that owns the response stream) takes events in order, waits
//!   for the downstream ack of the same seqno, then acks upstream.
//!
//! Failures become a [`PipelineError`] followed by the error status, both sent upstream
//! and ending the stream. `node_index` counts from this node (0); a downstream failure is
//! relayed with its index plus one, so the client learns which node failed. A CRC
//! mismatch removes the replica; a client that disconnects leaves it in `rbw/`.
//!
//! Hung peers: a node waits at most a *pipeline timeout* for its downstream's answer to
//! the header and for each of its acks, scaled
//! by how far the ack has to travel (`timeout + (k - 1) * timeout / 2` with `k` nodes
//! below it), so the node right above a frozen one gives up first and the error names
//! the right node; nodes further up still hear that error before their own, longer,
//! wait runs out. The disk worker never blocks forever on a downstream that stopped
//! reading: it gives up once the acker has failed.
//!
//! Idle streams: the receiver waits at most the *idle timeout* for each message from
//! upstream. A writer with nothing to send sends a `Keepalive` instead (the dfs client
//! does every `ClientConfig::keepalive_interval`); it resets the timer and is forwarded
//! downstream by the disk worker, in order with the packets, so every node's timer is
//! reset; it is never acked. A stream silent past the timeout fails with
//! [`Error::Idle`] sent upstream and ends as if its upstream had gone: the replica stays
//! in `rbw/` for recovery (and is reported), its space reservation is released, and the
//! downstream sees its upstream close. A node whose *downstream* goes quiet is the
//! pipeline timeout's business, unchanged.
//!
//! The header's chunk access token was checked by the service before this runs
//! ([`crate::access`]); it is forwarded unchanged in the header sent downstream, and each
//! node checks it again.
//!
//! Pipeline recovery: a header with `resume_offset > 0` reopens this node's replica (left
//! by the failed pipeline, at an older version), cuts it to that offset, restamps it with
//! the header's version and appends from there ([`Store::resume_rbw`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::checksum::{self, BLOCK_SIZE, ChecksumError};
use proto::gfs::chunkserver_client::ChunkserverClient;
use proto::gfs::write_chunk_request::Msg as ReqMsg;
use proto::gfs::write_chunk_response::Msg as RespMsg;
use proto::gfs::{
    Ack, Keepalive, Packet, PipelineError, WriteChunkRequest, WriteChunkResponse, WriteHeader,
};
use proto::reason::{self, ErrorReason};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};
use tracing::{debug, warn};

use crate::error::Error;
use crate::store::{RbwWriter, Store};

/// Largest gRPC message of the Chunkserver service, both ways.
pub const MAX_MESSAGE: usize = 16 << 20;
/// Largest HTTP/2 DATA frame this node accepts (as server and as client of its peers).
///
/// Bigger than a whole packet or read message (~1 MiB + a few hundred bytes of framing),
/// so each arrives as one frame. With 1 MiB frames a message spanned two, and tonic, on
/// reading a message header with most of the body already buffered, reallocated its
/// receive buffer for the full length and copied the buffered part: a second memory copy
/// of nearly every byte received.
pub const MAX_FRAME: u32 = 4 << 20;
const B: u64 = BLOCK_SIZE as u64;
/// Packets queued between receiver and disk worker, and between disk worker and the
/// downstream stream: enough to keep both busy, small enough to bound memory.
const PACKETS_IN_FLIGHT: usize = 16;

/// Cached channels to peer chunkservers, one per address (tonic channels multiplex
/// streams and reconnect on their own).
#[derive(Debug)]
pub struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
    attach: security::Attach,
}

/// A peer chunkserver, every call carrying our credentials.
pub type PeerClient = ChunkserverClient<InterceptedService<Channel, security::Attach>>;

impl Peers {
    /// Peers called with `attach` (a service token in token mode).
    pub fn new(attach: security::Attach) -> Peers {
        Peers { channels: Mutex::new(HashMap::new()), attach }
    }

    /// A client for the chunkserver at `addr` (`host:port`).
    ///
    /// # Errors
    /// A message if `addr` is not a valid address.
    pub fn client(&self, addr: &str) -> Result<PeerClient, String> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match map.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = security::tls::endpoint(addr)?
                    .tcp_nodelay(true)
                    .initial_stream_window_size(8 << 20)
                    .initial_connection_window_size(32 << 20)
                    .max_frame_size(MAX_FRAME)
                    .connect_lazy();
                map.insert(addr.to_owned(), c.clone());
                c
            }
        };
        Ok(ChunkserverClient::with_interceptor(channel, self.attach.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }
}

/// What a write stream needs from the server.
#[derive(Debug, Clone)]
pub struct WriteContext {
    /// The replica store.
    pub store: Store,
    /// This node's advertised address, for error messages.
    pub addr: String,
    /// Channels to downstream peers.
    pub peers: Arc<Peers>,
    /// Flips to true on shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// How long the node above a hung one waits for its ack (see the module docs).
    pub timeout: Duration,
    /// How long the stream may receive nothing from upstream (see the module docs).
    pub idle_timeout: Duration,
}

/// How long a node with `below` nodes downstream waits for an ack.
pub fn ack_wait(timeout: Duration, below: usize) -> Duration {
    timeout + timeout * (below.saturating_sub(1) as u32) / 2
}

type Responses = mpsc::Sender<Result<WriteChunkResponse, Status>>;

/// A failure to report upstream: the message, then the status ending the stream.
struct Failure {
    error: PipelineError,
    status: Status,
}

impl Failure {
    fn here(addr: &str, code: Code, reason: ErrorReason, message: String) -> Failure {
        let message = format!("chunkserver {addr}: {message}");
        Failure {
            error: PipelineError { node_index: 0, addr: addr.to_owned(), message: message.clone() },
            status: reason::status(code, message, reason),
        }
    }

    fn from_error(addr: &str, err: Error) -> Failure {
        Failure::here(addr, err.code(), err.reason(), err.to_string())
    }

    /// The next node failed without a PipelineError of its own (unreachable, died). Its
    /// status's reason, if it gave one, goes upstream unchanged.
    fn downstream(next: &str, status: &Status) -> Failure {
        let code = match status.code() {
            Code::Unknown | Code::Cancelled | Code::Internal => Code::Unavailable,
            c => c,
        };
        let message = if status.message().starts_with("chunkserver ") {
            status.message().to_owned()
        } else {
            format!("chunkserver {next}: {}", status.message())
        };
        Failure {
            error: PipelineError { node_index: 1, addr: next.to_owned(), message: message.clone() },
            status: reason::status(code, message, reason::of(status)),
        }
    }

    async fn send(self, tx: &Responses) {
        let msg = WriteChunkResponse { msg: Some(RespMsg::Error(self.error)) };
        // The upstream may be gone already; then there is nobody to tell.
        let _ = tx.send(Ok(msg)).await;
        let _ = tx.send(Err(self.status)).await;
    }
}

/// What the receiver hands the disk worker, in arrival order.
enum Inbound {
    Packet(Packet),
    /// Forwarded downstream; nothing to store.
    Keepalive,
}

/// What the disk worker (or receiver) tells the acker.
enum Event {
    /// The packet is stored here (for `last`: durably and finalized).
    Stored {
        seqno: u64,
        acked_length: u64,
        last: bool,
    },
    Failed(Failure),
}

/// Runs one write stream whose header has been read; answers on `tx`.
pub async fn run(
    ctx: WriteContext,
    header: WriteHeader,
    inbound: Streaming<WriteChunkRequest>,
    tx: Responses,
) {
    let addr = ctx.addr.clone();
    let (handle, version, limit) = (header.handle, header.version, header.chunk_size);
    let resume = header.resume_offset;
    let store = ctx.store.clone();
    let wait = ctx.timeout * 2;
    let created = tokio::task::spawn_blocking(move || {
        if resume > 0 {
            store.resume_rbw(handle, version, resume, limit.saturating_sub(resume), wait)
        } else {
            store.create_rbw(handle, version, limit)
        }
    })
    .await;
    let writer = match created {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => return Failure::from_error(&addr, e).send(&tx).await,
        Err(e) => {
            let f = Failure::here(
                &addr,
                Code::Internal,
                ErrorReason::Internal,
                format!("create replica: {e}"),
            );
            return f.send(&tx).await;
        }
    };

    let mut downstream = None;
    let wait = ack_wait(ctx.timeout, header.downstream.len());
    if let Some(next) = header.downstream.first() {
        // A frozen process still completes TCP connects: bound the wait for its answer
        // as any ack wait, so this node (right above it) names it before upstream nodes
        // or the client give up on this one.
        let opened = match tokio::time::timeout(wait, open_downstream(&ctx.peers, &header)).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer to the write header within {} ms",
                wait.as_millis()
            ))),
        };
        match opened {
            Ok(d) => downstream = Some(d),
            Err(status) => {
                let _ = tokio::task::spawn_blocking(move || writer.abort()).await;
                return Failure::downstream(&next.addr, &status).send(&tx).await;
            }
        }
    }
    let next_addr = header.downstream.first().map(|n| n.addr.clone()).unwrap_or_default();
    let (ds_tx, ds_rx) = match downstream {
        Some((tx, rx)) => (Some(tx), Some(rx)),
        None => (None, None),
    };

    let (pkt_tx, pkt_rx) = mpsc::channel::<Inbound>(PACKETS_IN_FLIGHT);
    let (ev_tx, ev_rx) = mpsc::channel::<Event>(4 * PACKETS_IN_FLIGHT);
    let failed = Arc::new(AtomicBool::new(false));
    let worker = {
        let (ev_tx, addr, store) = (ev_tx.clone(), addr.clone(), ctx.store.clone());
        let failed = Arc::clone(&failed);
        tokio::task::spawn_blocking(move || {
            disk_worker(writer, pkt_rx, ds_tx, ev_tx, &addr, &store, &failed)
        })
    };
    let receiver = tokio::spawn(receive(
        inbound,
        pkt_tx,
        ev_tx,
        addr.clone(),
        (limit, resume),
        (handle, ctx.idle_timeout),
    ));
    ack(ev_rx, ds_rx, &tx, (&addr, &next_addr), ctx.shutdown.clone(), wait).await;
    failed.store(true, Ordering::Relaxed);
    // The acker is done (finished, failed, or upstream gone): stop reading upstream so
    // the disk worker sees the end of its input and drops the writer.
    receiver.abort();
    let _ = worker.await;
}

/// Opens the stream to the next node and sends it the header for the rest of the chain.
async fn open_downstream(
    peers: &Peers,
    header: &WriteHeader,
) -> Result<(mpsc::Sender<WriteChunkRequest>, Streaming<WriteChunkResponse>), Status> {
    let next = &header.downstream[0];
    let mut client = peers.client(&next.addr).map_err(Status::unavailable)?;
    let (tx, rx) = mpsc::channel(PACKETS_IN_FLIGHT);
    let rest = WriteHeader { downstream: header.downstream[1..].to_vec(), ..header.clone() };
    tx.send(WriteChunkRequest { msg: Some(ReqMsg::Header(rest)) })
        .await
        .map_err(|_| Status::internal("downstream request channel closed"))?;
    let response = client.write_chunk(ReceiverStream::new(rx)).await?;
    Ok((tx, response.into_inner()))
}

/// Reads upstream packets, checks framing, and queues them for the disk worker, with
/// keepalives in between; gives up on an upstream silent for `idle`.
async fn receive(
    mut inbound: Streaming<WriteChunkRequest>,
    pkt_tx: mpsc::Sender<Inbound>,
    ev_tx: mpsc::Sender<Event>,
    addr: String,
    (limit, resume): (u64, u64),
    (handle, idle): (u64, Duration),
) {
    let mut expected = resume;
    loop {
        // Only the wait for upstream counts as idle: time blocked below on a busy disk
        // worker is this node's own backlog, not a silent writer.
        let Ok(received) = tokio::time::timeout(idle, inbound.message()).await else {
            let what = format!("write of chunk {handle:016x}");
            warn!(chunk = %format!("{handle:016x}"), idle_ms = idle.as_millis() as u64, "closing an idle write stream");
            let f = Failure::from_error(&addr, Error::Idle { what, idle });
            let _ = ev_tx.send(Event::Failed(f)).await;
            return;
        };
        let packet = match received {
            Ok(Some(WriteChunkRequest { msg: Some(ReqMsg::Packet(p)) })) => p,
            Ok(Some(WriteChunkRequest { msg: Some(ReqMsg::Keepalive(_)) })) => {
                // Never waits: a full queue means packets are on their way down anyway.
                let _ = pkt_tx.try_send(Inbound::Keepalive);
                continue;
            }
            Ok(Some(_)) => {
                let f = Failure::here(
                    &addr,
                    Code::InvalidArgument,
                    ErrorReason::Protocol,
                    "expected a packet".into(),
                );
                let _ = ev_tx.send(Event::Failed(f)).await;
                return;
            }
            Ok(None) => return,
            Err(status) => {
                debug!(cause = %status, "upstream of a chunk write went away");
                return;
            }
        };
        if let Err(msg) = check_framing(&packet, expected, limit) {
            let _ = ev_tx
                .send(Event::Failed(Failure::here(
                    &addr,
                    Code::InvalidArgument,
                    ErrorReason::Protocol,
                    msg,
                )))
                .await;
            return;
        }
        expected += packet.data.len() as u64;
        let last = packet.last;
        if pkt_tx.send(Inbound::Packet(packet)).await.is_err() || last {
            return;
        }
    }
}

/// Checks a packet's place in the chunk: contiguous, block-aligned, one CRC per block.
fn check_framing(p: &Packet, expected: u64, limit: u64) -> Result<(), String> {
    let seq = p.seqno;
    if p.offset != expected {
        return Err(format!("packet {seq} at offset {}, expected {expected}", p.offset));
    }
    let len = p.data.len() as u64;
    if !p.last && !len.is_multiple_of(B) {
        return Err(format!("packet {seq} of {len} bytes is not whole 64 KiB blocks"));
    }
    if limit > 0 && p.offset + len > limit {
        return Err(format!(
            "packet {seq} ends at {}, past the chunk size {limit}",
            p.offset + len
        ));
    }
    let want = checksum::block_count(p.data.len());
    if p.crcs.len() != want {
        return Err(format!("packet {seq} has {} checksums, expected {want}", p.crcs.len()));
    }
    Ok(())
}

/// Verifies, forwards and stores packets; runs on a blocking thread.
fn disk_worker(
    mut writer: RbwWriter,
    mut pkt_rx: mpsc::Receiver<Inbound>,
    ds_tx: Option<mpsc::Sender<WriteChunkRequest>>,
    ev_tx: mpsc::Sender<Event>,
    addr: &str,
    store: &Store,
    failed: &AtomicBool,
) {
    let handle = writer.handle();
    while let Some(inbound) = pkt_rx.blocking_recv() {
        let p = match inbound {
            Inbound::Packet(p) => p,
            Inbound::Keepalive => {
                if let Some(ds) = &ds_tx {
                    // As upstream: dropped if the downstream queue is full of packets.
                    let msg = WriteChunkRequest { msg: Some(ReqMsg::Keepalive(Keepalive {})) };
                    let _ = ds.try_send(msg);
                }
                continue;
            }
        };
        if let Err(e) = checksum::verify(&p.data, &p.crcs) {
            let block = match e {
                ChecksumError::Mismatch { block, .. } => p.offset / B + block as u64,
                ChecksumError::CountMismatch { .. } => p.offset / B,
            };
            writer.abort();
            let msg = format!(
                "chunk {handle:016x} packet {}: checksum mismatch in block {block}",
                p.seqno
            );
            let _ = ev_tx.blocking_send(Event::Failed(Failure::here(
                addr,
                Code::DataLoss,
                ErrorReason::Corrupt,
                msg,
            )));
            return;
        }
        let (seqno, last) = (p.seqno, p.last);
        if let Some(ds) = &ds_tx {
            // A closed downstream shows up as an error on its response stream, which the
            // acker reports with the node's index; keep storing locally until then.
            // (Cloning a packet only bumps the reference count of its bytes.)
            let mut msg = WriteChunkRequest { msg: Some(ReqMsg::Packet(p.clone())) };
            // A downstream that stopped reading fills the channel: wait for room, but
            // give up once the acker has failed (it timed out on that node).
            loop {
                match ds.try_send(msg) {
                    Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => break,
                    Err(mpsc::error::TrySendError::Full(m)) => {
                        if failed.load(Ordering::Relaxed) {
                            return;
                        }
                        msg = m;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        if let Err(e) = writer.append(p.offset, &p.data, &p.crcs) {
            let e = if e.is_no_space() {
                Error::DiskFull { need: p.data.len() as u64, remaining: store.space().remaining }
            } else {
                e
            };
            let _ = ev_tx.blocking_send(Event::Failed(Failure::from_error(addr, e)));
            return;
        }
        if last {
            drop(ds_tx);
            let ev = match writer.finalize() {
                Ok(info) => Event::Stored { seqno, acked_length: info.length, last: true },
                Err(e) => Event::Failed(Failure::from_error(addr, e)),
            };
            let _ = ev_tx.blocking_send(ev);
            return;
        }
        let ev = Event::Stored { seqno, acked_length: writer.length(), last: false };
        if ev_tx.blocking_send(ev).is_err() {
            return;
        }
    }
}

/// Acks stored packets upstream in order, each once the downstream acked it too.
async fn ack(
    mut events: mpsc::Receiver<Event>,
    mut downstream: Option<Streaming<WriteChunkResponse>>,
    tx: &Responses,
    (addr, next): (&str, &str),
    mut shutdown: watch::Receiver<bool>,
    wait: Duration,
) {
    loop {
        let event = tokio::select! {
            ev = events.recv() => ev,
            _ = crate::stopped(&mut shutdown) => {
                let f = Failure::here(addr, Code::Unavailable, ErrorReason::Unspecified, "shutting down".into());
                return f.send(tx).await;
            }
        };
        let (seqno, acked_length, last) = match event {
            // Every producer is gone without a `last`: the upstream went away mid-chunk.
            None => return,
            Some(Event::Failed(f)) => return f.send(tx).await,
            Some(Event::Stored { seqno, acked_length, last }) => (seqno, acked_length, last),
        };
        if let Some(ds) = downstream.as_mut() {
            let acked = tokio::time::timeout(wait, downstream_ack(ds, seqno, next)).await;
            let failure = match acked {
                Ok(Ok(())) => None,
                Ok(Err(f)) => Some(f),
                Err(_) => {
                    let msg = format!("no ack for packet {seqno} within {} ms", wait.as_millis());
                    Some(Failure::downstream(next, &Status::deadline_exceeded(msg)))
                }
            };
            if let Some(f) = failure {
                return f.send(tx).await;
            }
        }
        let ack = WriteChunkResponse { msg: Some(RespMsg::Ack(Ack { seqno, acked_length })) };
        if tx.send(Ok(ack)).await.is_err() || last {
            return;
        }
    }
}

/// Waits for the downstream's ack of `seqno`, turning anything else into a failure.
async fn downstream_ack(
    ds: &mut Streaming<WriteChunkResponse>,
    seqno: u64,
    next: &str,
) -> Result<(), Failure> {
    match ds.message().await {
        Ok(Some(WriteChunkResponse { msg: Some(RespMsg::Ack(a)) })) if a.seqno == seqno => Ok(()),
        Ok(Some(WriteChunkResponse { msg: Some(RespMsg::Error(e)) })) => {
            // Relay the failing node's error, one hop further from the client; the status
            // that ends the downstream stream carries the original code.
            let status = match ds.message().await {
                Err(s) => s,
                Ok(_) => Status::aborted(e.message.clone()),
            };
            let error = PipelineError { node_index: e.node_index + 1, ..e };
            Err(Failure { error, status })
        }
        Ok(Some(other)) => {
            warn!(?other, seqno, "unexpected message from downstream");
            let msg = format!("answered out of order (expected ack of packet {seqno})");
            Err(Failure::downstream(next, &Status::internal(msg)))
        }
        Ok(None) => {
            let msg = format!("stream ended before the ack of packet {seqno}");
            Err(Failure::downstream(next, &Status::unavailable(msg)))
        }
        Err(status) => Err(Failure::downstream(next, &status)),
    }
}
