//! The cluster report as the client presents it (`dfs report`, like `hdfs dfsadmin
//! -report`): totals and every chunkserver with its state, capacity and last contact.
//!
//! These types are also the `dfs report --json` schema.

use proto::gfs;
use serde::{Deserialize, Serialize};

/// Capacity, usage and membership of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterReport {
    /// Sum of the capacities of live chunkservers.
    pub configured_capacity: u64,
    /// Bytes used on live chunkservers.
    pub used: u64,
    /// Bytes remaining on live chunkservers.
    pub remaining: u64,
    /// Number of live chunkservers.
    pub live_chunkservers: u64,
    /// Number of dead chunkservers.
    pub dead_chunkservers: u64,
    /// The cluster's default chunk size.
    pub default_chunk_size: u64,
    /// The cluster's default replication factor.
    pub default_replication: u32,
    /// Files in the namespace.
    pub files: u64,
    /// Directories in the namespace.
    pub directories: u64,
    /// Chunks in the namespace.
    pub chunks: u64,
    /// Chunks with fewer healthy replicas than asked.
    pub under_replicated: u64,
    /// Replicas known corrupt.
    pub corrupt_replicas: u64,
    /// Chunks with no healthy replica.
    pub missing: u64,
    /// Chunk copies issued and not yet confirmed (re-replication and balancing).
    #[serde(default)]
    pub pending_replications: u64,
    /// The balancer's state, as the master describes it.
    #[serde(default)]
    pub balancer: String,
    /// Every chunkserver the master knows, live first, then by address.
    pub chunkservers: Vec<ChunkserverStatus>,
}

/// Whether the master hears from a chunkserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkserverState {
    /// Heartbeating.
    Live,
    /// Silent past the dead interval.
    Dead,
    /// The master sent a value this client does not know.
    Unknown,
}

impl ChunkserverState {
    /// The lowercase name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkserverState::Live => "live",
            ChunkserverState::Dead => "dead",
            ChunkserverState::Unknown => "unknown",
        }
    }
}

/// One chunkserver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkserverStatus {
    /// Stable id.
    pub id: String,
    /// `host:port`.
    pub addr: String,
    /// Rack name.
    pub rack: String,
    /// Live or dead.
    pub state: ChunkserverState,
    /// Bytes it may use.
    pub capacity: u64,
    /// Bytes used by chunks.
    pub used: u64,
    /// Bytes still free for chunks.
    pub remaining: u64,
    /// Chunks it holds.
    pub chunks: u64,
    /// Write pipelines it takes part in now.
    pub active_writes: u32,
    /// Last heartbeat, milliseconds since the Unix epoch.
    pub last_contact_ms: i64,
    /// In service (`normal`), `decommissioning` or `decommissioned`.
    #[serde(default)]
    pub admin_state: String,
}

/// The lowercase name of an administrative state.
pub fn admin_state_name(a: gfs::AdminState) -> &'static str {
    match a {
        gfs::AdminState::Normal | gfs::AdminState::Unspecified => "normal",
        gfs::AdminState::Decommissioning => "decommissioning",
        gfs::AdminState::Decommissioned => "decommissioned",
    }
}

impl From<gfs::ClusterReportResponse> for ClusterReport {
    fn from(r: gfs::ClusterReportResponse) -> ClusterReport {
        let mut chunkservers: Vec<ChunkserverStatus> = r
            .chunkservers
            .into_iter()
            .map(|c| {
                let state = match c.state() {
                    gfs::ChunkserverState::Live => ChunkserverState::Live,
                    gfs::ChunkserverState::Dead => ChunkserverState::Dead,
                    gfs::ChunkserverState::Unspecified => ChunkserverState::Unknown,
                };
                let admin = admin_state_name(c.admin_state()).to_owned();
                let server = c.server.unwrap_or_default();
                ChunkserverStatus {
                    id: server.id,
                    addr: server.addr,
                    rack: server.rack,
                    state,
                    capacity: c.capacity,
                    used: c.used,
                    remaining: c.remaining,
                    chunks: c.chunk_count,
                    active_writes: c.active_writes,
                    last_contact_ms: c.last_contact_ms,
                    admin_state: admin,
                }
            })
            .collect();
        chunkservers.sort_by(|a, b| {
            (a.state != ChunkserverState::Live, &a.addr)
                .cmp(&(b.state != ChunkserverState::Live, &b.addr))
        });
        let live: Vec<&ChunkserverStatus> =
            chunkservers.iter().filter(|c| c.state == ChunkserverState::Live).collect();
        ClusterReport {
            configured_capacity: live.iter().map(|c| c.capacity).sum(),
            used: live.iter().map(|c| c.used).sum(),
            remaining: live.iter().map(|c| c.remaining).sum(),
            live_chunkservers: live.len() as u64,
            dead_chunkservers: (chunkservers.len() - live.len()) as u64,
            default_chunk_size: r.default_chunk_size,
            default_replication: r.default_replication,
            files: r.files,
            directories: r.directories,
            chunks: r.chunks,
            under_replicated: r.under_replicated,
            corrupt_replicas: r.corrupt_replicas,
            missing: r.missing,
            pending_replications: r.pending_replications,
            balancer: r.balancer.map(|b| b.message).unwrap_or_default(),
            chunkservers,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> gfs::ClusterReportResponse {
        let cs = |addr: &str, state: gfs::ChunkserverState, cap: u64| gfs::ChunkserverReport {
            server: Some(gfs::ChunkserverInfo {
                id: format!("id-{addr}"),
                addr: addr.into(),
                rack: "/r".into(),
            }),
            state: state as i32,
            capacity: cap,
            used: 10,
            remaining: cap - 10,
            chunk_count: 2,
            active_writes: 0,
            last_contact_ms: 1_700_000_000_000,
            admin_state: gfs::AdminState::Normal as i32,
        };
        gfs::ClusterReportResponse {
            chunkservers: vec![
                cs("b:2", gfs::ChunkserverState::Dead, 100),
                cs("a:1", gfs::ChunkserverState::Live, 1000),
            ],
            default_chunk_size: 64 << 20,
            default_replication: 3,
            files: 1,
            directories: 2,
            chunks: 3,
            ..Default::default()
        }
    }

    #[test]
    fn totals_count_live_chunkservers_only() {
        let r = ClusterReport::from(sample());
        assert_eq!(r.configured_capacity, 1000);
        assert_eq!(r.used, 10);
        assert_eq!(r.live_chunkservers, 1);
        assert_eq!(r.dead_chunkservers, 1);
        assert_eq!(r.chunkservers[0].addr, "a:1");
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["chunkservers"][1]["state"], "dead");
    }
}
