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
//!
//! Before anything is contacted, `submit` checks what the submitter controls: options
//! against the known ones, the job's own [`Job::validate`](crate::Job::validate), the
//! reducer count. It then expands `--input` patterns, lets the job's input formats cut
//! the splits (job code, so here and not in the coordinator: [`crate::input`]) and
//! submits them.
//!
//! A *chain* ([`Chain`](crate::job::Chain)) runs its jobs one after another from this
//! process: each stage but the last writes records to `OUTPUT.stage-N-JOB`, which the
//! next reads as records (no text to format and parse again); intermediate outputs are
//! removed when the chain ends, unless `--keep-intermediate`.

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
use crate::job::{JobDef, ReduceTasks, Registry, SubmitContext};
use crate::spec::Split;
use crate::worker::content_hash;

/// Largest submit request the coordinator takes (tonic's default message limit).
const MAX_SUBMIT_BYTES: usize = 4 << 20;

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
    /// Submit a job (or a chain of jobs) and follow it to the end.
    #[command(after_help = SUBMIT_HELP)]
    Submit(SubmitArgs),
    /// List the jobs and chains this binary carries.
    Jobs,
    /// List every framework option (`-D mapred.KEY=VALUE`) with its default.
    Options,
}

#[derive(Debug, clap::Args)]
struct SubmitArgs {
    /// Name of the job or chain (see `jobs`).
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
    /// Print the job id and return at once (not for chains).
    #[arg(long)]
    detach: bool,
    /// For a chain: keep the intermediate outputs (`OUTPUT.stage-N-JOB`) instead of
    /// removing them once the chain ends.
    #[arg(long)]
    keep_intermediate: bool,
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
            for c in registry.chains() {
                println!("{:<16} {} (chain: {})", c.name, c.about, c.stages.join(" -> "));
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

/// One job of a submission (a job alone is a chain of one), checked before anything is
/// contacted.
struct Stage<'r> {
    def: &'r JobDef,
    conf: JobConf,
    reducers: u32,
    /// The output directory (the final one, or an intermediate's).
    output: String,
}

/// Checks everything the submitter controls for every stage before anything runs, so a
/// typo in a later stage's option does not surface after the first stage's hours.
fn plan<'r>(registry: &'r Registry, args: &SubmitArgs) -> Result<Vec<Stage<'r>>> {
    let chain = registry.chain_named(&args.name);
    let names: Vec<&str> = match chain {
        Some(c) => c.stages.iter().map(String::as_str).collect(),
        None => vec![registry.find(&args.name)?.name.as_str()],
    };
    if chain.is_some() && args.detach {
        return Err(Error::InvalidArgument(format!(
            "{} is a chain: its stages run one after another from this process, so it cannot --detach",
            args.name
        )));
    }
    let last = names.len() - 1;
    let mut stages = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let def = registry.find(name).map_err(|e| match chain {
            Some(_) => Error::NotFound(format!("chain {}: {e}", args.name)),
            None => e,
        })?;
        // Options first: a typo is reported before anything is contacted.
        let mut conf = def.defaults.clone();
        for d in &args.define {
            let (k, v) = JobConf::parse_assignment(d)?;
            conf.set(k, v);
        }
        // Stages hand records to each other: no text to format and parse again.
        if i > 0 {
            conf.set(keys::INPUT_FORMAT, "records");
        }
        if i < last {
            conf.set(keys::OUTPUT_FORMAT, "records");
        }
        conf.check_known()?;
        def.input_format_of(&conf, "")?;
        if let Some(check) = &def.validate {
            check(&conf)?;
        }
        // In a chain, --reducers sets the stages whose count is only a default.
        let asked = match (chain, def.reduce_tasks) {
            (Some(_), ReduceTasks::Default(_)) | (None, _) => args.reducers,
            (Some(_), _) => None,
        };
        let reducers = def.reduce_tasks.choose(&def.name, asked)?;
        let output = if i == last {
            args.output.clone()
        } else {
            format!("{}.stage-{}-{}", args.output.trim_end_matches('/'), i + 1, def.name)
        };
        stages.push(Stage { def, conf, reducers, output });
    }
    Ok(stages)
}

async fn submit(registry: Registry, args: SubmitArgs) -> Result<ExitCode> {
    let stages = plan(&registry, &args)?;
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
    let binary = upload_self(&client).await?;
    let intermediates: Vec<String> = stages[..stages.len() - 1]
        .iter()
        .map(|s| client.resolve(s.output.as_str()).map(|p| p.to_string()))
        .collect::<std::result::Result<_, _>>()?;
    let mut code = ExitCode::SUCCESS;
    for (i, stage) in stages.into_iter().enumerate() {
        let ended = run_stage(&client, &jobs, &binary, stage, inputs.clone(), args.detach).await;
        match ended {
            Ok(StageEnd::Succeeded { skipped_too_many, output }) => {
                if skipped_too_many {
                    code = ExitCode::from(SKIPPED_EXIT_CODE);
                }
                inputs = vec![output];
            }
            Ok(StageEnd::Failed) => {
                code = ExitCode::FAILURE;
                remove_intermediates(&client, &intermediates[..i], args.keep_intermediate).await;
                return Ok(code);
            }
            Err(e) => {
                remove_intermediates(&client, &intermediates[..i], args.keep_intermediate).await;
                return Err(e);
            }
        }
    }
    remove_intermediates(&client, &intermediates, args.keep_intermediate).await;
    Ok(code)
}

/// Deletes a chain's intermediate outputs (unless kept), saying so when one cannot be.
async fn remove_intermediates(client: &dfs::Client, dirs: &[String], keep: bool) {
    for d in dirs {
        if keep {
            eprintln!("{}: intermediate output kept in {d}", prog());
        } else if let Err(e) = client.delete(d.as_str(), true).await
            && !e.is_not_found()
        {
            eprintln!("{}: warning: cannot remove intermediate output {d}: {e}", prog());
        }
    }
}

/// How a stage ended.
enum StageEnd {
    /// It succeeded (or was detached); its output directory, absolute.
    Succeeded { skipped_too_many: bool, output: String },
    /// It failed or was killed (already reported on stderr).
    Failed,
}

/// Submits one stage and follows it to its end, printing its outcome and counters.
async fn run_stage(
    client: &dfs::Client,
    jobs: &JobClient,
    (binary_path, binary_hash): &(String, String),
    stage: Stage<'_>,
    inputs: Vec<String>,
    detach: bool,
) -> Result<StageEnd> {
    let Stage { def, mut conf, reducers, output } = stage;
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
    // The job's input formats cut the splits here: they are job code, which the
    // coordinator does not run.
    let splits = def.splits(client, &inputs, &conf).await?;
    let input_format = def.input_format_of(&conf, "")?.name().to_owned();
    let output = client.resolve(output.as_str())?.to_string();
    let req = pb::SubmitJobRequest {
        name: def.name.clone(),
        binary_path: binary_path.clone(),
        binary_hash: binary_hash.clone(),
        inputs,
        output: output.clone(),
        reducers,
        conf: conf.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        user: client.config().user.clone(),
        input_format,
        splits: splits.iter().map(Split::to_proto).collect(),
    };
    // The coordinator takes requests of up to gRPC's default 4 MiB; past it the call
    // fails with a transport error that names no cause, so say it here.
    let len = prost::Message::encoded_len(&req);
    if len > MAX_SUBMIT_BYTES {
        return Err(Error::InvalidArgument(format!(
            "job {} has {} splits, a {:.1} MiB submit request: over the coordinator's {} MiB limit (use fewer, larger input files)",
            def.name,
            splits.len(),
            len as f64 / f64::from(1 << 20),
            MAX_SUBMIT_BYTES >> 20
        )));
    }
    let resp = jobs.submit(req).await?;
    if detach {
        println!("{}", resp.job_id);
        return Ok(StageEnd::Succeeded { skipped_too_many: false, output });
    }
    eprintln!("{}: {} maps, {} reduces", resp.job_id, resp.maps, resp.reduces);
    let status = follow(jobs, &resp.job_id).await?;
    let secs = (status.finish_ms - status.submit_ms) as f64 / 1000.0;
    println!("job {} {} in {secs:.2} s", status.job_id, status.state);
    println!("counters:");
    print!("{}", counters_text(&status));
    if let Some(summary) = skipped_summary(&status) {
        eprintln!("{}: job {} {summary}", prog(), status.job_id);
    }
    if status.state == "succeeded" {
        Ok(StageEnd::Succeeded { skipped_too_many: skipped_too_many(&status), output })
    } else {
        // One line saying what happened, then the detail: how each attempt of the failed
        // task ended and the end of the last one's stderr.
        let mut lines = status.error.lines();
        let first = lines.next().unwrap_or_default();
        eprintln!("{}: error: job {} {}: {first}", prog(), status.job_id, status.state);
        for l in lines {
            eprintln!("  {l}");
        }
        Ok(StageEnd::Failed)
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
