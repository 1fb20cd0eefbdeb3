//! Word mean: the mean length of the words of text files, as Hadoop's `wordmean`. Maps
//! emit `(words, length)` pairs under one key, a combiner adds them, and one reducer
//! (required) writes `count`, `length` and `mean`.

use mapred::{Context, Input, Job, Mapper, Reducer, Result, Values, WithReducer};

/// Emits `("words", (1, length))` per word.
#[derive(Debug, Default)]
pub struct Lengths;

impl Mapper for Lengths {
    type Key = str;
    type Value = (u64, u64);

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, str, (u64, u64)>) -> Result<()> {
        for w in input.line().split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()) {
            ctx.emit("words", &(1, w.len() as u64))?;
        }
        Ok(())
    }
}

/// Writes the count, total length and mean.
#[derive(Debug, Default)]
pub struct Mean;

impl Reducer for Mean {
    type KeyIn = String;
    type ValueIn = (u64, u64);
    type KeyOut = str;
    type ValueOut = str;

    fn reduce(
        &mut self,
        _key: String,
        values: &mut Values<'_, (u64, u64)>,
        ctx: &mut Context<'_, str, str>,
    ) -> Result<()> {
        let (count, length) = values.fold((0, 0), |(c, l), (n, m)| (c + n, l + m));
        ctx.emit("count", &count.to_string())?;
        ctx.emit("length", &length.to_string())?;
        ctx.emit("mean", &format!("{:.6}", length as f64 / count.max(1) as f64))
    }
}

/// The `wordmean` job.
pub fn job() -> Job<Lengths, WithReducer> {
    Job::new("wordmean", "the mean length of the words of text files", |_| Ok(Lengths))
        .combiner(|_| {
            |acc: &mut (u64, u64), v: (u64, u64)| {
                acc.0 += v.0;
                acc.1 += v.1;
            }
        })
        .reducer(|_| Ok(Mean))
        .exact_reducers(1)
}
