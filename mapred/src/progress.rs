//! How a task attempt shows it is alive and which record it is on, and how records that
//! crashed earlier attempts are skipped.
//!
//! [`Progress`] is a 16-byte file memory-mapped by the attempt and read by its worker:
//! word 0 is the index of the record (map) or key group (reduce) about to be processed
//! (`u64::MAX` outside records), word 1 a pulse the framework bumps while it does its own
//! I/O (opening input, fetching map outputs, merging, closing output). Both are plain
//! atomic stores into shared memory: no system call per record. The worker's
//! [`stall_watch`] fails an attempt when neither word changes for the task timeout (a
//! hang in user code, where no pulse runs); when the attempt dies, word 0 names the
//! record that killed it.
//!
//! [`Skipper`] is what the record loops consult: it stores the index, and says whether
//! the record is to be processed: not if it is on the attempt's skip list (it is then
//! listed for `OUT/_skipped/`), and, in a replay, only if it is the replayed record.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Value of the record word outside any record.
const NONE: u64 = u64::MAX;

/// The progress file of an attempt (see the module documentation).
#[derive(Debug)]
pub struct Progress {
    /// The mapping `words` points into, kept alive with it.
    _map: Option<memmap2::MmapMut>,
    /// Start of the mapping (16 bytes, page-aligned), or null.
    words: *const AtomicU64,
}

// SAFETY: `words` points into `map`, which lives as long as the struct and is only ever
// accessed through atomics.
unsafe impl Send for Progress {}
// SAFETY: as above; concurrent access goes through `AtomicU64`.
unsafe impl Sync for Progress {}

impl Progress {
    /// Creates (or truncates) the progress file at `path` and maps it. A file that cannot
    /// be created gives a no-op progress: it only serves failure handling.
    pub fn create(path: &Path) -> Progress {
        let map = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .and_then(|f| {
                f.set_len(16)?;
                // SAFETY: the file is private to this attempt; the worker only reads it,
                // and nobody resizes it while it is mapped.
                unsafe { memmap2::MmapMut::map_mut(&f) }
            })
            .ok();
        let mut map = map;
        let words = map.as_mut().map_or(std::ptr::null(), |m| m.as_mut_ptr() as *const AtomicU64);
        let p = Progress { _map: map, words };
        p.set(NONE);
        p
    }

    #[inline]
    fn word(&self, i: usize) -> Option<&AtomicU64> {
        if self.words.is_null() {
            return None;
        }
        // SAFETY: the mapping is page-aligned and 16 bytes long, so words 0 and 1 are
        // aligned and in bounds, and it lives as long as `self`.
        Some(unsafe { &*self.words.add(i) })
    }

    /// Records that record `index` is about to be processed.
    #[inline]
    pub fn set(&self, index: u64) {
        if let Some(w) = self.word(0) {
            w.store(index, Ordering::Relaxed);
        }
    }

    /// Records that no record is being processed (framework work follows).
    pub fn clear(&self) {
        self.set(NONE);
    }

    /// Shows the attempt is alive without a new record.
    pub fn pulse(&self) {
        if let Some(w) = self.word(1) {
            w.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Pulses every 200 ms until the returned guard is dropped: wrap framework I/O in it,
    /// never user code (a hang there must stop the pulse).
    pub fn pulse_while(self: &Arc<Self>) -> Pulse {
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (self.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("progress-pulse".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    p.pulse();
                    std::thread::park_timeout(Duration::from_millis(200));
                }
            })
            .ok();
        self.pulse();
        Pulse { stop, handle }
    }

    /// The record index stored in a progress file (`None` outside records or unreadable).
    pub fn read(path: &Path) -> Option<u64> {
        Self::snapshot(path).map(|(r, _)| r).filter(|&r| r != NONE)
    }

    /// Both words of a progress file.
    pub fn snapshot(path: &Path) -> Option<(u64, u64)> {
        let b = std::fs::read(path).ok()?;
        let word = |i: usize| Some(u64::from_le_bytes(b.get(i * 8..i * 8 + 8)?.try_into().ok()?));
        Some((word(0)?, word(1).unwrap_or(0)))
    }
}

/// Keeps pulsing a [`Progress`] until dropped.
#[derive(Debug)]
pub struct Pulse {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Pulse {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// Resolves once the progress file at `path` has not changed for `timeout` (checked a
/// few times per timeout, at most once per second).
pub async fn stall_watch(path: &Path, timeout: Duration) {
    let every = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut last = Progress::snapshot(path);
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let now = Progress::snapshot(path);
        if now != last {
            last = now;
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= timeout {
            return;
        }
    }
}

/// What a record loop consults before each record (see the module documentation).
///
/// An ordinary attempt skips the (sorted) records of its skip list and lists them, one
/// line each: `SOURCE<TAB>OFFSET<TAB>INDEX<TAB>RECORD`, where SOURCE is the input file
/// (`generated` for generated input, `partition N` for a reduce's key groups), OFFSET the
/// record's byte offset in it (`-` when there is none), INDEX its index in the split (or
/// the key group's in the partition) and RECORD the line, `key<TAB>value` record or
/// encoded key, with `\`, control bytes and tabs escaped. A replay
/// ([`Skipper::replaying`]) lets only its one record through and lists nothing.
#[derive(Debug)]
pub struct Skipper<'a> {
    progress: &'a Progress,
    skip: &'a [u64],
    next: usize,
    replay: Option<u64>,
    source: String,
    /// The skipped records, one line each.
    pub skipped: Vec<u8>,
    /// How many were skipped.
    pub count: u64,
}

impl<'a> Skipper<'a> {
    /// A skipper storing indexes in `progress` and skipping the (sorted) indexes `skip`
    /// of the input `source`.
    pub fn new(progress: &'a Progress, skip: &'a [u64], source: &str) -> Skipper<'a> {
        Skipper {
            progress,
            skip,
            next: 0,
            replay: None,
            source: source.to_owned(),
            skipped: Vec::new(),
            count: 0,
        }
    }

    /// A skipper for a replay of record `record` alone: every other record is passed
    /// over (not counted as skipped, not listed).
    pub fn replaying(progress: &'a Progress, record: u64) -> Skipper<'a> {
        Skipper { replay: Some(record), ..Skipper::new(progress, &[], "") }
    }

    /// Record `index` (at byte `offset` of the source, if it has one) is next: false if
    /// it must not be processed (then a skipped one is listed with what `describe`
    /// gives, called only then: the hot path builds nothing).
    #[inline]
    pub fn enter<'b>(
        &mut self,
        index: u64,
        offset: Option<u64>,
        describe: impl FnOnce() -> std::borrow::Cow<'b, [u8]>,
    ) -> bool {
        self.progress.set(index);
        if let Some(r) = self.replay {
            return index == r;
        }
        if self.skip.get(self.next) != Some(&index) {
            return true;
        }
        self.next += 1;
        self.count += 1;
        let offset = offset.map_or_else(|| "-".to_owned(), |o| o.to_string());
        let line = format!("{}\t{offset}\t{index}\t", self.source);
        self.skipped.extend_from_slice(line.as_bytes());
        escape_into(&describe(), &mut self.skipped);
        self.skipped.push(b'\n');
        false
    }

    /// The records are over.
    pub fn done(&self) {
        self.progress.clear();
    }
}

/// Appends `bytes` with backslashes, tabs, newlines and other control bytes escaped, so
/// that a listed record is one line and its fields split on tabs.
fn escape_into(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_shared_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress");
        let p = Arc::new(Progress::create(&path));
        assert_eq!(Progress::read(&path), None);
        p.set(41);
        p.set(42);
        assert_eq!(Progress::read(&path), Some(42));
        let before = Progress::snapshot(&path).unwrap().1;
        {
            let _pulse = p.pulse_while();
            std::thread::sleep(Duration::from_millis(300));
        }
        let after = Progress::snapshot(&path).unwrap().1;
        assert!(after >= before + 2, "{before} -> {after}");
        p.clear();
        assert_eq!(Progress::read(&path), None);
    }

    #[test]
    fn the_skipper_skips_exactly_the_listed_records_and_says_where_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let p = Progress::create(&dir.path().join("progress"));
        let skip = [1, 3];
        let mut s = Skipper::new(&p, &skip, "/in/a");
        let kept: Vec<u64> = (0..5)
            .filter(|&i| s.enter(i, Some(i * 10), || format!("r{i}\tx\\y").into_bytes().into()))
            .collect();
        assert_eq!(kept, [0, 2, 4]);
        assert_eq!(s.count, 2);
        assert_eq!(
            String::from_utf8(s.skipped).unwrap(),
            "/in/a\t10\t1\tr1\\tx\\\\y\n/in/a\t30\t3\tr3\\tx\\\\y\n"
        );
    }

    #[test]
    fn a_replay_lets_one_record_through_and_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress");
        let p = Progress::create(&path);
        let mut s = Skipper::replaying(&p, 2);
        let kept: Vec<u64> = (0..5).filter(|&i| s.enter(i, None, || b"r".into())).collect();
        assert_eq!(kept, [2]);
        assert_eq!((s.count, s.skipped.len()), (0, 0));
        assert_eq!(Progress::read(&path), Some(4));
    }

    #[tokio::test]
    async fn a_stalled_file_is_noticed_and_a_moving_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress");
        let p = Arc::new(Progress::create(&path));
        let timeout = Duration::from_millis(300);
        let mover = {
            let p = p.clone();
            std::thread::spawn(move || {
                for i in 0..12 {
                    p.set(i);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let quiet = tokio::time::timeout(Duration::from_millis(450), stall_watch(&path, timeout));
        assert!(quiet.await.is_err(), "a moving attempt is not stalled");
        let _ = mover.join();
        let stalled = tokio::time::timeout(Duration::from_secs(5), stall_watch(&path, timeout));
        assert!(stalled.await.is_ok());
    }
}
