//! Fail: a job that fails on purpose, for testing failure handling (Hadoop's FailJob).
//! With `-D fail.map=true` (the default) every map attempt fails; with
//! `-D fail.map=false -D fail.reduce=true` every reduce attempt does. `-D fail.how=` says
//! how: `error` (return an error, the default), `panic`, `abort` or `exit`.

use mapred::{
    Context, Error, GeneratedInput, Input, Job, JobConf, Mapper, Reducer, Result, Values,
    WithReducer,
};

/// How to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Return an error.
    Error,
    /// Panic.
    Panic,
    /// Abort the process.
    Abort,
    /// Exit with status 3.
    Exit,
}

impl How {
    fn from_conf(conf: &JobConf) -> Result<How> {
        match conf.get("fail.how").unwrap_or("error") {
            "error" => Ok(How::Error),
            "panic" => Ok(How::Panic),
            "abort" => Ok(How::Abort),
            "exit" => Ok(How::Exit),
            other => Err(Error::InvalidArgument(format!(
                "fail.how={other}: expected error, panic, abort or exit"
            ))),
        }
    }

    fn fail(self, what: &str) -> Result<()> {
        match self {
            How::Error => Err(Error::Task(format!("{what} failed on purpose"))),
            How::Panic => panic!("{what} panicked on purpose"),
            How::Abort => std::process::abort(),
            How::Exit => std::process::exit(3),
        }
    }
}

/// A mapper that fails (or passes through one pair).
#[derive(Debug)]
pub struct FailMapper {
    fail: bool,
    how: How,
}

impl Mapper for FailMapper {
    type Key = u32;
    type Value = u64;

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, u32, u64>) -> Result<()> {
        if self.fail {
            return self.how.fail("map");
        }
        ctx.emit(&input.generated_index().map_or(0, |(i, _)| i), &1)
    }
}

/// A reducer that fails (or counts).
#[derive(Debug)]
pub struct FailReducer {
    fail: bool,
    how: How,
}

impl Reducer for FailReducer {
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
        if self.fail {
            return self.how.fail("reduce");
        }
        let n = values.sum();
        ctx.emit(&key, &n)
    }
}

/// The `fail` job.
pub fn job() -> Job<FailMapper, WithReducer> {
    Job::new("fail", "a job whose maps (-D fail.map) or reduces (-D fail.reduce) fail", |c| {
        Ok(FailMapper { fail: c.get_bool("fail.map", true)?, how: How::from_conf(c)? })
    })
    .input_format(GeneratedInput)
    .reducer(|c| {
        Ok(FailReducer { fail: c.get_bool("fail.reduce", false)?, how: How::from_conf(c)? })
    })
}
