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
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::runtime::Handle;

use crate::api::{Combiner, HashPartitioner, Mapper, Partitioner, Reducer};
use crate::config::JobConf;
use crate::error::{Error, Result};
use crate::input::{InputFormat, InputPattern, Routes, TextInput};
use crate::key::ToText;
use crate::mapside::MapSink;
use crate::spec::Split;
use crate::task::{TaskEnv, discard, reduce_task, run_map};

/// Runs one attempt of a task (type-erased job code).
pub(crate) type Runner = Arc<dyn Fn(&mut TaskEnv) -> Result<Option<String>> + Send + Sync>;
type Factory<T> = Arc<dyn Fn(&JobConf) -> Result<T> + Send + Sync>;
/// Makes the sink a map attempt's pairs go to (type-erased over the mapper).
type SinkMaker<K, V> =
    Arc<dyn Fn(&TaskEnv, Arc<dyn Partitioner>) -> Result<Box<dyn MapSink<K, V>>> + Send + Sync>;
/// Runs one mapper type over a split read by a format into a sink: what a job's default
/// mapper and each bound input's mapper become, so mappers of different types that emit
/// the same pairs can share a job.
type MapRun<K, V> = Arc<
    dyn Fn(&mut TaskEnv, &dyn InputFormat, Box<dyn MapSink<K, V>>) -> Result<Option<String>>
        + Send
        + Sync,
>;
/// An input bound to its own format and mapper ([`Job::input`]).
type Bound<K, V> = (InputPattern, Arc<dyn InputFormat>, MapRun<K, V>);
/// Runs on the submitting side before the job is submitted (e.g. TeraSort's sampling).
pub type SubmitHook = Arc<dyn Fn(&mut SubmitContext) -> Result<()> + Send + Sync>;

/// A check of a job's options run in the submitting process (see [`Job::validate`]).
pub type Validator = Arc<dyn Fn(&JobConf) -> Result<()> + Send + Sync>;

/// The stage of a [`Job`] without a reducer: its mapper's pairs are the job's output, so
/// their types must have a text form ([`ToText`]) to register it.
#[derive(Debug, Clone, Copy)]
pub enum MapOnly {}

/// The stage of a [`Job`] with a reducer: its mapper's pairs only travel to the reducers,
/// and need no text form.
#[derive(Debug, Clone, Copy)]
pub enum WithReducer {}

fn map_run<M: Mapper>(
    mapper: impl Fn(&JobConf) -> Result<M> + Send + Sync + 'static,
) -> MapRun<M::Key, M::Value> {
    Arc::new(move |env: &mut TaskEnv, format: &dyn InputFormat, sink| {
        let m = mapper(&env.spec.conf)?;
        run_map(env, m, format, sink)
    })
}

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
        let files = self.rt.block_on(crate::input::list_input_files(&self.client, &self.inputs))?;
        Ok(files.into_iter().filter(|f| f.length > 0).map(|f| (f.path, f.length)).collect())
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

/// A job definition being built (see the module documentation). `S` is [`MapOnly`]
/// until [`Job::reducer`] makes it [`WithReducer`].
pub struct Job<M: Mapper, S = MapOnly> {
    name: String,
    about: String,
    mapper: MapRun<M::Key, M::Value>,
    inputs: Vec<Bound<M::Key, M::Value>>,
    combine: Option<SinkMaker<M::Key, M::Value>>,
    reducer: Option<Runner>,
    partitioner: Factory<Arc<dyn Partitioner>>,
    defaults: JobConf,
    reducers: u32,
    exact_reducers: bool,
    input_format: Arc<dyn InputFormat>,
    before_submit: Option<SubmitHook>,
    validate: Option<Validator>,
    _stage: PhantomData<fn() -> S>,
}

impl<M: Mapper, S> std::fmt::Debug for Job<M, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<M: Mapper> Job<M> {
    /// A map-only job named `name` whose mappers `mapper` builds (from the job conf),
    /// reading text lines unless [`Job::input_format`] says otherwise.
    pub fn new(
        name: &str,
        about: &str,
        mapper: impl Fn(&JobConf) -> Result<M> + Send + Sync + 'static,
    ) -> Job<M> {
        Job {
            name: name.to_owned(),
            about: about.to_owned(),
            mapper: map_run(mapper),
            inputs: Vec::new(),
            combine: None,
            reducer: None,
            partitioner: Arc::new(|_| Ok(Arc::new(HashPartitioner) as Arc<dyn Partitioner>)),
            defaults: JobConf::new(),
            reducers: 0,
            exact_reducers: false,
            input_format: Arc::new(TextInput),
            before_submit: None,
            validate: None,
            _stage: PhantomData,
        }
    }

    /// Adds a reducer (and makes the default number of reduce tasks 1 if it was 0).
    pub fn reducer<R: Reducer>(
        self,
        reducer: impl Fn(&JobConf) -> Result<R> + Send + Sync + 'static,
    ) -> Job<M, WithReducer> {
        let mut j = Job {
            name: self.name,
            about: self.about,
            mapper: self.mapper,
            inputs: self.inputs,
            combine: self.combine,
            reducer: self.reducer,
            partitioner: self.partitioner,
            defaults: self.defaults,
            reducers: self.reducers,
            exact_reducers: self.exact_reducers,
            input_format: self.input_format,
            before_submit: self.before_submit,
            validate: self.validate,
            _stage: PhantomData,
        };
        j.reducer = Some(Arc::new(move |env: &mut TaskEnv| {
            let r = reducer(&env.spec.conf)?;
            reduce_task(env, r)
        }));
        if j.reducers == 0 {
            j.reducers = 1;
        }
        j
    }
}

impl<M: Mapper, S> Job<M, S> {
    /// Reads the inputs `pattern` matches with `format` and maps them with the mappers
    /// `mapper` builds, instead of the job's own (Hadoop's `MultipleInputs`): a join
    /// binds each side to its own mapper. The pattern is matched against each input
    /// file's path as [`InputPattern`] says (`users` matches `/data/users/part-0`); the
    /// first binding that matches wins, and files no binding matches go to the job's
    /// mapper and format. The mappers emit the same pairs, so one reducer takes them all;
    /// `ctx.task().input_path` names the file a map reads.
    pub fn input<M2>(
        mut self,
        pattern: &str,
        format: impl InputFormat,
        mapper: impl Fn(&JobConf) -> Result<M2> + Send + Sync + 'static,
    ) -> Job<M, S>
    where
        M2: Mapper<Key = M::Key, Value = M::Value>,
    {
        self.inputs.push((InputPattern::new(pattern), Arc::new(format), map_run(mapper)));
        self
    }

    /// Adds a map-side combiner (see [`Combiner`]).
    pub fn combiner<C>(
        mut self,
        combiner: impl Fn(&JobConf) -> C + Send + Sync + 'static,
    ) -> Job<M, S>
    where
        M::Value: Serialize + DeserializeOwned + Clone + Sized,
        C: Combiner<M::Value>,
    {
        self.combine =
            Some(Arc::new(move |env: &TaskEnv, p| env.combine_sink(p, combiner(&env.spec.conf))));
        self
    }

    /// Replaces the default hash partitioner.
    pub fn partitioner(
        mut self,
        partitioner: impl Fn(&JobConf) -> Result<Arc<dyn Partitioner>> + Send + Sync + 'static,
    ) -> Job<M, S> {
        self.partitioner = Arc::new(partitioner);
        self
    }

    /// Sets a default job option (`-D` at submit overrides it).
    pub fn conf(mut self, key: &str, value: &str) -> Job<M, S> {
        self.defaults.set(key, value);
        self
    }

    /// Sets the default number of reduce tasks (`--reducers N`, N >= 1, overrides it).
    pub fn reducers(mut self, n: u32) -> Job<M, S> {
        self.reducers = n;
        self
    }

    /// Requires exactly `n` reduce tasks (say 1, for a global top-k): a submit asking
    /// for another count is refused.
    pub fn exact_reducers(mut self, n: u32) -> Job<M, S> {
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
    ) -> Job<M, S> {
        self.validate = Some(Arc::new(check));
        self
    }

    /// Sets how the job's input is split and read (default [`TextInput`]; inputs bound
    /// with [`Job::input`] keep their own). `-D mapred.input.format=NAME` replaces it
    /// with a built-in format at submit.
    pub fn input_format(mut self, format: impl InputFormat) -> Job<M, S> {
        self.input_format = Arc::new(format);
        self
    }

    /// Runs `hook` at submit time, before the job reaches the coordinator.
    pub fn before_submit(
        mut self,
        hook: impl Fn(&mut SubmitContext) -> Result<()> + Send + Sync + 'static,
    ) -> Job<M, S> {
        self.before_submit = Some(Arc::new(hook));
        self
    }

    /// Erases the job's types. `output` makes a map-only attempt's output file (only a
    /// map-only job, whose pairs have a text form, has one).
    fn into_def(self, output: Option<SinkMaker<M::Key, M::Value>>) -> JobDef {
        let Job {
            name,
            about,
            mapper,
            inputs,
            combine,
            reducer,
            partitioner,
            defaults,
            reducers,
            exact_reducers,
            input_format,
            before_submit,
            validate,
            _stage,
        } = self;
        let routes = Routes {
            default: input_format,
            bound: inputs.iter().map(|(p, f, _)| (p.clone(), f.clone())).collect(),
        };
        let runs: Vec<MapRun<M::Key, M::Value>> = inputs.into_iter().map(|(_, _, r)| r).collect();
        let map_routes = routes.clone();
        let job_name = name.clone();
        let map: Runner = Arc::new(move |env: &mut TaskEnv| {
            let path = env.spec.split.as_ref().map_or("", |s| s.path.as_str());
            let (bound, format) = map_routes.route(&env.spec.conf, path)?;
            let run = bound.map_or(&mapper, |i| &runs[i]);
            let sink = if env.replaying() {
                discard()
            } else if env.spec.reducers == 0 {
                let Some(output) = &output else {
                    return Err(Error::InvalidArgument(format!(
                        "job {job_name} has a reducer but was run without reduce tasks"
                    )));
                };
                output(env, Arc::new(HashPartitioner))?
            } else {
                let p = partitioner(&env.spec.conf)?;
                match &combine {
                    Some(make) => make(env, p)?,
                    None => env.sort_sink(p)?,
                }
            };
            run(env, &*format, sink)
        });
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
            reducers: if reduce_tasks == ReduceTasks::None { 0 } else { reducers },
            reduce_tasks,
            routes,
            before_submit,
            validate,
        }
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
    /// Which format reads which input.
    pub(crate) routes: Routes,
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
            .field("inputs", &self.routes)
            .finish_non_exhaustive()
    }
}

impl JobDef {
    /// True if the job has a reducer.
    pub fn has_reducer(&self) -> bool {
        self.reduce.is_some()
    }

    /// The format that reads `path` (empty: the job's default) under options `conf`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown `mapred.input.format`.
    pub fn input_format_of(&self, conf: &JobConf, path: &str) -> Result<Arc<dyn InputFormat>> {
        Ok(self.routes.route(conf, path)?.1)
    }

    /// The splits of a run of this job over `inputs` (absolute paths, patterns
    /// expanded): each file cut by the format that reads it. Runs in the submitting
    /// process.
    ///
    /// # Errors
    /// As [`InputFormat::split`], a missing input, no input for a job that reads files.
    pub async fn splits(
        &self,
        client: &dfs::Client,
        inputs: &[String],
        conf: &JobConf,
    ) -> Result<Vec<Split>> {
        self.routes.splits(client, inputs, conf).await
    }
}

/// A map-only job's mapper writes the job's output: its pairs need a text form.
impl<M: Mapper> From<Job<M, MapOnly>> for JobDef
where
    M::Key: ToText,
    M::Value: ToText,
{
    fn from(j: Job<M, MapOnly>) -> JobDef {
        j.into_def(Some(Arc::new(|env: &TaskEnv, _| env.map_output_sink())))
    }
}

impl<M: Mapper> From<Job<M, WithReducer>> for JobDef {
    fn from(j: Job<M, WithReducer>) -> JobDef {
        j.into_def(None)
    }
}

/// A sequence of a binary's jobs run as one submission: each stage reads the one
/// before's output, handed over as records (see [`crate::runtime`]). A stage after the
/// first reads its input with [`Input::key`](crate::Input::key) and
/// [`Input::value`](crate::Input::value), typed as the previous stage's reducer (or
/// map-only mapper) wrote them.
#[derive(Debug, Clone)]
pub struct Chain {
    /// Its name, submitted as a job's is.
    pub name: String,
    /// One line saying what it does.
    pub about: String,
    /// The names of its jobs, in order.
    pub stages: Vec<String>,
}

impl Chain {
    /// An empty chain named `name`.
    pub fn new(name: &str, about: &str) -> Chain {
        Chain { name: name.to_owned(), about: about.to_owned(), stages: Vec::new() }
    }

    /// Appends the job called `job` (registered in the same binary).
    pub fn then(mut self, job: &str) -> Chain {
        self.stages.push(job.to_owned());
        self
    }
}

/// The jobs and chains of a binary, by name.
#[derive(Debug, Default)]
pub struct Registry {
    jobs: BTreeMap<String, JobDef>,
    chains: BTreeMap<String, Chain>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a job (replacing a job or chain of the same name).
    pub fn register(mut self, job: impl Into<JobDef>) -> Registry {
        let def = job.into();
        self.chains.remove(&def.name);
        self.jobs.insert(def.name.clone(), def);
        self
    }

    /// Adds a chain (replacing a job or chain of the same name). An empty chain is not
    /// added; stage names are checked when it is submitted.
    pub fn chain(mut self, chain: Chain) -> Registry {
        if !chain.stages.is_empty() {
            self.jobs.remove(&chain.name);
            self.chains.insert(chain.name.clone(), chain);
        }
        self
    }

    /// The chain called `name`, if there is one.
    pub fn chain_named(&self, name: &str) -> Option<&Chain> {
        self.chains.get(name)
    }

    /// Every chain, by name.
    pub fn chains(&self) -> impl Iterator<Item = &Chain> {
        self.chains.values()
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
            let known: Vec<&str> =
                self.jobs.keys().chain(self.chains.keys()).map(String::as_str).collect();
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
