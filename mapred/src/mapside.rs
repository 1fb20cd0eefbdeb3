//! The map side of the shuffle: collecting emitted pairs in a bounded buffer, sorting
//! them by (partition, key), spilling sorted runs to local disk, and merging the spills
//! into one output file per attempt with a partition index.
//!
//! Two buffers, chosen by whether the job has a combiner:
//!
//! - [`SortBuffer`] (no combiner): keys and values are encoded straight into one byte
//!   arena and described by a fixed 24-byte index entry holding the partition, offsets and
//!   the key's first 8 bytes as a big-endian integer. Sorting is `sort_unstable_by` over
//!   the index: most comparisons are decided by (partition, prefix) without touching the
//!   arena, the rest by `memcmp` of the key bytes. No allocation per record.
//! - [`CombineBuffer`] (with a combiner): a hash table from encoded key (in the arena) to
//!   the folded value, so each emitted pair costs one hash probe and one fold; only the
//!   distinct keys are sorted at spill time. For word count this is what makes the map
//!   side cheap: millions of words, tens of thousands of distinct keys.
//!
//! When a buffer reaches its limit (`mapred.sort.mb`) it spills a sorted run file
//! (`spill-N`); at the end, one spill is renamed into place, several are merged partition
//! by partition with [`Merger`] (folding equal keys again when there is a combiner).
//! The result is `file.out` (partition segments back to back, each a sorted run) and
//! `file.index` (offset, length, record count and CRC32 of each segment), which the
//! worker's shuffle service serves ([`crate::shuffle`]).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashTable;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api::{Combiner, Partitioner, Sink};
use crate::counters::{self as c, Counters};
use crate::error::{Error, Result};
use crate::key::{EncodeKey, decode_value, encode_value};
use crate::merge::Merger;
use crate::run::{FileRun, Run, key_prefix, put_record};

/// Name of a map attempt's output file in its work directory.
pub const OUTPUT_FILE: &str = "file.out";
/// Name of its partition index.
pub const INDEX_FILE: &str = "file.index";

/// One partition's part of a map output file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Offset in the file.
    pub offset: u64,
    /// Bytes.
    pub length: u64,
    /// Records.
    pub records: u64,
    /// CRC32 of the bytes.
    pub crc32: u32,
}

/// Reads a map output's partition index.
///
/// # Errors
/// [`Error::Io`] if missing, [`Error::Decode`] if malformed.
pub fn read_index(dir: &Path) -> Result<Vec<Segment>> {
    let path = dir.join(INDEX_FILE);
    let text =
        std::fs::read(&path).map_err(Error::io(format!("cannot read {}", path.display())))?;
    serde_json::from_slice(&text).map_err(|e| Error::Decode(format!("{}: {e}", path.display())))
}

fn write_index(dir: &Path, segments: &[Segment]) -> Result<()> {
    let path = dir.join(INDEX_FILE);
    let tmp = dir.join("file.index.tmp");
    let text = serde_json::to_vec(segments).map_err(|e| Error::Encode(format!("index: {e}")))?;
    std::fs::write(&tmp, text).map_err(Error::io(format!("cannot write {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(Error::io(format!("cannot write {}", path.display())))
}

/// A map task's output collector: a sink for emitted pairs that leaves `file.out` and
/// `file.index` in the work directory when finished.
pub(crate) trait MapSink<K: ?Sized, V: ?Sized>: Sink<K, V> {
    /// Writes the final output; returns the DFS file written by a map-only sink.
    fn finish(self: Box<Self>, counters: &mut Counters) -> Result<Option<String>>;
}

/// Bytes a [`RunWriter`] gathers before checksumming and writing them.
const RUN_BUF: usize = 1 << 20;

/// Writes a sorted run file partition by partition.
///
/// Records are framed into one large buffer that is checksummed and written as a whole:
/// per record this is only the framing copy, with no per-record CRC call, write call or
/// error-message formatting.
struct RunWriter {
    file: File,
    path: PathBuf,
    offset: u64,
    partitions: u32,
    segments: Vec<Segment>,
    current: Segment,
    crc: crc32fast::Hasher,
    part: u32,
    buf: Vec<u8>,
}

impl RunWriter {
    fn create(path: &Path, partitions: u32) -> Result<RunWriter> {
        let file = File::create(path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()))(e))?;
        Ok(RunWriter {
            file,
            path: path.to_owned(),
            offset: 0,
            partitions,
            segments: Vec::with_capacity(partitions as usize),
            current: Segment::default(),
            crc: crc32fast::Hasher::new(),
            part: 0,
            buf: Vec::with_capacity(RUN_BUF + (64 << 10)),
        })
    }

    /// Checksums and writes what is buffered (it all belongs to the current partition).
    fn write_buf(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.crc.update(&self.buf);
        if let Err(e) = self.file.write_all(&self.buf) {
            return Err(Error::io(format!("cannot write {}", self.path.display()))(e));
        }
        self.buf.clear();
        Ok(())
    }

    /// Closes segments until `part` is the current one.
    fn seek_partition(&mut self, part: u32) -> Result<()> {
        if self.part < part {
            self.write_buf()?;
        }
        while self.part < part {
            self.current.crc32 = std::mem::take(&mut self.crc).finalize();
            self.segments.push(self.current);
            self.current = Segment { offset: self.offset, ..Segment::default() };
            self.part += 1;
        }
        Ok(())
    }

    #[inline]
    fn push(&mut self, part: u32, key: &[u8], value: &[u8]) -> Result<()> {
        if part != self.part {
            self.seek_partition(part)?;
        }
        let before = self.buf.len();
        put_record(&mut self.buf, key, value);
        let n = (self.buf.len() - before) as u64;
        self.offset += n;
        self.current.length += n;
        self.current.records += 1;
        if self.buf.len() >= RUN_BUF {
            self.write_buf()?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<Segment>> {
        self.write_buf()?;
        self.seek_partition(self.partitions)?;
        Ok(self.segments)
    }
}

/// Folds encoded values of equal keys (the combiner, over bytes), for merging spills.
pub(crate) trait RawFold {
    /// Folds `next` into `acc` (both encoded values); `acc` holds the result.
    fn fold(&mut self, acc: &mut Vec<u8>, next: &[u8]) -> Result<()>;
}

/// Spill files of one attempt and where the final output goes.
struct Spills {
    dir: PathBuf,
    partitions: u32,
    files: Vec<(PathBuf, Vec<Segment>)>,
}

impl Spills {
    fn new(dir: &Path, partitions: u32) -> Spills {
        Spills { dir: dir.to_owned(), partitions, files: Vec::new() }
    }

    /// Path for the next run: the final output if `last` and nothing was spilled yet.
    fn next_path(&self, last: bool) -> PathBuf {
        if last && self.files.is_empty() {
            self.dir.join(OUTPUT_FILE)
        } else {
            self.dir.join(format!("spill-{}", self.files.len()))
        }
    }

    /// Produces `file.out` and `file.index` from the spills written.
    fn finish(
        mut self,
        wrote_final: Option<Vec<Segment>>,
        fold: Option<&mut dyn RawFold>,
        counters: &mut Counters,
    ) -> Result<()> {
        if let Some(segments) = wrote_final {
            return write_index(&self.dir, &segments);
        }
        if self.files.len() == 1 {
            let (path, segments) = self.files.remove(0);
            let out = self.dir.join(OUTPUT_FILE);
            std::fs::rename(&path, &out)
                .map_err(Error::io(format!("cannot rename {}", path.display())))?;
            return write_index(&self.dir, &segments);
        }
        let out_path = self.dir.join(OUTPUT_FILE);
        let mut out = RunWriter::create(&out_path, self.partitions)?;
        let mut fold = fold;
        let mut acc = Vec::new();
        let mut key = Vec::new();
        let mut written = 0u64;
        for p in 0..self.partitions {
            let mut runs = Vec::with_capacity(self.files.len());
            for (path, segs) in &self.files {
                let s = segs.get(p as usize).copied().unwrap_or_default();
                runs.push(Run::File(FileRun::open(path, s.offset, s.length)?));
            }
            let mut m = Merger::new(runs)?;
            while let Some((k, v)) = m.current() {
                match fold.as_deref_mut() {
                    None => {
                        out.push(p, k, v)?;
                        m.advance()?;
                    }
                    Some(f) => {
                        key.clear();
                        key.extend_from_slice(k);
                        acc.clear();
                        acc.extend_from_slice(v);
                        m.advance()?;
                        while let Some((k2, v2)) = m.current() {
                            if k2 != key.as_slice() {
                                break;
                            }
                            f.fold(&mut acc, v2)?;
                            m.advance()?;
                        }
                        out.push(p, &key, &acc)?;
                    }
                }
                written += 1;
            }
        }
        let segments = out.finish()?;
        counters.add(c::TASK, c::SPILLED_RECORDS, written);
        counters.add(c::FS, c::FILE_BYTES_WRITTEN, segments.iter().map(|s| s.length).sum());
        for (path, _) in &self.files {
            let _ = std::fs::remove_file(path);
        }
        write_index(&self.dir, &segments)
    }
}

/// Index entry of one buffered record (24 bytes).
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// First 8 key bytes, big-endian, zero-padded: decides most comparisons.
    prefix: u64,
    off: u32,
    part: u32,
    klen: u32,
    vlen: u32,
}

/// The map output buffer without a combiner (see the module documentation).
pub(crate) struct SortBuffer {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    limit: usize,
    partitioner: Arc<dyn Partitioner>,
    spills: Spills,
    /// Encoded bytes of the pairs emitted since the last spill (counted here rather
    /// than in [`Counters`] per record: a counter update is two string-keyed lookups).
    emitted_bytes: u64,
}

impl SortBuffer {
    /// A buffer of `limit` bytes spilling into `dir`.
    pub(crate) fn new(
        dir: &Path,
        partitions: u32,
        limit: usize,
        partitioner: Arc<dyn Partitioner>,
    ) -> SortBuffer {
        // Offsets are u32: keep the arena below 4 GiB.
        let limit = limit.clamp(1 << 16, (u32::MAX as usize) - (64 << 20));
        SortBuffer {
            arena: Vec::with_capacity(limit.min(256 << 20) / 4 * 3),
            entries: Vec::new(),
            limit,
            partitioner,
            spills: Spills::new(dir, partitions),
            emitted_bytes: 0,
        }
    }

    fn sort(&mut self) {
        let arena = &self.arena;
        self.entries.sort_unstable_by(|a, b| {
            (a.part, a.prefix).cmp(&(b.part, b.prefix)).then_with(|| {
                let ka = &arena[a.off as usize..(a.off + a.klen) as usize];
                let kb = &arena[b.off as usize..(b.off + b.klen) as usize];
                ka.cmp(kb)
            })
        });
    }

    fn spill(&mut self, last: bool, counters: &mut Counters) -> Result<Option<Vec<Segment>>> {
        self.sort();
        let path = self.spills.next_path(last);
        let mut w = RunWriter::create(&path, self.spills.partitions)?;
        for e in &self.entries {
            let k = e.off as usize;
            let v = k + e.klen as usize;
            w.push(e.part, &self.arena[k..v], &self.arena[v..v + e.vlen as usize])?;
        }
        let segments = w.finish()?;
        counters.add(c::TASK, c::MAP_OUTPUT_RECORDS, self.entries.len() as u64);
        counters.add(c::TASK, c::MAP_OUTPUT_BYTES, std::mem::take(&mut self.emitted_bytes));
        counters.add(c::TASK, c::SPILLED_RECORDS, self.entries.len() as u64);
        counters.add(c::FS, c::FILE_BYTES_WRITTEN, segments.iter().map(|s| s.length).sum());
        self.entries.clear();
        self.arena.clear();
        if last && self.spills.files.is_empty() {
            return Ok(Some(segments));
        }
        self.spills.files.push((path, segments));
        Ok(None)
    }
}

impl<K: EncodeKey + ?Sized, V: Serialize + ?Sized> Sink<K, V> for SortBuffer {
    #[inline]
    fn emit(&mut self, key: &K, value: &V, counters: &mut Counters) -> Result<()> {
        let off = self.arena.len();
        key.encode_key(&mut self.arena);
        let klen = self.arena.len() - off;
        let part = self.partitioner.partition(&self.arena[off..], self.spills.partitions);
        let prefix = key_prefix(&self.arena[off..]);
        encode_value(value, &mut self.arena)?;
        let vlen = self.arena.len() - off - klen;
        self.entries.push(Entry {
            prefix,
            off: off as u32,
            part,
            klen: klen as u32,
            vlen: vlen as u32,
        });
        self.emitted_bytes += (klen + vlen) as u64;
        if self.arena.len() + self.entries.len() * std::mem::size_of::<Entry>() >= self.limit {
            self.spill(false, counters)?;
        }
        Ok(())
    }
}

impl<K: EncodeKey + ?Sized, V: Serialize + ?Sized> MapSink<K, V> for SortBuffer {
    fn finish(mut self: Box<Self>, counters: &mut Counters) -> Result<Option<String>> {
        let wrote = if !self.entries.is_empty() || self.spills.files.is_empty() {
            self.spill(true, counters)?
        } else {
            None
        };
        let spills = std::mem::replace(&mut self.spills, Spills::new(Path::new(""), 0));
        spills.finish(wrote, None, counters)?;
        Ok(None)
    }
}

/// One distinct key in the combining buffer.
struct Slot<V> {
    off: u32,
    klen: u32,
    part: u32,
    value: V,
}

/// The map output buffer with a combiner (see the module documentation).
///
/// The hash table holds only 4-byte indices into `slots`, which are stored in insertion
/// order: the table stays a quarter of the size it would be holding slots, and since the
/// frequent keys of skewed (Zipf) input are met first, their slots and key bytes sit
/// together at the front of `slots` and `arena`, where they stay in cache.
pub(crate) struct CombineBuffer<V, C> {
    arena: Vec<u8>,
    table: HashTable<u32>,
    slots: Vec<Slot<V>>,
    hasher: hashbrown::DefaultHashBuilder,
    scratch: Vec<u8>,
    value_buf: Vec<u8>,
    combiner: C,
    limit: usize,
    partitioner: Arc<dyn Partitioner>,
    spills: Spills,
    /// Pairs emitted since the last spill (counted here, not per record in [`Counters`]).
    emitted: u64,
}

impl<V, C> CombineBuffer<V, C>
where
    V: Serialize + DeserializeOwned + Clone,
    C: Combiner<V>,
{
    /// A buffer of about `limit` bytes spilling into `dir`.
    pub(crate) fn new(
        dir: &Path,
        partitions: u32,
        limit: usize,
        partitioner: Arc<dyn Partitioner>,
        combiner: C,
    ) -> Self {
        CombineBuffer {
            arena: Vec::new(),
            table: HashTable::new(),
            slots: Vec::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            scratch: Vec::new(),
            value_buf: Vec::new(),
            combiner,
            limit: limit.clamp(1 << 16, (u32::MAX as usize) - (64 << 20)),
            partitioner,
            spills: Spills::new(dir, partitions),
            emitted: 0,
        }
    }

    fn used(&self) -> usize {
        self.arena.len()
            + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.slots.capacity() * std::mem::size_of::<Slot<V>>()
    }

    fn spill(&mut self, last: bool, counters: &mut Counters) -> Result<Option<Vec<Segment>>> {
        self.table.clear();
        let mut slots = std::mem::take(&mut self.slots);
        let arena = &self.arena;
        let key = |s: &Slot<V>| &arena[s.off as usize..(s.off + s.klen) as usize];
        slots.sort_unstable_by(|a, b| a.part.cmp(&b.part).then_with(|| key(a).cmp(key(b))));
        let path = self.spills.next_path(last);
        let mut w = RunWriter::create(&path, self.spills.partitions)?;
        for s in &slots {
            self.value_buf.clear();
            encode_value(&s.value, &mut self.value_buf)?;
            w.push(s.part, key(s), &self.value_buf)?;
        }
        let segments = w.finish()?;
        let n = slots.len() as u64;
        let emitted = std::mem::take(&mut self.emitted);
        counters.add(c::TASK, c::MAP_OUTPUT_RECORDS, emitted);
        counters.add(c::TASK, c::COMBINE_INPUT_RECORDS, emitted);
        counters.add(c::TASK, c::COMBINE_OUTPUT_RECORDS, n);
        counters.add(c::TASK, c::SPILLED_RECORDS, n);
        let bytes: u64 = segments.iter().map(|s| s.length).sum();
        counters.add(c::TASK, c::MAP_OUTPUT_BYTES, bytes);
        counters.add(c::FS, c::FILE_BYTES_WRITTEN, bytes);
        self.arena.clear();
        slots.clear();
        self.slots = slots;
        if last && self.spills.files.is_empty() {
            return Ok(Some(segments));
        }
        self.spills.files.push((path, segments));
        Ok(None)
    }
}

impl<K, V, C> Sink<K, V> for CombineBuffer<V, C>
where
    K: EncodeKey + ?Sized,
    V: Serialize + DeserializeOwned + Clone,
    C: Combiner<V>,
{
    #[inline]
    fn emit(&mut self, key: &K, value: &V, counters: &mut Counters) -> Result<()> {
        use std::hash::BuildHasher;
        self.scratch.clear();
        key.encode_key(&mut self.scratch);
        self.emitted += 1;
        let hash = self.hasher.hash_one(self.scratch.as_slice());
        let (arena, slots, scratch) = (&self.arena, &self.slots, &self.scratch);
        let found = self.table.find(hash, |&i| {
            let s = &slots[i as usize];
            s.klen as usize == scratch.len()
                && &arena[s.off as usize..(s.off + s.klen) as usize] == scratch.as_slice()
        });
        if let Some(&i) = found {
            let slot = &mut self.slots[i as usize];
            self.combiner.combine(&mut slot.value, value.clone());
            return Ok(());
        }
        let off = self.arena.len();
        self.arena.extend_from_slice(&self.scratch);
        let part = self.partitioner.partition(&self.scratch, self.spills.partitions);
        let index = self.slots.len() as u32;
        self.slots.push(Slot {
            off: off as u32,
            klen: self.scratch.len() as u32,
            part,
            value: value.clone(),
        });
        let (arena, slots, hasher) = (&self.arena, &self.slots, &self.hasher);
        self.table.insert_unique(hash, index, |&i| {
            let s = &slots[i as usize];
            hasher.hash_one(&arena[s.off as usize..(s.off + s.klen) as usize])
        });
        if self.used() >= self.limit {
            self.spill(false, counters)?;
        }
        Ok(())
    }
}

/// Folds encoded values through the combiner (decode, combine, encode).
struct FoldWith<'a, V, C> {
    combiner: &'a mut C,
    _v: std::marker::PhantomData<fn() -> V>,
}

impl<V, C> RawFold for FoldWith<'_, V, C>
where
    V: Serialize + DeserializeOwned,
    C: Combiner<V>,
{
    fn fold(&mut self, acc: &mut Vec<u8>, next: &[u8]) -> Result<()> {
        let mut a: V = decode_value(acc)?;
        self.combiner.combine(&mut a, decode_value(next)?);
        acc.clear();
        encode_value(&a, acc)
    }
}

impl<K, V, C> MapSink<K, V> for CombineBuffer<V, C>
where
    K: EncodeKey + ?Sized,
    V: Serialize + DeserializeOwned + Clone,
    C: Combiner<V>,
{
    fn finish(mut self: Box<Self>, counters: &mut Counters) -> Result<Option<String>> {
        let wrote = if !self.slots.is_empty() || self.spills.files.is_empty() {
            self.spill(true, counters)?
        } else {
            None
        };
        let spills = std::mem::replace(&mut self.spills, Spills::new(Path::new(""), 0));
        let mut fold =
            FoldWith::<V, C> { combiner: &mut self.combiner, _v: std::marker::PhantomData };
        spills.finish(wrote, Some(&mut fold), counters)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::api::HashPartitioner;
    use crate::key::BlobBuf;
    use crate::run::MemRun;

    /// Reads partition `p` of a finished map output as (key, value bytes) pairs.
    fn read_partition(dir: &Path, p: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let segs = read_index(dir).unwrap();
        let data = std::fs::read(dir.join(OUTPUT_FILE)).unwrap();
        let s = segs[p];
        let bytes = &data[s.offset as usize..(s.offset + s.length) as usize];
        assert_eq!(crc32fast::hash(bytes), s.crc32);
        let mut run = Run::Mem(MemRun::new(Bytes::copy_from_slice(bytes)));
        let mut out = Vec::new();
        while run.advance().unwrap() {
            out.push((run.key().to_vec(), run.value().to_vec()));
        }
        assert_eq!(out.len() as u64, s.records);
        out
    }

    fn words(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("w{}", (i * 7919) % 613)).collect()
    }

    #[test]
    fn sort_buffer_sorts_spills_and_merges() {
        for limit in [1 << 16, 64 << 20] {
            let dir = tempfile::tempdir().unwrap();
            let mut counters = Counters::new();
            let mut buf: Box<dyn MapSink<str, BlobBuf>> =
                Box::new(SortBuffer::new(dir.path(), 3, limit, Arc::new(HashPartitioner)));
            let ws = words(20_000);
            for (i, w) in ws.iter().enumerate() {
                buf.emit(w, &BlobBuf(vec![(i % 256) as u8; 3]), &mut counters).unwrap();
            }
            buf.finish(&mut counters).unwrap();
            let mut total = 0;
            for p in 0..3 {
                let recs = read_partition(dir.path(), p);
                assert!(recs.windows(2).all(|w| w[0].0 <= w[1].0), "partition {p} sorted");
                for (k, _) in &recs {
                    assert_eq!(HashPartitioner.partition(k, 3), p as u32);
                }
                total += recs.len();
            }
            assert_eq!(total, 20_000);
            assert_eq!(counters.get(c::TASK, c::MAP_OUTPUT_RECORDS), 20_000);
            let spills = std::fs::read_dir(dir.path()).unwrap().count();
            assert_eq!(spills, 2, "only file.out and file.index remain (limit {limit})");
        }
    }

    #[test]
    fn combine_buffer_folds_across_spills() {
        for limit in [1 << 16, 64 << 20] {
            let dir = tempfile::tempdir().unwrap();
            let mut counters = Counters::new();
            let sum = |a: &mut u64, b: u64| *a += b;
            let mut buf: Box<dyn MapSink<str, u64>> =
                Box::new(CombineBuffer::new(dir.path(), 2, limit, Arc::new(HashPartitioner), sum));
            let ws = words(50_000);
            for w in &ws {
                buf.emit(w, &1, &mut counters).unwrap();
            }
            buf.finish(&mut counters).unwrap();
            let mut want = std::collections::BTreeMap::new();
            for w in &ws {
                *want.entry(w.as_bytes().to_vec()).or_insert(0u64) += 1;
            }
            let mut got = std::collections::BTreeMap::new();
            for p in 0..2 {
                let recs = read_partition(dir.path(), p);
                assert!(recs.windows(2).all(|w| w[0].0 < w[1].0), "distinct and sorted");
                for (k, v) in recs {
                    got.insert(k, decode_value::<u64>(&v).unwrap());
                }
            }
            assert_eq!(got, want, "limit {limit}");
            assert_eq!(counters.get(c::TASK, c::COMBINE_INPUT_RECORDS), 50_000);
        }
    }

    #[test]
    fn an_empty_map_output_has_empty_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut counters = Counters::new();
        let buf: Box<dyn MapSink<str, u64>> =
            Box::new(SortBuffer::new(dir.path(), 4, 1 << 20, Arc::new(HashPartitioner)));
        buf.finish(&mut counters).unwrap();
        let segs = read_index(dir.path()).unwrap();
        assert_eq!(segs.len(), 4);
        assert!(segs.iter().all(|s| s.length == 0 && s.records == 0));
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    fn segment() -> impl Strategy<Value = Segment> {
        any::<(u64, u64, u64, u32)>().prop_map(|(offset, length, records, crc32)| Segment {
            offset,
            length,
            records,
            crc32,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The partition index round-trips, and a damaged one is `Decode`, never a panic.
        #[test]
        fn indexes_round_trip_and_damage_is_an_error(
            segments in prop::collection::vec(segment(), 0..6),
            flip in any::<prop::sample::Index>(),
            bit in 0..8u8,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            write_index(dir.path(), &segments).expect("write");
            prop_assert_eq!(read_index(dir.path()).expect("read"), segments);
            let path = dir.path().join(INDEX_FILE);
            let mut bytes = std::fs::read(&path).expect("read");
            let i = flip.index(bytes.len());
            bytes[i] ^= 1 << bit;
            std::fs::write(&path, &bytes).expect("write");
            if let Err(e) = read_index(dir.path()) {
                prop_assert!(matches!(e, Error::Decode(_)), "{}", e);
            }
        }
    }
}
