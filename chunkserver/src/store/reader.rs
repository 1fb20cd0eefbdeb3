//! [`ReplicaReader`]: verified range reads of one open replica. Whole blocks are read
//! with positioned I/O and checked against the stored CRCs, then the range is sliced out.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use proto::checksum::{self, ChecksumError};

use super::{B, Inner, ReplicaInfo, file_name};
use crate::error::{Error, Result};
use crate::meta;

/// An open replica, for verified reads; created by [`Store::open_reader`].
#[derive(Debug)]
pub struct ReplicaReader {
    pub(super) inner: Arc<Inner>,
    pub(super) info: ReplicaInfo,
    pub(super) data: File,
    pub(super) meta: File,
}

impl ReplicaReader {
    /// The replica as it was when opened (a replica being written may have grown since).
    pub fn info(&self) -> ReplicaInfo {
        self.info
    }

    /// Reads `start..end`, verifying every block it touches: whole blocks are read and
    /// checked, then the range is sliced out without copying.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the range is not within the replica,
    /// [`Error::Corrupt`] naming the first bad block (the replica is then marked corrupt
    /// and queued for the master), [`Error::ReplicaCorrupt`] if its files are too short.
    pub fn read(&self, start: u64, end: u64) -> Result<Bytes> {
        self.read_with_crcs(start, end).map(|(b, _)| b)
    }

    /// Reads and verifies the whole replica, a window at a time; on a mismatch the
    /// replica is marked corrupt (as any read does).
    ///
    /// # Errors
    /// As [`ReplicaReader::read`].
    pub fn verify_all(&self) -> Result<()> {
        const WINDOW: u64 = 64 * B;
        let mut pos = 0;
        while pos < self.info.length {
            let end = (pos + WINDOW).min(self.info.length);
            self.read(pos, end)?;
            pos = end;
        }
        Ok(())
    }

    /// As [`ReplicaReader::read`], also returning the stored CRCs of the blocks the range
    /// touches (for a block-aligned `start`, exactly the CRCs of the returned bytes'
    /// blocks), so a copy can be verified again where it lands.
    ///
    /// # Errors
    /// As [`ReplicaReader::read`].
    pub fn read_with_crcs(&self, start: u64, end: u64) -> Result<(Bytes, Vec<u32>)> {
        let h = self.info.handle;
        if start > end || end > self.info.length {
            return Err(Error::InvalidArgument(format!(
                "chunk {h:016x}: range {start}..{end} outside length {}",
                self.info.length
            )));
        }
        if start == end {
            return Ok((Bytes::new(), Vec::new()));
        }
        let first = start / B;
        let block_start = first * B;
        let block_end = end.div_ceil(B).saturating_mul(B).min(self.info.length);
        let mut buf = vec![0u8; (block_end - block_start) as usize];
        let short = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.inner.mark_corrupt(h);
                Error::ReplicaCorrupt { handle: h }
            } else {
                Error::io(format!("read chunk {h:016x}"), e)
            }
        };
        self.data.read_exact_at(&mut buf, block_start).map_err(short)?;
        let count = checksum::block_count(buf.len());
        let crcs = match meta::read_crcs(&self.meta, first, count, &file_name(h, "meta")) {
            Ok(c) => c,
            Err(Error::Io { source, .. }) => return Err(short(source)),
            Err(e) => return Err(e),
        };
        match checksum::verify(&buf, &crcs) {
            Ok(()) => {}
            Err(ChecksumError::Mismatch { block, .. }) => {
                self.inner.mark_corrupt(h);
                return Err(Error::Corrupt { handle: h, block: first + block as u64 });
            }
            Err(e @ ChecksumError::CountMismatch { .. }) => {
                // We sized `crcs` from `buf`, so this cannot happen.
                panic!("checksum count computed from the buffer itself: {e}") // faulty code
            }
        }
        let buf = Bytes::from(buf);
        Ok((buf.slice((start - block_start) as usize..(end - block_start) as usize), crcs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::checksum::BLOCK_SIZE;

    use crate::store::tests::{data, flip, open, write};

    #[test]
    fn a_flipped_data_byte_is_detected_and_names_its_block() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), None);
        let bytes = data(4 * BLOCK_SIZE, 1);
        write(&store, 5, 1, &bytes, true);
        flip(&dir.path().join("finalized/0000000000000005.data"), 2 * B + 100);
        let r = store.open_reader(5).unwrap();
        // Blocks before the damage still read fine.
        assert_eq!(&r.read(0, 2 * B).unwrap()[..], &bytes[..2 * BLOCK_SIZE]);
        match r.read(B + 1, 3 * B) {
            Err(Error::Corrupt { handle: 5, block: 2 }) => {}
            other => panic!("expected corruption in block 2, got {other:?}"),
        }
        assert_eq!(store.reports().drain().corrupt, vec![5]);
        assert!(matches!(store.open_reader(5), Err(Error::ReplicaCorrupt { handle: 5 })));
        assert_eq!(store.corrupt(), vec![5]);
        assert!(store.list().is_empty());
    }
}
