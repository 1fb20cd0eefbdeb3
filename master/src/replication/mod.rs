//! The replication monitor: a pure, tick-driven core that decides which chunks need
//! copies or deletions and which chunkservers do them.
//!
//! Every tick (once per heartbeat interval) [`Replicator::tick`] looks at every complete
//! chunk and classifies its replicas: *good* (finalized, current version, on a live
//! chunkserver in service), *draining* (the same on a decommissioning or decommissioned
//! server: readable, a copy source, not counted toward the factor), *corrupt*, *stale*
//! (older version) or unusable (dead server, still being written). Then, in this order:
//!
//! 1. too few good replicas (counting copies already under way): copies are scheduled,
//!    chunks with the fewest good replicas first (one left before two left, ...);
//! 2. enough replicas but all on one rack while the cluster has several: one copy to
//!    another rack (the excess rule then removes one from the crowded rack);
//! 3. corrupt replicas, once the chunk has its full good replication: deleted (a corrupt
//!    replica is replaced first and deleted after, never the other way round);
//! 4. stale replicas: deleted at once (they are never read), each delete naming the
//!    version it removes; leftovers being written of a complete chunk (a failed copy, a
//!    node dropped from a pipeline) once no copy to that server is pending: deleted with
//!    `rbw_only`, so a copy that finalized meanwhile is kept;
//! 5. more good replicas than the factor: the excess is deleted from the racks holding
//!    the most, keeping rack spread; a balancer move's source goes first. Never the last.
//!
//! Copy targets are chunkservers in service holding no good replica of the chunk: one
//! holding only a corrupt, stale or half-written copy is a valid target (the copy
//! replaces that file), so a chunk with any good replica heals whatever the cluster's
//! size.
//!
//! Copies go to the target chunkserver in its heartbeat reply (it pulls from the source,
//! chunkserver to chunkserver) and are *pending* until the target reports the replica
//! received; one not confirmed within the pending timeout (or whose target dies) is
//! forgotten, so the next tick issues it again. Throttling: at most `max_streams` pending
//! copies per chunkserver as a source and as a target (0 = unlimited).
//!
//! Why a pure core: the decisions are the subtle part (priorities, rack spread, never the
//! last replica, nothing in safe mode) and are unit-tested here with a hand-built cluster;
//! [`crate::core::Core::replication_tick`] applies the [`Command`]s it returns.
//! Nothing is done in safe mode: the master does not yet know where replicas are, so
//! every chunk would look under-replicated and real replicas would look like orphans.
//!
//! The balancer ([`crate::replication::balancer`]) schedules its moves through the same pending table
//! and throttle, after the repairs.

pub mod balancer;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::chunks::{ChunkInfo, ChunkMap, ReplicaStatus};
use crate::cluster::{AdminState, Cluster, DeleteCmd};
use crate::ids::{ChunkHandle, ServerIdx};
use crate::namespace::Namespace;
use crate::placement::{self, Candidate};
use balancer::Balancer;

/// Something the monitor wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `target` copies `handle` from `source`.
    Replicate {
        /// Who makes the copy.
        target: ServerIdx,
        /// Who serves it.
        source: ServerIdx,
        /// The chunk.
        handle: ChunkHandle,
        /// Its version.
        version: u64,
        /// Its length.
        length: u64,
    },
    /// `server` deletes its replica (forgotten by the master at once).
    Delete {
        /// Holder of the replica.
        server: ServerIdx,
        /// Which replica, up to which version.
        delete: DeleteCmd,
    },
}

/// A copy issued and not yet confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCopy {
    /// The chunk.
    pub handle: ChunkHandle,
    /// Who makes the copy.
    pub target: ServerIdx,
    /// Who serves it.
    pub source: ServerIdx,
    /// When it was issued.
    pub issued: Instant,
    /// Bytes copied.
    pub bytes: u64,
    /// For a balancer move: the replica to delete once the copy is confirmed.
    pub move_from: Option<ServerIdx>,
}

/// Settings of the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Pending copies per chunkserver as a source and as a target (0 = unlimited).
    pub max_streams: u32,
    /// A copy not confirmed within this is issued again.
    pub pending_timeout: Duration,
}

/// What one chunk's replicas look like.
#[derive(Debug, Default)]
struct Census {
    good: Vec<ServerIdx>,
    draining: Vec<ServerIdx>,
    /// Corrupt replicas, with their versions.
    corrupt: Vec<(ServerIdx, u64)>,
    /// Older than the chunk, with their versions.
    stale: Vec<(ServerIdx, u64)>,
    /// Being written although the chunk is complete: leftovers of failed copies.
    leftover: Vec<ServerIdx>,
}

impl Census {
    fn of(c: &ChunkInfo, cluster: &Cluster, now: Instant) -> Census {
        let mut out = Census::default();
        for r in &c.replicas {
            let live = cluster.is_live(r.server, now);
            if r.version < c.version {
                out.stale.push((r.server, r.version));
            } else if r.status == ReplicaStatus::Corrupt {
                out.corrupt.push((r.server, r.version));
            } else if r.status == ReplicaStatus::Expected && c.length > 0 {
                out.leftover.push(r.server);
            } else if r.status != ReplicaStatus::Finalized || !live {
                // Being written, or on a dead chunkserver: neither counted nor a source.
            } else if cluster.get(r.server).admin == AdminState::Normal {
                out.good.push(r.server);
            } else {
                out.draining.push(r.server);
            }
        }
        out
    }
}

/// A chunk that needs copies: fewer good replicas first.
#[derive(Debug)]
struct Need {
    handle: ChunkHandle,
    good: usize,
    copies: usize,
}

/// The monitor's memory between ticks: copies under way and the balancer.
#[derive(Debug)]
pub struct Replicator {
    settings: Settings,
    pending: Vec<PendingCopy>,
    /// Balancer moves whose copy is confirmed: delete this replica once it is excess.
    move_sources: HashMap<ChunkHandle, ServerIdx>,
    /// The balancer.
    pub balancer: Balancer,
}

impl Replicator {
    /// A monitor with nothing pending.
    pub fn new(settings: Settings) -> Replicator {
        Replicator {
            settings,
            pending: Vec::new(),
            move_sources: HashMap::new(),
            balancer: Balancer::default(),
        }
    }

    /// Copies issued and not yet confirmed.
    pub fn pending(&self) -> &[PendingCopy] {
        &self.pending
    }

    /// Pending copies of `handle`.
    pub fn pending_for(&self, handle: ChunkHandle) -> usize {
        self.pending.iter().filter(|p| p.handle == handle).count()
    }

    /// `server` reported a good replica of `handle`: its pending copy (if any) is done.
    pub fn confirmed(&mut self, handle: ChunkHandle, server: ServerIdx) {
        if let Some(i) = self.pending.iter().position(|p| p.handle == handle && p.target == server)
        {
            let p = self.pending.swap_remove(i);
            if let Some(from) = p.move_from {
                self.move_sources.insert(handle, from);
                self.balancer.moved(p.bytes);
            }
        }
    }

    fn busy(&self) -> (HashMap<ServerIdx, u32>, HashMap<ServerIdx, u32>) {
        let (mut src, mut dst) = (HashMap::new(), HashMap::new());
        for p in &self.pending {
            *src.entry(p.source).or_insert(0) += 1;
            *dst.entry(p.target).or_insert(0) += 1;
        }
        (src, dst)
    }

    fn free(&self, busy: &HashMap<ServerIdx, u32>, s: ServerIdx) -> bool {
        free(self.settings.max_streams, busy, s)
    }

    /// One pass over every chunk (see the module documentation). Does nothing in safe
    /// mode but forget expired copies.
    pub fn tick(
        &mut self,
        chunks: &ChunkMap,
        cluster: &Cluster,
        ns: &Namespace,
        safemode: bool,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Vec<Command> {
        let timeout = self.settings.pending_timeout;
        self.pending.retain(|p| {
            now.saturating_duration_since(p.issued) < timeout
                && cluster.is_live(p.target, now)
                && chunks.get(p.handle).is_some()
        });
        if safemode {
            return Vec::new();
        }
        let live_racks = {
            let racks: HashSet<&str> =
                cluster.in_service(now).map(|(_, s)| s.rack.as_str()).collect();
            racks.len()
        };
        let mut out = Vec::new();
        let mut needs = Vec::new();
        for (h, c) in chunks.iter() {
            // A chunk being written has no final replicas yet.
            if c.length == 0 {
                continue;
            }
            let Some(f) = ns.file(c.file) else { continue };
            let want = usize::from(f.replication);
            let census = Census::of(c, cluster, now);
            for &(s, version) in &census.stale {
                out.push(Command::Delete { server: s, delete: DeleteCmd::upto(h, version) });
            }
            for &s in &census.leftover {
                if !self.pending.iter().any(|p| p.handle == h && p.target == s) {
                    let delete = DeleteCmd { handle: h, version: c.version, rbw_only: true };
                    out.push(Command::Delete { server: s, delete });
                }
            }
            let pending = self.pending_for(h);
            let have = census.good.len() + pending;
            if census.good.is_empty() && census.draining.is_empty() {
                // Missing: no source to copy from. Corrupt replicas are kept: they are
                // all that is left for a human to salvage.
                continue;
            }
            if have < want {
                needs.push(Need { handle: h, good: census.good.len(), copies: want - have });
                continue;
            }
            if pending > 0 {
                continue;
            }
            let racks: HashSet<&str> =
                census.good.iter().map(|&s| cluster.get(s).rack.as_str()).collect();
            if want > 1 && racks.len() < 2 && live_racks > 1 {
                needs.push(Need { handle: h, good: want, copies: 1 });
                continue;
            }
            for &(s, version) in &census.corrupt {
                out.push(Command::Delete { server: s, delete: DeleteCmd::upto(h, version) });
            }
            if census.good.len() > want {
                let prefer = self.move_sources.remove(&h);
                for s in excess(&census.good, want, prefer, cluster) {
                    out.push(Command::Delete { server: s, delete: DeleteCmd::upto(h, c.version) });
                }
            }
        }
        // One live replica before two, two before three, ...
        needs.sort_by_key(|n| (n.good, n.handle));
        for need in needs {
            self.schedule(need, chunks, cluster, now, rng, &mut out);
        }
        let (src_busy, dst_busy) = self.busy();
        let max = self.settings.max_streams;
        let moves = self.balancer.plan(
            chunks,
            cluster,
            &self.pending,
            |s| free(max, &src_busy, s),
            |s| free(max, &dst_busy, s),
            now,
            rng,
        );
        for p in moves {
            out.push(Command::Replicate {
                target: p.target,
                source: p.source,
                handle: p.handle,
                version: chunks.get(p.handle).map_or(0, |c| c.version),
                length: p.bytes,
            });
            self.pending.push(PendingCopy { issued: now, ..p });
        }
        out
    }

    fn schedule(
        &mut self,
        need: Need,
        chunks: &ChunkMap,
        cluster: &Cluster,
        now: Instant,
        rng: &mut impl Rng,
        out: &mut Vec<Command>,
    ) {
        let Some(c) = chunks.get(need.handle) else { return };
        let census = Census::of(c, cluster, now);
        let (src_busy, dst_busy) = self.busy();
        // Draining servers first: they take no client writes, and their replicas are the
        // ones going away.
        let source = census
            .draining
            .iter()
            .chain(census.good.iter())
            .copied()
            .find(|&s| self.free(&src_busy, s));
        let Some(source) = source else { return };
        // Servers holding a usable copy are no targets; one holding only a corrupt, stale
        // or half-written copy is (the copy replaces it).
        let holders: HashSet<ServerIdx> =
            census.good.iter().chain(census.draining.iter()).copied().collect();
        let targets_pending: Vec<ServerIdx> =
            self.pending.iter().filter(|p| p.handle == need.handle).map(|p| p.target).collect();
        let candidates: Vec<Candidate<'_>> = cluster
            .accepting(now)
            .filter(|(i, _)| !holders.contains(i) && !targets_pending.contains(i))
            .filter(|(i, _)| self.free(&dst_busy, *i))
            .map(|(idx, s)| Candidate::of(idx, s))
            .collect();
        let existing: Vec<&str> = census
            .good
            .iter()
            .chain(targets_pending.iter())
            .map(|&s| cluster.get(s).rack.as_str())
            .collect();
        for target in placement::choose_more(&candidates, &existing, need.copies, c.length, rng) {
            out.push(Command::Replicate {
                target,
                source,
                handle: need.handle,
                version: c.version,
                length: c.length,
            });
            self.pending.push(PendingCopy {
                handle: need.handle,
                target,
                source,
                issued: now,
                bytes: c.length,
                move_from: None,
            });
        }
    }
}

/// True if `s` may take another stream under a limit of `max` (0 = unlimited).
fn free(max: u32, busy: &HashMap<ServerIdx, u32>, s: ServerIdx) -> bool {
    max == 0 || busy.get(&s).copied().unwrap_or(0) < max
}

/// Which of `good` to delete to leave `want`: from the rack holding the most each time
/// (so rack spread survives), `prefer` first when it is on such a rack, then the fullest
/// server. Never returns all of them.
pub fn excess(
    good: &[ServerIdx],
    want: usize,
    prefer: Option<ServerIdx>,
    cluster: &Cluster,
) -> Vec<ServerIdx> {
    let mut left: Vec<ServerIdx> = good.to_vec();
    let mut out = Vec::new();
    while left.len() > want.max(1) {
        let rack = |s: ServerIdx| cluster.get(s).rack.as_str();
        let count = |r: &str| left.iter().filter(|&&s| rack(s) == r).count();
        let most = left.iter().map(|&s| count(rack(s))).max().unwrap_or(0);
        let crowded: Vec<ServerIdx> =
            left.iter().copied().filter(|&s| count(rack(s)) == most).collect();
        let victim = match prefer.filter(|p| crowded.contains(p)) {
            Some(p) => p,
            None => match crowded.iter().min_by_key(|&&s| cluster.get(s).load.remaining) {
                Some(&s) => s,
                None => break,
            },
        };
        left.retain(|&s| s != victim);
        out.push(victim);
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::chunks::{ReportKind, ReportedState};
    use crate::cluster::{Identity, Load};
    use crate::namespace::CreateArgs;
    use proto::path::DfsPath;

    struct World {
        chunks: ChunkMap,
        cluster: Cluster,
        ns: Namespace,
        now: Instant,
    }

    const LOAD: Load =
        Load { capacity: 1 << 30, used: 0, remaining: 1 << 30, active_writes: 0, chunk_count: 0 };

    /// `n` servers alternating over racks /a and /b (`racks` = 2) or all on /a.
    fn world(n: u32, racks: u32) -> World {
        let now = Instant::now();
        let mut cluster = Cluster::new(Duration::from_secs(10));
        for i in 0..n {
            let rack = if racks == 2 && i % 2 == 1 { "/b" } else { "/a" };
            let (id, addr) = (format!("cs{i}"), format!("127.0.0.{}:1", i + 2));
            cluster.register(Identity { id: &id, addr: &addr, rack }, LOAD, now, 0);
        }
        World { chunks: ChunkMap::new(), cluster, ns: Namespace::new(), now }
    }

    impl World {
        /// A complete chunk of a new file with factor `want` on `on`.
        fn chunk(&mut self, name: &str, want: u16, on: &[u32]) -> ChunkHandle {
            let path = DfsPath::parse(name).expect("path");
            let args = CreateArgs {
                replication: want,
                chunk_size: 1 << 20,
                overwrite: false,
                create_parents: true,
                owner: "u",
                umask: 0o022,
                client: "c",
                now_ms: 0,
            };
            let (file, _) = self.ns.create(&path, &args).expect("create");
            let servers: Vec<ServerIdx> = on.iter().map(|&i| ServerIdx(i)).collect();
            let h = self.chunks.allocate(file, &servers).expect("handle");
            self.ns.add_chunk(&path, "c", None, h, 0).expect("add chunk");
            self.ns.complete(&path, "c", Some((h, 100)), 0).expect("complete");
            self.chunks.finish(h, 100);
            h
        }

        fn tick(&self, r: &mut Replicator, safemode: bool) -> Vec<Command> {
            let mut rng = StdRng::seed_from_u64(7);
            r.tick(&self.chunks, &self.cluster, &self.ns, safemode, self.now, &mut rng)
        }

        fn kill(&mut self, i: u32) {
            // A server whose last heartbeat is older than the dead interval.
            let id = format!("cs{i}");
            let addr = format!("127.0.0.{}:1", i + 2);
            let rack = self.cluster.get(ServerIdx(i)).rack.clone();
            self.cluster.register(
                Identity { id: &id, addr: &addr, rack: &rack },
                LOAD,
                self.now - Duration::from_secs(60),
                0,
            );
        }
    }

    fn settings(max_streams: u32) -> Settings {
        Settings { max_streams, pending_timeout: Duration::from_secs(30) }
    }

    fn copies(cmds: &[Command]) -> Vec<(ChunkHandle, ServerIdx, ServerIdx)> {
        cmds.iter()
            .filter_map(|c| match *c {
                Command::Replicate { handle, source, target, .. } => Some((handle, source, target)),
                Command::Delete { .. } => None,
            })
            .collect()
    }

    fn deletes(cmds: &[Command]) -> Vec<(ChunkHandle, ServerIdx)> {
        cmds.iter()
            .filter_map(|c| match *c {
                Command::Delete { server, delete } => Some((delete.handle, server)),
                Command::Replicate { .. } => None,
            })
            .collect()
    }

    #[test]
    fn one_live_replica_is_repaired_first() {
        let mut w = world(6, 2);
        let two_left = w.chunk("/two", 3, &[0, 1, 5]);
        let one_left = w.chunk("/one", 3, &[2, 3, 5]);
        w.kill(5);
        w.kill(3);
        // One stream per target and source: only so much fits in a tick.
        let mut r = Replicator::new(settings(1));
        let cmds = w.tick(&mut r, false);
        let c = copies(&cmds);
        assert_eq!(c.first().map(|x| x.0), Some(one_left), "{c:?}");
        assert!(c.iter().any(|x| x.0 == two_left) || c.len() >= 2, "{c:?}");
        // Each target is used once, each source once.
        let targets: HashSet<_> = c.iter().map(|x| x.2).collect();
        assert_eq!(targets.len(), c.len());
    }

    #[test]
    fn copies_restore_rack_spread_and_pending_copies_count() {
        let mut w = world(4, 2);
        let h = w.chunk("/f", 3, &[0, 2, 1]);
        w.kill(1);
        let mut r = Replicator::new(settings(2));
        let c = copies(&w.tick(&mut r, false));
        // The survivors are both on /a: the copy goes to /b (server 3).
        assert_eq!(c, vec![(h, ServerIdx(0), ServerIdx(3))]);
        // Pending: not issued again until it times out.
        assert!(copies(&w.tick(&mut r, false)).is_empty());
        r.confirmed(h, ServerIdx(3));
        assert!(r.pending().is_empty());
    }

    #[test]
    fn all_on_one_rack_gains_another_then_loses_the_excess() {
        let mut w = world(4, 2);
        let h = w.chunk("/f", 2, &[0, 2]);
        let mut r = Replicator::new(settings(2));
        let c = copies(&w.tick(&mut r, false));
        assert_eq!(c.len(), 1);
        assert_eq!(w.cluster.get(c[0].2).rack, "/b");
        // The copy arrives: three good replicas for a factor of two.
        let held = ReportedState { version: 1, length: 100, finalized: true };
        w.chunks.report(h, c[0].2, held, ReportKind::Received);
        r.confirmed(h, c[0].2);
        let d = deletes(&w.tick(&mut r, false));
        assert_eq!(d.len(), 1);
        assert_eq!(w.cluster.get(d[0].1).rack, "/a", "one of the crowded rack goes");
    }

    #[test]
    fn the_last_replica_is_never_deleted() {
        let w = world(2, 1);
        let one = [ServerIdx(0)];
        assert!(excess(&one, 0, None, &w.cluster).is_empty());
        assert_eq!(excess(&[ServerIdx(0), ServerIdx(1)], 0, None, &w.cluster).len(), 1);
        // A chunk whose only good replica is next to a corrupt one keeps both until a
        // copy exists.
        let mut w = world(2, 1);
        let h = w.chunk("/f", 1, &[0, 1]);
        w.chunks.mark_corrupt(h, ServerIdx(1));
        let mut r = Replicator::new(settings(2));
        assert_eq!(deletes(&w.tick(&mut r, false)), vec![(h, ServerIdx(1))]);
        let mut w = world(2, 1);
        let h = w.chunk("/g", 2, &[0, 1]);
        w.chunks.mark_corrupt(h, ServerIdx(1));
        assert!(deletes(&w.tick(&mut r, false)).is_empty(), "replace first, delete after");
    }

    #[test]
    fn corrupt_holders_are_copy_targets_whatever_the_cluster_size() {
        for n in [3u32, 4, 5] {
            let mut w = world(n, 2);
            let h = w.chunk("/f", 3, &[0, 1, 2]);
            w.chunks.mark_corrupt(h, ServerIdx(1));
            w.chunks.mark_corrupt(h, ServerIdx(2));
            let mut r = Replicator::new(settings(0));
            let cmds = w.tick(&mut r, false);
            let c = copies(&cmds);
            assert_eq!(c.len(), 2, "{n} servers: {c:?}");
            assert!(c.iter().all(|&(_, source, _)| source == ServerIdx(0)), "{c:?}");
            assert!(deletes(&cmds).is_empty(), "replace first, delete after");
            // The copies arrive (on 3 servers they replaced the corrupt files in place).
            for &(_, _, target) in &c {
                let held = ReportedState { version: 1, length: 100, finalized: true };
                w.chunks.report(h, target, held, ReportKind::Received);
                r.confirmed(h, target);
            }
            let good = w.chunks.get(h).map_or(0, |c| c.readable().count());
            assert_eq!(good, 3, "{n} servers");
            let cmds = w.tick(&mut r, false);
            let corrupt_left = w.chunks.get(h).map_or(0, |c| c.replicas.len()) - good;
            assert_eq!(deletes(&cmds).len(), corrupt_left, "{n} servers: {cmds:?}");
        }
    }

    #[test]
    fn leftovers_of_failed_copies_are_deleted_and_their_servers_used_again() {
        let mut w = world(3, 1);
        let h = w.chunk("/f", 3, &[0, 1]);
        // A copy to server 2 failed half-way; its full report lists the rbw file.
        let rbw = ReportedState { version: 1, length: 7, finalized: false };
        w.chunks.report(h, ServerIdx(2), rbw, ReportKind::Held);
        let mut r = Replicator::new(settings(0));
        let cmds = w.tick(&mut r, false);
        let delete = DeleteCmd { handle: h, version: 1, rbw_only: true };
        assert!(cmds.contains(&Command::Delete { server: ServerIdx(2), delete }), "{cmds:?}");
        assert_eq!(copies(&cmds).iter().map(|c| c.2).collect::<Vec<_>>(), vec![ServerIdx(2)]);
        // While that copy is pending, its rbw file is not garbage.
        w.chunks.report(h, ServerIdx(2), rbw, ReportKind::Held);
        let cmds = w.tick(&mut r, false);
        assert!(deletes(&cmds).is_empty() && copies(&cmds).is_empty(), "{cmds:?}");
    }

    #[test]
    fn throttle_limits_streams_per_server() {
        let mut w = world(3, 1);
        for i in 0..6 {
            w.chunk(&format!("/f{i}"), 2, &[0]);
        }
        let mut r = Replicator::new(settings(2));
        let c = copies(&w.tick(&mut r, false));
        assert_eq!(c.len(), 2, "server 0 serves at most two copies: {c:?}");
        let mut r = Replicator::new(settings(0));
        assert_eq!(copies(&w.tick(&mut r, false)).len(), 6, "unlimited");
    }

    #[test]
    fn nothing_in_safe_mode() {
        let mut w = world(4, 2);
        w.chunk("/f", 3, &[0]);
        let mut r = Replicator::new(settings(2));
        assert!(w.tick(&mut r, true).is_empty());
        assert!(!w.tick(&mut r, false).is_empty());
    }

    #[test]
    fn draining_replicas_are_sources_not_counted() {
        let mut w = world(4, 2);
        let h = w.chunk("/f", 2, &[0, 1]);
        w.cluster.set_admin(ServerIdx(0), AdminState::Decommissioning);
        let mut r = Replicator::new(settings(2));
        let c = copies(&w.tick(&mut r, false));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].1, ServerIdx(0), "the draining server is the source");
        assert!(c[0].2 != ServerIdx(0) && c[0].2 != ServerIdx(1));
        assert!(deletes(&w.tick(&mut r, false)).is_empty());
        let _ = h;
    }

    #[test]
    fn expired_copies_are_issued_again() {
        let mut w = world(4, 2);
        w.chunk("/f", 3, &[0, 1]);
        let mut r =
            Replicator::new(Settings { max_streams: 2, pending_timeout: Duration::from_secs(5) });
        assert_eq!(copies(&w.tick(&mut r, false)).len(), 1);
        assert!(copies(&w.tick(&mut r, false)).is_empty());
        w.now += Duration::from_secs(6);
        // Keep the servers live at the new time.
        for i in 0..4 {
            w.cluster.heartbeat(&format!("cs{i}"), LOAD, w.now, 0);
        }
        assert_eq!(copies(&w.tick(&mut r, false)).len(), 1);
    }
}
