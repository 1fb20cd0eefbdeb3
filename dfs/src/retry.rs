//! Riding through a master restart: which failed master calls are retried, how long to
//! wait between attempts, and the call ids that make retried mutations safe.
//!
//! Every master call names its [`CallKind`]. Lookups (stat, list, chunk locations,
//! summaries, fsck, reports) are idempotent and are retried blindly while the master is
//! unreachable. Mutations are retried too, for the same failures and also while the
//! master is in safe mode (it refuses changes until chunkservers report in after a
//! restart); those that are not idempotent (create, add chunk, complete, rename, delete,
//! mkdir) carry this client's id and a call number that stays the same across attempts,
//! so the master's retry cache answers a retry whose original was applied (its reply lost
//! in the crash) with the original answer instead of applying it again (ZooKeeper's rule:
//! only idempotent operations may be retried blindly; HDFS's retry cache for the rest).
//!
//! Attempts are spaced by [`Backoff`]: exponential with "equal jitter" (half the step
//! fixed, half random), so clients that lost the master together do not return in lock
//! step, up to [`crate::ClientConfig::master_retry_deadline`] in all.
//!
//! Against a replicated master group the same rules hold, with two more answers: a
//! follower's `NOT_LEADER` (every kind of call is sent on to the leader, by
//! [`crate::masters`], which also decides which member each retry goes to) and the
//! leader's `NO_QUORUM` (retried like an unreachable master: a change that may or may
//! not have been applied is safe to repeat under its call id).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proto::reason::ErrorReason;
use tonic::Code;

use crate::error::Error;

/// What a master call does, which decides what it may be retried after and whether a
/// follower of a master group may answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A lookup: retried while the master is unreachable. With
    /// [`crate::ClientConfig::stale_ok`] a follower may answer it.
    Read,
    /// An order that is harmless to repeat (administration: checkpoint, safe mode,
    /// decommission, the balancer, membership; lease renewal): retried as a lookup is,
    /// but always answered by the leader.
    Idempotent,
    /// A change: also retried while the master is in safe mode or has no chunkserver to
    /// place a chunk on (both pass once chunkservers report in).
    Mutation,
}

/// True when `err` from a call of `kind` may succeed if tried again later.
///
/// Decided from the variant and the [`ErrorReason`] the master gave, never from the
/// message: every call is retried while the master is unreachable, at a follower
/// ([`ErrorReason::NotLeader`]: it goes on to the leader) and without a quorum
/// ([`Error::NoQuorum`]); a mutation also through safe mode ([`ErrorReason::SafeMode`])
/// and while the master is unavailable for any reason but [`ErrorReason::LogFailed`].
pub fn is_retryable(err: &Error, kind: CallKind) -> bool {
    match err {
        Error::MasterUnreachable { .. } | Error::NoQuorum { .. } => true,
        Error::Unavailable { reason: ErrorReason::NotLeader, .. } => true,
        Error::Rpc { status, .. } => {
            matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
        }
        Error::FailedPrecondition { reason, .. } => {
            kind == CallKind::Mutation && *reason == ErrorReason::SafeMode
        }
        // A failed operation log stays failed until the master restarts: say so at once.
        Error::Unavailable { reason, .. } => {
            kind == CallKind::Mutation && *reason != ErrorReason::LogFailed
        }
        _ => false,
    }
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Step before the first retry.
    pub initial: Duration,
    /// Largest step.
    pub max: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling up to 2 s: a restarted master is noticed within about a second of
    /// listening again, while a long outage costs a probe every 1-2 s.
    fn default() -> Backoff {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2) }
    }
}

impl Backoff {
    /// The step before retry number `attempt` (0 = the first retry), without jitter.
    pub fn step(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry number `attempt`, with `jitter` in `[0, 1)` choosing where
    /// in `[step / 2, step)` it falls.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let step = self.step(attempt);
        let half = step / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// How long to wait before retry number `attempt` at `now`, with random jitter, cut
    /// short so the last attempt happens at `deadline`; `None` once the deadline is past.
    pub fn wait_before(&self, attempt: u32, deadline: Instant, now: Instant) -> Option<Duration> {
        let left = deadline.checked_duration_since(now).filter(|d| !d.is_zero())?;
        Some(self.delay(attempt, rand::random()).min(left))
    }
}

/// Called once per client with a line such as `waiting for master at ADDR (connection
/// refused)...` when it first starts waiting for the master; the CLI prints it on stderr.
#[derive(Clone)]
pub struct WaitNotice(pub Arc<dyn Fn(&str) + Send + Sync>);

impl fmt::Debug for WaitNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WaitNotice(..)")
    }
}

/// This client's identity for the retry cache, and its call counter.
#[derive(Debug)]
pub(crate) struct Calls {
    /// Random, 128 bits in hex: unique among the master's clients.
    pub(crate) client_id: String,
    next: AtomicU64,
    noticed: AtomicBool,
}

impl Calls {
    pub(crate) fn new() -> Calls {
        Calls {
            client_id: format!("{:032x}", rand::random::<u128>()),
            next: AtomicU64::new(1),
            noticed: AtomicBool::new(false),
        }
    }

    /// A new call number (never 0, which means "none" on the wire).
    pub(crate) fn next_call(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// True the first time only: whether the waiting notice is still to be given.
    pub(crate) fn first_wait(&self) -> bool {
        !self.noticed.swap(true, Ordering::Relaxed)
    }
}

/// The short reason shown in the waiting notice.
pub(crate) fn wait_cause(err: &Error) -> String {
    match err {
        Error::MasterUnreachable { cause, .. } => cause.clone(),
        Error::FailedPrecondition { .. } => "in safe mode".to_owned(),
        Error::NoQuorum { .. } => "no quorum".to_owned(),
        Error::Unavailable { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use proto::reason;
    use tonic::Status;

    use super::*;

    fn from(status: Status) -> Error {
        Error::from_master_status(status, "/x", "127.0.0.1:9")
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let b = Backoff::default();
        let steps: Vec<u128> = (0..7).map(|a| b.step(a).as_millis()).collect();
        assert_eq!(steps, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.step(u32::MAX), b.max, "no overflow however long it waits");
    }

    #[test]
    fn jitter_stays_within_half_a_step() {
        let b = Backoff::default();
        assert_eq!(b.delay(2, 0.0), Duration::from_millis(200));
        assert_eq!(b.delay(2, 0.5), Duration::from_millis(300));
        assert!(b.delay(2, 0.999) < Duration::from_millis(400));
        assert_eq!(b.delay(2, 7.0), Duration::from_millis(400), "out-of-range jitter clamps");
    }

    #[test]
    fn the_last_wait_ends_at_the_deadline() {
        let b = Backoff::default();
        let now = Instant::now();
        let w = b.wait_before(5, now + Duration::from_millis(300), now).expect("time left");
        assert_eq!(w, Duration::from_millis(300), "cut to the time left");
        let w = b.wait_before(0, now + Duration::from_secs(10), now).expect("time left");
        assert!((Duration::from_millis(50)..Duration::from_millis(100)).contains(&w), "{w:?}");
        assert_eq!(b.wait_before(0, now, now), None, "a zero deadline never waits");
        assert_eq!(b.wait_before(0, now, now + Duration::from_secs(1)), None);
    }

    #[test]
    fn unreachable_master_is_retried_for_every_call() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = from(Status::from_error(Box::new(io)));
        assert!(matches!(e, Error::MasterUnreachable { .. }));
        assert!(is_retryable(&e, CallKind::Read));
        assert!(is_retryable(&e, CallKind::Mutation));
        assert_eq!(wait_cause(&e), "connection refused");
        let rpc = Error::Rpc { what: "master".into(), status: Status::deadline_exceeded("slow") };
        assert!(is_retryable(&rpc, CallKind::Read));
    }

    #[test]
    fn safe_mode_is_retried_for_mutations_only() {
        let e = from(reason::status(
            Code::FailedPrecondition,
            "master is in safe mode: 0 of 3 chunks reported (threshold 99.9%)",
            ErrorReason::SafeMode,
        ));
        assert!(is_retryable(&e, CallKind::Mutation));
        assert!(!is_retryable(&e, CallKind::Read));
        let none = from(reason::status(
            Code::Unavailable,
            "no live chunkserver can take a chunk",
            ErrorReason::NoChunkservers,
        ));
        assert!(is_retryable(&none, CallKind::Mutation));
        let log = from(reason::status(
            Code::Unavailable,
            "operation log at /m cannot be written: full",
            ErrorReason::LogFailed,
        ));
        assert!(!is_retryable(&log, CallKind::Mutation));
    }

    #[test]
    fn retries_follow_the_reason_not_the_words() {
        // Reworded messages, same reasons: same decisions.
        let safe = reason::status(Code::FailedPrecondition, "read-only", ErrorReason::SafeMode);
        assert!(is_retryable(&from(safe), CallKind::Mutation));
        let log = reason::status(Code::Unavailable, "journal lost", ErrorReason::LogFailed);
        assert!(!is_retryable(&from(log), CallKind::Mutation));
        // The old words without a reason decide nothing.
        let safe = from(Status::failed_precondition("master is in safe mode"));
        assert!(!is_retryable(&safe, CallKind::Mutation), "a precondition like any other");
        let log = from(Status::unavailable("operation log at /m cannot be written: full"));
        assert!(is_retryable(&log, CallKind::Mutation), "unavailable like any other");
    }

    #[test]
    fn a_follower_and_a_lost_quorum_are_retried_for_every_call() {
        let follower = from(reason::not_leader("master 2 is a follower", Some("m1:9000")));
        let nobody = from(reason::not_leader("no leader elected yet", None));
        let no_quorum = from(reason::status(
            Code::Unavailable,
            "no quorum: 2 of 3 down",
            ErrorReason::NoQuorum,
        ));
        for e in [&follower, &nobody, &no_quorum] {
            for kind in [CallKind::Read, CallKind::Idempotent, CallKind::Mutation] {
                assert!(is_retryable(e, kind), "{kind:?}: {e:?}");
            }
        }
        assert!(matches!(no_quorum, Error::NoQuorum { .. }), "{no_quorum:?}");
        assert_eq!(wait_cause(&no_quorum), "no quorum");
        // An administrative order is retried as a lookup is: not through safe mode.
        let safe = from(reason::status(Code::FailedPrecondition, "safe", ErrorReason::SafeMode));
        assert!(!is_retryable(&safe, CallKind::Idempotent));
    }

    #[test]
    fn answers_about_the_namespace_are_final() {
        for s in [
            Status::not_found("/x: no such file or directory"),
            Status::already_exists("/x: file exists"),
            Status::failed_precondition("/x: file is being written by c"),
            reason::status(Code::FailedPrecondition, "/x: held by c", ErrorReason::LeaseHeld),
            reason::status(
                Code::FailedPrecondition,
                "/x: not empty",
                ErrorReason::DirectoryNotEmpty,
            ),
            Status::invalid_argument("bad"),
        ] {
            let e = from(s);
            assert!(!is_retryable(&e, CallKind::Mutation), "{e}");
            assert!(!is_retryable(&e, CallKind::Read), "{e}");
        }
    }

    #[test]
    fn call_numbers_are_unique_and_never_zero() {
        let c = Calls::new();
        assert_eq!(c.client_id.len(), 32);
        let (a, b) = (c.next_call(), c.next_call());
        assert!(a != 0 && b != a);
        assert!(c.first_wait());
        assert!(!c.first_wait());
    }
}
