//! `master`: runs the chunk store's master.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// The chunk store's master: namespace, chunk map, placement.
#[derive(Debug, Parser)]
#[command(name = "master", version, about)]
struct Cli {
    /// Address to listen on (host:port; port 0 picks a free one).
    #[arg(long, env = "DFS_MASTER_ADDR", default_value = "127.0.0.1:9000")]
    addr: String,
    /// Metadata directory.
    #[arg(long, env = "MASTER_DIR", default_value = "master-data")]
    dir: PathBuf,
    /// Default chunk size (e.g. 64MiB; a multiple of 64KiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    chunk_size: u64,
    /// Default replication factor.
    #[arg(long, default_value_t = 3)]
    replication: u16,
    /// Heartbeat interval chunkservers are told to use, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    heartbeat_ms: u64,
    /// A chunkserver silent this long is declared dead (default: 10 heartbeats).
    #[arg(long)]
    dead_after_ms: Option<u64>,
    /// Write a checkpoint once this many log records follow the last one.
    #[arg(long, env = "MASTER_CHECKPOINT_RECORDS", default_value_t = 1_000_000)]
    checkpoint_records: u64,
    /// Start a new operation log segment past this size (e.g. 64MiB).
    #[arg(long, env = "MASTER_SEGMENT_SIZE", default_value = "64MiB", value_parser = parse_size)]
    segment_size: u64,
    /// Fraction of chunks that must be reported before leaving safe mode (0 to 1).
    #[arg(long, env = "MASTER_SAFEMODE_THRESHOLD", default_value_t = 0.999)]
    safemode_threshold: f64,
    /// Stay in safe mode this long after the threshold is reached, in milliseconds.
    #[arg(long, env = "MASTER_SAFEMODE_EXTENSION_MS", default_value_t = 5000)]
    safemode_extension_ms: u64,
    /// Chunk copies at most in flight per chunkserver as a source and as a target
    /// (re-replication and balancing; 0 = unlimited).
    #[arg(long, env = "MASTER_REPLICATION_MAX_STREAMS", default_value_t = 2)]
    replication_max_streams: u32,
    /// A chunk copy not confirmed within this many milliseconds is issued again
    /// (default: 20 heartbeats, at least 5 s).
    #[arg(long, env = "MASTER_REPLICATION_TIMEOUT_MS")]
    replication_timeout_ms: Option<u64>,
    /// Writers renew their leases every soft limit / 2, in milliseconds.
    #[arg(long, env = "MASTER_LEASE_SOFT_LIMIT_MS", default_value_t = 60_000)]
    lease_soft_limit_ms: u64,
    /// A writer silent this long loses its files, which the master recovers and closes,
    /// in milliseconds.
    #[arg(long, env = "MASTER_LEASE_HARD_LIMIT_MS", default_value_t = 600_000)]
    lease_hard_limit_ms: u64,
    /// The superuser, who passes every permission check and owns a new namespace's
    /// root (default: the OS user running the master).
    #[arg(long, env = "MASTER_SUPERUSER")]
    superuser: Option<String>,
    /// Members of this group are superusers too.
    #[arg(long, env = "MASTER_SUPERGROUP", default_value = "supergroup")]
    supergroup: String,
    /// A static group mapping, lines `user: group1,group2`, consulted before this
    /// host's /etc/passwd and /etc/group.
    #[arg(long, env = "MASTER_GROUP_MAPPING")]
    group_mapping: Option<PathBuf>,
    /// The audit log: a file, or `none` (default: audit.log in the metadata directory).
    #[arg(long, env = "MASTER_AUDIT_LOG")]
    audit_log: Option<String>,
    /// How long a chunk access token stays valid, in milliseconds (default 10 hours;
    /// tests shorten it to see tokens expire).
    #[arg(long, env = "MASTER_CHUNK_TOKEN_LIFETIME_MS", default_value_t = 36_000_000)]
    chunk_token_lifetime_ms: u64,
    /// Most entries in one directory listing answer (HDFS's dfs.ls.limit); clients
    /// page through bigger directories.
    #[arg(long, env = "MASTER_LS_LIMIT", default_value_t = master::config::DEFAULT_LS_LIMIT)]
    ls_limit: usize,
    /// This member's id in a replicated master group (with --peers).
    #[arg(long, env = "MASTER_ID", default_value_t = 1)]
    id: u64,
    /// The master group, ID=HOST:PORT,... (every member, this one included): with more
    /// than one member, the namespace is replicated over Raft and a mutation is answered
    /// once a majority has it durable. One member, or none: a single master.
    #[arg(long, env = "MASTER_PEERS")]
    peers: Option<String>,
    /// A follower that hears no leader for about this long (randomized up to 1.5x) calls
    /// an election.
    #[arg(long, env = "MASTER_ELECTION_TIMEOUT_MS", default_value_t = 1000)]
    election_timeout_ms: u64,
    /// How often a group's leader sends heartbeats to its followers.
    #[arg(long, env = "MASTER_RAFT_HEARTBEAT_MS", default_value_t = 150)]
    raft_heartbeat_ms: u64,
    /// How long a mutation waits for a majority of the group before failing with "no
    /// quorum".
    #[arg(long, env = "MASTER_QUORUM_TIMEOUT_MS", default_value_t = 10_000)]
    quorum_timeout_ms: u64,
    /// Once recovered and serving, write the bound host:port to this file.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    #[command(flatten)]
    connections: security::connections::LimitArgs,
    #[command(flatten)]
    auth: security::AuthArgs,
    #[command(flatten)]
    tls: security::tls::TlsArgs,
    /// Seconds within which a user token the master issues must be renewed.
    #[arg(long, default_value_t = 24 * 3600)]
    token_renew_interval_secs: u64,
    /// Seconds after issue past which a user token can't be renewed.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    token_max_lifetime_secs: u64,
}

/// The group from `--peers`, or `None` for a single master.
fn group(cli: &Cli) -> anyhow::Result<Option<master::raft::GroupConfig>> {
    let Some(peers) = cli.peers.as_deref() else { return Ok(None) };
    let mut g = master::raft::GroupConfig::parse(cli.id, peers)?;
    if g.peers.len() < 2 {
        return Ok(None);
    }
    g.election_timeout = Duration::from_millis(cli.election_timeout_ms);
    g.heartbeat = Duration::from_millis(cli.raft_heartbeat_ms);
    g.quorum_timeout = Duration::from_millis(cli.quorum_timeout_ms);
    g.snapshot_every = cli.checkpoint_records;
    g.raft_config()?;
    Ok(Some(g))
}

fn parse_size(s: &str) -> Result<u64, String> {
    proto::size::parse_size(s).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() {
    // openraft logs every unreachable peer at ERROR on every heartbeat; the master logs
    // the group's changes itself (leader, term, role).
    proto::logging::init("info,openraft=off");
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("master: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let group = group(&cli)?;
    let config = master::Config {
        dir: cli.dir,
        chunk_size: cli.chunk_size,
        replication: cli.replication,
        heartbeat_interval: Duration::from_millis(cli.heartbeat_ms),
        dead_after: Duration::from_millis(
            cli.dead_after_ms.unwrap_or(cli.heartbeat_ms.saturating_mul(10)),
        ),
        checkpoint_records: cli.checkpoint_records,
        segment_size: cli.segment_size,
        safemode_threshold: cli.safemode_threshold,
        safemode_extension: Duration::from_millis(cli.safemode_extension_ms),
        replication_max_streams: cli.replication_max_streams,
        replication_timeout: cli.replication_timeout_ms.map(Duration::from_millis),
        lease_soft_limit: Duration::from_millis(cli.lease_soft_limit_ms),
        lease_hard_limit: Duration::from_millis(cli.lease_hard_limit_ms),
        connections: cli.connections.limits(),
        superuser: cli.superuser.unwrap_or_else(security::os_user),
        supergroup: cli.supergroup,
        group_mapping: cli.group_mapping,
        audit_log: cli
            .audit_log
            .as_deref()
            .map_or(master::config::AuditTarget::InDir, master::config::AuditTarget::parse),
        chunk_token_lifetime: Duration::from_millis(cli.chunk_token_lifetime_ms),
        auth: cli.auth.load("master").map_err(anyhow::Error::msg)?,
        tls: cli.tls.load().map_err(anyhow::Error::msg)?,
        token_renew_interval: Duration::from_secs(cli.token_renew_interval_secs),
        token_max_lifetime: Duration::from_secs(cli.token_max_lifetime_secs),
        ls_limit: cli.ls_limit,
        group,
    };
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(&cli.addr)
        .await
        .with_context(|| format!("cannot listen on {}", cli.addr))?;
    let shutdown = proto::process::shutdown_signal().context("installing signal handlers")?;
    // The address file says "serving": it is written only once recovery has succeeded.
    let addr_file = cli.addr_file;
    master::run_with_ready(config, listener, shutdown, |bound| match &addr_file {
        Some(path) => proto::process::write_addr_file(path, bound),
        None => Ok(()),
    })
    .await?;
    Ok(())
}
