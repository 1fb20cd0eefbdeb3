//! Grep: for a regular expression (`-D grep.pattern=REGEX`), how many input lines contain
//! each distinct match (a line with the same match twice counts once).

use mapred::{Context, Error, Input, Job, JobConf, Mapper, Result, WithReducer};
use regex::bytes::Regex;

/// Job option holding the pattern.
pub const PATTERN: &str = "grep.pattern";

/// Emits `(match, 1)` once per distinct match of a line.
#[derive(Debug)]
pub struct GrepMapper {
    re: Regex,
    seen: Vec<Vec<u8>>,
}

impl GrepMapper {
    /// A mapper for the pattern in `conf`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the pattern is missing or invalid.
    pub fn new(conf: &JobConf) -> Result<GrepMapper> {
        let p = conf
            .get(PATTERN)
            .ok_or_else(|| Error::InvalidArgument(format!("grep needs -D {PATTERN}=REGEX")))?;
        let re =
            Regex::new(p).map_err(|e| Error::InvalidArgument(format!("bad pattern {p:?}: {e}")))?;
        Ok(GrepMapper { re, seen: Vec::new() })
    }
}

impl Mapper for GrepMapper {
    type Key = [u8];
    type Value = u64;

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, [u8], u64>) -> Result<()> {
        self.seen.clear();
        for m in self.re.find_iter(input.line()) {
            let m = m.as_bytes();
            if !self.seen.iter().any(|s| s == m) {
                self.seen.push(m.to_vec());
                ctx.emit(m, &1)?;
            }
        }
        if !self.seen.is_empty() {
            ctx.count("grep", "MATCHING_LINES", 1);
        }
        Ok(())
    }
}

/// The `grep` job.
pub fn job() -> Job<GrepMapper, WithReducer> {
    Job::new("grep", "count the lines holding each match of -D grep.pattern=REGEX", |conf| {
        GrepMapper::new(conf)
    })
    .combiner(|_| crate::sum)
    .reducer(|_| Ok(crate::wordcount::Sum))
    // A missing or broken pattern fails the submit, not every map attempt on every worker.
    .validate(|conf| GrepMapper::new(conf).map(drop))
}
