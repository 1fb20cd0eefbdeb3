//! The Raft log and vote of a group member on disk, for openraft's [`RaftLogStorage`].
//!
//! One append-only file, `log`, holds framed ([`crate::oplog::frame`]) postcard records:
//! an entry, a truncation (entries from an index on were replaced by a new leader's) or a
//! purge (entries up to a log id are in a snapshot). Reading the file in order rebuilds
//! the log; a torn tail (a crash mid-append) is cut, since its entries were never
//! reported flushed and so never counted toward a commit. The vote lives in its own
//! file, replaced atomically (`vote.tmp`, fsync, rename, fsync of the directory).
//!
//! All writes go through one thread in order, as openraft requires (a vote and the
//! appends around it are never reordered), and the thread syncs once for everything
//! queued: group commit, as the single master's log does. An append returns at once; its
//! [`LogFlushed`] callback fires after the sync. Entries are also kept in memory for
//! reads: the log is short, since snapshots purge it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::{error, info};

use super::TypeConfig;
use crate::error::{Error, Result};
use crate::oplog::frame::{self, Frame, Frames};

/// Rewrite the log file without purged entries once it passes this size.
const REWRITE_AT: u64 = 64 << 20;

/// One record of the log file.
#[derive(Debug, Serialize, Deserialize)]
enum LogRecord {
    Entry(Entry<TypeConfig>),
    /// Entries from this index on are gone.
    Truncate(u64),
    /// Entries up to this log id are gone (they are in a snapshot).
    Purge(LogId<u64>),
}

/// The log as held in memory.
#[derive(Debug, Default)]
pub(crate) struct Entries {
    map: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<u64>>,
}

impl Entries {
    fn take(&mut self, rec: LogRecord) {
        match rec {
            LogRecord::Entry(e) => {
                self.map.insert(e.log_id.index, e);
            }
            LogRecord::Truncate(since) => {
                self.map.split_off(&since);
            }
            LogRecord::Purge(upto) => {
                self.map = self.map.split_off(&(upto.index + 1));
                self.last_purged = Some(upto);
            }
        }
    }

    /// Adds `e` (tests that build a log by hand).
    #[cfg(test)]
    pub(crate) fn insert(&mut self, e: Entry<TypeConfig>) {
        self.take(LogRecord::Entry(e));
    }

    /// Whether the log holds no entry.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Entries in `range`, in order.
    pub(crate) fn range(&self, range: impl RangeBounds<u64>) -> Vec<Entry<TypeConfig>> {
        self.map.range(range).map(|(_, e)| e.clone()).collect()
    }
}

/// The in-memory log, shared by the store, its readers and the state machine (which
/// replays it to rebuild an image, see [`super::state_machine`]).
pub(crate) type SharedEntries = Arc<Mutex<Entries>>;

pub(crate) fn lock(entries: &SharedEntries) -> MutexGuard<'_, Entries> {
    entries.lock().unwrap_or_else(|p| p.into_inner())
}

enum Io {
    /// Framed records to append, and who to tell once they are durable.
    Append { bytes: Vec<u8>, done: Done },
    /// Replace the vote file.
    Vote { vote: Vote<u64>, done: oneshot::Sender<io::Result<()>> },
}

enum Done {
    Flushed(LogFlushed<TypeConfig>),
    Waiting(oneshot::Sender<io::Result<()>>),
}

impl Done {
    fn send(self, r: io::Result<()>) {
        match self {
            Done::Flushed(cb) => cb.log_io_completed(r),
            Done::Waiting(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// The log store handed to openraft.
#[derive(Clone)]
pub struct LogStore {
    entries: SharedEntries,
    vote: Option<Vote<u64>>,
    tx: mpsc::Sender<Io>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").field("vote", &self.vote).finish_non_exhaustive()
    }
}

fn io_err(what: String) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io { what, source }
}

fn storage_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write_logs(&io::Error::other(e.to_string())).into()
}

impl LogStore {
    /// Opens (or creates) the log in `dir` and starts its writer thread.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the file and offset of a damaged record; I/O errors.
    pub fn open(dir: &Path) -> Result<LogStore> {
        fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let path = dir.join("log");
        let mut entries = Entries::default();
        let mut keep = 0u64;
        if path.exists() {
            let buf = fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
            let mut frames = Frames::new(&buf);
            loop {
                match frames.next_frame() {
                    Frame::Record { offset, payload } => {
                        let rec: LogRecord =
                            postcard::from_bytes(payload).map_err(|e| Error::Corrupt {
                                file: path.display().to_string(),
                                offset,
                                reason: format!("undecodable Raft log record: {e}"),
                            })?;
                        entries.take(rec);
                        keep = offset + (frame::HEADER_LEN + payload.len()) as u64;
                    }
                    Frame::End => break,
                    Frame::Torn { offset, reason } => {
                        info!(file = %path.display(), offset, reason, "cutting a torn Raft log tail");
                        break;
                    }
                    Frame::Corrupt { offset, reason } => {
                        return Err(Error::Corrupt {
                            file: path.display().to_string(),
                            offset,
                            reason,
                        });
                    }
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        file.set_len(keep).map_err(io_err(format!("cutting {}", path.display())))?;
        let vote = read_vote(dir)?;
        let entries = Arc::new(Mutex::new(entries));
        let (tx, rx) = mpsc::channel();
        let writer =
            Writer { dir: dir.to_owned(), path, file, len: keep, entries: entries.clone() };
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err("starting the Raft log writer".into()))?;
        Ok(LogStore { entries, vote, tx })
    }

    /// The in-memory log.
    pub(crate) fn entries(&self) -> SharedEntries {
        self.entries.clone()
    }

    async fn write(&self, records: &[LogRecord]) -> std::result::Result<(), StorageError<u64>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Io::Append {
                bytes: encode(records).map_err(storage_err)?,
                done: Done::Waiting(tx),
            })
            .map_err(|_| storage_err("the Raft log writer stopped"))?;
        rx.await.map_err(|_| storage_err("the Raft log writer stopped"))?.map_err(storage_err)
    }
}

fn encode(records: &[LogRecord]) -> std::result::Result<Vec<u8>, postcard::Error> {
    let mut out = Vec::new();
    for r in records {
        frame::push(&postcard::to_stdvec(r)?, &mut out);
    }
    Ok(out)
}

fn read_vote(dir: &Path) -> Result<Option<Vote<u64>>> {
    let path = dir.join("vote");
    match fs::read(&path) {
        Ok(buf) => postcard::from_bytes(&buf).map(Some).map_err(|e| Error::Corrupt {
            file: path.display().to_string(),
            offset: 0,
            reason: format!("undecodable vote: {e}"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io { what: format!("reading {}", path.display()), source: e }),
    }
}

/// Replaces `dir/name` with `bytes` durably: a synced temporary file renamed over it,
/// then the directory synced.
pub(crate) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

struct Writer {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    len: u64,
    entries: SharedEntries,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Io>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let mut waiting = Vec::new();
            let mut failed: Option<String> = None;
            for io in batch {
                match io {
                    Io::Append { bytes, done } => {
                        if failed.is_none()
                            && let Err(e) = self.file.write_all(&bytes)
                        {
                            failed = Some(format!("writing {}: {e}", self.path.display()));
                        }
                        self.len += bytes.len() as u64;
                        waiting.push(done);
                    }
                    Io::Vote { vote, done } => {
                        // Everything appended before the vote is durable before it.
                        let r = self.sync().and_then(|()| {
                            let bytes = postcard::to_stdvec(&vote).map_err(io::Error::other)?;
                            replace_file(&self.dir, "vote", &bytes)
                        });
                        let _ = done.send(r);
                    }
                }
            }
            let r = match failed {
                Some(f) => Err(f),
                None => self.sync().map_err(|e| format!("syncing {}: {e}", self.path.display())),
            };
            if let Err(e) = &r {
                error!(error = %e, "the Raft log cannot be written");
            }
            for done in waiting {
                done.send(r.clone().map_err(io::Error::other));
            }
            if r.is_ok() && self.len > REWRITE_AT {
                self.rewrite();
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Writes the live log alone to a new file, once purges have left most of the old
    /// one dead. Skipped (and retried at the next batch) while most of it is live.
    fn rewrite(&mut self) {
        let records: Vec<LogRecord> = {
            let e = lock(&self.entries);
            let live: u64 = e.map.len() as u64;
            // An entry is at least a few dozen bytes: a file this large with few live
            // entries is mostly purged ones.
            if live.saturating_mul(4096) > self.len {
                return;
            }
            e.last_purged
                .map(LogRecord::Purge)
                .into_iter()
                .chain(e.map.values().cloned().map(LogRecord::Entry))
                .collect()
        };
        let result = encode(&records)
            .map_err(io::Error::other)
            .and_then(|bytes| {
                replace_file(&self.dir, "log", &bytes)?;
                Ok(bytes.len() as u64)
            })
            .and_then(|len| {
                self.file = OpenOptions::new().append(true).open(&self.path)?;
                Ok(len)
            });
        match result {
            Ok(len) => {
                info!(file = %self.path.display(), before = self.len, after = len, "Raft log rewritten without purged entries");
                self.len = len;
            }
            Err(e) => {
                error!(file = %self.path.display(), error = %e, "rewriting the Raft log failed; it keeps growing")
            }
        }
    }
}

/// Reads entries for openraft (replication, and the state machine's replays).
#[derive(Debug, Clone)]
pub struct LogReader {
    entries: SharedEntries,
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        Ok(lock(&self.entries).range(range))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        Ok(lock(&self.entries).range(range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(
        &mut self,
    ) -> std::result::Result<LogState<TypeConfig>, StorageError<u64>> {
        let e = lock(&self.entries);
        let last_log_id = e.map.values().next_back().map(|e| e.log_id).or(e.last_purged);
        Ok(LogState { last_purged_log_id: e.last_purged, last_log_id })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader { entries: self.entries.clone() }
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> std::result::Result<(), StorageError<u64>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Io::Vote { vote: *vote, done: tx })
            .map_err(|_| storage_err("the Raft log writer stopped"))?;
        rx.await
            .map_err(|_| storage_err("the Raft log writer stopped"))?
            .map_err(|e| StorageError::from(StorageIOError::write_vote(&e)))?;
        self.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> std::result::Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> std::result::Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let records: Vec<LogRecord> = entries.into_iter().map(LogRecord::Entry).collect();
        let bytes = encode(&records).map_err(storage_err)?;
        {
            let mut e = lock(&self.entries);
            for r in records {
                e.take(r);
            }
        }
        self.tx
            .send(Io::Append { bytes, done: Done::Flushed(callback) })
            .map_err(|_| storage_err("the Raft log writer stopped"))
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> std::result::Result<(), StorageError<u64>> {
        lock(&self.entries).take(LogRecord::Truncate(log_id.index));
        self.write(&[LogRecord::Truncate(log_id.index)]).await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> std::result::Result<(), StorageError<u64>> {
        lock(&self.entries).take(LogRecord::Purge(log_id));
        self.write(&[LogRecord::Purge(log_id)]).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::EntryPayload;
    use openraft::testing::log_id;

    use super::*;

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry { log_id: log_id(term, 1, index), payload: EntryPayload::Blank }
    }

    #[test]
    fn a_reopened_log_has_its_appends_truncations_and_purges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let mut s = LogStore::open(dir.path()).expect("open");
            s.write(&(1..=5).map(|i| LogRecord::Entry(entry(1, i))).collect::<Vec<_>>())
                .await
                .expect("append");
            lock(&s.entries).map.extend((1..=5).map(|i| (i, entry(1, i))));
            s.truncate(log_id(1, 1, 4)).await.expect("truncate");
            s.write(&[LogRecord::Entry(entry(2, 4))]).await.expect("append");
            s.purge(log_id(1, 1, 2)).await.expect("purge");
            s.save_vote(&Vote::new(2, 3)).await.expect("vote");
        });
        let mut s = LogStore::open(dir.path()).expect("reopen");
        let got: Vec<_> = lock(&s.entries).map.values().map(|e| e.log_id).collect();
        assert_eq!(got, vec![log_id(1, 1, 3), log_id(2, 1, 4)]);
        let state = rt.block_on(s.get_log_state()).expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(2, 1, 4)));
        assert_eq!(rt.block_on(s.read_vote()).expect("vote"), Some(Vote::new(2, 3)));
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_corrupt_record_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let s = LogStore::open(dir.path()).expect("open");
            s.write(&[LogRecord::Entry(entry(1, 1)), LogRecord::Entry(entry(1, 2))])
                .await
                .expect("append");
        });
        let path = dir.path().join("log");
        let whole = fs::read(&path).expect("read");
        fs::write(&path, &whole[..whole.len() - 3]).expect("tear");
        let s = LogStore::open(dir.path()).expect("a torn tail is cut");
        assert_eq!(lock(&s.entries).map.len(), 1);
        drop(s);
        let mut bad = fs::read(&path).expect("read");
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        fs::write(&path, &bad).expect("corrupt");
        let err = LogStore::open(dir.path()).expect_err("a corrupt record is refused");
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
