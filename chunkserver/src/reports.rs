//! The queue of incremental replica reports (finalized, deleted, corrupt) waiting to be
//! sent to the master.
//!
//! [`crate::store`] pushes events as they happen; [`crate::heartbeat`] is woken, waits a
//! moment so bursts travel in one `ReportChunks` call, and drains the queue. A failed
//! call puts the events back, so nothing is lost while the master is down.
//!
//! Every member of a replicated master group gets every report, each at its own pace (a
//! member that is down keeps its events until it is back, without holding up the
//! others): the conversation with each member [`ReportQueue::subscribe`]s a queue of its
//! own, and the store's queue then hands each event to every subscriber instead of
//! keeping it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

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
#[derive(Debug, Default, Clone)]
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
    /// Queues that get every event pushed here from their subscription on (one per
    /// master group member); while there are any, this queue keeps none itself.
    subscribers: RwLock<Vec<Arc<ReportQueue>>>,
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

    /// A queue of its own that gets every event pushed here from now on, starting with
    /// a copy of the events this queue holds (those queued before anyone subscribed).
    pub fn subscribe(&self) -> Arc<ReportQueue> {
        // Under the write lock no event slips between the copy and the subscription.
        let mut subscribers = self.subscribers.write().unwrap_or_else(|p| p.into_inner());
        let queue = Arc::new(ReportQueue::new());
        let held = self.lock().clone();
        let any = !held.received.is_empty() || !held.deleted.is_empty() || !held.corrupt.is_empty();
        *queue.lock() = held;
        if any {
            queue.notify.notify_one();
        }
        subscribers.push(Arc::clone(&queue));
        queue
    }

    fn update(&self, f: impl Fn(&mut Queued)) {
        self.apply(&f);
    }

    fn apply(&self, f: &dyn Fn(&mut Queued)) {
        let subscribers = self.subscribers.read().unwrap_or_else(|p| p.into_inner());
        if !subscribers.is_empty() {
            for s in subscribers.iter() {
                s.apply(f);
            }
            return;
        }
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
    fn every_subscriber_gets_every_event_at_its_own_pace() {
        let q = ReportQueue::new();
        q.received(info(1));
        let (a, b) = (q.subscribe(), q.subscribe());
        q.deleted(2);
        let p = a.drain();
        assert_eq!((&p.received, &p.deleted), (&vec![info(1)], &vec![2]), "held ones too");
        // `a` failed to send its report; `b` has not tried yet.
        a.requeue(p);
        q.corrupt(3);
        for s in [&a, &b] {
            let p = s.drain();
            assert_eq!(p.received, vec![info(1)]);
            assert_eq!((p.deleted, p.corrupt), (vec![2], vec![3]));
        }
        assert!(a.drain().is_empty() && b.drain().is_empty());
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
