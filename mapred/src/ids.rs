//! Job and attempt ids, made and parsed in one place. The coordinator makes them; a
//! worker gets them from the network and uses them as directory names and to match
//! attempts to jobs, so it parses them strictly first ([`JobId::parse`],
//! [`AttemptId::parse`]): only these exact shapes, digits where digits go, so no id can
//! name a path outside a worker's directory or match another job's attempts.
//!
//! Shapes (as Hadoop's): `job_<epoch>_<seq>` and
//! `attempt_<epoch>_<seq>_<m|r>_<index>_<n>`, with `seq` at least 4 digits and `index`
//! at least 6.

use std::fmt;

use crate::error::{Error, Result};
use crate::spec::TaskKind;

/// A job: the coordinator's start epoch and the job's sequence number in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId {
    /// Coordinator start time (seconds), so ids differ across restarts.
    pub epoch: u64,
    /// Submission number within the epoch.
    pub seq: u64,
}

/// One attempt of one task of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId {
    /// The job.
    pub job: JobId,
    /// Map or reduce.
    pub kind: TaskKind,
    /// The task's index among its kind.
    pub index: u32,
    /// The attempt's number within the task.
    pub n: u32,
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job_{}_{:04}", self.epoch, self.seq)
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let JobId { epoch, seq } = self.job;
        write!(f, "attempt_{epoch}_{seq:04}_{}_{:06}_{}", self.kind.letter(), self.index, self.n)
    }
}

fn bad(what: &str, s: &str) -> Error {
    let shown: String = s.chars().take(80).collect();
    Error::InvalidArgument(format!("bad {what} {shown:?}"))
}

/// A decimal number that fits a `u64` (no sign, no spaces).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl JobId {
    /// Parses `job_<epoch>_<seq>`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for anything else.
    pub fn parse(s: &str) -> Result<JobId> {
        let rest = s.strip_prefix("job_").ok_or_else(|| bad("job id", s))?;
        let mut parts = rest.split('_');
        match (parts.next().and_then(number), parts.next().and_then(number), parts.next()) {
            (Some(epoch), Some(seq), None) => Ok(JobId { epoch, seq }),
            _ => Err(bad("job id", s)),
        }
    }
}

impl AttemptId {
    /// Parses `attempt_<epoch>_<seq>_<m|r>_<index>_<n>`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for anything else.
    pub fn parse(s: &str) -> Result<AttemptId> {
        let rest = s.strip_prefix("attempt_").ok_or_else(|| bad("attempt id", s))?;
        let p: Vec<&str> = rest.splitn(6, '_').collect();
        let [epoch, seq, kind, index, n] = p.as_slice() else {
            return Err(bad("attempt id", s));
        };
        let kind = match *kind {
            "m" => TaskKind::Map,
            "r" => TaskKind::Reduce,
            _ => return Err(bad("attempt id", s)),
        };
        let small = |x: &str| number(x).and_then(|v| u32::try_from(v).ok());
        match (number(epoch), number(seq), small(index), small(n)) {
            (Some(epoch), Some(seq), Some(index), Some(n)) => {
                Ok(AttemptId { job: JobId { epoch, seq }, kind, index, n })
            }
            _ => Err(bad("attempt id", s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ids_print_as_hadoop_does_and_parse_back() {
        let job = JobId { epoch: 1_764_000_000, seq: 7 };
        assert_eq!(job.to_string(), "job_1764000000_0007");
        let a = AttemptId { job, kind: TaskKind::Reduce, index: 3, n: 1 };
        assert_eq!(a.to_string(), "attempt_1764000000_0007_r_000003_1");
        assert_eq!(AttemptId::parse(&a.to_string()).expect("parse"), a);
        assert_eq!(JobId::parse("job_1_12345").expect("parse"), JobId { epoch: 1, seq: 12345 });
    }

    #[test]
    fn anything_else_is_refused() {
        for s in [
            "",
            "job",
            "job_",
            "job_1",
            "job_1_",
            "job_1_2_3",
            "job_a_1",
            "job_1_-2",
            "job_1_+2",
            "job_1_2/..",
            "../job_1_2",
            "job_1_ 2",
            "jbo_1_2",
            "job_1_99999999999999999999",
        ] {
            assert!(JobId::parse(s).is_err(), "{s:?}");
        }
        for s in [
            "",
            "attempt_1_2_m_3",
            "attempt_1_2_x_3_4",
            "attempt_1_2_m_3_4_5",
            "attempt_1_2_m_3_/",
            "attempt_1_2_m_3_99999999999",
            "job_1_2",
            "attempt_1_2_m_3_4/../../x",
        ] {
            assert!(AttemptId::parse(s).is_err(), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn random_text_never_panics_and_what_parses_prints_back(s in ".{0,60}") {
            if let Ok(j) = JobId::parse(&s) {
                prop_assert!(!j.to_string().contains('/'));
            }
            if let Ok(a) = AttemptId::parse(&s) {
                prop_assert_eq!(AttemptId::parse(&a.to_string()).ok(), Some(a));
            }
        }

        #[test]
        fn every_id_round_trips(epoch in any::<u64>(), seq in 0u64..1 << 40, index in any::<u32>(), n in any::<u32>(), map in any::<bool>()) {
            let kind = if map { TaskKind::Map } else { TaskKind::Reduce };
            let a = AttemptId { job: JobId { epoch, seq }, kind, index, n };
            prop_assert_eq!(AttemptId::parse(&a.to_string()).ok(), Some(a));
            prop_assert_eq!(JobId::parse(&a.job.to_string()).ok(), Some(a.job));
        }
    }
}
