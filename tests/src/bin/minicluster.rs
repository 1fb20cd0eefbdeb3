//! `minicluster`: starts, inspects and stops a mini cluster of real `master` and
//! `chunkserver` processes on loopback addresses, and runs the end-to-end demo.
//!
//! `up` leaves the processes running in the background and records them in
//! `DIR/cluster.json`; the other subcommands find them there. Everything else lives in
//! the `tests` library ([`tests::MiniCluster`]).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use proto::gfs::ChunkserverState;
use proto::size::{format_size, parse_size};
use tests::data::{file_checksum, first_difference, write_random_file};
use tests::{ClusterOptions, ClusterSpec, Lifetime, MiniCluster, ProcessState};

/// Grace period between SIGTERM and SIGKILL in `down`.
const GRACE: Duration = Duration::from_secs(5);

/// Starts and controls a mini cluster (a master and chunkservers on 127.0.0.x).
#[derive(Debug, Parser)]
#[command(name = "minicluster", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start a cluster in the background; prints `export DFS_MASTER=...` on stdout.
    Up(UpArgs),
    /// Stop every process of the cluster (SIGTERM, then SIGKILL after a few seconds).
    Down(DirArg),
    /// Show each process: name, address, rack, pid, state.
    Status(DirArg),
    /// SIGKILL one process (`master`, `cs-1`, ...).
    Kill(NameArgs),
    /// Freeze one process with SIGSTOP.
    Stop(NameArgs),
    /// Resume a frozen process with SIGCONT.
    Cont(NameArgs),
    /// Start one process again with the same flags and data (killing it first if running).
    Start(NameArgs),
    /// Start a cluster, write a file, read it back, verify it, show fsck, stop the cluster.
    Demo(DemoArgs),
    /// Start a cluster with MapReduce, count the words of a generated text, show the top
    /// words and the job's counters, stop the cluster.
    WordcountDemo(WordcountDemoArgs),
}

#[derive(Debug, Args)]
struct WordcountDemoArgs {
    /// Cluster directory (default: a new temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Size of the generated text.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    size: u64,
    /// Chunk size of the demo cluster (small enough that the text spans many chunks).
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    chunk_size: u64,
    /// Number of reduce tasks.
    #[arg(long, default_value_t = 4)]
    reducers: u32,
    /// Words to show.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

#[derive(Debug, Args)]
struct DirArg {
    /// Cluster directory (data, logs, cluster.json).
    #[arg(long, env = "MINICLUSTER_DIR")]
    dir: PathBuf,
}

#[derive(Debug, Args)]
struct NameArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Process name: `master`, `cs-1`, `cs-2`, ...
    name: String,
}

#[derive(Debug, Args)]
struct ShapeArgs {
    /// Number of chunkservers.
    #[arg(long, default_value_t = 4)]
    chunkservers: usize,
    /// Number of racks (chunkservers are spread round-robin: /rack-a, /rack-b, ...).
    #[arg(long, default_value_t = 2)]
    racks: usize,
    /// Replication factor of new files.
    #[arg(long, default_value_t = 3)]
    replication: u32,
}

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    dir: DirArg,
    #[command(flatten)]
    shape: ShapeArgs,
    /// Chunk size of new files (e.g. 64MiB, 1m).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    chunk_size: u64,
    /// Chunkserver heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 3000)]
    heartbeat_ms: u64,
    /// Silence after which the master declares a chunkserver dead (default: the master's).
    #[arg(long)]
    dead_after_ms: Option<u64>,
    /// Space each chunkserver may use (default: the filesystem's).
    #[arg(long, value_parser = parse_size)]
    capacity: Option<u64>,
    /// Start only the chunk store (no coordinator and workers).
    #[arg(long)]
    no_mapreduce: bool,
    /// How callers prove who they are: `simple`, or `token` (creates the cluster secret
    /// DIR/secret, mode 0600, and a token for you in DIR/tokens/).
    #[arg(long, default_value_t = security::AuthMode::Simple)]
    auth: security::AuthMode,
    /// TLS on every port, with a throwaway CA and certificate made in DIR/tls/.
    #[arg(long)]
    tls: bool,
    /// Task slots of each worker.
    #[arg(long, default_value_t = 2)]
    worker_slots: u32,
    /// Members of the master group: 1 (a single master) or 3 or 5 (a replicated group,
    /// `master`, `master-2`, ... on 127.0.1.x).
    #[arg(long, default_value_t = 1)]
    masters: usize,
    /// One more argument for the master's command line (repeatable; kept in cluster.json,
    /// so `start master` uses it too), e.g. `--master-arg=--safemode-extension-ms=0`.
    #[arg(long = "master-arg", value_name = "ARG", allow_hyphen_values = true)]
    master_args: Vec<String>,
    /// One more argument for every chunkserver's command line (repeatable; kept in
    /// cluster.json), e.g. `--chunkserver-arg=--scrub-period-secs=60`.
    #[arg(long = "chunkserver-arg", value_name = "ARG", allow_hyphen_values = true)]
    chunkserver_args: Vec<String>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Cluster directory (default: a new temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Size of the file written and read back.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    size: u64,
    /// Chunk size of the demo cluster (small enough that the file spans many chunks).
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    chunk_size: u64,
    /// Leave the cluster running (and its directory in place) afterwards.
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    proto::logging::init("warn");
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: nested causes joined with ": " by `{:#}`.
            let msg = format!("{e:#}");
            let first = msg.lines().next().unwrap_or_default();
            eprintln!("minicluster: error: {first}");
            let rest: Vec<&str> = msg.lines().skip(1).collect();
            if !rest.is_empty() {
                // Log tails quoted by the harness, for the curious; the error is line one.
                eprintln!("{}", rest.join("\n"));
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Up(args) => up(args).await,
        Cmd::Down(DirArg { dir }) => down(&dir),
        Cmd::Status(DirArg { dir }) => status(&dir).await,
        Cmd::Kill(a) => signal(a, "killed", MiniCluster::kill),
        Cmd::Stop(a) => signal(a, "stopped", MiniCluster::stop),
        Cmd::Cont(a) => signal(a, "continued", MiniCluster::cont),
        Cmd::Start(NameArgs { dir: DirArg { dir }, name }) => {
            let mut cluster = MiniCluster::attach(&dir)?;
            cluster.restart(&name).await?;
            let p = cluster.process(&name)?;
            eprintln!("{name}: started on {} (pid {})", p.addr, p.pid);
            cluster.detach();
            Ok(())
        }
        Cmd::Demo(args) => demo(args).await,
        Cmd::WordcountDemo(args) => wordcount_demo(args).await,
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let options = ClusterOptions {
        chunkservers: args.shape.chunkservers,
        racks: args.shape.racks,
        chunk_size: args.chunk_size,
        replication: args.shape.replication,
        heartbeat_ms: args.heartbeat_ms,
        dead_after_ms: args.dead_after_ms,
        capacity: args.capacity,
        mapreduce: !args.no_mapreduce,
        worker_slots: args.worker_slots,
        master_args: args.master_args,
        chunkserver_args: args.chunkserver_args,
        token_auth: args.auth == security::AuthMode::Token,
        tls: args.tls,
        masters: args.masters,
        ..ClusterOptions::default()
    };
    let cluster = MiniCluster::start_in(&args.dir.dir, options, Lifetime::Detached).await?;
    let token_file = cluster.token_file(&security::os_user())?;
    let spec = cluster.detach();
    print_summary(&spec);
    println!("export DFS_MASTER={}", spec.master_addrs());
    if let Some(path) = token_file {
        println!("export {}={}", security::TOKEN_FILE_ENV, path.display());
    }
    if spec.options.tls {
        let ca = tests::certs::TlsFiles::in_dir(&spec.dir).ca;
        println!("export {}={}", security::tls::CA_ENV, ca.display());
    }
    if let Some(c) = &spec.coordinator {
        println!("export MAPRED_COORDINATOR={}", c.addr);
    }
    Ok(())
}

fn print_summary(spec: &ClusterSpec) {
    let o = &spec.options;
    eprintln!(
        "mini cluster up in {}: master {}, {} chunkservers on {} racks, {} chunks, replication {}",
        spec.dir.display(),
        spec.master_addrs(),
        o.chunkservers,
        o.racks.min(o.chunkservers),
        format_size(o.chunk_size),
        o.replication
    );
    for p in spec.processes() {
        eprintln!(
            "  {:<8} {:<21} {:<8} pid {:<8} log {}",
            p.name,
            p.addr,
            p.rack.as_deref().unwrap_or("-"),
            p.pid,
            p.log.display()
        );
    }
    eprintln!("stop it with: minicluster down --dir {}", spec.dir.display());
}

fn down(dir: &Path) -> anyhow::Result<()> {
    let mut cluster = MiniCluster::attach(dir)?;
    let mut running = Vec::new();
    for p in cluster.spec().processes() {
        if tests::process::probe(p) != ProcessState::Exited {
            running.push(p.name.clone());
        }
    }
    let forced = cluster.shutdown(GRACE)?;
    if running.is_empty() {
        eprintln!("no process of the cluster in {} was running", dir.display());
    } else {
        eprintln!(
            "stopped {} ({} killed after {} s)",
            running.join(", "),
            forced.len(),
            GRACE.as_secs()
        );
    }
    Ok(())
}

async fn status(dir: &Path) -> anyhow::Result<()> {
    let cluster = MiniCluster::attach(dir)?;
    // The master's own view, if it answers quickly: a chunkserver may be up but declared dead.
    let report = tokio::time::timeout(Duration::from_secs(2), cluster.cluster_report()).await;
    let report = report.ok().and_then(Result::ok);
    let leader = if cluster.spec().other_masters.is_empty() {
        None
    } else {
        tokio::time::timeout(Duration::from_secs(3), cluster.leader_addr())
            .await
            .ok()
            .and_then(Result::ok)
    };
    println!(
        "{:<8} {:<21} {:<8} {:>8}  {:<8} MASTER-VIEW",
        "NAME", "ADDRESS", "RACK", "PID", "STATE"
    );
    for p in cluster.spec().processes() {
        let view = match (&report, p.role == tests::Role::Chunkserver) {
            _ if p.role == tests::Role::Master && leader.is_some() => {
                if leader.as_deref() == Some(p.addr.as_str()) { "leader" } else { "member" }
            }
            (None, _) => "-",
            (Some(_), false) => "answering",
            (Some(r), true) => match r
                .chunkservers
                .iter()
                .find(|c| c.server.as_ref().is_some_and(|s| s.addr == p.addr))
            {
                Some(c) if c.state == ChunkserverState::Live as i32 => "live",
                Some(_) => "dead",
                None => "unknown",
            },
        };
        println!(
            "{:<8} {:<21} {:<8} {:>8}  {:<8} {}",
            p.name,
            p.addr,
            p.rack.as_deref().unwrap_or("-"),
            p.pid,
            tests::process::probe(p).to_string(),
            view
        );
    }
    Ok(())
}

fn signal(
    args: NameArgs,
    done: &str,
    op: fn(&mut MiniCluster, &str) -> tests::Result<()>,
) -> anyhow::Result<()> {
    let mut cluster = MiniCluster::attach(&args.dir.dir)?;
    let pid = cluster.process(&args.name)?.pid;
    if tests::process::probe(cluster.process(&args.name)?) == ProcessState::Exited {
        bail!("{} (pid {pid}) is not running", args.name);
    }
    op(&mut cluster, &args.name)?;
    eprintln!("{}: {done} (pid {pid})", args.name);
    Ok(())
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let (dir, temp) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("minicluster-demo-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            (t.path().to_owned(), Some(t))
        }
    };
    let options = ClusterOptions {
        chunk_size: args.chunk_size,
        heartbeat_ms: 1000,
        ..ClusterOptions::default()
    };
    let lifetime = if args.keep { Lifetime::Detached } else { Lifetime::Scoped };
    eprintln!("==> starting a mini cluster in {}", dir.display());
    let mut cluster = MiniCluster::start_in(&dir, options, lifetime).await?;
    print_summary(cluster.spec());
    let result = demo_steps(&cluster, args.size).await;
    if args.keep {
        let spec = cluster.detach();
        if let Some(t) = temp {
            let _ = t.keep();
        }
        eprintln!("==> cluster left running; use it with:");
        println!("export DFS_MASTER={}", spec.master_addrs());
        eprintln!("    stop it with: minicluster down --dir {}", spec.dir.display());
    } else {
        eprintln!("==> stopping the cluster");
        cluster.shutdown(GRACE)?;
    }
    result
}

async fn demo_steps(cluster: &MiniCluster, size: u64) -> anyhow::Result<()> {
    let work = cluster.dir().join("demo");
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let (input, output) = (work.join("input.bin"), work.join("output.bin"));
    let remote = "/demo/input.bin";

    eprintln!("==> generating {} of pseudo-random data in {}", format_size(size), input.display());
    let crc_in = write_random_file(&input, 0x5eed, size)?;

    eprintln!("==> dfs put {} {remote}", input.display());
    run_inherited(cluster.dfs_cmd().args(["mkdir", "-p", "/demo"]))?;
    let put = timed(cluster.dfs_cmd().args(["put", "-f"]).arg(&input).arg(remote))?;
    eprintln!("==> dfs get {remote} {}", output.display());
    let _ = std::fs::remove_file(&output);
    let get = timed(cluster.dfs_cmd().args(["get", remote]).arg(&output))?;

    let (len_out, crc_out) = file_checksum(&output)?;
    eprintln!("==> verifying");
    eprintln!("    local : {:>12} bytes  crc32 {crc_in:08x}  {}", size, input.display());
    eprintln!("    dfs   : {:>12} bytes  crc32 {crc_out:08x}  {}", len_out, output.display());
    if let Some(at) = first_difference(&input, &output)? {
        bail!("read-back differs from the original at byte {at}");
    }
    eprintln!("    identical, byte for byte");

    eprintln!("==> dfs ls /demo");
    run_inherited(cluster.dfs_cmd().args(["ls", "/demo"]))?;
    eprintln!("==> dfs fsck /");
    run_inherited(cluster.dfs_cmd().args(["fsck", "/"]))?;

    let mb = size as f64 / 1e6;
    eprintln!("==> timing ({} through 3 replicas on loopback)", format_size(size));
    eprintln!("    put: {:>8.2} s  {:>8.1} MB/s", put.as_secs_f64(), mb / put.as_secs_f64());
    eprintln!("    get: {:>8.2} s  {:>8.1} MB/s", get.as_secs_f64(), mb / get.as_secs_f64());
    Ok(())
}

/// Runs a command with the terminal's stdio (so `dfs` can show progress) and times it.
fn timed(cmd: &mut Command) -> anyhow::Result<Duration> {
    let start = Instant::now();
    run_inherited(cmd)?;
    Ok(start.elapsed())
}

fn run_inherited(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", cmd.get_program().to_string_lossy()))?;
    if !status.success() {
        let line: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        bail!("`dfs {}` failed ({status})", line.join(" "));
    }
    Ok(())
}

/// A deterministic text of about `size` bytes: lines of 10 words drawn from a
/// 2,000-word vocabulary with Zipf-like frequencies (word i about 1/(i+1) of the time).
fn demo_text(size: u64) -> Vec<u8> {
    let mut rng = tests::data::DataGen::new(42);
    let vocab: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| {
            let mut b = [0u8; 8];
            rng.fill(&mut b);
            let len = 2 + (b[0] % 9) as usize;
            let mut w: Vec<u8> = b.iter().cycle().take(len).map(|x| b'a' + x % 26).collect();
            w.extend_from_slice(i.to_string().as_bytes());
            w
        })
        .collect();
    // Cumulative weights 1/(i+1), scaled to u32 for a binary search per word.
    let weights: Vec<f64> = (0..vocab.len()).map(|i| 1.0 / (i as f64 + 1.0)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    let cdf: Vec<u32> = weights
        .iter()
        .map(|w| {
            acc += w / total;
            (acc * f64::from(u32::MAX)) as u32
        })
        .collect();
    let mut out = Vec::with_capacity(size as usize + 200);
    let mut r = [0u8; 4];
    while (out.len() as u64) < size {
        for i in 0..10 {
            rng.fill(&mut r);
            let x = u32::from_le_bytes(r);
            let w = cdf.partition_point(|&c| c < x).min(vocab.len() - 1);
            out.extend_from_slice(&vocab[w]);
            out.push(if i == 9 { b'\n' } else { b' ' });
        }
    }
    out
}

async fn wordcount_demo(args: WordcountDemoArgs) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new()
        .prefix("minicluster-wordcount-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    let options = ClusterOptions {
        chunk_size: args.chunk_size,
        heartbeat_ms: 1000,
        mapreduce: true,
        mr_heartbeat_ms: Some(200),
        ..ClusterOptions::default()
    };
    eprintln!("==> starting a mini cluster with MapReduce in {}", dir.display());
    let cluster = MiniCluster::start_in(&dir, options, Lifetime::Scoped).await?;
    print_summary(cluster.spec());
    eprintln!("==> generating {} of text and putting it at /demo/text", format_size(args.size));
    let text = demo_text(args.size);
    let client = cluster.client().await?;
    let opts = dfs::CreateOptions { create_parents: true, ..dfs::CreateOptions::default() };
    client.put_bytes("/demo/text", &text, opts).await?;
    eprintln!(
        "==> running: mapred-examples submit wordcount --input /demo/text --output /demo/counts --reducers {}",
        args.reducers
    );
    let reducers = args.reducers.to_string();
    let mut cmd = cluster.mr_cmd("mapred-examples");
    cmd.args([
        "submit",
        "wordcount",
        "--input",
        "/demo/text",
        "--output",
        "/demo/counts",
        "--reducers",
        &reducers,
    ]);
    let start = Instant::now();
    run_inherited(&mut cmd)?;
    let took = start.elapsed();
    let mut counts: Vec<(u64, String)> = Vec::new();
    for f in client.list("/demo/counts").await? {
        let name = f.path.as_str().rsplit('/').next().unwrap_or_default().to_owned();
        if !name.starts_with("part-") {
            continue;
        }
        let data = client.read_all(f.path.as_str()).await?;
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let text = String::from_utf8_lossy(line);
            if let Some((w, n)) = text.rsplit_once('\t') {
                counts.push((n.parse().unwrap_or(0), w.to_owned()));
            }
        }
    }
    counts.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let total: u64 = counts.iter().map(|c| c.0).sum();
    eprintln!(
        "==> {} distinct words, {total} in all, counted in {:.2} s ({:.1} MB/s); top {}:",
        counts.len(),
        took.as_secs_f64(),
        args.size as f64 / 1e6 / took.as_secs_f64(),
        args.top
    );
    for (n, w) in counts.iter().take(args.top) {
        println!("{n:>10}  {w}");
    }
    eprintln!("==> stopping the cluster");
    drop(cluster);
    Ok(())
}
