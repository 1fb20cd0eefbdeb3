//! The coordinator's vocabulary: jobs, tasks, attempts and workers as the scheduling core
//! ([`super::core`]) keeps them, the events' payloads ([`Outcome`]) and the side effects it
//! asks for ([`Action`]). Plain data with small queries; every decision is in the core.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{JobConf, keys};
use crate::counters::Counters;
use crate::error::{Error, Result};
use crate::job_token::JobToken;
use crate::spec::{Split, TaskKind, TaskSpec};

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The chunk store master, passed to tasks.
    pub master: String,
    /// The coordinator's own address, passed to tasks.
    pub coordinator: String,
    /// Expected heartbeat interval of workers, in ms.
    pub heartbeat_ms: i64,
    /// Silence after which a worker is declared dead, in ms.
    pub dead_after_ms: i64,
    /// Delay-scheduling wait before a rack-local map (twice this: any map), in ms.
    pub locality_delay_ms: i64,
    /// Attempts per task before the job fails (a job may override it).
    pub max_attempts: u32,
    /// An attempt making no progress for this long is killed by its worker (0 = never;
    /// a job may override it).
    pub task_timeout_ms: u64,
    /// A backup attempt starts once an attempt has run this many times the median
    /// duration of the finished tasks of its phase ...
    pub speculative_slowness: f64,
    /// ... and at least this much longer than that median, in ms.
    pub speculative_lag_ms: i64,
}

impl CoreConfig {
    /// Defaults for the given addresses (Hadoop's numbers where it has them).
    pub fn new(master: &str, coordinator: &str) -> CoreConfig {
        CoreConfig {
            master: master.to_owned(),
            coordinator: coordinator.to_owned(),
            heartbeat_ms: 1000,
            dead_after_ms: 10_000,
            locality_delay_ms: 1000,
            max_attempts: 4,
            task_timeout_ms: 600_000,
            speculative_slowness: 2.0,
            speculative_lag_ms: 5000,
        }
    }
}

/// Isolated replays a suspect record must crash in before it is skipped, by default.
///
/// Together with the two crashed attempts that make a record a suspect, a blameless
/// record is skipped only if five attempts in a row crash on it: at a (very high)
/// background crash rate of 1/3 per attempt that is 1 task in 243, and then loudly
/// (see `mapred.skip.allowed`); at 1 % it is one in ten billion.
pub const DEFAULT_SKIP_REPLAYS: u64 = 3;

/// Per-job fault-tolerance options, from the job's configuration over the core's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobOptions {
    /// Attempts per task before the job fails.
    pub max_attempts: u32,
    /// No-progress timeout of an attempt, in ms (0 = none).
    pub task_timeout_ms: u64,
    /// Whether records shown to crash deterministically are skipped by later attempts.
    pub skip: bool,
    /// Crashed attempts a record must have caused before it is a suspect (and replayed).
    pub skip_after: u32,
    /// Isolated replays of a suspect that must all crash before it is skipped.
    pub skip_replays: u32,
    /// Skipped records the job may have and still count as a clean success.
    pub skip_allowed: u64,
    /// Whether slow attempts get backups.
    pub speculative: bool,
}

impl JobOptions {
    /// Reads the options from `conf`, defaulting to `cfg`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a malformed or out-of-range option.
    pub fn from_conf(conf: &JobConf, cfg: &CoreConfig) -> Result<JobOptions> {
        let max_attempts = conf.get_u64(keys::MAX_ATTEMPTS, u64::from(cfg.max_attempts))?;
        if !(1..=100).contains(&max_attempts) {
            return Err(Error::InvalidArgument(format!(
                "job option {}={max_attempts} must be between 1 and 100",
                keys::MAX_ATTEMPTS
            )));
        }
        let in_range = |key: &str, default: u64, min: u64, max: u64| -> Result<u64> {
            let v = conf.get_u64(key, default)?;
            if !(min..=max).contains(&v) {
                return Err(Error::InvalidArgument(format!(
                    "job option {key}={v} must be between {min} and {max}"
                )));
            }
            Ok(v)
        };
        let skip_after = in_range(keys::SKIP_AFTER, 2, 1, 100)?;
        let skip_replays = in_range(keys::SKIP_REPLAYS, DEFAULT_SKIP_REPLAYS, 1, 20)?;
        Ok(JobOptions {
            max_attempts: max_attempts as u32,
            task_timeout_ms: conf.get_u64(keys::TASK_TIMEOUT_MS, cfg.task_timeout_ms)?,
            skip: conf.get_bool(keys::SKIP_ENABLED, true)?,
            skip_after: skip_after as u32,
            skip_replays: skip_replays as u32,
            skip_allowed: conf.get_u64(keys::SKIP_ALLOWED, 0)?,
            speculative: conf.get_bool(keys::SPECULATIVE, true)?,
        })
    }
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
    /// Reported failure (or its map output could not be fetched).
    Failed,
    /// Killed: on request, superseded by another attempt, or lost with its worker.
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
    /// Success, with counters and the files to commit.
    Succeeded {
        /// Its counters.
        counters: Counters,
        /// The temporary DFS file to commit (reduce, or map of a map-only job).
        output_path: Option<String>,
        /// The temporary DFS file listing the records it skipped.
        skipped_path: Option<String>,
    },
    /// Failure with a reason.
    Failed {
        /// Why (for a crash: how the process ended and the end of its stderr).
        error: String,
        /// For a crash (panic, abort, signal, hang): the record it was processing.
        last_record: Option<u64>,
    },
    /// Failure the job's code marked deterministic (`mapred::Error::Fatal`): retrying
    /// cannot help, so the job fails at once.
    Fatal {
        /// Why.
        error: String,
    },
    /// Killed on request.
    Killed,
}

/// Something the service must do in the outside world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Rename each `(from, to)` in the DFS (replacing `to`), then report
    /// [`super::core::Core::commit_finished`].
    Commit {
        /// The attempt whose output it is.
        attempt_id: String,
        /// Temporary file -> final name.
        renames: Vec<(String, String)>,
    },
    /// Delete `OUT/_temporary`, write `OUT/_SUCCESS`, then report
    /// [`super::core::Core::job_finished`].
    FinishJob {
        /// The job.
        job_id: String,
        /// Its output directory.
        output: String,
    },
    /// Delete `OUT/_temporary` of a failed or killed job, once its attempts are over
    /// (best effort).
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
    /// The worker (incarnation) running it.
    pub worker: String,
    /// That worker's host.
    pub host: String,
    /// Its state.
    pub state: AttemptState,
    /// Start time (ms since the epoch).
    pub start_ms: i64,
    /// End time (0 while running).
    pub end_ms: i64,
    /// Locality of a map attempt.
    pub locality: Locality,
    /// Why it failed or was killed.
    pub error: String,
    /// Counters it reported.
    pub counters: Counters,
    /// A speculative backup of a slow attempt.
    pub backup: bool,
    /// For a replay: the suspect record it runs alone, in a fresh process, to tell
    /// whether the record crashes deterministically (its output is discarded).
    pub replay: Option<u64>,
    /// A failure that does not count toward the task's attempts: a replay that crashed
    /// on its record, which is the evidence it was run for.
    pub(crate) excused: bool,
    /// Its temporary output and skipped-records files, kept for the commit.
    pub(crate) files: (Option<String>, Option<String>),
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
    /// Record index -> ordinary attempts it crashed (with skipping on).
    pub bad_records: BTreeMap<u64, u32>,
    /// The suspect being replayed alone: (record, replays that crashed on it). While set,
    /// the task's next attempts are replays of it.
    pub suspect: Option<(u64, u32)>,
    /// Records whose replays all crashed: later attempts skip them.
    pub confirmed: BTreeSet<u64>,
    /// Records that ran fine alone: never suspected again, whatever crashes on them.
    pub cleared: BTreeSet<u64>,
}

impl Task {
    pub(crate) fn new(kind: TaskKind, index: u32, split: Option<Split>) -> Task {
        Task {
            kind,
            index,
            split,
            state: TaskState::Pending,
            attempts: Vec::new(),
            winner: None,
            output: None,
            bad_records: BTreeMap::new(),
            suspect: None,
            confirmed: BTreeSet::new(),
            cleared: BTreeSet::new(),
        }
    }

    /// The task's id, `task_<epoch>_<seq>_m_000003`.
    pub fn id(&self, job_id: &str) -> String {
        format!(
            "task{}_{}_{:06}",
            job_id.get(3..).unwrap_or(job_id),
            self.kind.letter(),
            self.index
        )
    }

    /// Attempts still running.
    pub fn running(&self) -> usize {
        self.attempts.iter().filter(|a| a.state == AttemptState::Running).count()
    }

    /// Attempts that failed, but for replays that crashed on their record.
    pub fn failures(&self) -> usize {
        self.attempts.iter().filter(|a| a.state == AttemptState::Failed && !a.excused).count()
    }

    /// Hosts where an attempt of this task failed.
    pub fn failed_on(&self, host: &str) -> bool {
        self.attempts.iter().any(|a| a.state == AttemptState::Failed && a.host == host)
    }

    /// Records to skip: those confirmed by their replays, sorted.
    pub fn skip_list(&self) -> Vec<u64> {
        self.confirmed.iter().copied().collect()
    }

    /// The first record that crashed at least `after` ordinary attempts and is neither
    /// cleared nor confirmed yet: the next to replay.
    pub fn next_suspect(&self, after: u32) -> Option<u64> {
        self.bad_records
            .iter()
            .find(|&(r, &n)| n >= after && !self.cleared.contains(r) && !self.confirmed.contains(r))
            .map(|(&r, _)| r)
    }

    /// Duration of the winning attempt, if the task is done.
    pub(crate) fn winner_duration(&self) -> Option<i64> {
        let a = self.attempts.get(self.winner?)?;
        (a.end_ms > 0).then_some(a.end_ms - a.start_ms)
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
    /// Submitting user (the caller of `SubmitJob`): the job's owner.
    pub user: String,
    /// Its groups as its token proved them (token mode; empty in simple mode, where the
    /// master resolves them): the tokens minted for the job name them.
    pub groups: Vec<String>,
    /// One per map task, as the job's input formats cut its input at submit.
    pub splits: Vec<Split>,
    /// The job's secret, for its shuffle (made at submit, not journaled: a job does not
    /// outlive its coordinator).
    pub token: JobToken,
}

/// A job and its tasks.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its id, `job_<epoch>_<seq>`.
    pub id: String,
    /// What was submitted.
    pub def: NewJob,
    /// Its fault-tolerance options.
    pub opts: JobOptions,
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
    /// Launched/failed/killed attempts and locality.
    pub job_counters: Counters,
    /// Set once `_SUCCESS` is being written.
    pub finishing: bool,
    /// Set once a failed or killed job's temporaries are being cleaned.
    pub cleaned: bool,
    /// Since when the job has been passing up non-local slots (delay scheduling).
    pub(crate) wait_since: Option<i64>,
}

impl Job {
    /// All counters: the winning attempts' task counters (so re-runs and duplicates
    /// never double-count) and the job counters.
    pub fn all_counters(&self) -> Counters {
        let mut c = Counters::new();
        for t in self.maps.iter().chain(&self.reduces) {
            if t.state == TaskState::Succeeded
                && let Some(a) = t.winner.and_then(|w| t.attempts.get(w))
            {
                c.merge(&a.counters);
            }
        }
        c.merge(&self.job_counters);
        c
    }

    /// Records (map) and key groups (reduce) the winning attempts skipped.
    pub fn skipped_records(&self) -> u64 {
        use crate::counters as c;
        let all = self.all_counters();
        all.get(c::TASK, c::MAP_SKIPPED_RECORDS) + all.get(c::TASK, c::REDUCE_SKIPPED_GROUPS)
    }

    /// Maps done.
    pub fn maps_done(&self) -> usize {
        self.maps.iter().filter(|t| t.state == TaskState::Succeeded).count()
    }

    /// Reduces done.
    pub fn reduces_done(&self) -> usize {
        self.reduces.iter().filter(|t| t.state == TaskState::Succeeded).count()
    }

    /// Attempts still running, of any task.
    pub fn running_attempts(&self) -> usize {
        self.maps.iter().chain(&self.reduces).map(Task::running).sum()
    }

    /// Whether map outputs are still needed: some reduce has not produced its output.
    pub fn needs_map_outputs(&self) -> bool {
        self.def.reducers > 0
            && self
                .reduces
                .iter()
                .any(|t| !matches!(t.state, TaskState::Committing | TaskState::Succeeded))
    }

    pub(crate) fn task(&self, kind: TaskKind, index: u32) -> Option<&Task> {
        match kind {
            TaskKind::Map => self.maps.get(index as usize),
            TaskKind::Reduce => self.reduces.get(index as usize),
        }
    }

    pub(crate) fn task_mut(&mut self, kind: TaskKind, index: u32) -> Option<&mut Task> {
        match kind {
            TaskKind::Map => self.maps.get_mut(index as usize),
            TaskKind::Reduce => self.reduces.get_mut(index as usize),
        }
    }
}

/// A registered worker (one incarnation: a worker that registers again gets a new id).
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
    pub(crate) cleanup: Vec<String>,
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
    /// The worker is unknown (or was declared dead): register again.
    pub reregister: bool,
}

/// Counter name for an attempt of `kind` that failed (or, `killed`, was killed).
pub(crate) fn ended_counter(kind: TaskKind, killed: bool) -> &'static str {
    use crate::counters as c;
    match (kind, killed) {
        (TaskKind::Map, false) => c::NUM_FAILED_MAPS,
        (TaskKind::Reduce, false) => c::NUM_FAILED_REDUCES,
        (TaskKind::Map, true) => c::NUM_KILLED_MAPS,
        (TaskKind::Reduce, true) => c::NUM_KILLED_REDUCES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_options_default_and_validate() {
        let cfg = CoreConfig::new("m:1", "c:1");
        let o = JobOptions::from_conf(&JobConf::new(), &cfg).unwrap();
        assert_eq!((o.max_attempts, o.skip, o.skip_after, o.speculative), (4, true, 2, true));
        assert_eq!((o.skip_replays, o.skip_allowed), (3, 0));
        assert_eq!(o.task_timeout_ms, 600_000);
        let mut conf = JobConf::new();
        conf.set(keys::MAX_ATTEMPTS, "0");
        assert!(JobOptions::from_conf(&conf, &cfg).is_err());
        conf.set(keys::MAX_ATTEMPTS, "7");
        conf.set(keys::SPECULATIVE, "false");
        let o = JobOptions::from_conf(&conf, &cfg).unwrap();
        assert_eq!((o.max_attempts, o.speculative), (7, false));
        for (key, bad) in [
            (keys::SKIP_REPLAYS, "0"),
            (keys::SKIP_REPLAYS, "21"),
            (keys::SKIP_ALLOWED, "-1"),
            (keys::SKIP_ALLOWED, "some"),
        ] {
            let mut c = conf.clone();
            c.set(key, bad);
            assert!(JobOptions::from_conf(&c, &cfg).is_err(), "{key}={bad}");
        }
        conf.set(keys::SKIP_REPLAYS, "1");
        conf.set(keys::SKIP_ALLOWED, "12");
        let o = JobOptions::from_conf(&conf, &cfg).unwrap();
        assert_eq!((o.skip_replays, o.skip_allowed), (1, 12));
    }

    #[test]
    fn suspects_need_enough_crashes_and_only_confirmed_records_are_skipped() {
        let mut t = Task::new(TaskKind::Map, 0, None);
        t.bad_records.insert(5, 2);
        t.bad_records.insert(3, 1);
        t.bad_records.insert(9, 3);
        assert_eq!(t.next_suspect(2), Some(5));
        assert_eq!(t.next_suspect(1), Some(3));
        assert!(t.skip_list().is_empty(), "suspects are not skipped");
        t.cleared.insert(5);
        assert_eq!(t.next_suspect(2), Some(9));
        t.confirmed.insert(9);
        assert_eq!(t.next_suspect(2), None);
        assert_eq!(t.skip_list(), [9]);
    }
}
