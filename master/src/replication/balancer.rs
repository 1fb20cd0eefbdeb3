//! The balancer (`dfs admin balance`): moves replicas from chunkservers fuller than the
//! cluster's mean utilization plus a threshold to those below the mean, until none is
//! above, keeping every chunk's rack spread.
//!
//! Unlike HDFS's separate balancer process it runs inside the master's replication
//! monitor: a move is a copy (scheduled, throttled and confirmed exactly like a repair
//! copy, see [`crate::replication`]) followed by the deletion of the source replica once
//! the copy is confirmed (the excess rule deletes the move's source first). Repairs are
//! planned before moves in every tick, so balancing never delays them.
//!
//! Utilization is `used / capacity` from heartbeats, projected with the moves under way
//! (a target counts its incoming bytes, a source loses its outgoing ones), so one tick
//! does not overshoot. The balancer stops by itself once no live chunkserver in service
//! is above the mean plus the threshold, or when nothing more can be moved.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rand::Rng;
use rand::seq::SliceRandom;

use crate::chunks::{ChunkMap, ReplicaStatus};
use crate::cluster::Cluster;
use crate::ids::{ChunkHandle, ServerIdx};
use crate::replication::PendingCopy;

/// Moves planned per source chunkserver per tick at most, so a long list of small chunks
/// does not flood one heartbeat reply when streams are unlimited.
const MOVES_PER_SOURCE: usize = 8;

/// The balancer's state and progress.
#[derive(Debug, Clone, Default)]
pub struct Balancer {
    /// Whether it is working.
    pub running: bool,
    /// Percentage points above the mean a chunkserver may be.
    pub threshold_pct: f64,
    /// Moves scheduled since it started.
    pub scheduled: u64,
    /// Moves whose copy was confirmed.
    pub done: u64,
    /// Bytes those moves copied.
    pub bytes_moved: u64,
    /// Largest distance from the mean at the last tick, in percentage points.
    pub max_deviation_pct: f64,
    /// What it is doing, for people.
    pub message: String,
}

/// One live chunkserver in service, with its projected use.
struct Node {
    idx: ServerIdx,
    used: f64,
    capacity: f64,
}

impl Node {
    fn pct(&self) -> f64 {
        if self.capacity <= 0.0 { 0.0 } else { self.used * 100.0 / self.capacity }
    }
}

impl Balancer {
    /// Starts balancing with `threshold_pct`.
    pub fn start(&mut self, threshold_pct: f64) {
        *self = Balancer {
            running: true,
            threshold_pct,
            message: "balancing".to_owned(),
            ..Balancer::default()
        };
    }

    /// Stops balancing (moves under way finish).
    pub fn stop(&mut self, why: &str) {
        self.running = false;
        self.message = why.to_owned();
    }

    /// A move's copy was confirmed.
    pub fn moved(&mut self, bytes: u64) {
        self.done += 1;
        self.bytes_moved += bytes;
    }

    /// Plans this tick's moves; `src_free`/`dst_free` say whether a server may start
    /// another copy as source/target.
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        &mut self,
        chunks: &ChunkMap,
        cluster: &Cluster,
        pending: &[PendingCopy],
        src_free: impl Fn(ServerIdx) -> bool,
        dst_free: impl Fn(ServerIdx) -> bool,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Vec<PendingCopy> {
        let mut nodes: HashMap<ServerIdx, Node> = cluster
            .in_service(now)
            .map(|(idx, s)| {
                (idx, Node { idx, used: s.load.used as f64, capacity: s.load.capacity as f64 })
            })
            .collect();
        for p in pending {
            if let Some(n) = nodes.get_mut(&p.target) {
                n.used += p.bytes as f64;
            }
            if let Some(from) = p.move_from
                && let Some(n) = nodes.get_mut(&from)
            {
                n.used -= p.bytes as f64;
            }
        }
        let (used, cap) = nodes.values().fold((0.0, 0.0), |(u, c), n| (u + n.used, c + n.capacity));
        let mean = if cap > 0.0 { used * 100.0 / cap } else { 0.0 };
        self.max_deviation_pct = nodes.values().map(|n| (n.pct() - mean).abs()).fold(0.0, f64::max);
        if !self.running {
            return Vec::new();
        }
        let moving: HashSet<ChunkHandle> = pending.iter().map(|p| p.handle).collect();
        let mut over: Vec<ServerIdx> =
            nodes.values().filter(|n| n.pct() > mean + self.threshold_pct).map(|n| n.idx).collect();
        if over.is_empty() {
            if moving.is_empty() {
                self.stop(&format!(
                    "balanced: every chunkserver is within {:.1} points of the mean utilization {mean:.1}%",
                    self.threshold_pct
                ));
            }
            return Vec::new();
        }
        over.sort_by(|a, b| nodes[b].pct().total_cmp(&nodes[a].pct()));
        let mut planned = Vec::new();
        let mut any_candidate = false;
        // A target takes one move per tick: `dst_free` cannot see this tick's plans.
        let mut used_targets: HashSet<ServerIdx> = HashSet::new();
        for src in over {
            if !src_free(src) {
                any_candidate = true;
                continue;
            }
            let mut held: Vec<(ChunkHandle, u64)> = chunks
                .iter()
                .filter(|(h, c)| {
                    c.length > 0
                        && !moving.contains(h)
                        && c.replicas.iter().any(|r| {
                            r.server == src
                                && r.status == ReplicaStatus::Finalized
                                && r.version == c.version
                        })
                })
                .map(|(h, c)| (h, c.length))
                .collect();
            held.shuffle(rng);
            let mut from_src = 0;
            for (h, len) in held {
                if from_src >= MOVES_PER_SOURCE || nodes[&src].pct() <= mean + self.threshold_pct {
                    break;
                }
                let Some(c) = chunks.get(h) else { continue };
                let holders: HashSet<ServerIdx> = c.replicas.iter().map(|r| r.server).collect();
                let racks_now: HashSet<&str> = c
                    .readable()
                    .filter(|r| nodes.contains_key(&r.server))
                    .map(|r| cluster.get(r.server).rack.as_str())
                    .collect();
                let src_rack = cluster.get(src).rack.as_str();
                let mut targets: Vec<&Node> = nodes
                    .values()
                    .filter(|n| n.pct() < mean && !holders.contains(&n.idx) && dst_free(n.idx))
                    .filter(|n| !used_targets.contains(&n.idx))
                    .filter(|n| n.capacity - n.used >= len as f64)
                    .filter(|n| {
                        // Rack spread: the same rack as the source, or the move does not
                        // leave the chunk on fewer racks than it has.
                        let rack = cluster.get(n.idx).rack.as_str();
                        rack == src_rack || {
                            let mut after: HashSet<&str> = c
                                .readable()
                                .filter(|r| r.server != src && nodes.contains_key(&r.server))
                                .map(|r| cluster.get(r.server).rack.as_str())
                                .collect();
                            after.insert(rack);
                            after.len() >= racks_now.len()
                        }
                    })
                    .collect();
                if targets.is_empty() {
                    continue;
                }
                any_candidate = true;
                targets.sort_by(|a, b| a.pct().total_cmp(&b.pct()));
                let target = targets[0].idx;
                planned.push(PendingCopy {
                    handle: h,
                    target,
                    source: src,
                    issued: now,
                    bytes: len,
                    move_from: Some(src),
                });
                from_src += 1;
                used_targets.insert(target);
                if let Some(n) = nodes.get_mut(&target) {
                    n.used += len as f64;
                }
                if let Some(n) = nodes.get_mut(&src) {
                    n.used -= len as f64;
                }
            }
        }
        self.scheduled += planned.len() as u64;
        if planned.is_empty() && !any_candidate && moving.is_empty() {
            self.stop("stopped: no replica can be moved without breaking rack spread or filling a chunkserver");
        }
        planned
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::cluster::{Identity, Load};
    use crate::ids::InodeId;

    #[test]
    fn moves_from_full_to_empty_and_stops_when_balanced() {
        let now = Instant::now();
        let mut cluster = Cluster::new(Duration::from_secs(10));
        let mut chunks = ChunkMap::new();
        let full = Load { capacity: 1000, used: 600, remaining: 400, ..Load::default() };
        let empty = Load { capacity: 1000, used: 0, remaining: 1000, ..Load::default() };
        let a = cluster.register(Identity { id: "a", addr: "h1:1", rack: "/r" }, full, now, 0);
        let b = cluster.register(Identity { id: "b", addr: "h2:1", rack: "/r" }, empty, now, 0);
        for _ in 0..6 {
            let h = chunks.allocate(InodeId(9), &[a]).expect("handle");
            chunks.finish(h, 100);
        }
        let mut bal = Balancer::default();
        let mut rng = StdRng::seed_from_u64(1);
        assert!(bal.plan(&chunks, &cluster, &[], |_| true, |_| true, now, &mut rng).is_empty());
        bal.start(10.0);
        let moves = bal.plan(&chunks, &cluster, &[], |_| true, |_| true, now, &mut rng);
        assert_eq!(moves.len(), 1);
        assert_eq!((moves[0].source, moves[0].target, moves[0].move_from), (a, b, Some(a)));
        // With two moves under way a holds 400 and b 200: mean 30%, a at 40% is within 10.
        let more = bal.plan(&chunks, &cluster, &[moves[0]], |_| true, |_| true, now, &mut rng);
        assert_eq!(more.len(), 1);
        let both = [moves[0], more[0]];
        assert!(bal.plan(&chunks, &cluster, &both, |_| true, |_| true, now, &mut rng).is_empty());
        assert!(bal.running, "still running while moves are under way");
        let done = Load { capacity: 1000, used: 400, remaining: 600, ..Load::default() };
        cluster.heartbeat("a", done, now, 0);
        cluster.heartbeat("b", Load { used: 200, ..done }, now, 0);
        assert!(bal.plan(&chunks, &cluster, &[], |_| true, |_| true, now, &mut rng).is_empty());
        assert!(!bal.running);
        assert!(bal.message.starts_with("balanced"), "{}", bal.message);
    }
}
