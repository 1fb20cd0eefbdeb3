//! The `chunkserver` binary: parses flags, sets up logging, binds, and runs
//! [`chunkserver::run`] until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;

/// Stores chunk replicas with a CRC32 per 64 KiB block and serves them to clients.
#[derive(Debug, Parser)]
#[command(name = "chunkserver", version)]
struct Cli {
    /// Address to listen on (host:port); it is also the address advertised to the master.
    #[arg(long, env = "CHUNKSERVER_ADDR", default_value = "127.0.0.1:9866")]
    addr: String,
    /// The master's host:port; for a replicated master group, every member's,
    /// comma-separated (it registers, heartbeats and reports to each).
    #[arg(long, env = "DFS_MASTER")]
    master: String,
    /// Data directory (created if missing).
    #[arg(long, env = "CHUNKSERVER_DIR")]
    dir: PathBuf,
    /// Rack name, such as /rack-a.
    #[arg(long, default_value = "/default-rack")]
    rack: String,
    /// Heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 3000)]
    heartbeat_ms: u64,
    /// Cap on the bytes this chunkserver may use (e.g. 10GiB); default: the file system's space.
    #[arg(long, value_parser = parse_size)]
    capacity: Option<u64>,
    /// How long a node waits for its downstream's ack before declaring it hung, in ms
    /// (scaled up for nodes further from the end of the pipeline).
    #[arg(long, env = "CHUNKSERVER_PIPELINE_TIMEOUT_MS", default_value_t = 30_000)]
    pipeline_timeout_ms: u64,
    /// Most bytes per second the scrubber reads (e.g. 16MiB).
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    scrub_bytes_per_sec: u64,
    /// Every finalized replica is verified once per this many seconds (0 = never).
    #[arg(long, default_value_t = 86_400)]
    scrub_period_secs: u64,
    /// Cap on re-replication copies into this chunkserver, bytes per second (e.g.
    /// 50MiB); default unlimited.
    #[arg(long, value_parser = parse_size)]
    replication_bandwidth: Option<u64>,
    /// Send a full report of every replica this often, in seconds.
    #[arg(long, default_value_t = 3600)]
    full_report_secs: u64,
    /// Most data streams at once (writes, reads served, copies; HDFS's
    /// dfs.datanode.max.transfer.threads); one more is refused at once as busy.
    #[arg(long, env = "CHUNKSERVER_MAX_TRANSFER_STREAMS", default_value_t = chunkserver::config::DEFAULT_MAX_TRANSFER_STREAMS)]
    max_transfer_streams: usize,
    /// Close a write stream that receives nothing (no packet, no keepalive) for this
    /// many seconds, keeping its replica for recovery and releasing its reserved space.
    #[arg(long, env = "CHUNKSERVER_STREAM_IDLE_TIMEOUT_SECS", default_value_t = chunkserver::config::DEFAULT_STREAM_IDLE_TIMEOUT_SECS)]
    stream_idle_timeout_secs: u64,
    /// Once listening, write the bound host:port to this file.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    #[command(flatten)]
    connections: security::connections::LimitArgs,
    #[command(flatten)]
    auth: security::AuthArgs,
    #[command(flatten)]
    tls: security::tls::TlsArgs,
}

fn parse_size(s: &str) -> Result<u64, String> {
    proto::size::parse_size(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("chunkserver: error: {}", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    proto::logging::init("info");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chunkserver: error: start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chunkserver: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Clap's usage errors span several lines; keep the message and the offending
/// arguments, drop the usage and help hints.
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cli.dir)
        .with_context(|| format!("create data directory {}", cli.dir.display()))?;
    let listener =
        TcpListener::bind(&cli.addr).await.with_context(|| format!("bind {}", cli.addr))?;
    let bound = listener.local_addr().context("read the bound address")?;
    if let Some(path) = &cli.addr_file {
        proto::process::write_addr_file(path, bound)?;
    }
    let cfg = chunkserver::Config {
        master: cli.master,
        dir: cli.dir,
        rack: cli.rack,
        heartbeat_ms: cli.heartbeat_ms,
        capacity: cli.capacity,
        pipeline_timeout_ms: cli.pipeline_timeout_ms,
        scrub_bytes_per_sec: cli.scrub_bytes_per_sec,
        scrub_period_secs: cli.scrub_period_secs,
        replication_bandwidth: cli.replication_bandwidth,
        full_report_secs: cli.full_report_secs,
        max_transfer_streams: cli.max_transfer_streams,
        stream_idle_timeout_secs: cli.stream_idle_timeout_secs,
        connections: cli.connections.limits(),
        auth: cli.auth.load("chunkserver").map_err(anyhow::Error::msg)?,
        tls: cli.tls.load().map_err(anyhow::Error::msg)?,
    };
    let shutdown = proto::process::shutdown_signal().context("installing signal handlers")?;
    chunkserver::run(cfg, listener, shutdown).await?;
    Ok(())
}
