//! `metabench`: the master's metadata throughput and footprint, in the spirit of Hadoop's
//! NNThroughputBenchmark.
//!
//! Three parts, printed as one markdown table:
//! 1. **gRPC**: a real master (`master::run` on a loopback port, with its operation log on
//!    disk and fdatasync per group commit) driven by `--clients` tasks over `--channels`
//!    HTTP/2 connections: create (empty file, create + complete, durable), mkdir, open
//!    (chunk locations of a one-chunk file), rename, delete, listing (a 100-entry
//!    directory). A fake chunkserver is registered through the Register RPC so one-chunk
//!    files can be made with AddChunk/Complete without writing any data.
//! 2. **in-process**: the same operations straight on `Core` on one thread (no
//!    RPC, no log, no lock), to show what RPC and fsync cost.
//! 3. **scale**: RSS growth per one-chunk file at `--files` files, the time to write their
//!    checkpoint, and the master's restart time from that checkpoint plus 100,000 log
//!    records to replay.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use dfs::client::MasterChannel;
use master::checkpoint::{self, Snapshot};
use master::clock::{Clock, Now, SystemClock};
use master::cluster::Load;
use master::command::{Command, Mutation, Read, Reply, ServerName};
use master::core::Core;
use master::oplog::{Journal, segment};
use master::permission::Caller;
use proto::gfs::chunkserver_protocol_client::ChunkserverProtocolClient;
use proto::gfs::{self as pb, client_protocol_client::ClientProtocolClient};
use proto::path::DfsPath;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};

/// Metadata benchmark of the master (see the module docs).
#[derive(Debug, Parser)]
#[command(name = "metabench", about)]
struct Cli {
    /// One-chunk files for the memory, checkpoint and restart figures.
    #[arg(long, default_value_t = 1_000_000)]
    files: u64,
    /// Concurrent client tasks for the gRPC figures.
    #[arg(long, default_value_t = 64)]
    clients: u64,
    /// HTTP/2 connections the client tasks share.
    #[arg(long, default_value_t = 8)]
    channels: u64,
    /// Operations of each kind (gRPC and in-process).
    #[arg(long, default_value_t = 100_000)]
    ops: u64,
    /// Log records replayed in the restart figure.
    #[arg(long, default_value_t = 100_000)]
    replay: u64,
    /// Authentication of the gRPC figures: `simple`, `token` (every call carries a
    /// token the master verifies), or `both` (simple, then token, in the same run: the
    /// cost of token mode).
    #[arg(long, default_value = "simple", value_parser = ["simple", "token", "both"])]
    auth: String,
    /// Only the gRPC figures.
    #[arg(long)]
    grpc_only: bool,
    /// Masters behind the gRPC figures: `1` (a single master), `3` (a replicated group
    /// of three in this process, on 127.0.1.1-3, each with its own log on disk: an
    /// answer waits for a majority), or `both` (1, then 3, in the same run).
    #[arg(long, default_value = "1", value_parser = ["1", "3", "both"])]
    masters: String,
}

const MIB: u64 = 1 << 20;
const LIST_ENTRIES: u64 = 100;

fn p(s: &str) -> Result<DfsPath> {
    DfsPath::parse(s).with_context(|| format!("bad path {s}"))
}

fn config(dir: &Path) -> master::Config {
    master::Config {
        dir: dir.to_owned(),
        chunk_size: MIB,
        replication: 1,
        // The fake chunkserver never heartbeats: keep it live for the whole run.
        heartbeat_interval: Duration::from_secs(600),
        dead_after: Duration::from_secs(6000),
        checkpoint_records: u64::MAX / 2,
        safemode_extension: Duration::ZERO,
        ..master::Config::default()
    }
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * 4096
}

struct Row {
    what: String,
    value: String,
    note: String,
}

fn rate(n: u64, d: Duration) -> String {
    format!("{:.0} ops/s", n as f64 / d.as_secs_f64().max(1e-9))
}

fn load() -> Load {
    Load { capacity: 1 << 50, remaining: 1 << 50, ..Load::default() }
}

// ---------------------------------------------------------------- in-process

/// The caller of the in-process rows: a plain user, so every call walks its permission
/// checks (a superuser skips them); resolved once, as the gRPC edge caches callers.
fn bench_user() -> Arc<Caller> {
    thread_local! {
        static BENCH: Arc<Caller> = Arc::new(Caller::user("bench", &["bench"]));
    }
    BENCH.with(Arc::clone)
}

/// Applies one client mutation to the core as [`bench_user`], as the gRPC edge does
/// (without the log).
fn mutate(st: &mut Core, m: Mutation, now: Now) -> Result<Reply> {
    Ok(st.apply(Command::Mutate { caller: bench_user(), mutation: m }, now).reply?)
}

/// Lets [`bench_user`] create in `/`: the superuser opens the root to everyone.
fn open_root(st: &mut Core, now: Now) -> Result<()> {
    let chmod = Mutation::SetPermission { path: DfsPath::root(), permission: 0o777 };
    let su = Arc::new(Caller::superuser("root"));
    st.apply(Command::Mutate { caller: su, mutation: chmod }, now).reply?;
    Ok(())
}

fn create(path: &DfsPath) -> Mutation {
    Mutation::Create {
        path: path.clone(),
        replication: 0,
        chunk_size: 0,
        overwrite: false,
        create_parents: false,
        umask: 0o022,
        client: "w".into(),
    }
}

fn mkdir(path: &str, parents: bool) -> Result<Mutation> {
    Ok(Mutation::Mkdir { path: p(path)?, parents, umask: 0o022 })
}

fn complete(path: &DfsPath, last: Option<(master::chunks::ChunkHandle, u64)>) -> Mutation {
    Mutation::Complete { path: path.clone(), client: "w".into(), last }
}

/// Creates a one-chunk file (create, add chunk, complete with 1 byte).
fn one_chunk_file(st: &mut Core, path: &DfsPath, now: Now) -> Result<()> {
    mutate(st, create(path), now)?;
    let add = Mutation::AddChunk {
        path: path.clone(),
        client: "w".into(),
        previous: None,
        client_host: String::new(),
        excluded: Vec::new(),
    };
    let Reply::Chunk(l) = mutate(st, add, now)? else { anyhow::bail!("add chunk gave no chunk") };
    mutate(st, complete(path, Some((l.handle, 1))), now)?;
    Ok(())
}

/// A core with one (fake) chunkserver to place chunks on.
fn core_with_a_server(cfg: master::Config, now: Now) -> Core {
    let mut st = Core::seeded(cfg, 1);
    let server = ServerName {
        id: "fake".into(),
        addr: "127.0.0.2:1".into(),
        rack: "/r".into(),
        proof: None,
    };
    st.apply(Command::Register { server, load: load(), chunks: vec![] }, now);
    st
}

fn in_process(ops: u64, rows: &mut Vec<Row>) -> Result<()> {
    let now = SystemClock.now();
    let mut st = core_with_a_server(config(Path::new("/nonexistent")), now);
    open_root(&mut st, now)?;
    mutate(&mut st, mkdir("/m", false)?, now)?;
    mutate(&mut st, mkdir("/c", false)?, now)?;
    let mut timed = |name: &str, f: &mut dyn FnMut(u64) -> Result<()>| -> Result<()> {
        let t = Instant::now();
        for i in 0..ops {
            f(i)?;
        }
        rows.push(Row {
            what: format!("in-process {name}"),
            value: rate(ops, t.elapsed()),
            note: "one thread on Core: no RPC, no log".into(),
        });
        Ok(())
    };
    timed("create (create + complete)", &mut |i| {
        let path = p(&format!("/c/f{i}"))?;
        mutate(&mut st, create(&path), now)?;
        mutate(&mut st, complete(&path, None), now)?;
        Ok(())
    })?;
    timed("mkdir", &mut |i| {
        mutate(&mut st, mkdir(&format!("/m/d{i}"), false)?, now)?;
        Ok(())
    })?;
    let files = ops.min(10_000);
    for i in 0..files {
        one_chunk_file(&mut st, &p(&format!("/o{i}"))?, now)?;
    }
    let bench = bench_user();
    timed("open (chunk locations)", &mut |i| {
        let path = p(&format!("/o{}", i % files))?;
        st.authorize_read(&bench, &path, Read::Open)?;
        st.locations(&path, 0, 0, "127.0.0.9", now.mono)?;
        Ok(())
    })?;
    timed("rename", &mut |i| {
        let m = Mutation::Rename { src: p(&format!("/c/f{i}"))?, dst: p(&format!("/c/r{i}"))? };
        mutate(&mut st, m, now)?;
        Ok(())
    })?;
    timed("delete", &mut |i| {
        mutate(&mut st, Mutation::Delete { path: p(&format!("/c/r{i}"))?, recursive: false }, now)?;
        Ok(())
    })?;
    mutate(&mut st, mkdir("/l", false)?, now)?;
    for i in 0..LIST_ENTRIES {
        mutate(&mut st, mkdir(&format!("/l/e{i}"), false)?, now)?;
    }
    let list = p("/l")?;
    timed("listing (100 entries)", &mut |_| {
        st.namespace().list(&list)?;
        Ok(())
    })?;
    Ok(())
}

// ---------------------------------------------------------------- scale

fn scale(files: u64, replay: u64, rows: &mut Vec<Row>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path());
    let before = rss();
    let now = SystemClock.now();
    let mut st = core_with_a_server(cfg.clone(), now);
    open_root(&mut st, now)?;
    // 1000 files per directory, as a real namespace spreads them. Transactions are
    // counted, not logged: the log is measured below.
    let t = Instant::now();
    let mut txid = 0;
    for d in 0..files.div_ceil(1000) {
        mutate(&mut st, mkdir(&format!("/s/d{d}"), true)?, now)?;
        txid += 1;
    }
    for i in 0..files {
        let path = p(&format!("/s/d{}/f{i}", i / 1000))?;
        one_chunk_file(&mut st, &path, now)?;
        txid += 3;
    }
    let build = t.elapsed();
    let grown = rss().saturating_sub(before);
    rows.push(Row {
        what: format!("memory per one-chunk file ({files} files)"),
        value: format!("{} B", grown / files.max(1)),
        note: format!(
            "RSS growth {} MiB for {files} files + {files} chunks (built in {:.1} s)",
            grown >> 20,
            build.as_secs_f64()
        ),
    });
    let t = Instant::now();
    let snap = Snapshot::take(&st, txid, 0);
    let taken = t.elapsed();
    let path = checkpoint::write(dir.path(), &snap)?;
    let written = t.elapsed();
    let size = std::fs::metadata(&path)?.len();
    drop(snap);
    rows.push(Row {
        what: format!("checkpoint write ({files} files)"),
        value: format!("{:.2} s", written.as_secs_f64()),
        note: format!(
            "{} MiB; snapshot under the lock {:.0} ms, encode + write + fsync outside it",
            size >> 20,
            taken.as_secs_f64() * 1000.0
        ),
    });
    // 100,000 more records in the log after the checkpoint, durable.
    let log_dir = segment::log_dir(dir.path());
    std::fs::create_dir_all(&log_dir)?;
    let (mut journal, log) = Journal::open(&log_dir, txid, cfg.segment_size, u64::MAX)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut pending = Vec::with_capacity(replay as usize);
    for i in 0..replay {
        let mutation = mkdir(&format!("/replay/d{i}"), true)?;
        let out = st.apply(Command::Mutate { caller: bench_user(), mutation }, now);
        out.reply?;
        pending.push(journal.append_all(out.records, now.wall_ms));
    }
    rt.block_on(async {
        for d in pending {
            d.wait().await?;
        }
        anyhow::Ok(())
    })?;
    log.stop();
    drop(st);
    let t = Instant::now();
    let recovered = master::recovery::recover(cfg)?;
    let restart = t.elapsed();
    rows.push(Row {
        what: format!("restart ({files} files + {replay} log records)"),
        value: format!("{:.2} s", restart.as_secs_f64()),
        note: format!(
            "checkpoint load + replay; recovered {} files, {} chunks",
            recovered.core.namespace().file_count(),
            recovered.core.chunk_map().len()
        ),
    });
    recovered.log.stop();
    Ok(())
}

// ---------------------------------------------------------------- gRPC

struct Rpc {
    channels: Vec<Channel>,
    attach: security::Attach,
    clients: u64,
    ops: u64,
    next_call: Arc<AtomicU64>,
}

impl Rpc {
    fn master(&self, task: u64) -> ClientProtocolClient<MasterChannel> {
        let channel = self.channels[(task as usize) % self.channels.len()].clone();
        ClientProtocolClient::with_interceptor(channel, self.attach.clone())
    }

    fn call(&self) -> u64 {
        self.next_call.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `op(client, task, i)` for `ops` operations split over the tasks; returns the
    /// elapsed time.
    async fn run<F, Fut>(&self, op: F) -> Result<Duration>
    where
        F: Fn(ClientProtocolClient<MasterChannel>, u64, u64, u64) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<()>> + Send,
    {
        let op = Arc::new(op);
        let per_task = self.ops / self.clients;
        let t = Instant::now();
        let mut tasks = Vec::new();
        for task in 0..self.clients {
            let (m, op, calls) = (self.master(task), op.clone(), self.next_call.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..per_task {
                    let call = calls.fetch_add(1, Ordering::Relaxed);
                    op(m.clone(), task, i, call).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(t.elapsed())
    }
}

const CLIENT_ID: &str = "metabench";

async fn create_file(
    mut m: ClientProtocolClient<MasterChannel>,
    path: String,
    call: u64,
) -> Result<()> {
    m.create(pb::CreateRequest {
        path: path.clone(),
        client_name: "w".into(),
        owner: "bench".into(),
        client_id: CLIENT_ID.into(),
        call_id: call * 2,
        ..Default::default()
    })
    .await?;
    m.complete(pb::CompleteRequest {
        path,
        client_name: "w".into(),
        client_id: CLIENT_ID.into(),
        call_id: call * 2 + 1,
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Starts `members` masters (one, or a group on 127.0.1.x) in this process; returns the
/// address to call (the group's leader) and a way to stop them all.
async fn start_masters(
    dir: &Path,
    members: usize,
    auth: Option<Arc<security::token::Secret>>,
) -> Result<(
    std::net::SocketAddr,
    Vec<(oneshot::Sender<()>, tokio::task::JoinHandle<master::Result<()>>)>,
)> {
    let mut listeners = Vec::new();
    for i in 1..=members {
        let host = if members == 1 { "127.0.0.1".to_owned() } else { format!("127.0.1.{i}") };
        listeners.push(tokio::net::TcpListener::bind((host.as_str(), 0)).await?);
    }
    let addrs: Vec<std::net::SocketAddr> =
        listeners.iter().map(|l| l.local_addr()).collect::<std::io::Result<_>>()?;
    let peers: Vec<String> =
        addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect();
    let mut servers = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let mut cfg = config(&dir.join(format!("m{}", i + 1)));
        if let Some(secret) = &auth {
            cfg.auth = security::ServerAuth::token(secret.clone(), "master");
        }
        if members > 1 {
            cfg.group = Some(master::raft::GroupConfig::parse(i as u64 + 1, &peers.join(","))?);
        }
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(master::run(cfg, listener, async move {
            let _ = stop_rx.await;
        }));
        servers.push((stop_tx, server));
    }
    if members == 1 {
        return Ok((addrs[0], servers));
    }
    // The leader is the member whose admin service answers a membership query without
    // pointing elsewhere.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for addr in &addrs {
            let Ok(ep) = Endpoint::from_shared(format!("http://{addr}")) else { continue };
            let Ok(ch) = ep.connect().await else { continue };
            let attach = security::Credentials::simple(security::os_user()).attach()?;
            let mut admin =
                pb::admin_protocol_client::AdminProtocolClient::with_interceptor(ch, attach);
            if admin.masters(pb::MastersRequest {}).await.is_ok() {
                return Ok((*addr, servers));
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the master group elected no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn grpc(cli: &Cli, token: bool, members: usize, rows: &mut Vec<Row>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let secret = Arc::new(security::token::Secret::generate());
    let (addr, servers) = start_masters(dir.path(), members, token.then(|| secret.clone())).await?;
    let mut channels = Vec::new();
    for _ in 0..cli.channels.max(1) {
        let ep = Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true);
        let mut connected = None;
        for _ in 0..100 {
            if let Ok(c) = ep.connect().await {
                connected = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        channels.push(connected.context("the master did not start")?);
    }
    // The OS user, the master's superuser: the RPC rows measure the edge and the log.
    let user = security::os_user();
    let now = proto::clock::wall_ms();
    let hour = 3_600_000;
    let user_token =
        token.then(|| secret.issue(security::token::Kind::User, &user, &[], now, hour, hour));
    let attach = security::Credentials { user, token: user_token }.attach()?;
    let service = if token {
        security::ServerAuth::token(secret.clone(), "chunkserver")
    } else {
        security::ServerAuth::simple()
    };
    let service = service.attach("chunkserver")?;
    let rpc = Rpc {
        attach,
        channels,
        clients: cli.clients.max(1),
        ops: cli.ops,
        next_call: Arc::new(AtomicU64::new(1)),
    };
    // One fake chunkserver, so creates find a place for their chunks.
    let mut cs = ChunkserverProtocolClient::with_interceptor(rpc.channels[0].clone(), service);
    cs.register(pb::RegisterRequest {
        server: Some(pb::ChunkserverInfo {
            id: "fake".into(),
            addr: "127.0.0.2:1".into(),
            rack: "/r".into(),
        }),
        capacity: 1 << 50,
        remaining: 1 << 50,
        ..Default::default()
    })
    .await?;
    let mut m = rpc.master(0);
    for task in 0..rpc.clients {
        for d in ["m", "c", "o"] {
            m.mkdir(pb::MkdirRequest {
                path: format!("/{d}/t{task}"),
                parents: true,
                ..Default::default()
            })
            .await?;
        }
    }
    let ops = rpc.clients * (rpc.ops / rpc.clients);
    let note = format!(
        "{} tasks over {} connections, durable (group commit){}",
        rpc.clients,
        rpc.channels.len(),
        if members > 1 { format!(", a majority of {members} masters") } else { String::new() }
    );
    let mut push = |what: &str, d: Duration, note: &str| {
        let what = if token { format!("gRPC {what}, token mode") } else { format!("gRPC {what}") };
        let what = if cli.masters == "1" { what } else { format!("{what}, {members} master(s)") };
        rows.push(Row { what, value: rate(ops, d), note: note.into() });
    };

    let d = rpc.run(|m, task, i, call| create_file(m, format!("/c/t{task}/f{i}"), call)).await?;
    push("create (create + complete)", d, &note);

    let d = rpc
        .run(|mut m, task, i, call| async move {
            m.mkdir(pb::MkdirRequest {
                path: format!("/m/t{task}/d{i}"),
                client_id: CLIENT_ID.into(),
                call_id: call * 2,
                ..Default::default()
            })
            .await?;
            Ok(())
        })
        .await?;
    push("mkdir", d, &note);

    // One-chunk files to open: AddChunk on the fake chunkserver, no data written.
    let per_task = (rpc.ops / rpc.clients).min(200);
    for task in 0..rpc.clients {
        for i in 0..per_task {
            let path = format!("/o/t{task}/f{i}");
            let call = rpc.call() * 2;
            m.create(pb::CreateRequest {
                path: path.clone(),
                client_name: "w".into(),
                client_id: CLIENT_ID.into(),
                call_id: call,
                ..Default::default()
            })
            .await?;
            let chunk = m
                .add_chunk(pb::AddChunkRequest {
                    path: path.clone(),
                    client_name: "w".into(),
                    client_id: CLIENT_ID.into(),
                    call_id: call + 1,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .chunk
                .context("no chunk")?;
            m.complete(pb::CompleteRequest {
                path,
                client_name: "w".into(),
                last_handle: chunk.handle,
                last_length: 1,
                client_id: CLIENT_ID.into(),
                call_id: rpc.call() * 2,
            })
            .await?;
        }
    }
    let d = rpc
        .run(move |mut m, task, i, _| async move {
            let r = m
                .get_chunk_locations(pb::GetChunkLocationsRequest {
                    path: format!("/o/t{task}/f{}", i % per_task),
                    ..Default::default()
                })
                .await?;
            anyhow::ensure!(r.into_inner().chunks.len() == 1, "one chunk expected");
            Ok(())
        })
        .await?;
    push("open (chunk locations)", d, &format!("{} tasks, reads only", rpc.clients));

    let d = rpc
        .run(|mut m, task, i, call| async move {
            m.rename(pb::RenameRequest {
                src: format!("/c/t{task}/f{i}"),
                dst: format!("/c/t{task}/r{i}"),
                client_id: CLIENT_ID.into(),
                call_id: call * 2,
            })
            .await?;
            Ok(())
        })
        .await?;
    push("rename", d, &note);

    let d = rpc
        .run(|mut m, task, i, call| async move {
            m.delete(pb::DeleteRequest {
                path: format!("/c/t{task}/r{i}"),
                recursive: false,
                client_id: CLIENT_ID.into(),
                call_id: call * 2,
            })
            .await?;
            Ok(())
        })
        .await?;
    push("delete", d, &note);

    m.mkdir(pb::MkdirRequest { path: "/l".into(), ..Default::default() }).await?;
    for i in 0..LIST_ENTRIES {
        m.mkdir(pb::MkdirRequest { path: format!("/l/e{i}"), ..Default::default() }).await?;
    }
    let d = rpc
        .run(|mut m, _, _, _| async move {
            let r = m
                .list_dir(pb::ListDirRequest { path: "/l".into(), start_after: String::new() })
                .await?;
            anyhow::ensure!(r.into_inner().entries.len() == LIST_ENTRIES as usize);
            Ok(())
        })
        .await?;
    push("listing (100 entries)", d, &format!("{} tasks, reads only", rpc.clients));

    for (stop, server) in servers {
        let _ = stop.send(());
        server.await??;
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut rows = Vec::new();
    let modes: &[bool] = match cli.auth.as_str() {
        "token" => &[true],
        "both" => &[false, true],
        _ => &[false],
    };
    let groups: &[usize] = match cli.masters.as_str() {
        "3" => &[3],
        "both" => &[1, 3],
        _ => &[1],
    };
    for &members in groups {
        for &token in modes {
            let mode = if token { "token" } else { "simple" };
            eprintln!(
                "metabench: gRPC against {members} real master(s), {mode} mode ({} ops per kind)...",
                cli.ops
            );
            rt.block_on(grpc(&cli, token, members, &mut rows))?;
        }
    }
    drop(rt);
    if cli.grpc_only {
        return print_rows(rows);
    }
    eprintln!("metabench: in-process Core...");
    in_process(cli.ops, &mut rows)?;
    eprintln!("metabench: {} one-chunk files for memory, checkpoint and restart...", cli.files);
    scale(cli.files, cli.replay, &mut rows)?;
    print_rows(rows)
}

fn print_rows(rows: Vec<Row>) -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "Command: `cargo run --release -p tests --bin metabench --{}{}`\n",
        if args.is_empty() { "" } else { " " },
        args.join(" ")
    );
    println!("| measurement | result | notes |");
    println!("| --- | --- | --- |");
    for r in rows {
        println!("| {} | {} | {} |", r.what, r.value, r.note);
    }
    Ok(())
}
