//! What a job is made of: the [`Mapper`], [`Reducer`], [`Combiner`] and [`Partitioner`]
//! traits a user implements, the [`Context`] they emit pairs and count through, and the
//! [`Input`] record a mapper is handed.
//!
//! Keys are typed through [`EncodeKey`]/[`DecodeKey`] (order-preserving bytes: the
//! framework sorts and groups without deserializing) and values through serde. Emitting
//! takes references (`&K`, `&V`, with unsized types such as `str`, `[u8]` and
//! [`Blob`](crate::key::Blob) allowed), so a mapper can emit slices of its input line
//! without allocating.
//!
//! A combiner here is a *fold*: `combine(&mut acc, value)`, associative and commutative,
//! as Spark's `reduceByKey` takes it, rather than Hadoop's "a reducer run on map output".
//! That lets the map side combine in a hash table as pairs are emitted (see
//! [`crate::mapside`]): the hot path of word count becomes one hash probe per word instead
//! of buffering, sorting and re-reading every pair. The same fold merges spills.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::JobConf;
use crate::counters::Counters;
use crate::error::{Error, Result};
use crate::key::{DecodeKey, EncodeKey, ToText, decode_value};

/// Turns a record of the input into intermediate (or, for map-only jobs, final) pairs.
///
/// Its key and value types need a text form ([`ToText`]) only if the mapper's pairs are
/// written as text, that is in a map-only job (registering one checks it); a mapper
/// feeding a reducer may emit any serializable type.
pub trait Mapper: Send + 'static {
    /// Type of the keys it emits.
    type Key: EncodeKey + ?Sized;
    /// Type of the values it emits.
    type Value: Serialize + ?Sized;

    /// Called once before the first record.
    ///
    /// # Errors
    /// Any error fails the attempt.
    fn setup(&mut self, _ctx: &mut Context<'_, Self::Key, Self::Value>) -> Result<()> {
        Ok(())
    }

    /// Called for every record of the split.
    ///
    /// # Errors
    /// Any error fails the attempt.
    fn map(
        &mut self,
        input: Input<'_>,
        ctx: &mut Context<'_, Self::Key, Self::Value>,
    ) -> Result<()>;

    /// Called once after the last record.
    ///
    /// # Errors
    /// Any error fails the attempt.
    fn cleanup(&mut self, _ctx: &mut Context<'_, Self::Key, Self::Value>) -> Result<()> {
        Ok(())
    }
}

/// Turns one key and all its values into output pairs.
pub trait Reducer: Send + 'static {
    /// Type of the keys it receives (decoded from the mapper's key encoding).
    type KeyIn: DecodeKey;
    /// Type of the values it receives.
    type ValueIn: DeserializeOwned;
    /// Type of the keys it writes.
    type KeyOut: EncodeKey + ToText + ?Sized;
    /// Type of the values it writes.
    type ValueOut: Serialize + ToText + ?Sized;

    /// Called once before the first key.
    ///
    /// # Errors
    /// Any error fails the attempt.
    fn setup(&mut self, _ctx: &mut Context<'_, Self::KeyOut, Self::ValueOut>) -> Result<()> {
        Ok(())
    }

    /// Called once per distinct key, in key order, with all of its values.
    ///
    /// # Errors
    /// Any error fails the attempt.
    fn reduce(
        &mut self,
        key: Self::KeyIn,
        values: &mut Values<'_, Self::ValueIn>,
        ctx: &mut Context<'_, Self::KeyOut, Self::ValueOut>,
    ) -> Result<()>;

    /// Called once after the last key.
    ///
    /// # Errors
    /// Any error fails the attempt.
    fn cleanup(&mut self, _ctx: &mut Context<'_, Self::KeyOut, Self::ValueOut>) -> Result<()> {
        Ok(())
    }
}

/// An associative and commutative fold of values of one key, applied on the map side.
pub trait Combiner<V>: Send + 'static {
    /// Folds `value` into `acc`.
    fn combine(&mut self, acc: &mut V, value: V);
}

impl<V, F: FnMut(&mut V, V) + Send + 'static> Combiner<V> for F {
    fn combine(&mut self, acc: &mut V, value: V) {
        self(acc, value)
    }
}

/// Chooses the reduce partition of an (encoded) key.
pub trait Partitioner: Send + Sync + 'static {
    /// A partition in `0..partitions` for `key` (its order-preserving encoding).
    fn partition(&self, key: &[u8], partitions: u32) -> u32;
}

/// The default partitioner: a hash of the key bytes modulo the number of reducers.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashPartitioner;

impl Partitioner for HashPartitioner {
    #[inline]
    fn partition(&self, key: &[u8], partitions: u32) -> u32 {
        if partitions <= 1 {
            return 0;
        }
        (stable_hash(key) % u64::from(partitions)) as u32
    }
}

/// A hash of bytes that every process computes alike (map tasks of one job run in
/// different processes and must agree): FNV-1a over 8-byte words, then a final mix.
#[inline]
pub fn stable_hash(bytes: &[u8]) -> u64 {
    const P: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(P);
    }
    for &b in chunks.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(P);
    }
    // Murmur3's finalizer, so that the low bits used by `%` depend on every byte.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// A total-order partitioner over sorted cut points: keys below `cuts[0]` go to partition
/// 0, keys in `[cuts[i-1], cuts[i])` to partition `i` (TeraSort's).
#[derive(Debug, Clone, Default)]
pub struct RangePartitioner {
    cuts: Vec<Vec<u8>>,
}

impl RangePartitioner {
    /// A partitioner with these encoded cut points (sorted).
    pub fn new(mut cuts: Vec<Vec<u8>>) -> RangePartitioner {
        cuts.sort();
        RangePartitioner { cuts }
    }

    /// The cut points.
    pub fn cuts(&self) -> &[Vec<u8>] {
        &self.cuts
    }
}

impl Partitioner for RangePartitioner {
    #[inline]
    fn partition(&self, key: &[u8], partitions: u32) -> u32 {
        let i = self.cuts.partition_point(|c| c.as_slice() <= key) as u32;
        i.min(partitions.saturating_sub(1))
    }
}

/// One record of a map task's input.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    kind: InputKind<'a>,
    value: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
enum InputKind<'a> {
    Line { offset: u64 },
    KeyValue { offset: u64, key: &'a [u8] },
    Record { key: &'a [u8] },
    File { path: &'a str },
    Generated { index: u32, count: u32 },
}

impl<'a> Input<'a> {
    /// A line of text at byte `offset` of its file (without its line end).
    pub fn line_at(offset: u64, line: &'a [u8]) -> Input<'a> {
        Input { kind: InputKind::Line { offset }, value: line }
    }

    /// A line at byte `offset` of its file cut into a text key and value (key/value
    /// text input).
    pub fn key_value(offset: u64, key: &'a [u8], value: &'a [u8]) -> Input<'a> {
        Input { kind: InputKind::KeyValue { offset, key }, value }
    }

    /// A key/value record of the record format (both still encoded).
    pub fn record(key: &'a [u8], value: &'a [u8]) -> Input<'a> {
        Input { kind: InputKind::Record { key }, value }
    }

    /// A whole file: its path and contents (whole-file input).
    pub fn file(path: &'a str, contents: &'a [u8]) -> Input<'a> {
        Input { kind: InputKind::File { path }, value: contents }
    }

    /// The single record of a generated split: this map's index among `count`.
    pub fn generated(index: u32, count: u32) -> Input<'a> {
        Input { kind: InputKind::Generated { index, count }, value: &[] }
    }

    /// For text and key/value input, the byte offset of the line in its file (0
    /// otherwise).
    pub fn offset(&self) -> u64 {
        self.position().unwrap_or(0)
    }

    /// The byte offset of the record in its file, for formats that know it.
    pub(crate) fn position(&self) -> Option<u64> {
        match self.kind {
            InputKind::Line { offset } | InputKind::KeyValue { offset, .. } => Some(offset),
            _ => None,
        }
    }

    /// The record as the list of skipped records shows it: the line, `key<TAB>value`,
    /// the file's path, or which generated record it is.
    pub(crate) fn describe(&self) -> std::borrow::Cow<'a, [u8]> {
        match self.kind {
            InputKind::Line { .. } => self.value.into(),
            InputKind::KeyValue { key, .. } | InputKind::Record { key } => {
                [key, b"\t", self.value].concat().into()
            }
            InputKind::File { path } => path.as_bytes().into(),
            InputKind::Generated { index, count } => {
                format!("generated record {index} of {count}").into_bytes().into()
            }
        }
    }

    /// The record's value bytes: the line (text), the text after the tab (key/value),
    /// the encoded value (records), the file's contents (whole file).
    pub fn line(&self) -> &'a [u8] {
        self.value
    }

    /// The same as [`Input::line`], under the name that reads better for whole files
    /// and records.
    pub fn bytes(&self) -> &'a [u8] {
        self.value
    }

    /// The value bytes ([`Input::line`]) as UTF-8 text.
    ///
    /// # Errors
    /// [`Error::Decode`] if it is not UTF-8.
    pub fn text(&self) -> Result<&'a str> {
        std::str::from_utf8(self.value)
            .map_err(|_| Error::Decode(format!("{}: not UTF-8", self.what())))
    }

    /// The key bytes: the encoded key (records), the text before the tab (key/value),
    /// the file's path (whole file); empty otherwise.
    pub fn raw_key(&self) -> &'a [u8] {
        match self.kind {
            InputKind::Record { key } | InputKind::KeyValue { key, .. } => key,
            InputKind::File { path } => path.as_bytes(),
            _ => &[],
        }
    }

    /// The key bytes ([`Input::raw_key`]) as UTF-8 text: the key of key/value input.
    ///
    /// # Errors
    /// [`Error::Decode`] if it is not UTF-8.
    pub fn key_text(&self) -> Result<&'a str> {
        std::str::from_utf8(self.raw_key())
            .map_err(|_| Error::Decode(format!("the key of {}: not UTF-8", self.what())))
    }

    /// For whole-file input, the file's path.
    pub fn file_name(&self) -> Option<&'a str> {
        match self.kind {
            InputKind::File { path } => Some(path),
            _ => None,
        }
    }

    /// The record, for messages.
    fn what(&self) -> String {
        match self.kind {
            InputKind::Line { offset } | InputKind::KeyValue { offset, .. } => {
                format!("the line at byte {offset}")
            }
            InputKind::File { path } => format!("file {path}"),
            _ => "the record".to_owned(),
        }
    }

    /// For record input, the decoded key.
    ///
    /// # Errors
    /// [`Error::Decode`] if the key is not a `K`.
    pub fn key<K: DecodeKey>(&self) -> Result<K> {
        K::decode_key(self.raw_key())
    }

    /// For record input, the decoded value.
    ///
    /// # Errors
    /// [`Error::Decode`] if the value is not a `V`.
    pub fn value<V: DeserializeOwned>(&self) -> Result<V> {
        decode_value(self.value)
    }

    /// For generated input, (this map's index, number of maps).
    pub fn generated_index(&self) -> Option<(u32, u32)> {
        match self.kind {
            InputKind::Generated { index, count } => Some((index, count)),
            _ => None,
        }
    }
}

/// Where emitted pairs go: the map-side buffer, or an output file.
pub(crate) trait Sink<K: ?Sized, V: ?Sized> {
    /// Takes one pair.
    fn emit(&mut self, key: &K, value: &V, counters: &mut Counters) -> Result<()>;

    /// Adds what the sink counted locally to `counters`. Sinks count per-record totals
    /// in plain integers rather than in [`Counters`] (two string-keyed map lookups per
    /// update); the framework calls this once the records are over.
    fn flush_counts(&mut self, _counters: &mut Counters) {}
}

/// Facts about the running attempt that user code may want.
#[derive(Debug, Clone, Default)]
pub struct TaskInfo {
    /// The job's id.
    pub job_id: String,
    /// This attempt's id.
    pub attempt_id: String,
    /// Index of the task among the job's maps or reduces.
    pub index: u32,
    /// Number of reduce tasks of the job.
    pub reducers: u32,
    /// For a map over a file, the file's path (with several inputs, the one this map
    /// reads).
    pub input_path: Option<String>,
    /// The host the attempt runs on (its worker's address without the port).
    pub host: String,
    /// The id the coordinator knows the attempt's worker by.
    pub worker: String,
}

/// What user code talks to: emit pairs, count things, read the job configuration.
pub struct Context<'a, K: ?Sized, V: ?Sized> {
    sink: &'a mut dyn Sink<K, V>,
    counters: &'a mut Counters,
    conf: &'a JobConf,
    info: &'a TaskInfo,
}

impl<K: ?Sized, V: ?Sized> std::fmt::Debug for Context<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("info", self.info).finish_non_exhaustive()
    }
}

impl<'a, K: ?Sized, V: ?Sized> Context<'a, K, V> {
    pub(crate) fn new(
        sink: &'a mut dyn Sink<K, V>,
        counters: &'a mut Counters,
        conf: &'a JobConf,
        info: &'a TaskInfo,
    ) -> Self {
        Context { sink, counters, conf, info }
    }

    /// Emits one pair.
    ///
    /// # Errors
    /// A value that cannot be serialized, or a failure spilling or writing output.
    #[inline]
    pub fn emit(&mut self, key: &K, value: &V) -> Result<()> {
        self.sink.emit(key, value, self.counters)
    }

    /// Adds `by` to the user counter `group.name`.
    pub fn count(&mut self, group: &str, name: &str, by: u64) {
        self.counters.add(group, name, by);
    }

    /// The job's configuration.
    pub fn conf(&self) -> &JobConf {
        self.conf
    }

    /// Facts about this attempt.
    pub fn task(&self) -> &TaskInfo {
        self.info
    }
}

/// Where a reducer's values come from (the reduce-side merge).
pub(crate) trait ValueSource {
    /// The next value of the current key, or `None` at the end of the group.
    fn next_value(&mut self) -> Result<Option<&[u8]>>;

    /// The encoded key of the group.
    fn key(&self) -> &[u8];
}

/// The values of one key, decoded lazily as the reducer iterates.
///
/// A value that fails to decode ends the iteration and fails the attempt once the
/// reducer returns.
pub struct Values<'a, V> {
    src: &'a mut dyn ValueSource,
    error: Option<Error>,
    count: u64,
    _v: PhantomData<fn() -> V>,
}

impl<V> std::fmt::Debug for Values<'_, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Values").field("read", &self.count).finish_non_exhaustive()
    }
}

impl<'a, V> Values<'a, V> {
    pub(crate) fn new(src: &'a mut dyn ValueSource) -> Self {
        Values { src, error: None, count: 0, _v: PhantomData }
    }

    /// The next value's encoded bytes, without decoding it.
    pub fn next_raw(&mut self) -> Option<&[u8]> {
        if self.error.is_some() {
            return None;
        }
        match self.src.next_value() {
            Ok(Some(v)) => {
                self.count += 1;
                Some(v)
            }
            Ok(None) => None,
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }

    /// The group's key as encoded (its order-preserving bytes). With
    /// [`RawKey`](crate::key::RawKey) as the reducer's key type, this is how a reducer
    /// that only copies keys through gets them without decoding one per group.
    pub fn raw_key(&self) -> &[u8] {
        self.src.key()
    }

    /// Values read so far.
    pub fn read(&self) -> u64 {
        self.count
    }

    pub(crate) fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }
}

impl<V: DeserializeOwned> Iterator for Values<'_, V> {
    type Item = V;

    fn next(&mut self) -> Option<V> {
        let raw = self.next_raw()?;
        match decode_value(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_partitioner_is_stable_and_spreads() {
        let p = HashPartitioner;
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            let key = format!("word{i}");
            let a = p.partition(key.as_bytes(), 4);
            assert_eq!(a, p.partition(key.as_bytes(), 4));
            counts[a as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert_eq!(p.partition(b"x", 1), 0);
        // Pinned: map tasks in other processes (and other builds) must agree.
        assert_eq!(stable_hash(b"hello"), stable_hash(b"hello"));
        assert_ne!(stable_hash(b"hello"), stable_hash(b"hellp"));
    }

    #[test]
    fn range_partitioner_gives_a_total_order() {
        let p = RangePartitioner::new(vec![b"m".to_vec(), b"f".to_vec()]);
        assert_eq!(p.partition(b"a", 3), 0);
        assert_eq!(p.partition(b"f", 3), 1);
        assert_eq!(p.partition(b"g", 3), 1);
        assert_eq!(p.partition(b"m", 3), 2);
        assert_eq!(p.partition(b"z", 3), 2);
        assert_eq!(p.partition(b"z", 2), 1, "never past the last partition");
    }

    #[test]
    fn input_accessors() {
        let i = Input::line_at(7, b"hi there");
        assert_eq!((i.offset(), i.text().unwrap()), (7, "hi there"));
        let err = Input::line_at(9, &[0xff]).text().unwrap_err().to_string();
        assert_eq!(err, "cannot decode the line at byte 9: not UTF-8");
        let kv = Input::key_value(3, b"k", b"v w");
        assert_eq!((kv.key_text().unwrap(), kv.text().unwrap(), kv.offset()), ("k", "v w", 3));
        assert_eq!(&kv.describe()[..], b"k\tv w");
        let f = Input::file("/in/a", b"body");
        assert_eq!(
            (f.file_name(), f.bytes(), f.key_text().unwrap()),
            (Some("/in/a"), &b"body"[..], "/in/a")
        );
        let g = Input::generated(2, 5);
        assert_eq!(g.generated_index(), Some((2, 5)));
    }
}
