//! Sorted runs: the record framing shared by map spills, map output files, shuffled
//! segments and reduce-side spills, and readers over runs in memory or in a file.
//!
//! A run is a sequence of records `varint(key len) varint(value len) key value`, sorted
//! by key bytes. Keys are already order-preserving encodings ([`crate::key`]), so every
//! consumer compares them with `memcmp`; values are opaque.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;

use bytes::Bytes;

use crate::error::{Error, Result};

/// Appends `v` as a LEB128 varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint at `*pos`, advancing it; `None` if the bytes end first or it is
/// longer than 10 bytes.
#[inline]
pub fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// The first 8 bytes of `key` as a big-endian integer, zero-padded: comparing prefixes
/// orders keys as `memcmp` does whenever they differ, so sorts and merges compare the
/// key bytes only on a tie.
#[inline]
pub fn key_prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// Appends one record.
#[inline]
pub fn put_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    put_varint(out, key.len() as u64);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// Parses the record at `*pos` of `buf`: `Ok(Some((key range, value range)))`, advancing
/// `*pos` past it; `Ok(None)` at the end; an error if the record is cut short.
#[inline]
pub fn parse_record(buf: &[u8], pos: &mut usize) -> Result<Option<(Range<usize>, Range<usize>)>> {
    if *pos >= buf.len() {
        return Ok(None);
    }
    let bad = || Error::Corrupt(format!("truncated record at byte {pos} of a run", pos = *pos));
    let mut p = *pos;
    let k = get_varint(buf, &mut p).ok_or_else(bad)? as usize;
    let v = get_varint(buf, &mut p).ok_or_else(bad)? as usize;
    let end = p.checked_add(k).and_then(|x| x.checked_add(v)).ok_or_else(bad)?;
    if end > buf.len() {
        return Err(bad());
    }
    *pos = end;
    Ok(Some((p..p + k, p + k..end)))
}

/// A run held in memory.
#[derive(Debug)]
pub struct MemRun {
    data: Bytes,
    pos: usize,
    key: Range<usize>,
    value: Range<usize>,
}

impl MemRun {
    /// A run over `data`, positioned before its first record.
    pub fn new(data: Bytes) -> MemRun {
        MemRun { data, pos: 0, key: 0..0, value: 0..0 }
    }
}

/// A run stored in (a segment of) a local file, read through a buffer.
#[derive(Debug)]
pub struct FileRun {
    file: File,
    /// Bytes of the segment not yet read into `buf`.
    left: u64,
    buf: Vec<u8>,
    /// Start of the unconsumed part of `buf`.
    pos: usize,
    key: Range<usize>,
    value: Range<usize>,
    what: String,
}

/// Buffer size of file-backed runs.
const FILE_BUF: usize = 1 << 20;

impl FileRun {
    /// A run over `len` bytes of `path` starting at `offset`.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be opened.
    pub fn open(path: &Path, offset: u64, len: u64) -> Result<FileRun> {
        let what = path.display().to_string();
        let mut file = File::open(path).map_err(Error::io(format!("cannot open {what}")))?;
        file.seek(SeekFrom::Start(offset)).map_err(Error::io(format!("cannot seek {what}")))?;
        Ok(FileRun { file, left: len, buf: Vec::new(), pos: 0, key: 0..0, value: 0..0, what })
    }

    /// Makes at least `need` unconsumed bytes available if the segment has them.
    fn fill(&mut self, need: usize) -> Result<()> {
        let have = self.buf.len() - self.pos;
        if have >= need || self.left == 0 {
            return Ok(());
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        let want = need.max(FILE_BUF) - self.buf.len();
        let take = (want as u64).min(self.left) as usize;
        let old = self.buf.len();
        self.buf.resize(old + take, 0);
        if let Err(e) = self.file.read_exact(&mut self.buf[old..]) {
            return Err(Error::io(format!("cannot read {}", self.what))(e));
        }
        self.left -= take as u64;
        Ok(())
    }
}

/// A sorted run being read: in memory or in a local file.
#[derive(Debug)]
pub enum Run {
    /// Held in memory (a fetched segment, a sorted buffer).
    Mem(MemRun),
    /// Read from local disk.
    File(FileRun),
}

impl Run {
    /// Moves to the next record; false at the end of the run.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a truncated record, [`Error::Io`] for a read error.
    pub fn advance(&mut self) -> Result<bool> {
        match self {
            Run::Mem(r) => match parse_record(&r.data, &mut r.pos)? {
                Some((k, v)) => {
                    r.key = k;
                    r.value = v;
                    Ok(true)
                }
                None => Ok(false),
            },
            Run::File(r) => {
                r.fill(20)?;
                let mut p = r.pos;
                if p >= r.buf.len() {
                    return Ok(false);
                }
                let bad = || Error::Corrupt(format!("truncated record in {}", r.what));
                let k = get_varint(&r.buf, &mut p).ok_or_else(bad)? as usize;
                let v = get_varint(&r.buf, &mut p).ok_or_else(bad)? as usize;
                let header = p - r.pos;
                r.fill(header + k + v)?;
                let start = r.pos + header;
                if start + k + v > r.buf.len() {
                    return Err(Error::Corrupt(format!("truncated record in {}", r.what)));
                }
                r.key = start..start + k;
                r.value = start + k..start + k + v;
                r.pos = start + k + v;
                Ok(true)
            }
        }
    }

    /// Key of the current record (valid after `advance` returned true).
    #[inline]
    pub fn key(&self) -> &[u8] {
        match self {
            Run::Mem(r) => &r.data[r.key.clone()],
            Run::File(r) => &r.buf[r.key.clone()],
        }
    }

    /// Value of the current record.
    #[inline]
    pub fn value(&self) -> &[u8] {
        match self {
            Run::Mem(r) => &r.data[r.value.clone()],
            Run::File(r) => &r.buf[r.value.clone()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        let mut buf = Vec::new();
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            put_varint(&mut buf, v);
        }
        let mut pos = 0;
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(get_varint(&buf, &mut pos), Some(v));
        }
        assert_eq!(get_varint(&buf, &mut pos), None);
    }

    #[test]
    fn memory_and_file_runs_read_the_same() {
        let mut data = Vec::new();
        let big = vec![7u8; 3 << 20];
        put_record(&mut data, b"a", b"1");
        put_record(&mut data, b"b", &big);
        put_record(&mut data, b"c", b"");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        let mut file = b"junk".to_vec();
        file.extend_from_slice(&data);
        std::fs::write(&path, &file).unwrap();
        let runs = [
            Run::Mem(MemRun::new(Bytes::from(data.clone()))),
            Run::File(FileRun::open(&path, 4, data.len() as u64).unwrap()),
        ];
        for mut r in runs {
            assert!(r.advance().unwrap());
            assert_eq!((r.key(), r.value()), (&b"a"[..], &b"1"[..]));
            assert!(r.advance().unwrap());
            assert_eq!(r.key(), b"b");
            assert_eq!(r.value().len(), 3 << 20);
            assert!(r.advance().unwrap());
            assert_eq!((r.key(), r.value()), (&b"c"[..], &b""[..]));
            assert!(!r.advance().unwrap());
        }
    }

    #[test]
    fn truncated_runs_are_corrupt() {
        let mut data = Vec::new();
        put_record(&mut data, b"key", b"value");
        data.pop();
        let mut r = Run::Mem(MemRun::new(Bytes::from(data)));
        assert!(matches!(r.advance(), Err(Error::Corrupt(_))));
    }
}
