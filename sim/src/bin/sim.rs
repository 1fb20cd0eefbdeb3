//! `sim`: runs the cluster simulator for one seed (`--seed N`, to replay a failure) or
//! many (`--seeds N [--from K]`, a soak); exits 1 on the first seed that breaks an
//! invariant, shrinks it (kinds of fault turned off while it still fails) and prints it
//! with the events before it and the command that replays it.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

/// The deterministic cluster simulator.
#[derive(Debug, Parser)]
#[command(name = "sim", about)]
struct Cli {
    /// Run this one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run this many seeds.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed of `--seeds`.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Faulty steps per seed (a settling phase follows).
    #[arg(long, default_value_t = 3000)]
    steps: u64,
    /// Kinds of fault to leave out, comma-separated (kill, freeze, master-crash,
    /// bit-flip, disk-full, drop, duplicate, writer-death): how a shrunk failure replays.
    #[arg(long, default_value = "")]
    without: sim::FaultSet,
    /// Print a failure as it is, without shrinking it first.
    #[arg(long)]
    no_shrink: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let seeds = match cli.seed {
        Some(s) => s..s + 1,
        None => cli.from..cli.from.saturating_add(cli.seeds),
    };
    let started = Instant::now();
    let mut total = sim::Stats::default();
    let n = seeds.end - seeds.start;
    for seed in seeds {
        let enabled = cli.without.missing();
        match sim::run_with(seed, cli.steps, enabled) {
            Ok(s) => {
                total.acked_files += s.acked_files;
                total.lease_recovered += s.lease_recovered;
                total.master_crashes += s.master_crashes;
                total.kills += s.kills;
                total.torn_replicas += s.torn_replicas;
                total.pipeline_recoveries += s.pipeline_recoveries;
                total.good_reads += s.good_reads;
            }
            Err(f) => {
                if cli.no_shrink {
                    eprintln!("{f}");
                    return ExitCode::FAILURE;
                }
                eprintln!(
                    "seed {seed} broke an invariant at step {}: {}; shrinking (turning kinds of fault off while it still fails)...",
                    f.violation.step, f.violation.what
                );
                let shrunk = sim::shrink(seed, cli.steps, enabled).unwrap_or(f);
                eprintln!("{shrunk}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{n} seeds passed in {:.1} s: {} files acknowledged, {} closed by lease recovery, {} pipeline recoveries, {} chunkserver kills ({} replicas torn), {} master crashes, {} whole reads",
        started.elapsed().as_secs_f64(),
        total.acked_files,
        total.lease_recovered,
        total.pipeline_recoveries,
        total.kills,
        total.torn_replicas,
        total.master_crashes,
        total.good_reads
    );
    ExitCode::SUCCESS
}
