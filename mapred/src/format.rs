//! The byte-level halves of the built-in formats: reading the records a split owns, and
//! writing output files. (The [`InputFormat`](crate::input::InputFormat) trait and the
//! formats built on these readers are in [`crate::input`].)
//!
//! **Splits.** Input files are split on chunk boundaries by default, so each map reads
//! one chunk and can run where a replica of it lives. Record boundaries do not line up
//! with chunks, so each format decides which records a split owns:
//!
//! - *text*: a split `[start, end)` owns the lines whose first byte lies in it. It starts
//!   reading at `start - 1` and skips to just past the first newline (unless it starts the
//!   file), and reads past `end` to finish its last line ([`read_text_split`]). Every line
//!   is read exactly once; a line is its bytes without `\n` (or `\r\n`).
//! - *records*: a record file is a header (`MRREC01\n` + a random 16-byte sync marker)
//!   and blocks `sync, u32 length, records`; a split owns the blocks whose sync marker
//!   starts in it, found by scanning for the marker as Hadoop's SequenceFile does
//!   ([`read_record_split`]).
//!
//! **Output.** [`OutputWriter`] writes `key<SEP>value` lines (separator `\t` by default,
//! `mapred.output.separator`) or record files, buffering megabytes before each DFS write.

use std::time::Duration;

use bytes::Bytes;
use dfs::{Client, CreateOptions, FileReader, FileWriter};
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::api::Sink;
use crate::counters::Counters;
use crate::error::{Error, Result};
use crate::key::{EncodeKey, ToText, encode_value};
use crate::run::{parse_record, put_record};
use crate::spec::OutputFormat;

/// Magic at the start of every record file.
pub const RECORD_MAGIC: &[u8; 8] = b"MRREC01\n";
/// Length of a record file's header (magic + sync marker).
pub const RECORD_HEADER: u64 = 24;
/// Target payload of one record block.
const RECORD_BLOCK: usize = 1 << 20;
/// Bytes buffered before a DFS write.
const WRITE_BUF: usize = 4 << 20;

/// Streams a file from `from` as pieces, reading ahead on the runtime: large pieces up
/// to `end` (the split's end), then small ones (a text split only needs the rest of its
/// last line). The consumer stops early by dropping the receiver.
pub fn spawn_reader(
    rt: &Handle,
    reader: FileReader,
    from: u64,
    end: u64,
    piece: u64,
) -> mpsc::Receiver<Result<Bytes>> {
    let (tx, rx) = mpsc::channel(2);
    rt.spawn(async move {
        let len = reader.len();
        let mut at = from;
        let mut tail = 64 << 10;
        while at < len {
            let n = if at < end {
                piece.min(end - at)
            } else {
                let n = tail;
                tail = (tail * 2).min(piece);
                n
            };
            let res = reader.read_range(at, n).await.map_err(Error::from);
            let got = res.as_ref().map_or(0, |b| b.len() as u64);
            let failed = res.is_err() || got == 0;
            if tx.send(res).await.is_err() || failed {
                return;
            }
            at += got;
        }
    });
    rx
}

/// Reads the lines a text split `[start, end)` owns from `pieces` (consecutive bytes of
/// the file starting at `start - 1`, or 0 when `start` is 0), calling `f(offset, line)`.
/// Returns the bytes of the file consumed.
///
/// # Errors
/// The first error of `pieces` or `f`.
pub fn read_text_split(
    mut pieces: impl FnMut() -> Result<Option<Bytes>>,
    start: u64,
    end: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<u64> {
    let mut pos = start.saturating_sub(1); // file offset of the next piece's first byte
    let mut skipping = start != 0;
    let mut carry: Vec<u8> = Vec::new();
    let mut carry_start = 0u64;
    let mut consumed = 0u64;
    while let Some(piece) = pieces()? {
        consumed += piece.len() as u64;
        let mut i = 0usize;
        if skipping {
            match memchr::memchr(b'\n', &piece) {
                Some(j) => {
                    i = j + 1;
                    skipping = false;
                }
                None => {
                    pos += piece.len() as u64;
                    continue;
                }
            }
        }
        loop {
            let line_start = if carry.is_empty() { pos + i as u64 } else { carry_start };
            if carry.is_empty() && (line_start >= end || i >= piece.len()) {
                if line_start >= end {
                    return Ok(consumed);
                }
                break;
            }
            match memchr::memchr(b'\n', &piece[i..]) {
                Some(j) => {
                    let line_end = i + j;
                    if carry.is_empty() {
                        f(line_start, trim_cr(&piece[i..line_end]))?;
                    } else {
                        carry.extend_from_slice(&piece[i..line_end]);
                        f(carry_start, trim_cr(&carry))?;
                        carry.clear();
                    }
                    i = line_end + 1;
                }
                None => {
                    if carry.is_empty() {
                        carry_start = line_start;
                    }
                    carry.extend_from_slice(&piece[i..]);
                    break;
                }
            }
        }
        pos += piece.len() as u64;
    }
    if !carry.is_empty() && carry_start < end {
        f(carry_start, trim_cr(&carry))?;
    }
    Ok(consumed)
}

#[inline]
fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads the header of a record file and returns its sync marker.
///
/// # Errors
/// [`Error::Decode`] if `header` is not a record file header.
pub fn parse_record_header(header: &[u8], path: &str) -> Result<[u8; 16]> {
    if header.len() < RECORD_HEADER as usize || &header[..8] != RECORD_MAGIC {
        return Err(Error::Decode(format!("{path} is not a record file")));
    }
    let mut sync = [0u8; 16];
    sync.copy_from_slice(&header[8..24]);
    Ok(sync)
}

/// Reads the records of the blocks a split `[start, end)` of a record file owns, from
/// `pieces` (consecutive bytes from `max(start, 24)`), calling `f(key, value)`.
/// Returns the bytes consumed.
///
/// # Errors
/// [`Error::Corrupt`] for a damaged block; the first error of `pieces` or `f`.
pub fn read_record_split(
    mut pieces: impl FnMut() -> Result<Option<Bytes>>,
    sync: &[u8; 16],
    start: u64,
    end: u64,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<u64> {
    let finder = memchr::memmem::Finder::new(sync);
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_off = start.max(RECORD_HEADER); // file offset of buf[0]
    let mut pos = 0usize; // consumed prefix of buf
    let mut seeking = true;
    let mut consumed = 0u64;
    let mut at_eof = false;
    loop {
        match pieces()? {
            Some(p) => {
                consumed += p.len() as u64;
                buf.drain(..pos);
                buf_off += pos as u64;
                pos = 0;
                buf.extend_from_slice(&p);
            }
            None => at_eof = true,
        }
        loop {
            if seeking {
                match finder.find(&buf[pos..]) {
                    Some(i) => {
                        pos += i;
                        seeking = false;
                    }
                    None => {
                        // Keep a possible partial marker at the end.
                        pos = buf.len().saturating_sub(15).max(pos);
                        break;
                    }
                }
            }
            let block_off = buf_off + pos as u64;
            if block_off >= end {
                return Ok(consumed);
            }
            let rest = &buf[pos..];
            if rest.len() < 20 {
                break;
            }
            if &rest[..16] != sync {
                return Err(Error::Corrupt(format!("no sync marker at byte {block_off}")));
            }
            let len = u32::from_le_bytes([rest[16], rest[17], rest[18], rest[19]]) as usize;
            if rest.len() < 20 + len {
                break;
            }
            let payload = &rest[20..20 + len];
            let mut p = 0;
            while let Some((k, v)) = parse_record(payload, &mut p)? {
                f(&payload[k], &payload[v])?;
            }
            pos += 20 + len;
        }
        if at_eof {
            if !seeking && pos < buf.len() && buf_off + (pos as u64) < end {
                return Err(Error::Corrupt(format!(
                    "record block at byte {} is cut short",
                    buf_off + pos as u64
                )));
            }
            return Ok(consumed);
        }
    }
}

/// Builds record files: a header, then blocks of records each led by the sync marker.
#[derive(Debug)]
pub struct RecordFileBuilder {
    sync: [u8; 16],
    block: Vec<u8>,
    started: bool,
}

impl RecordFileBuilder {
    /// A builder with a fresh random sync marker.
    pub fn new() -> RecordFileBuilder {
        RecordFileBuilder { sync: rand::random(), block: Vec::new(), started: false }
    }

    /// Adds a record; appends the header and any full block to `out`.
    pub fn push(&mut self, key: &[u8], value: &[u8], out: &mut Vec<u8>) {
        self.start(out);
        put_record(&mut self.block, key, value);
        if self.block.len() >= RECORD_BLOCK {
            self.flush_block(out);
        }
    }

    /// Appends the header (if nothing was written yet) and the last block to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        self.flush_block(out);
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            out.extend_from_slice(RECORD_MAGIC);
            out.extend_from_slice(&self.sync);
            self.started = true;
        }
    }

    fn flush_block(&mut self, out: &mut Vec<u8>) {
        if self.block.is_empty() {
            return;
        }
        out.extend_from_slice(&self.sync);
        out.extend_from_slice(&(self.block.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.block);
        self.block.clear();
    }
}

impl Default for RecordFileBuilder {
    fn default() -> Self {
        RecordFileBuilder::new()
    }
}

/// Writes a task's output file to the DFS in the job's output format.
pub struct OutputWriter {
    format: OutputFormat,
    sep: Vec<u8>,
    writer: Option<FileWriter>,
    rt: Handle,
    buf: Vec<u8>,
    records: RecordFileBuilder,
    scratch_key: Vec<u8>,
    scratch_value: Vec<u8>,
    path: String,
    count_as: &'static str,
    /// Pairs written and not yet added to the task's counters.
    pending: u64,
}

impl std::fmt::Debug for OutputWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputWriter").field("path", &self.path).finish_non_exhaustive()
    }
}

impl OutputWriter {
    /// Creates `path` (and its parents) with `replication` (0 = cluster default); every
    /// pair written is counted as the task counter `count_as`.
    ///
    /// # Errors
    /// DFS errors creating the file.
    pub fn create(
        rt: &Handle,
        client: &Client,
        path: &str,
        format: OutputFormat,
        sep: &[u8],
        replication: u32,
        count_as: &'static str,
    ) -> Result<OutputWriter> {
        let opts = CreateOptions { replication, create_parents: true, ..CreateOptions::default() };
        let writer = rt.block_on(client.create(path, opts))?;
        Ok(OutputWriter {
            format,
            sep: sep.to_vec(),
            writer: Some(writer),
            rt: rt.clone(),
            buf: Vec::with_capacity(WRITE_BUF + (1 << 20)),
            records: RecordFileBuilder::new(),
            scratch_key: Vec::new(),
            scratch_value: Vec::new(),
            path: path.to_owned(),
            count_as,
            pending: 0,
        })
    }

    fn flush(&mut self, force: bool) -> Result<()> {
        if self.buf.is_empty() || (!force && self.buf.len() < WRITE_BUF) {
            return Ok(());
        }
        let Some(w) = self.writer.as_mut() else {
            return Err(Error::FailedPrecondition(format!("{} is already closed", self.path)));
        };
        self.rt.block_on(w.write_all(&self.buf))?;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is buffered and closes the file; returns its length.
    ///
    /// # Errors
    /// DFS errors writing or completing the file.
    pub fn close(mut self) -> Result<u64> {
        if self.format == OutputFormat::Records {
            self.records.finish(&mut self.buf);
        }
        self.flush(true)?;
        let w = self
            .writer
            .take()
            .ok_or_else(|| Error::FailedPrecondition(format!("{} is already closed", self.path)))?;
        // The timer must be created inside the runtime, hence the async block.
        let written = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(600), w.close()).await });
        match written {
            Ok(r) => Ok(r?),
            Err(_) => Err(Error::Io {
                what: format!("closing {}", self.path),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
            }),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl<K, V> Sink<K, V> for OutputWriter
where
    K: EncodeKey + ToText + ?Sized,
    V: Serialize + ToText + ?Sized,
{
    #[inline]
    fn emit(&mut self, key: &K, value: &V, _counters: &mut Counters) -> Result<()> {
        self.pending += 1;
        match self.format {
            OutputFormat::Text => {
                key.write_text(&mut self.buf);
                self.buf.extend_from_slice(&self.sep);
                value.write_text(&mut self.buf);
                self.buf.push(b'\n');
            }
            OutputFormat::Records => {
                self.scratch_key.clear();
                key.encode_key(&mut self.scratch_key);
                self.scratch_value.clear();
                encode_value(value, &mut self.scratch_value)?;
                self.records.push(&self.scratch_key, &self.scratch_value, &mut self.buf);
            }
        }
        self.flush(false)
    }

    fn flush_counts(&mut self, counters: &mut Counters) {
        counters.add(crate::counters::TASK, self.count_as, std::mem::take(&mut self.pending));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `data[from..]` in pieces of `size` bytes.
    fn pieces(data: &[u8], from: u64, size: usize) -> impl FnMut() -> Result<Option<Bytes>> {
        let mut at = from as usize;
        let data = data.to_vec();
        move || {
            if at >= data.len() {
                return Ok(None);
            }
            let n = size.min(data.len() - at);
            let b = Bytes::copy_from_slice(&data[at..at + n]);
            at += n;
            Ok(Some(b))
        }
    }

    fn lines_of_split(data: &[u8], start: u64, end: u64, piece: usize) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        read_text_split(pieces(data, start.saturating_sub(1), piece), start, end, |o, l| {
            out.push((o, l.to_vec()));
            Ok(())
        })
        .unwrap();
        out
    }

    fn all_lines(data: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut off = 0u64;
        for l in data.split_inclusive(|&b| b == b'\n') {
            let body = l.strip_suffix(b"\n").unwrap_or(l);
            out.push((off, trim_cr(body).to_vec()));
            off += l.len() as u64;
        }
        out
    }

    #[test]
    fn every_line_is_read_exactly_once_whatever_the_split_points() {
        let texts: Vec<&[u8]> = vec![
            b"alpha beta\ngamma\n\n\ndelta epsilon zeta\nlast line without newline",
            b"\n\nx\n",
            b"one\r\ntwo\r\n",
            b"single",
            b"",
            b"\n",
        ];
        for data in texts {
            let want = all_lines(data);
            let len = data.len() as u64;
            for size in 1..=len.max(1) {
                for piece in [1usize, 2, 3, 7, 64] {
                    let mut got = Vec::new();
                    let mut start = 0;
                    while start < len {
                        let end = (start + size).min(len);
                        got.extend(lines_of_split(data, start, end, piece));
                        start = end;
                    }
                    assert_eq!(got, want, "split size {size}, piece {piece}, {data:?}");
                }
            }
        }
    }

    #[test]
    fn a_split_inside_one_long_line_reads_nothing() {
        let data = b"aaaaaaaaaaaaaaaaaaaa\nbb\n";
        assert!(lines_of_split(data, 5, 10, 4).is_empty());
        assert_eq!(lines_of_split(data, 0, 5, 4), vec![(0, b"aaaaaaaaaaaaaaaaaaaa".to_vec())]);
        assert_eq!(lines_of_split(data, 10, 24, 4), vec![(21, b"bb".to_vec())]);
    }

    #[test]
    fn record_files_split_anywhere_read_every_record_once() {
        let mut b = RecordFileBuilder::new();
        let mut file = Vec::new();
        let mut want = Vec::new();
        for i in 0..20_000u32 {
            let k = format!("key{i:06}").into_bytes();
            let v = vec![(i % 251) as u8; (i % 300) as usize];
            b.push(&k, &v, &mut file);
            want.push((k, v));
        }
        b.finish(&mut file);
        let sync = parse_record_header(&file, "f").unwrap();
        let len = file.len() as u64;
        for size in [len, len / 2 + 1, 1 << 20, 300_001, 65_536] {
            let mut got = Vec::new();
            let mut start = 0;
            while start < len {
                let end = (start + size).min(len);
                let from = start.max(RECORD_HEADER);
                read_record_split(pieces(&file, from, 100_000), &sync, start, end, |k, v| {
                    got.push((k.to_vec(), v.to_vec()));
                    Ok(())
                })
                .unwrap();
                start = end;
            }
            assert_eq!(got.len(), want.len(), "split size {size}");
            assert!(got == want, "split size {size}");
        }
        assert!(parse_record_header(b"not a record file at all!", "f").is_err());
    }

    #[test]
    fn an_empty_record_file_has_only_a_header() {
        let mut b = RecordFileBuilder::new();
        let mut file = Vec::new();
        b.finish(&mut file);
        assert_eq!(file.len() as u64, RECORD_HEADER);
        let sync = parse_record_header(&file, "f").unwrap();
        let n = read_record_split(pieces(&file, 24, 10), &sync, 0, 24, |_, _| Ok(())).unwrap();
        assert_eq!(n, 0);
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use proptest::sample::Index;
    use proto::alloc_probe::largest_allocation;

    use super::*;

    /// Feeds `data[from..]` in pieces of `size` bytes.
    fn pieces(data: &[u8], from: u64, size: usize) -> impl FnMut() -> Result<Option<Bytes>> {
        let mut at = (from as usize).min(data.len());
        let data = data.to_vec();
        move || {
            if at >= data.len() {
                return Ok(None);
            }
            let n = size.min(data.len() - at);
            at += n;
            Ok(Some(Bytes::copy_from_slice(&data[at - n..at])))
        }
    }

    /// Every record of a whole record file, read as one split.
    fn read_file(file: &[u8], piece: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let sync = parse_record_header(file, "f")?;
        let mut got = Vec::new();
        read_record_split(
            pieces(file, RECORD_HEADER, piece),
            &sync,
            0,
            file.len() as u64,
            |k, v| {
                got.push((k.to_vec(), v.to_vec()));
                Ok(())
            },
        )?;
        Ok(got)
    }

    fn records() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
        let bytes = || prop::collection::vec(any::<u8>(), 0..40);
        prop::collection::vec((bytes(), bytes()), 0..20)
    }

    fn record_file(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut b = RecordFileBuilder::new();
        let mut file = Vec::new();
        for (k, v) in records {
            b.push(k, v, &mut file);
        }
        b.finish(&mut file);
        file
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Text splits: whatever the split points and piece sizes, every line is read
        /// exactly once, at its offset.
        #[test]
        fn every_line_is_read_once(
            text in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), Just(b'b')], 0..80),
            splits in prop::collection::vec(any::<Index>(), 0..4),
            piece in 1..20usize,
        ) {
            let len = text.len() as u64;
            let mut want = Vec::new();
            let mut off = 0u64;
            for l in text.split_inclusive(|&b| b == b'\n') {
                let body = l.strip_suffix(b"\n").unwrap_or(l);
                want.push((off, trim_cr(body).to_vec()));
                off += l.len() as u64;
            }
            let mut bounds: Vec<u64> = splits.iter().map(|s| s.index(text.len() + 1) as u64).collect();
            bounds.extend([0, len]);
            bounds.sort_unstable();
            bounds.dedup();
            let mut got = Vec::new();
            for w in bounds.windows(2) {
                read_text_split(pieces(&text, w[0].saturating_sub(1), piece), w[0], w[1], |o, l| {
                    got.push((o, l.to_vec()));
                    Ok(())
                })
                .expect("read");
            }
            prop_assert_eq!(got, want);
        }

        #[test]
        fn record_files_round_trip(records in records(), piece in 1..200usize) {
            prop_assert_eq!(read_file(&record_file(&records), piece).expect("read"), records);
        }

        /// A damaged record file (no checksum of its own: the DFS verifies its blocks) may
        /// read as other records, but never panics, never allocates for a length it
        /// cannot hold, and fails only as not a record file or corrupt.
        #[test]
        fn damaged_record_files_never_panic(
            records in records(),
            at in any::<Index>(),
            how in prop_oneof![
                (0..8u8).prop_map(|b| (Some(b), None, None)),
                any::<Index>().prop_map(|c| (None, Some(c), None)),
                prop_oneof![Just(u32::MAX), Just(1 << 31), 0..64u32].prop_map(|l| (None, None, Some(l))),
            ],
        ) {
            let mut file = record_file(&records);
            match how {
                (Some(bit), _, _) => {
                    let i = at.index(file.len());
                    file[i] ^= 1 << bit;
                }
                (_, Some(cut), _) => file.truncate(cut.index(file.len() + 1)),
                (_, _, Some(len)) if file.len() >= 44 => {
                    // The first block's length field.
                    file[40..44].copy_from_slice(&len.to_le_bytes());
                }
                _ => {}
            }
            let (read, largest) = largest_allocation(|| read_file(&file, 64));
            prop_assert!(largest <= 4096 + 2 * file.len(), "{} bytes allocated {}", file.len(), largest);
            if let Err(e) = read {
                prop_assert!(matches!(e, Error::Corrupt(_) | Error::Decode(_)), "{}", e);
            }
        }
    }
}
