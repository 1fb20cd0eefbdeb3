//! Top k: the `-D topk.k=K` (default 10) keys with the largest counts, from the records
//! of a counting job (word count with `-D mapred.output.format=records`, or the stage
//! before it in the `wordfreq` chain). Each map keeps its own top k; the one reducer the
//! job requires merges them. Output: `key<TAB>count`, largest first (ties by key).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use mapred::{
    Context, Error, Input, Job, JobConf, Mapper, RecordInput, Reducer, Result, Values, WithReducer,
};

/// Option: how many keys to keep.
pub const K: &str = "topk.k";

fn k(conf: &JobConf) -> Result<usize> {
    match conf.get_u64(K, 10)? {
        0 => Err(Error::InvalidArgument(format!("{K} must be at least 1"))),
        n => Ok(n as usize),
    }
}

/// The `k` largest `(count, key)` pairs seen, smallest on top so it is the one to drop.
#[derive(Debug)]
struct Best {
    k: usize,
    heap: BinaryHeap<Reverse<(u64, Reverse<Vec<u8>>)>>,
}

impl Best {
    fn offer(&mut self, count: u64, key: Vec<u8>) {
        self.heap.push(Reverse((count, Reverse(key))));
        if self.heap.len() > self.k {
            self.heap.pop();
        }
    }

    /// Largest first, ties by key.
    fn into_sorted(self) -> Vec<(u64, Vec<u8>)> {
        let mut v: Vec<(u64, Vec<u8>)> =
            self.heap.into_iter().map(|Reverse((c, Reverse(k)))| (c, k)).collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        v
    }
}

/// Keeps a map's top k; emits them under one key at the end.
#[derive(Debug)]
pub struct LocalTop(Best);

impl Mapper for LocalTop {
    type Key = str;
    type Value = (u64, Vec<u8>);

    fn map(&mut self, input: Input<'_>, _ctx: &mut Context<'_, str, (u64, Vec<u8>)>) -> Result<()> {
        self.0.offer(input.value::<u64>()?, input.key::<Vec<u8>>()?);
        Ok(())
    }

    fn cleanup(&mut self, ctx: &mut Context<'_, str, (u64, Vec<u8>)>) -> Result<()> {
        let best = std::mem::replace(&mut self.0, Best { k: 0, heap: BinaryHeap::new() });
        for pair in best.into_sorted() {
            ctx.emit("top", &pair)?;
        }
        Ok(())
    }
}

/// Merges the maps' top k.
#[derive(Debug)]
pub struct GlobalTop(usize);

impl Reducer for GlobalTop {
    type KeyIn = String;
    type ValueIn = (u64, Vec<u8>);
    type KeyOut = [u8];
    type ValueOut = u64;

    fn reduce(
        &mut self,
        _key: String,
        values: &mut Values<'_, (u64, Vec<u8>)>,
        ctx: &mut Context<'_, [u8], u64>,
    ) -> Result<()> {
        let mut best = Best { k: self.0, heap: BinaryHeap::new() };
        for (count, key) in values {
            best.offer(count, key);
        }
        for (count, key) in best.into_sorted() {
            ctx.emit(&key, &count)?;
        }
        Ok(())
    }
}

/// The `topk` job.
pub fn job() -> Job<LocalTop, WithReducer> {
    Job::new("topk", "the -D topk.k keys with the largest counts, from counting records", |c| {
        Ok(LocalTop(Best { k: k(c)?, heap: BinaryHeap::new() }))
    })
    .input_format(RecordInput)
    .reducer(|c| Ok(GlobalTop(k(c)?)))
    .exact_reducers(1)
    .validate(|c| k(c).map(drop))
}
