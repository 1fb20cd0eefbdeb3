//! [`RbwWriter`]: appends verified packets to a replica being written (`rbw/`), starts
//! write-back as it goes, and finalizes it (fsync, rename into `finalized/`).

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use proto::checksum;

use super::{B, Inner, ReplicaInfo};
use crate::error::{Error, Result};
use crate::meta::{self, Header};

/// Writes one replica; created by [`Store::create_rbw`].
///
/// Dropping it without [`RbwWriter::finalize`] leaves the replica in `rbw/` (a client
/// that disconnected mid-chunk; the master recovers it later) and releases the space
/// reservation.
#[derive(Debug)]
pub struct RbwWriter {
    pub(super) inner: Arc<Inner>,
    pub(super) handle: u64,
    pub(super) version: u64,
    pub(super) gen_: u64,
    pub(super) data: File,
    pub(super) meta: File,
    pub(super) length: u64,
    /// Bytes up to which write-back has been started (see [`RbwWriter::append`]).
    pub(super) flushed: u64,
    pub(super) reserved: u64,
    pub(super) finished: bool,
}

/// Start write-back of a replica's data every this many bytes.
const WRITE_BEHIND: u64 = 8 << 20;

impl RbwWriter {
    /// Bytes written so far.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The chunk being written.
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// Appends `data` at `offset` with its (already verified) block CRCs.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `offset` is not the current length, the current
    /// length is not on a block boundary, or the CRC count is wrong;
    /// [`Error::Superseded`] if a newer write or a delete replaced this replica;
    /// [`Error::Io`] if writing fails (see [`Error::is_no_space`]).
    pub fn append(&mut self, offset: u64, data: &[u8], crcs: &[u32]) -> Result<()> {
        let h = self.handle;
        if offset != self.length {
            return Err(Error::InvalidArgument(format!(
                "chunk {h:016x}: packet at offset {offset}, expected {}",
                self.length
            )));
        }
        if !offset.is_multiple_of(B) {
            return Err(Error::InvalidArgument(format!(
                "chunk {h:016x}: packet after a partial block at offset {offset}"
            )));
        }
        if crcs.len() != checksum::block_count(data.len()) {
            return Err(Error::InvalidArgument(format!(
                "chunk {h:016x}: {} checksums for {} bytes",
                crcs.len(),
                data.len()
            )));
        }
        if data.is_empty() {
            return Ok(());
        }
        self.data
            .write_all_at(data, offset)
            .map_err(|e| Error::io(format!("write chunk {h:016x} data"), e))?;
        self.meta
            .write_all_at(&meta::encode_crcs(crcs), meta::crc_offset(offset / B))
            .map_err(|e| Error::io(format!("write chunk {h:016x} meta"), e))?;
        let n = data.len() as u64;
        let mut st = self.inner.lock();
        let r = st.replicas.get_mut(&h).filter(|r| r.writer == Some(self.gen_));
        let Some(r) = r else {
            return Err(Error::Superseded { handle: h });
        };
        r.length += n;
        st.used += n;
        let consumed = n.min(self.reserved);
        self.reserved -= consumed;
        st.reserved -= consumed;
        drop(st);
        self.length += n;
        if self.length - self.flushed >= WRITE_BEHIND {
            self.write_behind();
        }
        Ok(())
    }

    /// Asks the kernel to start writing the data appended since the last call, without
    /// waiting (as HDFS's sync-behind-writes): the fsync at finalize then finds little
    /// left to do instead of stalling on a whole chunk of dirty pages.
    fn write_behind(&mut self) {
        let (start, len) = (self.flushed, self.length - self.flushed);
        // SAFETY: sync_file_range only reads its integer arguments; the fd is open for
        // as long as `self.data` lives.
        let rc = unsafe {
            libc::sync_file_range(
                self.data.as_raw_fd(),
                start as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc != 0 {
            // Only a hint: finalize's fsync still makes the data durable.
            tracing::debug!(cause = %std::io::Error::last_os_error(), "sync_file_range failed");
        }
        self.flushed = self.length;
    }

    /// Makes the replica durable and moves it to `finalized/`, queueing a report.
    ///
    /// # Errors
    /// [`Error::Io`] if a sync or rename fails, [`Error::Superseded`] if the replica
    /// was replaced meanwhile.
    pub fn finalize(mut self) -> Result<ReplicaInfo> {
        let h = self.handle;
        let info =
            ReplicaInfo { handle: h, version: self.version, length: self.length, finalized: true };
        let header = Header { handle: h, version: self.version, length: self.length };
        let io = |what: &str| {
            let what = format!("{what} chunk {h:016x}");
            move |e| Error::io(what, e)
        };
        self.meta.write_all_at(&header.encode(), 0).map_err(io("write header of"))?;
        self.data.sync_data().map_err(io("sync data of"))?;
        self.meta.sync_data().map_err(io("sync meta of"))?;
        let inner = Arc::clone(&self.inner);
        let mut st = inner.lock();
        match st.replicas.get(&h) {
            Some(r) if r.writer == Some(self.gen_) => {}
            _ => return Err(Error::Superseded { handle: h }),
        }
        // Meta first: a crash between the renames leaves finalized/H.meta (with the final
        // length) beside rbw/H.data, which start-up completes (see `scan`).
        for ext in ["meta", "data"] {
            let (from, to) = (inner.path(false, h, ext), inner.path(true, h, ext));
            fs::rename(&from, &to).map_err(|e| {
                Error::io(format!("rename {} to {}", from.display(), to.display()), e)
            })?;
        }
        if let Some(r) = st.replicas.get_mut(&h) {
            r.finalized = true;
            r.writer = None;
        }
        drop(st);
        self.finished = true;
        self.release();
        for d in [&inner.finalized, &inner.rbw] {
            File::open(d)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(format!("sync directory {}", d.display()), e))?;
        }
        inner.reports.received(info);
        Ok(info)
    }

    /// Removes the replica (a packet failed its checksum: nothing of it is kept).
    pub fn abort(mut self) {
        let mut st = self.inner.lock();
        if st.replicas.get(&self.handle).is_some_and(|r| r.writer == Some(self.gen_)) {
            if let Some(r) = st.replicas.remove(&self.handle) {
                st.used -= r.length;
            }
            if let Err(e) = self.inner.remove_files(false, self.handle) {
                tracing::warn!(cause = %e, "failed to remove aborted replica");
            }
        }
        drop(st);
        self.finished = true;
        self.release();
    }

    fn release(&mut self) {
        let mut st = self.inner.lock();
        st.reserved -= self.reserved;
        self.reserved = 0;
        st.active_writes -= 1;
        let mut left = None;
        if !self.finished {
            // Left for recovery: keep the replica, but no writer owns it any more.
            if let Some(r) =
                st.replicas.get_mut(&self.handle).filter(|r| r.writer == Some(self.gen_))
            {
                r.writer = None;
                left = Some(ReplicaInfo {
                    handle: self.handle,
                    version: r.version,
                    length: r.length,
                    finalized: false,
                });
            }
        }
        drop(st);
        self.finished = true;
        if let Some(info) = left {
            // Tell the master now rather than at the next full report: it knows whether
            // a recovery will claim this replica or it is garbage (a stale version, or a
            // leftover of a chunk finished without it).
            self.inner.reports.received(info);
        }
    }
}

impl Drop for RbwWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{MIB, data, open, write};

    #[test]
    fn capacity_accounting_reserves_and_releases() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), Some(10 * MIB));
        let s = store.space();
        assert_eq!((s.capacity, s.used), (10 * MIB, 0));
        assert!(s.remaining <= 10 * MIB);
        let mut w = store.create_rbw(1, 1, 4 * MIB).unwrap();
        assert_eq!(store.active_writes(), 1);
        match store.create_rbw(2, 1, 8 * MIB) {
            Err(e @ Error::DiskFull { need, .. }) => {
                assert_eq!(need, 8 * MIB);
                assert_eq!(e.code(), tonic::Code::ResourceExhausted);
            }
            other => panic!("expected disk full, got {other:?}"),
        }
        let piece = data(MIB as usize, 5);
        w.append(0, &piece, &checksum::block_crcs(&piece)).unwrap();
        let s = store.space();
        assert_eq!(s.used, MIB);
        // 10 MiB cap - 1 MiB used - 3 MiB still reserved (assuming the disk has 10 MiB free).
        assert_eq!(s.remaining, 6 * MIB);
        w.finalize().unwrap();
        assert_eq!(store.space().remaining, 9 * MIB);
        assert_eq!(store.active_writes(), 0);
        assert_eq!(store.delete(1, 1, false).unwrap(), crate::store::Deleted::Removed);
        assert_eq!(store.space().used, 0);
        assert_eq!(store.reports().drain().deleted, vec![1]);
    }
    #[test]
    fn versions_decide_whether_a_write_may_replace_a_replica() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), None);
        write(&store, 4, 2, &data(100, 6), true);
        assert!(matches!(store.create_rbw(4, 2, 0), Err(Error::AlreadyExists { version: 2, .. })));
        // A newer version replaces it; an unfinished write of it is replaced too.
        let w = store.create_rbw(4, 3, 0).unwrap();
        assert!(!dir.path().join("finalized/0000000000000004.data").exists());
        let mut w2 = store.create_rbw(4, 3, 0).unwrap();
        let mut w = w;
        assert!(matches!(w.append(0, &[1], &[checksum::crc(&[1])]), Err(Error::Superseded { .. })));
        drop(w);
        w2.append(0, &[2], &[checksum::crc(&[2])]).unwrap();
        // A frozen node's queued write of an older version never replaces a newer one,
        // finished or not.
        assert!(matches!(
            store.create_rbw(4, 2, 0),
            Err(Error::NewerStored { stored: 3, requested: 2, .. })
        ));
        w2.finalize().unwrap();
        assert!(matches!(store.create_rbw(4, 1, 0), Err(Error::NewerStored { .. })));
        assert_eq!(
            store.list(),
            vec![ReplicaInfo { handle: 4, version: 3, length: 1, finalized: true }]
        );
        assert_eq!(store.active_writes(), 0);
    }
    #[test]
    fn appends_must_be_contiguous_and_aligned() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), None);
        let mut w = store.create_rbw(8, 1, 0).unwrap();
        let tail = data(10, 0);
        assert!(w.append(5, &tail, &checksum::block_crcs(&tail)).is_err());
        assert!(w.append(0, &tail, &[]).is_err());
        w.append(0, &tail, &checksum::block_crcs(&tail)).unwrap();
        assert!(w.append(10, &tail, &checksum::block_crcs(&tail)).is_err());
        w.abort();
        assert!(store.list().is_empty());
        assert!(!dir.path().join("rbw/0000000000000008.data").exists());
    }
}
