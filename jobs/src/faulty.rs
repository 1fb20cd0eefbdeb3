//! Faulty: word count whose code misbehaves on purpose, for fault-tolerance tests. Its
//! output is exactly `wordcount`'s whenever the job succeeds, so a faulty run can be
//! compared byte for byte with a fault-free one.
//!
//! - `-D faulty.rate=R` (default 0): each attempt, with probability R, exits with status
//!   3, aborts, or hangs (sleeps `faulty.hang.ms`, default an hour, so only the task
//!   timeout ends it), at one of its first 64 records (or at its end if it has fewer).
//!   The draw is a hash of `faulty.seed` (default 0), the task and the attempt's number
//!   (not the job id): the same faults run after run, different for each retry.
//!   `faulty.map` / `faulty.reduce` (default true) choose the side.
//! - `-D faulty.first.rate=R` (default 0): each attempt, with probability R, exits with
//!   status 3 at the first record (map) or key group (reduce) it processes: a crash that
//!   has nothing to do with the record, like a worker's random failure or an OOM kill at
//!   startup. The draw is a hash of `faulty.seed`, the task and the attempt's number (not
//!   the job id), so a seed gives the same faults run after run. `faulty.map` /
//!   `faulty.reduce` choose the side here too.
//! - Poison records (`faulty.poison`, default true): a line containing `POISON_PANIC`
//!   panics, `POISON_ABORT` aborts, `POISON_SEGV` dies of a segmentation fault,
//!   `POISON_HANG` hangs, every time; the reducer does the same on the key groups
//!   (words) `BADKEY_PANIC`, `BADKEY_ABORT`, `BADKEY_SEGV` and `BADKEY_HANG`.
//! - Stragglers: `-D faulty.slow.tasks=m1,r0 -D faulty.slow.ms=MS` makes the first
//!   attempt of those tasks sleep MS before its first record, so a backup overtakes it.

use std::time::Duration;

use mapred::api::stable_hash;
use mapred::{
    Context, Input, Job, JobConf, Mapper, Reducer, Result, TaskInfo, Values, WithReducer,
};

/// What an attempt does wrong, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Behaves.
    None,
    /// Exits with status 3 at record `.0`.
    Exit(u64),
    /// Aborts at record `.0`.
    Abort(u64),
    /// Hangs at record `.0`.
    Hang(u64),
}

/// The options shared by both sides.
#[derive(Debug, Clone)]
struct Plan {
    fault: Fault,
    hang: Duration,
    poison: bool,
    slow: Duration,
}

impl Plan {
    fn new(conf: &JobConf, info: &TaskInfo, side: &str) -> Result<Plan> {
        let rate: f64 = conf.get("faulty.rate").unwrap_or("0").trim().parse().map_err(|_| {
            mapred::Error::InvalidArgument("faulty.rate must be a number between 0 and 1".into())
        })?;
        let first_rate: f64 =
            conf.get("faulty.first.rate").unwrap_or("0").trim().parse().map_err(|_| {
                mapred::Error::InvalidArgument(
                    "faulty.first.rate must be a number between 0 and 1".into(),
                )
            })?;
        let on = conf.get_bool(&format!("faulty.{side}"), true)?;
        let seed = conf.get_u64("faulty.seed", 0)?;
        let (task, attempt) = task_of(&info.attempt_id);
        let fault = if !on {
            Fault::None
        } else if draw_first(seed, &task, attempt, first_rate) {
            Fault::Exit(0)
        } else {
            draw(seed, &task, attempt, rate)
        };
        let slow_tasks = conf.get("faulty.slow.tasks").unwrap_or("");
        let slow = attempt == 0 && slow_tasks.split(',').any(|t| !t.is_empty() && t.trim() == task);
        Ok(Plan {
            fault,
            hang: Duration::from_millis(conf.get_u64("faulty.hang.ms", 3_600_000)?),
            poison: conf.get_bool("faulty.poison", true)?,
            slow: if slow {
                Duration::from_millis(conf.get_u64("faulty.slow.ms", 10_000)?)
            } else {
                Duration::ZERO
            },
        })
    }

    /// Before record `n`: misbehave if this is the record.
    fn at(&self, n: u64) {
        match self.fault {
            Fault::Exit(k) if k == n => std::process::exit(3),
            Fault::Abort(k) if k == n => std::process::abort(),
            Fault::Hang(k) if k == n => std::thread::sleep(self.hang),
            _ => {}
        }
    }

    /// After the last record: a fault drawn past the end fires now.
    fn at_end(&self, records: u64) {
        match self.fault {
            Fault::Exit(k) | Fault::Abort(k) | Fault::Hang(k) if k >= records => {
                self.at(k);
            }
            _ => {}
        }
    }

    fn poison(&self, line: &[u8]) {
        if !self.poison || !has_poison_marker(line) {
            return;
        }
        let has = |w: &[u8]| line.windows(w.len()).any(|x| x == w);
        if has(b"POISON_PANIC") {
            panic!("poison record: {}", String::from_utf8_lossy(line));
        }
        if has(b"POISON_ABORT") {
            std::process::abort();
        }
        if has(b"POISON_SEGV") {
            segfault();
        }
        if has(b"POISON_HANG") {
            std::thread::sleep(self.hang);
        }
    }

    /// Before key group `key`: crash if it is a poison key.
    fn poison_key(&self, key: &[u8]) {
        if !self.poison || !key.starts_with(b"BADKEY_") {
            return;
        }
        match key {
            b"BADKEY_PANIC" => panic!("poison key group: BADKEY_PANIC"),
            b"BADKEY_ABORT" => std::process::abort(),
            b"BADKEY_SEGV" => segfault(),
            b"BADKEY_HANG" => std::thread::sleep(self.hang),
            _ => {}
        }
    }
}

/// Dies of SIGSEGV, as a wild pointer would (raised rather than provoked: a null write is
/// undefined behaviour the compiler may assume away). The default action is restored
/// first: Rust's runtime handles SIGSEGV to report stack overflows, and a raised signal
/// that handler passes over would simply return.
fn segfault() {
    // SAFETY: signal(2) and raise(2) have no memory-safety preconditions; SIG_DFL is a
    // valid disposition.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
}

fn has_poison_marker(line: &[u8]) -> bool {
    line.windows(7).any(|w| w == b"POISON_")
}

/// The fault of attempt number `attempt` of task `task` (`m3`, `r0`) at `rate` with `seed`.
pub fn draw(seed: u64, task: &str, attempt: u32, rate: f64) -> Fault {
    let h = stable_hash(format!("{seed}/any/{task}/{attempt}").as_bytes());
    if ((h % 1_000_000) as f64) >= rate * 1_000_000.0 {
        return Fault::None;
    }
    let at = (h >> 40) % 64;
    match (h >> 20) % 3 {
        0 => Fault::Exit(at),
        1 => Fault::Abort(at),
        _ => Fault::Hang(at),
    }
}

/// Whether attempt number `attempt` of task `task` (`m3`, `r0`) dies at its first record,
/// at `rate` with `seed`.
pub fn draw_first(seed: u64, task: &str, attempt: u32, rate: f64) -> bool {
    let h = stable_hash(format!("{seed}/first/{task}/{attempt}").as_bytes());
    ((h % 1_000_000) as f64) < rate * 1_000_000.0
}

/// (`m3` / `r0`, attempt number) of an attempt id `attempt_<epoch>_<seq>_m_000003_0`.
fn task_of(attempt_id: &str) -> (String, u32) {
    let parts: Vec<&str> = attempt_id.rsplitn(4, '_').collect();
    match parts.as_slice() {
        [n, index, kind, ..] => {
            let index: u64 = index.parse().unwrap_or(u64::MAX);
            (format!("{kind}{index}"), n.parse().unwrap_or(0))
        }
        _ => (String::new(), 0),
    }
}

/// Word count's mapper, misbehaving as planned.
#[derive(Debug)]
pub struct FaultyMapper {
    conf: JobConf,
    plan: Option<Plan>,
    records: u64,
}

impl Mapper for FaultyMapper {
    type Key = [u8];
    type Value = u64;

    fn setup(&mut self, ctx: &mut Context<'_, [u8], u64>) -> Result<()> {
        let plan = Plan::new(&self.conf, ctx.task(), "map")?;
        std::thread::sleep(plan.slow);
        self.plan = Some(plan);
        Ok(())
    }

    fn map(&mut self, input: Input<'_>, ctx: &mut Context<'_, [u8], u64>) -> Result<()> {
        if let Some(p) = &self.plan {
            p.at(self.records);
            p.poison(input.line());
        }
        self.records += 1;
        for word in input.line().split(|b| b.is_ascii_whitespace()) {
            if !word.is_empty() {
                ctx.emit(word, &1)?;
            }
        }
        Ok(())
    }

    fn cleanup(&mut self, _ctx: &mut Context<'_, [u8], u64>) -> Result<()> {
        if let Some(p) = &self.plan {
            p.at_end(self.records);
        }
        Ok(())
    }
}

/// Word count's reducer, misbehaving as planned.
#[derive(Debug)]
pub struct FaultyReducer {
    conf: JobConf,
    plan: Option<Plan>,
    groups: u64,
}

impl Reducer for FaultyReducer {
    type KeyIn = Vec<u8>;
    type ValueIn = u64;
    type KeyOut = [u8];
    type ValueOut = u64;

    fn setup(&mut self, ctx: &mut Context<'_, [u8], u64>) -> Result<()> {
        let plan = Plan::new(&self.conf, ctx.task(), "reduce")?;
        std::thread::sleep(plan.slow);
        self.plan = Some(plan);
        Ok(())
    }

    fn reduce(
        &mut self,
        key: Vec<u8>,
        values: &mut Values<'_, u64>,
        ctx: &mut Context<'_, [u8], u64>,
    ) -> Result<()> {
        if let Some(p) = &self.plan {
            p.at(self.groups);
            p.poison_key(&key);
        }
        self.groups += 1;
        let n: u64 = values.sum();
        ctx.emit(&key, &n)
    }

    fn cleanup(&mut self, _ctx: &mut Context<'_, [u8], u64>) -> Result<()> {
        if let Some(p) = &self.plan {
            p.at_end(self.groups);
        }
        Ok(())
    }
}

/// The `faulty` job.
pub fn job() -> Job<FaultyMapper, WithReducer> {
    Job::new(
        "faulty",
        "word count that crashes, hangs and straggles on purpose (-D faulty.*)",
        |c| Ok(FaultyMapper { conf: c.clone(), plan: None, records: 0 }),
    )
    .combiner(|_| crate::sum)
    .reducer(|c| Ok(FaultyReducer { conf: c.clone(), plan: None, groups: 0 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_deterministic_per_attempt_and_near_the_rate() {
        let tasks: Vec<String> = (0..3000).map(|i| format!("m{i}")).collect();
        let faults = tasks.iter().filter(|t| draw(7, t, 0, 1.0 / 3.0) != Fault::None).count();
        assert!((800..1200).contains(&faults), "{faults} of 3000");
        assert_eq!(draw(7, &tasks[5], 1, 0.5), draw(7, &tasks[5], 1, 0.5));
        assert!(tasks.iter().all(|t| draw(7, t, 0, 0.0) == Fault::None));
        let kinds: std::collections::HashSet<std::mem::Discriminant<Fault>> =
            tasks.iter().map(|t| std::mem::discriminant(&draw(1, t, 0, 1.0))).collect();
        assert_eq!(kinds.len(), 3, "exits, aborts and hangs");
    }

    /// tests/tests/mrfaults.rs relies on seed 17 at rate 0.33 making first attempts of its
    /// 3 maps and 2 reduces exit, abort and hang, whether or not a worker kill lands first.
    #[test]
    fn seed_17_fails_first_attempts_of_the_fault_test_job_every_way() {
        let firsts: Vec<Fault> =
            ["m0", "m1", "m2", "r0", "r1"].iter().map(|t| draw(17, t, 0, 0.33)).collect();
        assert!(firsts.iter().any(|f| matches!(f, Fault::Exit(_))), "{firsts:?}");
        assert!(firsts.iter().any(|f| matches!(f, Fault::Abort(_))), "{firsts:?}");
        assert!(firsts.iter().any(|f| matches!(f, Fault::Hang(_))), "{firsts:?}");
    }

    #[test]
    fn first_record_faults_are_seeded_per_task_and_attempt() {
        let tasks: Vec<String> = (0..3000).map(|i| format!("m{i}")).collect();
        let hits = tasks.iter().filter(|t| draw_first(3, t, 0, 1.0 / 3.0)).count();
        assert!((800..1200).contains(&hits), "{hits} of 3000");
        assert_eq!(draw_first(3, "r1", 2, 0.5), draw_first(3, "r1", 2, 0.5));
        let per_attempt = (0..3000).filter(|&n| draw_first(3, "r1", n, 1.0 / 3.0)).count();
        assert!((800..1200).contains(&per_attempt), "{per_attempt} of 3000");
        assert!(!draw_first(3, "m0", 0, 0.0));
    }

    #[test]
    fn task_names_come_from_attempt_ids() {
        assert_eq!(task_of("attempt_17_0002_m_000003_0"), ("m3".into(), 0));
        assert_eq!(task_of("attempt_17_0002_r_000000_2"), ("r0".into(), 2));
    }
}
