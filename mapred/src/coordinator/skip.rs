//! Skipping records that crash deterministically, and only those.
//!
//! When an attempt crashes or hangs (not when user code returns an error), its worker
//! reports the index of the record (map) or key group (reduce) it was processing. That
//! alone proves little: a worker's random failure, an OOM kill or a node going away
//! lands on whatever record is current, and most often on the first (startup is when
//! memory and disks are busiest). So a record is only ever skipped in three steps:
//!
//! 1. **Suspect.** It crashed `mapred.skip.attempts` (default 2) ordinary attempts of its
//!    task ([`Task::bad_records`], [`Task::next_suspect`]).
//! 2. **Replays.** The task's next attempts are *replays*: a fresh process that runs the
//!    user code's setup, that one record (its output discarded) and cleanup
//!    ([`crate::spec::TaskSpec::replay`]). A replay that gets through the record *clears*
//!    it for good: it is processed normally, and crashes on it never make it a suspect
//!    again, so a task whose crashes are random keeps retrying until it succeeds or runs
//!    out of attempts, failing loudly. A replay that crashes on the record (or hangs
//!    there for the task timeout) is evidence; one that fails elsewhere (framework I/O,
//!    cleanup) or is lost with its worker proves nothing, and the record is replayed again.
//! 3. **Confirmed.** Once `mapred.skip.replays` (default 3) replays in a row crashed on it,
//!    the record is on the skip list of the task's later attempts, which count and list
//!    it in `OUT/_skipped/` ([`crate::progress::Skipper`]).
//!
//! Replays that crash on their record do not count toward the task's attempts (they are
//! the evidence asked for, and each record gets a bounded number); any other failure does.
//! Replays are never speculated. Submitting clients see the skipped total and exit with
//! a distinct code unless `mapred.skip.allowed` permits it (see [`crate::runtime`]).

use super::core::Core;
use super::model::*;
use crate::counters as c;
use crate::spec::TaskKind;

/// What a replay's end says about its suspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It crashed on the record; more replays are wanted.
    Crashed,
    /// It crashed on the record, the last replay wanted: the record is skipped from now on.
    Confirmed,
    /// It got through the record: the record is processed normally.
    Cleared,
    /// It failed for another reason: a failure of the task, and the record is replayed again.
    Inconclusive,
    /// It was killed (lost with its worker): replayed again.
    Killed,
}

/// Records the end of attempt `ai` of `task`, a replay of `record`, and judges it.
pub(crate) fn judge_replay(
    task: &mut Task,
    ai: usize,
    record: u64,
    outcome: Outcome,
    opts: JobOptions,
) -> Verdict {
    let att = &mut task.attempts[ai];
    let verdict = match outcome {
        Outcome::Succeeded { counters, .. } => {
            att.state = AttemptState::Succeeded;
            att.counters = counters;
            att.error = format!("replay of record {record} ran fine: the record is not skipped");
            Verdict::Cleared
        }
        Outcome::Failed { error, last_record } if last_record == Some(record) => {
            att.state = AttemptState::Failed;
            att.excused = true;
            att.error = format!("replay of record {record} crashed too: {error}");
            let crashed = task.suspect.map_or(0, |(_, n)| n) + 1;
            if crashed >= opts.skip_replays {
                Verdict::Confirmed
            } else {
                task.suspect = Some((record, crashed));
                Verdict::Crashed
            }
        }
        Outcome::Failed { error, .. } | Outcome::Fatal { error } => {
            att.state = AttemptState::Failed;
            att.error = format!("replay of record {record} failed elsewhere: {error}");
            Verdict::Inconclusive
        }
        Outcome::Killed => {
            att.state = AttemptState::Killed;
            if att.error.is_empty() {
                att.error = format!("replay of record {record} killed");
            }
            Verdict::Killed
        }
    };
    let next = |t: &Task| t.next_suspect(opts.skip_after).map(|r| (r, 0));
    match verdict {
        Verdict::Confirmed => {
            task.confirmed.insert(record);
            task.suspect = next(task);
        }
        Verdict::Cleared => {
            task.cleared.insert(record);
            task.bad_records.remove(&record);
            task.suspect = next(task);
        }
        Verdict::Crashed | Verdict::Inconclusive | Verdict::Killed => {}
    }
    verdict
}

impl Core {
    /// A replay of suspect `record` (attempt `ai` of task `kind` `index` of job `seq`)
    /// ended with `outcome`.
    pub(crate) fn replay_finished(
        &mut self,
        seq: u64,
        (kind, index, ai): (TaskKind, u32, usize),
        record: u64,
        outcome: Outcome,
        now: i64,
    ) -> Vec<Action> {
        let Some(job) = self.jobs.get_mut(&seq) else { return Vec::new() };
        let running = job.state == JobState::Running;
        let opts = job.opts;
        let Some(task) = job.task_mut(kind, index) else { return Vec::new() };
        let verdict = judge_replay(task, ai, record, outcome, opts);
        if running && task.state == TaskState::Running && task.running() == 0 {
            task.state = TaskState::Pending;
        }
        if verdict == Verdict::Confirmed {
            tracing::warn!(job = %job.id, ?kind, index, record, "record crashes deterministically: skipped");
        }
        let counter = match verdict {
            Verdict::Crashed | Verdict::Confirmed => c::NUM_REPLAYS_CRASHED,
            Verdict::Cleared => c::NUM_SUSPECTS_CLEARED,
            Verdict::Inconclusive => ended_counter(kind, false),
            Verdict::Killed => ended_counter(kind, true),
        };
        job.job_counters.add(c::JOB, counter, 1);
        if verdict == Verdict::Inconclusive && running {
            return self.after_failure(seq, kind, index, now);
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::super::core::tests::{beat, core, job, ok, reg, split};
    use super::*;
    use crate::config::keys;

    fn crash(record: Option<u64>) -> Outcome {
        Outcome::Failed {
            error: "attempt died; stderr ends with:\npanic".into(),
            last_record: record,
        }
    }

    /// Runs the next attempt of the only task on `w` and ends it with `outcome`;
    /// returns what it was asked to replay and to skip.
    fn run(c: &mut Core, w: &str, outcome: Outcome, now: i64) -> (Option<u64>, Vec<u64>) {
        let a = beat(c, w, 1, &[], now).tasks.remove(0);
        c.attempt_finished(&a.attempt_id, w, outcome, now);
        (a.spec.replay, a.spec.skip)
    }

    fn skipping_ok() -> Outcome {
        Outcome::Succeeded {
            counters: Default::default(),
            output_path: Some("/out/_temporary/a/part-m-00000".into()),
            skipped_path: Some("/out/_temporary/a/skipped-part-m-00000".into()),
        }
    }

    #[test]
    fn a_poison_record_is_replayed_alone_then_skipped_and_listed() {
        let mut c = core();
        c.cfg.max_attempts = 4;
        let w = reg(&mut c, "h1");
        let (id, _) = c.submit(job(vec![split(&[], &[])], 0), 0).unwrap();
        // Two crashes on record 7 make it a suspect; one on 9 does not.
        assert_eq!(run(&mut c, &w, crash(Some(7)), 1), (None, vec![]));
        assert_eq!(run(&mut c, &w, crash(Some(9)), 2), (None, vec![]));
        assert_eq!(run(&mut c, &w, crash(Some(7)), 3), (None, vec![]));
        // Three replays of 7 alone, each crashing (the last one hangs: the worker reports a
        // timeout the same way, naming the record).
        for n in 0..3 {
            assert_eq!(run(&mut c, &w, crash(Some(7)), 10 + n), (Some(7), vec![]), "replay {n}");
        }
        let j = c.job(&id).unwrap();
        assert_eq!(j.maps[0].failures(), 3, "replays that crashed on 7 do not count");
        assert_eq!(j.state, JobState::Running);
        let last = beat(&mut c, &w, 1, &[], 20).tasks.remove(0);
        assert_eq!((last.spec.replay, last.spec.skip.as_slice()), (None, &[7][..]));
        let done = c.attempt_finished(&last.attempt_id, &w, skipping_ok(), 21);
        let Action::Commit { renames, .. } = &done[0] else { panic!("{done:?}") };
        assert!(renames.contains(&(
            "/out/_temporary/a/skipped-part-m-00000".into(),
            "/out/_skipped/part-m-00000".into()
        )));
        let k = c.job(&id).unwrap().all_counters();
        assert_eq!(k.get(c::JOB, c::NUM_REPLAYS), 3);
        assert_eq!(k.get(c::JOB, c::NUM_REPLAYS_CRASHED), 3);
        assert_eq!(k.get(c::JOB, c::NUM_FAILED_MAPS), 3);
    }

    #[test]
    fn a_record_that_runs_fine_alone_is_never_skipped() {
        let mut c = core();
        c.cfg.max_attempts = 5;
        let w = reg(&mut c, "h1");
        let (id, _) = c.submit(job(vec![split(&[], &[])], 0), 0).unwrap();
        // Random crashes at the first record: a suspect after two.
        run(&mut c, &w, crash(Some(0)), 1);
        run(&mut c, &w, crash(Some(0)), 2);
        assert_eq!(run(&mut c, &w, crash(Some(0)), 3), (Some(0), vec![]), "replay crashed");
        assert_eq!(run(&mut c, &w, ok(None), 4), (Some(0), vec![]), "replay ran fine");
        // Cleared: later crashes on it are never evidence again, and the task runs out of
        // attempts loudly instead of losing the record.
        for n in 0..3 {
            assert_eq!(run(&mut c, &w, crash(Some(0)), 5 + n), (None, vec![]), "attempt {n}");
        }
        let j = c.job(&id).unwrap();
        assert_eq!(j.state, JobState::Failed);
        assert!(j.error.contains("failed 5 times"), "{}", j.error);
        assert!(j.error.contains("replay of record 0 ran fine"), "{}", j.error);
        assert_eq!(j.all_counters().get(c::JOB, c::NUM_SUSPECTS_CLEARED), 1);
        assert!(j.maps[0].confirmed.is_empty());
    }

    #[test]
    fn replays_that_fail_elsewhere_or_are_lost_prove_nothing() {
        let mut c = core();
        c.cfg.max_attempts = 4;
        let w = reg(&mut c, "h1");
        let mut conf = job(vec![split(&[], &[])], 0);
        conf.conf.set(keys::SKIP_REPLAYS, "1");
        let (id, _) = c.submit(conf, 0).unwrap();
        run(&mut c, &w, crash(Some(4)), 1);
        run(&mut c, &w, crash(Some(4)), 2);
        // A replay that fails before reaching the record, or in cleanup, counts as a
        // failure of the task, and the record is replayed again.
        assert_eq!(run(&mut c, &w, crash(Some(2)), 3), (Some(4), vec![]));
        assert_eq!(run(&mut c, &w, crash(None), 4).0, Some(4));
        assert_eq!(c.job(&id).unwrap().maps[0].failures(), 4);
        assert_eq!(c.job(&id).unwrap().state, JobState::Failed, "out of attempts");
        // A replay lost with its worker is simply run again.
        let mut c = core();
        c.cfg.max_attempts = 3;
        let w = reg(&mut c, "h1");
        let mut conf = job(vec![split(&[], &[])], 0);
        conf.conf.set(keys::SKIP_REPLAYS, "1");
        c.submit(conf, 0).unwrap();
        run(&mut c, &w, crash(Some(4)), 1);
        run(&mut c, &w, crash(Some(4)), 2);
        assert_eq!(run(&mut c, &w, Outcome::Killed, 3), (Some(4), vec![]));
        assert_eq!(run(&mut c, &w, crash(Some(4)), 4), (Some(4), vec![]), "confirmed by one");
        assert_eq!(run(&mut c, &w, ok(None), 5), (None, vec![4]));
    }

    #[test]
    fn replays_are_never_backed_up() {
        let mut c = core();
        c.cfg.max_attempts = 4;
        c.cfg.speculative_lag_ms = 0;
        let w1 = reg(&mut c, "h1");
        let w2 = reg(&mut c, "h2");
        c.submit(job(vec![split(&[], &[]); 2], 0), 0).unwrap();
        let a = beat(&mut c, &w1, 1, &[], 0).tasks.remove(0);
        let b = beat(&mut c, &w2, 1, &[], 0).tasks.remove(0);
        c.attempt_finished(&b.attempt_id, &w2, ok(Some("/t")), 10);
        c.attempt_finished(&a.attempt_id, &w1, crash(Some(1)), 11);
        let a = beat(&mut c, &w2, 1, &[], 12).tasks.remove(0);
        c.attempt_finished(&a.attempt_id, &w2, crash(Some(1)), 13);
        let replay = beat(&mut c, &w1, 1, &[], 14).tasks.remove(0);
        assert_eq!(replay.spec.replay, Some(1));
        // h3 has seen no failure, the replay has run far past the phase's median, and
        // no task is pending: an ordinary attempt would get a backup there.
        let w3 = reg(&mut c, "h3");
        let running = [replay.attempt_id.as_str()];
        beat(&mut c, &w1, 0, &running, 100_000);
        assert!(beat(&mut c, &w3, 1, &[], 100_000).tasks.is_empty(), "no backup of a replay");
    }

    #[test]
    fn with_skipping_off_nothing_is_suspected() {
        let mut c = core();
        c.cfg.max_attempts = 4;
        let w = reg(&mut c, "h1");
        let mut off = job(vec![split(&[], &[])], 0);
        off.conf.set(keys::SKIP_ENABLED, "false");
        let (id, _) = c.submit(off, 0).unwrap();
        for n in 0..3 {
            assert_eq!(run(&mut c, &w, crash(Some(3)), n), (None, vec![]));
        }
        assert!(c.job(&id).unwrap().maps[0].bad_records.is_empty());
    }

    /// xorshift64*: a deterministic stream for the simulation below.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The scenario through the core: every attempt (replays included) dies at
    /// its first record with probability 1/3, over 1000 tasks; plus one true poison record.
    /// Blameless records are skipped only when five attempts in a row crash (1 in 243:
    /// about 4 of 1000, where the old rule skipped after two, about 111); poison always.
    #[test]
    fn random_crashes_rarely_fool_it_and_poison_never_does() {
        let mut c = core();
        c.cfg.max_attempts = 100;
        let w = reg(&mut c, "h1");
        let (id, _) = c.submit(job(vec![split(&[], &[]); 1001], 0), 0).unwrap();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for now in 0..100_000 {
            let tasks = beat(&mut c, &w, 1, &[], now).tasks;
            let Some(a) = tasks.first() else { break };
            // The first record it processes: the replayed one, or the first not skipped.
            let first = a.spec.replay.unwrap_or(a.spec.skip.len() as u64);
            let poison = a.spec.index == 1000 && first == 0;
            let dies = poison || next(&mut rng).is_multiple_of(3);
            let outcome = if dies { crash(Some(first)) } else { ok(Some("/t")) };
            c.attempt_finished(&a.attempt_id, &w, outcome, now);
        }
        let j = c.job(&id).unwrap();
        assert!(j.maps.iter().all(|t| t.state != TaskState::Pending), "all ran");
        let skipped = |t: &Task| !t.confirmed.is_empty();
        let blameless = j.maps[..1000].iter().filter(|t| skipped(t)).count();
        assert!(blameless <= 15, "{blameless} blameless records skipped");
        assert!(skipped(&j.maps[1000]), "the poison record is skipped");
    }
}
