//! The coordinator's state machine: jobs, their tasks and attempts, and the workers, with
//! no I/O. The gRPC service ([`super::service`]) feeds it events (a worker registers or
//! heartbeats, an attempt ends, a commit finishes) and the time, and carries out the
//! [`Action`]s it returns (renaming outputs in the DFS, writing `_SUCCESS`), reporting
//! their outcome back as further events. That keeps every scheduling decision testable
//! with plain function calls.
//!
//! **Scheduling.** Jobs are served first come, first served. A worker's heartbeat says how
//! many slots it has free; each free slot gets, from the oldest running job, a map whose
//! split has a replica on the worker's host if there is one; otherwise, once the job has
//! waited `locality_delay` for such a chance, one with a replica on the worker's rack;
//! after twice that, any map (delay scheduling, Zaharia et al. 2010). Reduces start when
//! every map has finished. One heartbeat takes at most its fair share of a job's pending
//! tasks (pending / live workers, rounded up), so work spreads over the workers.
//!
//! **Completion.** A map of a job with reducers is done when an attempt reports success;
//! its output stays on that worker. A reduce (or the map of a map-only job) is done once
//! its output has been committed: the first successful attempt's temporary file is
//! renamed into place ([`Action::Commit`]); a later success of the same task is a
//! duplicate and is ignored. When every task is done the job writes `_SUCCESS`
//! ([`Action::FinishJob`]) and only then counts as succeeded. Counters are summed from the
//! attempts that won, so duplicates and failures never double-count.
//!
//! **Failures** (the basics; worker loss, timeouts and speculation build on the same
//! states): a failed attempt puts its task back to pending until it has failed
//! `max_attempts` times, which fails the job ([`Action::AbortJob`]).

use std::collections::{BTreeMap, HashMap};

use crate::config::JobConf;
use crate::counters::{self as c, Counters};
use crate::error::{Error, Result};
use crate::spec::{InputFormat, MapOutputLoc, Split, TaskKind, TaskSpec};

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The chunk store master, passed to tasks.
    pub master: String,
    /// The coordinator's own address, passed to tasks.
    pub coordinator: String,
    /// Expected heartbeat interval of workers, in ms.
    pub heartbeat_ms: i64,
    /// Delay-scheduling wait before a rack-local map (twice this: any map), in ms.
    pub locality_delay_ms: i64,
    /// Attempts per task before the job fails.
    pub max_attempts: u32,
}

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Tasks are being run (or the job is being committed).
    Running,
    /// `_SUCCESS` is written.
    Succeeded,
    /// A task failed for good, or committing failed.
    Failed,
    /// Killed by a user.
    Killed,
}

impl JobState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Killed => "killed",
        }
    }
}

/// State of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for a slot.
    Pending,
    /// An attempt is running.
    Running,
    /// An attempt succeeded; its output is being committed.
    Committing,
    /// Done.
    Succeeded,
    /// Failed for good.
    Failed,
}

impl TaskState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Committing => "committing",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
        }
    }
}

/// State of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptState {
    /// Running on its worker.
    Running,
    /// Reported success.
    Succeeded,
    /// Reported failure.
    Failed,
    /// Killed.
    Killed,
}

impl AttemptState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::Running => "running",
            AttemptState::Succeeded => "succeeded",
            AttemptState::Failed => "failed",
            AttemptState::Killed => "killed",
        }
    }
}

/// Where a map ran relative to its split's replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locality {
    /// On a host holding a replica.
    Node,
    /// On the rack of a replica.
    Rack,
    /// Elsewhere.
    Other,
    /// Not applicable (reduces, generated input).
    None,
}

impl Locality {
    /// Lowercase name ("" for none).
    pub fn as_str(self) -> &'static str {
        match self {
            Locality::Node => "node",
            Locality::Rack => "rack",
            Locality::Other => "other",
            Locality::None => "",
        }
    }
}

/// How an attempt ended, as its worker reports it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Success, with counters and (reduce or map-only map) the file to commit.
    Succeeded {
        /// Its counters.
        counters: Counters,
        /// The temporary DFS file to commit.
        output_path: Option<String>,
    },
    /// Failure with a reason.
    Failed {
        /// Why.
        error: String,
    },
    /// Killed on request.
    Killed,
}

/// Something the service must do in the outside world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Rename `from` to `to` in the DFS, then report [`Core::commit_finished`].
    Commit {
        /// The attempt whose output it is.
        attempt_id: String,
        /// Its temporary file.
        from: String,
        /// The final name.
        to: String,
    },
    /// Delete `OUT/_temporary`, write `OUT/_SUCCESS`, then report [`Core::job_finished`].
    FinishJob {
        /// The job.
        job_id: String,
        /// Its output directory.
        output: String,
    },
    /// Delete `OUT/_temporary` of a failed or killed job (best effort).
    AbortJob {
        /// The job.
        job_id: String,
        /// Its output directory.
        output: String,
    },
}

/// One attempt of a task.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Its id.
    pub id: String,
    /// The worker running it.
    pub worker: String,
    /// Its state.
    pub state: AttemptState,
    /// Start time (ms since the epoch).
    pub start_ms: i64,
    /// End time (0 while running).
    pub end_ms: i64,
    /// Locality of a map attempt.
    pub locality: Locality,
    /// Why it failed.
    pub error: String,
    /// Counters it reported.
    pub counters: Counters,
}

/// A map or reduce task.
#[derive(Debug, Clone)]
pub struct Task {
    /// Map or reduce.
    pub kind: TaskKind,
    /// Index among the job's maps or reduces.
    pub index: u32,
    /// Its split (maps).
    pub split: Option<Split>,
    /// Its state.
    pub state: TaskState,
    /// Its attempts, oldest first.
    pub attempts: Vec<Attempt>,
    /// Index of the attempt that won.
    pub winner: Option<usize>,
    /// Where the winning map attempt's output is (attempt id, shuffle address).
    pub output: Option<(String, String)>,
}

impl Task {
    fn new(kind: TaskKind, index: u32, split: Option<Split>) -> Task {
        Task {
            kind,
            index,
            split,
            state: TaskState::Pending,
            attempts: Vec::new(),
            winner: None,
            output: None,
        }
    }

    /// The task's id, `task_<epoch>_<seq>_m_000003`.
    pub fn id(&self, job_id: &str) -> String {
        format!("task{}_{}_{:06}", &job_id[3..], self.kind.letter(), self.index)
    }
}

/// What a submitted job is.
#[derive(Debug, Clone, Default)]
pub struct NewJob {
    /// Name in the binary's registry.
    pub name: String,
    /// DFS path of the binary.
    pub binary_path: String,
    /// Its hash.
    pub binary_hash: String,
    /// Output directory.
    pub output: String,
    /// Reduce tasks.
    pub reducers: u32,
    /// Options.
    pub conf: JobConf,
    /// Submitting user.
    pub user: String,
    /// How input is read.
    pub input_format: InputFormat,
    /// One per map task.
    pub splits: Vec<Split>,
}

/// A job and its tasks.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its id, `job_<epoch>_<seq>`.
    pub id: String,
    /// What was submitted.
    pub def: NewJob,
    /// Its state.
    pub state: JobState,
    /// Map tasks.
    pub maps: Vec<Task>,
    /// Reduce tasks.
    pub reduces: Vec<Task>,
    /// Submit time (ms).
    pub submit_ms: i64,
    /// Finish time (0 while running).
    pub finish_ms: i64,
    /// Why it failed.
    pub error: String,
    /// Counters of the winning attempts.
    pub counters: Counters,
    /// Launched/failed/killed attempts and locality.
    pub job_counters: Counters,
    /// Set once `_SUCCESS` is being written.
    pub finishing: bool,
    /// Since when the job has been passing up non-local slots (delay scheduling).
    wait_since: Option<i64>,
}

impl Job {
    /// All counters: the winners' task counters and the job counters.
    pub fn all_counters(&self) -> Counters {
        let mut c = self.counters.clone();
        c.merge(&self.job_counters);
        c
    }

    /// Maps done.
    pub fn maps_done(&self) -> usize {
        self.maps.iter().filter(|t| t.state == TaskState::Succeeded).count()
    }

    /// Reduces done.
    pub fn reduces_done(&self) -> usize {
        self.reduces.iter().filter(|t| t.state == TaskState::Succeeded).count()
    }

    fn task_mut(&mut self, kind: TaskKind, index: u32) -> Option<&mut Task> {
        match kind {
            TaskKind::Map => self.maps.get_mut(index as usize),
            TaskKind::Reduce => self.reduces.get_mut(index as usize),
        }
    }
}

/// A registered worker.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Its id.
    pub id: String,
    /// Host address.
    pub host: String,
    /// Rack.
    pub rack: String,
    /// Slots.
    pub slots: u32,
    /// Shuffle service address.
    pub shuffle_addr: String,
    /// Last heartbeat (ms).
    pub last_seen: i64,
    /// Attempts it said it runs.
    pub running: u32,
    /// Finished jobs whose files it may delete, not yet told.
    cleanup: Vec<String>,
}

/// A task assignment for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The attempt's id.
    pub attempt_id: String,
    /// What to run.
    pub spec: TaskSpec,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// New attempts to start.
    pub tasks: Vec<Assignment>,
    /// Attempts to kill.
    pub kill: Vec<String>,
    /// Jobs whose local files can go.
    pub finished_jobs: Vec<String>,
    /// The worker is unknown: register again.
    pub reregister: bool,
}

/// The coordinator's state (see the module documentation).
#[derive(Debug)]
pub struct Core {
    cfg: CoreConfig,
    epoch: u64,
    next_job: u64,
    next_worker: u64,
    jobs: BTreeMap<u64, Job>,
    job_ids: HashMap<String, u64>,
    /// attempt id -> (job seq, kind, task index, attempt index)
    attempts: HashMap<String, (u64, TaskKind, u32, usize)>,
    workers: BTreeMap<String, Worker>,
}

impl Core {
    /// An empty core; `epoch` (e.g. start time in seconds) makes ids unique across restarts.
    pub fn new(cfg: CoreConfig, epoch: u64) -> Core {
        Core {
            cfg,
            epoch,
            next_job: 1,
            next_worker: 1,
            jobs: BTreeMap::new(),
            job_ids: HashMap::new(),
            attempts: HashMap::new(),
            workers: BTreeMap::new(),
        }
    }

    fn dead_after(&self) -> i64 {
        self.cfg.heartbeat_ms.max(1) * 10
    }

    fn live_workers(&self, now: i64) -> usize {
        let dead = self.dead_after();
        self.workers.values().filter(|w| now - w.last_seen <= dead).count().max(1)
    }

    /// Registers a worker (replacing one with the same shuffle address); returns its id.
    pub fn register_worker(
        &mut self,
        host: &str,
        rack: &str,
        slots: u32,
        shuffle_addr: &str,
        now: i64,
    ) -> String {
        self.workers.retain(|_, w| w.shuffle_addr != shuffle_addr);
        let id = format!("worker-{:04}-{}", self.next_worker, host);
        self.next_worker += 1;
        self.workers.insert(
            id.clone(),
            Worker {
                id: id.clone(),
                host: host.to_owned(),
                rack: rack.to_owned(),
                slots,
                shuffle_addr: shuffle_addr.to_owned(),
                last_seen: now,
                running: 0,
                cleanup: Vec::new(),
            },
        );
        id
    }

    /// The registered workers.
    pub fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers.values()
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// The job with id `id`.
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.job_ids.get(id).and_then(|s| self.jobs.get(s))
    }

    /// Accepts a job; returns its id and any actions (a job with no tasks finishes at once).
    pub fn submit(&mut self, def: NewJob, now: i64) -> (String, Vec<Action>) {
        let seq = self.next_job;
        self.next_job += 1;
        let id = format!("job_{}_{seq:04}", self.epoch);
        let maps = def
            .splits
            .iter()
            .enumerate()
            .map(|(i, s)| Task::new(TaskKind::Map, i as u32, Some(s.clone())));
        let maps: Vec<Task> = maps.collect();
        let reduces = (0..def.reducers).map(|i| Task::new(TaskKind::Reduce, i, None)).collect();
        let job = Job {
            id: id.clone(),
            def,
            state: JobState::Running,
            maps,
            reduces,
            submit_ms: now,
            finish_ms: 0,
            error: String::new(),
            counters: Counters::new(),
            job_counters: Counters::new(),
            finishing: false,
            wait_since: None,
        };
        self.jobs.insert(seq, job);
        self.job_ids.insert(id.clone(), seq);
        let actions = self.check_done(seq);
        (id, actions)
    }

    /// A heartbeat from `worker_id` with `free_slots` and the attempts it is running.
    pub fn heartbeat(
        &mut self,
        worker_id: &str,
        free_slots: u32,
        running: &[String],
        now: i64,
    ) -> HeartbeatReply {
        let live = self.live_workers(now);
        let Some(w) = self.workers.get_mut(worker_id) else {
            return HeartbeatReply { reregister: true, ..HeartbeatReply::default() };
        };
        w.last_seen = now;
        w.running = running.len() as u32;
        let mut reply = HeartbeatReply {
            finished_jobs: std::mem::take(&mut w.cleanup),
            ..HeartbeatReply::default()
        };
        let worker = w.clone();
        for a in running {
            let keep = self.attempts.get(a).and_then(|&(seq, kind, index, ai)| {
                let job = self.jobs.get(&seq)?;
                let task = match kind {
                    TaskKind::Map => job.maps.get(index as usize)?,
                    TaskKind::Reduce => job.reduces.get(index as usize)?,
                };
                let att = task.attempts.get(ai)?;
                Some(job.state == JobState::Running && att.state == AttemptState::Running)
            });
            if keep != Some(true) {
                reply.kill.push(a.clone());
            }
        }
        let mut free = free_slots;
        let seqs: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Running)
            .map(|(s, _)| *s)
            .collect();
        for seq in seqs {
            if free == 0 {
                break;
            }
            let assigned = self.assign_from(seq, &worker, free, live, now);
            free -= assigned.len() as u32;
            reply.tasks.extend(assigned);
        }
        reply
    }

    /// Assigns up to `free` tasks of job `seq` to `worker`.
    fn assign_from(
        &mut self,
        seq: u64,
        worker: &Worker,
        free: u32,
        live: usize,
        now: i64,
    ) -> Vec<Assignment> {
        let delay = self.cfg.locality_delay_ms;
        let Some(job) = self.jobs.get_mut(&seq) else { return Vec::new() };
        let mut out = Vec::new();
        let pending_maps = job.maps.iter().filter(|t| t.state == TaskState::Pending).count();
        if pending_maps > 0 {
            let cap = pending_maps.div_ceil(live).max(1) as u32;
            while (out.len() as u32) < free.min(cap) {
                let pick = pick_map(job, worker, now, delay);
                let Some((index, locality)) = pick else { break };
                out.push(self_assign(
                    job,
                    TaskKind::Map,
                    index,
                    worker,
                    locality,
                    now,
                    &self.cfg,
                    self.epoch,
                    &mut self.attempts,
                    seq,
                ));
            }
            return out;
        }
        let maps_done = job.maps.iter().all(|t| t.state == TaskState::Succeeded);
        if !maps_done {
            return out;
        }
        let pending: Vec<u32> =
            job.reduces.iter().filter(|t| t.state == TaskState::Pending).map(|t| t.index).collect();
        let cap = pending.len().div_ceil(live).max(1) as u32;
        for index in pending.into_iter().take(free.min(cap) as usize) {
            out.push(self_assign(
                job,
                TaskKind::Reduce,
                index,
                worker,
                Locality::None,
                now,
                &self.cfg,
                self.epoch,
                &mut self.attempts,
                seq,
            ));
        }
        out
    }

    /// An attempt ended on `worker_id`.
    pub fn attempt_finished(
        &mut self,
        attempt_id: &str,
        outcome: Outcome,
        now: i64,
    ) -> Vec<Action> {
        let Some(&(seq, kind, index, ai)) = self.attempts.get(attempt_id) else {
            return Vec::new();
        };
        let max_attempts = self.cfg.max_attempts.max(1) as usize;
        let shuffle_addr = |core: &Core, worker: &str| {
            core.workers.get(worker).map(|w| w.shuffle_addr.clone()).unwrap_or_default()
        };
        let worker = match self.jobs.get(&seq).and_then(|j| match kind {
            TaskKind::Map => j.maps.get(index as usize),
            TaskKind::Reduce => j.reduces.get(index as usize),
        }) {
            Some(t) => t.attempts.get(ai).map(|a| a.worker.clone()).unwrap_or_default(),
            None => return Vec::new(),
        };
        let addr = shuffle_addr(self, &worker);
        let Some(job) = self.jobs.get_mut(&seq) else { return Vec::new() };
        let job_running = job.state == JobState::Running;
        let reducers = job.def.reducers;
        let output_dir = job.def.output.clone();
        let job_id = job.id.clone();
        // Field by field, so the task and the job's counters can be borrowed together.
        let task = match kind {
            TaskKind::Map => job.maps.get_mut(index as usize),
            TaskKind::Reduce => job.reduces.get_mut(index as usize),
        };
        let Some(task) = task else { return Vec::new() };
        let Some(att) = task.attempts.get_mut(ai) else { return Vec::new() };
        if att.state != AttemptState::Running {
            return Vec::new(); // a repeated report
        }
        att.end_ms = now;
        let mut actions = Vec::new();
        match outcome {
            Outcome::Succeeded { counters, output_path } => {
                att.state = AttemptState::Succeeded;
                att.counters = counters;
                let duplicate = matches!(task.state, TaskState::Committing | TaskState::Succeeded);
                if duplicate || !job_running {
                    return actions;
                }
                task.winner = Some(ai);
                if kind == TaskKind::Map && reducers > 0 {
                    task.state = TaskState::Succeeded;
                    task.output = Some((attempt_id.to_owned(), addr));
                    let counters = task.attempts[ai].counters.clone();
                    job.counters.merge(&counters);
                    actions.extend(self.check_done(seq));
                } else {
                    let Some(from) = output_path else {
                        return self.fail_task(
                            seq,
                            kind,
                            index,
                            "the attempt reported no output file".into(),
                            now,
                        );
                    };
                    task.state = TaskState::Committing;
                    let name = format!("part-{}-{:05}", kind.letter(), index);
                    let to = format!("{}/{name}", output_dir.trim_end_matches('/'));
                    actions.push(Action::Commit { attempt_id: attempt_id.to_owned(), from, to });
                }
            }
            Outcome::Failed { error } => {
                att.state = AttemptState::Failed;
                att.error = error.clone();
                let name =
                    if kind == TaskKind::Map { c::NUM_FAILED_MAPS } else { c::NUM_FAILED_REDUCES };
                job.job_counters.add(c::JOB, name, 1);
                if job_running && task.state == TaskState::Running {
                    let failures =
                        task.attempts.iter().filter(|a| a.state == AttemptState::Failed).count();
                    if failures >= max_attempts {
                        let tid = task.id(&job_id);
                        let msg =
                            format!("task {tid} failed {failures} times; last error: {error}");
                        actions.extend(self.fail_task(seq, kind, index, msg, now));
                    } else {
                        task.state = TaskState::Pending;
                    }
                }
            }
            Outcome::Killed => {
                att.state = AttemptState::Killed;
                let name =
                    if kind == TaskKind::Map { c::NUM_KILLED_MAPS } else { c::NUM_KILLED_REDUCES };
                job.job_counters.add(c::JOB, name, 1);
                if job_running && task.state == TaskState::Running {
                    task.state = TaskState::Pending;
                }
            }
        }
        actions
    }

    fn fail_task(
        &mut self,
        seq: u64,
        kind: TaskKind,
        index: u32,
        msg: String,
        now: i64,
    ) -> Vec<Action> {
        let Some(job) = self.jobs.get_mut(&seq) else { return Vec::new() };
        if let Some(t) = job.task_mut(kind, index) {
            t.state = TaskState::Failed;
        }
        self.end_job(seq, JobState::Failed, msg, now)
    }

    fn end_job(&mut self, seq: u64, state: JobState, error: String, now: i64) -> Vec<Action> {
        let Some(job) = self.jobs.get_mut(&seq) else { return Vec::new() };
        if job.state != JobState::Running {
            return Vec::new();
        }
        job.state = state;
        job.error = error;
        job.finish_ms = now;
        let (id, output) = (job.id.clone(), job.def.output.clone());
        self.notify_workers(seq);
        if state == JobState::Succeeded {
            Vec::new()
        } else {
            vec![Action::AbortJob { job_id: id, output }]
        }
    }

    /// Tells every worker that ran an attempt of job `seq` that its files can go.
    fn notify_workers(&mut self, seq: u64) {
        let Some(job) = self.jobs.get(&seq) else { return };
        let mut workers: Vec<&str> = job
            .maps
            .iter()
            .chain(&job.reduces)
            .flat_map(|t| t.attempts.iter().map(|a| a.worker.as_str()))
            .collect();
        workers.sort_unstable();
        workers.dedup();
        for w in workers {
            if let Some(w) = self.workers.get_mut(w) {
                w.cleanup.push(job.id.clone());
            }
        }
    }

    /// If every task of job `seq` is done, the action that finishes it.
    fn check_done(&mut self, seq: u64) -> Vec<Action> {
        let Some(job) = self.jobs.get_mut(&seq) else { return Vec::new() };
        let done = job.state == JobState::Running
            && !job.finishing
            && job.maps.iter().chain(&job.reduces).all(|t| t.state == TaskState::Succeeded);
        if !done {
            return Vec::new();
        }
        job.finishing = true;
        vec![Action::FinishJob { job_id: job.id.clone(), output: job.def.output.clone() }]
    }

    /// The rename of `attempt_id`'s output finished (or failed with a message).
    pub fn commit_finished(
        &mut self,
        attempt_id: &str,
        result: std::result::Result<(), String>,
        now: i64,
    ) -> Vec<Action> {
        let Some(&(seq, kind, index, ai)) = self.attempts.get(attempt_id) else {
            return Vec::new();
        };
        let Some(job) = self.jobs.get_mut(&seq) else { return Vec::new() };
        let job_id = job.id.clone();
        let Some(task) = job.task_mut(kind, index) else { return Vec::new() };
        if task.state != TaskState::Committing || task.winner != Some(ai) {
            return Vec::new();
        }
        match result {
            Ok(()) => {
                task.state = TaskState::Succeeded;
                let counters = task.attempts[ai].counters.clone();
                job.counters.merge(&counters);
                self.check_done(seq)
            }
            Err(e) => {
                let tid = task.id(&job_id);
                self.fail_task(
                    seq,
                    kind,
                    index,
                    format!("cannot commit the output of {tid}: {e}"),
                    now,
                )
            }
        }
    }

    /// `_SUCCESS` was written (or writing it failed).
    pub fn job_finished(
        &mut self,
        job_id: &str,
        result: std::result::Result<(), String>,
        now: i64,
    ) -> Vec<Action> {
        let Some(&seq) = self.job_ids.get(job_id) else { return Vec::new() };
        match result {
            Ok(()) => self.end_job(seq, JobState::Succeeded, String::new(), now),
            Err(e) => {
                self.end_job(seq, JobState::Failed, format!("cannot finish the job: {e}"), now)
            }
        }
    }

    /// Kills a running job.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown job, [`Error::FailedPrecondition`] if it is over.
    pub fn kill_job(&mut self, job_id: &str, now: i64) -> Result<Vec<Action>> {
        let seq =
            *self.job_ids.get(job_id).ok_or_else(|| Error::NotFound(format!("no job {job_id}")))?;
        let state = self.jobs.get(&seq).map(|j| j.state);
        if state != Some(JobState::Running) {
            let s = state.map_or("unknown", JobState::as_str);
            return Err(Error::FailedPrecondition(format!("job {job_id} is already {s}")));
        }
        Ok(self.end_job(seq, JobState::Killed, "killed by request".into(), now))
    }

    /// Periodic housekeeping. Workers silent for ten heartbeats get no more work until
    /// they heartbeat again (the fault-tolerance issue adds re-running their tasks).
    pub fn tick(&mut self, _now: i64) -> Vec<Action> {
        Vec::new()
    }
}

/// Picks a pending map for `worker`: node-local, else (after the delay) rack-local, else
/// (after twice the delay) any. Splits without hosts (generated input) go anywhere.
fn pick_map(job: &mut Job, worker: &Worker, now: i64, delay: i64) -> Option<(u32, Locality)> {
    fn hosts(t: &Task) -> &[String] {
        t.split.as_ref().map_or(&[][..], |s| s.hosts.as_slice())
    }
    let pending = || job.maps.iter().filter(|t| t.state == TaskState::Pending);
    if let Some(t) = pending().find(|t| hosts(t).contains(&worker.host)) {
        let i = t.index;
        job.wait_since = None;
        return Some((i, Locality::Node));
    }
    if let Some(t) = pending().find(|t| hosts(t).is_empty()) {
        return Some((t.index, Locality::None));
    }
    let since = *job.wait_since.get_or_insert(now);
    let waited = now - since;
    if waited >= delay
        && let Some(t) =
            pending().find(|t| t.split.as_ref().is_some_and(|s| s.racks.contains(&worker.rack)))
    {
        return Some((t.index, Locality::Rack));
    }
    if waited >= 2 * delay
        && let Some(t) = pending().next()
    {
        return Some((t.index, Locality::Other));
    }
    None
}

/// Starts a new attempt of a task on `worker`.
#[allow(clippy::too_many_arguments)]
fn self_assign(
    job: &mut Job,
    kind: TaskKind,
    index: u32,
    worker: &Worker,
    locality: Locality,
    now: i64,
    cfg: &CoreConfig,
    epoch: u64,
    attempts: &mut HashMap<String, (u64, TaskKind, u32, usize)>,
    seq: u64,
) -> Assignment {
    let map_outputs: Vec<MapOutputLoc> = if kind == TaskKind::Reduce {
        job.maps
            .iter()
            .filter_map(|t| {
                t.output.as_ref().map(|(a, addr)| MapOutputLoc {
                    map: t.index,
                    attempt_id: a.clone(),
                    shuffle_addr: addr.clone(),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let maps = job.maps.len() as u32;
    let launched =
        if kind == TaskKind::Map { c::TOTAL_LAUNCHED_MAPS } else { c::TOTAL_LAUNCHED_REDUCES };
    job.job_counters.add(c::JOB, launched, 1);
    match locality {
        Locality::Node => job.job_counters.add(c::JOB, c::DATA_LOCAL_MAPS, 1),
        Locality::Rack => job.job_counters.add(c::JOB, c::RACK_LOCAL_MAPS, 1),
        Locality::Other => job.job_counters.add(c::JOB, c::OTHER_LOCAL_MAPS, 1),
        Locality::None => {}
    }
    let job_id = job.id.clone();
    let def = job.def.clone();
    let task = match kind {
        TaskKind::Map => &mut job.maps[index as usize],
        TaskKind::Reduce => &mut job.reduces[index as usize],
    };
    let n = task.attempts.len();
    let attempt_id = format!("attempt_{epoch}_{seq:04}_{}_{index:06}_{n}", kind.letter());
    task.attempts.push(Attempt {
        id: attempt_id.clone(),
        worker: worker.id.clone(),
        state: AttemptState::Running,
        start_ms: now,
        end_ms: 0,
        locality,
        error: String::new(),
        counters: Counters::new(),
    });
    task.state = TaskState::Running;
    attempts.insert(attempt_id.clone(), (seq, kind, index, n));
    let spec = TaskSpec {
        job_id,
        job_name: def.name.clone(),
        attempt_id: attempt_id.clone(),
        kind: Some(kind),
        index,
        binary_path: def.binary_path.clone(),
        binary_hash: def.binary_hash.clone(),
        master: cfg.master.clone(),
        coordinator: cfg.coordinator.clone(),
        conf: def.conf.clone(),
        reducers: def.reducers,
        maps,
        output: def.output.clone(),
        input_format: def.input_format,
        split: task.split.clone(),
        map_outputs,
        host: String::new(),
        work_dir: Default::default(),
    };
    Assignment { attempt_id, spec }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> Core {
        Core::new(
            CoreConfig {
                master: "m:1".into(),
                coordinator: "c:1".into(),
                heartbeat_ms: 100,
                locality_delay_ms: 1000,
                max_attempts: 2,
            },
            7,
        )
    }

    fn split(hosts: &[&str], racks: &[&str]) -> Split {
        Split {
            path: "/in".into(),
            start: 0,
            length: 10,
            file_length: 10,
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            racks: racks.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn job(splits: Vec<Split>, reducers: u32) -> NewJob {
        NewJob { name: "wc".into(), output: "/out".into(), reducers, splits, ..NewJob::default() }
    }

    fn ok(path: Option<&str>) -> Outcome {
        Outcome::Succeeded { counters: Counters::new(), output_path: path.map(str::to_owned) }
    }

    #[test]
    fn node_local_first_then_rack_then_any_after_the_delay() {
        let mut c = core();
        let w1 = c.register_worker("h1", "/a", 4, "h1:1", 0);
        let w2 = c.register_worker("h9", "/b", 4, "h9:1", 0);
        let (id, _) = c.submit(
            job(vec![split(&["h2"], &["/a"]), split(&["h1"], &["/a"]), split(&["h3"], &["/c"])], 1),
            0,
        );
        // h1 gets its node-local split, nothing else yet (delay scheduling).
        let r = c.heartbeat(&w1, 4, &[], 0);
        assert_eq!(r.tasks.len(), 1);
        assert_eq!(r.tasks[0].spec.split.as_ref().unwrap().hosts, ["h1"]);
        assert!(c.heartbeat(&w1, 3, &[], 500).tasks.is_empty());
        // After the delay: rack-local for h1 (rack /a).
        let r = c.heartbeat(&w1, 3, &[], 1000);
        assert_eq!(r.tasks.len(), 1);
        assert_eq!(r.tasks[0].spec.split.as_ref().unwrap().hosts, ["h2"]);
        // After twice the delay: anything, for a worker on another rack.
        let r = c.heartbeat(&w2, 4, &[], 2000);
        assert_eq!(r.tasks.len(), 1);
        let j = c.job(&id).unwrap().all_counters();
        assert_eq!(j.get(c::JOB, c::DATA_LOCAL_MAPS), 1);
        assert_eq!(j.get(c::JOB, c::RACK_LOCAL_MAPS), 1);
        assert_eq!(j.get(c::JOB, c::OTHER_LOCAL_MAPS), 1);
        assert_eq!(j.get(c::JOB, c::TOTAL_LAUNCHED_MAPS), 3);
    }

    #[test]
    fn reduces_wait_for_maps_and_commit_once() {
        let mut c = core();
        let w = c.register_worker("h1", "/a", 2, "h1:1", 0);
        let w2 = c.register_worker("h2", "/a", 2, "h2:1", 0);
        let (id, _) = c.submit(job(vec![split(&["h1"], &["/a"])], 1), 0);
        let m = c.heartbeat(&w, 2, &[], 0).tasks.remove(0);
        assert!(c.heartbeat(&w2, 2, &[], 1).tasks.is_empty(), "no reduce before the maps finish");
        assert!(c.attempt_finished(&m.attempt_id, ok(None), 2).is_empty());
        let r = c.heartbeat(&w2, 2, &[], 3).tasks.remove(0);
        assert_eq!(r.spec.map_outputs.len(), 1);
        assert_eq!(r.spec.map_outputs[0].shuffle_addr, "h1:1");
        let a = c.attempt_finished(&r.attempt_id, ok(Some("/out/_temporary/x/part-r-00000")), 4);
        assert_eq!(
            a,
            vec![Action::Commit {
                attempt_id: r.attempt_id.clone(),
                from: "/out/_temporary/x/part-r-00000".into(),
                to: "/out/part-r-00000".into()
            }]
        );
        // The same report again is ignored.
        assert!(c.attempt_finished(&r.attempt_id, ok(Some("/x")), 5).is_empty());
        let done = c.commit_finished(&r.attempt_id, Ok(()), 6);
        assert_eq!(done, vec![Action::FinishJob { job_id: id.clone(), output: "/out".into() }]);
        assert_eq!(c.job(&id).unwrap().state, JobState::Running, "running until _SUCCESS");
        c.job_finished(&id, Ok(()), 7);
        assert_eq!(c.job(&id).unwrap().state, JobState::Succeeded);
        // Both workers hear that the job is over.
        assert_eq!(c.heartbeat(&w, 2, &[], 8).finished_jobs, std::slice::from_ref(&id));
        assert_eq!(c.heartbeat(&w2, 2, &[], 8).finished_jobs, [id]);
    }

    #[test]
    fn a_duplicate_success_is_ignored() {
        let mut c = core();
        let w = c.register_worker("h1", "/a", 2, "h1:1", 0);
        let (id, _) = c.submit(job(vec![split(&["h1"], &["/a"])], 0), 0);
        let m = c.heartbeat(&w, 2, &[], 0).tasks.remove(0);
        // Simulate a second attempt of the same task (as a retry or backup would be).
        let first =
            c.attempt_finished(&m.attempt_id, ok(Some("/out/_temporary/a/part-m-00000")), 1);
        assert_eq!(first.len(), 1);
        let job = c.jobs.values_mut().next().unwrap();
        let dup = Attempt { id: "dup".into(), ..job.maps[0].attempts[0].clone() };
        job.maps[0].attempts.push(dup);
        let seq = *c.job_ids.get(&id).unwrap();
        c.attempts.insert("dup".into(), (seq, TaskKind::Map, 0, 1));
        assert!(
            c.attempt_finished("dup", ok(Some("/out/_temporary/b/part-m-00000")), 2).is_empty()
        );
        assert!(c.commit_finished("dup", Ok(()), 3).is_empty(), "only the winner commits");
        assert_eq!(c.commit_finished(&m.attempt_id, Ok(()), 3).len(), 1);
    }

    #[test]
    fn failures_retry_then_fail_the_job() {
        let mut c = core();
        let w = c.register_worker("h1", "/a", 2, "h1:1", 0);
        let (id, _) = c.submit(job(vec![split(&["h1"], &["/a"])], 1), 0);
        for n in 0..2 {
            let a = c.heartbeat(&w, 2, &[], n).tasks.remove(0);
            let actions =
                c.attempt_finished(&a.attempt_id, Outcome::Failed { error: "boom".into() }, n);
            if n == 1 {
                assert_eq!(
                    actions,
                    vec![Action::AbortJob { job_id: id.clone(), output: "/out".into() }]
                );
            }
        }
        let j = c.job(&id).unwrap();
        assert_eq!(j.state, JobState::Failed);
        assert!(j.error.contains("failed 2 times; last error: boom"), "{}", j.error);
        assert_eq!(j.all_counters().get(c::JOB, c::NUM_FAILED_MAPS), 2);
    }

    #[test]
    fn killed_jobs_kill_their_attempts_and_unknown_workers_reregister() {
        let mut c = core();
        let w = c.register_worker("h1", "/a", 2, "h1:1", 0);
        let (id, _) = c.submit(job(vec![split(&["h1"], &["/a"])], 1), 0);
        let a = c.heartbeat(&w, 2, &[], 0).tasks.remove(0);
        assert!(!c.kill_job(&id, 1).unwrap().is_empty());
        assert!(c.kill_job(&id, 1).is_err());
        let r = c.heartbeat(&w, 1, std::slice::from_ref(&a.attempt_id), 2);
        assert_eq!(r.kill, [a.attempt_id]);
        assert!(c.heartbeat("nobody", 1, &[], 2).reregister);
    }

    #[test]
    fn an_empty_job_finishes_at_once_and_reduces_spread() {
        let mut c = core();
        let (_, actions) = c.submit(job(Vec::new(), 0), 0);
        assert!(matches!(actions[0], Action::FinishJob { .. }));
        let w1 = c.register_worker("h1", "/a", 2, "h1:1", 0);
        let w2 = c.register_worker("h2", "/a", 2, "h2:1", 0);
        c.submit(job(Vec::new(), 2), 0);
        assert_eq!(c.heartbeat(&w1, 2, &[], 1).tasks.len(), 1, "one of two reduces per worker");
        assert_eq!(c.heartbeat(&w2, 2, &[], 1).tasks.len(), 1);
    }
}
