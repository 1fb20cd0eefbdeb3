//! What travels between the coordinator, a worker and a task attempt's child process:
//! [`TaskSpec`] (the coordinator's assignment, completed by the worker with local paths
//! and written to a JSON file for the child) and [`TaskResult`] (what the child writes
//! back). Plus the small shared vocabulary: [`TaskKind`], [`Split`] (with its wire form,
//! checked at the coordinator's edge), [`OutputFormat`], [`MapOutputLoc`].
//!
//! JSON rather than protobuf because the file is read by the same crate that wrote it and
//! people debugging a failed attempt read it too.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::JobConf;
use crate::counters::Counters;
use crate::error::{Error, Result};

/// Map or reduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// A map task.
    Map,
    /// A reduce task.
    Reduce,
}

impl TaskKind {
    /// `m` or `r`, as in attempt ids and part file names.
    pub fn letter(self) -> char {
        match self {
            TaskKind::Map => 'm',
            TaskKind::Reduce => 'r',
        }
    }
}

/// How a job's output is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// `key<SEP>value` lines.
    #[default]
    Text,
    /// Key/value record files, readable by [`crate::input::RecordInput`].
    Records,
}

impl OutputFormat {
    /// Parses `text` or `records`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for anything else.
    pub fn parse(s: &str) -> Result<OutputFormat> {
        match s {
            "" | "text" => Ok(OutputFormat::Text),
            "records" => Ok(OutputFormat::Records),
            _ => Err(Error::InvalidArgument(format!(
                "unknown output format {s:?} (expected text or records)"
            ))),
        }
    }
}

/// A piece of input for one map task: a byte range of a file, on chunk boundaries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// The file (empty for generated input).
    pub path: String,
    /// First byte of the range.
    pub start: u64,
    /// Bytes in the range.
    pub length: u64,
    /// Length of the whole file.
    pub file_length: u64,
    /// Hosts holding a replica of the range's chunk.
    pub hosts: Vec<String>,
    /// Racks of those replicas.
    pub racks: Vec<String>,
}

/// Most splits (map tasks) a job may have: every split is a record in the
/// coordinator's memory. (The submit request carries them all, about 100 bytes for a
/// file split: gRPC's 4 MiB message limit is reached first by file input.)
pub const MAX_SPLITS: usize = 100_000;

/// Most replica hosts a split may name (a chunk has a handful of replicas).
const MAX_SPLIT_HOSTS: usize = 16;

impl Split {
    /// One past the last byte of the range.
    pub fn end(&self) -> u64 {
        self.start + self.length
    }

    /// The wire form, for the submit request.
    pub fn to_proto(&self) -> proto::mapred::InputSplit {
        proto::mapred::InputSplit {
            path: self.path.clone(),
            start: self.start,
            length: self.length,
            file_length: self.file_length,
            hosts: self.hosts.clone(),
            racks: self.racks.clone(),
        }
    }

    /// A split a submitter sent, checked: every size in it is the submitter's to choose,
    /// so each is bounded before the coordinator keeps it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a range past its file's end, an over-long path or
    /// host, or too many hosts.
    pub fn from_proto(p: proto::mapred::InputSplit) -> Result<Split> {
        let bad = |what: String| Err(Error::InvalidArgument(format!("input split: {what}")));
        if p.path.len() > proto::path::MAX_PATH_LEN {
            return bad(format!("path longer than {} bytes", proto::path::MAX_PATH_LEN));
        }
        if p.start.checked_add(p.length).is_none_or(|end| end > p.file_length) {
            return bad(format!(
                "range {}+{} is past the end of {} ({} bytes)",
                p.start, p.length, p.path, p.file_length
            ));
        }
        if p.hosts.len() > MAX_SPLIT_HOSTS || p.racks.len() > MAX_SPLIT_HOSTS {
            return bad(format!("more than {MAX_SPLIT_HOSTS} hosts or racks"));
        }
        let long = |v: &[String]| v.iter().any(|h| h.len() > proto::path::MAX_COMPONENT_LEN);
        if long(&p.hosts) || long(&p.racks) {
            return bad(format!(
                "a host or rack longer than {} bytes",
                proto::path::MAX_COMPONENT_LEN
            ));
        }
        Ok(Split {
            path: p.path,
            start: p.start,
            length: p.length,
            file_length: p.file_length,
            hosts: p.hosts,
            racks: p.racks,
        })
    }
}

/// Where one map's output can be fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapOutputLoc {
    /// Index of the map task.
    pub map: u32,
    /// The successful attempt whose output to fetch.
    pub attempt_id: String,
    /// `host:port` of the Shuffle service of the worker holding it.
    pub shuffle_addr: String,
}

/// One task attempt, as the child process needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The job's id.
    pub job_id: String,
    /// The job's name in the binary's registry.
    pub job_name: String,
    /// This attempt's id.
    pub attempt_id: String,
    /// Map or reduce (`None` never appears on the wire; default for serde only).
    pub kind: Option<TaskKind>,
    /// Index of the task among the job's maps or reduces.
    pub index: u32,
    /// DFS path of the job binary.
    pub binary_path: String,
    /// Its content hash (SHA-256, hex).
    pub binary_hash: String,
    /// The chunk store master, or a master group's members, comma-separated (as the
    /// coordinator passes it on).
    pub master: String,
    /// The coordinator.
    pub coordinator: String,
    /// The job's configuration.
    pub conf: JobConf,
    /// Number of reduce tasks (0 = map-only).
    pub reducers: u32,
    /// Number of map tasks.
    pub maps: u32,
    /// The job's output directory.
    pub output: String,
    /// The split of a map task.
    pub split: Option<Split>,
    /// For a reduce task: where every map's output is.
    pub map_outputs: Vec<MapOutputLoc>,
    /// Indexes of records (map) or key groups (reduce) to skip, sorted: each crashed
    /// earlier attempts of this task.
    #[serde(default)]
    pub skip: Vec<u64>,
    /// A replay: run only this record (map) or key group (reduce), alone, after the
    /// user code's setup and before its cleanup, discarding what it emits; the attempt
    /// writes no output. It tells whether a suspect record crashes deterministically
    /// (see [`crate::coordinator::skip`]).
    #[serde(default)]
    pub replay: Option<u64>,
    /// The submitting user: the attempt's DFS calls are made as this user (named in
    /// simple mode, proven by [`TaskSpec::dfs_token`] in token mode), so a task reads
    /// only what its user may and its output is its user's.
    #[serde(default)]
    pub user: String,
    /// The worker kills the attempt when it makes no progress for this many ms (0 = never).
    #[serde(default)]
    pub timeout_ms: u64,
    /// Filled in by the worker: its host (for nearest-replica reads).
    #[serde(default)]
    pub host: String,
    /// Filled in by the worker: the id the coordinator knows it by (for the attempt's
    /// [`crate::api::TaskInfo`]).
    #[serde(default)]
    pub worker: String,
    /// Filled in by the worker: this attempt's local directory (map output goes here).
    #[serde(default)]
    pub work_dir: PathBuf,
    /// The job's token (hex), which its reducers prove their fetches with.
    #[serde(default)]
    pub job_token: String,
    /// Token mode: a token naming the submitting user, minted by the coordinator, which
    /// the attempt makes its DFS calls (and a reducer its shuffle calls) with. The worker
    /// takes it out of the spec and hands it to the attempt in a 0600 file
    /// (`DFS_TOKEN_FILE`); it is never written into `spec.json`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dfs_token: String,
}

impl TaskSpec {
    /// The task's kind.
    ///
    /// # Errors
    /// [`Error::Protocol`] if the spec has none.
    pub fn task_kind(&self) -> Result<TaskKind> {
        self.kind.ok_or_else(|| Error::Protocol(format!("spec of {} has no kind", self.attempt_id)))
    }

    /// Where the child writes its [`TaskResult`].
    pub fn result_file(&self) -> PathBuf {
        self.work_dir.join("result.json")
    }

    /// Where the attempt writes the message and location of a panic (the worker quotes
    /// it in the report of a crash).
    pub fn panic_file(&self) -> PathBuf {
        self.work_dir.join("panic")
    }

    /// The small memory-mapped file holding the index of the record being processed.
    pub fn progress_file(&self) -> PathBuf {
        self.work_dir.join("progress")
    }

    /// The output file name of this task: `part-r-00003` / `part-m-00003`.
    pub fn part_name(&self) -> String {
        let letter = self.kind.map_or('m', TaskKind::letter);
        format!("part-{letter}-{:05}", self.index)
    }

    /// Where this attempt writes its output in the DFS before it is committed.
    pub fn temp_output(&self) -> String {
        format!(
            "{}/_temporary/{}/{}",
            self.output.trim_end_matches('/'),
            self.attempt_id,
            self.part_name()
        )
    }

    /// Where this attempt lists the records it skipped before they are committed to
    /// `OUT/_skipped/<part name>`.
    pub fn temp_skipped(&self) -> String {
        format!(
            "{}/_temporary/{}/skipped-{}",
            self.output.trim_end_matches('/'),
            self.attempt_id,
            self.part_name()
        )
    }
}

/// Where the records skipped by task `kind` `index` of a job writing to `output` end up.
pub fn skipped_name(output: &str, kind: TaskKind, index: u32) -> String {
    format!("{}/_skipped/part-{}-{index:05}", output.trim_end_matches('/'), kind.letter())
}

/// What a finished attempt reports (written by the child to [`TaskSpec::result_file`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Its counters.
    pub counters: Counters,
    /// The user code's or framework's error, if it failed.
    pub error: Option<String>,
    /// The DFS file to commit (reduce, or map of a map-only job).
    pub output_path: Option<String>,
    /// The DFS file listing the records this attempt skipped, if it skipped any.
    #[serde(default)]
    pub skipped_path: Option<String>,
    /// The error is one the job's code marked deterministic ([`Error::Fatal`]): the job
    /// fails without retrying the task.
    #[serde(default)]
    pub fatal: bool,
}

impl TaskResult {
    /// Writes the result atomically (temporary file, rename).
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be written.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let text = serde_json::to_vec(self).map_err(|e| Error::Encode(format!("result: {e}")))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(Error::io(format!("cannot write {}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(Error::io(format!("cannot write {}", path.display())))
    }

    /// Reads a result written by [`TaskResult::save`].
    ///
    /// # Errors
    /// [`Error::Io`] if missing, [`Error::Decode`] if not a result.
    pub fn load(path: &std::path::Path) -> Result<TaskResult> {
        let text =
            std::fs::read(path).map_err(Error::io(format!("cannot read {}", path.display())))?;
        serde_json::from_slice(&text).map_err(|e| Error::Decode(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_round_trips() {
        let spec = TaskSpec {
            attempt_id: "attempt_1_0001_r_000003_0".into(),
            kind: Some(TaskKind::Reduce),
            index: 3,
            output: "/out/".into(),
            ..TaskSpec::default()
        };
        assert_eq!(spec.part_name(), "part-r-00003");
        assert_eq!(spec.temp_output(), "/out/_temporary/attempt_1_0001_r_000003_0/part-r-00003");
        assert_eq!(
            spec.temp_skipped(),
            "/out/_temporary/attempt_1_0001_r_000003_0/skipped-part-r-00003"
        );
        assert_eq!(skipped_name("/out/", TaskKind::Map, 2), "/out/_skipped/part-m-00002");
        let json = serde_json::to_string(&spec).unwrap();
        // A split from a submitter is bounded before the coordinator keeps it.
        let ok =
            Split { path: "/f".into(), start: 5, length: 5, file_length: 10, ..Split::default() };
        assert_eq!(Split::from_proto(ok.to_proto()).unwrap(), ok);
        let past = Split { length: 6, ..ok.clone() };
        let err = Split::from_proto(past.to_proto()).unwrap_err().to_string();
        assert_eq!(err, "input split: range 5+6 is past the end of /f (10 bytes)");
        let overflow = Split { start: u64::MAX, ..ok.clone() };
        assert!(Split::from_proto(overflow.to_proto()).is_err());
        let hosts = Split { hosts: vec!["h".into(); 17], ..ok.clone() };
        assert!(Split::from_proto(hosts.to_proto()).is_err());
        let long = Split { path: "/".repeat(proto::path::MAX_PATH_LEN + 1), ..ok };
        assert!(Split::from_proto(long.to_proto()).is_err());
        assert_eq!(serde_json::from_str::<TaskSpec>(&json).unwrap(), spec);
        let dir = tempfile::tempdir().unwrap();
        let r = TaskResult { error: Some("boom".into()), ..TaskResult::default() };
        r.save(&dir.path().join("r.json")).unwrap();
        assert_eq!(TaskResult::load(&dir.path().join("r.json")).unwrap(), r);
    }
}
