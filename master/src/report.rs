//! Health reports: `fsck` (every file's chunks and replicas, classified) and the cluster
//! report (`dfsadmin -report`).
//!
//! They are built straight into their wire form: they exist only to be shown, so a
//! domain copy of the same fields would add nothing.

use std::collections::HashSet;
use std::time::Instant;

use proto::gfs::{
    self as pb, ChunkHealth, ChunkserverInfo, ChunkserverReport, ChunkserverState,
    ClusterReportResponse, FsckChunk, FsckFile, FsckReplica, FsckResponse, FsckSummary,
    ReplicaState,
};
use proto::path::DfsPath;

use crate::chunks::{ChunkInfo, ReplicaStatus};
use crate::cluster::AdminState;
use crate::core::Core;
use crate::error::Result;
use crate::ids::ServerIdx;

/// The wire form of a chunkserver's identity.
pub fn server_info(st: &Core, idx: ServerIdx) -> ChunkserverInfo {
    let s = st.cluster.get(idx);
    ChunkserverInfo { id: s.id.clone(), addr: s.addr.clone(), rack: s.rack.clone() }
}

fn replica_state(
    st: &Core,
    c: &ChunkInfo,
    r: &crate::chunks::Replica,
    writing: bool,
    now: Instant,
) -> ReplicaState {
    if r.status == ReplicaStatus::Corrupt {
        ReplicaState::Corrupt
    } else if r.version < c.version {
        ReplicaState::Stale
    } else if !st.cluster.is_live(r.server, now) {
        ReplicaState::Dead
    } else if writing || r.status == ReplicaStatus::Expected {
        ReplicaState::Writing
    } else {
        match st.cluster.get(r.server).admin {
            AdminState::Normal => ReplicaState::Healthy,
            AdminState::Decommissioning => ReplicaState::Decommissioning,
            AdminState::Decommissioned => ReplicaState::Decommissioned,
        }
    }
}

/// The wire form of an administrative state.
pub fn admin_state(a: AdminState) -> pb::AdminState {
    match a {
        AdminState::Normal => pb::AdminState::Normal,
        AdminState::Decommissioning => pb::AdminState::Decommissioning,
        AdminState::Decommissioned => pb::AdminState::Decommissioned,
    }
}

/// The balancer's progress as the `Balance` RPC and the cluster report show it.
pub fn balancer_status(st: &Core) -> pb::BalanceResponse {
    let b = &st.replication.balancer;
    pb::BalanceResponse {
        running: b.running,
        threshold_pct: b.threshold_pct,
        moves_scheduled: b.scheduled,
        moves_done: b.done,
        bytes_moved: b.bytes_moved,
        max_deviation_pct: b.max_deviation_pct,
        message: if b.message.is_empty() { "not started".to_owned() } else { b.message.clone() },
    }
}

/// Classifies a chunk from its replicas' states, the file's replication factor and how
/// many racks the cluster has.
pub fn chunk_health(
    states: &[(ReplicaState, &str)],
    replication: usize,
    live_racks: usize,
    writing: bool,
) -> ChunkHealth {
    if writing {
        return ChunkHealth::UnderConstruction;
    }
    let healthy: Vec<&str> =
        states.iter().filter(|(s, _)| *s == ReplicaState::Healthy).map(|(_, r)| *r).collect();
    if healthy.is_empty() {
        return if states.iter().any(|(s, _)| *s == ReplicaState::Corrupt) {
            ChunkHealth::Corrupt
        } else {
            ChunkHealth::Missing
        };
    }
    if healthy.len() < replication {
        return ChunkHealth::UnderReplicated;
    }
    let racks: HashSet<&str> = healthy.iter().copied().collect();
    if racks.len() < 2 && live_racks > 1 && replication > 1 {
        return ChunkHealth::MisReplicated;
    }
    if healthy.len() > replication { ChunkHealth::OverReplicated } else { ChunkHealth::Healthy }
}

/// Checks every file at or below `path` (files being written only with `include_open`).
///
/// # Errors
/// If `path` does not exist.
pub fn fsck(st: &Core, path: &DfsPath, include_open: bool, now: Instant) -> Result<FsckResponse> {
    let (file_count, dir_count) = st.ns.count_under(path)?;
    let live_racks = st.cluster.live_racks(now);
    let mut summary =
        FsckSummary { files: file_count, directories: dir_count, ..FsckSummary::default() };
    let mut files = Vec::new();
    for (fpath, id) in st.ns.files_under(path)? {
        let Some(f) = st.ns.file(id) else { continue };
        let open = f.writer.is_some();
        if open {
            summary.open_files += 1;
            if !include_open {
                continue;
            }
        }
        summary.total_bytes += f.length;
        let mut chunks = Vec::with_capacity(f.chunks.len());
        for (i, &h) in f.chunks.iter().enumerate() {
            let Some(c) = st.chunks.get(h) else { continue };
            let writing = open && i + 1 == f.chunks.len();
            let replicas: Vec<FsckReplica> = c
                .replicas
                .iter()
                .map(|r| FsckReplica {
                    server: Some(server_info(st, r.server)),
                    state: replica_state(st, c, r, writing, now) as i32,
                    version: r.version,
                })
                .collect();
            let states: Vec<(ReplicaState, &str)> = c
                .replicas
                .iter()
                .map(|r| {
                    (replica_state(st, c, r, writing, now), st.cluster.get(r.server).rack.as_str())
                })
                .collect();
            let health = chunk_health(&states, usize::from(f.replication), live_racks, writing);
            summary.chunks += 1;
            summary.corrupt_replicas +=
                states.iter().filter(|(s, _)| *s == ReplicaState::Corrupt).count() as u64;
            *match health {
                ChunkHealth::Healthy | ChunkHealth::Unspecified => &mut summary.healthy,
                ChunkHealth::UnderReplicated => &mut summary.under_replicated,
                ChunkHealth::MisReplicated => &mut summary.mis_replicated,
                ChunkHealth::Corrupt => &mut summary.corrupt,
                ChunkHealth::Missing => &mut summary.missing,
                ChunkHealth::UnderConstruction => &mut summary.under_construction,
                ChunkHealth::OverReplicated => &mut summary.over_replicated,
            } += 1;
            chunks.push(FsckChunk {
                handle: h.0,
                version: c.version,
                offset: i as u64 * f.chunk_size,
                length: c.length,
                health: health as i32,
                replicas,
            });
        }
        files.push(FsckFile {
            path: fpath.to_string(),
            length: f.length,
            replication: u32::from(f.replication),
            under_construction: open,
            chunks,
        });
    }
    let (live, dead) = st.cluster.iter().fold((0, 0), |(l, d), (i, _)| {
        if st.cluster.is_live(i, now) { (l + 1, d) } else { (l, d + 1) }
    });
    summary.live_chunkservers = live;
    summary.dead_chunkservers = dead;
    summary.racks = live_racks as u64;
    Ok(FsckResponse { files, summary: Some(summary) })
}

/// The cluster report: every chunkserver with its state and load, and namespace totals.
pub fn cluster_report(st: &Core, now: Instant) -> ClusterReportResponse {
    let chunkservers = st
        .cluster
        .iter()
        .map(|(idx, s)| ChunkserverReport {
            server: Some(server_info(st, idx)),
            state: if st.cluster.is_live(idx, now) {
                ChunkserverState::Live
            } else {
                ChunkserverState::Dead
            } as i32,
            capacity: s.load.capacity,
            used: s.load.used,
            remaining: s.load.remaining,
            chunk_count: s.load.chunk_count,
            active_writes: s.load.active_writes,
            last_contact_ms: s.last_contact_ms,
            admin_state: admin_state(s.admin) as i32,
        })
        .collect();
    let mut under_replicated = 0;
    let mut corrupt_replicas = 0;
    let mut missing = 0;
    for (_, c) in st.chunks.iter() {
        if c.length == 0 {
            continue;
        }
        let good = c.readable().filter(|r| st.cluster.is_live(r.server, now)).count();
        let want = st.ns.file(c.file).map_or(0, |f| usize::from(f.replication));
        if good == 0 {
            missing += 1;
        } else if good < want {
            under_replicated += 1;
        }
        corrupt_replicas +=
            c.replicas.iter().filter(|r| r.status == ReplicaStatus::Corrupt).count() as u64;
    }
    ClusterReportResponse {
        chunkservers,
        default_chunk_size: st.config.chunk_size,
        default_replication: u32::from(st.config.replication),
        files: st.ns.file_count(),
        directories: st.ns.dir_count(),
        chunks: st.chunks.len() as u64,
        under_replicated,
        corrupt_replicas,
        missing,
        balancer: Some(balancer_status(st)),
        pending_replications: st.replication.pending().len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ReplicaState::{Corrupt, Dead, Healthy};

    #[test]
    fn health_classes() {
        let h = |s: &[(ReplicaState, &str)], rep| chunk_health(s, rep, 2, false);
        assert_eq!(h(&[(Healthy, "a"), (Healthy, "b"), (Healthy, "b")], 3), ChunkHealth::Healthy);
        assert_eq!(
            h(&[(Healthy, "a"), (Healthy, "a"), (Healthy, "a")], 3),
            ChunkHealth::MisReplicated
        );
        assert_eq!(
            h(&[(Healthy, "a"), (Dead, "b"), (Healthy, "b")], 3),
            ChunkHealth::UnderReplicated
        );
        assert_eq!(h(&[(Corrupt, "a"), (Dead, "b")], 3), ChunkHealth::Corrupt);
        assert_eq!(h(&[(Dead, "a")], 3), ChunkHealth::Missing);
        assert_eq!(h(&[], 3), ChunkHealth::Missing);
        assert_eq!(h(&[(Healthy, "a"), (Healthy, "b")], 1), ChunkHealth::OverReplicated);
        assert_eq!(h(&[(Healthy, "a")], 1), ChunkHealth::Healthy);
        // One rack in the whole cluster: nothing better is possible.
        assert_eq!(
            chunk_health(&[(Healthy, "a"), (Healthy, "a")], 2, 1, false),
            ChunkHealth::Healthy
        );
        assert_eq!(chunk_health(&[], 3, 2, true), ChunkHealth::UnderConstruction);
    }
}
