//! One chunk's write pipeline seen from the client: a `WriteChunk` stream to the first
//! replica, packets sent with a window of unacknowledged bytes in flight, and acks read
//! concurrently by a small task.
//!
//! Packets stay in [`ChunkPipeline`]'s unacked queue until every node acknowledged them,
//! which is what pipeline recovery (resending to a rebuilt pipeline) will need.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use proto::gfs;
use proto::gfs::write_chunk_request::Msg as ReqMsg;
use proto::gfs::write_chunk_response::Msg as RespMsg;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

use crate::chunk::{ChunkHandle, LocatedChunk};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::packet::make_packet;

/// What the ack task hears from the pipeline.
#[derive(Debug)]
enum Event {
    Ack(gfs::Ack),
    Failed(Error),
    /// The response stream ended cleanly.
    End,
}

/// An open `WriteChunk` stream for one chunk.
#[derive(Debug)]
pub(crate) struct ChunkPipeline {
    handle: ChunkHandle,
    /// Address of the first node, which the client talks to.
    addr: String,
    /// `None` once the request stream is closed.
    tx: Option<mpsc::Sender<gfs::WriteChunkRequest>>,
    events: mpsc::UnboundedReceiver<Event>,
    task: JoinHandle<()>,
    unacked: VecDeque<gfs::Packet>,
    unacked_bytes: usize,
    window: usize,
    io_timeout: Duration,
    /// Bytes of the chunk sent so far.
    sent: u64,
    next_seqno: u64,
    last_sent: bool,
}

impl ChunkPipeline {
    /// Opens the stream to `chunk.replicas[0]` and queues the header.
    pub(crate) fn open(client: &Client, chunk: &LocatedChunk, chunk_size: u64) -> Result<Self> {
        let first = chunk.replicas.first().ok_or_else(|| Error::Unavailable {
            message: format!("the master gave no replica for new chunk {}", chunk.handle),
        })?;
        let addr = first.addr.clone();
        let cs = client.chunkserver(&addr)?;
        let cfg = client.config();
        // The transport pulls from this channel; the window (not its capacity) bounds
        // what is in flight, so a few slots suffice.
        let (tx, rx) = mpsc::channel(4);
        let header = gfs::WriteHeader {
            handle: chunk.handle.0,
            version: chunk.version,
            downstream: chunk.replicas[1..].iter().map(gfs::ChunkserverInfo::from).collect(),
            chunk_size,
            client_name: cfg.client_name.clone(),
        };
        tx.try_send(gfs::WriteChunkRequest { msg: Some(ReqMsg::Header(header)) }).map_err(
            |_| Error::Pipeline {
                addr: addr.clone(),
                message: "cannot queue the write header".to_owned(),
            },
        )?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(read_acks(cs, rx, addr.clone(), events_tx));
        Ok(ChunkPipeline {
            handle: chunk.handle,
            addr,
            tx: Some(tx),
            events,
            task,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            window: cfg.write_window.max(cfg.packet_size),
            io_timeout: cfg.io_timeout,
            sent: 0,
            next_seqno: 0,
            last_sent: false,
        })
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

    /// Sends one packet, first waiting for acks while the window is full.
    pub(crate) async fn send(&mut self, data: Bytes, last: bool) -> Result<()> {
        while let Ok(ev) = self.events.try_recv() {
            self.handle_event(ev)?;
        }
        while !self.unacked.is_empty() && self.unacked_bytes + data.len() > self.window {
            self.wait_event().await?;
        }
        let packet = make_packet(self.next_seqno, self.sent, data, last);
        let len = packet.data.len();
        self.unacked.push_back(packet.clone());
        self.unacked_bytes += len;
        self.next_seqno += 1;
        self.sent += len as u64;
        self.last_sent = last;
        let req = gfs::WriteChunkRequest { msg: Some(ReqMsg::Packet(packet)) };
        let sent = match &self.tx {
            Some(tx) => tx.send(req).await.is_ok(),
            None => false,
        };
        if !sent {
            // The call ended; the ack task knows why.
            return Err(self.failure().await);
        }
        Ok(())
    }

    /// Waits until every packet is acknowledged (after a `last` packet: every node has
    /// fsynced and finalized the replica) and returns the chunk's length.
    pub(crate) async fn finish(mut self) -> Result<u64> {
        while !self.unacked.is_empty() {
            self.wait_event().await?;
        }
        // Close our side and let the server end the call, rather than resetting it.
        self.tx = None;
        let linger = self.io_timeout.min(Duration::from_secs(5));
        let _ = tokio::time::timeout(linger, async {
            while let Some(ev) = self.events.recv().await {
                if !matches!(ev, Event::Ack(_)) {
                    break;
                }
            }
        })
        .await;
        debug!(chunk = %self.handle, length = self.sent, "chunk written");
        Ok(self.sent)
    }

    async fn wait_event(&mut self) -> Result<()> {
        match tokio::time::timeout(self.io_timeout, self.events.recv()).await {
            Err(_) => Err(Error::Pipeline {
                addr: self.addr.clone(),
                message: format!(
                    "no ack for chunk {} within {}s",
                    self.handle,
                    self.io_timeout.as_secs()
                ),
            }),
            Ok(None) => Err(self.ended_early()),
            Ok(Some(ev)) => self.handle_event(ev),
        }
    }

    fn handle_event(&mut self, ev: Event) -> Result<()> {
        match ev {
            Event::Ack(ack) => {
                let known = self.unacked.front().is_some_and(|p| p.seqno <= ack.seqno);
                if !known {
                    return Err(Error::Protocol {
                        addr: self.addr.clone(),
                        message: format!(
                            "ack for unknown packet {} of chunk {}",
                            ack.seqno, self.handle
                        ),
                    });
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
            Event::Failed(e) => Err(e),
            Event::End if self.unacked.is_empty() => Ok(()),
            Event::End => Err(self.ended_early()),
        }
    }

    fn ended_early(&self) -> Error {
        Error::Pipeline {
            addr: self.addr.clone(),
            message: format!(
                "stream for chunk {} ended with {} packets unacknowledged",
                self.handle,
                self.unacked.len()
            ),
        }
    }

    /// The error that ended the stream, as reported by the ack task.
    async fn failure(&mut self) -> Error {
        loop {
            match tokio::time::timeout(self.io_timeout, self.events.recv()).await {
                Ok(Some(Event::Failed(e))) => return e,
                Ok(Some(Event::Ack(_))) => continue,
                Ok(Some(Event::End)) | Ok(None) | Err(_) => return self.ended_early(),
            }
        }
    }
}

impl Drop for ChunkPipeline {
    fn drop(&mut self) {
        // Dropping the sender ends the request stream without a `last` packet, which
        // tells the chunkservers to abandon the replica; the ack task is not needed.
        self.task.abort();
    }
}

/// Runs the `WriteChunk` call and forwards what comes back.
async fn read_acks(
    mut cs: proto::gfs::chunkserver_client::ChunkserverClient<tonic::transport::Channel>,
    rx: mpsc::Receiver<gfs::WriteChunkRequest>,
    addr: String,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut stream = match cs.write_chunk(ReceiverStream::new(rx)).await {
        Ok(resp) => resp.into_inner(),
        Err(status) => {
            let _ = events.send(Event::Failed(Error::from_chunkserver_status(status, &addr)));
            return;
        }
    };
    loop {
        let ev = match stream.message().await {
            Ok(Some(gfs::WriteChunkResponse { msg: Some(RespMsg::Ack(ack)) })) => Event::Ack(ack),
            Ok(Some(gfs::WriteChunkResponse { msg: Some(RespMsg::Error(e)) })) => {
                let failed_at = if e.addr.is_empty() { addr.clone() } else { e.addr };
                Event::Failed(Error::Pipeline { addr: failed_at, message: e.message })
            }
            Ok(Some(gfs::WriteChunkResponse { msg: None })) => continue,
            Ok(None) => Event::End,
            Err(status) => Event::Failed(Error::from_chunkserver_status(status, &addr)),
        };
        let stop = !matches!(ev, Event::Ack(_));
        if events.send(ev).is_err() || stop {
            return;
        }
    }
}
