//! The master of the chunk store: the namespace, the chunk map, replica placement and
//! cluster membership, served over gRPC (`gfs.v1.Master`).
//!
//! Layout: [`namespace`] (directory tree, no I/O), [`chunks`] (chunk -> replicas),
//! [`cluster`] (chunkservers and liveness), [`placement`] (rack-aware policy),
//! [`state`] (the operations across them), [`report`] (fsck and cluster report),
//! [`server`] (the gRPC edge). [`run`] wires them to a listener.
#![warn(missing_docs)]

pub mod chunks;
pub mod cluster;
pub mod config;
pub mod error;
pub mod namespace;
pub mod placement;
pub mod report;
pub mod server;
pub mod state;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use proto::gfs::master_server::MasterServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{info, warn};

pub use config::Config;
pub use error::{Error, Result};

use state::MasterState;

/// Serves the master on `listener` until `shutdown` completes.
///
/// # Errors
/// An invalid config, a metadata directory that cannot be created, or a transport error.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    config.validate()?;
    std::fs::create_dir_all(&config.dir).map_err(|source| Error::Io {
        what: format!("creating {}", config.dir.display()),
        source,
    })?;
    let heartbeat = config.heartbeat_interval;
    let state = Arc::new(Mutex::new(MasterState::new(config)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let monitor = tokio::spawn(monitor(state.clone(), heartbeat, stop_rx));
    let addr = listener
        .local_addr()
        .map_err(|source| Error::Io { what: "reading the bound address".into(), source })?;
    info!(%addr, "master serving");
    let served = tonic::transport::Server::builder()
        .add_service(MasterServer::new(server::MasterService::new(state)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    let _ = stop_tx.send(true);
    let _ = monitor.await;
    info!("master stopped");
    Ok(served?)
}

/// Watches chunkserver liveness and logs each transition, once per heartbeat interval.
async fn monitor(
    state: Arc<Mutex<MasterState>>,
    every: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut was_live: Vec<bool> = Vec::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let st = state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        for (idx, s) in st.cluster.iter() {
            let live = st.cluster.is_live(idx, now);
            let i = idx.0 as usize;
            if was_live.len() <= i {
                was_live.resize(i + 1, true);
            }
            if was_live[i] != live {
                if live {
                    info!(id = %s.id, addr = %s.addr, "chunkserver is live again");
                } else {
                    warn!(id = %s.id, addr = %s.addr, "chunkserver declared dead: no heartbeat within the dead interval");
                }
                was_live[i] = live;
            }
        }
    }
}
