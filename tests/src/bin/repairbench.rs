//! `repairbench`: how fast the cluster re-replicates a lost chunkserver's data, next to
//! the machine's disk write rate measured in the same run.
//!
//! Starts a fresh 4-chunkserver mini cluster (64 MiB chunks, replication throttle off),
//! writes enough data that one chunkserver holds about `--victim-gib` GiB of chunks,
//! SIGKILLs that chunkserver and times until fsck is healthy again (every chunk back to
//! its full replication). Prints a markdown table and the exact command. Not a test.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use proto::gfs::{ChunkHealth, ChunkserverState, ReplicaState};
use tests::data::random_bytes;
use tests::{ClusterOptions, MiniCluster};

/// Measures the re-replication rate after a chunkserver dies.
#[derive(Debug, Parser)]
#[command(name = "repairbench")]
struct Cli {
    /// About this many GiB of chunks on the chunkserver that is killed.
    #[arg(long, default_value_t = 2.0)]
    victim_gib: f64,
    /// Chunk size in MiB.
    #[arg(long, default_value_t = 64)]
    chunk_mib: u64,
    /// Heartbeat interval of the cluster, in milliseconds.
    #[arg(long, default_value_t = 500)]
    heartbeat_ms: u64,
    /// Dead interval, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    dead_after_ms: u64,
    /// Size of the file written to measure the disk, in MiB.
    #[arg(long, default_value_t = 1024)]
    disk_probe_mib: u64,
}

const MIB: u64 = 1 << 20;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tests::bench_main("repairbench", run(&cli))
}

/// MB/s (10^6 bytes per second).
fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

/// Writes and fdatasyncs `mib` MiB in `dir`; returns the rate in MB/s.
fn disk_rate(dir: &std::path::Path, mib: u64) -> anyhow::Result<f64> {
    let path = dir.join("disk-probe");
    let f = File::create(&path).with_context(|| format!("create {}", path.display()))?;
    let block = random_bytes(99, MIB as usize);
    let start = Instant::now();
    for i in 0..mib {
        f.write_all_at(&block, i * MIB).context("write the disk probe")?;
    }
    f.sync_data().context("sync the disk probe")?;
    let took = start.elapsed();
    drop(f);
    std::fs::remove_file(&path).context("remove the disk probe")?;
    Ok(mbps(mib * MIB, took))
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let chunk = cli.chunk_mib * MIB;
    let options = ClusterOptions {
        chunk_size: chunk,
        heartbeat_ms: cli.heartbeat_ms,
        dead_after_ms: Some(cli.dead_after_ms),
        master_args: vec!["--replication-max-streams".into(), "0".into()],
        ..ClusterOptions::default()
    };
    let mut c = MiniCluster::start(options).await.context("start the mini cluster")?;
    let disk = disk_rate(c.dir(), cli.disk_probe_mib)?;

    // Each chunkserver holds about 3/4 of the data at replication 3 on 4 servers.
    let total = ((cli.victim_gib * (1u64 << 30) as f64) * 4.0 / 3.0) as u64;
    let file_size = 16 * chunk;
    let client = c.client().await?;
    let buf = random_bytes(7, (8 * MIB) as usize);
    let mut written = 0u64;
    let write_start = Instant::now();
    let mut n = 0;
    while written < total {
        let size = file_size.min(total - written).max(MIB);
        let mut w = client
            .create(
                format!("/bench/f{n}"),
                dfs::CreateOptions { create_parents: true, ..Default::default() },
            )
            .await?;
        let mut left = size;
        let mut round = 0u8;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            // Vary the bytes so no two blocks are alike.
            let mut piece = buf[..k].to_vec();
            piece[0] = round;
            piece[k - 1] = n as u8;
            w.write_all(&piece).await?;
            left -= k as u64;
            round = round.wrapping_add(1);
        }
        w.close().await?;
        written += size;
        n += 1;
    }
    let write_took = write_start.elapsed();

    // The victim: the chunkserver holding the most bytes.
    let fsck = c.fsck("/").await?;
    let healthy = ReplicaState::Healthy as i32;
    let mut held: std::collections::HashMap<String, u64> = Default::default();
    for ch in fsck.files.iter().flat_map(|f| &f.chunks) {
        for r in ch.replicas.iter().filter(|r| r.state == healthy) {
            if let Some(s) = &r.server {
                *held.entry(s.addr.clone()).or_default() += ch.length;
            }
        }
    }
    let Some((victim_addr, victim_bytes)) = held.into_iter().max_by_key(|(_, b)| *b) else {
        bail!("no replica found after writing");
    };
    let victim =
        c.chunkserver_by_addr(&victim_addr).context("victim is a known chunkserver")?.name.clone();
    c.kill(&victim)?;
    let killed = Instant::now();
    let mut detected = None;
    let dead = ChunkserverState::Dead as i32;
    let healthy_chunk = ChunkHealth::Healthy as i32;
    loop {
        if detected.is_none() {
            let r = c.cluster_report().await?;
            if r.chunkservers.iter().any(|s| s.state == dead) {
                detected = Some(killed.elapsed());
            }
        }
        let f = c.fsck("/").await?;
        let all = f.files.iter().flat_map(|f| &f.chunks).all(|ch| ch.health == healthy_chunk);
        if detected.is_some() && all {
            break;
        }
        if killed.elapsed() > Duration::from_secs(3600) {
            bail!("fsck not healthy an hour after the kill");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total_took = killed.elapsed();
    let detected = detected.unwrap_or_default();
    let repair_took = total_took.saturating_sub(detected);
    let rate = mbps(victim_bytes, repair_took);
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "Command: `cargo run --release -p tests --bin repairbench --{}{}`",
        if args.is_empty() { "" } else { " " },
        args.join(" ")
    );
    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| data written (logical) | {:.2} GiB in {:.1} s ({:.0} MB/s) |",
        written as f64 / (1u64 << 30) as f64,
        write_took.as_secs_f64(),
        mbps(written, write_took)
    );
    println!(
        "| bytes on the killed chunkserver | {:.2} GiB ({} MiB chunks) |",
        victim_bytes as f64 / (1u64 << 30) as f64,
        cli.chunk_mib
    );
    println!(
        "| dead detected after | {:.1} s (dead interval {} ms) |",
        detected.as_secs_f64(),
        cli.dead_after_ms
    );
    println!("| fsck healthy after | {:.1} s from the kill |", total_took.as_secs_f64());
    println!(
        "| re-replication (detection to healthy) | {:.1} s, **{rate:.0} MB/s** |",
        repair_took.as_secs_f64()
    );
    println!("| disk write rate (1 file, write + fdatasync) | {disk:.0} MB/s |");
    println!("| repair rate / disk rate | {:.0}% |", rate * 100.0 / disk);
    let _ = std::io::stdout().flush();
    c.shutdown(Duration::from_secs(5))?;
    Ok(())
}
