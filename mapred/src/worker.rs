//! The worker: registers with the coordinator, heartbeats for work, runs each task
//! attempt as a child process of the job binary, reports how it ended, and serves its
//! finished map outputs to reducers ([`crate::shuffle`]).
//!
//! Local layout under `--dir`:
//!
//! ```text
//! DIR/bin/<sha256>                       job binaries, fetched from the DFS once per hash
//! DIR/jobs/<job>/job-token               the job's shuffle secret (0600)
//! DIR/jobs/<job>/owner                   the job's user (token mode checks fetches by it)
//! DIR/jobs/<job>/<attempt>/spec.json     the attempt's TaskSpec (the child's argument)
//! DIR/jobs/<job>/<attempt>/dfs-token     token mode: the user token the attempt's DFS
//!                                        calls are made with (0600, DFS_TOKEN_FILE)
//! DIR/jobs/<job>/<attempt>/result.json   what the child reports (counters, output)
//! DIR/jobs/<job>/<attempt>/stderr        the child's stderr (quoted when it fails)
//! DIR/jobs/<job>/<attempt>/progress      index of the record being processed (mmap)
//! DIR/jobs/<job>/<attempt>/file.out      map output + file.index, served to reducers
//! ```
//!
//! A job's directory is deleted when the coordinator says the job is over.
//!
//! **Identity.** The worker calls the coordinator as a cluster service (a self-minted
//! service token in token mode). An attempt acts as the job's user, never as the worker:
//! its DFS and shuffle calls carry the user token the coordinator sent for it (token
//! mode) or name the user (simple mode), and the worker fetches the job's binary as that
//! user too. The worker's shuffle service takes, in token mode, a service token or a
//! token of the job's own user, besides the job-token proof of every fetch.
//!
//! Running attempts as child processes (rather than threads) is what lets a worker
//! survive user code that panics, aborts, segfaults or hangs: it sees the exit status,
//! the stderr and the progress file, and kills the process group on request. Children
//! also die with the worker (`PR_SET_PDEATHSIG`), so a killed worker leaves no orphans.
//! A heartbeat goes out every interval, and at once when a slot frees up, so a finished
//! attempt's slot is refilled without waiting.
//!
//! **Failures.** An attempt fails when its process exits non-zero or dies of a signal
//! (panic, abort, segfault), or when it makes no progress for its task timeout: the
//! worker watches the progress file (the record index, and a pulse the framework bumps
//! while it does I/O) and kills a hung attempt's process group. The report quotes the end
//! of the attempt's stderr and, for a crash or hang, the index of the record it was
//! processing, which is how the coordinator learns which records to skip. Each attempt is
//! reported under the worker id (incarnation) it was assigned with, so a worker that was
//! declared dead and registered again cannot have its late reports mistaken for new ones.

use std::collections::HashMap;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::mapred as pb;
use proto::mapred::coordinator_client::CoordinatorClient;
use proto::mapred::shuffle_server::ShuffleServer;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::client::CallerChannel;
use crate::config::WorkerConfig;
use crate::error::{Error, Result};
use crate::ids::{AttemptId, JobId};
use crate::job_token::{self, JobToken};
use crate::shuffle::{MAX_MESSAGE, ShuffleService, attempt_dir, job_dir};
use crate::spec::{TaskResult, TaskSpec};
use crate::task::{Progress, stall_watch};

/// Lines of a failed attempt's stderr quoted in its report.
const STDERR_TAIL: usize = 10;

struct State {
    cfg: WorkerConfig,
    shuffle_addr: String,
    coordinator: CoordinatorClient<CallerChannel>,
    /// Running attempts and the switch that kills each.
    running: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// Pokes the heartbeat loop when a slot frees up.
    slot_freed: Notify,
    dfs: tokio::sync::Mutex<Option<dfs::Client>>,
    /// One download per binary hash at a time.
    bin_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl State {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<()>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The worker's connection to the master, made on first use; each attempt's binary
    /// is fetched through it as the attempt's job user ([`dfs::Client::with_user`],
    /// [`dfs::Client::with_token`]).
    async fn dfs(&self) -> Result<dfs::Client> {
        let mut slot = self.dfs.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let cfg = dfs::ClientConfig {
            client_host: Some(self.cfg.host.clone()),
            ..dfs::ClientConfig::default()
        };
        let client = dfs::Client::connect(&self.cfg.master, cfg).await?;
        *slot = Some(client.clone());
        Ok(client)
    }
}

/// Hex SHA-256 of `bytes` (how job binaries are named).
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs a worker whose shuffle service listens on `listener`, until `shutdown`.
///
/// # Errors
/// [`Error::InvalidArgument`] for bad settings, [`Error::Io`] if its directory cannot be
/// created or the service fails.
pub async fn run(
    cfg: WorkerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    cfg.validate()?;
    for d in [cfg.dir.join("bin"), cfg.dir.join("jobs")] {
        std::fs::create_dir_all(&d).map_err(Error::io(format!("cannot create {}", d.display())))?;
    }
    let shuffle_addr =
        listener.local_addr().map_err(Error::io("cannot read the listening address"))?.to_string();
    let endpoint = security::tls::endpoint(&cfg.coordinator)
        .map_err(|e| Error::InvalidArgument(format!("coordinator: {e}")))?
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true);
    let attach = cfg.auth.attach("worker").map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let coordinator = CoordinatorClient::with_interceptor(endpoint.connect_lazy(), attach);
    let state = Arc::new(State {
        cfg: cfg.clone(),
        shuffle_addr: shuffle_addr.clone(),
        coordinator,
        running: Mutex::new(HashMap::new()),
        slot_freed: Notify::new(),
        dfs: tokio::sync::Mutex::new(None),
        bin_locks: Mutex::new(HashMap::new()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let beats = tokio::spawn(heartbeat_loop(state.clone(), stop_rx));
    info!(shuffle = %shuffle_addr, host = %cfg.host, slots = cfg.slots, auth = %cfg.auth.mode, "worker listening");
    // Token mode: every fetch carries a valid token; whose it may be is checked per job.
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = cfg.tls.clone() {
        server = server
            .tls_config(tls)
            .map_err(|e| Error::InvalidArgument(format!("TLS on the shuffle port: {e}")))?;
    }
    let served = server
        .add_service(tonic::service::interceptor::InterceptedService::new(
            ShuffleServer::new(ShuffleService::new(&cfg.dir))
                .max_encoding_message_size(MAX_MESSAGE)
                .max_decoding_message_size(MAX_MESSAGE),
            cfg.auth.interceptor(),
        ))
        .serve_with_incoming_shutdown(
            security::connections::guard(listener, cfg.connections, "worker"),
            shutdown,
        )
        .await;
    let _ = stop_tx.send(true);
    let _ = beats.await;
    served.map_err(|e| Error::Io {
        what: format!("serving on {shuffle_addr}"),
        source: std::io::Error::other(e.to_string()),
    })
}

async fn heartbeat_loop(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let mut worker_id: Option<String> = None;
    let mut attempts = JoinSet::new();
    let mut interval = state.cfg.heartbeat;
    let mut now = true;
    loop {
        if !now {
            tokio::select! {
                _ = stop.changed() => break,
                () = tokio::time::sleep(interval) => {}
                () = state.slot_freed.notified() => {}
            }
        }
        now = false;
        while attempts.try_join_next().is_some() {}
        let mut coord = state.coordinator.clone();
        let id = match &worker_id {
            Some(id) => id.clone(),
            None => {
                let req = pb::RegisterWorkerRequest {
                    host: state.cfg.host.clone(),
                    rack: state.cfg.rack.clone(),
                    slots: state.cfg.slots,
                    shuffle_addr: state.shuffle_addr.clone(),
                };
                match coord.register_worker(req).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        info!(worker = %r.worker_id, "registered with the coordinator");
                        if r.heartbeat_ms > 0 {
                            interval =
                                Duration::from_millis(r.heartbeat_ms).min(state.cfg.heartbeat);
                        }
                        worker_id = Some(r.worker_id.clone());
                        r.worker_id
                    }
                    Err(s) => {
                        warn!(coordinator = %state.cfg.coordinator, error = %s.message(), "cannot register");
                        continue;
                    }
                }
            }
        };
        let running: Vec<String> = state.running().keys().cloned().collect();
        let free = state.cfg.slots.saturating_sub(running.len() as u32);
        let req = pb::HeartbeatRequest { worker_id: id, free_slots: free, running };
        let reply = match coord.heartbeat(req).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                debug!(error = %s.message(), "heartbeat failed");
                continue;
            }
        };
        if reply.reregister {
            worker_id = None;
            now = true;
            continue;
        }
        for a in &reply.kill {
            if let Some(tx) = state.running().remove(a) {
                info!(attempt = %a, "killing attempt");
                let _ = tx.send(());
            }
        }
        for job in reply.finished_jobs {
            let Ok(job) = JobId::parse(&job) else {
                warn!(job = %job.escape_debug(), "the coordinator named a finished job by a malformed id: ignored");
                continue;
            };
            let busy =
                state.running().keys().any(|a| AttemptId::parse(a).is_ok_and(|a| a.job == job));
            if !busy {
                let dir = job_dir(&state.cfg.dir, job);
                tokio::task::spawn_blocking(move || {
                    let _ = std::fs::remove_dir_all(dir);
                });
            }
        }
        for t in reply.tasks {
            let (tx, rx) = oneshot::channel();
            state.running().insert(t.attempt_id.clone(), tx);
            let me = worker_id.clone().unwrap_or_default();
            attempts.spawn(run_attempt(state.clone(), me, t.attempt_id, t.spec_json, rx));
        }
    }
    for (_, tx) in state.running().drain() {
        let _ = tx.send(());
    }
    while attempts.join_next().await.is_some() {}
}

/// Runs one attempt to its end and reports it as worker `worker_id`.
async fn run_attempt(
    state: Arc<State>,
    worker_id: String,
    attempt_id: String,
    spec_json: String,
    kill: oneshot::Receiver<()>,
) {
    let none = || (Default::default(), None, None);
    let ended = execute(state.clone(), &worker_id, attempt_id.clone(), spec_json, kill).await;
    let (outcome, (counters, output, skipped), error, last_record, fatal) = match ended {
        Ok(Ended::Succeeded(r)) => (
            pb::AttemptOutcome::Succeeded,
            (r.counters, r.output_path, r.skipped_path),
            String::new(),
            -1,
            false,
        ),
        Ok(Ended::Failed { error, last, fatal }) => {
            (pb::AttemptOutcome::Failed, none(), error, last, fatal)
        }
        Ok(Ended::Killed) => (pb::AttemptOutcome::Killed, none(), "killed".into(), -1, false),
        Err(e) => (pb::AttemptOutcome::Failed, none(), e.to_string(), -1, false),
    };
    let first = error.lines().next().unwrap_or_default();
    info!(attempt = %attempt_id, ?outcome, error = %first, last_record, "attempt ended");
    let req = pb::ReportAttemptRequest {
        worker_id,
        attempt_id: attempt_id.clone(),
        outcome: outcome as i32,
        counters: counters.to_proto(),
        error,
        last_record,
        output_path: output.unwrap_or_default(),
        skipped_path: skipped.unwrap_or_default(),
        fatal,
    };
    for i in 0..10u32 {
        match state.coordinator.clone().report_attempt(req.clone()).await {
            Ok(_) => break,
            Err(s) => {
                warn!(attempt = %attempt_id, error = %s.message(), "cannot report the attempt, retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(i + 1))).await;
            }
        }
    }
    state.running().remove(&attempt_id);
    state.slot_freed.notify_one();
}

enum Ended {
    Succeeded(TaskResult),
    Failed {
        /// What to report.
        error: String,
        /// The record a crash or hang was on (-1: none or unknown).
        last: i64,
        /// The job's code marked the error deterministic.
        fatal: bool,
    },
    Killed,
}

async fn execute(
    state: Arc<State>,
    worker_id: &str,
    attempt_id: String,
    spec_json: String,
    mut kill: oneshot::Receiver<()>,
) -> Result<Ended> {
    let attempt_id = attempt_id.as_str();
    let mut spec: TaskSpec = serde_json::from_str(&spec_json)
        .map_err(|e| Error::Decode(format!("task spec of {attempt_id}: {e}")))?;
    let attempt = AttemptId::parse(attempt_id)?;
    if spec.attempt_id != attempt_id || JobId::parse(&spec.job_id)? != attempt.job {
        return Err(Error::Protocol(format!("task spec does not match attempt {attempt_id}")));
    }
    // The job's token and user go beside its map outputs, for the shuffle to check
    // fetches.
    let job_dir = job_dir(&state.cfg.dir, attempt.job);
    JobToken::from_hex(&spec.job_token)?.store(&job_dir)?;
    security::check_name(&spec.user)
        .map_err(|e| Error::Protocol(format!("task spec of {attempt_id}: user: {e}")))?;
    job_token::store_owner(&job_dir, &spec.user)?;
    let dir = attempt_dir(&state.cfg.dir, attempt);
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("cannot create {}", dir.display())))?;
    spec.host = state.cfg.host.clone();
    spec.worker = worker_id.to_owned();
    spec.work_dir = dir.clone();
    // The user token leaves the spec for a file of its own that only the worker's user
    // may read; the attempt finds it through DFS_TOKEN_FILE.
    let dfs_token = std::mem::take(&mut spec.dfs_token);
    let token_file = dir.join("dfs-token");
    if state.cfg.auth.secret.is_some() {
        if dfs_token.is_empty() {
            return Err(Error::Protocol(format!(
                "the coordinator sent no user token for {attempt_id}: it must run with --auth token too"
            )));
        }
        security::token::write_token_file(&token_file, &dfs_token)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    }
    let spec_path = dir.join("spec.json");
    let text = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Encode(format!("spec: {e}")))?;
    write_private(&spec_path, &text)?;
    // The job's binary is fetched as its user: what the user may not read is not run.
    let dfs_client = {
        let base = state.dfs().await?;
        if dfs_token.is_empty() {
            base.with_user(&spec.user)?
        } else {
            base.with_token(&dfs_token)?
        }
    };
    // On a blocking thread: the download future is not provably `Send` to the compiler
    // (a higher-ranked lifetime limitation with the DFS client's generic futures), and
    // fetching a binary is rare and slow anyway.
    let binary = {
        let (st, path, hash) = (state.clone(), spec.binary_path.clone(), spec.binary_hash.clone());
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || rt.block_on(ensure_binary(st, dfs_client, path, hash)))
            .await
            .map_err(|e| Error::Protocol(format!("fetching the job binary panicked: {e}")))??
    };
    let stdout = create_in(&dir, "stdout")?;
    let stderr = create_in(&dir, "stderr")?;
    let mut cmd = tokio::process::Command::new(&binary);
    cmd.arg("__task")
        .arg(&spec_path)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .env("NO_COLOR", "1")
        // The attempt's DFS calls act as the job's user: named (simple mode), or proven
        // by the token in its file (token mode). A token of the worker's own environment
        // is never passed on.
        .env("DFS_USER", &spec.user)
        .env_remove(security::TOKEN_FILE_ENV)
        .kill_on_drop(true)
        .process_group(0);
    // SAFETY: runs in the forked child before exec and only makes the prctl system call,
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if state.cfg.auth.secret.is_some() {
        cmd.env(security::TOKEN_FILE_ENV, &token_file);
    }
    // The attempt talks to the cluster as the worker does: over TLS if the worker does.
    match security::tls::ca_path() {
        Some(ca) => cmd.env(security::tls::CA_ENV, ca),
        None => cmd.env_remove(security::tls::CA_ENV),
    };
    let mut child = cmd.spawn().map_err(Error::io(format!("cannot start {}", binary.display())))?;
    let timeout = Duration::from_millis(spec.timeout_ms);
    let progress = spec.progress_file();
    let status = tokio::select! {
        s = child.wait() => s.map_err(Error::io(format!("cannot wait for {attempt_id}")))?,
        _ = &mut kill => {
            kill_group(&mut child).await;
            return Ok(Ended::Killed);
        }
        () = stall_watch(&progress, timeout), if !timeout.is_zero() => {
            kill_group(&mut child).await;
            let last = Progress::read(&progress);
            let at = last.map_or_else(|| "outside any record".to_owned(), |r| format!("at record {r}"));
            warn!(attempt = %attempt_id, %at, "attempt made no progress: killed");
            return Ok(Ended::Failed {
                error: format!(
                    "attempt {attempt_id} made no progress for {:.1} s ({at}) and was killed{}",
                    timeout.as_secs_f64(),
                    stderr_tail(&dir)
                ),
                last: last.map_or(-1, |v| v as i64),
                fatal: false,
            });
        }
    };
    let result = TaskResult::load(&spec.result_file()).ok();
    match result {
        Some(r) if status.success() && r.error.is_none() => Ok(Ended::Succeeded(r)),
        // The attempt's own error: no record is to blame for what the code chose to report.
        Some(TaskResult { error: Some(e), fatal, .. }) => Ok(Ended::Failed {
            error: format!("attempt {attempt_id} failed: {e}{}", stderr_tail(&dir)),
            last: -1,
            fatal,
        }),
        _ => {
            // A crash: the progress file names the record that killed it. A panic's own
            // line (the attempt's panic hook wrote it) says more than a stderr tail that
            // `RUST_BACKTRACE` may have filled with frames.
            let last = Progress::read(&progress).map_or(-1, |v| v as i64);
            let error = match std::fs::read_to_string(spec.panic_file()) {
                Ok(panic) if !panic.is_empty() => format!("attempt {attempt_id} {status}: {panic}"),
                _ => format!("attempt {attempt_id} {status}{}", stderr_tail(&dir)),
            };
            Ok(Ended::Failed { error, last, fatal: false })
        }
    }
}

/// `; stderr ends with:` and the last lines of the attempt's stderr, or nothing if it
/// wrote none.
fn stderr_tail(dir: &Path) -> String {
    let tail = tail_lines(&dir.join("stderr"), STDERR_TAIL);
    if tail.trim().is_empty() { String::new() } else { format!("; stderr ends with:\n{tail}") }
}

/// Kills an attempt's whole process group (it may have started processes of its own)
/// and reaps it.
async fn kill_group(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on a process group we created.
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    }
    let _ = child.kill().await;
}

/// Creates the file `name` in `dir` (a function, not a closure: a closure taking `&str`
/// held across an await makes the future's `Send` bound fail to prove).
fn create_in(dir: &Path, name: &str) -> Result<std::fs::File> {
    std::fs::File::create(dir.join(name))
        .map_err(Error::io(format!("cannot create {name} in {}", dir.display())))
}

/// The local path of the job binary with content hash `hash`, fetching it from the DFS
/// at `path` on first use.
async fn ensure_binary(
    state: Arc<State>,
    client: dfs::Client,
    path: String,
    hash: String,
) -> Result<PathBuf> {
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidArgument(format!("bad binary hash {hash:?}")));
    }
    let local = state.cfg.dir.join("bin").join(&hash);
    if local.is_file() {
        return Ok(local);
    }
    let lock = state
        .bin_locks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(hash.clone())
        .or_default()
        .clone();
    let _guard = lock.lock().await;
    if local.is_file() {
        return Ok(local);
    }
    let bytes = client.read_all(path.clone()).await?;
    let got = content_hash(&bytes);
    if got != hash {
        return Err(Error::Corrupt(format!("job binary {path} has hash {got}, expected {hash}")));
    }
    write_executable(&local, &bytes)?;
    info!(binary = %path, "job binary cached");
    Ok(local)
}

/// Writes a file only the worker's user may read (a spec names the job's shuffle
/// secret).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let what = || format!("cannot write {}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(what()))?;
    f.write_all(bytes).map_err(Error::io(what()))
}

fn write_executable(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(Error::io(format!("cannot write {}", tmp.display())))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(Error::io(format!("cannot chmod {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(Error::io(format!("cannot write {}", path.display())))
}

/// The last `n` lines of a text file (empty if unreadable).
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(64 << 10);
    let text = String::from_utf8_lossy(&text[start..]);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_hex_sha256() {
        assert_eq!(
            content_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn executables_are_written_with_the_x_bit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin");
        write_executable(&p, b"#!/bin/sh\n").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111);
    }
}
