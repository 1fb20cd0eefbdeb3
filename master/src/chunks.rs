//! The chunk map: for every chunk, its file, version, length and replicas.
//!
//! Replica locations are never persisted (GFS): they are learned from the write pipeline
//! a client used, and from what chunkservers report when they register and as they
//! finalize, delete or find corrupt replicas. This module keeps that map and answers
//! "which replicas of chunk H can be read"; liveness of the servers themselves is
//! [`crate::cluster`]'s.
//!
//! Layout, for memory at millions of chunks: handles are handed out in sequence, so the
//! map is a table of fixed pages of [`PAGE`] slots indexed by handle (a page exists only
//! while it holds a chunk), not a hash map keyed by handle, whose power-of-two bucket
//! arrays sit half empty right after they grow. A chunk's replicas are held inline (up to
//! three, the default factor) rather than in a heap vector of their own.
//!
//! # Versions and the replica state machine
//!
//! A chunk's version is the master's alone to move, and only upwards: 1 when allocated,
//! +1 at each pipeline recovery or lease recovery, each bump logged before any
//! chunkserver or client hears of it. A replica holds the version it was written (or
//! last restamped) at; one below the chunk's is *stale*, never read, and deleted.
//!
//! The master's record of one replica moves through these states:
//!
//! ```text
//!              allocate / pipeline recovery          client finished the chunk,
//!   (none) ─────────────────────────────────▶ Expected ──── or a `received` report ──▶ Finalized
//!      ▲  │                                       │                                      │
//!      │  │ report of a version never issued      │ reader / chunkserver / length        │
//!      │  └───────────────────────────────────────┴─ mismatch, unissued version ─▶ Corrupt ◀┘
//!      │                                                                            │
//!      └── stale report, delete issued, full report without it, file gone ◀─────────┘
//! ```
//!
//! Handles come from the master alone: [`ChunkMap::allocate`] hands them out in
//! sequence and fails rather than wrap ([`HandlesExhausted`]); a report never moves the
//! counter (a handle the master does not know is an orphan, see `core::take_report`).
//!
//! Rules, which the chunkserver's store mirrors (chunkserver `store` module docs):
//!
//! - A report *newer* than the chunk is never adopted: every version is logged before
//!   any chunkserver hears of it, so a newer one was never issued (a forged report, a
//!   rogue write, a damaged header). The replica is recorded corrupt at the version it
//!   claims ([`ReportOutcome::Unissued`]), so it is never read and, once the chunk has
//!   its full good replication, deleted by a command naming that version; the chunk's
//!   version and its good replicas are untouched.
//! - A report older than the chunk removes the record of that server only if the record
//!   is not newer than the report ([`ReportOutcome::Outdated`] otherwise: the report was
//!   sent before a recovery restamped that replica, and arrives late). The delete it
//!   causes names the reported version, so the chunkserver never removes a newer replica.
//! - A `Corrupt` record stays corrupt when a full report lists the replica again; only a
//!   `received` report (a copy or write that replaced the file) makes it good again.
//! - A replica being written of a *complete* chunk is a leftover (a failed copy or a
//!   dropped pipeline node): the replication monitor deletes it (`rbw_only`, so a copy
//!   that finalized meanwhile survives) and may pick that server as a copy target.

use hashbrown::HashMap;

/// Pages are hashed with a fixed seed: the map is iterated by the replication monitor,
/// and the same commands must give the same decisions (replay, the simulator's seeds).
type Pages<P> = HashMap<u64, P, foldhash::fast::FixedState>;
use smallvec::SmallVec;

use crate::ids::{InodeId, ServerIdx};

/// The handle counter reached the end of the handle space: no chunk can be allocated.
/// Only a log or checkpoint naming a handle near `u64::MAX` gets here (a million chunks
/// a second would take 584,000 years).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("chunk handles are exhausted")]
pub struct HandlesExhausted;

/// Chunks per page of the chunk table.
pub const PAGE: usize = 256;
const PAGE_BITS: u32 = PAGE.trailing_zeros();

pub use crate::ids::ChunkHandle;

/// What the master knows of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaStatus {
    /// A pipeline target whose copy is not yet confirmed complete.
    Expected,
    /// Holds the chunk, complete, at the version recorded with it.
    Finalized,
    /// Found corrupt by a reader or its chunkserver; kept only until repaired.
    Corrupt,
}

/// One replica of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    /// Chunkserver holding it.
    pub server: ServerIdx,
    /// Version of the chunk that server holds.
    pub version: u64,
    /// Whether it is complete, expected or corrupt.
    pub status: ReplicaStatus,
}

/// A chunk's replicas: up to three held inline.
pub type Replicas = SmallVec<[Replica; 3]>;

/// A chunk and its replicas.
#[derive(Debug, Clone)]
pub struct ChunkInfo {
    /// File the chunk belongs to.
    pub file: InodeId,
    /// Current version; replicas with an older one are stale.
    pub version: u64,
    /// Bytes in the chunk once finished (0 while being written).
    pub length: u64,
    /// Known replicas.
    pub replicas: Replicas,
}

/// The file id no inode has: marks a free slot of the chunk table.
const NO_FILE: InodeId = InodeId(0);

impl ChunkInfo {
    const FREE: ChunkInfo =
        ChunkInfo { file: NO_FILE, version: 0, length: 0, replicas: SmallVec::new_const() };

    fn is_free(&self) -> bool {
        self.file == NO_FILE
    }

    /// Replicas that may be read: complete, at the current version, not corrupt.
    pub fn readable(&self) -> impl Iterator<Item = &Replica> {
        self.replicas
            .iter()
            .filter(move |r| r.status == ReplicaStatus::Finalized && r.version == self.version)
    }
}

/// Where a chunkserver's report of a replica comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Listed in a full report: the replica is there, maybe for a long time.
    Held,
    /// Just written or copied (an incremental `received` report): its files are new.
    Received,
}

/// How a chunkserver's report of a replica was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Recorded as a good replica.
    Accepted,
    /// Older than the chunk's version: the replica must be deleted.
    Stale,
    /// Older than what the master already knows that server holds: the report was sent
    /// before a recovery restamped the replica. Ignored, and nothing is deleted.
    Outdated,
    /// Finalized at a length other than the chunk's: recorded as corrupt.
    WrongLength,
    /// The chunk belongs to no file the master knows.
    Unknown,
    /// Newer than any version the master issued: recorded as corrupt, never adopted.
    Unissued,
}

/// What a chunkserver says it holds of one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedState {
    /// Version of the replica.
    pub version: u64,
    /// Bytes held.
    pub length: u64,
    /// Complete (not being written).
    pub finalized: bool,
}

/// [`PAGE`] consecutive handles' slots and how many of them hold a chunk.
#[derive(Debug, Clone)]
struct Page {
    slots: Box<[ChunkInfo]>,
    used: u32,
}

/// Version and length of every chunk, copied for a checkpoint ([`ChunkMap::persistent`]).
#[derive(Debug, Default)]
pub struct ChunkVersions {
    pages: Pages<Box<[(u64, u64)]>>,
}

impl ChunkVersions {
    /// The version and length of chunk `h`, if the map held it.
    pub fn get(&self, h: ChunkHandle) -> Option<(u64, u64)> {
        let (page, slot) = split(h);
        // Free slots hold version 0, which no chunk has.
        self.pages.get(&page).map(|p| p[slot]).filter(|&(version, _)| version != 0)
    }
}

/// Every chunk the master knows.
#[derive(Debug, Default)]
pub struct ChunkMap {
    /// Pages by `handle >> PAGE_BITS`.
    pages: Pages<Page>,
    len: usize,
    next_handle: u64,
}

fn split(h: ChunkHandle) -> (u64, usize) {
    (h.0 >> PAGE_BITS, (h.0 as usize) & (PAGE - 1))
}

impl ChunkMap {
    /// An empty map whose first handle will be 1.
    pub fn new() -> ChunkMap {
        ChunkMap { pages: Pages::default(), len: 0, next_handle: 1 }
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no chunks.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk with this handle.
    pub fn get(&self, h: ChunkHandle) -> Option<&ChunkInfo> {
        let (page, slot) = split(h);
        self.pages.get(&page).map(|p| &p.slots[slot]).filter(|c| !c.is_free())
    }

    fn get_mut(&mut self, h: ChunkHandle) -> Option<&mut ChunkInfo> {
        let (page, slot) = split(h);
        self.pages.get_mut(&page).map(|p| &mut p.slots[slot]).filter(|c| !c.is_free())
    }

    /// All chunks, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (ChunkHandle, &ChunkInfo)> {
        self.pages.iter().flat_map(|(&page, p)| {
            p.slots
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.is_free())
                .map(move |(slot, c)| (ChunkHandle((page << PAGE_BITS) | slot as u64), c))
        })
    }

    /// A copy of every chunk's version and length (what a checkpoint keeps), page by page:
    /// a few sequential copies, cheap enough to take under the state lock.
    pub fn persistent(&self) -> ChunkVersions {
        let pages = self
            .pages
            .iter()
            .map(|(&page, p)| {
                let slots = p.slots.iter().map(|c| (c.version, c.length)).collect();
                (page, slots)
            })
            .collect();
        ChunkVersions { pages }
    }

    /// Puts `info` at `h`, replacing whatever was there.
    fn insert(&mut self, h: ChunkHandle, info: ChunkInfo) {
        debug_assert!(!info.is_free(), "a chunk must belong to a file");
        let (page, slot) = split(h);
        let p = self.pages.entry(page).or_insert_with(|| Page {
            slots: std::iter::repeat_n(ChunkInfo::FREE, PAGE).collect(),
            used: 0,
        });
        if p.slots[slot].is_free() {
            p.used += 1;
            self.len += 1;
        }
        p.slots[slot] = info;
    }

    /// Allocates a new chunk of `file` whose replicas are expected on `pipeline`.
    ///
    /// # Errors
    /// [`HandlesExhausted`] once the counter is at the end of the handle space.
    pub fn allocate(
        &mut self,
        file: InodeId,
        pipeline: &[ServerIdx],
    ) -> Result<ChunkHandle, HandlesExhausted> {
        let h = ChunkHandle(self.next_handle);
        // The counter never wraps: live handles must never be handed out again.
        self.next_handle = self.next_handle.checked_add(1).ok_or(HandlesExhausted)?;
        let replicas = pipeline
            .iter()
            .map(|&server| Replica { server, version: 1, status: ReplicaStatus::Expected })
            .collect();
        self.insert(h, ChunkInfo { file, version: 1, length: 0, replicas });
        Ok(h)
    }

    /// Whether [`ChunkMap::allocate`] would fail.
    pub fn is_exhausted(&self) -> bool {
        self.next_handle == u64::MAX
    }

    /// The handle the next allocation will get.
    pub fn next_handle(&self) -> u64 {
        self.next_handle
    }

    /// Puts back a chunk known from the operation log or a checkpoint. It has no replicas:
    /// those are never persisted and are learned again from chunkserver reports.
    pub fn restore(&mut self, h: ChunkHandle, file: InodeId, version: u64, length: u64) {
        self.insert(h, ChunkInfo { file, version, length, replicas: Replicas::new() });
        self.restore_next_handle(h.0.saturating_add(1));
    }

    /// Puts back the handle counter from the operation log or a checkpoint (never from a
    /// chunkserver's report): future handles are at least `next`. Saturates at
    /// `u64::MAX`, where [`ChunkMap::allocate`] fails instead of wrapping.
    pub fn restore_next_handle(&mut self, next: u64) {
        self.next_handle = self.next_handle.max(next);
    }

    /// Records a chunk's final length: the client has the pipeline's acknowledgement, so
    /// every expected replica holds it durably.
    pub fn finish(&mut self, h: ChunkHandle, length: u64) {
        if let Some(c) = self.get_mut(h) {
            c.length = length;
            for r in &mut c.replicas {
                if r.status == ReplicaStatus::Expected {
                    r.status = ReplicaStatus::Finalized;
                }
            }
        }
    }

    /// Gives a chunk being written a new version; its expected replicas move to it
    /// (lease recovery stamps them with it before they are finalized).
    pub fn set_version(&mut self, h: ChunkHandle, version: u64) {
        if let Some(c) = self.get_mut(h) {
            c.version = version;
            for r in &mut c.replicas {
                if r.status == ReplicaStatus::Expected {
                    r.version = version;
                }
            }
        }
    }

    /// Pipeline recovery: the chunk moves to `version` and its replicas become exactly
    /// the surviving pipeline nodes (the others now hold a stale version).
    pub fn set_pipeline(&mut self, h: ChunkHandle, version: u64, survivors: &[ServerIdx]) {
        if let Some(c) = self.get_mut(h) {
            c.version = version;
            c.replicas = survivors
                .iter()
                .map(|&server| Replica { server, version, status: ReplicaStatus::Expected })
                .collect();
        }
    }

    /// Lease recovery settled the chunk: these replicas hold it finalized at its version.
    pub fn settle(&mut self, h: ChunkHandle, length: u64, holders: &[ServerIdx]) {
        if let Some(c) = self.get_mut(h) {
            c.length = length;
            let version = c.version;
            c.replicas = holders
                .iter()
                .map(|&server| Replica { server, version, status: ReplicaStatus::Finalized })
                .collect();
        }
    }

    /// Forgets a chunk (its file is gone); returns it so its replicas can be deleted.
    pub fn remove(&mut self, h: ChunkHandle) -> Option<ChunkInfo> {
        let (page, slot) = split(h);
        let p = self.pages.get_mut(&page)?;
        if p.slots[slot].is_free() {
            return None;
        }
        let info = std::mem::replace(&mut p.slots[slot], ChunkInfo::FREE);
        p.used -= 1;
        self.len -= 1;
        if p.used == 0 {
            // Handles are never reused: a page whose chunks are all gone stays empty.
            self.pages.remove(&page);
        }
        Some(info)
    }

    /// Takes a chunkserver's report of a replica it holds (see the module docs for the
    /// rules).
    pub fn report(
        &mut self,
        h: ChunkHandle,
        server: ServerIdx,
        held: ReportedState,
        kind: ReportKind,
    ) -> ReportOutcome {
        let Some(c) = self.get_mut(h) else {
            return ReportOutcome::Unknown;
        };
        let ReportedState { version, length, finalized } = held;
        let known = c.replicas.iter().position(|r| r.server == server);
        if version > c.version {
            // Never issued: every version is logged before anyone hears of it. Recorded
            // corrupt at the version it claims, so the delete that removes it names it.
            let r = Replica { server, version, status: ReplicaStatus::Corrupt };
            match known {
                Some(i) => c.replicas[i] = r,
                None => c.replicas.push(r),
            }
            return ReportOutcome::Unissued;
        }
        if version < c.version {
            if let Some(i) = known {
                if c.replicas[i].version > version {
                    return ReportOutcome::Outdated;
                }
                c.replicas.remove(i);
            }
            return ReportOutcome::Stale;
        }
        let complete = c.length > 0;
        let (status, outcome) = match (finalized, complete) {
            (true, true) if length != c.length => {
                (ReplicaStatus::Corrupt, ReportOutcome::WrongLength)
            }
            (true, _) => (ReplicaStatus::Finalized, ReportOutcome::Accepted),
            (false, _) => (ReplicaStatus::Expected, ReportOutcome::Accepted),
        };
        match known.map(|i| &mut c.replicas[i]) {
            Some(r) => {
                // A replica once found corrupt stays corrupt until it is deleted or
                // replaced by a new write of its files.
                if r.status != ReplicaStatus::Corrupt || kind == ReportKind::Received {
                    r.status = status;
                }
                r.version = version;
            }
            None => c.replicas.push(Replica { server, version, status }),
        }
        outcome
    }

    /// Marks a replica corrupt. Returns false if the master knows no such replica.
    pub fn mark_corrupt(&mut self, h: ChunkHandle, server: ServerIdx) -> bool {
        match self.get_mut(h).and_then(|c| c.replicas.iter_mut().find(|r| r.server == server)) {
            Some(r) => {
                r.status = ReplicaStatus::Corrupt;
                true
            }
            None => false,
        }
    }

    /// Forgets one replica (its chunkserver deleted it).
    pub fn remove_replica(&mut self, h: ChunkHandle, server: ServerIdx) {
        if let Some(c) = self.get_mut(h) {
            c.replicas.retain(|r| r.server != server);
        }
    }

    /// Forgets every replica `server` holds except those in `keep` (after a full report).
    pub fn retain_server(
        &mut self,
        server: ServerIdx,
        keep: &std::collections::HashSet<ChunkHandle>,
    ) {
        for (&page, p) in &mut self.pages {
            for (slot, c) in p.slots.iter_mut().enumerate() {
                let h = ChunkHandle((page << PAGE_BITS) | slot as u64);
                if !c.is_free() && !keep.contains(&h) {
                    c.replicas
                        .retain(|r| r.server != server || r.status == ReplicaStatus::Expected);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ServerIdx = ServerIdx(0);
    const B: ServerIdx = ServerIdx(1);
    const F: InodeId = InodeId(7);
    const C: ServerIdx = ServerIdx(2);

    fn st(version: u64, length: u64, finalized: bool) -> ReportedState {
        ReportedState { version, length, finalized }
    }

    #[test]
    fn pipeline_replicas_become_readable_when_finished() {
        let mut m = ChunkMap::new();
        let h = m.allocate(F, &[A, B]).expect("handle");
        assert_eq!(m.get(h).map(|c| c.readable().count()), Some(0));
        m.finish(h, 10);
        assert_eq!(m.get(h).map(|c| c.readable().count()), Some(2));
    }

    #[test]
    fn reports_are_checked_against_version_and_length() {
        let mut m = ChunkMap::new();
        let h = m.allocate(F, &[A]).expect("handle");
        m.finish(h, 10);
        assert_eq!(m.report(h, B, st(1, 9, true), ReportKind::Held), ReportOutcome::WrongLength);
        assert_eq!(m.report(h, A, st(1, 10, true), ReportKind::Held), ReportOutcome::Accepted);
        assert_eq!(
            m.report(ChunkHandle(99), A, st(1, 10, true), ReportKind::Held),
            ReportOutcome::Unknown
        );
        assert_eq!(m.get(h).map(|c| c.readable().count()), Some(1));
        assert!(m.mark_corrupt(h, A));
        assert_eq!(m.get(h).map(|c| c.readable().count()), Some(0));
        // A corrupt replica does not turn good again by being reported.
        assert_eq!(m.report(h, A, st(1, 10, true), ReportKind::Held), ReportOutcome::Accepted);
        assert_eq!(m.get(h).map(|c| c.readable().count()), Some(0));
    }

    #[test]
    fn stale_versions_are_dropped() {
        let mut m = ChunkMap::new();
        let h = m.allocate(F, &[A]).expect("handle");
        m.set_pipeline(h, 2, &[B]);
        m.finish(h, 10);
        assert_eq!(m.report(h, B, st(2, 10, true), ReportKind::Held), ReportOutcome::Accepted);
        assert_eq!(m.report(h, A, st(1, 10, true), ReportKind::Held), ReportOutcome::Stale);
        let c = m.get(h).expect("chunk");
        assert_eq!(c.version, 2);
        assert_eq!(c.replicas.len(), 1);
    }

    #[test]
    fn a_version_never_issued_is_corrupt_and_never_adopted() {
        let mut m = ChunkMap::new();
        let h = m.allocate(F, &[A, B]).expect("handle");
        m.finish(h, 10);
        // A forged report (a spoofed registration) claims version 2 on a third server,
        // then on A, which held version 1.
        assert_eq!(m.report(h, C, st(2, 10, true), ReportKind::Held), ReportOutcome::Unissued);
        let c = m.get(h).expect("chunk");
        assert_eq!(c.version, 1, "never adopted");
        assert_eq!(c.readable().map(|r| r.server).collect::<Vec<_>>(), vec![A, B]);
        assert_eq!(m.report(h, A, st(2, 10, true), ReportKind::Received), ReportOutcome::Unissued);
        let c = m.get(h).expect("chunk");
        assert_eq!(c.readable().map(|r| r.server).collect::<Vec<_>>(), vec![B]);
        let a = c.replicas.iter().find(|r| r.server == A).expect("A");
        assert_eq!((a.status, a.version), (ReplicaStatus::Corrupt, 2), "deleted by version 2");
        // A being-written replica at a version never issued is no better.
        let w = m.allocate(F, &[A]).expect("handle");
        assert_eq!(m.report(w, B, st(5, 0, false), ReportKind::Held), ReportOutcome::Unissued);
        assert_eq!(m.get(w).map(|c| c.version), Some(1));
    }

    #[test]
    fn a_late_report_of_the_old_version_keeps_the_recovered_replica() {
        // The write of chunk h failed at its last packet on C; A and B had finalized it
        // at version 1, the client recovered the pipeline with them at version 2, and
        // their batched "received version 1" reports arrive after the bump.
        let mut m = ChunkMap::new();
        let h = m.allocate(F, &[A, B, C]).expect("handle");
        m.set_pipeline(h, 2, &[A, B]);
        assert_eq!(m.report(h, A, st(2, 10, true), ReportKind::Received), ReportOutcome::Accepted);
        assert_eq!(m.report(h, A, st(1, 10, true), ReportKind::Received), ReportOutcome::Outdated);
        assert_eq!(m.report(h, B, st(1, 10, true), ReportKind::Received), ReportOutcome::Outdated);
        // The dropped node's replica really is stale.
        assert_eq!(m.report(h, C, st(1, 4, false), ReportKind::Held), ReportOutcome::Stale);
        m.finish(h, 10);
        let c = m.get(h).expect("chunk");
        assert_eq!(c.readable().map(|r| r.server).collect::<Vec<_>>(), vec![A, B]);
    }

    /// Seeded runs of pipeline recoveries and reports delivered in any order, as late as
    /// they like: whatever arrives, every pipeline member stays recorded at the chunk's
    /// version, and a report that makes a replica stale names a version older than what
    /// that server holds only if the server is no longer a member (its delete names the
    /// reported version, which a chunkserver holding newer keeps).
    #[test]
    fn reports_in_any_order_never_remove_a_member_of_the_current_pipeline() {
        use rand::{Rng, SeedableRng};
        let servers = [A, B, C];
        for seed in 0..500u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut m = ChunkMap::new();
            let h = m.allocate(F, &servers).expect("handle");
            let mut holds: HashMap<ServerIdx, u64> = servers.iter().map(|&s| (s, 1)).collect();
            let mut members = servers.to_vec();
            let mut in_flight: Vec<(ServerIdx, u64, bool)> = Vec::new();
            for step in 0..40 {
                match rng.random_range(0..4) {
                    0 if members.len() > 1 => {
                        members.remove(rng.random_range(0..members.len()));
                        let version = m.get(h).map_or(0, |c| c.version) + 1;
                        m.set_pipeline(h, version, &members);
                        for s in &members {
                            holds.insert(*s, version);
                        }
                    }
                    1 | 2 => {
                        let s = servers[rng.random_range(0..servers.len())];
                        in_flight.push((s, holds[&s], rng.random_bool(0.5)));
                    }
                    _ if !in_flight.is_empty() => {
                        let (s, v, fin) =
                            in_flight.swap_remove(rng.random_range(0..in_flight.len()));
                        let outcome = m.report(h, s, st(v, 0, fin), ReportKind::Received);
                        if outcome == ReportOutcome::Stale && members.contains(&s) {
                            assert!(v < holds[&s], "seed {seed} step {step}");
                        }
                    }
                    _ => {}
                }
                let c = m.get(h).expect("chunk");
                for s in &members {
                    let recorded =
                        c.replicas.iter().any(|r| r.server == *s && r.version == c.version);
                    assert!(recorded, "seed {seed} step {step}: member {s:?} lost: {c:?}");
                }
            }
        }
    }

    #[test]
    fn a_received_copy_replaces_a_corrupt_record() {
        let mut m = ChunkMap::new();
        let h = m.allocate(F, &[A, B]).expect("handle");
        m.finish(h, 10);
        assert!(m.mark_corrupt(h, A));
        // Listed again in a full report: still corrupt.
        assert_eq!(m.report(h, A, st(1, 10, true), ReportKind::Held), ReportOutcome::Accepted);
        assert_eq!(m.get(h).map(|c| c.readable().count()), Some(1));
        // A copy replaced the file: good again.
        assert_eq!(m.report(h, A, st(1, 10, true), ReportKind::Received), ReportOutcome::Accepted);
        assert_eq!(m.get(h).map(|c| c.readable().count()), Some(2));
    }

    #[test]
    fn the_handle_counter_never_wraps() {
        let mut m = ChunkMap::new();
        m.restore_next_handle(42);
        assert_eq!(m.allocate(F, &[A]), Ok(ChunkHandle(42)));
        m.restore(ChunkHandle(u64::MAX - 2), F, 1, 10);
        assert_eq!(m.allocate(F, &[A]), Ok(ChunkHandle(u64::MAX - 1)));
        assert!(m.is_exhausted());
        assert_eq!(m.allocate(F, &[A]), Err(HandlesExhausted));
        assert_eq!(m.allocate(F, &[A]), Err(HandlesExhausted));
        // Nothing was handed out twice.
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn pages_come_and_go_with_their_chunks() {
        let mut m = ChunkMap::new();
        let far = ChunkHandle(1 << 40);
        m.restore(far, F, 3, 10);
        let near = m.allocate(F, &[A, B]).expect("handle");
        assert_eq!(near.0, (1 << 40) + 1, "handles continue above a restored one");
        assert_eq!(m.len(), 2);
        let mut seen: Vec<u64> = m.iter().map(|(h, _)| h.0).collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![1 << 40, (1 << 40) + 1]);
        assert!(m.remove(far).is_some() && m.remove(far).is_none());
        assert!(m.remove(near).is_some());
        assert!(m.is_empty() && m.pages.is_empty());
        assert!(std::mem::size_of::<ChunkInfo>() <= 80);
    }
}
