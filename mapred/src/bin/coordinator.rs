//! `coordinator`: the MapReduce job scheduler. Parses flags, sets up logging, binds,
//! writes `--addr-file`, and runs [`mapred::coordinator::run`] until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mapred::acl::AccessList;
use mapred::config::CoordinatorConfig;

/// Schedules MapReduce jobs on workers.
#[derive(Debug, Parser)]
#[command(name = "coordinator", version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "MAPRED_COORDINATOR_ADDR", default_value = "127.0.0.1:9100")]
    addr: String,
    /// Chunk store master (`host:port`), or a master group's members, comma-separated.
    #[arg(long, env = "DFS_MASTER")]
    master: String,
    /// Directory for the coordinator's files (job journal and history).
    #[arg(long, env = "COORDINATOR_DIR", default_value = "coordinator")]
    dir: PathBuf,
    /// Heartbeat interval workers are asked to keep, in milliseconds.
    #[arg(long, env = "MAPRED_HEARTBEAT_MS", default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Delay-scheduling wait for a node-local slot, in milliseconds (default: one heartbeat).
    #[arg(long, env = "MAPRED_LOCALITY_DELAY_MS")]
    locality_delay_ms: Option<u64>,
    /// Silence after which a worker is declared dead and its work run again elsewhere, in
    /// milliseconds (default: 10 heartbeats).
    #[arg(long, env = "MAPRED_DEAD_AFTER_MS")]
    dead_after_ms: Option<u64>,
    /// Default no-progress timeout of a task attempt in milliseconds (0 = none; jobs
    /// override it with -D mapred.task.timeout.ms).
    #[arg(long, env = "MAPRED_TASK_TIMEOUT_MS", default_value_t = 600_000)]
    task_timeout_ms: u64,
    /// Default attempts per task before its job fails (-D mapred.task.max.attempts).
    #[arg(long, env = "MAPRED_MAX_ATTEMPTS", default_value_t = 4)]
    max_attempts: u32,
    /// Speculative execution: back up an attempt once it has run this many times the
    /// median duration of its phase's finished tasks ...
    #[arg(long, env = "MAPRED_SPECULATIVE_SLOWNESS", default_value_t = 2.0)]
    speculative_slowness: f64,
    /// ... and at least this many milliseconds longer than that median.
    #[arg(long, env = "MAPRED_SPECULATIVE_LAG_MS", default_value_t = 5000)]
    speculative_lag_ms: u64,
    /// Who may see and kill every job besides its owner and the user running the
    /// coordinator, in Hadoop's ACL shape: `"user1,user2 group1,group2"` (users, a
    /// space, groups; `" ops"` is the group alone; `*` is everyone).
    #[arg(long, env = "MAPRED_ADMINS", default_value = "")]
    admins: String,
    /// A static group mapping, lines `user: group1,group2`, consulted before this
    /// host's `/etc/group` (simple mode; give it the master's file).
    #[arg(long)]
    group_mapping: Option<PathBuf>,
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
            eprintln!("coordinator: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = CoordinatorConfig {
        master: cli.master,
        dir: cli.dir,
        heartbeat: Duration::from_millis(cli.heartbeat_ms),
        locality_delay: Duration::from_millis(cli.locality_delay_ms.unwrap_or(cli.heartbeat_ms)),
        dead_after: Duration::from_millis(
            cli.dead_after_ms.unwrap_or(cli.heartbeat_ms.saturating_mul(10)),
        ),
        task_timeout: Duration::from_millis(cli.task_timeout_ms),
        max_attempts: cli.max_attempts,
        speculative_slowness: cli.speculative_slowness,
        speculative_lag: Duration::from_millis(cli.speculative_lag_ms),
        connections: cli.connections.limits(),
        auth: cli.auth.load("coordinator").map_err(anyhow::Error::msg)?,
        tls: cli.tls.load().map_err(anyhow::Error::msg)?,
        admins: AccessList::parse(&cli.admins).context("--admins")?,
        group_mapping: cli.group_mapping,
    };
    cfg.validate()?;
    let listener = tokio::net::TcpListener::bind(&cli.addr)
        .await
        .with_context(|| format!("cannot listen on {}", cli.addr))?;
    let bound = listener.local_addr().context("cannot read the bound address")?;
    if let Some(path) = &cli.addr_file {
        proto::process::write_addr_file(path, bound)?;
    }
    let shutdown = proto::process::shutdown_signal().context("installing signal handlers")?;
    mapred::coordinator::run(cfg, listener, shutdown).await?;
    Ok(())
}
