//! `mapred`: inspects and controls jobs on the coordinator (`status`, `list`, `kill`,
//! `counters`, `workers`). Submitting is done by job binaries (`JOBBIN submit ...`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mapred::client::{
    JobClient, coordinator_addr, counters_text, describe, job_line, skipped_too_many,
};
use mapred::runtime::SKIPPED_EXIT_CODE;

/// Inspects and controls MapReduce jobs.
#[derive(Debug, Parser)]
#[command(name = "mapred", version, about)]
struct Cli {
    /// Coordinator address.
    #[arg(long, global = true, env = "MAPRED_COORDINATOR")]
    coordinator: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// A job's state, skipped records, tasks and attempts. Exits 1 if the job failed or
    /// was killed, 3 if it succeeded with more skipped records than it allows.
    Status {
        /// Job id.
        job: String,
    },
    /// Running jobs (with --all, finished ones too).
    List {
        /// Include finished jobs.
        #[arg(long)]
        all: bool,
    },
    /// Kill a running job.
    Kill {
        /// Job id.
        job: String,
    },
    /// A job's counters.
    Counters {
        /// Job id.
        job: String,
    },
    /// The registered workers.
    Workers,
}

#[tokio::main]
async fn main() -> ExitCode {
    proto::logging::init("warn");
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("mapred: error: {}", msg.lines().next().unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = JobClient::connect(&coordinator_addr(cli.coordinator)?).await?;
    match cli.cmd {
        Cmd::Status { job } => {
            let s = client.status(&job).await?;
            print!("{}", describe(&s));
            Ok(if s.state == "failed" || s.state == "killed" {
                ExitCode::FAILURE
            } else if skipped_too_many(&s) {
                ExitCode::from(SKIPPED_EXIT_CODE)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::List { all } => {
            for s in client.list(all).await? {
                println!("{}", job_line(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Kill { job } => {
            client.kill(&job).await?;
            eprintln!("killed {job}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Counters { job } => {
            let s = client.status(&job).await?;
            print!("{}", counters_text(&s));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Workers => {
            for w in client.workers().await? {
                println!(
                    "{:<28} {:<15} {:<10} slots {} running {} shuffle {}",
                    w.worker_id, w.host, w.rack, w.slots, w.running, w.shuffle_addr
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
