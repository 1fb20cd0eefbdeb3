//! `mrfaultbench`: what losing a worker costs. Word count over the Zipf text of
//! `../shared/peers/gen_data.py` (1 GB by default, the same input `mrbench` uses and
//! caches) on a fresh mini cluster (4 chunkservers + 4 workers, 64 MiB chunks), once
//! fault-free and once with one worker SIGKILLed when half of the maps are done (its
//! running attempts and its completed map outputs are lost and run again elsewhere). Both
//! runs are in the same invocation; the outputs must be identical. Prints a markdown
//! table and the command. Run it in release mode:
//! `cargo build --release --workspace && target/release/mrfaultbench`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use tests::{ClusterOptions, Lifetime, MiniCluster};

/// Benchmarks word count with a worker killed half-way through the map phase.
#[derive(Debug, Parser)]
#[command(name = "mrfaultbench", version, about)]
struct Cli {
    /// Bytes of Zipf text.
    #[arg(long, default_value_t = 1_000_000_000)]
    text_bytes: u64,
    /// Reduce tasks.
    #[arg(long, default_value_t = 4)]
    reducers: u32,
    /// Task slots per worker.
    #[arg(long, default_value_t = 2)]
    slots: u32,
    /// The worker to kill.
    #[arg(long, default_value = "w-2")]
    victim: String,
    /// Working directory (the input is cached here; shared with `mrbench`).
    #[arg(long, default_value = "target/mrbench")]
    dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mrfaultbench: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mrfaultbench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Generates the input with `gen_data.py text` unless it is cached.
fn input(dir: &Path, bytes: u64) -> anyhow::Result<PathBuf> {
    let text = dir.join(format!("text-{bytes}.txt"));
    if text.is_file() {
        return Ok(text);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let gen_py = tests::data::peers_dir()?.join("gen_data.py");
    // mrbench's venv has numpy; otherwise hope the system python does.
    let venv = repo.join("target/mrbench-venv/bin/python");
    let py = if venv.is_file() { venv } else { PathBuf::from("python3") };
    eprintln!("==> generating {}", text.display());
    let ok = Command::new(&py)
        .arg(gen_py)
        .arg("text")
        .arg(&text)
        .arg(bytes.to_string())
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", py.display()))?;
    if !ok.success() {
        bail!("gen_data.py failed (needs numpy: run mrbench once to set up its venv)");
    }
    Ok(text)
}

/// Submits word count detached; returns the job id.
fn submit(cluster: &MiniCluster, output: &str, reducers: u32) -> anyhow::Result<String> {
    let r = reducers.to_string();
    let out = cluster
        .mr_cmd("mapred-examples")
        .args(["submit", "wordcount", "--input", "/bench/text", "--output", output])
        .args(["--reducers", &r, "--detach"])
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("submit failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Polls job `id` every 100 ms; `on_progress` sees each status until the job ends.
async fn follow(
    jobs: &mapred::client::JobClient,
    id: &str,
    mut on_progress: impl FnMut(&proto::mapred::JobStatus) -> anyhow::Result<()>,
) -> anyhow::Result<proto::mapred::JobStatus> {
    loop {
        let s = jobs.status(id).await?;
        if s.state != "running" {
            return Ok(s);
        }
        on_progress(&s)?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn parts(cluster: &MiniCluster, dir: &str) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let client = cluster.client().await?;
    let mut out = BTreeMap::new();
    for f in client.list(dir).await? {
        if f.path.as_str().contains("/part-") {
            out.insert(
                f.path.as_str().rsplit('/').next().unwrap_or_default().to_owned(),
                client.read_all(f.path.as_str()).await?,
            );
        }
    }
    Ok(out)
}

fn counter(s: &proto::mapred::JobStatus, name: &str) -> u64 {
    mapred::Counters::from_proto(&s.counters).get("job", name)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cli.dir)?;
    let dir = cli.dir.canonicalize()?;
    let text = input(&dir, cli.text_bytes)?;
    let len = std::fs::metadata(&text)?.len();
    let cdir = dir.join("faultcluster");
    let _ = std::fs::remove_dir_all(&cdir);
    let options = ClusterOptions {
        mapreduce: true,
        worker_slots: cli.slots,
        heartbeat_ms: 1000,
        mr_heartbeat_ms: Some(200),
        ..ClusterOptions::default()
    };
    eprintln!("==> starting a fresh mini cluster (4 chunkservers + 4 workers, 64 MiB chunks)");
    let mut cluster = MiniCluster::start_in(&cdir, options, Lifetime::Scoped).await?;
    let start = Instant::now();
    let ok = cluster.dfs_cmd().args(["put", "-p"]).arg(&text).arg("/bench/text").status()?;
    if !ok.success() {
        bail!("dfs put failed");
    }
    eprintln!("    put: {:.1} s", start.elapsed().as_secs_f64());

    eprintln!("==> fault-free word count");
    let start = Instant::now();
    let id = submit(&cluster, "/bench/wc-clean", cli.reducers)?;
    let jobs = cluster.job_client().await?;
    let clean = follow(&jobs, &id, |_| Ok(())).await?;
    let clean_secs = start.elapsed().as_secs_f64();
    if clean.state != "succeeded" {
        bail!("the fault-free job {}: {}", clean.state, clean.error);
    }

    eprintln!("==> word count with {} SIGKILLed at 50% of the map phase", cli.victim);
    let start = Instant::now();
    let id = submit(&cluster, "/bench/wc-fault", cli.reducers)?;
    let mut killed_at = None;
    let victim = cli.victim.clone();
    let faulty = follow(&jobs, &id, |s| {
        if killed_at.is_none() && s.maps_done * 2 >= s.maps {
            cluster.kill(&victim)?;
            killed_at = Some(start.elapsed().as_secs_f64());
            eprintln!(
                "    killed {victim} at {:.1} s ({}/{} maps done)",
                killed_at.unwrap_or(0.0),
                s.maps_done,
                s.maps
            );
        }
        Ok(())
    })
    .await?;
    let fault_secs = start.elapsed().as_secs_f64();
    if faulty.state != "succeeded" {
        bail!("the job with a killed worker {}: {}", faulty.state, faulty.error);
    }
    let same =
        parts(&cluster, "/bench/wc-clean").await? == parts(&cluster, "/bench/wc-fault").await?;
    if !same {
        bail!("the outputs of the two runs differ");
    }
    println!(
        "command: target/release/mrfaultbench --text-bytes {} --reducers {} --slots {} --victim {}",
        cli.text_bytes, cli.reducers, cli.slots, cli.victim
    );
    println!();
    println!("| run | seconds | MB/s | maps launched / maps | killed map attempts | ratio |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, s, secs) in [
        ("fault-free", &clean, clean_secs),
        (
            &*format!(
                "{} SIGKILLed at {:.1} s (50% of maps)",
                cli.victim,
                killed_at.unwrap_or(0.0)
            ),
            &faulty,
            fault_secs,
        ),
    ] {
        println!(
            "| {name} | {secs:.2} | {:.0} | {} / {} | {} | {:.2}x |",
            len as f64 / 1e6 / secs,
            counter(s, "TOTAL_LAUNCHED_MAPS"),
            s.maps,
            counter(s, "NUM_KILLED_MAPS"),
            secs / clean_secs
        );
    }
    println!();
    println!("outputs identical: yes");
    Ok(())
}
