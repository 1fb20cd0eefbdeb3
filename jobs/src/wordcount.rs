//! Word count: how many times each word occurs. Words are runs of bytes between ASCII
//! whitespace; the combiner adds counts on the map side, so each map ships one pair per
//! distinct word instead of one per occurrence.

use mapred::{Context, Input, Job, Mapper, Reducer, Result, Values, WithReducer};

/// Emits `(word, 1)` for every word of a line.
#[derive(Debug, Default)]
pub struct Tokenize;

impl Mapper for Tokenize {
    type Key = [u8];
    type Value = u64;

    #[inline]
    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, [u8], u64>) -> Result<()> {
        for word in input.line().split(|b| b.is_ascii_whitespace()) {
            if !word.is_empty() {
                ctx.emit(word, &1)?;
            }
        }
        Ok(())
    }
}

/// Adds the counts of a word.
#[derive(Debug, Default)]
pub struct Sum;

impl Reducer for Sum {
    type KeyIn = Vec<u8>;
    type ValueIn = u64;
    type KeyOut = [u8];
    type ValueOut = u64;

    fn reduce(
        &mut self,
        key: Vec<u8>,
        values: &mut Values<'_, u64>,
        ctx: &mut Context<'_, [u8], u64>,
    ) -> Result<()> {
        let n: u64 = values.sum();
        ctx.emit(&key, &n)
    }
}

/// The `wordcount` job.
pub fn job() -> Job<Tokenize, WithReducer> {
    Job::new("wordcount", "count the words of text files", |_| Ok(Tokenize))
        .combiner(|_| crate::sum)
        .reducer(|_| Ok(Sum))
}
