//! Choosing work for a worker's free slots: pending maps by locality (delay scheduling),
//! then reduces once every map is done, each retried away from hosts where it already
//! failed; then speculative backups of stragglers.
//!
//! **Speculation.** A phase (the maps, then the reduces) is eligible once none of its
//! tasks is pending, so backups never take a slot that unscheduled work could use and,
//! without stragglers, no task runs twice. A running attempt is a straggler when it has
//! run `speculative_slowness` times the median duration of the phase's finished tasks
//! and at least `speculative_lag_ms` longer than that median. It gets one backup, on
//! another host; the first to finish wins and the other is killed.

use super::core::{AttemptRef, Core};
use super::model::*;
use crate::counters as c;
use crate::ids::{AttemptId, JobId};
use crate::spec::{MapOutputLoc, TaskKind, TaskSpec};

impl Core {
    /// Whether some live worker's host has not seen `task` fail.
    fn other_hosts(&self, task: &Task) -> bool {
        self.workers.values().any(|w| !task.failed_on(&w.host))
    }

    /// Assigns up to `free` tasks of job `seq` to `worker`.
    pub(crate) fn assign_from(
        &mut self,
        seq: u64,
        worker: &Worker,
        free: u32,
        now: i64,
    ) -> Vec<Assignment> {
        let delay = self.cfg.locality_delay_ms;
        let live = self.workers.len().max(1);
        let Some(job) = self.jobs.get(&seq) else { return Vec::new() };
        // Tasks this worker may take: not failed on its host while another host could.
        let allowed = |t: &Task| !t.failed_on(&worker.host) || !self.other_hosts(t);
        let maps_ok: Vec<bool> = job.maps.iter().map(allowed).collect();
        let reduces_ok: Vec<u32> = job
            .reduces
            .iter()
            .filter(|t| t.state == TaskState::Pending && allowed(t))
            .map(|t| t.index)
            .collect();
        let pending_maps = job.maps.iter().filter(|t| t.state == TaskState::Pending).count();
        let maps_done = job.maps.iter().all(|t| t.state == TaskState::Succeeded);
        let reduces_pending = job.reduces.iter().filter(|t| t.state == TaskState::Pending).count();
        let mut out = Vec::new();
        if pending_maps > 0 {
            let cap = pending_maps.div_ceil(live).max(1) as u32;
            while (out.len() as u32) < free.min(cap) {
                let Some(job) = self.jobs.get_mut(&seq) else { break };
                let Some((index, locality)) = pick_map(job, worker, now, delay, &maps_ok) else {
                    break;
                };
                out.extend(self.new_attempt(
                    seq,
                    TaskKind::Map,
                    index,
                    worker,
                    locality,
                    now,
                    false,
                ));
            }
            return out;
        }
        if !maps_done {
            return out;
        }
        let cap = reduces_pending.div_ceil(live).max(1) as u32;
        for index in reduces_ok.into_iter().take(free.min(cap) as usize) {
            out.extend(self.new_attempt(
                seq,
                TaskKind::Reduce,
                index,
                worker,
                Locality::None,
                now,
                false,
            ));
        }
        out
    }

    /// A backup attempt of job `seq`'s worst straggler for `worker`, if one qualifies
    /// (see the module documentation).
    pub(crate) fn speculate(&mut self, seq: u64, worker: &Worker, now: i64) -> Option<Assignment> {
        let (slowness, lag) = (self.cfg.speculative_slowness, self.cfg.speculative_lag_ms);
        let job = self.jobs.get(&seq)?;
        if !job.opts.speculative || job.state != JobState::Running || job.finishing {
            return None;
        }
        let maps_done = job.maps.iter().all(|t| t.state == TaskState::Succeeded);
        let (kind, tasks) =
            if maps_done { (TaskKind::Reduce, &job.reduces) } else { (TaskKind::Map, &job.maps) };
        if tasks.iter().any(|t| t.state == TaskState::Pending) {
            return None;
        }
        let mut done: Vec<i64> = tasks.iter().filter_map(Task::winner_duration).collect();
        if done.is_empty() {
            return None;
        }
        done.sort_unstable();
        let median = done[done.len() / 2];
        let threshold = ((median as f64 * slowness) as i64).max(median + lag);
        let straggler = tasks
            .iter()
            .filter(|t| t.state == TaskState::Running)
            .filter_map(|t| {
                let mut running = t.attempts.iter().filter(|a| a.state == AttemptState::Running);
                let a = running.next()?;
                let alone = running.next().is_none() && a.replay.is_none();
                let backed_up = t.attempts.iter().any(|b| b.backup && b.start_ms >= a.start_ms);
                let elapsed = now - a.start_ms;
                (alone
                    && !backed_up
                    && a.host != worker.host
                    && !t.failed_on(&worker.host)
                    && elapsed >= threshold)
                    .then_some((elapsed, t.index))
            })
            .max()?;
        let locality = match kind {
            TaskKind::Map => locality_of(tasks[straggler.1 as usize].split.as_ref(), worker),
            TaskKind::Reduce => Locality::None,
        };
        self.new_attempt(seq, kind, straggler.1, worker, locality, now, true)
    }

    /// Starts a new attempt of a task on `worker` (`None` for an unknown job or task).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_attempt(
        &mut self,
        seq: u64,
        kind: TaskKind,
        index: u32,
        worker: &Worker,
        locality: Locality,
        now: i64,
        backup: bool,
    ) -> Option<Assignment> {
        let (epoch, cfg) = (self.epoch, &self.cfg);
        let job = self.jobs.get_mut(&seq)?;
        job.task(kind, index)?;
        let map_outputs = if kind == TaskKind::Reduce { map_outputs(job) } else { Vec::new() };
        let maps = job.maps.len() as u32;
        let launched =
            if kind == TaskKind::Map { c::TOTAL_LAUNCHED_MAPS } else { c::TOTAL_LAUNCHED_REDUCES };
        job.job_counters.add(c::JOB, launched, 1);
        match locality {
            Locality::Node => job.job_counters.add(c::JOB, c::DATA_LOCAL_MAPS, 1),
            Locality::Rack => job.job_counters.add(c::JOB, c::RACK_LOCAL_MAPS, 1),
            Locality::Other => job.job_counters.add(c::JOB, c::OTHER_LOCAL_MAPS, 1),
            Locality::None => {}
        }
        let (job_id, opts) = (job.id.clone(), job.opts);
        let def = &job.def;
        let spec_base = TaskSpec {
            job_id,
            job_name: def.name.clone(),
            kind: Some(kind),
            index,
            binary_path: def.binary_path.clone(),
            binary_hash: def.binary_hash.clone(),
            master: cfg.master.clone(),
            coordinator: cfg.coordinator.clone(),
            conf: def.conf.clone(),
            reducers: def.reducers,
            maps,
            output: def.output.clone(),
            map_outputs,
            timeout_ms: opts.task_timeout_ms,
            job_token: def.token.to_hex(),
            user: def.user.clone(),
            ..TaskSpec::default()
        };
        let task = job.task_mut(kind, index)?;
        let n = task.attempts.len();
        let attempt_id = AttemptId {
            job: JobId { epoch, seq },
            kind,
            index,
            n: u32::try_from(n).unwrap_or(u32::MAX),
        }
        .to_string();
        task.attempts.push(Attempt {
            id: attempt_id.clone(),
            worker: worker.id.clone(),
            host: worker.host.clone(),
            state: AttemptState::Running,
            start_ms: now,
            end_ms: 0,
            locality,
            error: String::new(),
            counters: Default::default(),
            backup,
            replay: None,
            excused: false,
            files: (None, None),
        });
        task.state = TaskState::Running;
        // While a suspect is being judged, the task's attempts are replays of it (a
        // backup copies an ordinary attempt, never a replay: see `speculate`).
        let replay = if backup { None } else { task.suspect.map(|(r, _)| r) };
        task.attempts[n].replay = replay;
        let skip = if opts.skip { task.skip_list() } else { Vec::new() };
        let spec = TaskSpec {
            attempt_id: attempt_id.clone(),
            split: task.split.clone(),
            skip,
            replay,
            ..spec_base
        };
        if replay.is_some() {
            job.job_counters.add(c::JOB, c::NUM_REPLAYS, 1);
        }
        let r: AttemptRef = (seq, kind, index, n);
        self.attempts.insert(attempt_id.clone(), r);
        Some(Assignment { attempt_id, spec })
    }
}

/// Where every finished map's output of `job` can be fetched now.
pub(crate) fn map_outputs(job: &Job) -> Vec<MapOutputLoc> {
    job.maps
        .iter()
        .filter_map(|t| {
            t.output.as_ref().map(|(a, addr)| MapOutputLoc {
                map: t.index,
                attempt_id: a.clone(),
                shuffle_addr: addr.clone(),
            })
        })
        .collect()
}

fn locality_of(split: Option<&crate::spec::Split>, worker: &Worker) -> Locality {
    match split {
        None => Locality::None,
        Some(s) if s.hosts.is_empty() => Locality::None,
        Some(s) if s.hosts.contains(&worker.host) => Locality::Node,
        Some(s) if s.racks.contains(&worker.rack) => Locality::Rack,
        Some(_) => Locality::Other,
    }
}

/// Picks a pending map for `worker` among the `allowed` ones: node-local, else (after the
/// delay) rack-local, else (after twice the delay) any. Splits without hosts (generated
/// input) go anywhere.
fn pick_map(
    job: &mut Job,
    worker: &Worker,
    now: i64,
    delay: i64,
    allowed: &[bool],
) -> Option<(u32, Locality)> {
    fn hosts(t: &Task) -> &[String] {
        t.split.as_ref().map_or(&[][..], |s| s.hosts.as_slice())
    }
    let pending =
        || job.maps.iter().filter(|t| t.state == TaskState::Pending && allowed[t.index as usize]);
    if let Some(t) = pending().find(|t| hosts(t).contains(&worker.host)) {
        let i = t.index;
        job.wait_since = None;
        return Some((i, Locality::Node));
    }
    if let Some(t) = pending().find(|t| hosts(t).is_empty()) {
        return Some((t.index, Locality::None));
    }
    let since = *job.wait_since.get_or_insert(now);
    let waited = now - since;
    if waited >= delay
        && let Some(t) =
            pending().find(|t| t.split.as_ref().is_some_and(|s| s.racks.contains(&worker.rack)))
    {
        return Some((t.index, Locality::Rack));
    }
    if waited >= 2 * delay
        && let Some(t) = pending().next()
    {
        return Some((t.index, Locality::Other));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::core::tests::{beat, core, job, ok, reg, split};
    use super::*;

    #[test]
    fn a_straggler_gets_one_backup_on_another_host_and_the_loser_is_killed() {
        let mut c = core();
        c.cfg.speculative_lag_ms = 1000;
        let w1 = reg(&mut c, "h1");
        let w2 = reg(&mut c, "h2");
        let (id, _) = c.submit(job(vec![split(&[], &[]); 3], 0), 0).unwrap();
        let a = beat(&mut c, &w1, 3, &[], 0).tasks;
        let b = beat(&mut c, &w2, 3, &[], 0).tasks;
        let ids: Vec<&str> = a.iter().chain(&b).map(|t| t.attempt_id.as_str()).collect();
        assert_eq!(ids.len(), 3);
        // Two finish in 1 s; the third is nowhere near done at 2 s (2x the median, but
        // not yet the lag past it) and gets a backup at 2.1 s, on the other host.
        for (i, id) in ids.iter().enumerate().take(2) {
            let w = if i < a.len() { &w1 } else { &w2 };
            c.attempt_finished(id, w, ok(Some("/out/_temporary/x/part")), 1000);
        }
        let slow = ids[2];
        let (slow_worker, other) = if a.len() == 3 { (&w1, &w2) } else { (&w2, &w1) };
        assert!(beat(&mut c, other, 3, &[], 1900).tasks.is_empty(), "not slow enough yet");
        assert!(
            beat(&mut c, slow_worker, 2, &[slow], 2100).tasks.is_empty(),
            "never on its own host"
        );
        let backup = beat(&mut c, other, 3, &[], 2100).tasks;
        assert_eq!(backup.len(), 1, "one backup");
        assert!(backup[0].attempt_id.ends_with("_1"));
        assert!(
            beat(&mut c, other, 2, &[&backup[0].attempt_id], 2200).tasks.is_empty(),
            "only one"
        );
        // The backup wins; the original is killed at its worker's next heartbeat.
        let actions = c.attempt_finished(&backup[0].attempt_id, other, ok(Some("/t/b")), 2300);
        assert_eq!(actions.len(), 1);
        assert_eq!(beat(&mut c, slow_worker, 2, &[slow], 2400).kill, [slow.to_owned()]);
        assert!(c.attempt_finished(slow, slow_worker, ok(Some("/t/a")), 2500).is_empty());
        let k = c.job(&id).unwrap().all_counters();
        assert_eq!(k.get(c::JOB, c::TOTAL_LAUNCHED_MAPS), 4);
        assert_eq!(k.get(c::JOB, c::NUM_KILLED_MAPS), 1);
    }

    #[test]
    fn no_backups_while_work_is_pending_or_when_turned_off() {
        let mut c = core();
        c.cfg.speculative_lag_ms = 0;
        let w1 = c.register_worker("h1", "/a", 1, "h1:1", 0).0;
        let w2 = c.register_worker("h2", "/a", 1, "h2:1", 0).0;
        let (_, _) = c.submit(job(vec![split(&[], &[]); 4], 0), 0).unwrap();
        let a = beat(&mut c, &w1, 1, &[], 0).tasks.remove(0);
        let b = beat(&mut c, &w2, 1, &[], 0).tasks.remove(0);
        c.attempt_finished(&b.attempt_id, &w2, ok(Some("/t")), 10);
        // Two maps are still pending: w2 gets one of them, never a backup of `a`.
        let next = beat(&mut c, &w2, 1, &[], 100_000).tasks.remove(0);
        assert!(next.attempt_id.ends_with("_0"));
        let mut off = job(vec![split(&[], &[]); 2], 0);
        off.conf.set(crate::config::keys::SPECULATIVE, "false");
        let mut c2 = core();
        c2.cfg.speculative_lag_ms = 0;
        let v1 = reg(&mut c2, "h1");
        let v2 = reg(&mut c2, "h2");
        c2.submit(off, 0).unwrap();
        let t = beat(&mut c2, &v1, 2, &[], 0).tasks;
        assert_eq!(t.len(), 1);
        let u = beat(&mut c2, &v2, 2, &[], 0).tasks.remove(0);
        c2.attempt_finished(&u.attempt_id, &v2, ok(Some("/t")), 10);
        assert!(beat(&mut c2, &v2, 2, &[], 100_000).tasks.is_empty(), "speculation is off");
        drop(a);
    }

    #[test]
    fn a_failed_task_is_retried_on_another_host_if_there_is_one() {
        let mut c = core();
        c.cfg.max_attempts = 3;
        let w1 = reg(&mut c, "h1");
        let (_, _) = c.submit(job(vec![split(&[], &[])], 0), 0).unwrap();
        let a = beat(&mut c, &w1, 1, &[], 0).tasks.remove(0);
        let fail = Outcome::Failed { error: "boom".into(), last_record: None };
        c.attempt_finished(&a.attempt_id, &w1, fail.clone(), 1);
        let w2 = reg(&mut c, "h2");
        assert!(beat(&mut c, &w1, 1, &[], 2).tasks.is_empty(), "not again on h1");
        let b = beat(&mut c, &w2, 1, &[], 3).tasks.remove(0);
        c.attempt_finished(&b.attempt_id, &w2, fail, 4);
        // Failed everywhere: any host will do.
        assert_eq!(beat(&mut c, &w1, 1, &[], 5).tasks.len(), 1);
    }
}
