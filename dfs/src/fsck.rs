//! The result of a filesystem check as the client presents it: every file below a path,
//! its chunks with their health, each replica's chunkserver and state, and a summary.
//!
//! These types are also the `dfs fsck --json` schema (serde, snake_case field names and
//! lowercase enum values), so they change only compatibly.

use proto::gfs;
use proto::path::DfsPath;
use serde::{Deserialize, Serialize};

/// A whole fsck answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckReport {
    /// The path checked.
    pub path: String,
    /// Every file checked, in the master's order.
    pub files: Vec<FsckFile>,
    /// Counts over everything checked.
    pub summary: FsckSummary,
    /// HEALTHY unless some chunk is corrupt or missing.
    pub status: FsckStatus,
}

/// Overall verdict, as hdfs prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FsckStatus {
    /// No chunk is corrupt or missing.
    Healthy,
    /// At least one chunk has no healthy replica.
    Corrupt,
}

/// One file and its chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckFile {
    /// Absolute path.
    pub path: String,
    /// Bytes in the file.
    pub length: u64,
    /// Replication factor.
    pub replication: u32,
    /// True while a writer holds it open.
    pub under_construction: bool,
    /// Its chunks in file order.
    pub chunks: Vec<FsckChunk>,
}

/// One chunk and its replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckChunk {
    /// Handle, as 16 hex digits (chunk file names on chunkservers).
    pub handle: String,
    /// Current version.
    pub version: u64,
    /// Offset of the chunk in its file.
    pub offset: u64,
    /// Bytes in the chunk.
    pub length: u64,
    /// The chunk's health.
    pub health: ChunkHealth,
    /// Every replica the master knows.
    pub replicas: Vec<FsckReplica>,
}

/// One replica of a chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckReplica {
    /// The chunkserver's id.
    pub id: String,
    /// `host:port` of the chunkserver.
    pub addr: String,
    /// Its rack.
    pub rack: String,
    /// State of this replica.
    pub state: ReplicaState,
    /// Version the replica has.
    pub version: u64,
}

/// Health of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkHealth {
    /// As many healthy replicas as asked, spread over racks.
    Healthy,
    /// Fewer healthy replicas than the replication factor.
    UnderReplicated,
    /// Enough replicas, all on one rack while the cluster has more.
    MisReplicated,
    /// More healthy replicas than asked.
    OverReplicated,
    /// No healthy replica, at least one corrupt.
    Corrupt,
    /// No healthy replica at all.
    Missing,
    /// Last chunk of a file being written.
    UnderConstruction,
    /// The master sent a value this client does not know.
    Unknown,
}

/// State of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Live chunkserver, current version, not known corrupt.
    Healthy,
    /// Reported corrupt.
    Corrupt,
    /// On a chunkserver declared dead.
    Dead,
    /// Older version than the chunk's.
    Stale,
    /// Being written.
    Writing,
    /// On a chunkserver being decommissioned: readable, not counted.
    Decommissioning,
    /// On a decommissioned chunkserver: readable, not counted.
    Decommissioned,
    /// The master sent a value this client does not know.
    Unknown,
}

/// Counts over everything checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FsckSummary {
    /// Files checked.
    pub files: u64,
    /// Directories checked.
    pub directories: u64,
    /// Bytes in the files.
    pub total_bytes: u64,
    /// Chunks checked.
    pub chunks: u64,
    /// Healthy chunks.
    pub healthy: u64,
    /// Under-replicated chunks.
    pub under_replicated: u64,
    /// Mis-replicated chunks (one rack only).
    pub mis_replicated: u64,
    /// Over-replicated chunks.
    pub over_replicated: u64,
    /// Chunks with only corrupt replicas.
    pub corrupt: u64,
    /// Chunks with no replica.
    pub missing: u64,
    /// Chunks being written.
    pub under_construction: u64,
    /// Replicas reported corrupt.
    pub corrupt_replicas: u64,
    /// Live chunkservers.
    pub live_chunkservers: u64,
    /// Dead chunkservers.
    pub dead_chunkservers: u64,
    /// Racks with a live chunkserver.
    pub racks: u64,
    /// Files open for writing.
    pub open_files: u64,
}

impl FsckSummary {
    /// True when no chunk is corrupt or missing.
    pub fn is_healthy(&self) -> bool {
        self.corrupt == 0 && self.missing == 0
    }
}

impl FsckReport {
    /// Converts the master's answer for a check of `path`.
    pub fn from_proto(path: &DfsPath, resp: gfs::FsckResponse) -> FsckReport {
        let s = resp.summary.unwrap_or_default();
        let summary = FsckSummary {
            files: s.files,
            directories: s.directories,
            total_bytes: s.total_bytes,
            chunks: s.chunks,
            healthy: s.healthy,
            under_replicated: s.under_replicated,
            mis_replicated: s.mis_replicated,
            over_replicated: s.over_replicated,
            corrupt: s.corrupt,
            missing: s.missing,
            under_construction: s.under_construction,
            corrupt_replicas: s.corrupt_replicas,
            live_chunkservers: s.live_chunkservers,
            dead_chunkservers: s.dead_chunkservers,
            racks: s.racks,
            open_files: s.open_files,
        };
        let files = resp.files.into_iter().map(FsckFile::from).collect();
        let status = if summary.is_healthy() { FsckStatus::Healthy } else { FsckStatus::Corrupt };
        FsckReport { path: path.to_string(), files, summary, status }
    }
}

impl From<gfs::FsckFile> for FsckFile {
    fn from(f: gfs::FsckFile) -> FsckFile {
        FsckFile {
            path: f.path,
            length: f.length,
            replication: f.replication,
            under_construction: f.under_construction,
            chunks: f.chunks.into_iter().map(FsckChunk::from).collect(),
        }
    }
}

impl From<gfs::FsckChunk> for FsckChunk {
    fn from(c: gfs::FsckChunk) -> FsckChunk {
        FsckChunk {
            handle: crate::ChunkHandle(c.handle).to_string(),
            version: c.version,
            offset: c.offset,
            length: c.length,
            health: c.health().into(),
            replicas: c
                .replicas
                .into_iter()
                .map(|r| {
                    let state = r.state().into();
                    let server = r.server.unwrap_or_default();
                    FsckReplica {
                        id: server.id,
                        addr: server.addr,
                        rack: server.rack,
                        state,
                        version: r.version,
                    }
                })
                .collect(),
        }
    }
}

impl From<gfs::ChunkHealth> for ChunkHealth {
    fn from(h: gfs::ChunkHealth) -> ChunkHealth {
        match h {
            gfs::ChunkHealth::Healthy => ChunkHealth::Healthy,
            gfs::ChunkHealth::UnderReplicated => ChunkHealth::UnderReplicated,
            gfs::ChunkHealth::MisReplicated => ChunkHealth::MisReplicated,
            gfs::ChunkHealth::OverReplicated => ChunkHealth::OverReplicated,
            gfs::ChunkHealth::Corrupt => ChunkHealth::Corrupt,
            gfs::ChunkHealth::Missing => ChunkHealth::Missing,
            gfs::ChunkHealth::UnderConstruction => ChunkHealth::UnderConstruction,
            gfs::ChunkHealth::Unspecified => ChunkHealth::Unknown,
        }
    }
}

impl From<gfs::ReplicaState> for ReplicaState {
    fn from(s: gfs::ReplicaState) -> ReplicaState {
        match s {
            gfs::ReplicaState::Healthy => ReplicaState::Healthy,
            gfs::ReplicaState::Corrupt => ReplicaState::Corrupt,
            gfs::ReplicaState::Dead => ReplicaState::Dead,
            gfs::ReplicaState::Stale => ReplicaState::Stale,
            gfs::ReplicaState::Writing => ReplicaState::Writing,
            gfs::ReplicaState::Decommissioning => ReplicaState::Decommissioning,
            gfs::ReplicaState::Decommissioned => ReplicaState::Decommissioned,
            gfs::ReplicaState::Unspecified => ReplicaState::Unknown,
        }
    }
}

impl ChunkHealth {
    /// The lowercase name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkHealth::Healthy => "healthy",
            ChunkHealth::UnderReplicated => "under_replicated",
            ChunkHealth::MisReplicated => "mis_replicated",
            ChunkHealth::OverReplicated => "over_replicated",
            ChunkHealth::Corrupt => "corrupt",
            ChunkHealth::Missing => "missing",
            ChunkHealth::UnderConstruction => "under_construction",
            ChunkHealth::Unknown => "unknown",
        }
    }
}

impl ReplicaState {
    /// The lowercase name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Healthy => "healthy",
            ReplicaState::Corrupt => "corrupt",
            ReplicaState::Dead => "dead",
            ReplicaState::Stale => "stale",
            ReplicaState::Writing => "writing",
            ReplicaState::Decommissioning => "decommissioning",
            ReplicaState::Decommissioned => "decommissioned",
            ReplicaState::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(corrupt: bool) -> gfs::FsckResponse {
        let replica = |addr: &str, state: gfs::ReplicaState| gfs::FsckReplica {
            server: Some(gfs::ChunkserverInfo {
                id: format!("id-{addr}"),
                addr: addr.into(),
                rack: "/r1".into(),
            }),
            state: state as i32,
            version: 1,
        };
        let health = if corrupt { gfs::ChunkHealth::Corrupt } else { gfs::ChunkHealth::Healthy };
        gfs::FsckResponse {
            files: vec![gfs::FsckFile {
                path: "/f".into(),
                length: 10,
                replication: 1,
                under_construction: false,
                chunks: vec![gfs::FsckChunk {
                    handle: 42,
                    version: 1,
                    offset: 0,
                    length: 10,
                    health: health as i32,
                    replicas: vec![replica("h:1", gfs::ReplicaState::Healthy)],
                }],
            }],
            summary: Some(gfs::FsckSummary {
                files: 1,
                chunks: 1,
                healthy: u64::from(!corrupt),
                corrupt: u64::from(corrupt),
                live_chunkservers: 1,
                racks: 1,
                total_bytes: 10,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn json_uses_stable_names() {
        let r = FsckReport::from_proto(&DfsPath::root(), sample(false));
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["status"], "HEALTHY");
        assert_eq!(v["files"][0]["chunks"][0]["handle"], "000000000000002a");
        assert_eq!(v["files"][0]["chunks"][0]["health"], "healthy");
        assert_eq!(v["files"][0]["chunks"][0]["replicas"][0]["state"], "healthy");
        assert_eq!(v["files"][0]["chunks"][0]["replicas"][0]["addr"], "h:1");
        assert_eq!(v["summary"]["live_chunkservers"], 1);
    }

    #[test]
    fn corrupt_chunks_make_the_report_corrupt() {
        let r = FsckReport::from_proto(&DfsPath::root(), sample(true));
        assert_eq!(r.status, FsckStatus::Corrupt);
        assert_eq!(r.files[0].chunks[0].health, ChunkHealth::Corrupt);
        let v = serde_json::to_value(ChunkHealth::UnderReplicated).expect("json");
        assert_eq!(v, "under_replicated");
        assert_eq!(ChunkHealth::UnderReplicated.as_str(), "under_replicated");
    }
}
