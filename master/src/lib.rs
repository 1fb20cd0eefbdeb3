//! The master of the chunk store: the namespace, the chunk map, replica placement and
//! cluster membership, served over gRPC on one port as three services, one per audience:
//! `gfs.v1.ClientProtocol`, `gfs.v1.ChunkserverProtocol` and `gfs.v1.AdminProtocol`.
//!
//! Layout, from the inside out:
//! - **The core** (no I/O, no clock, no tokio): [`core::Core`] holds the state and
//!   [`command`] is its one entry point, `Core::apply(Command, Now) -> Outcome`, for
//!   client calls, chunkserver messages, admin calls, ticks and replayed log records.
//!   Its parts: [`ids`] (the identifiers), [`namespace`] (directory tree), [`chunks`]
//!   (chunk -> replicas, versions), [`cluster`] (chunkservers and liveness), [`placement`]
//!   (rack-aware policy), [`replication`] (the monitor deciding copies and deletions, and
//!   its [`replication::balancer`]), [`healing`] (pipeline recovery planning,
//!   decommission, applying the monitor's decisions), [`leases`] and [`lease_recovery`]
//!   (closing a dead writer's files), [`safemode`], [`retry_cache`] (answers of recent
//!   calls, so retried mutations apply once), [`report`] and [`metasave`] (read-only views).
//! - **The driver** ([`driver`]): the core and the log's handle under one lock, the
//!   [`clock`], the monitor loop and the chunkserver calls of lease recovery behind a
//!   trait. Durability: [`oplog`] (every record synced before the answer, with group
//!   commit), [`checkpoint`] (the whole namespace, written beside the log), [`recovery`]
//!   (checkpoint + replay through `Core::apply` at start-up).
//! - **The edge** ([`server`]): one service per audience; protobuf <-> commands and
//!   replies, errors -> status codes.
//!
//! [`run`] wires them to a listener.
#![warn(missing_docs)]

pub mod audit;
pub mod checkpoint;
pub mod chunk_tokens;
pub mod chunks;
pub mod clock;
pub mod cluster;
pub mod command;
pub mod config;
pub mod core;
pub mod driver;
pub mod error;
pub mod healing;
pub mod identity;
pub mod ids;
pub mod lease_recovery;
pub mod leases;
pub mod metasave;
pub mod namespace;
pub mod oplog;
pub mod permission;
pub mod placement;
pub mod raft;
pub mod recovery;
pub mod replication;
pub mod report;
pub mod retry_cache;
pub mod safemode;
pub mod server;

use std::future::Future;
use std::sync::Arc;

use proto::gfs::admin_protocol_server::AdminProtocolServer;
use proto::gfs::chunkserver_protocol_server::ChunkserverProtocolServer;
use proto::gfs::client_protocol_server::ClientProtocolServer;
use proto::gfs::raft_protocol_server::RaftProtocolServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

#[cfg(test)]
#[global_allocator]
static ALLOC: proto::alloc_probe::Probe = proto::alloc_probe::Probe;

pub use config::Config;
pub use error::{Error, Result};

use driver::Driver;

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
    let mapping = security::groups::from_flag(config.group_mapping.as_deref())
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let identities =
        Arc::new(identity::Identities::new(&config.superuser, &config.supergroup, mapping));
    let (audit, audit_writer) = match &config.audit_log {
        config::AuditTarget::Off => (audit::AuditLog::disabled(), None),
        target => {
            let file = match target {
                config::AuditTarget::File(f) => f.clone(),
                _ => {
                    std::fs::create_dir_all(&config.dir).map_err(|source| Error::Io {
                        what: format!("creating {}", config.dir.display()),
                        source,
                    })?;
                    config.dir.join("audit.log")
                }
            };
            let (log, writer) = audit::AuditLog::open(&file)?;
            (log, Some(writer))
        }
    };
    let auth = config.auth.clone();
    let tls = config.tls.clone();
    let issuer = auth.secret.clone().map(|secret| server::TokenIssuer {
        secret,
        renew_interval: config.token_renew_interval,
        max_lifetime: config.token_max_lifetime,
    });
    let edge = server::Edge::new(identities, audit, issuer);
    let own_calls = auth.attach("master").map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let heartbeat = config.heartbeat_interval;
    let dir = config.dir.clone();
    let every = config.checkpoint_records;
    let connections = config.connections;
    let addr = listener
        .local_addr()
        .map_err(|source| Error::Io { what: "reading the bound address".into(), source })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    // A single master recovers from its checkpoint and log and checkpoints by itself; a
    // group member from its snapshot and the group's log, and Raft takes its snapshots.
    let (driver, local, group, settler) = match config.group.clone() {
        None => {
            let recovered = tokio::task::spawn_blocking(move || recovery::recover(config))
                .await
                .map_err(|e| Error::Io {
                what: "recovering the namespace".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
            let recovery::Recovered { core, journal, log, checkpoint_txid } = recovered;
            let wanted = journal.checkpoint_wanted();
            let driver = Driver::new(core, journal);
            let checkpointer = checkpoint::Checkpointer::new(driver.clone(), dir, checkpoint_txid);
            let checkpoints =
                tokio::spawn(checkpointer.clone().run(wanted, every, stop_rx.clone()));
            let settler = driver::GrpcSettler::new(driver.tokens(), own_calls);
            (driver, Some((checkpointer, checkpoints, log)), None, settler)
        }
        Some(g) => {
            info!(id = g.id, members = g.peers.len(), "starting as a member of a master group");
            let network = raft::network::Network::new(own_calls.clone());
            let (driver, group, term) = raft::start(config, g, network).await?;
            let settler = driver::GrpcSettler::with_term(driver.tokens(), own_calls, term);
            (driver, None, Some(group), settler)
        }
    };
    ready(addr).map_err(|source| Error::Io { what: "announcing the address".into(), source })?;
    let settler = Arc::new(settler);
    let monitor =
        tokio::spawn(driver::monitor(driver.clone(), settler, heartbeat, stop_rx.clone()));
    let (admin, mut checkpoints, log) = match (local, &group) {
        (Some((c, t, l)), _) => {
            (server::AdminProtocolService::new(driver.clone(), c, edge.clone()), t, Some(l))
        }
        // Nothing to supervise: a task that waits for the stop.
        // The consensus in place of the checkpointer: if it stops (a fatal storage
        // error), so does the master, rather than serve from a state nobody updates.
        (None, Some(g)) => (
            server::AdminProtocolService::for_group(driver.clone(), g.clone(), edge.clone()),
            tokio::spawn(raft::until_fatal(g.raft.metrics(), stop_rx)),
            None,
        ),
        (None, None) => return Err(Error::InvalidArgument("neither a log nor a group".into())),
    };
    info!(%addr, "master serving");
    // Connections are capped and idle ones closed, so no peer can take every file
    // descriptor; accepted sockets get TCP_NODELAY (a gRPC answer is several small
    // HTTP/2 frames, which Nagle's algorithm would hold back).
    let incoming = security::connections::guard(listener, connections, "master");
    // One port, three services: each audience's calls arrive on its own service path,
    // where its own authorization can be checked. In token mode every call must carry a
    // valid token, and chunkservers' calls a service token.
    let users = auth.interceptor();
    let services = auth.interceptor().services_only();
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls).map_err(Error::Transport)?;
    }
    let serve = server
        .add_service(ClientProtocolServer::with_interceptor(
            server::ClientProtocolService::new(driver.clone(), edge.clone()),
            users.clone(),
        ))
        .add_service(ChunkserverProtocolServer::with_interceptor(
            server::ChunkserverProtocolService::new(driver.clone()),
            services,
        ))
        .add_service(AdminProtocolServer::with_interceptor(admin, users))
        .add_optional_service(group.as_ref().map(|g| {
            let raft = RaftProtocolServer::new(raft::network::RaftService::new(g.raft.clone()))
                .max_decoding_message_size(raft::network::MAX_MESSAGE)
                .max_encoding_message_size(raft::network::MAX_MESSAGE);
            tonic::service::interceptor::InterceptedService::new(
                raft,
                auth.interceptor().services_only(),
            )
        }))
        .serve_with_incoming_shutdown(incoming, shutdown);
    let mut monitor = monitor;
    let second_task = if group.is_some() { "consensus" } else { "checkpointer" };
    let outcome =
        supervise(serve, [("monitor", &mut monitor), (second_task, &mut checkpoints)]).await;
    if let Err(e) = &outcome {
        error!(cause = %e, "the master stops");
    }
    let _ = stop_tx.send(true);
    let _ = monitor.await;
    let _ = checkpoints.await;
    if let Some(g) = &group {
        let _ = g.raft.shutdown().await;
    }
    // Whatever is queued is written before the writer exits.
    if let Some(log) = log {
        let _ = tokio::task::spawn_blocking(move || log.stop()).await;
    }
    // The services, and with them every clone of the audit log, are gone: the writer
    // writes what is queued and ends.
    if let Some(w) = audit_writer {
        let _ = tokio::task::spawn_blocking(move || w.join()).await;
    }
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
