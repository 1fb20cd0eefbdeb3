//! Sleep: maps and reduces that only wait, for testing scheduling and parallelism
//! (Hadoop's SleepJob). `-D mapred.generate.maps=N` maps each sleep
//! `-D sleep.map.ms=MS` and emit one pair per reduce; reduces sleep `-D sleep.reduce.ms=MS`.

use std::time::Duration;

use mapred::{
    Context, GeneratedInput, Input, Job, JobConf, Mapper, Reducer, Result, Values, WithReducer,
};

/// Map sleep option.
pub const MAP_MS: &str = "sleep.map.ms";
/// Reduce sleep option.
pub const REDUCE_MS: &str = "sleep.reduce.ms";

/// Sleeps, then emits one pair per reduce partition.
#[derive(Debug)]
pub struct SleepMapper {
    ms: u64,
}

impl Mapper for SleepMapper {
    type Key = u32;
    type Value = u64;

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, u32, u64>) -> Result<()> {
        std::thread::sleep(Duration::from_millis(self.ms));
        let (index, _) = input.generated_index().unwrap_or((0, 1));
        for r in 0..ctx.task().reducers.max(1) {
            ctx.emit(&r, &u64::from(index))?;
        }
        Ok(())
    }
}

/// Sleeps, then emits how many values it saw.
#[derive(Debug)]
pub struct SleepReducer {
    ms: u64,
}

impl Reducer for SleepReducer {
    type KeyIn = u32;
    type ValueIn = u64;
    type KeyOut = u32;
    type ValueOut = u64;

    fn reduce(
        &mut self,
        key: u32,
        values: &mut Values<'_, u64>,
        ctx: &mut Context<'_, u32, u64>,
    ) -> Result<()> {
        std::thread::sleep(Duration::from_millis(self.ms));
        let n = values.count() as u64;
        ctx.emit(&key, &n)
    }
}

fn ms(conf: &JobConf, key: &str) -> Result<u64> {
    conf.get_u64(key, 1000)
}

/// The `sleep` job.
pub fn job() -> Job<SleepMapper, WithReducer> {
    Job::new("sleep", "maps and reduces that sleep (-D sleep.map.ms, sleep.reduce.ms)", |c| {
        Ok(SleepMapper { ms: ms(c, MAP_MS)? })
    })
    .input_format(GeneratedInput)
    .reducer(|c| Ok(SleepReducer { ms: ms(c, REDUCE_MS)? }))
    .partitioner(|_| {
        Ok(std::sync::Arc::new(KeyIsPartition) as std::sync::Arc<dyn mapred::Partitioner>)
    })
}

/// Sends key `r` (a big-endian u32) to partition `r`.
#[derive(Debug)]
struct KeyIsPartition;

impl mapred::Partitioner for KeyIsPartition {
    fn partition(&self, key: &[u8], partitions: u32) -> u32 {
        let mut b = [0u8; 4];
        let n = key.len().min(4);
        b[..n].copy_from_slice(&key[..n]);
        u32::from_be_bytes(b) % partitions.max(1)
    }
}
