//! Defining jobs and registering them in a job binary.
//!
//! A [`Job`] ties a mapper to an optional combiner, reducer and partitioner, with default
//! options; [`Registry`] collects a binary's jobs by name and is handed to
//! [`crate::runtime::main`]. Registration erases the user's types: each job becomes a pair
//! of functions "run a map attempt" / "run a reduce attempt" that the task runtime calls,
//! so one binary can carry many jobs with unrelated key and value types.
//!
//! ```no_run
//! use mapred::{Context, Input, Job, Mapper, Reducer, Registry, Values};
//!
//! struct Tokenize;
//! impl Mapper for Tokenize {
//!     type Key = [u8];
//!     type Value = u64;
//!     fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, [u8], u64>) -> mapred::Result<()> {
//!         for w in input.line().split(|b| *b == b' ').filter(|w| !w.is_empty()) {
//!             ctx.emit(w, &1)?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! struct Sum;
//! impl Reducer for Sum {
//!     type KeyIn = Vec<u8>;
//!     type ValueIn = u64;
//!     type KeyOut = [u8];
//!     type ValueOut = u64;
//!     fn reduce(&mut self, key: Vec<u8>, values: &mut Values<'_, u64>, ctx: &mut Context<'_, [u8], u64>) -> mapred::Result<()> {
//!         let n: u64 = values.sum();
//!         ctx.emit(&key, &n)
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let wc = Job::new("wordcount", "counts words", |_| Ok(Tokenize))
//!         .combiner(|_| |a: &mut u64, b: u64| *a += b)
//!         .reducer(|_| Ok(Sum));
//!     mapred::runtime::main(Registry::new().register(wc))
//! }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::runtime::Handle;

use crate::api::{Combiner, HashPartitioner, Mapper, Partitioner, Reducer};
use crate::config::JobConf;
use crate::error::{Error, Result};
use crate::spec::InputFormat;
use crate::task::{TaskEnv, map_task, map_task_combining, reduce_task};

/// Runs one attempt of a task (type-erased job code).
pub(crate) type Runner = Arc<dyn Fn(&mut TaskEnv) -> Result<Option<String>> + Send + Sync>;
type Factory<T> = Arc<dyn Fn(&JobConf) -> Result<T> + Send + Sync>;
type MapWith<M> =
    Arc<dyn Fn(&mut TaskEnv, M, Arc<dyn Partitioner>) -> Result<Option<String>> + Send + Sync>;
/// Runs on the submitting side before the job is submitted (e.g. TeraSort's sampling).
pub type SubmitHook = Arc<dyn Fn(&mut SubmitContext) -> Result<()> + Send + Sync>;

/// A check of a job's options run in the submitting process (see [`Job::validate`]).
pub type Validator = Arc<dyn Fn(&JobConf) -> Result<()> + Send + Sync>;

/// How a job's number of reduce tasks may be chosen at submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceTasks {
    /// No reducer: a map-only job (`--reducers` must be absent or 0).
    None,
    /// This many unless `--reducers N` (N >= 1) says otherwise.
    Default(u32),
    /// Exactly this many (a global top-k needs one); `--reducers` may only repeat it.
    Exactly(u32),
}

impl ReduceTasks {
    /// The reduce tasks of a run of job `job` given `--reducers` (`asked`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a contradiction: reducers asked of a map-only job,
    /// 0 asked of a job with a reducer, or another count than a job's exact one.
    pub fn choose(self, job: &str, asked: Option<u32>) -> Result<u32> {
        match (self, asked) {
            (ReduceTasks::None, None | Some(0)) => Ok(0),
            (ReduceTasks::None, Some(n)) => Err(Error::InvalidArgument(format!(
                "job {job} is map-only: --reducers {n} has nothing to run"
            ))),
            (ReduceTasks::Default(n) | ReduceTasks::Exactly(n), None) => Ok(n),
            (ReduceTasks::Default(_) | ReduceTasks::Exactly(_), Some(0)) => {
                Err(Error::InvalidArgument(format!(
                    "job {job} has a reducer: --reducers 0 would silently drop it"
                )))
            }
            (ReduceTasks::Default(_), Some(n)) => Ok(n),
            (ReduceTasks::Exactly(n), Some(m)) if m == n => Ok(n),
            (ReduceTasks::Exactly(n), Some(m)) => Err(Error::InvalidArgument(format!(
                "job {job} needs exactly {n} reduce task{}: --reducers {m} contradicts it",
                if n == 1 { "" } else { "s" }
            ))),
        }
    }
}

/// What a [`SubmitHook`] can see and change.
#[derive(Debug)]
pub struct SubmitContext {
    /// A client of the chunk store.
    pub client: dfs::Client,
    /// The runtime the client runs on (the hook runs on a blocking thread).
    pub rt: Handle,
    /// The input paths as given.
    pub inputs: Vec<String>,
    /// The number of reduce tasks.
    pub reducers: u32,
    /// The job's configuration, which the hook may extend.
    pub conf: JobConf,
}

impl SubmitContext {
    /// The input files (directories expanded, `_`/`.` names skipped) and their lengths.
    ///
    /// # Errors
    /// DFS errors; [`Error::NotFound`] for a missing input.
    pub fn input_files(&self) -> Result<Vec<(String, u64)>> {
        let splits = self.rt.block_on(crate::format::compute_splits(&self.client, &self.inputs))?;
        let mut files: Vec<(String, u64)> =
            splits.into_iter().map(|s| (s.path, s.file_length)).collect();
        files.dedup();
        Ok(files)
    }

    /// Reads `len` bytes at `offset` of `path`.
    ///
    /// # Errors
    /// DFS errors.
    pub fn read(&self, path: &str, offset: u64, len: u64) -> Result<Bytes> {
        self.rt.block_on(async {
            let r = self.client.open(path).await?;
            Ok(r.read_range(offset, len).await?)
        })
    }
}

/// A job definition being built (see the module documentation).
pub struct Job<M: Mapper> {
    name: String,
    about: String,
    mapper: Factory<M>,
    combine: Option<MapWith<M>>,
    reducer: Option<Runner>,
    partitioner: Factory<Arc<dyn Partitioner>>,
    defaults: JobConf,
    reducers: u32,
    exact_reducers: bool,
    input_format: InputFormat,
    before_submit: Option<SubmitHook>,
    validate: Option<Validator>,
}

impl<M: Mapper> std::fmt::Debug for Job<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<M: Mapper> Job<M> {
    /// A map-only job named `name` whose mappers `mapper` builds (from the job conf).
    pub fn new(
        name: &str,
        about: &str,
        mapper: impl Fn(&JobConf) -> Result<M> + Send + Sync + 'static,
    ) -> Job<M> {
        Job {
            name: name.to_owned(),
            about: about.to_owned(),
            mapper: Arc::new(mapper),
            combine: None,
            reducer: None,
            partitioner: Arc::new(|_| Ok(Arc::new(HashPartitioner) as Arc<dyn Partitioner>)),
            defaults: JobConf::new(),
            reducers: 0,
            exact_reducers: false,
            input_format: InputFormat::Text,
            before_submit: None,
            validate: None,
        }
    }

    /// Adds a reducer (and makes the default number of reduce tasks 1 if it was 0).
    pub fn reducer<R: Reducer>(
        mut self,
        reducer: impl Fn(&JobConf) -> Result<R> + Send + Sync + 'static,
    ) -> Job<M> {
        self.reducer = Some(Arc::new(move |env: &mut TaskEnv| {
            let r = reducer(&env.spec.conf)?;
            reduce_task(env, r)
        }));
        if self.reducers == 0 {
            self.reducers = 1;
        }
        self
    }

    /// Adds a map-side combiner (see [`Combiner`]).
    pub fn combiner<C>(mut self, combiner: impl Fn(&JobConf) -> C + Send + Sync + 'static) -> Job<M>
    where
        M::Value: Serialize + DeserializeOwned + Clone + Sized,
        C: Combiner<M::Value>,
    {
        self.combine = Some(Arc::new(move |env: &mut TaskEnv, m: M, p| {
            let c = combiner(&env.spec.conf);
            map_task_combining(env, m, p, c)
        }));
        self
    }

    /// Replaces the default hash partitioner.
    pub fn partitioner(
        mut self,
        partitioner: impl Fn(&JobConf) -> Result<Arc<dyn Partitioner>> + Send + Sync + 'static,
    ) -> Job<M> {
        self.partitioner = Arc::new(partitioner);
        self
    }

    /// Sets a default job option (`-D` at submit overrides it).
    pub fn conf(mut self, key: &str, value: &str) -> Job<M> {
        self.defaults.set(key, value);
        self
    }

    /// Sets the default number of reduce tasks (`--reducers N`, N >= 1, overrides it).
    pub fn reducers(mut self, n: u32) -> Job<M> {
        self.reducers = n;
        self
    }

    /// Requires exactly `n` reduce tasks (say 1, for a global top-k): a submit asking
    /// for another count is refused.
    pub fn exact_reducers(mut self, n: u32) -> Job<M> {
        self.reducers = n;
        self.exact_reducers = true;
        self
    }

    /// Checks the job's options in the submitting process, before anything is contacted:
    /// a missing or malformed option fails the submit with one message instead of every
    /// attempt on every worker.
    pub fn validate(
        mut self,
        check: impl Fn(&JobConf) -> Result<()> + Send + Sync + 'static,
    ) -> Job<M> {
        self.validate = Some(Arc::new(check));
        self
    }

    /// Sets how input is read (default text).
    pub fn input_format(mut self, format: InputFormat) -> Job<M> {
        self.input_format = format;
        self
    }

    /// Runs `hook` at submit time, before the job reaches the coordinator.
    pub fn before_submit(
        mut self,
        hook: impl Fn(&mut SubmitContext) -> Result<()> + Send + Sync + 'static,
    ) -> Job<M> {
        self.before_submit = Some(Arc::new(hook));
        self
    }
}

/// A registered, type-erased job.
pub struct JobDef {
    /// Its name.
    pub name: String,
    /// One line saying what it does.
    pub about: String,
    pub(crate) map: Runner,
    pub(crate) reduce: Option<Runner>,
    /// Default options.
    pub defaults: JobConf,
    /// Default number of reduce tasks.
    pub reducers: u32,
    /// How the number of reduce tasks may be chosen.
    pub reduce_tasks: ReduceTasks,
    /// How input is read.
    pub input_format: InputFormat,
    /// Submit-time hook.
    pub before_submit: Option<SubmitHook>,
    /// Submit-time check of the options.
    pub validate: Option<Validator>,
}

impl std::fmt::Debug for JobDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobDef")
            .field("name", &self.name)
            .field("reducers", &self.reducers)
            .finish_non_exhaustive()
    }
}

impl JobDef {
    /// True if the job has a reducer.
    pub fn has_reducer(&self) -> bool {
        self.reduce.is_some()
    }
}

impl<M: Mapper> From<Job<M>> for JobDef {
    fn from(j: Job<M>) -> JobDef {
        let Job {
            name,
            about,
            mapper,
            combine,
            reducer,
            partitioner,
            defaults,
            reducers,
            exact_reducers,
            input_format,
            before_submit,
            validate,
        } = j;
        let map: Runner = Arc::new(move |env: &mut TaskEnv| {
            let m = mapper(&env.spec.conf)?;
            let p = partitioner(&env.spec.conf)?;
            match &combine {
                Some(run) => run(env, m, p),
                None => map_task(env, m, p),
            }
        });
        let reducers = if reducer.is_some() { reducers } else { 0 };
        let reduce_tasks = match (reducer.is_some(), exact_reducers) {
            (false, _) => ReduceTasks::None,
            (true, false) => ReduceTasks::Default(reducers),
            (true, true) => ReduceTasks::Exactly(reducers),
        };
        JobDef {
            name,
            about,
            map,
            reduce: reducer,
            defaults,
            reducers,
            reduce_tasks,
            input_format,
            before_submit,
            validate,
        }
    }
}

/// The jobs of a binary, by name.
#[derive(Debug, Default)]
pub struct Registry {
    jobs: BTreeMap<String, JobDef>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a job (replacing one of the same name).
    pub fn register(mut self, job: impl Into<JobDef>) -> Registry {
        let def = job.into();
        self.jobs.insert(def.name.clone(), def);
        self
    }

    /// The job called `name`.
    pub fn get(&self, name: &str) -> Option<&JobDef> {
        self.jobs.get(name)
    }

    /// The job called `name`, or an error listing the known ones.
    ///
    /// # Errors
    /// [`Error::NotFound`] naming the job and the known names.
    pub fn find(&self, name: &str) -> Result<&JobDef> {
        self.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.jobs.keys().map(String::as_str).collect();
            Error::NotFound(format!("unknown job {name:?} (known: {})", known.join(", ")))
        })
    }

    /// Every job, by name.
    pub fn jobs(&self) -> impl Iterator<Item = &JobDef> {
        self.jobs.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Context, Input, Values};

    #[test]
    fn reduce_task_counts_refuse_contradictions() {
        assert_eq!(ReduceTasks::None.choose("m", None).unwrap(), 0);
        assert_eq!(ReduceTasks::None.choose("m", Some(0)).unwrap(), 0);
        let err = ReduceTasks::None.choose("m", Some(3)).unwrap_err().to_string();
        assert!(err.contains("map-only"), "{err}");
        assert_eq!(ReduceTasks::Default(2).choose("wc", None).unwrap(), 2);
        assert_eq!(ReduceTasks::Default(2).choose("wc", Some(8)).unwrap(), 8);
        let err = ReduceTasks::Default(2).choose("wc", Some(0)).unwrap_err().to_string();
        assert!(err.contains("--reducers 0 would silently drop it"), "{err}");
        assert_eq!(ReduceTasks::Exactly(1).choose("top", None).unwrap(), 1);
        assert_eq!(ReduceTasks::Exactly(1).choose("top", Some(1)).unwrap(), 1);
        let err = ReduceTasks::Exactly(1).choose("top", Some(4)).unwrap_err().to_string();
        assert_eq!(err, "job top needs exactly 1 reduce task: --reducers 4 contradicts it");
    }

    struct Words;
    impl Mapper for Words {
        type Key = str;
        type Value = u64;
        fn map(&mut self, _i: Input<'_>, _c: &mut Context<'_, str, u64>) -> Result<()> {
            Ok(())
        }
    }
    struct Sum;
    impl Reducer for Sum {
        type KeyIn = String;
        type ValueIn = u64;
        type KeyOut = str;
        type ValueOut = u64;
        fn reduce(
            &mut self,
            k: String,
            v: &mut Values<'_, u64>,
            c: &mut Context<'_, str, u64>,
        ) -> Result<()> {
            let n = v.sum();
            c.emit(&k, &n)
        }
    }

    #[test]
    fn registry_finds_jobs_by_name() {
        let reg = Registry::new()
            .register(
                Job::new("wc", "words", |_| Ok(Words))
                    .reducer(|_| Ok(Sum))
                    .combiner(|_| |a: &mut u64, b: u64| *a += b),
            )
            .register(Job::new("maponly", "m", |_| Ok(Words)).conf("x", "1"));
        assert_eq!(reg.find("wc").unwrap().reducers, 1);
        assert!(reg.find("wc").unwrap().has_reducer());
        assert_eq!(reg.find("maponly").unwrap().reducers, 0);
        assert_eq!(reg.find("maponly").unwrap().defaults.get("x"), Some("1"));
        let err = reg.find("nope").unwrap_err().to_string();
        assert_eq!(err, "unknown job \"nope\" (known: maponly, wc)");
    }
}
