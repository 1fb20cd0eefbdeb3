//! The child process of one attempt, `JOBBIN __task SPEC_FILE`: reads its
//! [`TaskSpec`], finds the job in the binary's [`Registry`], connects to the DFS, runs
//! the map or reduce ([`crate::task`]) and writes the [`TaskResult`] the worker reads.
//! Kept apart from [`crate::task`] so that the task code does not depend on the job
//! definitions that depend on it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use tracing::info;

use crate::api::TaskInfo;
use crate::counters::Counters;
use crate::error::{Error, Result};
use crate::job::Registry;
use crate::progress::Progress;
use crate::spec::{TaskKind, TaskResult, TaskSpec};
use crate::task::TaskEnv;

/// `JOBBIN __task SPEC_FILE`: runs one attempt and returns the process exit code.
pub fn run_process(registry: &Registry, spec_path: &Path) -> ExitCode {
    let spec: TaskSpec = match std::fs::read(spec_path)
        .map_err(Error::io(format!("cannot read {}", spec_path.display())))
        .and_then(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| Error::Decode(format!("{}: {e}", spec_path.display())))
        }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("task: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result_file = spec.result_file();
    capture_panics(spec.panic_file());
    let (counters, skipped_path, outcome) = run_spec(registry, spec);
    let result = match outcome {
        Ok(output_path) => {
            TaskResult { counters, error: None, output_path, skipped_path, fatal: false }
        }
        // Not printed: the error travels in the result, and the worker's report quotes
        // it once (printing it too made every report say it twice).
        Err(e) => TaskResult {
            counters,
            fatal: e.is_fatal(),
            error: Some(e.to_string()),
            ..TaskResult::default()
        },
    };
    if let Err(e) = result.save(&result_file) {
        eprintln!("task: error: {e}");
        if let Some(first) = &result.error {
            eprintln!("task: error: {first}");
        }
        return ExitCode::FAILURE;
    }
    if result.error.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// Installs a panic hook that writes the panic's message and location to `path` before
/// the default hook prints it: the worker reports that line, which the stderr tail
/// loses when `RUST_BACKTRACE` fills it with frames. The first panic wins (a panic while
/// unwinding from another must not hide the cause).
fn capture_panics(path: PathBuf) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = match (
            info.payload().downcast_ref::<&str>(),
            info.payload().downcast_ref::<String>(),
        ) {
            (Some(s), _) => (*s).to_owned(),
            (_, Some(s)) => s.clone(),
            _ => "Box<dyn Any>".to_owned(),
        };
        let at = info.location().map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()));
        let line = format!("panicked{}: {msg}", at.unwrap_or_default());
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        default(info);
    }));
}

type Ran = (Counters, Option<String>, Result<Option<String>>);

fn run_spec(registry: &Registry, spec: TaskSpec) -> Ran {
    let fail = |e| (Counters::new(), None, Err(e));
    // Alive from the start: starting a runtime and connecting take a moment.
    let progress = Arc::new(Progress::create(&spec.progress_file()));
    let pulse = progress.pulse_while();
    let kind = match spec.task_kind() {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let Some(def) = registry.get(&spec.job_name) else {
        return fail(Error::NotFound(format!("job {} is not in this binary", spec.job_name)));
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::io("cannot start the task's runtime"))
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let defaults = dfs::ClientConfig::default();
    let user = if spec.user.is_empty() { defaults.user.clone() } else { spec.user.clone() };
    let cfg = dfs::ClientConfig {
        cwd: dfs::path::home_dir(&user),
        user,
        client_host: (!spec.host.is_empty()).then(|| spec.host.clone()),
        read_range: 4 << 20,
        read_prefetch: 4,
        ..defaults
    };
    let client = match rt.block_on(dfs::Client::connect(&spec.master, cfg)) {
        Ok(c) => c,
        Err(e) => return fail(e.into()),
    };
    let info = TaskInfo {
        job_id: spec.job_id.clone(),
        attempt_id: spec.attempt_id.clone(),
        index: spec.index,
        reducers: spec.reducers,
        input_path: spec.split.as_ref().map(|s| s.path.clone()).filter(|p| !p.is_empty()),
        host: spec.host.clone(),
        worker: spec.worker.clone(),
    };
    info!(attempt = %spec.attempt_id, job = %spec.job_name, "attempt starting");
    drop(pulse);
    let mut env =
        TaskEnv { spec, rt, client, counters: Counters::new(), info, progress, skipped: None };
    let outcome = match kind {
        TaskKind::Map => (def.map)(&mut env),
        TaskKind::Reduce => match &def.reduce {
            Some(r) => r(&mut env),
            None => Err(Error::InvalidArgument(format!(
                "job {} has no reducer but was given a reduce task",
                env.spec.job_name
            ))),
        },
    };
    (env.counters, env.skipped, outcome)
}
