//! The queue of incremental replica reports (finalized, deleted, corrupt) waiting to be
//! sent to the master.
//!
//! [`crate::store`] pushes events as they happen; [`crate::heartbeat`] is woken, waits a
//! moment so bursts travel in one `ReportChunks` call, and drains the queue. A failed
//! call puts the events back, so nothing is lost while the master is down.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::Notify;

/// What the master is told about a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// Chunk handle.
    pub handle: u64,
    /// Chunk version the replica was written at.
    pub version: u64,
    /// Bytes held (for a replica being written: bytes verified so far).
    pub length: u64,
    /// False while being written or when left half-written by a crash.
    pub finalized: bool,
}

/// Events not yet acknowledged by the master.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Replicas finalized (or, for a full re-report, present) since the last report.
    pub received: Vec<ReplicaInfo>,
    /// Handles whose replica was deleted here.
    pub deleted: Vec<u64>,
    /// Handles whose replica was found corrupt.
    pub corrupt: Vec<u64>,
}

impl Pending {
    /// True if there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.received.is_empty() && self.deleted.is_empty() && self.corrupt.is_empty()
    }
}

/// Keyed by handle so the latest event about a chunk wins (a replica finalized and then
/// deleted before the next report is reported only as deleted).
#[derive(Debug, Default)]
struct Queued {
    received: BTreeMap<u64, ReplicaInfo>,
    deleted: BTreeMap<u64, ()>,
    corrupt: BTreeMap<u64, ()>,
}

/// A shared, wakeable queue of replica events for the master.
#[derive(Debug, Default)]
pub struct ReportQueue {
    queued: Mutex<Queued>,
    notify: Notify,
}

impl ReportQueue {
    /// An empty queue.
    pub fn new() -> ReportQueue {
        ReportQueue::default()
    }

    /// A replica was finalized.
    pub fn received(&self, info: ReplicaInfo) {
        self.update(|q| {
            q.deleted.remove(&info.handle);
            q.corrupt.remove(&info.handle);
            q.received.insert(info.handle, info);
        });
    }

    /// A replica was deleted.
    pub fn deleted(&self, handle: u64) {
        self.update(|q| {
            q.received.remove(&handle);
            q.corrupt.remove(&handle);
            q.deleted.insert(handle, ());
        });
    }

    /// A replica was found corrupt.
    pub fn corrupt(&self, handle: u64) {
        self.update(|q| {
            q.received.remove(&handle);
            q.corrupt.insert(handle, ());
        });
    }

    /// Takes everything queued.
    pub fn drain(&self) -> Pending {
        let mut q = self.lock();
        let taken = std::mem::take(&mut *q);
        Pending {
            received: taken.received.into_values().collect(),
            deleted: taken.deleted.into_keys().collect(),
            corrupt: taken.corrupt.into_keys().collect(),
        }
    }

    /// Puts back events whose report failed, unless newer events about the same chunk
    /// arrived meanwhile.
    pub fn requeue(&self, pending: Pending) {
        let mut q = self.lock();
        let newer = |q: &Queued, h: &u64| {
            q.received.contains_key(h) || q.deleted.contains_key(h) || q.corrupt.contains_key(h)
        };
        for info in pending.received {
            if !newer(&q, &info.handle) {
                q.received.insert(info.handle, info);
            }
        }
        for h in pending.deleted {
            if !newer(&q, &h) {
                q.deleted.insert(h, ());
            }
        }
        for h in pending.corrupt {
            if !newer(&q, &h) {
                q.corrupt.insert(h, ());
            }
        }
    }

    /// Waits until an event is queued after the last call returned.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    fn update(&self, f: impl FnOnce(&mut Queued)) {
        f(&mut self.lock());
        // `notify_one` stores a permit, so an event queued while the reporter is busy
        // still wakes it on its next wait.
        self.notify.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        // A panic while holding this lock cannot leave the maps half-updated in a way
        // that matters (each update is a few inserts), so keep going with the data.
        self.queued.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(handle: u64) -> ReplicaInfo {
        ReplicaInfo { handle, version: 1, length: 10, finalized: true }
    }

    #[test]
    fn latest_event_per_chunk_wins() {
        let q = ReportQueue::new();
        q.received(info(1));
        q.received(info(2));
        q.deleted(1);
        q.corrupt(3);
        let p = q.drain();
        assert_eq!(p.received, vec![info(2)]);
        assert_eq!(p.deleted, vec![1]);
        assert_eq!(p.corrupt, vec![3]);
        assert!(q.drain().is_empty());
    }

    #[test]
    fn requeue_keeps_newer_events() {
        let q = ReportQueue::new();
        q.received(info(1));
        q.received(info(2));
        let p = q.drain();
        q.deleted(2);
        q.requeue(p);
        let p = q.drain();
        assert_eq!(p.received, vec![info(1)]);
        assert_eq!(p.deleted, vec![2]);
    }
}
