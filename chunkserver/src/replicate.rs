//! Re-replication on the target side: the master's `Replicate` command (in a heartbeat
//! reply) names a chunk and a source chunkserver; this node pulls the chunk with
//! `ReadChunk` straight from the source (never through the master or a client), checks
//! every block against the CRCs the source stored (sent with block-aligned reads, so the
//! check is end to end: a block damaged on the source's disk, on the wire or in memory
//! is caught here), writes it as a replica being written, finalizes it (fsync) and lets
//! the usual `received` report tell the master.
//!
//! Copies run as background tasks; at most [`MAX_COPIES`] at once per chunkserver (the
//! master throttles too, per source and target) and within the optional
//! `--replication-bandwidth` cap. Each copy is a data stream: it holds a permit of the
//! chunkserver's stream cap ([`crate::streams`]) while it runs, and is dropped, not
//! queued, when none is free (the master issues it again after its replication timeout),
//! as the source refuses a read over its own cap.

use std::sync::Arc;
use std::time::Duration;

use proto::checksum;
use proto::gfs::{ReadChunkRequest, ReplicateChunk};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::pipeline::Peers;
use crate::store::Store;
use crate::streams::Streams;
use crate::throttle::Throttle;

/// Copies a chunkserver makes at once.
pub const MAX_COPIES: usize = 8;
/// Longest wait for the next message from the source.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What copies share.
#[derive(Debug, Clone)]
pub struct Copier {
    /// The local store.
    pub store: Store,
    /// Channels to peers.
    pub peers: Arc<Peers>,
    /// The bandwidth cap.
    pub throttle: Arc<Throttle>,
    /// Bounds concurrent copies.
    pub slots: Arc<Semaphore>,
    /// The chunkserver's cap on data streams, shared with its service.
    pub streams: Streams,
}

impl Copier {
    /// A copier over `store` with an optional cap in bytes per second, counting its
    /// copies against `streams`.
    pub fn new(
        store: Store,
        peers: Arc<Peers>,
        bandwidth: Option<u64>,
        streams: Streams,
    ) -> Copier {
        Copier {
            store,
            peers,
            throttle: Arc::new(Throttle::new(bandwidth)),
            slots: Arc::new(Semaphore::new(MAX_COPIES)),
            streams,
        }
    }

    /// Starts copying in the background.
    pub fn spawn(&self, cmd: ReplicateChunk) {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(_slot) = this.slots.acquire().await else { return };
            let h = cmd.handle;
            let _stream = match this.streams.try_open() {
                Ok(permit) => permit,
                Err(e) => {
                    // Copies come a few per heartbeat, throttled by the master: one line
                    // each is no storm.
                    warn!(chunk = %format!("{h:016x}"), cause = %e, "not copying a replica now");
                    return;
                }
            };
            let started = std::time::Instant::now();
            match this.copy(&cmd).await {
                Ok(true) => info!(
                    chunk = %format!("{h:016x}"),
                    bytes = cmd.length,
                    ms = started.elapsed().as_millis() as u64,
                    "replica copied"
                ),
                Ok(false) => debug!(chunk = %format!("{h:016x}"), "replica already here"),
                Err(e) => {
                    warn!(chunk = %format!("{h:016x}"), cause = %e, "copying a replica failed")
                }
            }
        });
    }

    /// Makes the copy; false if a good replica at this version (or a newer one) is
    /// already here. A copy that fails for any reason removes what it wrote.
    async fn copy(&self, cmd: &ReplicateChunk) -> Result<bool> {
        let h = cmd.handle;
        if !self.keep_or_replace(cmd).await {
            return Ok(false);
        }
        let source = cmd.source.as_ref().map(|s| s.addr.clone()).unwrap_or_default();
        let mut client = self.peers.client(&source).map_err(Error::InvalidArgument)?;
        let store = self.store.clone();
        let (version, length) = (cmd.version, cmd.length);
        let created = tokio::task::spawn_blocking(move || store.create_rbw(h, version, length))
            .await
            .map_err(|e| Error::io("start a copy", std::io::Error::other(e)))??;
        // Moved into each blocking append and back; `None` only while an append runs.
        let mut writer = Some(created);
        let fail =
            |what: String| Error::InvalidArgument(format!("chunk {h:016x} from {source}: {what}"));
        // The master's replicate token for this copy: the source reads for no one else.
        let token = cmd.token.clone();
        let req = ReadChunkRequest { handle: h, version, offset: 0, length: 0, token };
        let filled = async {
            let mut stream = match tokio::time::timeout(READ_TIMEOUT, client.read_chunk(req)).await
            {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(s)) => return Err(fail(s.message().to_owned())),
                Err(_) => return Err(fail("no answer".to_owned())),
            };
            let mut got = 0u64;
            loop {
                let msg = match tokio::time::timeout(READ_TIMEOUT, stream.message()).await {
                    Ok(Ok(Some(m))) => m,
                    Ok(Ok(None)) => break,
                    Ok(Err(s)) => return Err(fail(s.message().to_owned())),
                    Err(_) => return Err(fail("stalled".to_owned())),
                };
                if msg.offset != got {
                    return Err(fail(format!("data at {} where {got} was expected", msg.offset)));
                }
                if msg.crcs.len() != checksum::block_count(msg.data.len()) {
                    let (n, len) = (msg.crcs.len(), msg.data.len());
                    return Err(fail(format!("{n} checksums for {len} bytes")));
                }
                if let Err(e) = checksum::verify(&msg.data, &msg.crcs) {
                    return Err(fail(format!("arrived damaged: {e}")));
                }
                self.throttle.acquire(msg.data.len() as u64).await;
                got += msg.data.len() as u64;
                let w = writer.take().ok_or_else(|| fail("writer lost".to_owned()))?;
                let (w, appended) = tokio::task::spawn_blocking(move || {
                    let mut w = w;
                    let r = w.append(msg.offset, &msg.data, &msg.crcs);
                    (w, r)
                })
                .await
                .map_err(|e| Error::io("copy", std::io::Error::other(e)))?;
                writer = Some(w);
                appended?;
            }
            if got != length {
                return Err(fail(format!("got {got} bytes, expected {length}")));
            }
            Ok(())
        };
        let result = filled.await;
        let Some(w) = writer.take() else {
            return result
                .and(Err(Error::InvalidArgument(format!("chunk {h:016x}: copy lost its writer"))));
        };
        let finished = match result {
            Ok(()) => tokio::task::spawn_blocking(move || w.finalize().map(drop)).await,
            Err(e) => {
                // Nothing of a failed copy is kept: an rbw file left here would sit as a
                // replica being written of a complete chunk.
                let _ = tokio::task::spawn_blocking(move || w.abort()).await;
                return Err(e);
            }
        };
        finished.map_err(|e| Error::io("finalize a copy", std::io::Error::other(e)))??;
        Ok(true)
    }

    /// Decides what to do with a replica of the chunk already here: true to copy. A
    /// newer one stays; a finalized one at the command's version is checked in full (the
    /// master sends a copy here only if it thinks that replica bad): if it verifies at the
    /// right length it is reported again and kept, else marked corrupt and replaced.
    async fn keep_or_replace(&self, cmd: &ReplicateChunk) -> bool {
        let h = cmd.handle;
        let Some(r) = self.store.get(h) else { return true };
        if r.version > cmd.version {
            return false;
        }
        if !r.finalized || r.version < cmd.version {
            return true;
        }
        let store = self.store.clone();
        let length = cmd.length;
        let verified = tokio::task::spawn_blocking(move || {
            if r.length != length {
                store.mark_corrupt(h);
                return false;
            }
            store.open_reader(h).and_then(|reader| reader.verify_all()).is_ok()
        })
        .await
        .unwrap_or(false);
        if verified {
            self.store.reports().received(r);
            return false;
        }
        true
    }
}
