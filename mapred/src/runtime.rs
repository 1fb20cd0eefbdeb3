//! What a job binary's `main` does: [`main`] gives every binary that registers jobs the
//! `submit` command (and `jobs`, listing them), and runs task attempts when a worker
//! starts it as `JOBBIN __task SPEC_FILE`.
//!
//! `submit` ships the binary itself as the job's code, as Hadoop ships the job jar: it is
//! uploaded to the DFS once per content hash, under `/system/mapred/bin/<sha256>`, and
//! workers fetch and cache it by that hash. The command then follows the job with
//! progress bars on a terminal (plain lines when piped), prints the counters, and exits
//! non-zero if the job did not succeed, or ([`SKIPPED_EXIT_CODE`]) if it skipped more
//! records than `mapred.skip.allowed` permits. Errors before the job runs (unknown job, missing
//! input, existing output, no coordinator) are one line on stderr.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use proto::mapred as pb;
use tracing::info;

use crate::client::{
    JobClient, coordinator_addr, counters_text, percent, skipped_summary, skipped_too_many,
};
use crate::config::{JobConf, keys};
use crate::error::{Error, Result};
use crate::job::{Registry, SubmitContext};
use crate::spec::InputFormat;
use crate::worker::content_hash;

/// DFS directory holding uploaded job binaries.
pub const BINARY_DIR: &str = "/system/mapred/bin";

/// Exit status of `submit` (and `mapred status`) for a job that succeeded but skipped
/// more records than `mapred.skip.allowed` permits: its output is complete but for the
/// records listed in `OUT/_skipped/`. Distinct from 1 (the job failed, or never ran) and
/// 2 (a usage error, from the argument parser), so scripts can tell the three apart.
pub const SKIPPED_EXIT_CODE: u8 = 3;

const SUBMIT_HELP: &str = "\
Exit status:
  0  the job succeeded (skipping at most mapred.skip.allowed records, default 0)
  1  the job failed or was killed, or could not be submitted
  2  bad command line
  3  the job succeeded but skipped more records than mapred.skip.allowed: records that
     crashed every attempt and every isolated replay (mapred.skip.attempts, default 2;
     mapred.skip.replays, default 3) are listed in OUT/_skipped/, and stderr says
     'job JOB succeeded with N skipped records (listed in OUT/_skipped)'";

#[derive(Debug, Parser)]
#[command(version, about = "Runs MapReduce jobs on the cluster")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Submit a job and follow it to the end.
    #[command(after_help = SUBMIT_HELP)]
    Submit(SubmitArgs),
    /// List the jobs this binary carries.
    Jobs,
    /// List every framework option (`-D mapred.KEY=VALUE`) with its default.
    Options,
}

#[derive(Debug, clap::Args)]
struct SubmitArgs {
    /// Name of the job (see `jobs`).
    name: String,
    /// Input files or directories in the DFS.
    #[arg(long, num_args = 1..)]
    input: Vec<String>,
    /// Output directory in the DFS (must not exist).
    #[arg(long)]
    output: String,
    /// Number of reduce tasks (default: the job's).
    #[arg(long)]
    reducers: Option<u32>,
    /// Job option `key=value` (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    define: Vec<String>,
    /// Print the job id and return at once.
    #[arg(long)]
    detach: bool,
    /// Coordinator address.
    #[arg(long, env = "MAPRED_COORDINATOR")]
    coordinator: Option<String>,
    /// Chunk store master address, or a master group's members, comma-separated.
    #[arg(long, env = "DFS_MASTER")]
    master: Option<String>,
}

/// The program name for messages.
fn prog() -> String {
    std::env::args()
        .next()
        .and_then(|a| a.rsplit('/').next().map(str::to_owned))
        .unwrap_or_else(|| "job".to_owned())
}

/// The main function of a job binary.
pub fn main(registry: Registry) -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "__task") {
        proto::logging::init("warn");
        let Some(spec) = args.get(2) else {
            eprintln!("{}: error: __task needs a spec file", prog());
            return ExitCode::FAILURE;
        };
        return crate::attempt::run_process(&registry, &PathBuf::from(spec));
    }
    let cli = Cli::parse();
    proto::logging::init("warn");
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: error: cannot start a runtime: {e}", prog());
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_cli(registry, cli)) {
        Ok(code) => code,
        Err(e) => {
            let msg = e.to_string();
            eprintln!("{}: error: {}", prog(), msg.lines().next().unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}

async fn run_cli(registry: Registry, cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Jobs => {
            for j in registry.jobs() {
                println!("{:<16} {}", j.name, j.about);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Options => {
            for o in crate::config::OPTIONS {
                println!("{:<34} {:<10} {}", o.key, o.default, o.help);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Submit(args) => submit(registry, args).await,
    }
}

async fn submit(registry: Registry, args: SubmitArgs) -> Result<ExitCode> {
    let def = registry.find(&args.name)?;
    // Options first: a typo is reported before anything is contacted.
    let mut conf = def.defaults.clone();
    for d in &args.define {
        let (k, v) = JobConf::parse_assignment(d)?;
        conf.set(k, v);
    }
    conf.check_known()?;
    if let Some(check) = &def.validate {
        check(&conf)?;
    }
    let reducers = def.reduce_tasks.choose(&def.name, args.reducers)?;
    let coordinator = coordinator_addr(args.coordinator.clone())?;
    let master = args.master.clone().filter(|m| !m.is_empty()).ok_or_else(|| {
        Error::InvalidArgument("no master address: use --master or set DFS_MASTER".into())
    })?;
    // One identity for both services: the token in DFS_TOKEN_FILE and the user it
    // names (token mode), else DFS_USER or the OS user. The coordinator makes the job
    // the caller's.
    let creds =
        security::Credentials::from_env(None).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let jobs = JobClient::connect_as(&coordinator, &creds).await?;
    let dfs_cfg = dfs::ClientConfig {
        master_retry_deadline: Duration::from_secs(10),
        cwd: dfs::path::home_dir(&creds.user),
        user: creds.user.clone(),
        token: creds.token.clone(),
        ..dfs::ClientConfig::default()
    };
    let client = dfs::Client::connect(&master, dfs_cfg).await?;
    let input_format = match conf.get(keys::INPUT_FORMAT) {
        Some(f) => InputFormat::parse(f)?,
        None => def.input_format,
    };
    // Patterns (`/logs/2026-*`) expand as `dfs` expands them; one that matches nothing
    // is an error of its own rather than a missing path named `*`.
    let mut inputs: Vec<String> = Vec::with_capacity(args.input.len());
    for i in &args.input {
        let matched = client.glob(i.as_str()).await?;
        if matched.is_empty() {
            return Err(Error::NotFound(format!("input pattern {i} matches no path")));
        }
        inputs.extend(matched.into_iter().map(|p| p.to_string()));
    }
    if let Some(hook) = def.before_submit.clone() {
        let mut ctx = SubmitContext {
            client: client.clone(),
            rt: tokio::runtime::Handle::current(),
            inputs: inputs.clone(),
            reducers,
            conf,
        };
        ctx = tokio::task::spawn_blocking(move || hook(&mut ctx).map(|()| ctx))
            .await
            .map_err(|e| Error::Task(format!("submit hook panicked: {e}")))??;
        conf = ctx.conf;
    }
    let (binary_path, binary_hash) = upload_self(&client).await?;
    let user = client.config().user.clone();
    let req = pb::SubmitJobRequest {
        name: def.name.clone(),
        binary_path,
        binary_hash,
        inputs,
        output: client.resolve(args.output.as_str())?.to_string(),
        reducers,
        conf: conf.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        user,
        input_format: input_format.as_str().to_owned(),
    };
    let resp = jobs.submit(req).await?;
    if args.detach {
        println!("{}", resp.job_id);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{}: {} maps, {} reduces", resp.job_id, resp.maps, resp.reduces);
    let status = follow(&jobs, &resp.job_id).await?;
    let secs = (status.finish_ms - status.submit_ms) as f64 / 1000.0;
    println!("job {} {} in {secs:.2} s", status.job_id, status.state);
    println!("counters:");
    print!("{}", counters_text(&status));
    if let Some(summary) = skipped_summary(&status) {
        eprintln!("{}: job {} {summary}", prog(), status.job_id);
    }
    if status.state == "succeeded" {
        Ok(if skipped_too_many(&status) {
            ExitCode::from(SKIPPED_EXIT_CODE)
        } else {
            ExitCode::SUCCESS
        })
    } else {
        // One line saying what happened, then the detail: how each attempt of the failed
        // task ended and the end of the last one's stderr.
        let mut lines = status.error.lines();
        let first = lines.next().unwrap_or_default();
        eprintln!("{}: error: job {} {}: {first}", prog(), status.job_id, status.state);
        for l in lines {
            eprintln!("  {l}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Uploads the running executable to `/system/mapred/bin/<hash>` unless it is there.
async fn upload_self(client: &dfs::Client) -> Result<(String, String)> {
    let exe = std::env::current_exe().map_err(Error::io("cannot find the running executable"))?;
    let bytes = std::fs::read(&exe).map_err(Error::io(format!("cannot read {}", exe.display())))?;
    let hash = content_hash(&bytes);
    let path = format!("{BINARY_DIR}/{hash}");
    if let Some(st) = client.try_stat(path.as_str()).await?
        && st.length == bytes.len() as u64
        && !st.under_construction
    {
        return Ok((path, hash));
    }
    let tmp = format!("{BINARY_DIR}/.{hash}.{:08x}", rand::random::<u32>());
    let opts = dfs::CreateOptions { create_parents: true, ..dfs::CreateOptions::default() };
    let mut w = client.create(tmp.as_str(), opts).await?;
    w.write_all(&bytes).await?;
    w.close().await?;
    match client.rename(tmp.as_str(), path.as_str()).await {
        Ok(_) => info!(binary = %path, "job binary uploaded"),
        // Another submitter uploaded the same binary meanwhile.
        Err(_) if client.try_stat(path.as_str()).await?.is_some() => {
            let _ = client.delete(tmp.as_str(), false).await;
        }
        Err(e) => return Err(e.into()),
    }
    Ok((path, hash))
}

/// Polls the job until it ends, showing progress; returns its final status.
async fn follow(jobs: &JobClient, job_id: &str) -> Result<pb::JobStatus> {
    let tty = std::io::stderr().is_terminal();
    let bars = tty.then(|| {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{prefix:>7} [{bar:40}] {pos:>3}%")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let map = multi.add(ProgressBar::new(100).with_style(style.clone()).with_prefix("map"));
        let red = multi.add(ProgressBar::new(100).with_style(style).with_prefix("reduce"));
        (multi, map, red)
    });
    let mut last = (u32::MAX, u32::MAX);
    let started = Instant::now();
    let mut failures = 0;
    loop {
        let s = match jobs.status(job_id).await {
            Ok(s) => {
                failures = 0;
                s
            }
            Err(e) if e.is_retryable() && failures < 20 => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let now = (percent(s.maps_done, s.maps), percent(s.reduces_done, s.reduces));
        if now != last {
            match &bars {
                Some((_, m, r)) => {
                    m.set_position(u64::from(now.0));
                    r.set_position(u64::from(now.1));
                }
                None => eprintln!(
                    "{:>7.1} s  map {:>3}% reduce {:>3}%",
                    started.elapsed().as_secs_f64(),
                    now.0,
                    now.1
                ),
            }
            last = now;
        }
        if s.state != "running" {
            if let Some((_, m, r)) = &bars {
                m.finish();
                r.finish();
            }
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
