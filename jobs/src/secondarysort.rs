//! Secondary sort: for lines of two integers `a b`, each `a` with its `b`s in ascending
//! order, as Hadoop's `SecondarySort`. The map key is the composite `(a, b)`, so the
//! framework sorts by both; the partitioner looks at `a` alone (the first 8 bytes of the
//! encoded key), so every key of one `a` reaches one reducer, where they arrive in order
//! and the reducer groups them by that prefix. Output: `a<TAB>b1,b2,...`.

use std::sync::Arc;

use mapred::{
    Context, Error, HashPartitioner, Input, Job, Mapper, Partitioner, Reducer, Result, Values,
    WithReducer,
};

/// Emits `((a, b), ())` per line.
#[derive(Debug, Default)]
pub struct Pairs;

impl Mapper for Pairs {
    type Key = (i64, i64);
    type Value = ();

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, (i64, i64), ()>) -> Result<()> {
        let text = input.text()?;
        let mut it = text.split_whitespace();
        let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) else {
            return Err(Error::Task(format!("line at byte {} is not `a b`", input.offset())));
        };
        ctx.emit(&(a.parse()?, b.parse()?), &())
    }
}

/// Partitions by the first component only (its 8 encoded bytes).
#[derive(Debug, Default)]
pub struct FirstPartitioner;

impl Partitioner for FirstPartitioner {
    fn partition(&self, key: &[u8], partitions: u32) -> u32 {
        HashPartitioner.partition(&key[..key.len().min(8)], partitions)
    }
}

/// Groups consecutive keys by `a`: keys arrive sorted, so a group ends when `a` changes.
#[derive(Debug, Default)]
pub struct Group {
    current: Option<(i64, Vec<String>)>,
}

impl Group {
    fn flush(&mut self, ctx: &mut Context<'_, i64, str>) -> Result<()> {
        match self.current.take() {
            Some((a, bs)) => ctx.emit(&a, &bs.join(",")),
            None => Ok(()),
        }
    }
}

impl Reducer for Group {
    type KeyIn = (i64, i64);
    type ValueIn = ();
    type KeyOut = i64;
    type ValueOut = str;

    fn reduce(
        &mut self,
        (a, b): (i64, i64),
        values: &mut Values<'_, ()>,
        ctx: &mut Context<'_, i64, str>,
    ) -> Result<()> {
        if self.current.as_ref().is_some_and(|(c, _)| *c != a) {
            self.flush(ctx)?;
        }
        let (_, bs) = self.current.get_or_insert_with(|| (a, Vec::new()));
        // A repeated pair is listed as often as it occurs.
        for () in values {
            bs.push(b.to_string());
        }
        Ok(())
    }

    fn cleanup(&mut self, ctx: &mut Context<'_, i64, str>) -> Result<()> {
        self.flush(ctx)
    }
}

/// The `secondarysort` job.
pub fn job() -> Job<Pairs, WithReducer> {
    Job::new("secondarysort", "for lines `a b`, each a with its b's sorted", |_| Ok(Pairs))
        .partitioner(|_| Ok(Arc::new(FirstPartitioner)))
        .reducer(|_| Ok(Group::default()))
}
