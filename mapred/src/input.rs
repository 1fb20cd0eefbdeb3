//! Input formats: how a job's input is cut into splits and how a map task reads the
//! records of its split.
//!
//! [`InputFormat`] is an open trait, as Hadoop's is: a job may bring its own. It has two
//! halves that run in different processes:
//!
//! - [`InputFormat::split`] runs in the **submitting** process (the job binary's
//!   `submit`), once per input file, and returns that file's [`Split`]s; the splits travel
//!   in the submit request, one map task each (Hadoop's job client writes them the same
//!   way). The coordinator never runs job code.
//! - [`InputFormat::read`] runs in each **map attempt**, with a [`SplitReader`] over its
//!   split's file, and hands every record it owns to the framework as an [`Input`]. The
//!   framework counts, skips (see [`crate::progress`]) and maps them.
//!
//! A split is a byte range of one file; which records a range *owns* is the format's
//! rule, and every record must be owned by exactly one split of its file (text: the lines
//! that start in the range, [`crate::format::read_text_split`]).
//!
//! Built in, by the names `mapred.input.format` takes ([`builtin`]): [`TextInput`]
//! (`text`, lines), [`KeyValueTextInput`] (`keyvalue`, lines cut at the first tab),
//! [`RecordInput`] (`records`, the record files an earlier job wrote with
//! `mapred.output.format=records`), [`WholeFileInput`] (`wholefile`, one record per
//! file: its path and bytes) and [`GeneratedInput`] (`generate`, no files:
//! `mapred.generate.maps` maps of one record each).

use std::sync::Arc;

use bytes::Bytes;
use dfs::{Client, FileReader};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::api::Input;
use crate::config::{JobConf, keys};
use crate::error::{Error, Result};
use crate::format::{
    RECORD_HEADER, parse_record_header, read_record_split, read_text_split, spawn_reader,
};
use crate::progress::Progress;
use crate::spec::{MAX_SPLITS, Split};

/// How a job's input is split and read (see the module documentation).
pub trait InputFormat: Send + Sync + 'static {
    /// The format's name, for messages.
    fn name(&self) -> &str;

    /// Cuts one input file into splits, each read by one map task. Runs in the
    /// submitting process. The default is one split per chunk
    /// ([`InputFile::chunk_splits`]), so each map can run where a replica of its data is.
    ///
    /// # Errors
    /// Whatever the format finds wrong with the file; the submit fails with it.
    fn split(&self, file: &InputFile, _conf: &JobConf) -> Result<Vec<Split>> {
        Ok(file.chunk_splits())
    }

    /// For input that is not read from files: how many map tasks to run, each given a
    /// split without a path. `None` (the default): the job reads its `--input` files.
    ///
    /// # Errors
    /// A malformed option.
    fn generated_maps(&self, _conf: &JobConf) -> Result<Option<u32>> {
        Ok(None)
    }

    /// Reads the records the split of `reader` owns, handing each to `records` in order.
    /// Runs in the map attempt.
    ///
    /// # Errors
    /// Read errors, a malformed file, and the first error `records` returns (which must
    /// be passed on: it is the mapper's).
    fn read(
        &self,
        reader: &mut SplitReader<'_>,
        records: &mut dyn FnMut(Input<'_>) -> Result<()>,
    ) -> Result<()>;
}

/// The built-in format called `name` (as `mapred.input.format` names it).
///
/// # Errors
/// [`Error::InvalidArgument`] listing the names for an unknown one.
pub fn builtin(name: &str) -> Result<Arc<dyn InputFormat>> {
    Ok(match name {
        "" | "text" => Arc::new(TextInput),
        "keyvalue" => Arc::new(KeyValueTextInput),
        "records" => Arc::new(RecordInput),
        "wholefile" => Arc::new(WholeFileInput),
        "generate" => Arc::new(GeneratedInput),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "unknown input format {name:?} (expected text, keyvalue, records, wholefile or generate)"
            )));
        }
    })
}

/// One chunk of an input file and where its replicas are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkPlace {
    /// Offset of the chunk in its file.
    pub offset: u64,
    /// Its length.
    pub length: u64,
    /// Hosts holding a replica.
    pub hosts: Vec<String>,
    /// Their racks.
    pub racks: Vec<String>,
}

/// An input file as a format splits it: its path, length and chunks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputFile {
    /// Its absolute DFS path.
    pub path: String,
    /// Its length in bytes.
    pub length: u64,
    /// Its chunks in order (none for an empty file).
    pub chunks: Vec<ChunkPlace>,
}

impl InputFile {
    /// One split per (non-empty) chunk: the default split of every format.
    pub fn chunk_splits(&self) -> Vec<Split> {
        self.chunks
            .iter()
            .filter(|c| c.length > 0)
            .map(|c| self.place(c, c.offset, c.length))
            .collect()
    }

    /// The whole file as one split (also for an empty file), placed where its first
    /// chunk is.
    pub fn whole(&self) -> Split {
        self.range(0, self.length)
    }

    /// The split `[start, start + length)`, placed where the chunk holding `start` is.
    pub fn range(&self, start: u64, length: u64) -> Split {
        let chunk = self.chunks.iter().find(|c| c.offset <= start && start < c.offset + c.length);
        match chunk {
            Some(c) => self.place(c, start, length),
            None => Split {
                path: self.path.clone(),
                start,
                length,
                file_length: self.length,
                ..Split::default()
            },
        }
    }

    fn place(&self, c: &ChunkPlace, start: u64, length: u64) -> Split {
        Split {
            path: self.path.clone(),
            start,
            length,
            file_length: self.length,
            hosts: c.hosts.clone(),
            racks: c.racks.clone(),
        }
    }
}

/// The files of `inputs` (absolute paths: a file, or the files of a directory, skipping
/// names that start with `_` or `.` as Hadoop does), with their chunks' locations.
///
/// # Errors
/// [`Error::NotFound`] naming the first input that does not exist; DFS errors.
pub async fn list_input_files(client: &Client, inputs: &[String]) -> Result<Vec<InputFile>> {
    let mut out = Vec::new();
    for input in inputs {
        let st = match client.try_stat(input.as_str()).await? {
            Some(st) => st,
            None => return Err(Error::NotFound(format!("input path {input} does not exist"))),
        };
        let files = if st.is_dir() {
            client
                .list(input.as_str())
                .await?
                .into_iter()
                .filter(|f| {
                    let name = f.path.as_str().rsplit('/').next().unwrap_or_default();
                    f.is_file() && !name.starts_with('_') && !name.starts_with('.')
                })
                .collect()
        } else {
            vec![st]
        };
        for f in files {
            let mut file =
                InputFile { path: f.path.to_string(), length: f.length, chunks: Vec::new() };
            if f.length > 0 {
                let reader = client.open(f.path.as_str()).await?;
                file.length = reader.len();
                file.chunks = reader
                    .chunks()
                    .iter()
                    .map(|c| ChunkPlace {
                        offset: c.offset,
                        length: c.length,
                        hosts: c.replicas.iter().map(|r| host_of(&r.addr)).collect(),
                        racks: c.replicas.iter().map(|r| r.rack.clone()).collect(),
                    })
                    .collect();
            }
            out.push(file);
        }
    }
    Ok(out)
}

/// The host of a `host:port` address.
fn host_of(addr: &str) -> String {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_owned()
}

/// Which format and which mapper read which input: a job's default and the inputs bound
/// to their own (Hadoop's `MultipleInputs`). Consulted alike at submit (to split) and in
/// each map attempt (to read), so both agree.
#[derive(Clone)]
pub(crate) struct Routes {
    /// The job's default format (`mapred.input.format` overrides it).
    pub default: Arc<dyn InputFormat>,
    /// Bound inputs, first match wins.
    pub bound: Vec<(InputPattern, Arc<dyn InputFormat>)>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bound: Vec<(&str, &str)> =
            self.bound.iter().map(|(p, f)| (p.as_str(), f.name())).collect();
        f.debug_struct("Routes")
            .field("default", &self.default.name())
            .field("bound", &bound)
            .finish()
    }
}

impl Routes {
    /// The binding (index into `bound`) that reads `path`, if any, and its format;
    /// `None` and the default format (or the one `mapred.input.format` names) otherwise.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown `mapred.input.format`.
    pub fn route(
        &self,
        conf: &JobConf,
        path: &str,
    ) -> Result<(Option<usize>, Arc<dyn InputFormat>)> {
        if !path.is_empty()
            && let Some(i) = self.bound.iter().position(|(p, _)| p.matches(path))
        {
            return Ok((Some(i), self.bound[i].1.clone()));
        }
        match conf.get(keys::INPUT_FORMAT) {
            Some(name) => Ok((None, builtin(name)?)),
            None => Ok((None, self.default.clone())),
        }
    }

    /// The splits of a job reading `inputs` (absolute paths, patterns expanded).
    ///
    /// # Errors
    /// No inputs for a job that reads files, a missing input, a format's error, more
    /// than [`MAX_SPLITS`] splits; DFS errors.
    pub async fn splits(
        &self,
        client: &Client,
        inputs: &[String],
        conf: &JobConf,
    ) -> Result<Vec<Split>> {
        let (_, default) = self.route(conf, "")?;
        if let Some(n) = default.generated_maps(conf)? {
            if n as usize > MAX_SPLITS {
                return Err(too_many(n as usize));
            }
            return Ok((0..n).map(|_| Split::default()).collect());
        }
        if inputs.is_empty() {
            return Err(Error::InvalidArgument("no input paths given (--input)".into()));
        }
        let mut splits = Vec::new();
        for file in list_input_files(client, inputs).await? {
            let (_, format) = self.route(conf, &file.path)?;
            splits.extend(format.split(&file, conf)?);
            if splits.len() > MAX_SPLITS {
                return Err(too_many(splits.len()));
            }
        }
        Ok(splits)
    }
}

fn too_many(n: usize) -> Error {
    Error::InvalidArgument(format!(
        "the input makes {n} or more map tasks, at most {MAX_SPLITS} are allowed"
    ))
}

/// A pattern naming inputs that a mapper and format are bound to: components matched as
/// `dfs` globs match them (`*`, `?`, `[...]`). A pattern starting with `/` matches a path
/// it is a prefix of, component by component (so a directory's pattern matches every
/// file in it); one without matches any run of whole components (`users` matches
/// `/data/users/part-0`, `orders-*.csv` matches `/in/orders-1.csv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputPattern(String);

impl InputPattern {
    /// The pattern `p`.
    pub fn new(p: &str) -> InputPattern {
        InputPattern(p.to_owned())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if `path` (absolute) is matched.
    pub fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let pat: Vec<&str> = self.0.split('/').filter(|c| !c.is_empty()).collect();
        if pat.is_empty() || pat.len() > parts.len() {
            return false;
        }
        let at = |i: usize| pat.iter().zip(&parts[i..]).all(|(p, c)| dfs::glob::matches(p, c));
        if self.0.starts_with('/') { at(0) } else { (0..=parts.len() - pat.len()).any(at) }
    }
}

/// What a format's [`InputFormat::read`] reads its split through: the split, the job's
/// options, and the split's file in the DFS, read ahead on the attempt's I/O runtime.
/// Bytes read are counted (`DFS_BYTES_READ`) and the attempt shows it is alive while it
/// waits on the DFS.
pub struct SplitReader<'a> {
    split: &'a Split,
    conf: &'a JobConf,
    map: u32,
    maps: u32,
    rt: &'a Handle,
    client: &'a Client,
    progress: &'a Arc<Progress>,
    file: Option<FileReader>,
    piece: u64,
    consumed: u64,
}

impl std::fmt::Debug for SplitReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitReader").field("split", self.split).finish_non_exhaustive()
    }
}

impl<'a> SplitReader<'a> {
    /// A reader of `split` for map `map` of `maps`.
    #[allow(clippy::too_many_arguments)] // crate-internal: built in one place
    pub(crate) fn new(
        split: &'a Split,
        conf: &'a JobConf,
        map: u32,
        maps: u32,
        rt: &'a Handle,
        client: &'a Client,
        progress: &'a Arc<Progress>,
    ) -> Result<SplitReader<'a>> {
        let piece = conf.get_u64(keys::READ_RANGE, 16 << 20)?.max(1 << 16);
        Ok(SplitReader {
            split,
            conf,
            map,
            maps,
            rt,
            client,
            progress,
            file: None,
            piece,
            consumed: 0,
        })
    }

    /// The split to read.
    pub fn split(&self) -> &'a Split {
        self.split
    }

    /// The job's options.
    pub fn conf(&self) -> &'a JobConf {
        self.conf
    }

    /// This map's index and the job's number of maps.
    pub fn map_index(&self) -> (u32, u32) {
        (self.map, self.maps)
    }

    /// Bytes read from the DFS so far.
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    fn file(&mut self) -> Result<FileReader> {
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        if self.split.path.is_empty() {
            return Err(Error::InvalidArgument("this split has no file to read".into()));
        }
        let _pulse = self.progress.pulse_while();
        let f = self.rt.block_on(self.client.open(self.split.path.as_str()))?;
        self.file = Some(f.clone());
        Ok(f)
    }

    /// Reads `len` bytes at `offset` of the split's file (fewer at its end).
    ///
    /// # Errors
    /// DFS errors.
    pub fn read_range(&mut self, offset: u64, len: u64) -> Result<Bytes> {
        let f = self.file()?;
        let _pulse = self.progress.pulse_while();
        let b = self.rt.block_on(f.read_range(offset, len))?;
        self.consumed += b.len() as u64;
        Ok(b)
    }

    /// Streams the split's file from `from` in pieces, reading ahead: large pieces up to
    /// `end`, then small ones (a split may need a little past its end to finish its last
    /// record). Dropping the stream stops the reading.
    ///
    /// # Errors
    /// DFS errors opening the file.
    pub fn stream(&mut self, from: u64, end: u64) -> Result<Pieces<'_>> {
        let f = self.file()?;
        let rx = spawn_reader(self.rt, f, from, end, self.piece);
        Ok(Pieces { rx, consumed: &mut self.consumed })
    }
}

/// Consecutive pieces of a file (see [`SplitReader::stream`]).
#[derive(Debug)]
pub struct Pieces<'r> {
    rx: mpsc::Receiver<Result<Bytes>>,
    consumed: &'r mut u64,
}

impl Pieces<'_> {
    /// The next piece, or `None` at the end of the file.
    ///
    /// # Errors
    /// The DFS error that ended the stream.
    pub fn next_piece(&mut self) -> Result<Option<Bytes>> {
        let p = self.rx.blocking_recv().transpose()?;
        if let Some(b) = &p {
            *self.consumed += b.len() as u64;
        }
        Ok(p)
    }
}

/// Lines of text: each record is a line (without its `\n` or `\r\n`) and its byte
/// offset; a split owns the lines that start in it ([`Input::line`], [`Input::offset`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct TextInput;

impl InputFormat for TextInput {
    fn name(&self) -> &str {
        "text"
    }

    fn read(
        &self,
        reader: &mut SplitReader<'_>,
        records: &mut dyn FnMut(Input<'_>) -> Result<()>,
    ) -> Result<()> {
        let split = reader.split();
        let mut pieces = reader.stream(split.start.saturating_sub(1), split.end())?;
        read_text_split(
            || pieces.next_piece(),
            split.start,
            split.end(),
            |offset, line| records(Input::line_at(offset, line)),
        )?;
        Ok(())
    }
}

/// Lines of text cut at their first tab into a key and a value (Hadoop's
/// `KeyValueTextInputFormat`); a line without a tab is all key, with an empty value.
/// Split as [`TextInput`]. The key is [`Input::key_text`], the value [`Input::text`].
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyValueTextInput;

impl InputFormat for KeyValueTextInput {
    fn name(&self) -> &str {
        "keyvalue"
    }

    fn read(
        &self,
        reader: &mut SplitReader<'_>,
        records: &mut dyn FnMut(Input<'_>) -> Result<()>,
    ) -> Result<()> {
        let split = reader.split();
        let mut pieces = reader.stream(split.start.saturating_sub(1), split.end())?;
        read_text_split(
            || pieces.next_piece(),
            split.start,
            split.end(),
            |offset, line| {
                let (key, value) = match memchr::memchr(b'\t', line) {
                    Some(i) => (&line[..i], &line[i + 1..]),
                    None => (line, &line[line.len()..]),
                };
                records(Input::key_value(offset, key, value))
            },
        )?;
        Ok(())
    }
}

/// The framework's record files (written with `mapred.output.format=records`): keys and
/// values in their encoded form, decoded with [`Input::key`] and [`Input::value`], so a
/// job reads an earlier job's output without parsing text. A split owns the blocks whose
/// sync marker starts in it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordInput;

impl InputFormat for RecordInput {
    fn name(&self) -> &str {
        "records"
    }

    fn read(
        &self,
        reader: &mut SplitReader<'_>,
        records: &mut dyn FnMut(Input<'_>) -> Result<()>,
    ) -> Result<()> {
        let split = reader.split();
        let header = reader.read_range(0, RECORD_HEADER)?;
        let sync = parse_record_header(&header, &split.path)?;
        let mut pieces = reader.stream(split.start.max(RECORD_HEADER), split.end())?;
        read_record_split(
            || pieces.next_piece(),
            &sync,
            split.start,
            split.end(),
            |k, v| records(Input::record(k, v)),
        )?;
        Ok(())
    }
}

/// One record per file: its path ([`Input::file_name`]) and its whole contents
/// ([`Input::bytes`]), as Hadoop's `WholeFileInputFormat` and the classic lab's
/// `Map(filename, contents)`. Files are not split (an empty file is a record too), and a
/// file is held in memory whole, so this suits many small files, not a few huge ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct WholeFileInput;

impl InputFormat for WholeFileInput {
    fn name(&self) -> &str {
        "wholefile"
    }

    fn split(&self, file: &InputFile, _conf: &JobConf) -> Result<Vec<Split>> {
        Ok(vec![file.whole()])
    }

    fn read(
        &self,
        reader: &mut SplitReader<'_>,
        records: &mut dyn FnMut(Input<'_>) -> Result<()>,
    ) -> Result<()> {
        let split = reader.split();
        let bytes = if split.file_length == 0 {
            Bytes::new()
        } else {
            reader.read_range(0, split.file_length)?
        };
        records(Input::file(&split.path, &bytes))
    }
}

/// No input files: `mapred.generate.maps` map tasks (default 1), each called once with
/// [`Input::generated_index`] (teragen, pi, sleep).
#[derive(Debug, Clone, Copy, Default)]
pub struct GeneratedInput;

impl InputFormat for GeneratedInput {
    fn name(&self) -> &str {
        "generate"
    }

    fn generated_maps(&self, conf: &JobConf) -> Result<Option<u32>> {
        let n = conf.get_u64(keys::GENERATE_MAPS, 1)?.clamp(1, MAX_SPLITS as u64);
        Ok(Some(n as u32))
    }

    fn read(
        &self,
        reader: &mut SplitReader<'_>,
        records: &mut dyn FnMut(Input<'_>) -> Result<()>,
    ) -> Result<()> {
        let (index, maps) = reader.map_index();
        records(Input::generated(index, maps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_prefixes_or_runs_of_components() {
        let p = InputPattern::new("/data/users");
        assert!(p.matches("/data/users"));
        assert!(p.matches("/data/users/part-0"));
        assert!(!p.matches("/data/users2/part-0"));
        assert!(!p.matches("/x/data/users/part-0"), "absolute: anchored at the root");
        let p = InputPattern::new("users");
        assert!(p.matches("/data/users/part-0"));
        assert!(p.matches("/users"));
        assert!(!p.matches("/data/users-old/part-0"));
        let p = InputPattern::new("orders-*.csv");
        assert!(p.matches("/in/orders-1.csv"));
        assert!(!p.matches("/in/orders-1.tsv"));
        let p = InputPattern::new("/logs/2026-*/x");
        assert!(p.matches("/logs/2026-01/x/part-1"));
        assert!(!p.matches("/logs/2025-01/x/part-1"));
        assert!(!InputPattern::new("").matches("/a"));
    }

    #[test]
    fn files_split_per_chunk_or_whole() {
        let chunk = |offset, host: &str| ChunkPlace {
            offset,
            length: 10,
            hosts: vec![host.into()],
            racks: vec!["/r".into()],
        };
        let f = InputFile {
            path: "/f".into(),
            length: 25,
            chunks: vec![chunk(0, "a"), chunk(10, "b"), ChunkPlace { length: 5, ..chunk(20, "c") }],
        };
        let s = f.chunk_splits();
        assert_eq!(
            s.iter().map(|s| (s.start, s.length)).collect::<Vec<_>>(),
            [(0, 10), (10, 10), (20, 5)]
        );
        assert_eq!(s[1].hosts, ["b"]);
        let w = WholeFileInput.split(&f, &JobConf::new()).unwrap();
        assert_eq!(
            (w.len(), w[0].start, w[0].length, w[0].hosts.clone()),
            (1, 0, 25, vec!["a".to_owned()])
        );
        let empty = InputFile { path: "/e".into(), ..InputFile::default() };
        assert!(TextInput.split(&empty, &JobConf::new()).unwrap().is_empty());
        assert_eq!(
            WholeFileInput.split(&empty, &JobConf::new()).unwrap().len(),
            1,
            "an empty file is a record"
        );
        assert_eq!(f.range(12, 3).hosts, ["b"]);
    }

    #[test]
    fn builtin_formats_by_name() {
        for n in ["text", "keyvalue", "records", "wholefile", "generate"] {
            assert_eq!(builtin(n).unwrap().name(), n);
        }
        let err = builtin("csv").err().expect("unknown").to_string();
        assert!(err.contains("unknown input format \"csv\""), "{err}");
    }
}
