//! Recovering from failures other than a task's own: workers that die or vanish, attempts
//! a worker lost, map outputs reducers cannot fetch, and the cleanup of jobs that ended
//! badly. Driven by [`Core::tick`] and the service's fault events.
//!
//! **Worker death.** A worker silent for `dead_after_ms` is declared dead and forgotten
//! (its next heartbeat is told to register again, as a new incarnation with a new id).
//! Its running attempts are killed and their tasks made pending; so are its *completed*
//! maps of jobs whose reduces still need them, since that output lived on its disk.
//! Reduces it completed are kept: their output is in the DFS. Reports from the dead
//! incarnation are ignored ([`Core::attempt_finished`] checks the reporter).
//!
//! **Lost map output.** A reduce attempt that cannot fetch a map's output retries, then
//! reports it ([`Core::fetch_failed`]). If that output is still the map's current one, the
//! map attempt is marked failed (it counts toward the map's attempts, as in Hadoop) and
//! the map is run again, elsewhere if possible; reducers poll [`Core::map_outputs_for`]
//! until the new location appears, and fail after their own deadline, never waiting
//! forever.

use super::core::Core;
use super::model::*;
use super::sched::map_outputs;
use crate::counters::{self as c};
use crate::error::{Error, Result};
use crate::spec::{MapOutputLoc, TaskKind};

impl Core {
    /// Periodic housekeeping: declares silent workers dead, and cleans up failed or killed
    /// jobs once their attempts are over.
    pub fn tick(&mut self, now: i64) -> Vec<Action> {
        let dead_after = self.cfg.dead_after_ms;
        let silent: Vec<String> = self
            .workers
            .values()
            .filter(|w| now - w.last_seen > dead_after)
            .map(|w| w.id.clone())
            .collect();
        let mut actions = Vec::new();
        for id in silent {
            let why = format!("no heartbeat for {} ms", dead_after);
            actions.extend(self.declare_dead(&id, &why, now));
        }
        let seqs: Vec<u64> = self.jobs.keys().copied().collect();
        for seq in seqs {
            actions.extend(self.abort_if_quiet(seq, now));
        }
        actions
    }

    /// Forgets worker `id`: its running attempts are killed and rescheduled, and its
    /// completed maps whose output is still needed are run again.
    pub(crate) fn declare_dead(&mut self, id: &str, why: &str, now: i64) -> Vec<Action> {
        if self.workers.remove(id).is_none() {
            return Vec::new();
        }
        tracing::warn!(worker = id, reason = why, "worker declared dead");
        let seqs: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Running || j.running_attempts() > 0)
            .map(|(s, _)| *s)
            .collect();
        for seq in seqs {
            let Some(job) = self.jobs.get_mut(&seq) else { continue };
            let running = job.state == JobState::Running;
            let needs_outputs = running && job.needs_map_outputs() && !job.finishing;
            let mut killed = [0u64; 2];
            for t in job.maps.iter_mut().chain(job.reduces.iter_mut()) {
                let k = usize::from(t.kind == TaskKind::Reduce);
                for a in t.attempts.iter_mut().filter(|a| a.worker == id) {
                    if a.state == AttemptState::Running {
                        a.state = AttemptState::Killed;
                        a.end_ms = now;
                        a.error = format!("lost with worker {id} ({why})");
                        killed[k] += 1;
                    }
                }
                let lost_output = t.kind == TaskKind::Map
                    && needs_outputs
                    && matches!(t.state, TaskState::Succeeded | TaskState::Committing)
                    && t.winner.and_then(|w| t.attempts.get(w)).is_some_and(|a| a.worker == id);
                if lost_output && let Some(w) = t.winner.take() {
                    let a = &mut t.attempts[w];
                    a.state = AttemptState::Killed;
                    a.error = format!("output lost with worker {id} ({why})");
                    killed[k] += 1;
                    t.output = None;
                    t.state = TaskState::Pending;
                }
                if running && t.state == TaskState::Running && t.running() == 0 {
                    t.state = TaskState::Pending;
                }
            }
            job.job_counters.add(c::JOB, c::NUM_KILLED_MAPS, killed[0]);
            job.job_counters.add(c::JOB, c::NUM_KILLED_REDUCES, killed[1]);
        }
        Vec::new()
    }

    /// Attempts the core thinks `worker_id` runs but its heartbeat does not list: lost
    /// (an assignment that never arrived, or a report that never came).
    pub(crate) fn lose_unlisted(
        &mut self,
        worker_id: &str,
        running: &[String],
        now: i64,
    ) -> Vec<Action> {
        let mut lost = Vec::new();
        for job in self.jobs.values().filter(|j| j.state == JobState::Running) {
            for t in job.maps.iter().chain(&job.reduces) {
                for a in &t.attempts {
                    if a.worker == worker_id
                        && a.state == AttemptState::Running
                        && !running.contains(&a.id)
                    {
                        lost.push(a.id.clone());
                    }
                }
            }
        }
        let mut actions = Vec::new();
        for a in lost {
            if let Some((_, _, att)) = self.attempt(&a) {
                let worker = att.worker.clone();
                tracing::warn!(attempt = %a, worker = %worker, "attempt lost by its worker");
                let mut more = self.attempt_finished(&a, &worker, Outcome::Killed, now);
                actions.append(&mut more);
            }
        }
        actions
    }

    /// Reduce attempt `reduce_attempt` could not fetch `map_attempt`'s output of map
    /// `map` of job `job_id`, even after retrying.
    pub fn fetch_failed(
        &mut self,
        job_id: &str,
        reduce_attempt: &str,
        map: u32,
        map_attempt: &str,
        error: &str,
        now: i64,
    ) -> Vec<Action> {
        let reporter_runs = self.attempt(reduce_attempt).is_some_and(|(j, t, a)| {
            j.id == job_id && t.kind == TaskKind::Reduce && a.state == AttemptState::Running
        });
        let Some(&seq) = self.job_ids.get(job_id) else { return Vec::new() };
        let Some(job) = self.jobs.get_mut(&seq) else { return Vec::new() };
        if !reporter_runs || job.state != JobState::Running {
            return Vec::new();
        }
        let Some(task) = job.maps.get_mut(map as usize) else { return Vec::new() };
        let current = task.output.as_ref().is_some_and(|(a, _)| a == map_attempt);
        if !current {
            return Vec::new(); // already being run again
        }
        tracing::warn!(
            job = job_id,
            map_attempt,
            reducer = reduce_attempt,
            error,
            "map output lost"
        );
        if let Some(w) = task.winner.take() {
            let a = &mut task.attempts[w];
            a.state = AttemptState::Failed;
            a.error = format!("output could not be fetched by {reduce_attempt}: {error}");
        }
        task.output = None;
        task.state = TaskState::Pending;
        job.job_counters.add(c::JOB, c::NUM_FAILED_MAPS, 1);
        self.after_failure(seq, TaskKind::Map, map, now)
    }

    /// Where the outputs of job `job_id`'s maps are now, for its running reduce attempt
    /// `reduce_attempt`.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown job, [`Error::FailedPrecondition`] once the job
    /// or the attempt is no longer running (the reducer should give up).
    pub fn map_outputs_for(&self, job_id: &str, reduce_attempt: &str) -> Result<Vec<MapOutputLoc>> {
        let job = self.job(job_id).ok_or_else(|| Error::NotFound(format!("no job {job_id}")))?;
        if job.state != JobState::Running {
            return Err(Error::FailedPrecondition(format!(
                "job {job_id} is {}",
                job.state.as_str()
            )));
        }
        let runs = self
            .attempt(reduce_attempt)
            .is_some_and(|(j, _, a)| j.id == job_id && a.state == AttemptState::Running);
        if !runs {
            return Err(Error::FailedPrecondition(format!(
                "attempt {reduce_attempt} is no longer running"
            )));
        }
        Ok(map_outputs(job))
    }
}

#[cfg(test)]
mod tests {
    use super::super::core::tests::{beat, core, job, ok, reg, split};
    use super::*;

    fn failed(record: Option<u64>) -> Outcome {
        Outcome::Failed {
            error: "attempt died; stderr ends with:\npanic".into(),
            last_record: record,
        }
    }

    #[test]
    fn a_dead_worker_loses_its_running_attempts_and_completed_maps() {
        let mut c = core();
        c.cfg.locality_delay_ms = 0;
        let w1 = reg(&mut c, "h1");
        let w2 = reg(&mut c, "h2");
        let (id, _) = c.submit(job(vec![split(&["h1"], &[]), split(&["h2"], &[])], 1), 0).unwrap();
        let m1 = beat(&mut c, &w1, 1, &[], 0).tasks.remove(0);
        let m2 = beat(&mut c, &w2, 1, &[], 0).tasks.remove(0);
        c.attempt_finished(&m1.attempt_id, &w1, ok(None), 10);
        c.attempt_finished(&m2.attempt_id, &w2, ok(None), 10);
        let r = beat(&mut c, &w2, 1, &[], 20).tasks.remove(0);
        // w1 falls silent; w2 keeps heartbeating.
        beat(&mut c, &w2, 0, &[&r.attempt_id], 900);
        assert!(c.tick(900).is_empty());
        c.tick(1100);
        assert!(c.workers().all(|w| w.id != w1), "w1 is forgotten");
        let j = c.job(&id).unwrap();
        assert_eq!(j.maps[0].state, TaskState::Pending, "its completed map runs again");
        assert_eq!(j.maps[1].state, TaskState::Succeeded);
        assert_eq!(j.maps[0].attempts[0].state, AttemptState::Killed);
        assert_eq!(j.all_counters().get(c::JOB, c::NUM_KILLED_MAPS), 1);
        // The re-run map goes to w2; its location reaches the running reducer.
        let again = beat(&mut c, &w2, 1, &[&r.attempt_id], 1100).tasks.remove(0);
        assert!(again.attempt_id.ends_with("m_000000_1"));
        assert_eq!(c.map_outputs_for(&id, &r.attempt_id).unwrap().len(), 1);
        c.attempt_finished(&again.attempt_id, &w2, ok(None), 1200);
        let locs = c.map_outputs_for(&id, &r.attempt_id).unwrap();
        assert_eq!(locs.len(), 2);
        assert!(locs.iter().any(|l| l.attempt_id == again.attempt_id && l.shuffle_addr == "h2:1"));
        // w1 comes back: it is told to register again, and its late report is ignored.
        assert!(beat(&mut c, &w1, 1, &[&m1.attempt_id], 1300).reregister);
        assert!(c.attempt_finished(&m1.attempt_id, &w1, ok(None), 1300).is_empty());
        let w1b = c.register_worker("h1", "/a", 4, "h1:1", 1400).0;
        assert_ne!(w1b, w1, "a new incarnation");
        assert_eq!(
            beat(&mut c, &w1b, 1, &[&m1.attempt_id], 1500).kill,
            std::slice::from_ref(&m1.attempt_id)
        );
        let a = c.attempt_finished(&r.attempt_id, &w2, ok(Some("/out/_temporary/r/part")), 1600);
        assert_eq!(a.len(), 1);
        let j = c.job(&id).unwrap();
        assert_eq!(j.all_counters().get(c::JOB, c::TOTAL_LAUNCHED_MAPS), 3);
    }

    #[test]
    fn completed_reduces_and_outputs_no_longer_needed_are_kept() {
        let mut c = core();
        let w1 = reg(&mut c, "h1");
        let (id, _) = c.submit(job(vec![split(&[], &[])], 1), 0).unwrap();
        let m = beat(&mut c, &w1, 1, &[], 0).tasks.remove(0);
        c.attempt_finished(&m.attempt_id, &w1, ok(None), 1);
        let r = beat(&mut c, &w1, 1, &[], 2).tasks.remove(0);
        let commit = c.attempt_finished(&r.attempt_id, &w1, ok(Some("/t/part")), 3);
        assert_eq!(commit.len(), 1);
        c.tick(5000);
        let j = c.job(&id).unwrap();
        assert_eq!(j.maps[0].state, TaskState::Succeeded, "no reduce needs it any more");
        assert_eq!(j.reduces[0].state, TaskState::Committing);
        assert_eq!(c.commit_finished(&r.attempt_id, Ok(()), 5001).len(), 1);
    }

    #[test]
    fn an_attempt_a_heartbeat_no_longer_lists_is_lost_and_rescheduled() {
        let mut c = core();
        let w1 = reg(&mut c, "h1");
        let (id, _) = c.submit(job(vec![split(&[], &[])], 0), 0).unwrap();
        let m = beat(&mut c, &w1, 1, &[], 0).tasks.remove(0);
        let r = beat(&mut c, &w1, 1, &[], 100);
        assert_eq!(r.tasks.len(), 1, "rescheduled at once");
        let j = c.job(&id).unwrap();
        assert_eq!(j.maps[0].attempts[0].state, AttemptState::Killed);
        assert!(c.attempt_finished(&m.attempt_id, &w1, ok(Some("/t")), 200).is_empty());
    }

    #[test]
    fn lost_map_output_is_run_again_and_reducers_never_wait_on_a_dead_job() {
        let mut c = core();
        c.cfg.locality_delay_ms = 0;
        c.cfg.max_attempts = 4;
        let w1 = reg(&mut c, "h1");
        let w2 = reg(&mut c, "h2");
        let (id, _) = c.submit(job(vec![split(&["h1"], &[])], 1), 0).unwrap();
        let m = beat(&mut c, &w1, 1, &[], 0).tasks.remove(0);
        c.attempt_finished(&m.attempt_id, &w1, ok(None), 1);
        let r = beat(&mut c, &w2, 1, &[], 2).tasks.remove(0);
        // A stale report (unknown reducer) changes nothing; the real one re-runs the map.
        assert!(c.fetch_failed(&id, "attempt_x", 0, &m.attempt_id, "gone", 3).is_empty());
        assert_eq!(c.job(&id).unwrap().maps[0].state, TaskState::Succeeded);
        c.fetch_failed(&id, &r.attempt_id, 0, &m.attempt_id, "crc mismatch", 3);
        let j = c.job(&id).unwrap();
        assert_eq!(j.maps[0].state, TaskState::Pending);
        assert!(j.maps[0].attempts[0].error.contains("crc mismatch"));
        assert!(c.map_outputs_for(&id, &r.attempt_id).unwrap().is_empty());
        // A second report about the same output does not count twice.
        c.fetch_failed(&id, &r.attempt_id, 0, &m.attempt_id, "crc mismatch", 4);
        assert_eq!(c.job(&id).unwrap().all_counters().get(c::JOB, c::NUM_FAILED_MAPS), 1);
        // The map runs again on the other host (it failed on h1).
        assert!(beat(&mut c, &w1, 1, &[], 5).tasks.is_empty());
        let again = beat(&mut c, &w2, 1, &[&r.attempt_id], 5).tasks.remove(0);
        assert!(again.attempt_id.ends_with("_1"));
        c.kill_job(&id, 6).unwrap();
        assert!(c.map_outputs_for(&id, &r.attempt_id).is_err(), "the reducer gives up");
    }

    #[test]
    fn retries_exhausted_fail_the_job_and_cleanup_waits_for_running_attempts() {
        let mut c = core();
        let w1 = reg(&mut c, "h1");
        let w2 = reg(&mut c, "h2");
        let (id, _) = c.submit(job(vec![split(&[], &[]); 2], 0), 0).unwrap();
        let a = beat(&mut c, &w1, 1, &[], 0).tasks.remove(0);
        let b = beat(&mut c, &w2, 1, &[], 0).tasks.remove(0);
        c.attempt_finished(&a.attempt_id, &w1, failed(None), 1);
        let a2 = beat(&mut c, &w2, 1, &[&b.attempt_id], 2).tasks.remove(0);
        let end = c.attempt_finished(&a2.attempt_id, &w2, failed(None), 3);
        assert!(end.is_empty(), "the other map still runs: cleanup waits");
        assert_eq!(c.job(&id).unwrap().state, JobState::Failed);
        assert_eq!(
            beat(&mut c, &w2, 0, &[&b.attempt_id], 4).kill,
            std::slice::from_ref(&b.attempt_id)
        );
        c.attempt_finished(&b.attempt_id, &w2, Outcome::Killed, 5);
        assert_eq!(c.tick(6).len(), 1);
        // A late success of a failed job commits nothing.
        assert!(c.attempt_finished(&b.attempt_id, &w2, ok(Some("/t")), 7).is_empty());
    }
}
