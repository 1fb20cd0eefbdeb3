//! The `Coordinator` gRPC service: translates requests into [`Core`] events, and carries
//! out the core's [`Action`]s (commit renames, `_SUCCESS`, cleaning `_temporary`) on the
//! chunk store in background tasks whose outcomes go back to the core.
//!
//! Every call is authorized here first ([`super::access`]): jobs belong to the caller
//! that submitted them, their details and killing are for their owner and the admins,
//! workers' calls need a service token in token mode. The coordinator's DFS calls made
//! for a job (making, committing and cleaning its output) act as the
//! job's user: named (simple mode) or with a user token the coordinator mints under the
//! cluster secret (token mode), and each task attempt is sent such a token too.
//!
//! Submission is where the coordinator itself does I/O before touching the core: it
//! refuses an existing output directory (as Hadoop does), checks the splits the job
//! binary cut (input formats are job code, run by the submitter: [`crate::input`]), and
//! creates `OUT/_temporary`. Submissions and job ends are
//! recorded in the [`Journal`] first; at start-up, jobs the journal says were running are
//! reported failed (the coordinator restarted under them) and their temporaries cleaned.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::mapred as pb;
use proto::mapred::coordinator_server::{Coordinator, CoordinatorServer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::access::{JobAccess, JobOp, require_service_or_owner};
use super::core::{Action, Core, CoreConfig, Job, JobState, NewJob, Outcome};
use super::journal::{Entry, Journal};
use crate::config::{CoordinatorConfig, JobConf};
use crate::counters::Counters;
use crate::error::{Error, Result};
use crate::job_token::JobToken;
use crate::spec::{MAX_SPLITS, Split};
use security::token::{Claims, Kind};

pub use proto::clock::wall_ms as now_ms;

/// Longest a job's attempts may act as its user in token mode, counted from its
/// submission: the tokens they are sent expire then (Hadoop's delegation tokens have the
/// same 7-day maximum lifetime). A job still running after that fails its DFS calls.
pub const MAX_JOB_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Lifetime of a token the coordinator mints for one of its own calls on a job's behalf
/// (a commit, `_SUCCESS`, a clean-up): minted afresh for each, never sent anywhere.
const OWN_CALL_TOKEN_LIFETIME: Duration = Duration::from_secs(600);

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

struct Shared {
    core: Mutex<Core>,
    client: dfs::Client,
    cfg: CoordinatorConfig,
    journal: Journal,
    access: JobAccess,
}

impl Shared {
    fn core(&self) -> std::sync::MutexGuard<'_, Core> {
        // A panic while holding the lock is a bug in the core; its state is still the
        // best information there is, so keep serving it.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A DFS client acting as `user` (in `groups`, token mode), so that a job's output
    /// is made, committed and cleaned up as its submitter, who owns it: naming the user
    /// (simple mode) or with a short-lived token minted for it (token mode). The
    /// coordinator's own client for no user.
    fn client_as(&self, user: &str, groups: &[String]) -> Result<dfs::Client> {
        if user.is_empty() {
            return Ok(self.client.clone());
        }
        match &self.cfg.auth.secret {
            Some(secret) => {
                let life = millis(OWN_CALL_TOKEN_LIFETIME);
                let token = secret.issue(Kind::User, user, groups, now_ms(), life, life);
                Ok(self.client.with_token(&token)?)
            }
            None => Ok(self.client.with_user(user)?),
        }
    }

    /// The DFS client of job `job_id`'s user.
    fn job_client(&self, job_id: &str) -> Result<dfs::Client> {
        let (user, groups) = self
            .core()
            .job(job_id)
            .map(|j| (j.def.user.clone(), j.def.groups.clone()))
            .unwrap_or_default();
        self.client_as(&user, &groups)
    }

    /// The token an attempt of `job` makes its DFS calls with (token mode; empty in
    /// simple mode): the job's user in the submitter's groups, expiring
    /// [`MAX_JOB_TOKEN_LIFETIME`] after the job was submitted.
    fn attempt_token(&self, job: &Job, now: i64) -> String {
        let Some(secret) = &self.cfg.auth.secret else { return String::new() };
        let end = job.submit_ms.saturating_add(millis(MAX_JOB_TOKEN_LIFETIME));
        let life = end.saturating_sub(now).max(1);
        secret.issue(Kind::User, &job.def.user, &job.def.groups, now, life, life)
    }

    /// The job's owner, if the job is known.
    fn owner(&self, job_id: &str) -> Option<String> {
        self.core().job(job_id).map(|j| j.def.user.clone())
    }
}

/// Carries out `actions` in the background, feeding their outcomes back to the core.
fn execute(shared: &Arc<Shared>, actions: Vec<Action>) {
    record_ends(shared);
    for action in actions {
        let shared = shared.clone();
        tokio::spawn(async move {
            match action {
                Action::Commit { attempt_id, renames } => {
                    let (user, groups) = shared
                        .core()
                        .attempt(&attempt_id)
                        .map(|(j, _, _)| (j.def.user.clone(), j.def.groups.clone()))
                        .unwrap_or_default();
                    let mut res = Ok(());
                    match shared.client_as(&user, &groups) {
                        Ok(client) => {
                            for (from, to) in &renames {
                                res = commit_one(&client, from, to).await;
                                if res.is_err() {
                                    break;
                                }
                            }
                        }
                        Err(e) => res = Err(e),
                    }
                    if let Err(e) = &res {
                        warn!(attempt = %attempt_id, error = %e, "commit failed");
                    }
                    let more = shared.core().commit_finished(
                        &attempt_id,
                        res.map_err(|e| e.to_string()),
                        now_ms(),
                    );
                    execute(&shared, more);
                }
                Action::FinishJob { job_id, output } => {
                    let res = match shared.job_client(&job_id) {
                        Ok(client) => finish_output(&client, &output).await,
                        Err(e) => Err(e),
                    };
                    match &res {
                        Ok(()) => info!(job = %job_id, "job succeeded"),
                        Err(e) => warn!(job = %job_id, error = %e, "cannot finish the job"),
                    }
                    let more = shared.core().job_finished(
                        &job_id,
                        res.map_err(|e| e.to_string()),
                        now_ms(),
                    );
                    execute(&shared, more);
                }
                Action::AbortJob { job_id, output } => {
                    let temp = format!("{}/_temporary", output.trim_end_matches('/'));
                    let client =
                        shared.job_client(&job_id).unwrap_or_else(|_| shared.client.clone());
                    if let Err(e) = client.delete(temp.as_str(), true).await
                        && !e.is_not_found()
                    {
                        warn!(job = %job_id, error = %e, "cannot clean up after the job");
                    }
                    info!(job = %job_id, "job ended without success; temporaries cleaned");
                }
            }
        });
    }
}

/// Makes the job binaries' directory writable by every submitter, sticky so that none can
/// remove another's upload (Hadoop's staging root is made so too). Jobs are submitted as
/// their users, who can't create it under `/`. Best effort: without it only the users
/// who may write there can submit.
async fn prepare_binary_dir(client: &dfs::Client) {
    let dir = crate::runtime::BINARY_DIR;
    // Looked at first: a restarted coordinator changes nothing (and waits for no safe
    // mode) when the directory is as it should be.
    let res = async {
        let status = match client.try_stat(dir).await? {
            Some(s) => s,
            None => {
                client.mkdir(dir, true).await?;
                client.stat(dir).await?
            }
        };
        if status.permission != 0o1777 {
            client.set_permission(dir, 0o1777).await?;
        }
        Ok::<(), dfs::Error>(())
    }
    .await;
    if let Err(e) = res {
        warn!(dir, error = %e, "cannot open the job binary directory to every user: only those who may write there can submit jobs");
    }
}

/// Renames `from` to `to`, replacing `to` (an earlier commit of the same task whose
/// output was lost with its worker) and creating its directory.
async fn commit_one(client: &dfs::Client, from: &str, to: &str) -> Result<()> {
    if let Some((dir, _)) = to.rsplit_once('/')
        && !dir.is_empty()
    {
        client.mkdir(dir, true).await?;
    }
    match client.delete(to, false).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    client.rename(from, to).await?;
    Ok(())
}

/// Records every job that ended since the last call in the journal and the history
/// directory (called after each batch of core events).
fn record_ends(shared: &Shared) {
    let ended: Vec<(String, pb::JobStatus)> = {
        let mut core = shared.core();
        core.take_ended()
            .into_iter()
            .filter_map(|id| core.job(&id).map(|j| (id, job_status(j, false))))
            .collect()
    };
    for (id, status) in ended {
        let entry = Entry::End {
            job_id: id.clone(),
            state: status.state.clone(),
            error: status.error.clone(),
            finish_ms: status.finish_ms,
        };
        if let Err(e) = shared.journal.append(&entry) {
            warn!(job = %id, error = %e, "cannot record the end of the job");
        }
        save_history(shared, &status);
    }
}

/// Deletes `OUT/_temporary` and writes `OUT/_SUCCESS`, last.
async fn finish_output(client: &dfs::Client, output: &str) -> Result<()> {
    let out = output.trim_end_matches('/');
    match client.delete(format!("{out}/_temporary").as_str(), true).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    client
        .put_bytes(format!("{out}/_SUCCESS").as_str(), b"", dfs::CreateOptions::default())
        .await?;
    Ok(())
}

/// Writes a finished job's status to `DIR/history/<job>.json` (best effort).
fn save_history(shared: &Shared, status: &pb::JobStatus) {
    let job_id = status.job_id.as_str();
    let dir = shared.cfg.dir.join("history");
    let summary = serde_json::json!({
        "job_id": status.job_id, "name": status.name, "state": status.state,
        "submit_ms": status.submit_ms, "finish_ms": status.finish_ms, "error": status.error,
        "output": status.output, "maps": status.maps, "reduces": status.reduces,
        "counters": status.counters.iter().map(|c| (format!("{}.{}", c.group, c.name), c.value)).collect::<std::collections::BTreeMap<_, _>>(),
    });
    let res = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(format!("{job_id}.json")), summary.to_string()));
    if let Err(e) = res {
        warn!(job = job_id, error = %e, "cannot write the job history");
    }
}

/// A job's status as the API shows it; with `tasks`, every task and attempt too.
pub fn job_status(j: &Job, tasks: bool) -> pb::JobStatus {
    let task_list = if tasks {
        j.maps
            .iter()
            .chain(&j.reduces)
            .map(|t| pb::TaskStatus {
                task_id: t.id(&j.id),
                state: t.state.as_str().to_owned(),
                attempts: t
                    .attempts
                    .iter()
                    .map(|a| pb::AttemptStatus {
                        attempt_id: a.id.clone(),
                        worker: a.worker.clone(),
                        state: a.state.as_str().to_owned(),
                        start_ms: a.start_ms,
                        end_ms: a.end_ms,
                        locality: a.locality.as_str().to_owned(),
                        error: a.error.clone(),
                        replay_of: a.replay,
                    })
                    .collect(),
            })
            .collect()
    } else {
        Vec::new()
    };
    pb::JobStatus {
        job_id: j.id.clone(),
        name: j.def.name.clone(),
        state: j.state.as_str().to_owned(),
        maps: j.maps.len() as u32,
        maps_done: j.maps_done() as u32,
        reduces: j.reduces.len() as u32,
        reduces_done: j.reduces_done() as u32,
        submit_ms: j.submit_ms,
        finish_ms: j.finish_ms,
        error: j.error.clone(),
        output: j.def.output.clone(),
        counters: j.all_counters().to_proto(),
        tasks: task_list,
        user: j.def.user.clone(),
        skipped_records: j.skipped_records(),
        skip_allowed: j.opts.skip_allowed,
    }
}

/// A job's summary as shown to those who may not see its details (anyone but its owner
/// and the admins): id, name, user, state, progress and times, as Hadoop's job list
/// shows every job; its counters, error and output path are left out.
fn summary_line(s: pb::JobStatus) -> pb::JobStatus {
    pb::JobStatus {
        counters: Vec::new(),
        tasks: Vec::new(),
        error: String::new(),
        output: String::new(),
        skipped_records: 0,
        skip_allowed: 0,
        ..s
    }
}

/// The gRPC service.
#[derive(Clone)]
pub struct CoordinatorService {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CoordinatorService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorService").finish_non_exhaustive()
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register_worker(
        &self,
        req: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        security::require_service(&req)?;
        let r = req.into_inner();
        if r.host.is_empty() || r.shuffle_addr.is_empty() || r.slots == 0 {
            return Err(Error::InvalidArgument(
                "a worker needs a host, slots and a shuffle address".into(),
            )
            .into());
        }
        let (id, actions) = self.shared.core().register_worker(
            &r.host,
            &r.rack,
            r.slots,
            &r.shuffle_addr,
            now_ms(),
        );
        info!(worker = %id, shuffle = %r.shuffle_addr, slots = r.slots, "worker registered");
        execute(&self.shared, actions);
        Ok(Response::new(pb::RegisterWorkerResponse {
            worker_id: id,
            heartbeat_ms: self.shared.cfg.heartbeat.as_millis() as u64,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        // Assignments carry the job token and a user token of each job: services only.
        security::require_service(&req)?;
        let r = req.into_inner();
        let now = now_ms();
        let (reply, actions) = {
            let mut core = self.shared.core();
            let (mut reply, actions) = core.heartbeat(&r.worker_id, r.free_slots, &r.running, now);
            for a in &mut reply.tasks {
                if let Some(job) = core.job(&a.spec.job_id) {
                    a.spec.dfs_token = self.shared.attempt_token(job, now);
                }
            }
            (reply, actions)
        };
        execute(&self.shared, actions);
        let mut tasks = Vec::with_capacity(reply.tasks.len());
        for a in reply.tasks {
            let spec_json = serde_json::to_string(&a.spec)
                .map_err(|e| Status::internal(format!("cannot encode a task spec: {e}")))?;
            info!(attempt = %a.attempt_id, worker = %r.worker_id, "attempt assigned");
            tasks.push(pb::TaskAssignment { attempt_id: a.attempt_id, spec_json });
        }
        Ok(Response::new(pb::HeartbeatResponse {
            tasks,
            kill: reply.kill,
            finished_jobs: reply.finished_jobs,
            reregister: reply.reregister,
        }))
    }

    async fn report_attempt(
        &self,
        req: Request<pb::ReportAttemptRequest>,
    ) -> Result<Response<pb::ReportAttemptResponse>, Status> {
        security::require_service(&req)?;
        let r = req.into_inner();
        let outcome = match pb::AttemptOutcome::try_from(r.outcome) {
            Ok(pb::AttemptOutcome::Succeeded) => Outcome::Succeeded {
                counters: Counters::from_proto(&r.counters),
                output_path: (!r.output_path.is_empty()).then_some(r.output_path),
                skipped_path: (!r.skipped_path.is_empty()).then_some(r.skipped_path),
            },
            Ok(pb::AttemptOutcome::Killed) => Outcome::Killed,
            _ if r.fatal => Outcome::Fatal { error: r.error },
            _ => Outcome::Failed { error: r.error, last_record: u64::try_from(r.last_record).ok() },
        };
        info!(attempt = %r.attempt_id, worker = %r.worker_id, outcome = ?pb::AttemptOutcome::try_from(r.outcome).ok(), "attempt ended");
        let actions =
            self.shared.core().attempt_finished(&r.attempt_id, &r.worker_id, outcome, now_ms());
        execute(&self.shared, actions);
        Ok(Response::new(pb::ReportAttemptResponse {}))
    }

    async fn submit_job(
        &self,
        req: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        // The job is the caller's: the name a request carries must be the caller's own
        // (or none), so a mistaken or forged one is refused rather than run as someone.
        let caller = self.shared.access.caller(&req)?;
        // Token mode: the groups the token proves, passed on to the tokens minted for the
        // job (never the coordinator's own mapping, which the master may not share).
        let groups = req.extensions().get::<Claims>().map(|c| c.groups.clone()).unwrap_or_default();
        let r = req.into_inner();
        if !r.user.is_empty() && r.user != caller.user {
            return Err(Error::PermissionDenied(format!(
                "user={} may not submit a job as {}",
                caller.user,
                r.user.chars().take(security::MAX_NAME_LEN).collect::<String>().escape_debug()
            ))
            .into());
        }
        let job = self.prepare(r, caller.user, groups).await?;
        let (maps, reduces) = (job.splits.len() as u32, job.reducers);
        let (name, output, user) = (job.name.clone(), job.output.clone(), job.user.clone());
        let now = now_ms();
        let (job_id, actions) = {
            let mut core = self.shared.core();
            let (job_id, actions) = core.submit(job, now)?;
            // Journal it before anyone hears of it; a job that cannot be recorded is not run.
            let entry = Entry::Submit {
                job_id: job_id.clone(),
                name: name.clone(),
                output,
                user,
                submit_ms: now,
            };
            if let Err(e) = self.shared.journal.append(&entry) {
                let _ = core.kill_job(&job_id, now);
                drop(core);
                execute(&self.shared, Vec::new());
                return Err(e.into());
            }
            (job_id, actions)
        };
        info!(job = %job_id, name = %name, maps, reduces, "job submitted");
        execute(&self.shared, actions);
        Ok(Response::new(pb::SubmitJobResponse { job_id, maps, reduces }))
    }

    async fn get_job(
        &self,
        req: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::JobStatus>, Status> {
        let caller = self.shared.access.caller(&req)?;
        let id = req.into_inner().job_id;
        let core = self.shared.core();
        let job = core.job(&id).ok_or_else(|| Status::not_found(format!("no job {id}")))?;
        self.shared.access.check(&caller, JobOp::View, &id, &job.def.user)?;
        Ok(Response::new(job_status(job, true)))
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let caller = self.shared.access.caller(&req)?;
        let all = req.into_inner().all;
        let core = self.shared.core();
        let jobs = core
            .jobs()
            .filter(|j| all || j.state == JobState::Running)
            .map(|j| {
                let s = job_status(j, false);
                if self.shared.access.may(&caller, &j.def.user) { s } else { summary_line(s) }
            })
            .collect();
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    async fn kill_job(
        &self,
        req: Request<pb::KillJobRequest>,
    ) -> Result<Response<pb::KillJobResponse>, Status> {
        let caller = self.shared.access.caller(&req)?;
        let id = req.into_inner().job_id;
        // An unknown job is the core's to refuse (NOT_FOUND).
        if let Some(owner) = self.shared.owner(&id) {
            self.shared.access.check(&caller, JobOp::Kill, &id, &owner)?;
        }
        let actions = self.shared.core().kill_job(&id, now_ms())?;
        info!(job = %id, by = %caller.user, "job killed");
        execute(&self.shared, actions);
        Ok(Response::new(pb::KillJobResponse { killed: true }))
    }

    async fn list_workers(
        &self,
        req: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        self.shared.access.caller(&req)?;
        let core = self.shared.core();
        let workers = core
            .workers()
            .map(|w| pb::WorkerInfo {
                worker_id: w.id.clone(),
                host: w.host.clone(),
                rack: w.rack.clone(),
                slots: w.slots,
                shuffle_addr: w.shuffle_addr.clone(),
                last_heartbeat_ms: w.last_seen,
                running: w.running,
            })
            .collect();
        Ok(Response::new(pb::ListWorkersResponse { workers }))
    }

    async fn report_fetch_failure(
        &self,
        req: Request<pb::ReportFetchFailureRequest>,
    ) -> Result<Response<pb::ReportFetchFailureResponse>, Status> {
        let owner = self.shared.owner(&req.get_ref().job_id);
        require_service_or_owner(&req, &req.get_ref().job_id, owner.as_deref())?;
        let r = req.into_inner();
        info!(job = %r.job_id, reducer = %r.reduce_attempt, map_attempt = %r.map_attempt, error = %r.error, "fetch failure reported");
        let actions = self.shared.core().fetch_failed(
            &r.job_id,
            &r.reduce_attempt,
            r.map,
            &r.map_attempt,
            &r.error,
            now_ms(),
        );
        execute(&self.shared, actions);
        Ok(Response::new(pb::ReportFetchFailureResponse {}))
    }

    async fn get_map_outputs(
        &self,
        req: Request<pb::GetMapOutputsRequest>,
    ) -> Result<Response<pb::GetMapOutputsResponse>, Status> {
        let owner = self.shared.owner(&req.get_ref().job_id);
        require_service_or_owner(&req, &req.get_ref().job_id, owner.as_deref())?;
        let r = req.into_inner();
        let outputs = self
            .shared
            .core()
            .map_outputs_for(&r.job_id, &r.reduce_attempt)?
            .into_iter()
            .map(|l| pb::MapOutputLocation {
                map: l.map,
                attempt_id: l.attempt_id,
                shuffle_addr: l.shuffle_addr,
            })
            .collect();
        Ok(Response::new(pb::GetMapOutputsResponse { outputs }))
    }
}

/// Most reduce tasks a job may ask for.
pub const MAX_REDUCERS: u32 = 10_000;

impl CoordinatorService {
    /// Checks a submission and turns it into a job for the core.
    async fn prepare(
        &self,
        r: pb::SubmitJobRequest,
        user: String,
        groups: Vec<String>,
    ) -> Result<NewJob> {
        // The job's inputs are listed and its output made as its user.
        let client = &self.shared.client_as(&user, &groups)?;
        if r.name.is_empty() || r.binary_path.is_empty() {
            return Err(Error::InvalidArgument("a job needs a name and a binary".into()));
        }
        // Every reduce task is a record in the core: a count from the request must not
        // become a multi-gigabyte allocation.
        if r.reducers > MAX_REDUCERS {
            return Err(Error::InvalidArgument(format!(
                "{} reducers asked for, at most {MAX_REDUCERS} are allowed",
                r.reducers
            )));
        }
        let output = client.resolve(r.output.as_str())?.to_string();
        if output == "/" {
            return Err(Error::InvalidArgument("the output directory cannot be /".into()));
        }
        if client.try_stat(output.as_str()).await?.is_some() {
            return Err(Error::AlreadyExists(format!("output directory {output} already exists")));
        }
        let conf: JobConf = r.conf.into_iter().collect();
        conf.check_known()?;
        // The job binary cut the splits (input formats are job code); each is bounded.
        if r.splits.len() > MAX_SPLITS {
            return Err(Error::InvalidArgument(format!(
                "{} splits, at most {MAX_SPLITS} are allowed",
                r.splits.len()
            )));
        }
        let splits = r.splits.into_iter().map(Split::from_proto).collect::<Result<Vec<_>>>()?;
        client.mkdir(format!("{output}/_temporary").as_str(), true).await?;
        Ok(NewJob {
            name: r.name,
            binary_path: r.binary_path,
            binary_hash: r.binary_hash,
            output,
            reducers: r.reducers,
            conf,
            user,
            groups,
            splits,
            token: JobToken::generate(),
        })
    }
}

fn parse_state(s: &str) -> JobState {
    match s {
        "succeeded" => JobState::Succeeded,
        "killed" => JobState::Killed,
        _ => JobState::Failed,
    }
}

/// Runs the coordinator on `listener` until `shutdown` resolves.
///
/// # Errors
/// [`Error::InvalidArgument`] for bad settings, DFS errors connecting to the master, or a
/// transport error serving.
pub async fn run(
    cfg: CoordinatorConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    cfg.validate()?;
    let cfg_connections = cfg.connections;
    std::fs::create_dir_all(&cfg.dir)
        .map_err(Error::io(format!("cannot create {}", cfg.dir.display())))?;
    let addr: SocketAddr =
        listener.local_addr().map_err(Error::io("cannot read the listening address"))?;
    // The coordinator's own DFS calls (the binary directory) are made as the user it
    // runs as, in both modes: in token mode with a token it mints for that user, for an
    // hour (it is used at start-up; every call for a job gets a token of its own).
    let own = dfs::ClientConfig::default();
    let token = cfg.auth.secret.as_ref().map(|secret| {
        let life = millis(Duration::from_secs(3600));
        secret.issue(Kind::User, &own.user, &[], now_ms(), life, life)
    });
    let client = dfs::Client::connect(&cfg.master, dfs::ClientConfig { token, ..own }).await?;
    prepare_binary_dir(&client).await;
    let mapping = security::groups::from_flag(cfg.group_mapping.as_deref())
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let access = JobAccess::new(cfg.admins.clone().with_user(&security::os_user()), mapping);
    let core_cfg = CoreConfig {
        heartbeat_ms: cfg.heartbeat.as_millis() as i64,
        dead_after_ms: cfg.dead_after.as_millis() as i64,
        locality_delay_ms: cfg.locality_delay.as_millis() as i64,
        max_attempts: cfg.max_attempts,
        task_timeout_ms: cfg.task_timeout.as_millis() as u64,
        speculative_slowness: cfg.speculative_slowness,
        speculative_lag_ms: cfg.speculative_lag.as_millis() as i64,
        ..CoreConfig::new(&cfg.master, &addr.to_string())
    };
    let epoch = (now_ms() / 1000) as u64;
    let (journal, remembered) = Journal::open(&cfg.dir)?;
    let mut core = Core::new(core_cfg, epoch);
    let mut orphans = Vec::new();
    for j in remembered {
        let def =
            NewJob { name: j.name, output: j.output.clone(), user: j.user, ..NewJob::default() };
        let (state, error, finish) = match j.end {
            Some((state, error, finish)) => (parse_state(&state), error, finish),
            None => {
                orphans.push((j.job_id.clone(), j.output));
                let why = "the coordinator restarted while the job was running; resubmit it";
                (JobState::Failed, why.to_owned(), now_ms())
            }
        };
        core.restore_ended(&j.job_id, def, state, error, (j.submit_ms, finish));
    }
    let shared = Arc::new(Shared { core: Mutex::new(core), client, cfg, journal, access });
    for (job_id, output) in orphans {
        warn!(job = %job_id, "job was running when the coordinator stopped: reported failed");
        shared.core().mark_ended(&job_id);
        execute(&shared, vec![Action::AbortJob { job_id, output }]);
    }
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let ticker = {
        let shared = shared.clone();
        let period = shared.cfg.heartbeat;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => return,
                    () = tokio::time::sleep(period) => {
                        let actions = shared.core().tick(now_ms());
                        execute(&shared, actions);
                    }
                }
            }
        })
    };
    info!(%addr, auth = %shared.cfg.auth.mode, "coordinator listening");
    // Token mode: every call must carry a valid token (users' and services' alike);
    // which kind each call needs is checked in its handler.
    let authenticate = shared.cfg.auth.interceptor();
    let tls = shared.cfg.tls.clone();
    let svc = CoordinatorService { shared };
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(tls)
            .map_err(|e| Error::InvalidArgument(format!("TLS on the coordinator port: {e}")))?;
    }
    let served = server
        .add_service(CoordinatorServer::with_interceptor(svc, authenticate))
        .serve_with_incoming_shutdown(
            security::connections::guard(listener, cfg_connections, "coordinator"),
            shutdown,
        )
        .await;
    let _ = stop_tx.send(true);
    let _ = ticker.await;
    served.map_err(|e| Error::Io {
        what: format!("serving on {addr}"),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(())
}
