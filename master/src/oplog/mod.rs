//! The operation log: every namespace mutation becomes a [`Record`] that is durable on
//! disk before its caller is answered.
//!
//! Flow: a gRPC handler applies a mutation to [`crate::core::Core`] under the
//! state lock and, *still holding the lock*, hands the record to the [`Journal`] (part of
//! that state). The journal numbers it (transaction ids are therefore in the order the
//! mutations were applied) and queues it for the writer thread ([`writer`]), which encodes
//! and writes
//! whatever is queued in one go and syncs once (group commit). The handler drops the lock,
//! awaits the returned [`Durable`], and only then answers its client.
//!
//! On disk: [`segment`] (file names, replay, torn tails), [`frame`] (record framing,
//! shared with [`crate::checkpoint`]), [`record`] (the records themselves).

pub mod frame;
pub mod record;
pub mod segment;
pub mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{Notify, mpsc, oneshot};

pub use record::{LoggedCall, Op, Record};
use writer::{Ack, Command, Failure, Shared, Writer};

use crate::error::{Error, Result};

impl From<Failure> for Error {
    fn from(f: Failure) -> Error {
        Error::LogFailed { path: f.path, reason: f.reason }
    }
}

/// Resolves once a logged record is durable, or with why it cannot be.
#[derive(Debug)]
#[must_use = "a change is acknowledged only once its record is durable"]
pub struct Durable(DurableInner);

#[derive(Debug)]
enum DurableInner {
    Ready(Ack),
    Waiting(oneshot::Receiver<Ack>),
    /// A replicated master's record: committed by a majority, or why not.
    Group(oneshot::Receiver<Result<()>>),
    Failed(Error),
}

impl Durable {
    /// Waits for the writer's answer.
    ///
    /// # Errors
    /// [`Error::LogFailed`] when the record could not be made durable.
    pub async fn wait(self) -> Result<()> {
        let ack = match self.0 {
            DurableInner::Ready(ack) => ack,
            DurableInner::Failed(e) => return Err(e),
            DurableInner::Group(rx) => {
                return rx.await.unwrap_or_else(|_| {
                    Err(Error::NotLeader { why: "the master is stopping".into(), leader: None })
                });
            }
            DurableInner::Waiting(rx) => rx.await.unwrap_or_else(|_| {
                Err(Failure {
                    path: "the operation log".into(),
                    reason: "the log writer stopped".into(),
                })
            }),
        };
        ack.map_err(Error::from)
    }
}

impl Durable {
    /// Already settled with `r`.
    pub fn ready(r: Result<()>) -> Durable {
        match r {
            Ok(()) => Durable(DurableInner::Ready(Ok(()))),
            Err(e) => Durable(DurableInner::Failed(e)),
        }
    }

    /// Settled by whoever holds the sender (a master group's proposer).
    pub fn group(rx: oneshot::Receiver<Result<()>>) -> Durable {
        Durable(DurableInner::Group(rx))
    }
}

/// The master's handle on its operation log: numbers records and queues them for the
/// writer. Lives beside the core in [`crate::driver::Master`], under the same lock.
#[derive(Debug)]
pub struct Journal {
    /// `None` for an in-memory master (tests): records are dropped and nothing persists.
    tx: Option<mpsc::UnboundedSender<Command>>,
    shared: Arc<Shared>,
    last_txid: u64,
    since_checkpoint: u64,
    checkpoint_every: u64,
    checkpoint_wanted: Arc<Notify>,
    /// A member of a replicated master group: records go to the group's log instead.
    group: Option<Box<crate::raft::Replica>>,
}

impl Journal {
    /// The journal of a member of a replicated master group: records are proposed to the
    /// group through `replica` (see [`crate::raft`]).
    pub fn group(replica: crate::raft::Replica) -> Journal {
        Journal { group: Some(Box::new(replica)), ..Journal::in_memory() }
    }

    /// The group side, for a member of a replicated master group.
    pub fn group_mut(&mut self) -> Option<&mut crate::raft::Replica> {
        self.group.as_deref_mut()
    }

    /// The group side, read-only.
    pub fn replica(&self) -> Option<&crate::raft::Replica> {
        self.group.as_deref()
    }

    /// Numbers the next record after `txid` (a member replaying the group's log, or
    /// rebuilt from it).
    pub fn set_last_txid(&mut self, txid: u64) {
        self.last_txid = txid;
    }

    /// A journal that persists nothing, for a master that lives only in memory (tests).
    pub fn in_memory() -> Journal {
        Journal {
            tx: None,
            shared: Arc::new(Shared::default()),
            last_txid: 0,
            since_checkpoint: 0,
            checkpoint_every: u64::MAX,
            checkpoint_wanted: Arc::new(Notify::new()),
            group: None,
        }
    }

    /// Opens the log in `log_dir` for records after `last_txid` (a new segment
    /// `seg-<last_txid + 1>`) and starts its writer thread.
    ///
    /// # Errors
    /// [`Error::LogFailed`] if the segment cannot be created; [`Error::Io`] if the thread
    /// cannot be started.
    pub fn open(
        log_dir: &Path,
        last_txid: u64,
        segment_size: u64,
        checkpoint_every: u64,
    ) -> Result<(Journal, LogThread)> {
        let shared = Arc::new(Shared::default());
        let writer = Writer::open(log_dir, last_txid + 1, segment_size, shared.clone())?;
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("oplog-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| Error::Io { what: "starting the log writer".into(), source })?;
        let journal = Journal {
            tx: Some(tx.clone()),
            shared,
            last_txid,
            since_checkpoint: 0,
            checkpoint_every,
            checkpoint_wanted: Arc::new(Notify::new()),
            group: None,
        };
        Ok((journal, LogThread { tx, thread: Some(thread) }))
    }

    /// Fails if the log can no longer be written.
    ///
    /// # Errors
    /// [`Error::LogFailed`] with the first failure.
    pub fn writable(&self) -> Result<()> {
        if let Some(g) = &self.group {
            return g.writable();
        }
        match self.shared.failure() {
            Some(f) => Err(f.into()),
            None => Ok(()),
        }
    }

    /// Logs a mutation just applied (call with the state lock held, in apply order).
    pub fn append(&mut self, op: Op, time_ms: i64) -> Durable {
        self.append_call(op, time_ms, None)
    }

    /// Logs mutations just applied, in order; resolves once the last (and so every one)
    /// is durable, at once if there are none.
    pub fn append_all(&mut self, ops: impl IntoIterator<Item = Op>, time_ms: i64) -> Durable {
        let mut last = Durable(DurableInner::Ready(Ok(())));
        for op in ops {
            last = self.append(op, time_ms);
        }
        last
    }

    /// Logs a mutation just applied together with the retry-cache entry of the call that
    /// made it (call with the state lock held, in apply order). Its txid is then
    /// [`Journal::last_txid`].
    pub fn append_call(&mut self, op: Op, time_ms: i64, call: Option<LoggedCall>) -> Durable {
        self.last_txid += 1;
        if let Some(g) = &mut self.group {
            return g.propose(Record { txid: self.last_txid, time_ms, op, call });
        }
        self.since_checkpoint += 1;
        if self.since_checkpoint >= self.checkpoint_every {
            self.checkpoint_wanted.notify_one();
        }
        let Some(tx) = &self.tx else {
            return Durable(DurableInner::Ready(Ok(())));
        };
        // Encoding is the writer thread's job, off the state lock.
        let record = Record { txid: self.last_txid, time_ms, op, call };
        let (done, rx) = oneshot::channel();
        match tx.send(Command::Append { record, done }) {
            Ok(()) => Durable(DurableInner::Waiting(rx)),
            Err(_) => Durable(DurableInner::Ready(Err(Failure {
                path: "the operation log".into(),
                reason: "the log writer stopped".into(),
            }))),
        }
    }

    /// Resolves once every record appended before this call is durable: how a retried
    /// call whose original is still being synced waits for it.
    pub fn barrier(&self) -> Durable {
        if let Some(g) = &self.group {
            return g.barrier();
        }
        let Some(tx) = &self.tx else {
            return Durable(DurableInner::Ready(Ok(())));
        };
        let (done, rx) = oneshot::channel();
        match tx.send(Command::Barrier { done }) {
            Ok(()) => Durable(DurableInner::Waiting(rx)),
            Err(_) => Durable(DurableInner::Ready(Err(Failure {
                path: "the operation log".into(),
                reason: "the log writer stopped".into(),
            }))),
        }
    }

    /// Starts a new segment for the records after the current last one; resolves once
    /// the earlier segments are closed. Resets the checkpoint counter: a checkpoint of
    /// the state as of now is about to be taken.
    pub fn roll_for_checkpoint(&mut self) -> Durable {
        self.since_checkpoint = 0;
        let Some(tx) = &self.tx else {
            return Durable(DurableInner::Ready(Ok(())));
        };
        let (done, rx) = oneshot::channel();
        match tx.send(Command::Roll { next_txid: self.last_txid + 1, done }) {
            Ok(()) => Durable(DurableInner::Waiting(rx)),
            Err(_) => Durable(DurableInner::Ready(Err(Failure {
                path: "the operation log".into(),
                reason: "the log writer stopped".into(),
            }))),
        }
    }

    /// The last transaction id handed out.
    pub fn last_txid(&self) -> u64 {
        self.last_txid
    }

    /// Records logged since the last checkpoint snapshot.
    pub fn since_checkpoint(&self) -> u64 {
        self.since_checkpoint
    }

    /// Notified when the log passes the checkpoint threshold.
    pub fn checkpoint_wanted(&self) -> Arc<Notify> {
        self.checkpoint_wanted.clone()
    }

    /// Number of syncs (batches made durable) so far.
    pub fn sync_count(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }
}

/// The writer thread; [`LogThread::stop`] writes what is queued and joins it.
#[derive(Debug)]
pub struct LogThread {
    tx: mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogThread {
    /// Stops the writer after it has written everything queued before this call.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.tx.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            // A panic in the writer already failed every waiter; nothing is left to do.
            let _ = t.join();
        }
    }
}

impl Drop for LogThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use proto::path::DfsPath;

    use super::*;

    fn mkdir(i: u64) -> Op {
        let path = DfsPath::parse(&format!("/d{i}")).expect("path");
        Op::Mkdir { path, parents: false, owner: "u".into(), umask: 0o022 }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_is_durable_in_order_with_fewer_syncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, thread) = Journal::open(dir.path(), 0, 64 << 20, u64::MAX).expect("open");
        let journal = Arc::new(std::sync::Mutex::new(journal));
        const N: u64 = 2000;
        let mut tasks = Vec::new();
        for i in 0..N {
            let j = journal.clone();
            tasks.push(tokio::spawn(async move {
                let d = j.lock().expect("lock").append(mkdir(i), i as i64);
                d.wait().await
            }));
        }
        for t in tasks {
            t.await.expect("task").expect("durable");
        }
        let syncs = journal.lock().expect("lock").sync_count();
        assert!((1..=N).contains(&syncs), "{syncs} syncs for {N} records");
        thread.stop();
        // Every record is there, numbered in the order it was handed over.
        let mut txids = Vec::new();
        let last = segment::replay(dir.path(), 0, |_, _, r| {
            txids.push(r.txid);
            Ok(())
        })
        .expect("replay");
        assert_eq!(last, N);
        assert_eq!(txids, (1..=N).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn records_queued_during_a_sync_share_the_next_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = Arc::new(Shared::default());
        let writer = Writer::open(dir.path(), 1, 64 << 20, shared.clone()).expect("open");
        let (tx, rx) = mpsc::unbounded_channel();
        let mut journal = Journal { tx: Some(tx.clone()), ..Journal::in_memory() };
        journal.shared = shared;
        // Everything is queued before the writer looks, as happens while it is busy syncing.
        let waits: Vec<Durable> = (0..500).map(|i| journal.append(mkdir(i), 0)).collect();
        let thread = LogThread { tx, thread: Some(std::thread::spawn(move || writer.run(rx))) };
        for w in waits {
            w.wait().await.expect("durable");
        }
        assert_eq!(journal.sync_count(), 1, "one write and one sync for the whole batch");
        thread.stop();
        assert_eq!(segment::replay(dir.path(), 0, |_, _, _| Ok(())).expect("replay"), 500);
    }

    #[tokio::test]
    async fn a_barrier_resolves_once_earlier_records_are_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = Arc::new(Shared::default());
        let writer = Writer::open(dir.path(), 1, 64 << 20, shared.clone()).expect("open");
        let (tx, rx) = mpsc::unbounded_channel();
        let mut journal = Journal { tx: Some(tx.clone()), ..Journal::in_memory() };
        journal.shared = shared;
        let first = journal.append(mkdir(1), 0);
        let barrier = journal.barrier();
        let thread = LogThread { tx, thread: Some(std::thread::spawn(move || writer.run(rx))) };
        barrier.wait().await.expect("barrier");
        // Everything before the barrier is on disk by the time it resolves.
        assert_eq!(segment::replay(dir.path(), 0, |_, _, _| Ok(())).expect("replay"), 1);
        first.wait().await.expect("durable");
        thread.stop();
    }

    #[tokio::test]
    async fn segments_roll_by_size_and_on_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut journal, thread) = Journal::open(dir.path(), 0, 4096, u64::MAX).expect("open");
        for i in 0..200 {
            journal.append(mkdir(i), 0).wait().await.expect("durable");
        }
        let by_size = segment::list(dir.path()).expect("list").len();
        assert!(by_size > 1, "segments rolled past 4 KiB");
        journal.roll_for_checkpoint().wait().await.expect("roll");
        // Rolling twice with nothing in between keeps one empty segment.
        journal.roll_for_checkpoint().wait().await.expect("roll");
        let segs = segment::list(dir.path()).expect("list");
        assert_eq!(segs.len(), by_size + 1);
        assert_eq!(segs.last().map(|s| s.0), Some(201));
        thread.stop();
        let last = segment::replay(dir.path(), 0, |_, _, _| Ok(())).expect("replay");
        assert_eq!(last, 200);
    }

    #[tokio::test]
    async fn a_full_disk_fails_the_log_and_everything_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The first segment is /dev/full: every write to it fails with ENOSPC, as on a
        // full disk.
        std::os::unix::fs::symlink("/dev/full", dir.path().join(segment::segment_name(1)))
            .expect("symlink");
        let (mut journal, thread) = Journal::open(dir.path(), 0, 64 << 20, u64::MAX).expect("open");
        journal.writable().expect("nothing failed yet");
        let err = journal.append(mkdir(1), 0).wait().await.expect_err("refused").to_string();
        assert!(err.contains("operation log at") && err.contains("seg-"), "{err}");
        assert!(err.contains("still serves reads"), "{err}");
        assert!(journal.writable().is_err());
        // Later appends and rolls get the first failure, never a success.
        let later = journal.append(mkdir(2), 0).wait().await.expect_err("refused").to_string();
        assert_eq!(later, err);
        assert!(journal.roll_for_checkpoint().wait().await.is_err());
        assert_eq!(journal.sync_count(), 0);
        thread.stop();
    }

    #[test]
    fn checkpoint_is_wanted_past_the_threshold() {
        let mut j = Journal::in_memory();
        j.checkpoint_every = 3;
        for i in 0..3 {
            let _ = j.append(mkdir(i), 0);
        }
        assert_eq!(j.since_checkpoint(), 3);
        let _ = j.roll_for_checkpoint();
        assert_eq!(j.since_checkpoint(), 0);
        assert_eq!(j.last_txid(), 3);
    }
}
