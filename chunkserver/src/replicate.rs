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
//! `--replication-bandwidth` cap.

use std::sync::Arc;
use std::time::Duration;

use proto::checksum;
use proto::gfs::{ReadChunkRequest, ReplicateChunk};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::pipeline::Peers;
use crate::store::Store;
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
}

impl Copier {
    /// A copier over `store` with an optional cap in bytes per second.
    pub fn new(store: Store, peers: Arc<Peers>, bandwidth: Option<u64>) -> Copier {
        Copier {
            store,
            peers,
            throttle: Arc::new(Throttle::new(bandwidth)),
            slots: Arc::new(Semaphore::new(MAX_COPIES)),
        }
    }

    /// Starts copying in the background.
    pub fn spawn(&self, cmd: ReplicateChunk) {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(_slot) = this.slots.acquire().await else { return };
            let h = cmd.handle;
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

    /// Makes the copy; false if a good replica at this version is already here.
    async fn copy(&self, cmd: &ReplicateChunk) -> Result<bool> {
        let h = cmd.handle;
        if self.store.get(h).is_some_and(|r| r.finalized && r.version >= cmd.version) {
            return Ok(false);
        }
        let source = cmd.source.as_ref().map(|s| s.addr.clone()).unwrap_or_default();
        let mut client = self.peers.client(&source).map_err(Error::InvalidArgument)?;
        let store = self.store.clone();
        let (version, length) = (cmd.version, cmd.length);
        let mut writer = tokio::task::spawn_blocking(move || store.create_rbw(h, version, length))
            .await
            .map_err(|e| Error::io("start a copy", std::io::Error::other(e)))??;
        let req = ReadChunkRequest { handle: h, version, offset: 0, length: 0 };
        let fail =
            |what: String| Error::InvalidArgument(format!("chunk {h:016x} from {source}: {what}"));
        let mut stream = match tokio::time::timeout(READ_TIMEOUT, client.read_chunk(req)).await {
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
                return Err(fail(format!(
                    "{} checksums for {} bytes",
                    msg.crcs.len(),
                    msg.data.len()
                )));
            }
            if let Err(e) = checksum::verify(&msg.data, &msg.crcs) {
                return Err(fail(format!("arrived damaged: {e}")));
            }
            self.throttle.acquire(msg.data.len() as u64).await;
            got += msg.data.len() as u64;
            writer = tokio::task::spawn_blocking(move || {
                writer.append(msg.offset, &msg.data, &msg.crcs).map(|()| writer)
            })
            .await
            .map_err(|e| Error::io("copy", std::io::Error::other(e)))??;
        }
        if got != cmd.length {
            writer.abort();
            return Err(fail(format!("got {got} bytes, expected {}", cmd.length)));
        }
        tokio::task::spawn_blocking(move || writer.finalize())
            .await
            .map_err(|e| Error::io("finalize a copy", std::io::Error::other(e)))??;
        Ok(true)
    }
}
