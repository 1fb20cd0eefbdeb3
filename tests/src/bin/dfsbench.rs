//! `dfsbench`: storage throughput of a fresh mini cluster against the local filesystem.
//!
//! (a) `dfs put` of a file (replication 3, so every byte is written to three chunkservers
//!     and fsynced) against writing the same bytes to three local files and fsyncing them;
//! (b) `dfs cat FILE > /dev/null` against `cat LOCAL > /dev/null`;
//! (c) `dfs put` with one chunkserver SIGKILLed 40% of the way through (the writer
//!     recovers its pipeline and carries on with the survivors) against (a)'s put of the
//!     same run; the killed chunkserver is restarted and the cluster repaired (no chunk
//!     under-replicated) before the next run.
//!
//! Both sides use the `dfs` command line and the real `cat` as separate processes, so the
//! numbers are what a user sees, process start-up included (negligible at 1 GiB). All
//! chunkservers share this machine's disk and page cache with the baseline. Run it in
//! release mode: `cargo build --release --workspace && target/release/dfsbench`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use proto::size::{format_size, parse_size};
use tests::data::write_random_file;
use tests::{ClusterOptions, Lifetime, MiniCluster};

/// Compares dfs put/get throughput with local writes and reads of the same bytes.
#[derive(Debug, Parser)]
#[command(name = "dfsbench", version, about)]
struct Cli {
    /// Size of the file written and read.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    size: u64,
    /// Working directory (default: a temporary directory under ./target, else $TMPDIR).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Number of runs of each measurement (best and median are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Chunk size of the cluster.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    chunk_size: u64,
    /// TLS on every port of the cluster (a throwaway CA), to measure its cost.
    #[arg(long)]
    tls: bool,
    /// How callers prove who they are (`token`: every call carries a token).
    #[arg(long, default_value_t = security::AuthMode::Simple)]
    auth: security::AuthMode,
}

/// Timings of one measurement across runs.
#[derive(Debug, Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn best(&self) -> Duration {
        self.0.iter().copied().min().unwrap_or_default()
    }

    fn median(&self) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

#[tokio::main]
async fn main() -> ExitCode {
    proto::logging::init("warn");
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dfsbench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let parent = match &cli.dir {
        Some(d) => d.clone(),
        None if Path::new("target").is_dir() => PathBuf::from("target"),
        None => std::env::temp_dir(),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix("dfsbench-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a directory in {}", parent.display()))?;
    let input = work.path().join("input.bin");
    eprintln!("generating {} in {}", format_size(cli.size), input.display());
    write_random_file(&input, 0xbe9c, cli.size)?;

    let options = ClusterOptions {
        chunk_size: cli.chunk_size,
        tls: cli.tls,
        token_auth: cli.auth == security::AuthMode::Token,
        ..ClusterOptions::default()
    };
    let mut cluster =
        MiniCluster::start_in(&work.path().join("cluster"), options, Lifetime::Scoped).await?;
    eprintln!("cluster up: master {}, 4 chunkservers on 2 racks", cluster.master_addr());

    let (mut put, mut put_base, mut get, mut get_base) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default());
    let mut put_kill = Samples::default();
    for run in 1..=cli.runs {
        let remote = format!("/bench/file-{run}");
        put.0.push(time_command(
            cluster.dfs_cmd().args(["put", "-f", "-p"]).arg(&input).arg(&remote),
        )?);
        put_base.0.push(local_copies(&input, work.path(), 3)?);
        get.0.push(time_command(cluster.dfs_cmd().args(["cat", &remote]))?);
        get_base.0.push(time_command(Command::new("cat").arg(&input))?);
        eprintln!(
            "run {run}: put {:.0} MB/s (local x3 {:.0}), get {:.0} MB/s (cat {:.0})",
            mbps(cli.size, put.0[run - 1]),
            mbps(cli.size, put_base.0[run - 1]),
            mbps(cli.size, get.0[run - 1]),
            mbps(cli.size, get_base.0[run - 1]),
        );
        // Free the space for the next run: 3 replicas of every run would pile up otherwise.
        let _ = cluster.dfs_cmd().args(["rm", &remote]).stdout(Stdio::null()).status();
        let killed = format!("/bench/killed-{run}");
        let victim = "cs-1";
        let kill_after = put.0[run - 1].mul_f64(0.4);
        put_kill.0.push(put_with_kill(&mut cluster, &input, &killed, victim, kill_after)?);
        eprintln!(
            "run {run}: put with {victim} SIGKILLed after {} ms: {:.0} MB/s",
            kill_after.as_millis(),
            mbps(cli.size, put_kill.0[run - 1])
        );
        let _ = cluster.dfs_cmd().args(["rm", &killed]).stdout(Stdio::null()).status();
        cluster.restart(victim).await?;
        wait_repaired(&cluster).await?;
    }
    cluster.shutdown(Duration::from_secs(5))?;

    let size = format_size(cli.size);
    let row = |name: &str, dfs: &Samples, base: &Samples, base_name: &str| {
        format!(
            "| {name} | {:.0} / {:.0} | {base_name} | {:.0} / {:.0} | {:.2} |",
            mbps(cli.size, dfs.best()),
            mbps(cli.size, dfs.median()),
            mbps(cli.size, base.best()),
            mbps(cli.size, base.median()),
            mbps(cli.size, dfs.best()) / mbps(cli.size, base.best()),
        )
    };
    println!();
    println!(
        "Mini cluster: 4 chunkservers on 2 racks (loopback), {} chunks, replication 3, {} mode{}; {} runs, {} file.",
        format_size(cli.chunk_size),
        cli.auth,
        if cli.tls { ", TLS" } else { "" },
        cli.runs,
        size
    );
    println!();
    println!(
        "| operation | dfs MB/s (best / median) | baseline | baseline MB/s (best / median) | dfs / baseline (best) |"
    );
    println!("| --- | ---: | --- | ---: | ---: |");
    println!(
        "{}",
        row(&format!("`dfs put` {size}"), &put, &put_base, "write 3 local copies + fsync")
    );
    println!(
        "{}",
        row(
            &format!("`dfs cat` {size} > /dev/null"),
            &get,
            &get_base,
            "`cat` local file > /dev/null"
        )
    );
    println!(
        "{}",
        row(
            &format!("`dfs put` {size}, a chunkserver SIGKILLed mid-put"),
            &put_kill,
            &put,
            "`dfs put` with no fault, same run"
        )
    );
    println!();
    println!(
        "Command: `cargo build --release --workspace && target/release/dfsbench --size {} --runs {}{}{}`",
        size_arg(cli.size),
        cli.runs,
        if cli.tls { " --tls" } else { "" },
        if cli.auth == security::AuthMode::Token { " --auth token" } else { "" },
    );
    Ok(())
}

/// A size as it can be typed back on the command line (`1GiB`, `256MiB`, `12345`).
fn size_arg(bytes: u64) -> String {
    match bytes {
        b if b > 0 && b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b > 0 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b => b.to_string(),
    }
}

/// Times `dfs put INPUT REMOTE` during which chunkserver `victim` is SIGKILLed after
/// `kill_after`.
fn put_with_kill(
    cluster: &mut MiniCluster,
    input: &Path,
    remote: &str,
    victim: &str,
    kill_after: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let child = cluster
        .dfs_cmd()
        .args(["put", "-f", "-p"])
        .arg(input)
        .arg(remote)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run dfs put")?;
    std::thread::sleep(kill_after);
    cluster.kill(victim)?;
    let out = child.wait_with_output().context("cannot wait for dfs put")?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        bail!(
            "dfs put with {victim} killed failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(elapsed)
}

/// Waits (up to 10 minutes) until no chunk is under-replicated, so the next run starts
/// on a repaired cluster.
async fn wait_repaired(cluster: &MiniCluster) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let r = cluster.cluster_report().await?;
        if r.under_replicated == 0 && r.pending_replications == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} chunks still under-replicated after 10 minutes", r.under_replicated);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs a command with stdout to /dev/null and returns how long it took.
fn time_command(cmd: &mut Command) -> anyhow::Result<Duration> {
    let devnull = File::create("/dev/null").context("cannot open /dev/null")?;
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(devnull)
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {}", cmd.get_program().to_string_lossy()))?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            cmd.get_program().to_string_lossy(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(elapsed)
}

/// The baseline for a replicated write: the input's bytes written to `copies` local files
/// in `dir` (the cluster's filesystem), each fsynced at the end, as a chunkserver does.
fn local_copies(input: &Path, dir: &Path, copies: usize) -> anyhow::Result<Duration> {
    let paths: Vec<PathBuf> = (0..copies).map(|i| dir.join(format!("baseline-{i}.bin"))).collect();
    let start = Instant::now();
    let mut src = File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
    let mut outs = paths
        .iter()
        .map(|p| {
            OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(p)
                .with_context(|| format!("cannot create {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<File>>>()?;
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = src.read(&mut buf).with_context(|| format!("cannot read {}", input.display()))?;
        if n == 0 {
            break;
        }
        for out in &mut outs {
            out.write_all(&buf[..n]).context("cannot write a baseline copy")?;
        }
    }
    for out in &outs {
        out.sync_all().context("cannot fsync a baseline copy")?;
    }
    let elapsed = start.elapsed();
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    Ok(elapsed)
}
