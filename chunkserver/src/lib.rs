//! The chunkserver: stores chunk replicas as local files with a CRC32 per 64 KiB block,
//! takes part in pipelined writes, serves verified reads, and reports to the master.
//!
//! Map of the crate:
//! - [`store`] (with [`meta`]; start-up scan, writer and reader inside): replicas on disk, space accounting;
//! - [`pipeline`]: one `WriteChunk` stream (verify, store, forward, ack in order);
//! - [`server`]: the gRPC service, including read streaming;
//! - [`heartbeat`] and [`reports`]: registration, heartbeats, incremental reports and
//!   the master's commands, with every member of a master group; [`fence`]: obeying
//!   only the leader of the newest term; [`space_watch`]: logging a full disk once, not
//!   per heartbeat;
//! - [`streams`]: the cap on concurrent data streams (`--max-transfer-streams`);
//! - [`replicate`]: copies the master asks for, pulled from a peer and verified;
//! - [`scrub`]: background verification of finalized replicas; [`throttle`]: byte rates;
//! - [`config`], [`error`].
//!
//! [`run`] ties them together for one process (or one in-process test server).
#![warn(missing_docs)]

pub mod access;
pub mod config;
pub mod error;
pub mod fence;
pub mod heartbeat;
pub mod meta;
pub mod pipeline;
pub mod replicate;
pub mod reports;
pub mod scrub;
pub mod server;
pub mod space_watch;
pub mod store;
pub mod streams;
pub mod throttle;

use std::future::Future;
use std::sync::Arc;

use proto::gfs::ChunkserverInfo;
use proto::gfs::chunkserver_server::ChunkserverServer;
use security::connections;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

#[cfg(test)]
#[global_allocator]
static ALLOC: proto::alloc_probe::Probe = proto::alloc_probe::Probe;

pub use config::Config;
pub use error::{Error, Result};

use crate::access::Keys;
use crate::fence::Fence;
use crate::heartbeat::Reporter;
use crate::pipeline::{MAX_FRAME, MAX_MESSAGE, Peers};
use crate::replicate::Copier;
use crate::reports::ReportQueue;
use crate::server::{ChunkserverService, StreamLimits};
use crate::store::Store;
use crate::streams::Streams;

/// Runs a chunkserver on `listener` until `shutdown` completes: opens the store in
/// `cfg.dir`, serves the Chunkserver service, and reports to the master at `cfg.master`
/// (to every member of a master group listed there; retrying quietly while one is
/// unreachable). The advertised address is the listener's.
///
/// # Errors
/// [`Error::Config`] for invalid settings, [`Error::Io`] if the data directory cannot be
/// opened, [`Error::Transport`] if the server fails.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    cfg.validate()?;
    let masters = cfg.masters()?;
    let addr = listener.local_addr().map_err(|e| Error::io("read the listening address", e))?;
    let addr = addr.to_string();
    let (dir, cap) = (cfg.dir.clone(), cfg.capacity);
    let store =
        tokio::task::spawn_blocking(move || Store::open(&dir, cap, Arc::new(ReportQueue::new())))
            .await
            .map_err(|e| Error::io("open the store", std::io::Error::other(e)))??;
    info!(
        id = store.id(),
        addr = %addr,
        dir = %cfg.dir.display(),
        replicas = store.chunk_count(),
        "chunkserver starting"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let interval = cfg.heartbeat_interval();
    let attach = cfg.auth.attach("chunkserver").map_err(|e| Error::Config(e.to_string()))?;
    let peers = Arc::new(Peers::new(attach.clone()));
    let keys = Keys::default();
    let fence = Fence::default();
    let streams = Streams::new(cfg.max_transfer_streams);
    let idle_timeout = cfg.stream_idle_timeout();
    let reporter = Reporter {
        keys: keys.clone(),
        store: store.clone(),
        server: ChunkserverInfo { id: store.id().to_owned(), addr: addr.clone(), rack: cfg.rack },
        masters,
        interval,
        copier: Copier::new(
            store.clone(),
            Arc::clone(&peers),
            cfg.replication_bandwidth,
            streams.clone(),
        ),
        full_report: std::time::Duration::from_secs(cfg.full_report_secs),
        attach,
        fence: fence.clone(),
    };
    let reporter = tokio::spawn(reporter.run(stop_rx.clone()));
    let scrubber = tokio::spawn(scrub::run(
        store.clone(),
        cfg.scrub_bytes_per_sec,
        std::time::Duration::from_secs(cfg.scrub_period_secs),
        stop_rx.clone(),
    ));
    let limits = StreamLimits {
        pipeline_timeout: std::time::Duration::from_millis(cfg.pipeline_timeout_ms),
        idle_timeout,
        streams,
    };
    let service = ChunkserverService::new(store, keys, fence, addr, peers, stop_rx, limits);
    let service = ChunkserverServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    // In token mode every call needs a token (a user's for reads and writes, which the
    // chunk access token then authorizes; a service's for the master's orders).
    let service =
        tonic::service::interceptor::InterceptedService::new(service, cfg.auth.interceptor());
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = cfg.tls.clone() {
        server = server.tls_config(tls).map_err(Error::Transport)?;
    }
    let served = server
        .tcp_nodelay(true)
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(32 << 20)
        .max_frame_size(MAX_FRAME)
        .add_service(service)
        .serve_with_incoming_shutdown(
            connections::guard(listener, cfg.connections, "chunkserver"),
            async {
                shutdown.await;
                // Ends open streams and the reporter, so the graceful drain does not wait on
                // a stalled client.
                let _ = stop_tx.send(true);
            },
        )
        .await;
    let _ = stop_tx.send(true);
    match reporter.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(cause = %e, "master reporter failed"),
        Err(e) => warn!(cause = %e, "master reporter panicked"),
    }
    let _ = scrubber.await;
    served?;
    info!("chunkserver stopped");
    Ok(())
}

/// Completes once the shutdown signal is true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await (it is not Send).
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}
