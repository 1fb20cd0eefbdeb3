//! `reportbench`: what chunkservers cost the master, in the spirit of the heartbeat and
//! block-report modes of Hadoop's NNThroughputBenchmark. The figures feed the scale model
//! in BENCHMARKS.md ("Scale").
//!
//! Three messages, each measured two ways:
//! - a **heartbeat** (`Command::Heartbeat`, the `Heartbeat` RPC) from one of `--servers`
//!   simulated chunkservers, round robin;
//! - an **incremental report** of one received replica (`Command::ReportChunks`, the
//!   `ReportChunks` RPC) of a chunk the namespace knows;
//! - a **full report** of K replicas (`Command::Register`, the `Register` RPC) from the
//!   chunkserver holding them, for each K of `--full`: the namespace first gets K one-chunk
//!   files whose chunks are all placed on that server, so every reported replica is one the
//!   master knows. Reports after the first are measured: the periodic report's steady state.
//!
//! **In-process** is `Core::apply` on one thread (no RPC, no lock, no log: none of these
//! messages is logged). It also times, on a namespace of `--map-chunks` chunks, the largest
//! full report again (a full report walks the whole chunk map, not only what it lists),
//! the monitor's tick (`Command::Tick`, once per heartbeat interval) and the count of
//! reported chunks that every register and report recomputes while in safe mode.
//!
//! **gRPC** starts a real `master` process (next to this binary, or in
//! `MINICLUSTER_BIN_DIR`) with its log on disk, builds the namespace through
//! Create/AddChunk/Complete, and sends the messages from plain gRPC clients (no
//! chunkserver process, no chunk data). Besides the rate it reads the master's CPU time
//! from `/proc/<pid>/stat` around each measurement, so each message has a cost in master
//! CPU-seconds, the figure that scales to a cluster. Baselines from the same invocation:
//! the master idle (monitor ticks only) and the cheapest RPC (`GetFileInfo /`).

use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use master::chunks::ChunkHandle;
use master::clock::{Clock, Now, SystemClock};
use master::cluster::Load;
use master::command::{Command, Mutation, Reply, ServerName};
use master::core::{Core, ReportedReplica};
use proto::gfs::chunkserver_protocol_client::ChunkserverProtocolClient;
use proto::gfs::client_protocol_client::ClientProtocolClient;
use proto::gfs::{self as pb};
use proto::path::DfsPath;
use tests::{ProcessSpec, Role};
use tonic::transport::{Channel, Endpoint};

/// What chunkserver messages cost the master (see the module docs).
#[derive(Debug, Parser)]
#[command(name = "reportbench", about)]
struct Cli {
    /// Simulated chunkservers sending heartbeats (besides the one holding the chunks).
    #[arg(long, default_value_t = 1000)]
    servers: u64,
    /// Replicas in each full report measured (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 100_000])]
    full: Vec<u64>,
    /// Chunks in the namespace for the in-process chunk-map rows.
    #[arg(long, default_value_t = 1_000_000)]
    map_chunks: u64,
    /// Each measurement runs at least this many seconds.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Concurrent client tasks for gRPC heartbeats and incremental reports.
    #[arg(long, default_value_t = 32)]
    clients: u64,
    /// HTTP/2 connections the client tasks share.
    #[arg(long, default_value_t = 8)]
    channels: u64,
    /// Run only one half.
    #[arg(long, value_enum)]
    only: Option<Half>,
}

/// One half of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Half {
    InProcess,
    Grpc,
}

/// The chunkserver every chunk is placed on, and that sends the full reports.
const HOLDER: &str = "holder";
const HOLDER_ADDR: &str = "127.0.0.2:1";
/// One-chunk files per directory, as a real namespace spreads them.
const PER_DIR: u64 = 1000;

struct Row {
    what: String,
    rate: String,
    cost: String,
    note: String,
}

fn load() -> Load {
    Load { capacity: 1 << 50, remaining: 1 << 50, ..Load::default() }
}

fn file_path(i: u64) -> String {
    format!("/s/d{}/f{i}", i / PER_DIR)
}

fn server_id(i: u64) -> String {
    format!("cs-{i}")
}

/// A distinct loopback address per simulated server (never contacted).
fn server_addr(i: u64) -> String {
    format!("127.1.{}.{}:1", i / 250, i % 250 + 1)
}

/// What the holder says of chunk `h`: finalized, version 1, the 1 byte each file holds.
fn replica(h: ChunkHandle) -> ReportedReplica {
    ReportedReplica { handle: h, version: 1, length: 1, finalized: true }
}

/// Runs `f(0), f(1), ...` for at least `secs` seconds and `min` calls, reading the clock
/// every `batch` calls; returns the number of calls and the elapsed time.
fn repeat(
    secs: f64,
    min: u64,
    batch: u64,
    mut f: impl FnMut(u64) -> Result<()>,
) -> Result<(u64, Duration)> {
    let t = Instant::now();
    let mut n = 0;
    loop {
        for _ in 0..batch {
            f(n)?;
            n += 1;
        }
        let d = t.elapsed();
        if n >= min && d.as_secs_f64() >= secs {
            return Ok((n, d));
        }
    }
}

fn per_op(d: Duration, n: u64) -> String {
    let ns = d.as_secs_f64() * 1e9 / n.max(1) as f64;
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn rate(n: u64, d: Duration) -> String {
    format!("{:.0}/s", n as f64 / d.as_secs_f64().max(1e-9))
}

// ---------------------------------------------------------------- in-process

fn config() -> master::Config {
    master::Config {
        dir: PathBuf::from("/nonexistent"),
        chunk_size: 1 << 20,
        replication: 1,
        // Simulated servers heartbeat only while measured: keep them live throughout.
        heartbeat_interval: Duration::from_secs(3),
        dead_after: Duration::from_secs(6000),
        safemode_extension: Duration::ZERO,
        ..master::Config::default()
    }
}

/// Applies a client mutation as the superuser (the namespace is only the setting).
fn mutate(core: &mut Core, m: Mutation, now: Now) -> Result<Reply> {
    let caller = Arc::new(master::permission::Caller::superuser("bench"));
    Ok(core.apply(Command::Mutate { caller, mutation: m }, now).reply?)
}

fn register(core: &mut Core, id: &str, addr: &str, chunks: Vec<ReportedReplica>, now: Now) {
    let server = ServerName { id: id.into(), addr: addr.into(), rack: "/r".into(), proof: None };
    core.apply(Command::Register { server, load: load(), chunks }, now);
}

/// Creates one-chunk files `from..to` (1 byte each); `excluded` keeps their chunks off
/// those servers. Returns the chunk handles.
fn make_files(
    core: &mut Core,
    from: u64,
    to: u64,
    excluded: &[String],
    now: Now,
) -> Result<Vec<ChunkHandle>> {
    let mut handles = Vec::with_capacity((to - from) as usize);
    for i in from..to {
        if i % PER_DIR == 0 || i == from {
            let dir = DfsPath::parse(&format!("/s/d{}", i / PER_DIR))?;
            let mkdir = Mutation::Mkdir { path: dir, parents: true, umask: 0o022 };
            mutate(core, mkdir, now)?;
        }
        let path = DfsPath::parse(&file_path(i))?;
        let create = Mutation::Create {
            path: path.clone(),
            replication: 0,
            chunk_size: 0,
            overwrite: false,
            create_parents: false,
            umask: 0o022,
            client: "w".into(),
        };
        mutate(core, create, now)?;
        let add = Mutation::AddChunk {
            path: path.clone(),
            client: "w".into(),
            previous: None,
            client_host: String::new(),
            excluded: excluded.to_vec(),
        };
        let Reply::Chunk(l) = mutate(core, add, now)? else { bail!("add chunk gave no chunk") };
        let complete = Mutation::Complete { path, client: "w".into(), last: Some((l.handle, 1)) };
        mutate(core, complete, now)?;
        handles.push(l.handle);
    }
    Ok(handles)
}

/// Times steady-state full reports of `replicas` from the holder (after one untimed).
fn full_reports(
    core: &mut Core,
    replicas: &[ReportedReplica],
    secs: f64,
    now: Now,
) -> Result<(u64, Duration)> {
    register(core, HOLDER, HOLDER_ADDR, replicas.to_vec(), now);
    repeat(secs, 3, 1, |_| {
        register(core, HOLDER, HOLDER_ADDR, replicas.to_vec(), now);
        Ok(())
    })
}

fn in_process(cli: &Cli, rows: &mut Vec<Row>) -> Result<()> {
    let now = SystemClock.now();
    let secs = cli.secs;
    let note = "one thread on Core::apply: no RPC, no lock, no log";

    // A yardstick for this machine's speed at this moment: std HashSet<u64> inserts into
    // a presized table (best of three, the first also paying its page faults).
    let n = 1_000_000u64;
    let mut set = std::collections::HashSet::with_capacity(n as usize);
    let mut d = Duration::MAX;
    for _ in 0..3 {
        set.clear();
        let t = Instant::now();
        for i in 0..n {
            set.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        d = d.min(t.elapsed());
        std::hint::black_box(&set);
    }
    drop(set);
    rows.push(Row {
        what: "baseline: HashSet<u64> insert (1M, presized, best of 3)".into(),
        rate: rate(n, d),
        cost: per_op(d, n),
        note: "CPU yardstick of this invocation".into(),
    });

    let mut core = Core::seeded(config(), 1);
    register(&mut core, HOLDER, HOLDER_ADDR, Vec::new(), now);
    // Full reports of K known replicas: the namespace grows to each K in turn, every
    // chunk on the holder (the only server so far), and the holder reports them all.
    let mut sizes = cli.full.clone();
    sizes.sort_unstable();
    let mut handles = Vec::new();
    for &k in &sizes {
        eprintln!("reportbench: in-process full reports of {k} replicas...");
        let more = make_files(&mut core, handles.len() as u64, k, &[], now)?;
        handles.extend(more);
        let replicas: Vec<ReportedReplica> = handles.iter().map(|&h| replica(h)).collect();
        let (n, d) = full_reports(&mut core, &replicas, secs, now)?;
        rows.push(Row {
            what: format!("in-process full report, {k} replicas ({} chunks in the map)", k),
            rate: rate(n, d),
            cost: per_op(d, n),
            note: format!("{} per replica; {note}", per_op(d, n * k)),
        });
    }

    eprintln!("reportbench: in-process incremental reports...");
    let files = handles.len() as u64;
    let (n, d) = repeat(secs, 1, 1024, |i| {
        let h = handles[(i % files) as usize];
        let cmd = Command::ReportChunks {
            id: HOLDER.into(),
            received: vec![replica(h)],
            deleted: Vec::new(),
            corrupt: Vec::new(),
        };
        core.apply(cmd, now);
        Ok(())
    })?;
    rows.push(Row {
        what: "in-process incremental report (1 received replica)".into(),
        rate: rate(n, d),
        cost: per_op(d, n),
        note: note.into(),
    });

    eprintln!("reportbench: in-process heartbeats from {} servers...", cli.servers);
    for i in 0..cli.servers {
        register(&mut core, &server_id(i), &server_addr(i), Vec::new(), now);
    }
    let ids: Vec<String> = (0..cli.servers.max(1)).map(server_id).collect();
    let (n, d) = repeat(secs, 1, 1024, |i| {
        let id = ids[(i % ids.len() as u64) as usize].clone();
        core.apply(Command::Heartbeat { id, load: load() }, now);
        Ok(())
    })?;
    rows.push(Row {
        what: format!("in-process heartbeat ({} servers, round robin)", cli.servers),
        rate: rate(n, d),
        cost: per_op(d, n),
        note: format!("{note}; nothing queued for them"),
    });

    // The chunk map grows to --map-chunks, the new chunks on the other servers.
    let largest = sizes.last().copied().unwrap_or(0);
    let total = cli.map_chunks.max(largest);
    eprintln!("reportbench: in-process chunk map of {total} chunks...");
    make_files(&mut core, files, total, &[HOLDER.to_owned()], now)?;
    let replicas: Vec<ReportedReplica> = handles.iter().map(|&h| replica(h)).collect();
    let (n, d) = full_reports(&mut core, &replicas, secs, now)?;
    rows.push(Row {
        what: format!("in-process full report, {largest} replicas ({total} chunks in the map)"),
        rate: rate(n, d),
        cost: per_op(d, n),
        note: format!("{} per replica; {note}", per_op(d, n * largest.max(1))),
    });
    let (n, d) = repeat(secs, 3, 1, |_| {
        let out = core.apply(Command::Tick { log_writable: true }, now);
        out.reply?;
        Ok(())
    })?;
    rows.push(Row {
        what: format!("in-process monitor tick ({total} chunks, {} servers)", cli.servers + 1),
        rate: rate(n, d),
        cost: per_op(d, n),
        note: format!(
            "{} per chunk; every chunk fully replicated, nothing to do",
            per_op(d, n * total)
        ),
    });
    let (n, d) = repeat(secs, 3, 1, |_| {
        std::hint::black_box(core.reported_chunks());
        Ok(())
    })?;
    rows.push(Row {
        what: format!("in-process safe-mode count ({total} chunks)"),
        rate: rate(n, d),
        cost: per_op(d, n),
        note: format!(
            "{} per chunk; `Core::reported_chunks`, run by every register and report while safe mode waits",
            per_op(d, n * total)
        ),
    });
    Ok(())
}

// ---------------------------------------------------------------- gRPC

/// A `master` process in a temporary directory, stopped on drop.
struct MasterProcess {
    child: Child,
    pid: u32,
    addr: String,
    _dir: tempfile::TempDir,
}

impl MasterProcess {
    async fn start() -> Result<MasterProcess> {
        let dir = tempfile::tempdir()?;
        let program = master_binary()?;
        let spec = ProcessSpec {
            name: "master".into(),
            role: Role::Master,
            addr: String::new(),
            pid: 0,
            rack: None,
            dir: dir.path().join("meta"),
            log: dir.path().join("master.log"),
            addr_file: dir.path().join("master.addr"),
            program,
            args: Vec::new(),
        };
        let args: Vec<String> = [
            "--addr",
            "127.0.0.1:0",
            "--chunk-size",
            "1MiB",
            "--replication",
            "1",
            "--heartbeat-ms",
            "3000",
            // The simulated servers heartbeat only while measured: keep them live.
            "--dead-after-ms",
            "36000000",
            "--safemode-extension-ms",
            "0",
            "--checkpoint-records",
            "100000000",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([
            "--dir".to_owned(),
            spec.dir.display().to_string(),
            "--addr-file".to_owned(),
            spec.addr_file.display().to_string(),
        ])
        .collect();
        let mut child = tests::process::spawn(&spec, &args, true)?;
        let addr =
            tests::process::wait_for_addr_file(&spec, &mut child, Duration::from_secs(60)).await?;
        let pid = child.id();
        Ok(MasterProcess { child, pid, addr, _dir: dir })
    }

    /// CPU time the master has used so far (user + system, all threads), in seconds.
    fn cpu_secs(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest = stat.rsplit_once(") ").context("unreadable /proc stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> Result<f64> {
            Ok(fields.get(i).context("short /proc stat")?.parse::<u64>()? as f64)
        };
        // utime and stime (fields 14 and 15) in clock ticks, 100 per second on Linux.
        Ok((ticks(11)? + ticks(12)?) / 100.0)
    }

    /// Resident set size, in bytes.
    fn rss(&self) -> u64 {
        let statm =
            std::fs::read_to_string(format!("/proc/{}/statm", self.pid)).unwrap_or_default();
        statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0) * 4096
    }
}

impl Drop for MasterProcess {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// The `master` binary: in `MINICLUSTER_BIN_DIR`, else next to this one.
fn master_binary() -> Result<PathBuf> {
    let dir = match std::env::var_os(tests::process::BIN_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()?.parent().context("no executable dir")?.to_path_buf(),
    };
    let bin = dir.join("master");
    if !bin.is_file() {
        bail!("no master binary in {} (cargo build --release -p master)", dir.display());
    }
    Ok(bin)
}

/// Client tasks over shared connections, and the master they measure.
struct Rpc {
    master: MasterProcess,
    channels: Vec<Channel>,
    attach: security::Attach,
    clients: u64,
    secs: f64,
}

/// The master's client and chunkserver protocols over one connection.
#[derive(Debug, Clone)]
struct Master {
    client: ClientProtocolClient<dfs::client::MasterChannel>,
    chunkserver: ChunkserverProtocolClient<Channel>,
}

impl Rpc {
    fn client(&self, task: u64) -> Master {
        let channel = self.channels[(task as usize) % self.channels.len()].clone();
        Master {
            // The OS user: the master's superuser.
            client: ClientProtocolClient::with_interceptor(channel.clone(), self.attach.clone()),
            chunkserver: ChunkserverProtocolClient::new(channel),
        }
    }

    /// Runs `op(client, task, i)` in every task until `secs` have passed; returns the
    /// calls made, the elapsed time and the master's CPU seconds meanwhile.
    async fn run<F, Fut>(&self, op: F) -> Result<(u64, Duration, f64)>
    where
        F: Fn(Master, u64, u64) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<()>> + Send,
    {
        let op = Arc::new(op);
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(self.secs);
        let cpu = self.master.cpu_secs()?;
        let t = Instant::now();
        let mut tasks = Vec::new();
        for task in 0..self.clients {
            let (m, op, done) = (self.client(task), op.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while Instant::now() < deadline {
                    op(m.clone(), task, i).await?;
                    i += 1;
                }
                done.fetch_add(i, Ordering::Relaxed);
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let d = t.elapsed();
        Ok((done.load(Ordering::Relaxed), d, self.master.cpu_secs()? - cpu))
    }

    fn row(&self, what: String, (n, d, cpu): (u64, Duration, f64), note: String) -> Row {
        let cost = format!("{} master CPU", per_op(Duration::from_secs_f64(cpu), n));
        Row { what: format!("gRPC {what}"), rate: rate(n, d), cost, note }
    }

    /// Creates one-chunk files `from..to` over the tasks; returns their chunk handles.
    async fn make_files(&self, from: u64, to: u64) -> Result<Vec<u64>> {
        let mut m = self.client(0);
        for d in from / PER_DIR..to.div_ceil(PER_DIR) {
            let mkdir =
                pb::MkdirRequest { path: format!("/s/d{d}"), parents: true, ..Default::default() };
            m.client.mkdir(mkdir).await?;
        }
        let next = Arc::new(AtomicU64::new(from));
        let mut tasks = Vec::new();
        for task in 0..self.clients {
            let (mut m, next) = (self.client(task), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut made = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= to {
                        return anyhow::Ok(made);
                    }
                    let path = file_path(i);
                    m.client
                        .create(pb::CreateRequest {
                            path: path.clone(),
                            client_name: "w".into(),
                            owner: "bench".into(),
                            ..Default::default()
                        })
                        .await?;
                    let chunk = m
                        .client
                        .add_chunk(pb::AddChunkRequest {
                            path: path.clone(),
                            client_name: "w".into(),
                            ..Default::default()
                        })
                        .await?
                        .into_inner()
                        .chunk
                        .context("no chunk")?;
                    m.client
                        .complete(pb::CompleteRequest {
                            path,
                            client_name: "w".into(),
                            last_handle: chunk.handle,
                            last_length: 1,
                            ..Default::default()
                        })
                        .await?;
                    made.push(chunk.handle);
                }
            }));
        }
        let mut handles = Vec::new();
        for t in tasks {
            handles.extend(t.await??);
        }
        Ok(handles)
    }
}

fn info(id: &str, addr: &str) -> Option<pb::ChunkserverInfo> {
    Some(pb::ChunkserverInfo { id: id.into(), addr: addr.into(), rack: "/r".into() })
}

fn register_request(id: &str, addr: &str, chunks: Vec<pb::ReportedChunk>) -> pb::RegisterRequest {
    pb::RegisterRequest {
        server: info(id, addr),
        capacity: 1 << 50,
        remaining: 1 << 50,
        chunks,
        ..Default::default()
    }
}

fn wire_replica(handle: u64) -> pb::ReportedChunk {
    pb::ReportedChunk { handle, version: 1, length: 1, finalized: true }
}

async fn grpc(cli: &Cli, rows: &mut Vec<Row>) -> Result<()> {
    let master = MasterProcess::start().await?;
    let mut channels = Vec::new();
    for _ in 0..cli.channels.max(1) {
        let ep = Endpoint::from_shared(format!("http://{}", master.addr))?.tcp_nodelay(true);
        channels.push(ep.connect().await?);
    }
    let attach = security::Credentials::simple(security::os_user()).attach()?;
    let rpc = Rpc { master, channels, attach, clients: cli.clients.max(1), secs: cli.secs };
    let tasks = format!("{} tasks over {} connections", rpc.clients, rpc.channels.len());
    let mut m = rpc.client(0);
    m.chunkserver.register(register_request(HOLDER, HOLDER_ADDR, Vec::new())).await?;

    let mut sizes = cli.full.clone();
    sizes.sort_unstable();
    let mut handles: Vec<u64> = Vec::new();
    for &k in &sizes {
        eprintln!("reportbench: gRPC: {k} one-chunk files, then full reports of them...");
        let (from, t, cpu) = (handles.len() as u64, Instant::now(), rpc.master.cpu_secs()?);
        let made = rpc.make_files(from, k).await?;
        let (d, cpu) = (t.elapsed(), rpc.master.cpu_secs()? - cpu);
        rows.push(rpc.row(
            format!("one-chunk file, to {k} files (create + add chunk + complete)"),
            (made.len() as u64, d, cpu),
            format!("{tasks}; three durable calls each (disk baseline of this run)"),
        ));
        handles.extend(made);
        let req = register_request(
            HOLDER,
            HOLDER_ADDR,
            handles.iter().map(|&h| wire_replica(h)).collect(),
        );
        m.chunkserver.register(req.clone()).await?;
        // One reporter at a time, as each chunkserver sends its own.
        let (cpu, t) = (rpc.master.cpu_secs()?, Instant::now());
        let mut n = 0;
        while n < 3 || t.elapsed().as_secs_f64() < rpc.secs {
            m.chunkserver.register(req.clone()).await?;
            n += 1;
        }
        let (d, cpu) = (t.elapsed(), rpc.master.cpu_secs()? - cpu);
        rows.push(rpc.row(
            format!("full report, {k} replicas ({k} chunks in the map)"),
            (n, d, cpu),
            format!(
                "one reporter; {} master CPU per replica; {} on the wire",
                per_op(Duration::from_secs_f64(cpu), n * k),
                human(prost::Message::encoded_len(&req) as u64)
            ),
        ));
    }

    eprintln!("reportbench: gRPC incremental reports...");
    let handles = Arc::new(handles);
    let files = handles.len() as u64;
    let hs = handles.clone();
    let r = rpc
        .run(move |mut m, task, i| {
            let h = hs[((task * 7919 + i) % files) as usize];
            async move {
                let req = pb::ReportChunksRequest {
                    id: HOLDER.into(),
                    received: vec![wire_replica(h)],
                    ..Default::default()
                };
                anyhow::ensure!(!m.chunkserver.report_chunks(req).await?.into_inner().reregister);
                Ok(())
            }
        })
        .await?;
    rows.push(rpc.row("incremental report (1 received replica)".into(), r, tasks.clone()));

    eprintln!("reportbench: gRPC heartbeats from {} servers...", cli.servers);
    for i in 0..cli.servers {
        m.chunkserver
            .register(register_request(&server_id(i), &server_addr(i), Vec::new()))
            .await?;
    }
    let servers = cli.servers.max(1);
    let r = rpc
        .run(move |mut m, task, i| async move {
            let req = pb::HeartbeatRequest {
                id: server_id((task + i * 7919) % servers),
                capacity: 1 << 50,
                remaining: 1 << 50,
                ..Default::default()
            };
            anyhow::ensure!(!m.chunkserver.heartbeat(req).await?.into_inner().reregister);
            Ok(())
        })
        .await?;
    rows.push(rpc.row(format!("heartbeat ({} servers)", cli.servers), r, tasks.clone()));

    eprintln!("reportbench: gRPC baselines...");
    let r = rpc
        .run(|mut m, _, _| async move {
            m.client.get_file_info(pb::GetFileInfoRequest { path: "/".into() }).await?;
            Ok(())
        })
        .await?;
    rows.push(rpc.row("baseline: GetFileInfo /".into(), r, format!("{tasks}; the cheapest call")));
    let (cpu, t) = (rpc.master.cpu_secs()?, Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(rpc.secs.max(3.0))).await;
    let (d, cpu) = (t.elapsed(), rpc.master.cpu_secs()? - cpu);
    rows.push(Row {
        what: "baseline: master idle".into(),
        rate: "-".into(),
        cost: format!("{:.2}% of a core", cpu / d.as_secs_f64() * 100.0),
        note: format!(
            "monitor ticks (every 3 s) over {files} chunks and {} servers; master RSS {}",
            cli.servers + 1,
            human(rpc.master.rss())
        ),
    });
    Ok(())
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut rows = Vec::new();
    if cli.only != Some(Half::InProcess) {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        rt.block_on(grpc(&cli, &mut rows))?;
    }
    if cli.only != Some(Half::Grpc) {
        in_process(&cli, &mut rows)?;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "Command: `target/release/reportbench{}{}`\n",
        if args.is_empty() { "" } else { " " },
        args.join(" ")
    );
    println!("| measurement | rate | cost per message | notes |");
    println!("| --- | ---: | ---: | --- |");
    for r in rows {
        println!("| {} | {} | {} | {} |", r.what, r.rate, r.cost, r.note);
    }
    Ok(())
}
