//! The retry cache: the answers of recent non-idempotent calls (create, add chunk,
//! complete, rename, delete, mkdir), keyed by the caller's `(client_id, call_id)`, so a
//! client that retries after a lost reply (a timeout, a master restart) gets the original
//! answer instead of having the change applied twice. This is HDFS's `RetryCache`
//! (ZooKeeper's rule: only idempotent operations may be retried blindly).
//!
//! Entries are added under the state lock in the same step that applies the mutation and
//! hands its record to the journal, so a retry can never overtake its original: it either
//! finds the entry or runs first itself. A successful call's entry is also written into
//! its log record (`LogRecord.client_id/call_id/reply`) and re-added on replay
//! ([`crate::recovery`]), so it survives a crash. Refusals that change nothing are cached
//! in memory only; refusals a retry may get past (safe mode, no chunkserver, a failed log)
//! are not cached at all.
//!
//! Bounded like HDFS's: at most [`RetryCache::CAPACITY`] entries, none older than
//! [`RetryCache::TTL`]; the oldest go first. Ages are wall-clock milliseconds (the log's
//! timestamps), so replayed entries expire on the same schedule as live ones. Entries are
//! not part of checkpoints: a retry that spans a checkpoint *and* a restart is applied again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proto::reason::{self, ErrorReason};
use tonic::{Code, Status};

/// Identifies one call of one client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallKey {
    /// The client's random id.
    pub client_id: Arc<str>,
    /// Its call number, unique per client.
    pub call_id: u64,
}

impl CallKey {
    /// The key a request carries, or `None` when it carries none (empty id or call 0).
    pub fn from_request(client_id: &str, call_id: u64) -> Option<CallKey> {
        (!client_id.is_empty() && call_id != 0)
            .then(|| CallKey { client_id: client_id.into(), call_id })
    }
}

/// How a call was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Success: the encoded response message.
    Ok(Bytes),
    /// Refusal, answered again as it was to the original.
    Err(Refusal),
}

/// A cached refusal: everything a client reads from the status, so a retry is refused
/// exactly as the original was (clients branch on the reason, see [`proto::reason`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The gRPC code.
    pub code: Code,
    /// The message.
    pub message: String,
    /// The machine-readable reason.
    pub reason: ErrorReason,
}

impl Reply {
    /// The refusal to cache for `status`, or `None` for one a retry may get past: the
    /// master unavailable, failing inside or in safe mode. Decided from the code and the
    /// reason, never from the message.
    pub fn refusal(status: &Status) -> Option<Reply> {
        let reason = reason::of(status);
        let transient = matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Internal
        ) || reason == ErrorReason::SafeMode;
        (!transient).then(|| {
            Reply::Err(Refusal {
                code: status.code(),
                message: status.message().to_owned(),
                reason,
            })
        })
    }
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        reason::status(r.code, r.message, r.reason)
    }
}

/// One cached answer.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The answer.
    pub reply: Reply,
    /// The transaction that logged the change (0 = nothing was logged).
    pub txid: u64,
}

/// The cache (see the module documentation).
#[derive(Debug)]
pub struct RetryCache {
    entries: HashMap<CallKey, (Cached, i64)>,
    /// Keys in the order they were added, with their time, for expiry.
    order: VecDeque<(i64, CallKey)>,
    capacity: usize,
    ttl_ms: i64,
}

impl Default for RetryCache {
    fn default() -> Self {
        RetryCache::new(RetryCache::CAPACITY, RetryCache::TTL)
    }
}

impl RetryCache {
    /// Default bound on entries (HDFS sizes its cache as a fraction of the heap; this is
    /// a few MiB, far more calls than clients retry within [`RetryCache::TTL`]).
    pub const CAPACITY: usize = 100_000;
    /// Default age past which entries are dropped (HDFS: 10 minutes).
    pub const TTL: Duration = Duration::from_secs(600);

    /// An empty cache holding at most `capacity` entries for at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> RetryCache {
        RetryCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The answer of `key` if it is cached and not expired at `now_ms`.
    pub fn get(&self, key: &CallKey, now_ms: i64) -> Option<&Cached> {
        match self.entries.get(key) {
            Some((c, at)) if now_ms.saturating_sub(*at) <= self.ttl_ms => Some(c),
            _ => None,
        }
    }

    /// Caches the answer of `key` given at `at_ms`, dropping what is too old or too many.
    pub fn insert(&mut self, key: CallKey, cached: Cached, at_ms: i64) {
        self.expire(at_ms);
        if self.entries.insert(key.clone(), (cached, at_ms)).is_none() {
            self.order.push_back((at_ms, key));
        }
        while self.entries.len() > self.capacity {
            let Some((_, old)) = self.order.pop_front() else { break };
            self.entries.remove(&old);
        }
    }

    /// Drops entries older than the TTL at `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        while let Some((at, _)) = self.order.front() {
            if now_ms.saturating_sub(*at) <= self.ttl_ms {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn key(c: &str, n: u64) -> CallKey {
        CallKey::from_request(c, n).expect("key")
    }

    fn ok(b: &'static [u8], txid: u64) -> Cached {
        Cached { reply: Reply::Ok(Bytes::from_static(b)), txid }
    }

    #[test]
    fn requests_without_ids_have_no_key() {
        assert!(CallKey::from_request("", 5).is_none());
        assert!(CallKey::from_request("c", 0).is_none());
        assert_eq!(key("c", 1), CallKey { client_id: "c".into(), call_id: 1 });
    }

    #[test]
    fn answers_are_found_per_client_and_call() {
        let mut c = RetryCache::default();
        c.insert(key("a", 1), ok(b"one", 7), 0);
        c.insert(key("b", 1), ok(b"two", 8), 0);
        assert_eq!(c.get(&key("a", 1), 0).map(|e| e.txid), Some(7));
        assert_eq!(c.get(&key("b", 1), 0).map(|e| e.txid), Some(8));
        assert!(c.get(&key("a", 2), 0).is_none());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn old_entries_expire() {
        let mut c = RetryCache::new(10, Duration::from_secs(1));
        c.insert(key("a", 1), ok(b"x", 1), 0);
        c.insert(key("a", 2), ok(b"y", 2), 600);
        assert!(c.get(&key("a", 1), 1000).is_some());
        assert!(c.get(&key("a", 1), 1001).is_none(), "past the ttl it is not served");
        c.expire(1500);
        assert_eq!(c.len(), 1);
        assert!(c.get(&key("a", 2), 1500).is_some());
    }

    #[test]
    fn the_oldest_go_past_capacity() {
        let mut c = RetryCache::new(3, RetryCache::TTL);
        for n in 1..=5 {
            c.insert(key("a", n), ok(b"x", n), n as i64);
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(&key("a", 2), 5).is_none());
        assert!(c.get(&key("a", 3), 5).is_some());
        // Re-inserting a key keeps one entry.
        c.insert(key("a", 5), ok(b"z", 9), 6);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&key("a", 5), 6).map(|e| e.txid), Some(9));
    }

    #[test]
    fn transient_refusals_are_not_cached() {
        assert!(Reply::refusal(&Status::from(Error::SafeMode("read-only".into()))).is_none());
        assert!(Reply::refusal(&Status::from(Error::NoChunkservers)).is_none());
        let log = Error::LogFailed { path: "/m".into(), reason: "disk full".into() };
        assert!(Reply::refusal(&Status::from(log)).is_none());
        let r = Reply::refusal(&Status::from(Error::NotFound("/x".into())));
        assert_eq!(
            r,
            Some(Reply::Err(Refusal {
                code: Code::NotFound,
                message: "/x: no such file or directory".into(),
                reason: ErrorReason::NotFound,
            }))
        );
    }

    #[test]
    fn safe_mode_is_told_by_its_reason_not_its_message() {
        // Reworded: still safe mode, still not cached.
        let reworded = reason::status(
            Code::FailedPrecondition,
            "read-only until chunkservers report",
            ErrorReason::SafeMode,
        );
        assert!(Reply::refusal(&reworded).is_none());
        // The old words without the reason: a refusal like any other, cached.
        let words = Status::failed_precondition("master is in safe mode");
        assert!(Reply::refusal(&words).is_some());
    }

    #[test]
    fn a_cached_refusal_keeps_its_reason() {
        let original = Status::from(Error::DirectoryNotEmpty("/d".into()));
        let Some(Reply::Err(cached)) = Reply::refusal(&original) else { panic!("not cached") };
        let replayed = Status::from(cached);
        assert_eq!(replayed.code(), original.code());
        assert_eq!(replayed.message(), original.message());
        assert_eq!(reason::of(&replayed), ErrorReason::DirectoryNotEmpty);
    }
}
