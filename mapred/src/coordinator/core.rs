//! The coordinator's state machine: jobs, their tasks and attempts, and the workers, with
//! no I/O. The gRPC service ([`super::service`]) feeds it events (a worker registers or
//! heartbeats, an attempt ends, a reducer cannot fetch a map output, a commit finishes)
//! and the time, and carries out the [`Action`]s it returns (renaming outputs in the DFS,
//! writing `_SUCCESS`, cleaning up), reporting their outcome back as further events. That
//! keeps every scheduling and recovery decision testable with plain function calls.
//!
//! **Scheduling** ([`super::sched`]). Jobs are served first come, first served. A
//! worker's heartbeat says how many slots it has free; each free slot gets, from the
//! oldest running job, a map whose split has a replica on the worker's host if there is
//! one; otherwise, once the job has waited `locality_delay` for such a chance, one with a
//! replica on the worker's rack; after twice that, any map (delay scheduling, Zaharia et
//! al. 2010). Reduces start when every map has finished. A task is not retried on a host
//! where it already failed while another live host could take it. Slots left over go to
//! speculative backups of stragglers.
//!
//! **Completion.** A map of a job with reducers is done when an attempt reports success;
//! its output stays on that worker. A reduce (or the map of a map-only job) is done once
//! its output has been committed: the first successful attempt's temporary file is
//! renamed into place ([`Action::Commit`]); any other attempt of the task still running
//! is killed, and a later success is a duplicate and is ignored. When every task is done
//! the job writes `_SUCCESS` ([`Action::FinishJob`]) and only then counts as succeeded.
//! Counters are summed from the attempts that won, so duplicates, re-runs and failures
//! never double-count.
//!
//! **Failures** ([`super::faults`]): a failed attempt puts its task back to pending until
//! it has failed `max_attempts` times, which fails the job with a message naming the task
//! and how each attempt ended. Worker death, lost map output and late reports are
//! handled there too. A crash pins the record being processed; a record that crashed
//! `skip_after` attempts is replayed alone, and skipped only if its replays crash too
//! ([`super::skip`]).

use std::collections::{BTreeMap, HashMap};

pub use super::model::*;
use crate::error::{Error, Result};
use crate::ids::JobId;
use crate::spec::{TaskKind, skipped_name};

/// Where an attempt is: (job seq, kind, task index, attempt index).
pub(crate) type AttemptRef = (u64, TaskKind, u32, usize);

/// The coordinator's state (see the module documentation).
#[derive(Debug)]
pub struct Core {
    pub(crate) cfg: CoreConfig,
    pub(crate) epoch: u64,
    next_job: u64,
    next_worker: u64,
    pub(crate) jobs: BTreeMap<u64, Job>,
    pub(crate) job_ids: HashMap<String, u64>,
    pub(crate) attempts: HashMap<String, AttemptRef>,
    pub(crate) workers: BTreeMap<String, Worker>,
    /// Jobs that ended since [`Core::take_ended`] was last called.
    ended: Vec<String>,
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
            ended: Vec::new(),
        }
    }

    /// The jobs that ended since the last call (for the journal and history).
    pub fn take_ended(&mut self) -> Vec<String> {
        std::mem::take(&mut self.ended)
    }

    /// Makes [`Core::take_ended`] report job `job_id` (one restored as ended).
    pub fn mark_ended(&mut self, job_id: &str) {
        self.ended.push(job_id.to_owned());
    }

    /// The core's settings.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Registers a worker and returns its id. Every registration is a new incarnation with
    /// a new id; an earlier incarnation at the same shuffle address (the worker restarted,
    /// or was declared dead and came back) is declared dead first, so whatever it ran is
    /// run again and its late reports are ignored.
    pub fn register_worker(
        &mut self,
        host: &str,
        rack: &str,
        slots: u32,
        shuffle_addr: &str,
        now: i64,
    ) -> (String, Vec<Action>) {
        let old: Vec<String> = self
            .workers
            .values()
            .filter(|w| w.shuffle_addr == shuffle_addr)
            .map(|w| w.id.clone())
            .collect();
        let mut actions = Vec::new();
        for id in old {
            actions.extend(self.declare_dead(&id, "it registered again", now));
        }
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
        (id, actions)
    }

    /// The registered, live workers.
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
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a malformed fault-tolerance option.
    pub fn submit(&mut self, def: NewJob, now: i64) -> Result<(String, Vec<Action>)> {
        let opts = JobOptions::from_conf(&def.conf, &self.cfg)?;
        let seq = self.next_job;
        self.next_job += 1;
        let id = JobId { epoch: self.epoch, seq }.to_string();
        let maps = def
            .splits
            .iter()
            .enumerate()
            .map(|(i, s)| Task::new(TaskKind::Map, i as u32, Some(s.clone())))
            .collect();
        let reduces = (0..def.reducers).map(|i| Task::new(TaskKind::Reduce, i, None)).collect();
        let job = Job {
            id: id.clone(),
            def,
            opts,
            state: JobState::Running,
            maps,
            reduces,
            submit_ms: now,
            finish_ms: 0,
            error: String::new(),
            job_counters: Default::default(),
            finishing: false,
            cleaned: false,
            wait_since: None,
        };
        self.jobs.insert(seq, job);
        self.job_ids.insert(id.clone(), seq);
        let actions = self.check_done(seq);
        Ok((id, actions))
    }

    /// Records a job that is already over (restored from the coordinator's journal after
    /// a restart), so `status` and `list` still know it.
    pub fn restore_ended(
        &mut self,
        job_id: &str,
        def: NewJob,
        state: JobState,
        error: String,
        times: (i64, i64),
    ) {
        let seq = self.next_job;
        self.next_job += 1;
        let opts = JobOptions::from_conf(&def.conf, &self.cfg).unwrap_or(JobOptions {
            max_attempts: self.cfg.max_attempts,
            task_timeout_ms: self.cfg.task_timeout_ms,
            skip: true,
            skip_after: 2,
            skip_replays: DEFAULT_SKIP_REPLAYS as u32,
            skip_allowed: 0,
            speculative: true,
        });
        let job = Job {
            id: job_id.to_owned(),
            def,
            opts,
            state,
            maps: Vec::new(),
            reduces: Vec::new(),
            submit_ms: times.0,
            finish_ms: times.1,
            error,
            job_counters: Default::default(),
            finishing: false,
            cleaned: true,
            wait_since: None,
        };
        self.jobs.insert(seq, job);
        self.job_ids.insert(job_id.to_owned(), seq);
    }

    /// A heartbeat from `worker_id` with `free_slots` and the attempts it is running.
    ///
    /// Reconciles the two views: attempts the worker runs that the core no longer wants
    /// (job over, attempt superseded or lost) are to be killed; attempts the core thinks it
    /// runs that it does not list are lost (a worker's heartbeats are sequential and
    /// always list what its previous replies assigned, until the attempt is reported).
    pub fn heartbeat(
        &mut self,
        worker_id: &str,
        free_slots: u32,
        running: &[String],
        now: i64,
    ) -> (HeartbeatReply, Vec<Action>) {
        let Some(w) = self.workers.get_mut(worker_id) else {
            return (HeartbeatReply { reregister: true, ..HeartbeatReply::default() }, Vec::new());
        };
        w.last_seen = now;
        w.running = running.len() as u32;
        let mut reply = HeartbeatReply {
            finished_jobs: std::mem::take(&mut w.cleanup),
            ..HeartbeatReply::default()
        };
        let worker = w.clone();
        for a in running {
            let keep = self.attempt(a).is_some_and(|(job, _, att)| {
                job.state == JobState::Running
                    && att.state == AttemptState::Running
                    && att.worker == worker_id
            });
            if !keep {
                reply.kill.push(a.clone());
            }
        }
        let mut actions = self.lose_unlisted(worker_id, running, now);
        let mut free = free_slots;
        let seqs: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Running)
            .map(|(s, _)| *s)
            .collect();
        for &seq in &seqs {
            if free == 0 {
                break;
            }
            let assigned = self.assign_from(seq, &worker, free, now);
            free -= assigned.len() as u32;
            reply.tasks.extend(assigned);
        }
        for &seq in &seqs {
            if free == 0 {
                break;
            }
            if let Some(backup) = self.speculate(seq, &worker, now) {
                free -= 1;
                reply.tasks.push(backup);
            }
        }
        actions.extend(self.check_done_all());
        (reply, actions)
    }

    /// The job, task and attempt `attempt_id` names.
    pub(crate) fn attempt(&self, attempt_id: &str) -> Option<(&Job, &Task, &Attempt)> {
        let &(seq, kind, index, ai) = self.attempts.get(attempt_id)?;
        let job = self.jobs.get(&seq)?;
        let task = job.task(kind, index)?;
        Some((job, task, task.attempts.get(ai)?))
    }

    /// An attempt ended, as reported by `worker_id` (empty: do not check the reporter).
    ///
    /// Reports are ignored unless the attempt is still running *on that worker
    /// incarnation*: a worker declared dead had its attempts rescheduled, so whatever it
    /// reports when it comes back is late.
    pub fn attempt_finished(
        &mut self,
        attempt_id: &str,
        worker_id: &str,
        outcome: Outcome,
        now: i64,
    ) -> Vec<Action> {
        let Some(&(seq, kind, index, ai)) = self.attempts.get(attempt_id) else {
            return Vec::new();
        };
        let addr = match self.attempt(attempt_id) {
            Some((_, _, a)) if a.state == AttemptState::Running => {
                if !worker_id.is_empty() && a.worker != worker_id {
                    return Vec::new(); // from an earlier incarnation of the worker
                }
                self.workers.get(&a.worker).map(|w| w.shuffle_addr.clone())
            }
            _ => return Vec::new(), // repeated, late, or superseded
        };
        let Some(job) = self.jobs.get_mut(&seq) else { return Vec::new() };
        let job_running = job.state == JobState::Running;
        let (reducers, output_dir, opts) = (job.def.reducers, job.def.output.clone(), job.opts);
        let Some(task) = job.task_mut(kind, index) else { return Vec::new() };
        let att = &mut task.attempts[ai];
        att.end_ms = now;
        if let Some(record) = att.replay {
            return self.replay_finished(seq, (kind, index, ai), record, outcome, now);
        }
        match outcome {
            Outcome::Succeeded { counters, output_path, skipped_path } => {
                att.state = AttemptState::Succeeded;
                att.counters = counters;
                att.files = (output_path, skipped_path);
                let duplicate = matches!(task.state, TaskState::Committing | TaskState::Succeeded);
                if duplicate || !job_running {
                    return Vec::new();
                }
                let Some(addr) = addr else {
                    // Its worker was declared dead meanwhile: the output is gone with it.
                    task.attempts[ai].state = AttemptState::Killed;
                    return Vec::new();
                };
                task.winner = Some(ai);
                let killed = supersede(task, ai, now);
                job.job_counters.add(crate::counters::JOB, ended_counter(kind, true), killed);
                let Some(task) = job.task_mut(kind, index) else { return Vec::new() };
                let (out, skipped) = task.attempts[ai].files.clone();
                let mut renames = Vec::new();
                if let Some(s) = skipped {
                    renames.push((s, skipped_name(&output_dir, kind, index)));
                }
                if kind == TaskKind::Map && reducers > 0 {
                    task.output = Some((attempt_id.to_owned(), addr));
                } else {
                    let Some(from) = out else {
                        let msg = "the attempt reported no output file".to_owned();
                        return self.fail_task(seq, kind, index, msg, now);
                    };
                    let name = format!("part-{}-{:05}", kind.letter(), index);
                    renames.push((from, format!("{}/{name}", output_dir.trim_end_matches('/'))));
                }
                if renames.is_empty() {
                    task.state = TaskState::Succeeded;
                    return self.check_done(seq);
                }
                task.state = TaskState::Committing;
                vec![Action::Commit { attempt_id: attempt_id.to_owned(), renames }]
            }
            Outcome::Failed { error, last_record } => {
                att.state = AttemptState::Failed;
                att.error = error;
                if let Some(r) = last_record
                    && opts.skip
                    && !task.cleared.contains(&r)
                {
                    *task.bad_records.entry(r).or_default() += 1;
                    if task.suspect.is_none() {
                        task.suspect = task.next_suspect(opts.skip_after).map(|r| (r, 0));
                    }
                }
                job.job_counters.add(crate::counters::JOB, ended_counter(kind, false), 1);
                if job_running { self.after_failure(seq, kind, index, now) } else { Vec::new() }
            }
            Outcome::Fatal { error } => {
                att.state = AttemptState::Failed;
                att.error = error;
                job.job_counters.add(crate::counters::JOB, ended_counter(kind, false), 1);
                if !job_running {
                    return Vec::new();
                }
                // The code said no retry can help: fail now rather than on every host.
                let job_id = job.id.clone();
                let Some(task) = job.task(kind, index) else { return Vec::new() };
                let msg = failure_report(task, &job_id);
                self.fail_task(seq, kind, index, msg, now)
            }
            Outcome::Killed => {
                att.state = AttemptState::Killed;
                if att.error.is_empty() {
                    att.error = "killed".into();
                }
                if job_running && task.state == TaskState::Running && task.running() == 0 {
                    task.state = TaskState::Pending;
                }
                job.job_counters.add(crate::counters::JOB, ended_counter(kind, true), 1);
                Vec::new()
            }
        }
    }

    /// After an attempt of a task failed: fail the job if the task is out of attempts,
    /// else put it back to pending (unless another attempt of it still runs).
    pub(crate) fn after_failure(
        &mut self,
        seq: u64,
        kind: TaskKind,
        index: u32,
        now: i64,
    ) -> Vec<Action> {
        let Some(job) = self.jobs.get_mut(&seq) else { return Vec::new() };
        let max = job.opts.max_attempts as usize;
        let job_id = job.id.clone();
        let Some(task) = job.task_mut(kind, index) else { return Vec::new() };
        if task.failures() >= max {
            let msg = failure_report(task, &job_id);
            return self.fail_task(seq, kind, index, msg, now);
        }
        if task.running() == 0 && matches!(task.state, TaskState::Running | TaskState::Pending) {
            task.state = TaskState::Pending;
        }
        Vec::new()
    }

    pub(crate) fn fail_task(
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

    /// Ends job `seq`. A failed or killed job's temporaries are cleaned once its attempts
    /// are over ([`Core::tick`] issues the [`Action::AbortJob`] then).
    pub(crate) fn end_job(
        &mut self,
        seq: u64,
        state: JobState,
        error: String,
        now: i64,
    ) -> Vec<Action> {
        let Some(job) = self.jobs.get_mut(&seq) else { return Vec::new() };
        if job.state != JobState::Running {
            return Vec::new();
        }
        job.state = state;
        job.error = error;
        job.finish_ms = now;
        let id = job.id.clone();
        self.ended.push(id.clone());
        // Every worker hears that the job is over: outputs of attempts of earlier
        // incarnations live in the same directories.
        for w in self.workers.values_mut() {
            w.cleanup.push(id.clone());
        }
        if state == JobState::Succeeded { Vec::new() } else { self.abort_if_quiet(seq, now) }
    }

    /// The cleanup of a failed or killed job, once none of its attempts runs (or they have
    /// had a dead-worker timeout to be killed).
    pub(crate) fn abort_if_quiet(&mut self, seq: u64, now: i64) -> Vec<Action> {
        let grace = self.cfg.dead_after_ms;
        let Some(job) = self.jobs.get_mut(&seq) else { return Vec::new() };
        let over = matches!(job.state, JobState::Failed | JobState::Killed);
        if !over || job.cleaned {
            return Vec::new();
        }
        if job.running_attempts() > 0 && now - job.finish_ms < grace {
            return Vec::new();
        }
        job.cleaned = true;
        vec![Action::AbortJob { job_id: job.id.clone(), output: job.def.output.clone() }]
    }

    /// If every task of job `seq` is done, the action that finishes it.
    pub(crate) fn check_done(&mut self, seq: u64) -> Vec<Action> {
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

    fn check_done_all(&mut self) -> Vec<Action> {
        let seqs: Vec<u64> = self.jobs.keys().copied().collect();
        seqs.into_iter().flat_map(|s| self.check_done(s)).collect()
    }

    /// The renames of `attempt_id`'s output finished (or failed with a message).
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
                self.check_done(seq)
            }
            Err(e) => {
                let tid = task.id(&job_id);
                let msg = format!("cannot commit the output of {tid}: {e}");
                self.fail_task(seq, kind, index, msg, now)
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
        let job = self.jobs.get(&seq);
        if job.is_some_and(|j| j.finishing) {
            return Err(Error::FailedPrecondition(format!("job {job_id} is committing")));
        }
        let state = job.map(|j| j.state);
        if state != Some(JobState::Running) {
            let s = state.map_or("unknown", JobState::as_str);
            return Err(Error::FailedPrecondition(format!("job {job_id} is already {s}")));
        }
        Ok(self.end_job(seq, JobState::Killed, "killed by request".into(), now))
    }
}

/// Marks every other running attempt of `task` killed (superseded by attempt `winner`);
/// returns how many. Their workers kill them at their next heartbeat.
fn supersede(task: &mut Task, winner: usize, now: i64) -> u64 {
    let id = task.attempts[winner].id.clone();
    let mut n = 0;
    for (i, a) in task.attempts.iter_mut().enumerate() {
        if i != winner && a.state == AttemptState::Running {
            a.state = AttemptState::Killed;
            a.end_ms = now;
            a.error = format!("killed: {id} finished first");
            n += 1;
        }
    }
    n
}

/// The message of a job whose task ran out of attempts: the task, how each attempt
/// ended, and the last failure in full (for a crash, the end of its stderr).
pub(crate) fn failure_report(task: &Task, job_id: &str) -> String {
    // Replays that crashed on their record were evidence, not failures of the task.
    let failed: Vec<&Attempt> =
        task.attempts.iter().filter(|a| a.state == AttemptState::Failed && !a.excused).collect();
    let last = failed.last().map_or("", |a| a.error.as_str());
    let first_line = last.lines().next().unwrap_or_default();
    let mut msg =
        format!("task {} failed {} times; last error: {first_line}", task.id(job_id), failed.len());
    for a in &task.attempts {
        let why = a.error.lines().next().unwrap_or_default();
        msg.push_str(&format!("\n  {} on {}: {} {why}", a.id, a.worker, a.state.as_str()));
    }
    if last.lines().count() > 1 {
        msg.push_str("\nlast failure:\n");
        msg.push_str(last);
    }
    msg
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::counters as c;
    use crate::spec::Split;

    pub(crate) fn core() -> Core {
        Core::new(
            CoreConfig {
                heartbeat_ms: 100,
                dead_after_ms: 1000,
                locality_delay_ms: 1000,
                max_attempts: 2,
                ..CoreConfig::new("m:1", "c:1")
            },
            7,
        )
    }

    pub(crate) fn split(hosts: &[&str], racks: &[&str]) -> Split {
        Split {
            path: "/in".into(),
            start: 0,
            length: 10,
            file_length: 10,
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            racks: racks.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub(crate) fn job(splits: Vec<Split>, reducers: u32) -> NewJob {
        NewJob { name: "wc".into(), output: "/out".into(), reducers, splits, ..NewJob::default() }
    }

    pub(crate) fn ok(path: Option<&str>) -> Outcome {
        Outcome::Succeeded {
            counters: Default::default(),
            output_path: path.map(str::to_owned),
            skipped_path: None,
        }
    }

    pub(crate) fn reg(c: &mut Core, host: &str) -> String {
        c.register_worker(host, "/a", 4, &format!("{host}:1"), 0).0
    }

    pub(crate) fn beat(
        c: &mut Core,
        w: &str,
        free: u32,
        running: &[&str],
        now: i64,
    ) -> HeartbeatReply {
        let running: Vec<String> = running.iter().map(|s| s.to_string()).collect();
        c.heartbeat(w, free, &running, now).0
    }

    #[test]
    fn node_local_first_then_rack_then_any_after_the_delay() {
        let mut c = core();
        let w1 = c.register_worker("h1", "/a", 4, "h1:1", 0).0;
        let w2 = c.register_worker("h9", "/b", 4, "h9:1", 0).0;
        let (id, _) = c
            .submit(
                job(
                    vec![split(&["h2"], &["/a"]), split(&["h1"], &["/a"]), split(&["h3"], &["/c"])],
                    1,
                ),
                0,
            )
            .unwrap();
        // h1 gets its node-local split, nothing else yet (delay scheduling).
        let r = beat(&mut c, &w1, 4, &[], 0);
        assert_eq!(r.tasks.len(), 1);
        let first = r.tasks[0].attempt_id.clone();
        assert_eq!(r.tasks[0].spec.split.as_ref().unwrap().hosts, ["h1"]);
        assert!(beat(&mut c, &w1, 3, &[&first], 500).tasks.is_empty());
        // After the delay: rack-local for h1 (rack /a).
        let r = beat(&mut c, &w1, 3, &[&first], 1000);
        assert_eq!(r.tasks.len(), 1);
        assert_eq!(r.tasks[0].spec.split.as_ref().unwrap().hosts, ["h2"]);
        // After twice the delay: anything, for a worker on another rack.
        let r = beat(&mut c, &w2, 4, &[], 2000);
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
        let w = reg(&mut c, "h1");
        let w2 = reg(&mut c, "h2");
        let (id, _) = c.submit(job(vec![split(&["h1"], &["/a"])], 1), 0).unwrap();
        let m = beat(&mut c, &w, 2, &[], 0).tasks.remove(0);
        assert!(beat(&mut c, &w2, 2, &[], 1).tasks.is_empty(), "no reduce before the maps finish");
        assert!(c.attempt_finished(&m.attempt_id, &w, ok(None), 2).is_empty());
        let r = beat(&mut c, &w2, 2, &[], 3).tasks.remove(0);
        assert_eq!(r.spec.map_outputs.len(), 1);
        assert_eq!(r.spec.map_outputs[0].shuffle_addr, "h1:1");
        let a =
            c.attempt_finished(&r.attempt_id, &w2, ok(Some("/out/_temporary/x/part-r-00000")), 4);
        assert_eq!(
            a,
            vec![Action::Commit {
                attempt_id: r.attempt_id.clone(),
                renames: vec![(
                    "/out/_temporary/x/part-r-00000".into(),
                    "/out/part-r-00000".into()
                )],
            }]
        );
        // The same report again is ignored.
        assert!(c.attempt_finished(&r.attempt_id, &w2, ok(Some("/x")), 5).is_empty());
        let done = c.commit_finished(&r.attempt_id, Ok(()), 6);
        assert_eq!(done, vec![Action::FinishJob { job_id: id.clone(), output: "/out".into() }]);
        assert_eq!(c.job(&id).unwrap().state, JobState::Running, "running until _SUCCESS");
        c.job_finished(&id, Ok(()), 7);
        assert_eq!(c.job(&id).unwrap().state, JobState::Succeeded);
        // Both workers hear that the job is over.
        assert_eq!(beat(&mut c, &w, 2, &[], 8).finished_jobs, std::slice::from_ref(&id));
        assert_eq!(beat(&mut c, &w2, 2, &[], 8).finished_jobs, [id]);
    }

    #[test]
    fn failures_retry_then_fail_the_job_with_a_report() {
        let mut c = core();
        let w = reg(&mut c, "h1");
        let (id, _) = c.submit(job(vec![split(&["h1"], &["/a"])], 1), 0).unwrap();
        for n in 0..2 {
            let a = beat(&mut c, &w, 2, &[], n).tasks.remove(0);
            let error = "attempt x exit status: 1; stderr ends with:\nboom\nat line 3".to_owned();
            let actions = c.attempt_finished(
                &a.attempt_id,
                &w,
                Outcome::Failed { error, last_record: None },
                n,
            );
            if n == 1 {
                assert_eq!(
                    actions,
                    vec![Action::AbortJob { job_id: id.clone(), output: "/out".into() }],
                    "nothing runs any more: clean up at once"
                );
            }
        }
        let j = c.job(&id).unwrap();
        assert_eq!(j.state, JobState::Failed);
        assert!(
            j.error.starts_with(
                "task task_7_0001_m_000000 failed 2 times; last error: attempt x exit status: 1"
            ),
            "{}",
            j.error
        );
        assert!(
            j.error.contains("attempt_7_0001_m_000000_0 on worker-0001-h1: failed"),
            "{}",
            j.error
        );
        assert!(j.error.ends_with("boom\nat line 3"), "{}", j.error);
        assert_eq!(j.all_counters().get(c::JOB, c::NUM_FAILED_MAPS), 2);
    }

    #[test]
    fn killed_jobs_kill_their_attempts_then_clean_up_and_unknown_workers_reregister() {
        let mut c = core();
        let w = reg(&mut c, "h1");
        let (id, _) = c.submit(job(vec![split(&["h1"], &["/a"])], 1), 0).unwrap();
        let a = beat(&mut c, &w, 2, &[], 0).tasks.remove(0);
        assert!(c.kill_job(&id, 1).unwrap().is_empty(), "cleanup waits for the attempt");
        assert!(c.kill_job(&id, 1).is_err());
        let r = beat(&mut c, &w, 1, &[&a.attempt_id], 2);
        assert_eq!(r.kill, std::slice::from_ref(&a.attempt_id));
        assert!(c.attempt_finished(&a.attempt_id, &w, Outcome::Killed, 3).is_empty());
        assert_eq!(c.tick(4), vec![Action::AbortJob { job_id: id.clone(), output: "/out".into() }]);
        assert!(c.tick(5).is_empty(), "cleaned once");
        assert!(beat(&mut c, "nobody", 1, &[], 2).reregister);
    }

    #[test]
    fn an_empty_job_finishes_at_once_and_reduces_spread() {
        let mut c = core();
        let (_, actions) = c.submit(job(Vec::new(), 0), 0).unwrap();
        assert!(matches!(actions[0], Action::FinishJob { .. }));
        let w1 = c.register_worker("h1", "/a", 2, "h1:1", 0).0;
        let w2 = c.register_worker("h2", "/a", 2, "h2:1", 0).0;
        c.submit(job(Vec::new(), 2), 0).unwrap();
        assert_eq!(beat(&mut c, &w1, 2, &[], 1).tasks.len(), 1, "one of two reduces per worker");
        assert_eq!(beat(&mut c, &w2, 2, &[], 1).tasks.len(), 1);
    }

    #[test]
    fn bad_options_are_refused_at_submit() {
        let mut c = core();
        let mut j = job(Vec::new(), 0);
        j.conf.set(crate::config::keys::SKIP_AFTER, "zero");
        assert!(c.submit(j, 0).is_err());
    }
}
