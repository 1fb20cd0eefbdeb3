//! `worker`: runs MapReduce task attempts and serves map outputs. Parses flags, sets up
//! logging, binds its shuffle service, writes `--addr-file`, and runs
//! [`mapred::worker::run`] until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mapred::config::WorkerConfig;

/// Runs task attempts for the coordinator.
#[derive(Debug, Parser)]
#[command(name = "worker", version, about)]
struct Cli {
    /// Address of this worker's shuffle service.
    #[arg(long, env = "MAPRED_WORKER_ADDR", default_value = "127.0.0.1:0")]
    addr: String,
    /// Coordinator (`host:port`).
    #[arg(long, env = "MAPRED_COORDINATOR")]
    coordinator: String,
    /// Chunk store master (`host:port`), or a master group's members, comma-separated.
    #[arg(long, env = "DFS_MASTER")]
    master: String,
    /// This worker's host address, as its chunkserver's replicas are named (default: the
    /// IP of --addr).
    #[arg(long, env = "MAPRED_WORKER_HOST")]
    host: Option<String>,
    /// Rack name.
    #[arg(long, env = "MAPRED_WORKER_RACK", default_value = "/default-rack")]
    rack: String,
    /// Task attempts run at once.
    #[arg(long, env = "MAPRED_WORKER_SLOTS", default_value_t = 2)]
    slots: u32,
    /// Local directory for map outputs and the binary cache.
    #[arg(long, env = "MAPRED_WORKER_DIR")]
    dir: PathBuf,
    /// Heartbeat interval in milliseconds.
    #[arg(long, env = "MAPRED_HEARTBEAT_MS", default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Write the bound address here once listening.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    #[command(flatten)]
    connections: security::connections::LimitArgs,
    #[command(flatten)]
    auth: security::AuthArgs,
    #[command(flatten)]
    tls: security::tls::TlsArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    proto::logging::init("info");
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&cli.addr)
        .await
        .with_context(|| format!("cannot listen on {}", cli.addr))?;
    let bound = listener.local_addr().context("cannot read the bound address")?;
    let host = cli.host.unwrap_or_else(|| bound.ip().to_string());
    let cfg = WorkerConfig {
        coordinator: cli.coordinator,
        master: cli.master,
        host,
        rack: cli.rack,
        slots: cli.slots,
        dir: cli.dir,
        heartbeat: Duration::from_millis(cli.heartbeat_ms),
        connections: cli.connections.limits(),
        auth: cli.auth.load("worker").map_err(anyhow::Error::msg)?,
        tls: cli.tls.load().map_err(anyhow::Error::msg)?,
    };
    cfg.validate()?;
    if let Some(path) = &cli.addr_file {
        proto::process::write_addr_file(path, bound)?;
    }
    let shutdown = proto::process::shutdown_signal().context("installing signal handlers")?;
    mapred::worker::run(cfg, listener, shutdown).await?;
    Ok(())
}
