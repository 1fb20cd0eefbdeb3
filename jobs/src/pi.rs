//! Pi: estimates π by a quasi-Monte Carlo method, as Hadoop's `pi` does. Generated input
//! (no files): each of `mapred.generate.maps` maps takes `pi.samples` points of a Halton
//! sequence in the unit square and counts those inside the inscribed circle; one reducer
//! (the job requires exactly one) adds the counts and writes `pi<TAB>ESTIMATE`.

use mapred::config::keys;
use mapred::{
    Context, Error, GeneratedInput, Input, Job, JobConf, Mapper, Reducer, Result, Values,
    WithReducer,
};

/// Option: points per map (default 10000).
pub const SAMPLES: &str = "pi.samples";

fn samples(conf: &JobConf) -> Result<u64> {
    match conf.get_u64(SAMPLES, 10_000)? {
        0 => Err(Error::InvalidArgument(format!("{SAMPLES} must be at least 1"))),
        n => Ok(n),
    }
}

/// The `i`th element of the van der Corput sequence in `base`.
fn halton(mut i: u64, base: u64) -> f64 {
    let (mut f, mut r) = (1.0, 0.0);
    while i > 0 {
        f /= base as f64;
        r += f * (i % base) as f64;
        i /= base;
    }
    r
}

/// Counts a map's points inside the circle: emits `("points", (inside, total))`.
#[derive(Debug)]
pub struct Sample {
    samples: u64,
}

impl Mapper for Sample {
    type Key = str;
    type Value = (u64, u64);

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, str, (u64, u64)>) -> Result<()> {
        let (index, _) = input.generated_index().unwrap_or((0, 1));
        let first = u64::from(index) * self.samples + 1;
        let inside = (first..first + self.samples)
            .filter(|&i| {
                let (x, y) = (halton(i, 2) - 0.5, halton(i, 3) - 0.5);
                x * x + y * y <= 0.25
            })
            .count() as u64;
        ctx.emit("points", &(inside, self.samples))
    }
}

/// Adds the counts and writes the estimate.
#[derive(Debug, Default)]
pub struct Estimate;

impl Reducer for Estimate {
    type KeyIn = String;
    type ValueIn = (u64, u64);
    type KeyOut = str;
    type ValueOut = f64;

    fn reduce(
        &mut self,
        _key: String,
        values: &mut Values<'_, (u64, u64)>,
        ctx: &mut Context<'_, str, f64>,
    ) -> Result<()> {
        let (inside, total) = values.fold((0, 0), |(a, b), (i, t)| (a + i, b + t));
        ctx.emit("pi", &(4.0 * inside as f64 / total.max(1) as f64))
    }
}

/// The `pi` job.
pub fn job() -> Job<Sample, WithReducer> {
    Job::new("pi", "estimate pi from -D mapred.generate.maps maps of -D pi.samples points", |c| {
        Ok(Sample { samples: samples(c)? })
    })
    .input_format(GeneratedInput)
    .conf(keys::GENERATE_MAPS, "4")
    .combiner(|_| {
        |acc: &mut (u64, u64), v: (u64, u64)| {
            acc.0 += v.0;
            acc.1 += v.1;
        }
    })
    .reducer(|_| Ok(Estimate))
    .exact_reducers(1)
    .validate(|c| samples(c).map(drop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halton_points_fill_the_square() {
        assert_eq!(halton(1, 2), 0.5);
        assert_eq!(halton(2, 2), 0.25);
        assert!((halton(1, 3) - 1.0 / 3.0).abs() < 1e-12);
    }
}
