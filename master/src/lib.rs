//! The master of the chunk store: the namespace, the chunk map, replica placement and
//! cluster membership, served over gRPC (`gfs.v1.Master`).
//!
//! Layout: [`namespace`] (directory tree, no I/O), [`chunks`] (chunk -> replicas),
//! [`cluster`] (chunkservers and liveness), [`placement`] (rack-aware policy),
//! [`state`] (the operations across them), [`report`] (fsck and cluster report), [`metasave`] (a debugging dump),
//! [`server`] (the gRPC edge). Durability: [`oplog`] (every mutation logged and synced
//! before it is acknowledged, with group commit), [`checkpoint`] (the whole namespace,
//! written beside the log), [`recovery`] (checkpoint + log replay at start-up),
//! [`safemode`] (read-only until chunkservers report in), [`retry_cache`] (answers of
//! recent calls, so retried mutations apply once). Self-healing: [`replication`] (the
//! monitor deciding copies and deletions), [`balancer`], [`healing`] (pipeline recovery,
//! decommission, applying the monitor's decisions), [`leases`] and [`lease_recovery`]
//! (closing a dead writer's files). [`run`] wires them to a listener.
#![warn(missing_docs)]

pub mod balancer;
pub mod checkpoint;
pub mod chunks;
pub mod cluster;
pub mod config;
pub mod error;
pub mod healing;
pub mod lease_recovery;
pub mod leases;
pub mod metasave;
pub mod namespace;
pub mod oplog;
pub mod placement;
pub mod recovery;
pub mod replication;
pub mod report;
pub mod retry_cache;
pub mod safemode;
pub mod server;
pub mod state;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use proto::gfs::master_server::MasterServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{error, info, warn};

#[cfg(test)]
#[global_allocator]
static ALLOC: proto::alloc_probe::Probe = proto::alloc_probe::Probe;

pub use config::Config;
pub use error::{Error, Result};

use state::MasterState;

/// Recovers the namespace from the metadata directory, then serves the master on
/// `listener` until `shutdown` completes.
///
/// # Errors
/// An invalid config; a metadata directory that cannot be created or read, or whose
/// checkpoint or log is damaged (the error names the file and offset); a transport error.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    run_with_ready(config, listener, shutdown, |_| Ok(())).await
}

/// As [`run`], calling `ready` with the bound address once recovery has succeeded and
/// just before the listener is served: the moment to publish the address (the `master`
/// binary's `--addr-file`). Doing that any earlier would tell whoever waits for the
/// address (`minicluster start`) that a master is up which may still refuse to start.
///
/// # Errors
/// As [`run`]; [`Error::Io`] if `ready` fails (nothing is served then).
pub async fn run_with_ready(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    ready: impl FnOnce(std::net::SocketAddr) -> std::io::Result<()>,
) -> Result<()> {
    config.validate()?;
    let heartbeat = config.heartbeat_interval;
    let dir = config.dir.clone();
    let every = config.checkpoint_records;
    let recovered =
        tokio::task::spawn_blocking(move || recovery::recover(config)).await.map_err(|e| {
            Error::Io {
                what: "recovering the namespace".into(),
                source: std::io::Error::other(e.to_string()),
            }
        })??;
    let recovery::Recovered { mut state, log, checkpoint_txid } = recovered;
    // Leases are not persisted: every file open at start-up gets a fresh one.
    let writers: Vec<String> =
        state.ns.open_files().into_iter().map(|(_, w)| w.to_owned()).collect();
    state.leases.adopt(writers.iter().map(String::as_str), Instant::now());
    let wanted = state.journal.checkpoint_wanted();
    let addr = listener
        .local_addr()
        .map_err(|source| Error::Io { what: "reading the bound address".into(), source })?;
    ready(addr).map_err(|source| Error::Io { what: "announcing the address".into(), source })?;
    let state = Arc::new(Mutex::new(state));
    let checkpointer = checkpoint::Checkpointer::new(state.clone(), dir, checkpoint_txid);
    let (stop_tx, stop_rx) = watch::channel(false);
    let monitor = tokio::spawn(monitor(state.clone(), heartbeat, stop_rx.clone()));
    let checkpoints = tokio::spawn(checkpointer.clone().run(wanted, every, stop_rx));
    info!(%addr, "master serving");
    // Accepted sockets get TCP_NODELAY: a gRPC answer is several small HTTP/2 frames,
    // and Nagle's algorithm would hold the last of them back until the client's delayed
    // ACK (tonic sets it only on sockets it accepts itself, not on a given listener's).
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        if let Ok(s) = &conn
            && let Err(e) = s.set_nodelay(true)
        {
            warn!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
        conn
    });
    let serve = tonic::transport::Server::builder()
        .add_service(MasterServer::new(server::MasterService::new(state, checkpointer)))
        .serve_with_incoming_shutdown(incoming, shutdown);
    let (mut monitor, mut checkpoints) = (monitor, checkpoints);
    let outcome =
        supervise(serve, [("monitor", &mut monitor), ("checkpointer", &mut checkpoints)]).await;
    if let Err(e) = &outcome {
        error!(cause = %e, "the master stops");
    }
    let _ = stop_tx.send(true);
    let _ = monitor.await;
    let _ = checkpoints.await;
    // Whatever is queued is written before the writer exits.
    let _ = tokio::task::spawn_blocking(move || log.stop()).await;
    info!("master stopped");
    outcome
}

/// Runs `serve` to its end, unless one of the background `tasks` ends first.
///
/// They run until shutdown; one that ends before (a panic) would leave a master that
/// looks healthy but no longer repairs, recovers leases or checkpoints: serving stops
/// and the error says which task and why, so the operator or a supervisor restarts it.
async fn supervise<const N: usize>(
    serve: impl Future<Output = std::result::Result<(), tonic::transport::Error>>,
    tasks: [(&'static str, &mut tokio::task::JoinHandle<()>); N],
) -> Result<()> {
    let ended = futures::future::select_all(
        tasks.into_iter().map(|(name, handle)| Box::pin(async move { (name, handle.await) })),
    );
    tokio::select! {
        served = serve => served.map_err(Error::from),
        ((name, ended), _, _) = ended => Err(task_died(name, ended)),
    }
}

/// The error for a background task that ended while the master was serving.
fn task_died(task: &'static str, ended: std::result::Result<(), tokio::task::JoinError>) -> Error {
    let cause = match ended {
        Ok(()) => "it returned".to_owned(),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .map_or_else(|| "it panicked".to_owned(), |m| format!("it panicked: {m}"))
        }
        Err(e) => e.to_string(),
    };
    Error::TaskDied { task, cause }
}

/// Once per heartbeat interval: logs chunkserver liveness transitions, lets safe mode end
/// once its extension has run out, runs the replication monitor and starts the recovery
/// of files whose writer's lease expired.
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
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        st.update_safemode(now);
        st.replication_tick(now);
        for plan in st.lease_tick(now, server::now_ms()) {
            tokio::spawn(lease_recovery::recover(state.clone(), plan));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_background_task_that_panics_stops_the_master_with_its_message() {
        let mut quiet = tokio::spawn(std::future::pending::<()>());
        let mut panics = tokio::spawn(async { panic!("boom at the replication tick") });
        let serve = std::future::pending();
        let supervised = supervise(serve, [("checkpointer", &mut quiet), ("monitor", &mut panics)]);
        let err = tokio::time::timeout(std::time::Duration::from_secs(10), supervised)
            .await
            .expect("the panic is noticed, not waited past")
            .expect_err("the panic stops the master");
        assert!(matches!(err, Error::TaskDied { task: "monitor", .. }), "{err}");
        assert!(err.to_string().contains("boom at the replication tick"), "{err}");
        quiet.abort();
    }

    #[tokio::test]
    async fn serving_to_the_end_is_ok() {
        let mut quiet = tokio::spawn(std::future::pending::<()>());
        let served = supervise(async { Ok(()) }, [("monitor", &mut quiet)]).await;
        assert!(served.is_ok());
        quiet.abort();
    }
}
