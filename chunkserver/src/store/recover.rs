//! Taking over a replica that another writer left: resuming it in a recovered pipeline
//! ([`Store::resume_rbw`]), and settling it in lease recovery ([`Store::recover_replica`]
//! then [`Store::settle`]).
//!
//! The old writer is *fenced* rather than killed: the replica gets a new writer
//! generation, and the old writer's next append or finalize fails as superseded. A
//! resume first waits (bounded) for the old writer to let go, so its last write does not
//! land after the truncation.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use proto::checksum;

use super::{B, RbwWriter, ReplicaInfo, Store, rules, scan};
use crate::error::{Error, Result};
use crate::meta::{self, HEADER_LEN, Header};

/// How often a resume checks whether the old writer let go.
const WRITER_POLL: Duration = Duration::from_millis(10);

fn open_rw(p: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .map_err(|e| Error::io(format!("open {}", p.display()), e))
}

fn sync(f: &File, p: &Path) -> Result<()> {
    f.sync_data().map_err(|e| Error::io(format!("sync {}", p.display()), e))
}

impl Store {
    /// Waits up to `wait` until no writer owns `handle`'s replica.
    fn wait_for_writer(&self, handle: u64, wait: Duration) {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let busy = self.inner.lock().replicas.get(&handle).is_some_and(|r| r.writer.is_some());
            if !busy {
                return;
            }
            std::thread::sleep(WRITER_POLL);
        }
    }

    /// Pipeline recovery: continues writing `handle` at `version` from byte `offset`,
    /// which this replica already holds (at an older version, being written or even
    /// finalized). The replica is cut to `offset`, restamped and reopened for appends;
    /// `reserve` more bytes are reserved. Waits up to `wait` for an old writer to finish.
    ///
    /// # Errors
    /// [`Error::NotFound`] without a replica; [`Error::InvalidArgument`] if it holds
    /// fewer than `offset` bytes, `offset` is not on a block boundary or the replica is
    /// newer than `version`; I/O errors.
    pub fn resume_rbw(
        &self,
        handle: u64,
        version: u64,
        offset: u64,
        reserve: u64,
        wait: Duration,
    ) -> Result<RbwWriter> {
        let h = handle;
        if !offset.is_multiple_of(B) {
            return Err(Error::InvalidArgument(format!(
                "chunk {h:016x}: resume offset {offset} is not on a block boundary"
            )));
        }
        self.wait_for_writer(h, wait);
        let inner = &self.inner;
        let mut st = inner.lock();
        let r = st.replicas.get(&h).copied().ok_or(Error::NotFound { handle: h })?;
        rules::may_resume(h, r.held(), version)?;
        if r.corrupt || r.length < offset || r.version > version {
            return Err(Error::InvalidArgument(format!(
                "chunk {h:016x}: cannot resume at {offset} bytes version {version}: replica holds {} bytes at version {}{}",
                r.length,
                r.version,
                if r.corrupt { " and is corrupt" } else { "" }
            )));
        }
        if r.finalized {
            // The last packet reached this node but its ack did not reach the client.
            for ext in ["meta", "data"] {
                let (from, to) = (inner.path(true, h, ext), inner.path(false, h, ext));
                fs::rename(&from, &to).map_err(|e| {
                    Error::io(format!("rename {} to {}", from.display(), to.display()), e)
                })?;
            }
        }
        let (data_path, meta_path) = (inner.path(false, h, "data"), inner.path(false, h, "meta"));
        let data = open_rw(&data_path)?;
        let meta = open_rw(&meta_path)?;
        data.set_len(offset)
            .map_err(|e| Error::io(format!("truncate {}", data_path.display()), e))?;
        meta.set_len(meta::crc_offset(offset / B))
            .map_err(|e| Error::io(format!("truncate {}", meta_path.display()), e))?;
        meta.write_all_at(&Header { handle: h, version, length: 0 }.encode(), 0)
            .map_err(|e| Error::io(format!("write {}", meta_path.display()), e))?;
        let gen_ = inner.next_gen.fetch_add(1, Ordering::Relaxed);
        st.used -= r.length - offset;
        if let Some(rep) = st.replicas.get_mut(&h) {
            rep.version = version;
            rep.length = offset;
            rep.finalized = false;
            rep.writer = Some(gen_);
        }
        st.reserved += reserve;
        st.active_writes += 1;
        Ok(RbwWriter {
            inner: Arc::clone(inner),
            handle: h,
            version,
            gen_,
            data,
            meta,
            length: offset,
            flushed: offset,
            reserved: reserve,
            finished: false,
        })
    }

    /// Lease recovery, step 1: fences any writer of `handle`, makes the replica durable,
    /// cuts a replica being written to the longest prefix that verifies and stamps it with
    /// `new_version`. Returns its length and whether it was already finalized.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::ReplicaCorrupt`], I/O or meta errors.
    pub fn recover_replica(&self, handle: u64, new_version: u64) -> Result<ReplicaInfo> {
        let h = handle;
        let inner = &self.inner;
        let r = {
            let mut st = inner.lock();
            let r = st.replicas.get(&h).copied().ok_or(Error::NotFound { handle: h })?;
            if r.corrupt {
                return Err(Error::ReplicaCorrupt { handle: h });
            }
            if !r.finalized {
                // Fence: the old writer's next append or finalize fails as superseded.
                let fence = inner.next_gen.fetch_add(1, Ordering::Relaxed);
                if let Some(rep) = st.replicas.get_mut(&h) {
                    rep.writer = Some(fence);
                }
            }
            r
        };
        let (length, finalized) = if r.finalized {
            (r.length, true)
        } else {
            let (_, length) = scan::verified_prefix(&inner.rbw, h)?;
            (length, false)
        };
        let meta_path = inner.path(finalized, h, "meta");
        let data_path = inner.path(finalized, h, "data");
        let meta = open_rw(&meta_path)?;
        let stamped =
            Header { handle: h, version: new_version, length: if finalized { length } else { 0 } };
        meta.write_all_at(&stamped.encode(), 0)
            .map_err(|e| Error::io(format!("write {}", meta_path.display()), e))?;
        sync(&open_rw(&data_path)?, &data_path)?;
        sync(&meta, &meta_path)?;
        let mut st = inner.lock();
        st.used = st.used - r.length + length;
        if let Some(rep) = st.replicas.get_mut(&h) {
            rep.version = new_version;
            rep.length = length;
            rep.writer = None;
        }
        Ok(ReplicaInfo { handle: h, version: new_version, length, finalized })
    }

    /// Lease recovery, step 2: cuts the replica to `length` (recomputing the CRC of a
    /// block the cut splits), stamps `version`, makes it durable, finalizes it and queues
    /// a `received` report.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::InvalidArgument`] if it holds fewer bytes; I/O errors.
    pub fn settle(&self, handle: u64, version: u64, length: u64) -> Result<ReplicaInfo> {
        let h = handle;
        let inner = &self.inner;
        let mut st = inner.lock();
        let r = st.replicas.get(&h).copied().ok_or(Error::NotFound { handle: h })?;
        rules::may_settle(h, r.held(), version)?;
        if r.corrupt || r.length < length {
            return Err(Error::InvalidArgument(format!(
                "chunk {h:016x}: cannot settle at {length} bytes: replica holds {}",
                r.length
            )));
        }
        let fin = r.finalized;
        let (data_path, meta_path) = (inner.path(fin, h, "data"), inner.path(fin, h, "meta"));
        let data = open_rw(&data_path)?;
        let meta = open_rw(&meta_path)?;
        data.set_len(length)
            .map_err(|e| Error::io(format!("truncate {}", data_path.display()), e))?;
        let blocks = checksum::block_count(length as usize) as u64;
        meta.set_len(HEADER_LEN + 4 * blocks)
            .map_err(|e| Error::io(format!("truncate {}", meta_path.display()), e))?;
        if !length.is_multiple_of(B) && length < r.length {
            let start = (blocks - 1) * B;
            let mut tail = vec![0u8; (length - start) as usize];
            data.read_exact_at(&mut tail, start)
                .map_err(|e| Error::io(format!("read {}", data_path.display()), e))?;
            meta.write_all_at(&checksum::crc(&tail).to_le_bytes(), meta::crc_offset(blocks - 1))
                .map_err(|e| Error::io(format!("write {}", meta_path.display()), e))?;
        }
        meta.write_all_at(&Header { handle: h, version, length }.encode(), 0)
            .map_err(|e| Error::io(format!("write {}", meta_path.display()), e))?;
        sync(&data, &data_path)?;
        sync(&meta, &meta_path)?;
        if !fin {
            for ext in ["meta", "data"] {
                let (from, to) = (inner.path(false, h, ext), inner.path(true, h, ext));
                fs::rename(&from, &to).map_err(|e| {
                    Error::io(format!("rename {} to {}", from.display(), to.display()), e)
                })?;
            }
        }
        st.used = st.used - r.length + length;
        if let Some(rep) = st.replicas.get_mut(&h) {
            rep.version = version;
            rep.length = length;
            rep.finalized = true;
            rep.writer = None;
        }
        drop(st);
        for d in [&inner.finalized, &inner.rbw] {
            File::open(d)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(format!("sync directory {}", d.display()), e))?;
        }
        let info = ReplicaInfo { handle: h, version, length, finalized: true };
        inner.reports.received(info);
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proto::checksum::BLOCK_SIZE;

    use super::*;
    use crate::store::tests::{data, open, write};

    #[test]
    fn a_resumed_replica_continues_at_the_new_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), None);
        let bytes = data(3 * BLOCK_SIZE, 9);
        write(&store, 7, 1, &bytes, false);
        let mut w = store.resume_rbw(7, 2, 2 * B, 0, Duration::ZERO).unwrap();
        assert_eq!(w.length(), 2 * B);
        let tail = data(100, 3);
        w.append(2 * B, &tail, &checksum::block_crcs(&tail)).unwrap();
        let info = w.finalize().unwrap();
        assert_eq!((info.version, info.length), (2, 2 * B + 100));
        let r = store.open_reader(7).unwrap();
        assert_eq!(&r.read(0, 2 * B).unwrap()[..], &bytes[..2 * BLOCK_SIZE]);
        // Cannot resume past what it holds, nor go back in version.
        assert!(store.resume_rbw(7, 3, 4 * B, 0, Duration::ZERO).is_err());
        assert!(store.resume_rbw(7, 1, 0, 0, Duration::ZERO).is_err());
        // A finalized replica is never reopened at its own version (a rogue resume)...
        assert!(matches!(
            store.resume_rbw(7, 2, B, 0, Duration::ZERO),
            Err(Error::Finalized { stored: 2, requested: 2, .. })
        ));
        assert_eq!(store.list()[0].length, 2 * B + 100, "untouched");
        // ...only by a pipeline recovery at a newer version (its ack was lost).
        let w = store.resume_rbw(7, 3, B, 0, Duration::ZERO).unwrap();
        drop(w);
        assert_eq!(store.list()[0].length, B);
    }

    #[test]
    fn recovery_settles_on_the_agreed_length() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), None);
        let bytes = data(2 * BLOCK_SIZE + 500, 4);
        write(&store, 5, 1, &bytes, false);
        let info = store.recover_replica(5, 2).unwrap();
        assert_eq!((info.length, info.finalized, info.version), (bytes.len() as u64, false, 2));
        // Another replica held less: settle on a cut inside the last block.
        let cut = 2 * B + 100;
        store.settle(5, 2, cut).unwrap();
        let r = store.open_reader(5).unwrap();
        assert_eq!(r.info(), ReplicaInfo { handle: 5, version: 2, length: cut, finalized: true });
        assert_eq!(&r.read(0, cut).unwrap()[..], &bytes[..cut as usize]);
        drop((r, store));
        // And it survives a restart as a finalized replica.
        let store = open(dir.path(), None);
        assert_eq!(
            store.list(),
            vec![ReplicaInfo { handle: 5, version: 2, length: cut, finalized: true }]
        );
        assert!(store.settle(5, 2, cut + 1).is_err());
        // A finalized replica is never cut by an order for another version.
        assert!(matches!(store.settle(5, 3, 0), Err(Error::Finalized { .. })));
        assert_eq!(store.list()[0].length, cut);
        assert!(store.recover_replica(6, 2).is_err());
    }
}
