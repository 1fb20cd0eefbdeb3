//! `failoverbench`: how long a replicated master group is unavailable for changes when
//! its leader is SIGKILLed, against the 3 s target.
//!
//! Starts a mini cluster with a group of three masters (default settings: an election
//! timeout of 1 s, randomized up to 1.5 s), then `--kills` times: makes sure a change
//! goes through, SIGKILLs whoever leads, and times until a `mkdir` from a client given
//! every member's address succeeds again (the client retries every 50-250 ms, with 1 s
//! call deadlines); restarts the killed member and lets it catch up. Prints the median,
//! the maximum and every figure, and the exact command. Not a test.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use dfs::retry::Backoff;
use dfs::{Client, ClientConfig};
use tests::{ClusterOptions, MiniCluster};

/// Measures failover time of the master group.
#[derive(Debug, Parser)]
#[command(name = "failoverbench")]
struct Cli {
    /// Leaders to kill.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Members of the group.
    #[arg(long, default_value_t = 3)]
    masters: usize,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tests::bench_main("failoverbench", run(&cli))
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let options = ClusterOptions {
        masters: cli.masters,
        chunkservers: 1,
        replication: 1,
        mapreduce: false,
        ..ClusterOptions::for_tests()
    };
    let mut c = MiniCluster::start(options).await.context("start the cluster")?;
    let cfg = ClientConfig {
        rpc_timeout: Duration::from_secs(1),
        master_retry_deadline: Duration::from_secs(60),
        backoff: Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(250) },
        ..ClientConfig::default()
    };
    let client = Client::connect(&c.master_addrs(), cfg).await.context("connect")?;
    let mut times = Vec::new();
    for k in 0..cli.kills {
        client.mkdir(format!("/before/{k}").as_str(), true).await.context("mkdir before")?;
        let leader = c.leader_addr().await?;
        let name = c
            .spec()
            .masters()
            .find(|m| m.addr == leader)
            .map(|m| m.name.clone())
            .context("the leader is not a member")?;
        let killed = Instant::now();
        c.kill(&name)?;
        client.mkdir(format!("/after/{k}").as_str(), true).await.context("mkdir after")?;
        let took = killed.elapsed();
        eprintln!("kill {}: {name} was leading; a change went through {took:?} later", k + 1);
        times.push(took);
        c.restart(&name).await?;
        // Let the restarted member catch up before the next kill, so each kill leaves a
        // majority with the whole log.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    times.sort();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let max = times.last().copied().unwrap_or_default();
    let min = times.first().copied().unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "Command: `cargo run --release -p tests --bin failoverbench --{}{}`\n",
        if args.is_empty() { "" } else { " " },
        args.join(" ")
    );
    println!("| measurement | result | notes |");
    println!("| --- | --- | --- |");
    println!(
        "| leader SIGKILL -> first successful mkdir, median | {} | {} kills of a {}-member group; target 3 s |",
        ms(median),
        times.len(),
        cli.masters
    );
    println!("| ... max | {} | min {} |", ms(max), ms(min));
    println!(
        "| every kill (sorted) | {} | |",
        times.iter().map(|&t| ms(t)).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}
