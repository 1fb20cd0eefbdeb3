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

/// Reads a LEB128 varint at `*pos`, advancing it; `None` if the bytes end first, it is
/// longer than 10 bytes or it does not fit in 64 bits.
#[inline]
pub fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)?;
        // The tenth byte holds the 64th bit only: anything more would be dropped.
        if shift == 63 && b > 1 {
            return None;
        }
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
    /// [`Error::Io`] if the file cannot be opened, [`Error::Corrupt`] if it ends before
    /// the segment does (a damaged index): reading trusts `len` for its buffer sizes.
    pub fn open(path: &Path, offset: u64, len: u64) -> Result<FileRun> {
        let what = path.display().to_string();
        let mut file = File::open(path).map_err(Error::io(format!("cannot open {what}")))?;
        let file_len = file.metadata().map_err(Error::io(format!("cannot stat {what}")))?.len();
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(Error::Corrupt(format!(
                "segment of {len} bytes at {offset} runs past the end of {what} ({file_len} bytes)"
            )));
        }
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
                // Checked before filling: the lengths are the run's word, not a promise.
                let have = (r.buf.len() - r.pos) as u64 + r.left;
                let need =
                    (k as u64).checked_add(v as u64).and_then(|n| n.checked_add(header as u64));
                let Some(need) = need.filter(|&n| n <= have) else {
                    return Err(Error::Corrupt(format!(
                        "a record in {} runs past the end of its run",
                        r.what
                    )));
                };
                r.fill(need as usize)?;
                let start = r.pos + header;
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

    /// Found by `varints_never_drop_bits`: a tenth byte of 2 was shifted out and the
    /// varint read as 0.
    #[test]
    fn a_varint_past_64_bits_is_refused() {
        let mut bytes = vec![0x80; 9];
        bytes.push(0x02);
        assert_eq!(get_varint(&bytes, &mut 0), None);
        bytes[9] = 0x01;
        assert_eq!(get_varint(&bytes, &mut 0), Some(1 << 63));
    }

    /// Found by `hostile_runs_read_the_same_everywhere_and_allocate_little`: a record
    /// claiming a key of 2^64 - 1 bytes overflowed `header + key + value` (a panic in
    /// debug builds), and a segment length past the end of its file let a record's
    /// length size the read buffer.
    #[test]
    fn lengths_past_the_end_are_corrupt_in_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        let mut data = Vec::new();
        put_varint(&mut data, u64::MAX);
        put_varint(&mut data, 1);
        std::fs::write(&path, &data).unwrap();
        let mut r = Run::File(FileRun::open(&path, 0, data.len() as u64).unwrap());
        assert!(matches!(r.advance(), Err(Error::Corrupt(_))));
        assert!(matches!(FileRun::open(&path, 0, 1 << 40), Err(Error::Corrupt(_))));
        assert!(matches!(FileRun::open(&path, u64::MAX, 2), Err(Error::Corrupt(_))));
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

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use proptest::sample::Index;
    use proto::alloc_probe::largest_allocation;

    use super::*;

    /// Key and value pairs.
    type Records = Vec<(Vec<u8>, Vec<u8>)>;

    fn records() -> impl Strategy<Value = Records> {
        let bytes = || prop::collection::vec(any::<u8>(), 0..300);
        prop::collection::vec((bytes(), bytes()), 0..12)
    }

    fn run_bytes(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            put_record(&mut out, k, v);
        }
        out
    }

    /// Reads a run to its end or first error.
    fn read_all(mut run: Run) -> (Records, Result<()>) {
        let mut out = Vec::new();
        loop {
            match run.advance() {
                Ok(true) => out.push((run.key().to_vec(), run.value().to_vec())),
                Ok(false) => return (out, Ok(())),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    /// The run `bytes` as a segment of a file, behind some bytes of another segment.
    fn file_run(dir: &Path, bytes: &[u8], segment_len: u64) -> Run {
        let path = dir.join("run");
        let mut file = b"other".to_vec();
        file.extend_from_slice(bytes);
        std::fs::write(&path, file).expect("write");
        Run::File(FileRun::open(&path, 5, segment_len).expect("open"))
    }

    /// Runs as they may reach a reducer: random, or valid ones flipped, cut, extended, or
    /// with a record whose key or value length claims far more bytes than there are.
    fn hostile() -> impl Strategy<Value = Vec<u8>> {
        let huge =
            prop_oneof![Just(1u64 << 40), Just(u64::MAX), Just(1 << 32), 1u64 << 20..1 << 62];
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            (records(), any::<Index>(), 0..8u8).prop_map(|(r, at, bit)| {
                let mut b = run_bytes(&r);
                if !b.is_empty() {
                    let i = at.index(b.len());
                    b[i] ^= 1 << bit;
                }
                b
            }),
            (records(), any::<Index>()).prop_map(|(r, at)| {
                let mut b = run_bytes(&r);
                b.truncate(at.index(b.len() + 1));
                b
            }),
            (records(), huge, any::<bool>(), prop::collection::vec(any::<u8>(), 0..32)).prop_map(
                |(r, len, in_key, tail)| {
                    let mut b = run_bytes(&r);
                    put_varint(&mut b, if in_key { len } else { 1 });
                    put_varint(&mut b, if in_key { 1 } else { len });
                    b.extend(tail);
                    b
                }
            ),
            // Eleven-byte varints, and a tenth byte carrying more than the 64th bit.
            (
                records(),
                prop_oneof![Just(vec![0xffu8; 11]), Just([&[0xffu8; 9][..], &[0x7f]].concat())]
            )
                .prop_map(|(r, v)| {
                    let mut b = run_bytes(&r);
                    b.extend(v);
                    b.extend([1, 2, 3]);
                    b
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn varints_round_trip(v in any::<u64>(), junk in prop::collection::vec(any::<u8>(), 0..4)) {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let end = b.len();
            b.extend(junk);
            let mut pos = 0;
            prop_assert_eq!(get_varint(&b, &mut pos), Some(v));
            prop_assert_eq!(pos, end);
        }

        /// A varint decodes only from its one encoding (or an overlong one of the same
        /// value): never to a value some of whose bits were dropped.
        #[test]
        fn varints_never_drop_bits(bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..12),
            (prop::collection::vec(0x80u8..=0xff, 9), any::<u8>()).prop_map(|(mut b, last)| { b.push(last); b }),
        ]) {
            let mut pos = 0;
            if let Some(v) = get_varint(&bytes, &mut pos) {
                // Re-reading the bytes as a number of up to 70 bits gives the same value.
                let wide = bytes[..pos].iter().rev().fold(0u128, |acc, b| acc << 7 | u128::from(b & 0x7f));
                prop_assert_eq!(u128::from(v), wide);
            }
        }

        #[test]
        fn runs_round_trip_in_memory_and_in_files(records in records()) {
            let bytes = run_bytes(&records);
            let dir = tempfile::tempdir().expect("tempdir");
            let (mem, mem_end) = read_all(Run::Mem(MemRun::new(Bytes::from(bytes.clone()))));
            let (file, file_end) = read_all(file_run(dir.path(), &bytes, bytes.len() as u64));
            prop_assert!(mem_end.is_ok() && file_end.is_ok());
            prop_assert_eq!(&mem, &records);
            prop_assert_eq!(&file, &records);
        }

        /// Hostile runs never panic, never make a reader allocate for a length the run
        /// cannot hold, and read the same in memory and from a file: the same records,
        /// then the same end or a `Corrupt` error.
        #[test]
        fn hostile_runs_read_the_same_everywhere_and_allocate_little(bytes in hostile(), claim in prop_oneof![Just(0u64), Just(1 << 40)]) {
            let dir = tempfile::tempdir().expect("tempdir");
            let ((mem, mem_end), mem_alloc) =
                largest_allocation(|| read_all(Run::Mem(MemRun::new(Bytes::from(bytes.clone())))));
            prop_assert!(mem_alloc <= 4096 + 2 * bytes.len(), "in memory: {} allocated {}", bytes.len(), mem_alloc);
            // A segment length past the end of the file (a damaged index) is refused.
            let path = dir.path().join("run");
            std::fs::write(&path, &bytes).expect("write");
            if claim > 0 {
                prop_assert!(matches!(FileRun::open(&path, 0, claim), Err(Error::Corrupt(_))));
            }
            let ((file, file_end), file_alloc) = largest_allocation(|| {
                read_all(Run::File(FileRun::open(&path, 0, bytes.len() as u64).expect("open")))
            });
            prop_assert!(file_alloc <= (2 << 20) + 2 * bytes.len(), "from a file: {} allocated {}", bytes.len(), file_alloc);
            prop_assert_eq!(mem, file);
            prop_assert_eq!(mem_end.is_ok(), file_end.is_ok());
            for e in [mem_end, file_end] {
                prop_assert!(matches!(e, Ok(()) | Err(Error::Corrupt(_))), "{:?}", e);
            }
        }
    }
}
