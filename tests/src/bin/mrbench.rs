//! `mrbench`: word count and TeraSort on a fresh mini cluster (4 chunkservers + 4 workers,
//! 64 MiB chunks) against baselines measured in the same invocation: a single-thread Rust
//! `HashMap<&[u8], u64>` count, `LC_ALL=C sort`, and Spark local[2] (`spark_jobs.py
//! wc_df` / `sort_df`) when pyspark can be installed.
//!
//! Inputs come from `../shared/peers/gen_data.py` (numpy, installed into a venv under
//! `target/` if missing) and are cached in the work directory. Run it in release mode:
//! `cargo build --release --workspace && target/release/mrbench`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use tests::{ClusterOptions, Lifetime, MiniCluster};

/// Benchmarks MapReduce word count and TeraSort against local baselines and Spark.
#[derive(Debug, Parser)]
#[command(name = "mrbench", version, about)]
struct Cli {
    /// Bytes of Zipf text for word count.
    #[arg(long, default_value_t = 1_000_000_000)]
    text_bytes: u64,
    /// 100-byte records for TeraSort.
    #[arg(long, default_value_t = 10_000_000)]
    records: u64,
    /// Reduce tasks of both jobs.
    #[arg(long, default_value_t = 4)]
    reducers: u32,
    /// Task slots per worker.
    #[arg(long, default_value_t = 2)]
    slots: u32,
    /// Working directory (inputs are cached here).
    #[arg(long, default_value = "target/mrbench")]
    dir: PathBuf,
    /// Skip Spark even if it is available.
    #[arg(long)]
    no_spark: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mrbench: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mrbench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A python with numpy (and, if it installs, pyspark): the system one or a venv.
fn python(dir: &Path) -> anyhow::Result<(PathBuf, bool)> {
    let has = |py: &Path, m: &str| {
        Command::new(py)
            .args(["-c", &format!("import {m}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/mrbench-venv");
    let vpy = venv.join("bin/python");
    if !vpy.is_file() {
        eprintln!("==> creating {}", venv.display());
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("python3 -m venv")?;
    }
    if !has(&vpy, "numpy") {
        eprintln!("==> pip install numpy");
        Command::new(venv.join("bin/pip")).args(["install", "-q", "numpy"]).status()?;
    }
    if !has(&vpy, "pyspark") {
        eprintln!("==> pip install pyspark (for the Spark figures)");
        let _ = Command::new(venv.join("bin/pip")).args(["install", "-q", "pyspark"]).status();
    }
    let _ = dir;
    let spark = has(&vpy, "pyspark");
    Ok((vpy, spark))
}

fn timed(cmd: &mut Command) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}{}",
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(start.elapsed())
}

/// The single-thread baseline: HashMap<&[u8], u64> over the whole file in memory.
fn hashmap_count(path: &Path) -> anyhow::Result<(Duration, usize)> {
    let start = Instant::now();
    let data = std::fs::read(path)?;
    let mut m: HashMap<&[u8], u64> = HashMap::new();
    for w in data.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()) {
        *m.entry(w).or_default() += 1;
    }
    Ok((start.elapsed(), m.len()))
}

struct Row {
    task: &'static str,
    tool: String,
    secs: f64,
    bytes: u64,
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cli.dir)?;
    let dir = cli.dir.canonicalize()?;
    let peers = tests::data::peers_dir()?;
    let (py, spark) = python(&dir)?;
    let spark = spark && !cli.no_spark;
    let text = dir.join(format!("text-{}.txt", cli.text_bytes));
    let records = dir.join(format!("records-{}.txt", cli.records));
    if !text.is_file() {
        eprintln!("==> generating {}", text.display());
        timed(
            Command::new(&py)
                .arg(peers.join("gen_data.py"))
                .arg("text")
                .arg(&text)
                .arg(cli.text_bytes.to_string()),
        )?;
    }
    if !records.is_file() {
        eprintln!("==> generating {}", records.display());
        timed(
            Command::new(&py)
                .arg(peers.join("gen_data.py"))
                .arg("records")
                .arg(&records)
                .arg(cli.records.to_string()),
        )?;
    }
    let text_len = std::fs::metadata(&text)?.len();
    let rec_len = std::fs::metadata(&records)?.len();
    let cdir = dir.join("cluster");
    let _ = std::fs::remove_dir_all(&cdir);
    let options = ClusterOptions {
        mapreduce: true,
        worker_slots: cli.slots,
        heartbeat_ms: 1000,
        mr_heartbeat_ms: Some(200),
        ..ClusterOptions::default()
    };
    eprintln!("==> starting a fresh mini cluster (4 chunkservers + 4 workers, 64 MiB chunks)");
    let cluster = MiniCluster::start_in(&cdir, options, Lifetime::Scoped).await?;
    for (local, remote) in [(&text, "/bench/text"), (&records, "/bench/records")] {
        let mut put = cluster.dfs_cmd();
        put.args(["put", "-p"]).arg(local).arg(remote);
        let t = timed(&mut put)?;
        eprintln!("    put {remote}: {:.1} s", t.as_secs_f64());
    }
    let r = cli.reducers.to_string();
    let mut rows = Vec::new();
    let wc_cmd = format!(
        "mapred-examples submit wordcount --input /bench/text --output /bench/wc --reducers {r}"
    );
    eprintln!("==> {wc_cmd}");
    let t = timed(cluster.mr_cmd("mapred-examples").args([
        "submit",
        "wordcount",
        "--input",
        "/bench/text",
        "--output",
        "/bench/wc",
        "--reducers",
        &r,
    ]))?;
    rows.push(Row {
        task: "word count",
        tool: "mapred wordcount (4+4 mini cluster)".into(),
        secs: t.as_secs_f64(),
        bytes: text_len,
    });
    eprintln!("==> single-thread HashMap count");
    let (t, distinct) = hashmap_count(&text)?;
    eprintln!("    {distinct} distinct words");
    rows.push(Row {
        task: "word count",
        tool: "single-thread Rust HashMap<&[u8],u64>".into(),
        secs: t.as_secs_f64(),
        bytes: text_len,
    });
    let ts_cmd = format!(
        "mapred-examples submit terasort --input /bench/records --output /bench/sorted --reducers {r}"
    );
    eprintln!("==> {ts_cmd}");
    let t = timed(cluster.mr_cmd("mapred-examples").args([
        "submit",
        "terasort",
        "--input",
        "/bench/records",
        "--output",
        "/bench/sorted",
        "--reducers",
        &r,
    ]))?;
    rows.push(Row {
        task: "sort",
        tool: "mapred terasort (4+4 mini cluster, output replication 1)".into(),
        secs: t.as_secs_f64(),
        bytes: rec_len,
    });
    eprintln!("==> LC_ALL=C sort");
    let sorted = dir.join("sorted.txt");
    let t = timed(Command::new("sort").env("LC_ALL", "C").arg("-o").arg(&sorted).arg(&records))?;
    let _ = std::fs::remove_file(&sorted);
    rows.push(Row {
        task: "sort",
        tool: "LC_ALL=C sort".into(),
        secs: t.as_secs_f64(),
        bytes: rec_len,
    });
    drop(cluster);
    if spark {
        for (mode, input, task) in [("wc_df", &text, "word count"), ("sort_df", &records, "sort")] {
            eprintln!("==> spark {mode}");
            let out = dir.join(format!("spark-{mode}"));
            let _ = std::fs::remove_dir_all(&out);
            let t = timed(
                Command::new(&py)
                    .current_dir(&dir)
                    .env("LC_ALL", "C")
                    .env("SPARK_LOCAL_IP", "127.0.0.1")
                    .arg(peers.join("spark_jobs.py"))
                    .arg(mode)
                    .arg(input)
                    .arg(&out),
            )?;
            let _ = std::fs::remove_dir_all(&out);
            rows.push(Row {
                task,
                tool: format!("Spark local[2] {mode}"),
                secs: t.as_secs_f64(),
                bytes: input.metadata()?.len(),
            });
        }
    } else {
        eprintln!(
            "==> Spark skipped (pyspark is not installed and could not be installed, or --no-spark)"
        );
    }
    println!(
        "command: target/release/mrbench --text-bytes {} --records {} --reducers {} --slots {}",
        cli.text_bytes, cli.records, cli.reducers, cli.slots
    );
    println!();
    println!("| task | tool | seconds | MB/s | mapred speed-up |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for task in ["word count", "sort"] {
        let ours = rows
            .iter()
            .find(|r| r.task == task && r.tool.starts_with("mapred"))
            .map_or(0.0, |r| r.secs);
        for r in rows.iter().filter(|r| r.task == task) {
            println!(
                "| {} | {} | {:.2} | {:.0} | {:.2}x |",
                r.task,
                r.tool,
                r.secs,
                r.bytes as f64 / 1e6 / r.secs,
                r.secs / ours.max(1e-9)
            );
        }
    }
    Ok(())
}
