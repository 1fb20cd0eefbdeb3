//! The on-disk replica store: which replicas this chunkserver holds, their files, and the
//! space they use.
//!
//! Layout of the data directory:
//!
//! ```text
//! DIR/VERSION                  this chunkserver's id (16 hex digits), created once
//! DIR/rbw/<handle:016x>.data   replicas being written (or left half-written by a crash)
//! DIR/rbw/<handle:016x>.meta
//! DIR/finalized/<handle:016x>.data   finalized replicas: exactly `length` raw bytes
//! DIR/finalized/<handle:016x>.meta   header + one CRC32 per 64 KiB block (see [`crate::meta`])
//! ```
//!
//! A replica is written by one [`RbwWriter`] (packets appended at increasing offsets,
//! CRCs already verified by the caller), then finalized: header rewritten with the
//! length, both files fsynced, renamed into `finalized/` (meta first, then data) and the
//! directories fsynced. Reads go through a [`ReplicaReader`], which reads whole blocks
//! with positioned I/O, verifies them against the stored CRCs, and slices out the range.
//!
//! On start-up ([`Store::open`]) finalized replicas are loaded after checking their
//! header and file sizes (a bad one is kept as corrupt and reported, never fatal), and
//! replicas left in `rbw/` are cut to the longest prefix of blocks that verify.
//!
//! All methods do blocking file I/O; async callers run them in `spawn_blocking`. The map
//! of replicas sits behind a std mutex held only for map updates and renames/unlinks.
//!
//! # The replica state machine, and who may move it
//!
//! Each handle has at most one replica here, in one of three states: *being written*
//! (`rbw/`, owned by at most one writer generation), *finalized* (`finalized/`), or
//! *corrupt* (either, kept only until the master deletes or a copy replaces it). Its
//! version only goes up, and only on the master's word (a write or copy header, a lease
//! recovery's stamp), the same rules as the master's chunk map (master `chunks` docs):
//!
//! - a write or copy ([`Store::create_rbw`]) replaces a replica being written, a corrupt
//!   one, or a finalized one of an older version; never one of a *newer* version
//!   ([`Error::NewerStored`]: a frozen node's queued write after a recovery moved on);
//! - a pipeline recovery ([`Store::resume_rbw`]) restamps this node's replica with a
//!   newer version, fencing any older writer still running; a *finalized* replica is
//!   reopened only at a newer version than its own ([`rules::may_resume`]), never at the
//!   same one, so no write stream replaces or cuts finished data;
//! - lease recovery stamps a replica ([`Store::recover_replica`]) and then cuts and
//!   finalizes it ([`Store::settle`]) only at the version it stamped
//!   ([`rules::may_settle`]);
//! - a delete ([`Store::delete`]) names the newest version it removes, and never removes
//!   a newer replica, nor a finalized one when it names only a replica being written;
//! - every failed write or copy aborts its rbw files; only a writer whose upstream went
//!   away mid-chunk leaves them, for the client's pipeline recovery or the master's lease
//!   recovery, and the master deletes them if neither claims them.
//!
//! The store trusts its callers on *who* may ask: the service refuses every request
//! without the master's chunk access token for that handle, version and access before
//! calling it ([`crate::access`]), so these rules hold against mistakes and tokens hold
//! against rogue callers.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use proto::checksum::BLOCK_SIZE;

use crate::error::{Error, Result};
use crate::meta::Header;
pub use crate::reports::ReplicaInfo;
use crate::reports::ReportQueue;

mod reader;
mod recover;
pub mod rules;
mod scan;
mod writer;

pub use reader::ReplicaReader;
pub use writer::RbwWriter;

const B: u64 = BLOCK_SIZE as u64;

/// What [`Store::delete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The replica was removed.
    Removed,
    /// No replica of the chunk was stored.
    Absent,
    /// The stored replica is newer than the delete named, and was kept.
    Kept(ReplicaInfo),
}

/// Space figures for heartbeats and write admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes this chunkserver may use: the `--capacity` cap, else the file system's size.
    pub capacity: u64,
    /// Bytes held by replicas, finalized or not.
    pub used: u64,
    /// Bytes still available for new data, less what active writers have reserved.
    pub remaining: u64,
}

#[derive(Debug, Clone, Copy)]
struct Replica {
    version: u64,
    length: u64,
    finalized: bool,
    corrupt: bool,
    /// Generation of the writer producing this replica, if one is active.
    writer: Option<u64>,
}

impl Replica {
    fn held(&self) -> rules::Held {
        rules::Held { version: self.version, finalized: self.finalized, corrupt: self.corrupt }
    }
}

#[derive(Debug, Default)]
struct State {
    replicas: HashMap<u64, Replica>,
    used: u64,
    reserved: u64,
    active_writes: u32,
}

#[derive(Debug)]
struct Inner {
    rbw: PathBuf,
    finalized: PathBuf,
    root: PathBuf,
    id: String,
    id_secret: [u8; 32],
    cap: Option<u64>,
    reports: Arc<ReportQueue>,
    next_gen: AtomicU64,
    state: Mutex<State>,
}

/// A chunkserver's replicas on disk. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn file_name(handle: u64, ext: &str) -> String {
    format!("{handle:016x}.{ext}")
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Updates under this lock are small and keep the map consistent at every step,
        // so a panic elsewhere while holding it leaves nothing half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dir(&self, finalized: bool) -> &Path {
        if finalized { &self.finalized } else { &self.rbw }
    }

    fn path(&self, finalized: bool, handle: u64, ext: &str) -> PathBuf {
        self.dir(finalized).join(file_name(handle, ext))
    }

    fn remove_files(&self, finalized: bool, handle: u64) -> Result<()> {
        for ext in ["data", "meta"] {
            let p = self.path(finalized, handle, ext);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("remove {}", p.display()), e)),
            }
        }
        Ok(())
    }

    fn mark_corrupt(&self, handle: u64) {
        if let Some(r) = self.lock().replicas.get_mut(&handle) {
            r.corrupt = true;
        }
        self.reports.corrupt(handle);
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, loading every replica found.
    ///
    /// Replicas with a bad header are kept as corrupt and queued on `reports`.
    ///
    /// # Errors
    /// [`Error::Io`] if the directories cannot be created or listed, or `VERSION` cannot
    /// be read or written; [`Error::BadMeta`] if `VERSION` holds something else than an id.
    pub fn open(dir: &Path, cap: Option<u64>, reports: Arc<ReportQueue>) -> Result<Store> {
        let rbw = dir.join("rbw");
        let finalized = dir.join("finalized");
        for d in [dir, &rbw, &finalized] {
            fs::create_dir_all(d).map_err(|e| Error::io(format!("create {}", d.display()), e))?;
        }
        let id = load_or_create_id(dir)?;
        let id_secret = load_or_create_id_secret(dir)?;
        let inner = Inner {
            rbw,
            finalized,
            root: dir.to_owned(),
            id,
            id_secret,
            cap,
            reports,
            next_gen: AtomicU64::new(1),
            state: Mutex::new(State::default()),
        };
        let store = Store { inner: Arc::new(inner) };
        scan::load(&store)?;
        Ok(store)
    }

    /// This chunkserver's id, from `DIR/VERSION`.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The secret that proves [`Store::id`] to the master, from `DIR/ID_SECRET`.
    pub fn id_secret(&self) -> &[u8; 32] {
        &self.inner.id_secret
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub(crate) fn dir(&self, finalized: bool) -> &Path {
        self.inner.dir(finalized)
    }

    pub(crate) fn remove_files(&self, finalized: bool, handle: u64) -> Result<()> {
        self.inner.remove_files(finalized, handle)
    }

    /// Records a replica found on disk at start-up.
    pub(crate) fn insert_loaded(&self, info: ReplicaInfo, corrupt: bool) {
        let mut st = self.inner.lock();
        st.used += info.length;
        let r = Replica {
            version: info.version,
            length: info.length,
            finalized: info.finalized,
            corrupt,
            writer: None,
        };
        if let Some(old) = st.replicas.insert(info.handle, r) {
            st.used -= old.length;
        }
        drop(st);
        if corrupt {
            self.inner.reports.corrupt(info.handle);
        }
    }

    /// The queue this store reports replica events to.
    pub fn reports(&self) -> &Arc<ReportQueue> {
        &self.inner.reports
    }

    /// Every replica that is not known corrupt, for a full report.
    pub fn list(&self) -> Vec<ReplicaInfo> {
        let st = self.inner.lock();
        let mut v: Vec<ReplicaInfo> = st
            .replicas
            .iter()
            .filter(|(_, r)| !r.corrupt)
            .map(|(&handle, r)| ReplicaInfo {
                handle,
                version: r.version,
                length: r.length,
                finalized: r.finalized,
            })
            .collect();
        v.sort_by_key(|r| r.handle);
        v
    }

    /// Handles of replicas known corrupt.
    pub fn corrupt(&self) -> Vec<u64> {
        let st = self.inner.lock();
        let mut v: Vec<u64> =
            st.replicas.iter().filter(|(_, r)| r.corrupt).map(|(&h, _)| h).collect();
        v.sort_unstable();
        v
    }

    /// Handles of finalized replicas not known corrupt, with their lengths (for the
    /// scrubber).
    pub fn finalized(&self) -> Vec<(u64, u64)> {
        let st = self.inner.lock();
        let mut v: Vec<(u64, u64)> = st
            .replicas
            .iter()
            .filter(|(_, r)| r.finalized && !r.corrupt)
            .map(|(&h, r)| (h, r.length))
            .collect();
        v.sort_unstable();
        v
    }

    /// The replica of `handle`, if one is stored and not known corrupt.
    pub fn get(&self, handle: u64) -> Option<ReplicaInfo> {
        let st = self.inner.lock();
        st.replicas.get(&handle).filter(|r| !r.corrupt).map(|r| ReplicaInfo {
            handle,
            version: r.version,
            length: r.length,
            finalized: r.finalized,
        })
    }

    /// Number of replicas held (any state).
    pub fn chunk_count(&self) -> u64 {
        self.inner.lock().replicas.len() as u64
    }

    /// Number of replicas being written right now.
    pub fn active_writes(&self) -> u32 {
        self.inner.lock().active_writes
    }

    /// Capacity, used and remaining bytes.
    ///
    /// If the file system cannot be queried, it is treated as having no free space
    /// rather than failing a heartbeat.
    pub fn space(&self) -> Space {
        let (fs_total, fs_avail) = fs_space(&self.inner.root).unwrap_or((0, 0));
        let st = self.inner.lock();
        space_of(self.inner.cap, fs_total, fs_avail, &st)
    }

    /// Starts writing a replica of `handle` at `version`, reserving `reserve` bytes.
    ///
    /// A replica being written of the same handle at `version` or older, a corrupt one,
    /// or a finalized one at an older version, is replaced.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if a finalized replica at `version` is stored,
    /// [`Error::NewerStored`] if any replica at a newer version is,
    /// [`Error::DiskFull`] if less than `reserve` bytes remain, [`Error::Io`] if the
    /// files cannot be created.
    pub fn create_rbw(&self, handle: u64, version: u64, reserve: u64) -> Result<RbwWriter> {
        let inner = &self.inner;
        let (fs_total, fs_avail) = fs_space(&inner.root)
            .map_err(|e| Error::io(format!("statvfs {}", inner.root.display()), e))?;
        let mut st = inner.lock();
        if let Some(old) = st.replicas.get(&handle).copied() {
            rules::may_write(handle, Some(old.held()), version)?;
            // A failed or older write of this chunk: the new one supersedes it (an active
            // writer of it notices through its generation).
            inner.remove_files(old.finalized, handle)?;
            st.replicas.remove(&handle);
            st.used -= old.length;
        }
        let space = space_of(inner.cap, fs_total, fs_avail, &st);
        if space.remaining < reserve {
            return Err(Error::DiskFull { need: reserve, remaining: space.remaining });
        }
        let data_path = inner.path(false, handle, "data");
        let meta_path = inner.path(false, handle, "meta");
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(p)
                .map_err(|e| Error::io(format!("create {}", p.display()), e))
        };
        let data = open(&data_path)?;
        let meta = open(&meta_path)?;
        let header = Header { handle, version, length: 0 };
        meta.write_all_at(&header.encode(), 0)
            .map_err(|e| Error::io(format!("write {}", meta_path.display()), e))?;
        let gen_ = inner.next_gen.fetch_add(1, Ordering::Relaxed);
        st.replicas.insert(
            handle,
            Replica { version, length: 0, finalized: false, corrupt: false, writer: Some(gen_) },
        );
        st.reserved += reserve;
        st.active_writes += 1;
        Ok(RbwWriter {
            inner: Arc::clone(inner),
            handle,
            version,
            gen_,
            data,
            meta,
            length: 0,
            flushed: 0,
            reserved: reserve,
            finished: false,
        })
    }

    /// Marks the replica of `handle` corrupt (it no longer matches what the master
    /// expects) and queues a `corrupt` report; a later write or copy replaces it.
    pub fn mark_corrupt(&self, handle: u64) {
        self.inner.mark_corrupt(handle);
    }

    /// Opens a replica for reading.
    ///
    /// # Errors
    /// [`Error::NotFound`] if no replica of `handle` is stored, [`Error::ReplicaCorrupt`]
    /// if it is known corrupt, [`Error::Io`] if its files cannot be opened.
    pub fn open_reader(&self, handle: u64) -> Result<ReplicaReader> {
        let inner = &self.inner;
        // Opening under the lock keeps a concurrent finalize (rename) or delete from
        // slipping between the lookup and the open; open file handles survive both.
        let st = inner.lock();
        let r = st.replicas.get(&handle).copied().ok_or(Error::NotFound { handle })?;
        if r.corrupt {
            return Err(Error::ReplicaCorrupt { handle });
        }
        let open = |ext: &str| {
            let p = inner.path(r.finalized, handle, ext);
            File::open(&p).map_err(|e| Error::io(format!("open {}", p.display()), e))
        };
        let data = open("data")?;
        let meta = open("meta")?;
        drop(st);
        Ok(ReplicaReader {
            inner: Arc::clone(inner),
            info: ReplicaInfo {
                handle,
                version: r.version,
                length: r.length,
                finalized: r.finalized,
            },
            data,
            meta,
        })
    }

    /// Deletes the replica of `handle` if it is not newer than the master's order names:
    /// a version below `version`, or `version` itself unless `rbw_only` and the replica
    /// is finalized. Queues a `deleted` report unless the replica was kept.
    ///
    /// # Errors
    /// [`Error::Io`] if a file cannot be removed.
    pub fn delete(&self, handle: u64, version: u64, rbw_only: bool) -> Result<Deleted> {
        let inner = &self.inner;
        let mut st = inner.lock();
        let outcome = match st.replicas.get(&handle).copied() {
            None => Deleted::Absent,
            Some(r) if !rules::delete_removes(r.held(), version, rbw_only) => {
                let info = ReplicaInfo {
                    handle,
                    version: r.version,
                    length: r.length,
                    finalized: r.finalized,
                };
                return Ok(Deleted::Kept(info));
            }
            Some(r) => {
                st.replicas.remove(&handle);
                st.used -= r.length;
                inner.remove_files(r.finalized, handle)?;
                Deleted::Removed
            }
        };
        drop(st);
        inner.reports.deleted(handle);
        Ok(outcome)
    }
}

fn space_of(cap: Option<u64>, fs_total: u64, fs_avail: u64, st: &State) -> Space {
    let (capacity, room) = match cap {
        Some(cap) => (cap, fs_avail.min(cap.saturating_sub(st.used))),
        None => (fs_total, fs_avail),
    };
    Space { capacity, used: st.used, remaining: room.saturating_sub(st.reserved) }
}

/// Total and available bytes of the file system holding `path`.
fn fs_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `s` points to writable memory of the
    // right type; statvfs only writes into it and we read it only on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let s = unsafe { s.assume_init() };
    // The field types differ between platforms (u32 on some 32-bit targets).
    #[allow(clippy::unnecessary_cast)]
    let (frsize, blocks, avail) = (s.f_frsize as u64, s.f_blocks as u64, s.f_bavail as u64);
    Ok((blocks * frsize, avail * frsize))
}

fn load_or_create_id(dir: &Path) -> Result<String> {
    let path = dir.join("VERSION");
    match fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim();
            if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(id.to_owned())
            } else {
                Err(Error::BadMeta {
                    path: path.display().to_string(),
                    reason: "expected a 16 hex digit chunkserver id".to_owned(),
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("{:016x}", rand::random::<u64>());
            let tmp = dir.join("VERSION.tmp");
            let write = || -> std::io::Result<()> {
                let mut f = File::create(&tmp)?;
                f.write_all(format!("{id}\n").as_bytes())?;
                f.sync_all()?;
                fs::rename(&tmp, &path)?;
                File::open(dir)?.sync_all()
            };
            write().map_err(|e| Error::io(format!("create {}", path.display()), e))?;
            Ok(id)
        }
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

/// Reads `DIR/ID_SECRET`, creating it (mode 0600, 32 random bytes in hex) if missing: the
/// proof of this chunkserver's id, which lives and dies with the id in the same directory.
fn load_or_create_id_secret(dir: &Path) -> Result<[u8; 32]> {
    use security::token::hex;
    let path = dir.join("ID_SECRET");
    match fs::read_to_string(&path) {
        Ok(s) => hex::decode::<32>(s.trim()).ok_or_else(|| Error::BadMeta {
            path: path.display().to_string(),
            reason: "expected 64 hex digits".to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret: [u8; 32] = rand::random();
            security::token::write_private(&path, &format!("{}\n", hex::encode(&secret)))
                .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
            Ok(secret)
        }
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use proto::checksum;

    use super::*;
    use crate::meta::HEADER_LEN;

    pub(crate) const MIB: u64 = 1 << 20;

    pub(crate) fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    pub(crate) fn open(dir: &Path, cap: Option<u64>) -> Store {
        Store::open(dir, cap, Arc::new(ReportQueue::new())).unwrap()
    }

    /// Writes `bytes` as packets of `per_packet` blocks and finalizes if asked.
    pub(crate) fn write(store: &Store, handle: u64, version: u64, bytes: &[u8], finalize: bool) {
        let mut w = store.create_rbw(handle, version, 64 * MIB).unwrap();
        for (i, piece) in bytes.chunks(2 * BLOCK_SIZE).enumerate() {
            let off = (i * 2 * BLOCK_SIZE) as u64;
            w.append(off, piece, &checksum::block_crcs(piece)).unwrap();
        }
        if finalize {
            let info = w.finalize().unwrap();
            assert_eq!(info.length, bytes.len() as u64);
        }
    }

    pub(crate) fn flip(path: &Path, at: u64) {
        let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        b[0] ^= 0x40;
        f.write_all_at(&b, at).unwrap();
    }

    #[test]
    fn round_trip_of_blocks_and_a_short_tail() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), None);
        let bytes = data(5 * BLOCK_SIZE + 1234, 7);
        write(&store, 0xab, 3, &bytes, true);
        let fin = dir.path().join("finalized");
        assert_eq!(
            fs::metadata(fin.join("00000000000000ab.data")).unwrap().len(),
            bytes.len() as u64
        );
        assert_eq!(
            fs::metadata(fin.join("00000000000000ab.meta")).unwrap().len(),
            HEADER_LEN + 4 * 6
        );
        let r = store.open_reader(0xab).unwrap();
        assert_eq!(
            r.info(),
            ReplicaInfo { handle: 0xab, version: 3, length: bytes.len() as u64, finalized: true }
        );
        let n = bytes.len() as u64;
        for (s, e) in [(0, n), (1, 2), (B - 10, 3 * B + 17), (5 * B, n), (n - 1, n), (n, n)] {
            assert_eq!(&r.read(s, e).unwrap()[..], &bytes[s as usize..e as usize], "{s}..{e}");
        }
        assert!(r.read(0, n + 1).is_err());
        let reports = store.reports().drain();
        assert_eq!(reports.received.len(), 1);
        // Reopening loads the same replica and keeps the id.
        let id = store.id().to_owned();
        drop((r, store));
        let store = open(dir.path(), None);
        assert_eq!(store.id(), id);
        assert_eq!(
            store.list(),
            vec![ReplicaInfo { handle: 0xab, version: 3, length: n, finalized: true }]
        );
        assert_eq!(&store.open_reader(0xab).unwrap().read(0, n).unwrap()[..], &bytes[..]);
    }
    #[test]
    fn a_damaged_meta_header_is_loaded_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), None);
        write(&store, 9, 1, &data(BLOCK_SIZE + 5, 2), true);
        write(&store, 10, 1, &data(100, 3), true);
        drop(store);
        flip(&dir.path().join("finalized/0000000000000009.meta"), 17);
        let store = open(dir.path(), None);
        assert_eq!(store.corrupt(), vec![9]);
        assert_eq!(store.list().iter().map(|r| r.handle).collect::<Vec<_>>(), vec![10]);
        assert_eq!(store.reports().drain().corrupt, vec![9]);
        assert!(store.open_reader(9).is_err());
        // The master's delete removes it.
        assert_eq!(store.delete(9, 1, false).unwrap(), Deleted::Removed);
        assert!(!dir.path().join("finalized/0000000000000009.meta").exists());
    }
    #[test]
    fn a_delete_never_removes_a_newer_replica() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), None);
        write(&store, 5, 2, &data(100, 1), true);
        let kept = ReplicaInfo { handle: 5, version: 2, length: 100, finalized: true };
        // A late delete of version 1 (the replica was recovered to 2 since).
        assert_eq!(store.delete(5, 1, false).unwrap(), Deleted::Kept(kept));
        // A delete of leftovers being written keeps a finalized replica of that version.
        assert_eq!(store.delete(5, 2, true).unwrap(), Deleted::Kept(kept));
        assert_eq!(store.list(), vec![kept]);
        write(&store, 6, 2, &data(100, 1), false);
        assert_eq!(store.delete(6, 2, true).unwrap(), Deleted::Removed);
        assert_eq!(store.delete(5, 2, false).unwrap(), Deleted::Removed);
        assert_eq!(store.delete(5, 2, false).unwrap(), Deleted::Absent);
        assert!(store.list().is_empty());
    }

    #[test]
    fn torn_rbw_keeps_the_verified_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), None);
        let bytes = data(4 * BLOCK_SIZE, 4);
        write(&store, 0x77, 2, &bytes, false);
        drop(store);
        let rbw = dir.path().join("rbw");
        // A torn write: block 2 half garbage, plus a partial block with no CRC at the end.
        flip(&rbw.join("0000000000000077.data"), 2 * B + 9);
        let f = OpenOptions::new().append(true).open(rbw.join("0000000000000077.data")).unwrap();
        f.write_all_at(&[1, 2, 3], 4 * B).unwrap();
        drop(f);
        let store = open(dir.path(), None);
        let want = ReplicaInfo { handle: 0x77, version: 2, length: 2 * B, finalized: false };
        assert_eq!(store.list(), vec![want]);
        assert_eq!(fs::metadata(rbw.join("0000000000000077.data")).unwrap().len(), 2 * B);
        assert_eq!(fs::metadata(rbw.join("0000000000000077.meta")).unwrap().len(), HEADER_LEN + 8);
        let r = store.open_reader(0x77).unwrap();
        assert_eq!(&r.read(0, 2 * B).unwrap()[..], &bytes[..2 * BLOCK_SIZE]);
        assert_eq!(store.space().used, 2 * B);
    }
}
