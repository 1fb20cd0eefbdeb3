//! Cluster membership: the chunkservers the master knows, their load and liveness, and
//! the commands waiting for their next heartbeat.
//!
//! A chunkserver is live while its last heartbeat is younger than the dead interval.
//! Time is passed in (`now`) rather than read here, so tests drive it. Each server also
//! has an administrative state (in service, being decommissioned, decommissioned) set by
//! `dfs admin decommission|recommission`; it is kept in memory only, as HDFS keeps its
//! exclude list outside the namespace: after a master restart an administrator repeats it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::ids::ChunkHandle;

pub use crate::ids::ServerIdx;

/// Load figures a chunkserver sends with every heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Bytes the chunkserver may use in all.
    pub capacity: u64,
    /// Bytes used by replicas.
    pub used: u64,
    /// Bytes still free for replicas.
    pub remaining: u64,
    /// Writes in progress.
    pub active_writes: u32,
    /// Replicas held.
    pub chunk_count: u64,
}

/// Whether a chunkserver is in service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AdminState {
    /// Takes new replicas; its replicas count toward their chunk's factor.
    #[default]
    Normal,
    /// Being drained: no new replicas, its replicas serve only as copy sources.
    Decommissioning,
    /// Every chunk it held is fully replicated elsewhere; it may be stopped.
    Decommissioned,
}

/// A copy a chunkserver is asked to make, carried by its next heartbeat reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicateCmd {
    /// The chunk.
    pub handle: ChunkHandle,
    /// Its version.
    pub version: u64,
    /// Its length.
    pub length: u64,
    /// The chunkserver to copy from.
    pub source: ServerIdx,
}

/// A replica a chunkserver is told to delete, carried by its next heartbeat reply.
///
/// A delete names the version it removes: the chunkserver deletes its replica only if it
/// is not newer (a lower version, or this version unless `rbw_only` and its replica is
/// finalized). So a delete decided on old news (a late report, a reordered command)
/// never removes a replica written since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteCmd {
    /// The chunk.
    pub handle: ChunkHandle,
    /// The newest version this delete removes.
    pub version: u64,
    /// Remove a replica of `version` only while it is being written (never a finalized
    /// one): for leftovers of failed copies, whose chunk has finalized replicas of that
    /// very version.
    pub rbw_only: bool,
}

impl DeleteCmd {
    /// A delete of every replica of `handle` up to `version`, finalized or not.
    pub fn upto(handle: ChunkHandle, version: u64) -> DeleteCmd {
        DeleteCmd { handle, version, rbw_only: false }
    }

    /// Whether this delete removes everything `other` removes.
    fn covers(&self, other: &DeleteCmd) -> bool {
        self.version > other.version
            || (self.version == other.version && (!self.rbw_only || other.rbw_only))
    }
}

/// How a chunkserver names itself when it registers.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// Stable id kept in its data directory.
    pub id: &'a str,
    /// Address of its Chunkserver service.
    pub addr: &'a str,
    /// Rack name.
    pub rack: &'a str,
}

/// A chunkserver as the master sees it.
#[derive(Debug)]
pub struct Chunkserver {
    /// Stable id kept in its data directory.
    pub id: String,
    /// Address of its Chunkserver service.
    pub addr: String,
    /// Host part of `addr`, for locality.
    pub host: String,
    /// Rack name.
    pub rack: String,
    /// Latest load figures.
    pub load: Load,
    /// When it last reported.
    pub last_contact: Instant,
    /// Wall-clock time of the last report, ms since the Unix epoch (for people).
    pub last_contact_ms: i64,
    /// Chunks it should delete, sent with the next heartbeat reply.
    pub pending_deletes: Vec<DeleteCmd>,
    /// Copies it should make, sent with the next heartbeat reply.
    pub pending_replicates: Vec<ReplicateCmd>,
    /// In service or being drained.
    pub admin: AdminState,
    /// Digest of the secret it proved its id with, from its first registration.
    pub proof: Option<[u8; 32]>,
}

/// The host part of a `host:port` address (brackets of an IPv6 literal removed).
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Every chunkserver ever registered since the master started.
#[derive(Debug)]
pub struct Cluster {
    servers: Vec<Chunkserver>,
    by_id: HashMap<String, ServerIdx>,
    dead_after: Duration,
    quiet_after: Duration,
}

impl Cluster {
    /// An empty cluster whose members die after `dead_after` without a heartbeat.
    pub fn new(dead_after: Duration) -> Cluster {
        Cluster { servers: Vec::new(), by_id: HashMap::new(), dead_after, quiet_after: dead_after }
    }

    /// Stops placing new replicas on a chunkserver silent for `quiet_after`, long before
    /// it is declared dead: a server that missed a couple of heartbeats has most likely
    /// crashed or hung, and every chunk placed on it would need a pipeline recovery.
    pub fn set_quiet_after(&mut self, quiet_after: Duration) {
        self.quiet_after = quiet_after.min(self.dead_after);
    }

    /// Registers (or re-registers) a chunkserver; returns its index.
    pub fn register(
        &mut self,
        who: Identity<'_>,
        load: Load,
        now: Instant,
        now_ms: i64,
    ) -> ServerIdx {
        let Identity { id, addr, rack } = who;
        let entry = Chunkserver {
            id: id.to_owned(),
            addr: addr.to_owned(),
            host: host_of(addr).to_owned(),
            rack: rack.to_owned(),
            load,
            last_contact: now,
            last_contact_ms: now_ms,
            pending_deletes: Vec::new(),
            pending_replicates: Vec::new(),
            admin: AdminState::Normal,
            proof: None,
        };
        match self.by_id.get(id) {
            Some(&idx) => {
                let old = &mut self.servers[idx.0 as usize];
                let pending_deletes = std::mem::take(&mut old.pending_deletes);
                let pending_replicates = std::mem::take(&mut old.pending_replicates);
                let (admin, proof) = (old.admin, old.proof);
                self.servers[idx.0 as usize] =
                    Chunkserver { pending_deletes, pending_replicates, admin, proof, ..entry };
                idx
            }
            None => {
                let idx = ServerIdx(self.servers.len() as u32);
                self.servers.push(entry);
                self.by_id.insert(id.to_owned(), idx);
                idx
            }
        }
    }

    /// Whether a registration naming `id` at `addr` with `proof` may have that id: the
    /// first registration of an id records the digest of the secret its chunkserver
    /// keeps beside the id in its data directory; later ones must bring the same secret.
    /// The id and the secret are created together, so a genuine chunkserver never
    /// changes its secret: another one is someone naming an id that is not theirs, and
    /// taking it over would let them report (and so delete) that server's replicas. A
    /// chunkserver that sends no secret can't claim an id that has one.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] naming the id, where it is registered and who asks.
    pub fn check_claim(&self, id: &str, addr: &str, proof: Option<[u8; 32]>) -> Result<()> {
        let Some(&idx) = self.by_id.get(id) else { return Ok(()) };
        let known = &self.servers[idx.0 as usize];
        match known.proof {
            Some(p) if Some(p) != proof => Err(Error::PermissionDenied {
                path: format!("chunkserver {id}"),
                detail: format!(
                    "registration from {addr} does not prove the id registered from {}",
                    known.addr
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Records the proof of a registered chunkserver's id (kept if it sends none).
    pub fn set_proof(&mut self, idx: ServerIdx, proof: Option<[u8; 32]>) {
        if let Some(p) = proof {
            self.servers[idx.0 as usize].proof = Some(p);
        }
    }

    /// Records a heartbeat; `None` if the chunkserver never registered with this master.
    /// The flag says whether it had been declared dead before this heartbeat.
    pub fn heartbeat(
        &mut self,
        id: &str,
        load: Load,
        now: Instant,
        now_ms: i64,
    ) -> Option<(ServerIdx, bool)> {
        let idx = *self.by_id.get(id)?;
        let was_dead = !self.is_live(idx, now);
        let s = &mut self.servers[idx.0 as usize];
        s.load = load;
        s.last_contact = now;
        s.last_contact_ms = now_ms;
        Some((idx, was_dead))
    }

    /// The index of a registered chunkserver.
    pub fn lookup(&self, id: &str) -> Option<ServerIdx> {
        self.by_id.get(id).copied()
    }

    /// The chunkserver at `idx`.
    ///
    /// # Panics
    /// If `idx` did not come from this cluster (a bug).
    pub fn get(&self, idx: ServerIdx) -> &Chunkserver {
        &self.servers[idx.0 as usize]
    }

    /// Every chunkserver with its index.
    pub fn iter(&self) -> impl Iterator<Item = (ServerIdx, &Chunkserver)> {
        self.servers.iter().enumerate().map(|(i, s)| (ServerIdx(i as u32), s))
    }

    /// True if `idx` heartbeated within the dead interval.
    pub fn is_live(&self, idx: ServerIdx, now: Instant) -> bool {
        now.saturating_duration_since(self.get(idx).last_contact) < self.dead_after
    }

    /// Live chunkservers.
    pub fn live(&self, now: Instant) -> impl Iterator<Item = (ServerIdx, &Chunkserver)> {
        self.iter().filter(move |(i, _)| self.is_live(*i, now))
    }

    /// Live chunkservers in service: those that may take new replicas.
    pub fn in_service(&self, now: Instant) -> impl Iterator<Item = (ServerIdx, &Chunkserver)> {
        self.live(now).filter(|(_, s)| s.admin == AdminState::Normal)
    }

    /// Chunkservers that may take a new replica now: in service and heard from within
    /// the quiet interval (see [`Cluster::set_quiet_after`]).
    pub fn accepting(&self, now: Instant) -> impl Iterator<Item = (ServerIdx, &Chunkserver)> {
        let quiet = self.quiet_after;
        self.in_service(now)
            .filter(move |(_, s)| now.saturating_duration_since(s.last_contact) < quiet)
    }

    /// The chunkserver with this address or id.
    pub fn find(&self, addr_or_id: &str) -> Option<ServerIdx> {
        self.lookup(addr_or_id)
            .or_else(|| self.iter().find(|(_, s)| s.addr == addr_or_id).map(|(i, _)| i))
    }

    /// Sets a chunkserver's administrative state.
    pub fn set_admin(&mut self, idx: ServerIdx, admin: AdminState) {
        self.servers[idx.0 as usize].admin = admin;
    }

    /// Queues a copy for `idx`'s next heartbeat.
    pub fn queue_replicate(&mut self, idx: ServerIdx, cmd: ReplicateCmd) {
        self.servers[idx.0 as usize].pending_replicates.push(cmd);
    }

    /// Takes the copies queued for `idx`.
    pub fn take_replicates(&mut self, idx: ServerIdx) -> Vec<ReplicateCmd> {
        std::mem::take(&mut self.servers[idx.0 as usize].pending_replicates)
    }

    /// Number of distinct racks among live chunkservers.
    pub fn live_racks(&self, now: Instant) -> usize {
        let mut racks: Vec<&str> = self.live(now).map(|(_, s)| s.rack.as_str()).collect();
        racks.sort_unstable();
        racks.dedup();
        racks.len()
    }

    /// Queues a delete command for `idx`'s next heartbeat (one per chunk: the widest).
    pub fn queue_delete(&mut self, idx: ServerIdx, cmd: DeleteCmd) {
        let pending = &mut self.servers[idx.0 as usize].pending_deletes;
        match pending.iter_mut().find(|d| d.handle == cmd.handle) {
            Some(d) if d.covers(&cmd) => {}
            Some(d) => *d = cmd,
            None => pending.push(cmd),
        }
    }

    /// Drops a queued delete of `h` on `idx`: a copy is about to replace that replica,
    /// and the delete must not arrive after it.
    pub fn cancel_delete(&mut self, idx: ServerIdx, h: ChunkHandle) {
        self.servers[idx.0 as usize].pending_deletes.retain(|d| d.handle != h);
    }

    /// Takes the delete commands queued for `idx`.
    pub fn take_deletes(&mut self, idx: ServerIdx) -> Vec<DeleteCmd> {
        std::mem::take(&mut self.servers[idx.0 as usize].pending_deletes)
    }

    /// Counts one more write in progress on `idx` until its next heartbeat says better,
    /// so that a burst of allocations spreads instead of piling onto one server.
    pub fn note_write(&mut self, idx: ServerIdx, bytes: u64) {
        let load = &mut self.servers[idx.0 as usize].load;
        load.active_writes = load.active_writes.saturating_add(1);
        load.remaining = load.remaining.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parts() {
        assert_eq!(host_of("127.0.0.2:9866"), "127.0.0.2");
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("nohost"), "nohost");
    }

    #[test]
    fn liveness_follows_heartbeats() {
        let t0 = Instant::now();
        let mut c = Cluster::new(Duration::from_secs(10));
        let a = c.register(
            Identity { id: "a", addr: "127.0.0.2:1", rack: "/r1" },
            Load::default(),
            t0,
            0,
        );
        assert!(c.is_live(a, t0 + Duration::from_secs(9)));
        assert!(!c.is_live(a, t0 + Duration::from_secs(10)));
        assert_eq!(
            c.heartbeat("a", Load::default(), t0 + Duration::from_secs(10), 0),
            Some((a, true))
        );
        assert!(c.is_live(a, t0 + Duration::from_secs(15)));
        assert_eq!(c.heartbeat("zz", Load::default(), t0, 0), None);
    }

    #[test]
    fn quiet_servers_take_no_new_replicas_before_they_are_dead() {
        let t0 = Instant::now();
        let mut c = Cluster::new(Duration::from_secs(10));
        c.set_quiet_after(Duration::from_secs(3));
        let who = Identity { id: "a", addr: "127.0.0.2:1", rack: "/r1" };
        let a = c.register(who, Load::default(), t0, 0);
        let later = t0 + Duration::from_secs(4);
        assert!(c.is_live(a, later));
        assert_eq!(c.accepting(t0).count(), 1);
        assert_eq!(c.accepting(later).count(), 0);
        c.heartbeat("a", Load::default(), later, 0);
        assert_eq!(c.accepting(later).count(), 1);
    }

    #[test]
    fn reregistering_keeps_index_and_pending_deletes() {
        let t0 = Instant::now();
        let mut c = Cluster::new(Duration::from_secs(10));
        let a = c.register(
            Identity { id: "a", addr: "127.0.0.2:1", rack: "/r1" },
            Load::default(),
            t0,
            0,
        );
        c.queue_delete(a, DeleteCmd { handle: ChunkHandle(3), version: 2, rbw_only: true });
        c.queue_delete(a, DeleteCmd::upto(ChunkHandle(3), 1));
        c.queue_delete(a, DeleteCmd::upto(ChunkHandle(3), 2));
        c.queue_delete(a, DeleteCmd { handle: ChunkHandle(3), version: 2, rbw_only: true });
        let again = c.register(
            Identity { id: "a", addr: "127.0.0.2:2", rack: "/r1" },
            Load::default(),
            t0,
            0,
        );
        assert_eq!(a, again);
        assert_eq!(c.get(a).addr, "127.0.0.2:2");
        assert_eq!(c.take_deletes(a), vec![DeleteCmd::upto(ChunkHandle(3), 2)]);
        assert!(c.take_deletes(a).is_empty());
    }
}
