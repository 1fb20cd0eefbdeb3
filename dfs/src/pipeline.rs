//! One chunk's write pipeline seen from the client: a `WriteChunk` stream to the first
//! replica, packets sent with a window of unacknowledged bytes in flight, and acks read
//! concurrently by a small task.
//!
//! Packets stay in [`ChunkPipeline`]'s unacked queue until every node acknowledged them,
//! so a failed pipeline can be *recovered*: when the stream fails (a `PipelineError`
//! naming the node, a broken stream, or no ack within [`ClientConfig::ack_timeout`]), the
//! failing node is dropped, the master is asked to `UpdatePipeline` (the chunk gets a new
//! version; the survivors become its replicas), and a new stream to the survivors resumes
//! at the first unacknowledged byte (`resume_offset`), resending the unacked packets.
//! Each round drops one node, so the write ends either with the survivors (the master
//! restores the replication once the chunk is finished) or, when none is left, with
//! [`Error::Pipeline`] saying every node failed.
//!
//! Which node failed: the one a `PipelineError` names (its index counts from the first
//! node); a stream that breaks or goes silent without one is blamed on the first node,
//! the only one the client talks to. Chunkservers time out on a hung downstream before
//! the client does (see the chunkserver's pipeline module), so a hung node further down is
//! named by its upstream neighbour.
//!
//! Keepalives: while a stream is open, a small task sends a `Keepalive` on it every
//! [`ClientConfig::keepalive_interval`], so a writer whose input pauses longer than the
//! chunkservers' idle timeout keeps its pipeline (each node forwards it downstream). It
//! never waits for room: a full request channel means packets are flowing, which resets
//! the chunkservers' timers as well.
//!
//! [`ClientConfig::ack_timeout`]: crate::ClientConfig::ack_timeout
//! [`ClientConfig::keepalive_interval`]: crate::ClientConfig::keepalive_interval

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use proto::gfs;
use proto::gfs::write_chunk_request::Msg as ReqMsg;
use proto::gfs::write_chunk_response::Msg as RespMsg;
use proto::path::DfsPath;
use proto::reason::ErrorReason;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use crate::chunk::{ChunkHandle, LocatedChunk, Replica};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::packet::make_packet;
use crate::retry::CallKind;

/// What the ack task hears from the pipeline.
#[derive(Debug)]
enum Event {
    Ack(gfs::Ack),
    /// The stream failed; the index of the node to blame (0 = first).
    Failed(Error, usize),
    /// The response stream ended cleanly.
    End,
}

/// The live `WriteChunk` call.
#[derive(Debug)]
struct Stream {
    /// `None` once the request side is closed.
    tx: Option<mpsc::Sender<gfs::WriteChunkRequest>>,
    events: mpsc::UnboundedReceiver<Event>,
    task: JoinHandle<()>,
    /// Sends keepalives; holds only a weak sender, so it never keeps the stream open.
    keepalive: Option<JoinHandle<()>>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Dropping the sender ends the request stream without a `last` packet, which
        // tells the chunkservers to abandon (or, for recovery, keep) the replica.
        self.task.abort();
        if let Some(k) = &self.keepalive {
            k.abort();
        }
    }
}

/// An open `WriteChunk` stream for one chunk.
#[derive(Debug)]
pub(crate) struct ChunkPipeline {
    client: Client,
    path: DfsPath,
    handle: ChunkHandle,
    version: u64,
    /// The master's write token for `version`, sent in each stream's header.
    token: bytes::Bytes,
    chunk_size: u64,
    /// The pipeline, in order; replicas[0] is the node the client talks to.
    replicas: Vec<Replica>,
    stream: Stream,
    unacked: VecDeque<gfs::Packet>,
    unacked_bytes: usize,
    window: usize,
    ack_timeout: Duration,
    /// Bytes of the chunk sent so far.
    sent: u64,
    next_seqno: u64,
    last_sent: bool,
    /// Ids of the nodes dropped from this pipeline, for the writer's next `AddChunk`.
    failed: Vec<String>,
}

/// A failure of the current stream, before recovery.
struct Broken {
    error: Error,
    node: usize,
}

impl ChunkPipeline {
    /// Opens the stream to `chunk.replicas[0]` and queues the header.
    pub(crate) fn open(
        client: &Client,
        path: &DfsPath,
        chunk: &LocatedChunk,
        chunk_size: u64,
    ) -> Result<Self> {
        if chunk.replicas.is_empty() {
            return Err(Error::Unavailable {
                message: format!("the master gave no replica for new chunk {}", chunk.handle),
                reason: ErrorReason::Unspecified,
            });
        }
        let cfg = client.config();
        let stream = connect(client, chunk, chunk_size, 0)?;
        Ok(ChunkPipeline {
            client: client.clone(),
            path: path.clone(),
            handle: chunk.handle,
            version: chunk.version,
            token: chunk.token.clone(),
            chunk_size,
            replicas: chunk.replicas.clone(),
            stream,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            window: cfg.write_window.max(cfg.packet_size),
            ack_timeout: cfg.ack_timeout,
            sent: 0,
            next_seqno: 0,
            last_sent: false,
            failed: Vec::new(),
        })
    }

    /// Ids of the chunkservers this pipeline dropped as failed.
    pub(crate) fn failed_nodes(&self) -> &[String] {
        &self.failed
    }

    /// The chunk being written.
    pub(crate) fn handle(&self) -> ChunkHandle {
        self.handle
    }

    /// Bytes of the chunk sent so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// True once the chunk's last packet is sent.
    pub(crate) fn last_sent(&self) -> bool {
        self.last_sent
    }

    /// Sends one packet, first waiting for acks while the window is full; recovers the
    /// pipeline if it fails.
    pub(crate) async fn send(&mut self, data: Bytes, last: bool) -> Result<()> {
        loop {
            match self.try_drain_events() {
                Ok(()) => break,
                Err(b) => self.recover(b).await?,
            }
        }
        while !self.unacked.is_empty() && self.unacked_bytes + data.len() > self.window {
            if let Err(b) = self.wait_event().await {
                self.recover(b).await?;
            }
        }
        let packet = make_packet(self.next_seqno, self.sent, data, last);
        let len = packet.data.len();
        self.unacked.push_back(packet.clone());
        self.unacked_bytes += len;
        self.next_seqno += 1;
        self.sent += len as u64;
        self.last_sent = last;
        if let Err(b) = self.transmit(packet).await {
            // The packet is in the unacked queue: recovery resends it.
            self.recover(b).await?;
        }
        Ok(())
    }

    /// Waits until every packet is acknowledged (after a `last` packet: every node has
    /// fsynced and finalized the replica) and returns the chunk's length.
    pub(crate) async fn finish(&mut self) -> Result<u64> {
        let draining = std::time::Instant::now();
        let pending = self.unacked_bytes;
        while !self.unacked.is_empty() {
            if let Err(b) = self.wait_event().await {
                self.recover(b).await?;
            }
        }
        // Close our side and let the server end the call, rather than resetting it.
        self.stream.tx = None;
        let linger = self.ack_timeout.min(Duration::from_secs(5));
        let _ = tokio::time::timeout(linger, async {
            while let Some(ev) = self.stream.events.recv().await {
                if !matches!(ev, Event::Ack(_)) {
                    break;
                }
            }
        })
        .await;
        // How long the end of a chunk (the last window in flight, then every node's
        // fsync) holds the writer up: the next chunk cannot start before it.
        debug!(chunk = %self.handle, length = self.sent, pending, drain_ms = draining.elapsed().as_millis() as u64, "chunk written");
        Ok(self.sent)
    }

    async fn transmit(&mut self, packet: gfs::Packet) -> std::result::Result<(), Broken> {
        let req = gfs::WriteChunkRequest { msg: Some(ReqMsg::Packet(packet)) };
        let sent = match &self.stream.tx {
            // A first node that stopped reading (frozen) fills the transport's buffers:
            // bound the wait for room as any wait for an ack.
            Some(tx) => match tokio::time::timeout(self.ack_timeout, tx.send(req)).await {
                Ok(sent) => sent.is_ok(),
                Err(_) => {
                    let message = format!(
                        "took no data of chunk {} for {} ms",
                        self.handle,
                        self.ack_timeout.as_millis()
                    );
                    let error = Error::Pipeline { addr: self.first_addr(), message };
                    return Err(Broken { error, node: 0 });
                }
            },
            None => false,
        };
        if sent { Ok(()) } else { Err(self.failure().await) }
    }

    fn try_drain_events(&mut self) -> std::result::Result<(), Broken> {
        while let Ok(ev) = self.stream.events.try_recv() {
            self.handle_event(ev)?;
        }
        Ok(())
    }

    async fn wait_event(&mut self) -> std::result::Result<(), Broken> {
        match tokio::time::timeout(self.ack_timeout, self.stream.events.recv()).await {
            Err(_) => Err(Broken {
                error: Error::Pipeline {
                    addr: self.first_addr(),
                    message: format!(
                        "no ack for chunk {} within {} ms",
                        self.handle,
                        self.ack_timeout.as_millis()
                    ),
                },
                node: 0,
            }),
            Ok(None) => Err(self.ended_early()),
            Ok(Some(ev)) => self.handle_event(ev),
        }
    }

    fn handle_event(&mut self, ev: Event) -> std::result::Result<(), Broken> {
        match ev {
            Event::Ack(ack) => {
                let known = self.unacked.front().is_some_and(|p| p.seqno <= ack.seqno);
                if !known {
                    let error = Error::Protocol {
                        addr: self.first_addr(),
                        message: format!(
                            "ack for unknown packet {} of chunk {}",
                            ack.seqno, self.handle
                        ),
                    };
                    return Err(Broken { error, node: 0 });
                }
                while let Some(p) = self.unacked.front() {
                    if p.seqno > ack.seqno {
                        break;
                    }
                    self.unacked_bytes -= p.data.len();
                    self.unacked.pop_front();
                }
                Ok(())
            }
            Event::Failed(error, node) => Err(Broken { error, node }),
            Event::End if self.unacked.is_empty() => Ok(()),
            Event::End => Err(self.ended_early()),
        }
    }

    fn first_addr(&self) -> String {
        self.replicas.first().map(|r| r.addr.clone()).unwrap_or_default()
    }

    fn ended_early(&self) -> Broken {
        Broken {
            error: Error::Pipeline {
                addr: self.first_addr(),
                message: format!(
                    "stream for chunk {} ended with {} packets unacknowledged",
                    self.handle,
                    self.unacked.len()
                ),
            },
            node: 0,
        }
    }

    /// The error that ended the stream, as reported by the ack task.
    async fn failure(&mut self) -> Broken {
        loop {
            match tokio::time::timeout(self.ack_timeout, self.stream.events.recv()).await {
                Ok(Some(Event::Failed(error, node))) => return Broken { error, node },
                Ok(Some(Event::Ack(_))) => continue,
                Ok(Some(Event::End)) | Ok(None) | Err(_) => return self.ended_early(),
            }
        }
    }

    /// Drops the failed node, asks the master for a new version with the survivors and
    /// resumes the stream at the first unacknowledged byte, resending what is unacked.
    async fn recover(&mut self, broken: Broken) -> Result<()> {
        let mut broken = broken;
        loop {
            let node = broken.node.min(self.replicas.len().saturating_sub(1));
            let failed = self.replicas.get(node).map(|r| r.addr.clone()).unwrap_or_default();
            if let Some(r) = self.replicas.get(node) {
                self.failed.push(r.id.clone());
            }
            warn!(chunk = %self.handle, node = %failed, error = %broken.error, "write pipeline failed; recovering");
            let survivors: Vec<Replica> = self
                .replicas
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != node)
                .map(|(_, r)| r.clone())
                .collect();
            if survivors.is_empty() {
                return Err(Error::Pipeline {
                    addr: failed,
                    message: format!(
                        "every node of the pipeline for chunk {} of {} failed (last: {})",
                        self.handle, self.path, broken.error
                    ),
                });
            }
            let chunk = self.update_pipeline(&survivors).await?;
            let resume = self.unacked.front().map_or(self.sent, |p| p.offset);
            self.stream = connect(&self.client, &chunk, self.chunk_size, resume)?;
            self.version = chunk.version;
            self.token = chunk.token;
            self.replicas = chunk.replicas;
            debug!(chunk = %self.handle, version = self.version, resume, nodes = self.replicas.len(), "pipeline resumed");
            let resend: Vec<gfs::Packet> = self.unacked.iter().cloned().collect();
            let mut ok = true;
            for p in resend {
                if let Err(b) = self.transmit(p).await {
                    broken = b;
                    ok = false;
                    break;
                }
            }
            if ok {
                return Ok(());
            }
        }
    }

    async fn update_pipeline(&self, survivors: &[Replica]) -> Result<LocatedChunk> {
        let (client_id, call_id) = self.client.call_id();
        let req = gfs::UpdatePipelineRequest {
            path: self.path.to_string(),
            client_name: self.client.config().client_name.clone(),
            handle: self.handle.0,
            survivors: survivors.iter().map(|r| r.id.clone()).collect(),
            client_id,
            call_id,
        };
        let resp = self
            .client
            .call_master(CallKind::Mutation, &self.path, |mut m| {
                let req = req.clone();
                async move { m.update_pipeline(req).await }
            })
            .await?;
        let chunk: LocatedChunk = resp
            .chunk
            .ok_or_else(|| Error::Protocol {
                addr: self.client.master_addr(),
                message: format!("no chunk in the UpdatePipeline answer for {}", self.path),
            })?
            .into();
        Ok(chunk)
    }
}

/// Opens a `WriteChunk` call to `replicas[0]` with the header for the rest.
fn connect(
    client: &Client,
    chunk: &LocatedChunk,
    chunk_size: u64,
    resume_offset: u64,
) -> Result<Stream> {
    let replicas = &chunk.replicas;
    let first = &replicas[0];
    let addr = first.addr.clone();
    let cs = client.chunkserver(&addr)?;
    // The transport pulls from this channel; the window (not its capacity) bounds what is
    // in flight, so a few slots suffice.
    let (tx, rx) = mpsc::channel(4);
    let header = gfs::WriteHeader {
        handle: chunk.handle.0,
        version: chunk.version,
        token: chunk.token.clone(),
        downstream: replicas[1..].iter().map(gfs::ChunkserverInfo::from).collect(),
        chunk_size,
        client_name: client.config().client_name.clone(),
        resume_offset,
    };
    tx.try_send(gfs::WriteChunkRequest { msg: Some(ReqMsg::Header(header)) }).map_err(|_| {
        Error::Pipeline { addr: addr.clone(), message: "cannot queue the write header".to_owned() }
    })?;
    let (events_tx, events) = mpsc::unbounded_channel();
    let task = tokio::spawn(read_acks(cs, rx, addr, events_tx));
    let every = client.config().keepalive_interval;
    let keepalive = (!every.is_zero()).then(|| tokio::spawn(keep_alive(tx.downgrade(), every)));
    Ok(Stream { tx: Some(tx), events, task, keepalive })
}

/// Queues a keepalive every `every` (after the header, queued first) until the stream's
/// request side is closed.
async fn keep_alive(tx: mpsc::WeakSender<gfs::WriteChunkRequest>, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(tx) = tx.upgrade() else { return };
        let msg = gfs::WriteChunkRequest { msg: Some(ReqMsg::Keepalive(gfs::Keepalive {})) };
        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(msg) {
            return;
        }
    }
}

/// Runs the `WriteChunk` call and forwards what comes back.
async fn read_acks(
    mut cs: proto::gfs::chunkserver_client::ChunkserverClient<crate::client::MasterChannel>,
    rx: mpsc::Receiver<gfs::WriteChunkRequest>,
    addr: String,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut stream = match cs.write_chunk(ReceiverStream::new(rx)).await {
        Ok(resp) => resp.into_inner(),
        Err(status) => {
            let _ = events.send(Event::Failed(Error::from_chunkserver_status(status, &addr), 0));
            return;
        }
    };
    loop {
        let ev = match stream.message().await {
            Ok(Some(gfs::WriteChunkResponse { msg: Some(RespMsg::Ack(ack)) })) => Event::Ack(ack),
            Ok(Some(gfs::WriteChunkResponse { msg: Some(RespMsg::Error(e)) })) => {
                let failed_at = if e.addr.is_empty() { addr.clone() } else { e.addr };
                Event::Failed(
                    Error::Pipeline { addr: failed_at, message: e.message },
                    e.node_index as usize,
                )
            }
            Ok(Some(gfs::WriteChunkResponse { msg: None })) => continue,
            Ok(None) => Event::End,
            Err(status) => Event::Failed(Error::from_chunkserver_status(status, &addr), 0),
        };
        let stop = !matches!(ev, Event::Ack(_));
        if events.send(ev).is_err() || stop {
            return;
        }
    }
}
