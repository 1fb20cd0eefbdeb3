//! The log writer: one thread owns the open segment, takes every append queued since its
//! last write, writes them with one `write`, makes them durable with one `fdatasync`, then
//! answers every waiter (group commit). It also rolls to a new segment past the size
//! threshold or when a checkpoint asks.
//!
//! A blocking thread rather than an async task: each batch is a blocking write and sync,
//! and a dedicated thread keeps them off the runtime's workers without a `spawn_blocking`
//! hop per batch. Once a write or sync fails the writer is *failed* for good: a change it
//! could not persist must never be acknowledged, and retrying an fsync after an error is
//! not safe (the kernel may have dropped the dirty pages), so every later append is
//! refused with the first failure until the master restarts.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info};

use super::record::Record;
use super::{frame, segment};

/// Why the log cannot be written: the file and the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The segment (or log directory) concerned.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

/// State the writer shares with the [`super::Journal`].
#[derive(Debug, Default)]
pub struct Shared {
    /// The first failure, once the log has failed.
    pub failure: Mutex<Option<Failure>>,
    /// Batches made durable (one `fdatasync` each).
    pub syncs: AtomicU64,
}

impl Shared {
    /// The failure, if the log has failed.
    pub fn failure(&self) -> Option<Failure> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records `f` as the log's failure unless one is recorded already; returns the first.
    pub fn fail(&self, f: Failure) -> Failure {
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(f).clone()
    }
}

/// The answer a waiter gets: durable, or why not.
pub type Ack = std::result::Result<(), Failure>;

/// What the writer is asked to do, in the order callers applied their mutations.
#[derive(Debug)]
pub enum Command {
    /// Append one record (the writer encodes and frames it).
    Append {
        /// The record.
        record: Record,
        /// Answered once it is durable (or cannot be).
        done: oneshot::Sender<Ack>,
    },
    /// Answer once everything queued before it is durable (appends nothing itself).
    Barrier {
        /// Answered with the outcome of the batch it ends up in.
        done: oneshot::Sender<Ack>,
    },
    /// Close the segment and start `seg-<next_txid>`.
    Roll {
        /// First transaction id of the new segment.
        next_txid: u64,
        /// Answered once the new segment exists.
        done: oneshot::Sender<Ack>,
    },
    /// Write what is queued and exit.
    Stop,
}

/// The writer thread's state.
#[derive(Debug)]
pub struct Writer {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    first_txid: u64,
    size: u64,
    segment_size: u64,
    shared: Arc<Shared>,
}

impl Writer {
    /// Opens `seg-<next_txid>` in `dir` (it may exist only empty).
    ///
    /// # Errors
    /// The file cannot be created, or exists with records in it.
    pub fn open(
        dir: &Path,
        next_txid: u64,
        segment_size: u64,
        shared: Arc<Shared>,
    ) -> std::result::Result<Writer, Failure> {
        let (file, path) = open_segment(dir, next_txid)?;
        Ok(Writer {
            dir: dir.to_owned(),
            file,
            path,
            first_txid: next_txid,
            size: 0,
            segment_size,
            shared,
        })
    }

    /// Serves commands until `Stop` or until every sender is gone.
    pub fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut buf = Vec::new();
        let mut payload = Vec::new();
        let mut waiters = Vec::new();
        while let Some(cmd) = rx.blocking_recv() {
            let mut next = Some(cmd);
            let mut first = None;
            // Everything queued while the last batch was being synced goes in this one.
            while let Some(cmd) = next.take().or_else(|| rx.try_recv().ok()) {
                match cmd {
                    Command::Append { record, done } => {
                        first.get_or_insert(record.txid);
                        payload.clear();
                        record.encode_into(&mut payload);
                        frame::push(&payload, &mut buf);
                        waiters.push(done);
                    }
                    Command::Barrier { done } => waiters.push(done),
                    Command::Roll { next_txid, done } => {
                        self.flush(&mut buf, &mut waiters, first.take());
                        let _ = done.send(self.roll(next_txid));
                    }
                    Command::Stop => {
                        self.flush(&mut buf, &mut waiters, first.take());
                        return;
                    }
                }
            }
            self.flush(&mut buf, &mut waiters, first);
        }
    }

    /// Writes and syncs `buf`, then answers `waiters`.
    fn flush(
        &mut self,
        buf: &mut Vec<u8>,
        waiters: &mut Vec<oneshot::Sender<Ack>>,
        first: Option<u64>,
    ) {
        if waiters.is_empty() {
            return;
        }
        let ack = self.write(buf, first);
        buf.clear();
        for w in waiters.drain(..) {
            // A waiter that gave up (its client went away) needs no answer.
            let _ = w.send(ack.clone());
        }
    }

    fn write(&mut self, buf: &[u8], first: Option<u64>) -> Ack {
        if let Some(f) = self.shared.failure() {
            return Err(f);
        }
        if let Some(first) = first
            && self.size >= self.segment_size
        {
            self.roll(first)?;
        }
        let written = self.file.write_all(buf).and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.size += buf.len() as u64;
                self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(self.fail(&self.path.clone(), &e)),
        }
    }

    fn fail(&self, path: &Path, e: &dyn std::fmt::Display) -> Failure {
        let f =
            self.shared.fail(Failure { path: path.display().to_string(), reason: e.to_string() });
        error!(path = %f.path, reason = %f.reason, "operation log failed: the master refuses changes from now on");
        f
    }

    /// Starts `seg-<next_txid>` (a no-op when that is the current, still empty segment).
    fn roll(&mut self, next_txid: u64) -> Ack {
        if let Some(f) = self.shared.failure() {
            return Err(f);
        }
        if next_txid == self.first_txid && self.size == 0 {
            return Ok(());
        }
        let (file, path) = open_segment(&self.dir, next_txid).map_err(|f| self.shared.fail(f))?;
        info!(segment = %path.display(), "operation log rolled to a new segment");
        self.file = file;
        self.path = path;
        self.first_txid = next_txid;
        self.size = 0;
        Ok(())
    }
}

/// Creates (or reopens empty) `seg-<first_txid>` and makes its name durable.
fn open_segment(dir: &Path, first_txid: u64) -> std::result::Result<(File, PathBuf), Failure> {
    let path = dir.join(segment::segment_name(first_txid));
    let failure = |reason: String| Failure { path: path.display().to_string(), reason };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| failure(format!("cannot create segment: {e}")))?;
    let len = file.metadata().map_err(|e| failure(e.to_string()))?.len();
    if len != 0 {
        // Its name says it starts at a transaction not yet written: a bug or a stray file.
        return Err(failure(format!("new segment already holds {len} bytes")));
    }
    segment::sync_dir(dir).map_err(|e| failure(e.to_string()))?;
    Ok((file, path))
}
