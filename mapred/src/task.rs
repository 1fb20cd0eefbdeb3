//! One task attempt, as run inside the child process `JOBBIN __task SPEC_FILE`.
//!
//! The worker writes the [`TaskSpec`] to a file and starts the job binary on it; the
//! child reads its split (maps) or fetches its partition (reduces), runs the user's code,
//! leaves map output on local disk or reduce output in the DFS under
//! `OUT/_temporary/<attempt>/`, writes a [`TaskResult`] (counters, output to commit) and
//! exits 0. Any error is written to the result and the child exits 1; a panic, abort or
//! signal leaves no result, which the worker reports as a failure with the end of stderr.
//!
//! Before each record the attempt stores the record's index in a small memory-mapped file
//! (`progress`, shared with the worker: a plain memory write, no system call), so that
//! when user code kills the process the worker can tell which record did it; records the
//! coordinator lists in the spec (shown to crash deterministically) are skipped, counted
//! and listed in `OUT/_temporary/<attempt>/skipped-part-...`, committed to
//! `OUT/_skipped/`. A *replay* (the spec names one record) runs the user code on that
//! record alone, discards what it emits and writes nothing: it only tells the
//! coordinator whether the record crashes again (see [`crate::coordinator::skip`]).
//! While the framework does its own I/O it pulses the file, so only user code that stops
//! making progress runs into the task timeout (see [`crate::progress`]).
//!
//! The user's code runs on the main thread; DFS and shuffle I/O run on a small tokio
//! runtime, with input read ahead in large ranges while the mapper works.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::runtime::Runtime;

use crate::api::{Combiner, Context, Mapper, Partitioner, Reducer, TaskInfo};
use crate::config::{JobConf, keys};
use crate::counters::{self as c, Counters};
use crate::error::{Error, Result};
use crate::format::OutputWriter;
use crate::input::{InputFormat, SplitReader};
use crate::job_token::JobToken;
use crate::mapside::{CombineBuffer, MapSink, SortBuffer};
use crate::merge::Merger;
use crate::progress::Skipper;
use crate::reduceside::reduce_merged;
use crate::shuffle::{FetchRecovery, fetch_partitions};
use crate::spec::{OutputFormat, TaskSpec};

pub use crate::progress::{Progress, stall_watch};

/// Everything an attempt runs with.
pub(crate) struct TaskEnv {
    pub spec: TaskSpec,
    pub rt: Runtime,
    pub client: dfs::Client,
    pub counters: Counters,
    pub info: TaskInfo,
    pub progress: Arc<Progress>,
    /// The committed-later list of skipped records, once written.
    pub skipped: Option<String>,
}

impl TaskEnv {
    fn conf(&self) -> &JobConf {
        &self.spec.conf
    }

    /// Writes the skipped records (if any) to the attempt's temporary skipped file and
    /// counts them as `counter`.
    fn save_skipped(&mut self, skipper: &Skipper<'_>, counter: &str) -> Result<()> {
        if skipper.count == 0 {
            return Ok(());
        }
        self.counters.add(c::TASK, counter, skipper.count);
        let path = self.spec.temp_skipped();
        let opts = dfs::CreateOptions { create_parents: true, ..dfs::CreateOptions::default() };
        self.rt.block_on(self.client.put_bytes(path.as_str(), &skipper.skipped, opts))?;
        self.skipped = Some(path);
        Ok(())
    }

    fn sort_limit(&self) -> Result<usize> {
        Ok((self.conf().get_u64(keys::SORT_MB, 100)?.clamp(1, 2047) << 20) as usize)
    }

    pub(crate) fn output_writer(&self, path: &str, count_as: &'static str) -> Result<OutputWriter> {
        let conf = self.conf();
        let format = OutputFormat::parse(conf.get(keys::OUTPUT_FORMAT).unwrap_or("text"))?;
        let sep = conf.get(keys::OUTPUT_SEPARATOR).unwrap_or("\t").as_bytes().to_vec();
        let replication = conf.get_u64(keys::OUTPUT_REPLICATION, 0)? as u32;
        OutputWriter::create(
            self.rt.handle(),
            &self.client,
            path,
            format,
            &sep,
            replication,
            count_as,
        )
    }
}

impl<K, V> MapSink<K, V> for OutputWriter
where
    K: crate::key::EncodeKey + crate::key::ToText + ?Sized,
    V: Serialize + crate::key::ToText + ?Sized,
{
    fn finish(mut self: Box<Self>, counters: &mut Counters) -> Result<Option<String>> {
        crate::api::Sink::<K, V>::flush_counts(&mut *self, counters);
        let path = self.path().to_owned();
        let len = (*self).close()?;
        counters.add(c::FS, c::DFS_BYTES_WRITTEN, len);
        Ok(Some(path))
    }
}

/// Where a replay's pairs go: nowhere. A replay only tells whether its record crashes.
struct Discard;

impl<K: ?Sized, V: ?Sized> crate::api::Sink<K, V> for Discard {
    fn emit(&mut self, _key: &K, _value: &V, _counters: &mut Counters) -> Result<()> {
        Ok(())
    }
}

impl<K: ?Sized, V: ?Sized> MapSink<K, V> for Discard {
    fn finish(self: Box<Self>, _counters: &mut Counters) -> Result<Option<String>> {
        Ok(None)
    }
}

impl TaskEnv {
    /// Where a map attempt's pairs go when it feeds reducers without a combiner: the
    /// sort buffer.
    pub(crate) fn sort_sink<K, V>(
        &self,
        partitioner: Arc<dyn Partitioner>,
    ) -> Result<Box<dyn MapSink<K, V>>>
    where
        K: crate::key::EncodeKey + ?Sized + 'static,
        V: Serialize + ?Sized + 'static,
    {
        let s = &self.spec;
        Ok(Box::new(SortBuffer::new(&s.work_dir, s.reducers, self.sort_limit()?, partitioner)))
    }

    /// Where a map attempt's pairs go when it feeds reducers with a combiner: the
    /// hash-combining buffer.
    pub(crate) fn combine_sink<K, V, C>(
        &self,
        partitioner: Arc<dyn Partitioner>,
        combiner: C,
    ) -> Result<Box<dyn MapSink<K, V>>>
    where
        K: crate::key::EncodeKey + ?Sized + 'static,
        V: Serialize + DeserializeOwned + Clone + 'static,
        C: Combiner<V>,
    {
        let s = &self.spec;
        let limit = self.sort_limit()?;
        Ok(Box::new(CombineBuffer::new(&s.work_dir, s.reducers, limit, partitioner, combiner)))
    }

    /// Where a map-only attempt's pairs go: its output file.
    pub(crate) fn map_output_sink<K, V>(&self) -> Result<Box<dyn MapSink<K, V>>>
    where
        K: crate::key::EncodeKey + crate::key::ToText + ?Sized + 'static,
        V: Serialize + crate::key::ToText + ?Sized + 'static,
    {
        Ok(Box::new(self.output_writer(&self.spec.temp_output(), c::MAP_OUTPUT_RECORDS)?))
    }

    /// True for a replay: the attempt's pairs go nowhere ([`discard`]).
    pub(crate) fn replaying(&self) -> bool {
        self.spec.replay.is_some()
    }
}

/// Where a replay's pairs go: nowhere.
pub(crate) fn discard<K: ?Sized + 'static, V: ?Sized + 'static>() -> Box<dyn MapSink<K, V>> {
    Box::new(Discard)
}

/// Runs a map attempt: `mapper` over the records `format` reads from the attempt's
/// split, its pairs into `sink`.
pub(crate) fn run_map<M: Mapper>(
    env: &mut TaskEnv,
    mut mapper: M,
    format: &dyn InputFormat,
    mut sink: Box<dyn MapSink<M::Key, M::Value>>,
) -> Result<Option<String>> {
    let progress = env.progress.clone();
    let skip = std::mem::take(&mut env.spec.skip);
    let split = env.spec.split.clone().ok_or_else(|| {
        Error::Protocol(format!("map attempt {} has no split", env.spec.attempt_id))
    })?;
    let source = if split.path.is_empty() { "generated".to_owned() } else { split.path.clone() };
    let mut skipper = match env.spec.replay {
        Some(r) => Skipper::replaying(&progress, r),
        None => Skipper::new(&progress, &skip, &source),
    };
    let TaskEnv { spec, rt, client, counters, info, .. } = &mut *env;
    let conf = &spec.conf;
    let mut ctx = Context::new(sink.as_mut(), counters, conf, info);
    mapper.setup(&mut ctx)?;
    let mut records = 0u64;
    let mut reader =
        SplitReader::new(&split, conf, spec.index, spec.maps, rt.handle(), client, &progress)?;
    format.read(&mut reader, &mut |input| {
        let i = records;
        records += 1;
        if !skipper.enter(i, input.position(), || input.describe()) {
            return Ok(());
        }
        mapper.map(input, &mut ctx)
    })?;
    if split.length > 0 {
        counters_after(&mut ctx, c::MAP_INPUT_BYTES, split.length);
    }
    skipper.done();
    mapper.cleanup(&mut ctx)?;
    counters.add(c::TASK, c::MAP_INPUT_RECORDS, records);
    counters.add(c::FS, c::DFS_BYTES_READ, reader.consumed());
    let _pulse = progress.pulse_while();
    let out = sink.finish(counters)?;
    env.save_skipped(&skipper, c::MAP_SKIPPED_RECORDS)?;
    Ok(out)
}

fn counters_after<K: ?Sized, V: ?Sized>(ctx: &mut Context<'_, K, V>, name: &str, by: u64) {
    ctx.count(c::TASK, name, by);
}

/// The reduce side of a job definition: how to run a reduce attempt.
pub(crate) fn reduce_task<R: Reducer>(env: &mut TaskEnv, mut reducer: R) -> Result<Option<String>> {
    let conf = env.spec.conf.clone();
    let parallel = conf.get_u64(keys::PARALLEL_FETCHES, 5)? as usize;
    let memory = conf.get_u64(keys::REDUCE_MEMORY_MB, 512)? << 20;
    let ms = |key: &str, default: u64| conf.get_u64(key, default).map(Duration::from_millis);
    let recovery = FetchRecovery {
        coordinator: env.spec.coordinator.clone(),
        attempt_id: env.spec.attempt_id.clone(),
        maps: env.spec.maps,
        retries: conf.get_u64(keys::FETCH_RETRIES, 3)?.clamp(1, 100) as u32,
        backoff: ms(keys::FETCH_BACKOFF_MS, 250)?,
        stall: ms(keys::FETCH_TIMEOUT_MS, 30_000)?.max(Duration::from_millis(100)),
        wait: ms(keys::FETCH_WAIT_MS, 600_000)?,
        token: JobToken::from_hex(&env.spec.job_token)?,
        // As the job's user, as its DFS calls: the token the worker left in
        // DFS_TOKEN_FILE (token mode), else the user named.
        credentials: security::Credentials::from_env(Some(env.spec.user.clone()))
            .and_then(|c| c.attach())
            .map_err(|e| Error::InvalidArgument(e.to_string()))?,
    };
    let progress = env.progress.clone();
    let replay = env.spec.replay;
    let (runs, bytes) = {
        let _pulse = progress.pulse_while();
        env.rt.block_on(fetch_partitions(
            &env.spec.job_id,
            &env.spec.map_outputs,
            env.spec.index,
            parallel,
            memory,
            &env.spec.work_dir,
            &recovery,
        ))?
    };
    env.counters.add(c::TASK, c::REDUCE_SHUFFLE_BYTES, bytes);
    env.counters.add(c::TASK, c::SHUFFLED_MAPS, runs.len() as u64);
    let merger = Merger::new(runs)?;
    if let Some(r) = replay {
        let mut skipper = Skipper::replaying(&progress, r);
        let TaskEnv { info, counters, .. } = &mut *env;
        reduce_merged(merger, &mut reducer, &mut Discard, &conf, info, counters, &mut skipper)?;
        return Ok(None);
    }
    let path = env.spec.temp_output();
    let mut writer = env.output_writer(&path, c::REDUCE_OUTPUT_RECORDS)?;
    let skip = std::mem::take(&mut env.spec.skip);
    let source = format!("partition {}", env.spec.index);
    let mut skipper = Skipper::new(&progress, &skip, &source);
    reduce_merged(
        merger,
        &mut reducer,
        &mut writer,
        &conf,
        &env.info,
        &mut env.counters,
        &mut skipper,
    )?;
    let _pulse = progress.pulse_while();
    let len = writer.close()?;
    env.counters.add(c::FS, c::DFS_BYTES_WRITTEN, len);
    env.save_skipped(&skipper, c::REDUCE_SKIPPED_GROUPS)?;
    Ok(Some(path))
}
