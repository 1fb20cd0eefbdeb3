//! The master's core: namespace, chunk map and cluster behind one lock, and the
//! operations that touch more than one of them (allocating a chunk on placed replicas,
//! releasing a deleted file's chunks, taking chunkserver reports).
//!
//! No I/O happens here: the gRPC edge ([`crate::server`]) translates requests into these
//! calls and passes the time in, so the logic is driven and tested without a network.
//! The [`Journal`] held here only queues records for the log writer thread; it lives
//! under the same lock so that records are numbered in the order mutations are applied.

use std::collections::HashSet;
use std::time::Instant;

use proto::path::DfsPath;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tracing::{debug, info, warn};

use crate::chunks::{ChunkHandle, ChunkMap, ReportKind, ReportOutcome, ReportedState};
use crate::cluster::{Chunkserver, Cluster, DeleteCmd, Identity, Load, ReplicateCmd, ServerIdx};
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::leases::Leases;
use crate::namespace::{CreateArgs, InodeId, Namespace};
use crate::oplog::Journal;
use crate::placement::{self, Candidate, Distance};
use crate::replication::{Replicator, Settings};
use crate::retry_cache::RetryCache;
use crate::safemode::{Reported, SafeMode};

/// A chunk of a file with the replicas a client should use, in order.
#[derive(Debug, Clone)]
pub struct Located {
    /// The chunk.
    pub handle: ChunkHandle,
    /// Its version.
    pub version: u64,
    /// Offset of its first byte in the file.
    pub offset: u64,
    /// Its length (0 for a chunk being written).
    pub length: u64,
    /// Replicas: nearest first for reads, pipeline order for writes.
    pub replicas: Vec<ServerIdx>,
}

/// Arguments of [`MasterState::create`] as a client sends them (0 = default).
#[derive(Debug, Clone)]
pub struct CreateRequest<'a> {
    /// Requested replication (0 = the cluster default).
    pub replication: u32,
    /// Requested chunk size (0 = the cluster default).
    pub chunk_size: u64,
    /// Replace an existing file.
    pub overwrite: bool,
    /// Create missing parents.
    pub create_parents: bool,
    /// Owner of the file.
    pub owner: &'a str,
    /// Writer of the file.
    pub client: &'a str,
}

/// A chunk replica as a chunkserver reports it.
#[derive(Debug, Clone, Copy)]
pub struct ReportedReplica {
    /// The chunk.
    pub handle: ChunkHandle,
    /// Version held.
    pub version: u64,
    /// Bytes held.
    pub length: u64,
    /// Complete (not being written).
    pub finalized: bool,
}

impl ReportedReplica {
    /// What it says of the replica, without the handle.
    pub fn state(&self) -> ReportedState {
        ReportedState { version: self.version, length: self.length, finalized: self.finalized }
    }
}

/// Everything the master holds in memory.
#[derive(Debug)]
pub struct MasterState {
    /// Defaults and timing.
    pub config: Config,
    /// The directory tree.
    pub ns: Namespace,
    /// Chunks and replicas.
    pub chunks: ChunkMap,
    /// Chunkservers.
    pub cluster: Cluster,
    /// The operation log's handle (records mutations applied here).
    pub journal: Journal,
    /// Whether changes are refused until chunkservers report in.
    pub safemode: SafeMode,
    /// Answers of recent non-idempotent calls, for retries.
    pub retry_cache: RetryCache,
    /// The replication monitor's pending copies and the balancer.
    pub replication: Replicator,
    /// Writer lease times.
    pub leases: Leases,
    /// Orphan replicas reported during safe mode, deleted once it ends (see
    /// [`MasterState::take_report`]).
    pub deferred_orphans: Vec<(ServerIdx, ChunkHandle)>,
    pub(crate) rng: StdRng,
}

/// What a heartbeat reply carries.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// Replicas to delete.
    pub deletes: Vec<DeleteCmd>,
    /// Copies to make.
    pub replicates: Vec<ReplicateCmd>,
    /// Register again with a full report (the server had been declared dead: what it
    /// holds may have changed behind the master's back).
    pub reregister: bool,
}

impl MasterState {
    /// A master with an empty namespace and no chunkservers, out of safe mode, whose
    /// journal persists nothing ([`crate::recovery::recover`] builds the durable one).
    pub fn new(config: Config) -> MasterState {
        let mut cluster = Cluster::new(config.dead_after);
        // Two missed heartbeats and a half: placement looks elsewhere.
        cluster.set_quiet_after(config.heartbeat_interval * 5 / 2);
        let safemode = SafeMode::new(config.safemode_threshold, config.safemode_extension, false);
        let replication = Replicator::new(Settings {
            max_streams: config.replication_max_streams,
            pending_timeout: config.pending_copy_timeout(),
        });
        let leases = Leases::new(config.lease_soft_limit, config.lease_hard_limit);
        MasterState {
            replication,
            leases,
            deferred_orphans: Vec::new(),
            config,
            ns: Namespace::new(),
            chunks: ChunkMap::new(),
            cluster,
            journal: Journal::in_memory(),
            safemode,
            retry_cache: RetryCache::default(),
            rng: StdRng::from_os_rng(),
        }
    }

    /// Fails unless a mutation may be made now: not in safe mode, log writable.
    ///
    /// # Errors
    /// [`Error::SafeMode`] saying why and until when; [`Error::LogFailed`].
    pub fn writable(&self) -> Result<()> {
        if self.safemode.is_on() {
            return Err(Error::SafeMode(self.safemode.message(self.reported_chunks())));
        }
        self.journal.writable()
    }

    /// Complete chunks, and those of them with a readable replica reported (what safe
    /// mode waits for). Chunks still being written are not counted.
    pub fn reported_chunks(&self) -> Reported {
        let mut counts = Reported::default();
        for (_, c) in self.chunks.iter().filter(|(_, c)| c.length > 0) {
            counts.total += 1;
            if c.readable().next().is_some() {
                counts.reported += 1;
            }
        }
        counts
    }

    /// Lets safe mode leave by itself once enough chunks are reported.
    pub fn update_safemode(&mut self, now: Instant) {
        if !self.safemode.waiting() {
            return;
        }
        let counts = self.reported_chunks();
        if self.safemode.update(counts, now) {
            info!(reported = counts.reported, total = counts.total, "leaving safe mode");
        }
    }

    /// The rack of the chunkserver on `host`, if one runs there.
    pub fn rack_of_host(&self, host: &str) -> Option<&str> {
        self.cluster.iter().find(|(_, s)| s.host == host).map(|(_, s)| s.rack.as_str())
    }

    /// Creates a directory.
    ///
    /// # Errors
    /// As [`Namespace::mkdir`].
    pub fn mkdir(&mut self, path: &DfsPath, parents: bool, owner: &str, now_ms: i64) -> Result<()> {
        self.ns.mkdir(path, parents, owner, now_ms)
    }

    /// Creates a file open for writing, replacing (and releasing) an old one on overwrite.
    ///
    /// # Errors
    /// Bad replication or chunk size, and as [`Namespace::create`].
    pub fn create(
        &mut self,
        path: &DfsPath,
        req: &CreateRequest<'_>,
        now_ms: i64,
    ) -> Result<InodeId> {
        let replication = match req.replication {
            0 => self.config.replication,
            r => config::check_replication(r)?,
        };
        let chunk_size = match req.chunk_size {
            0 => self.config.chunk_size,
            c => {
                config::check_chunk_size(c)?;
                c
            }
        };
        let args = CreateArgs {
            replication,
            chunk_size,
            overwrite: req.overwrite,
            create_parents: req.create_parents,
            owner: req.owner,
            client: req.client,
            now_ms,
        };
        let (id, released) = self.ns.create(path, &args)?;
        self.release(&released);
        Ok(id)
    }

    /// Finishes the previous chunk (if any) and allocates the next one on replicas chosen
    /// by the placement policy among live chunkservers.
    ///
    /// # Errors
    /// As [`Namespace::add_chunk`]; [`Error::NoChunkservers`] when no chunkserver is live,
    /// [`Error::NoSpace`] when none of the live ones has room for a chunk.
    #[allow(clippy::too_many_arguments)]
    pub fn add_chunk(
        &mut self,
        path: &DfsPath,
        client: &str,
        previous: Option<(ChunkHandle, u64)>,
        client_host: &str,
        excluded: &[String],
        now: Instant,
        now_ms: i64,
    ) -> Result<Located> {
        let id = self.ns.open_for_write(path, client)?;
        let (replication, chunk_size) = match self.ns.file(id) {
            Some(f) => (usize::from(f.replication), f.chunk_size),
            None => return Err(Error::IsADirectory(path.to_string())),
        };
        self.leases.touch(client, now);
        let is_excluded = |s: &Chunkserver| excluded.iter().any(|e| *e == s.id || *e == s.addr);
        let mut candidates: Vec<Candidate<'_>> = self
            .cluster
            .accepting(now)
            .filter(|(_, s)| !is_excluded(s))
            .map(|(idx, s)| Candidate::of(idx, s))
            .collect();
        if candidates.is_empty() {
            // The writer saw every server fail once, or every live one missed a heartbeat
            // or two (a busy machine): some may be fine. Better a try than a refusal: a
            // pipeline recovery copes if they are not.
            candidates =
                self.cluster.in_service(now).map(|(idx, s)| Candidate::of(idx, s)).collect();
        }
        let live = candidates.len();
        let targets = placement::choose_targets(
            &candidates,
            Some(client_host),
            replication,
            chunk_size,
            &mut self.rng,
        );
        if targets.is_empty() {
            let most_free = candidates.iter().map(|c| c.remaining).max();
            return Err(match most_free {
                None => Error::NoChunkservers,
                Some(most_free) => Error::NoSpace { chunk_size, live, most_free },
            });
        }
        if targets.len() < replication {
            warn!(path = %path, wanted = replication, got = targets.len(), "placing a chunk on fewer replicas than asked");
        }
        // The handle is allocated before the namespace is touched so a refused request
        // (wrong previous chunk) wastes a number, never leaves a half-added chunk.
        let handle = self.chunks.allocate(id, &targets);
        let offset = match self.ns.add_chunk(path, client, previous, handle, now_ms) {
            Ok((_, offset)) => offset,
            Err(e) => {
                self.chunks.remove(handle);
                return Err(e);
            }
        };
        if let Some((prev, len)) = previous {
            self.chunks.finish(prev, len);
        }
        for &t in &targets {
            self.cluster.note_write(t, chunk_size);
        }
        Ok(Located { handle, version: 1, offset, length: 0, replicas: targets })
    }

    /// Finishes the last chunk and closes the file.
    ///
    /// # Errors
    /// As [`Namespace::complete`].
    pub fn complete(
        &mut self,
        path: &DfsPath,
        client: &str,
        last: Option<(ChunkHandle, u64)>,
        now_ms: i64,
    ) -> Result<()> {
        self.ns.complete(path, client, last, now_ms)?;
        if let Some((h, len)) = last {
            self.chunks.finish(h, len);
        }
        Ok(())
    }

    /// Renames a file or directory.
    ///
    /// # Errors
    /// As [`Namespace::rename`].
    pub fn rename(&mut self, src: &DfsPath, dst: &DfsPath, now_ms: i64) -> Result<DfsPath> {
        self.ns.rename(src, dst, now_ms)
    }

    /// Deletes a path and queues its chunks for deletion on their chunkservers.
    ///
    /// # Errors
    /// As [`Namespace::delete`].
    pub fn delete(&mut self, path: &DfsPath, recursive: bool, now_ms: i64) -> Result<()> {
        let released = self.ns.delete(path, recursive, now_ms)?;
        self.release(&released);
        Ok(())
    }

    /// Forgets chunks and tells their chunkservers to delete them (lazily, with their next
    /// heartbeat reply).
    fn release(&mut self, handles: &[ChunkHandle]) {
        for &h in handles {
            self.drop_chunk(h);
        }
    }

    /// Forgets chunk `h` and queues deletes of every replica of it, whatever its version:
    /// the chunk belongs to no file any more, and handles are never reused.
    pub(crate) fn drop_chunk(&mut self, h: ChunkHandle) {
        if let Some(c) = self.chunks.remove(h) {
            for r in c.replicas {
                self.cluster.queue_delete(r.server, DeleteCmd::upto(h, u64::MAX));
            }
        }
    }

    /// Sets the replication factor of a file or of every file below a directory.
    ///
    /// # Errors
    /// Bad factor, and as [`Namespace::set_replication`].
    pub fn set_replication(&mut self, path: &DfsPath, replication: u32) -> Result<u64> {
        let r = config::check_replication(replication)?;
        Ok(self.ns.set_replication(path, r)?.len() as u64)
    }

    /// The file's chunks overlapping `[offset, offset + length)` (`length` 0 = to the end)
    /// with readable replicas sorted for a reader on `client_host`: live ones nearest first,
    /// then those on chunkservers thought dead (a false alarm should not make data
    /// unreadable). Returns the file length, the chunks, and whether it is being written.
    ///
    /// # Errors
    /// Lookup errors; [`Error::IsADirectory`].
    pub fn locations(
        &mut self,
        path: &DfsPath,
        offset: u64,
        length: u64,
        client_host: &str,
        now: Instant,
    ) -> Result<(u64, Vec<Located>, bool)> {
        let id = self.ns.lookup(path)?;
        let Some(f) = self.ns.file(id) else {
            return Err(Error::IsADirectory(path.to_string()));
        };
        let end = if length == 0 { u64::MAX } else { offset.saturating_add(length) };
        let client_rack = self.rack_of_host(client_host).map(str::to_owned);
        let mut out = Vec::new();
        for (i, &h) in f.chunks.iter().enumerate() {
            let chunk_off = i as u64 * f.chunk_size;
            let Some(c) = self.chunks.get(h) else { continue };
            // A chunk being written has no readable length yet.
            if c.length == 0 || chunk_off + c.length <= offset || chunk_off >= end {
                continue;
            }
            let mut replicas: Vec<(ServerIdx, bool)> =
                c.readable().map(|r| (r.server, self.cluster.is_live(r.server, now))).collect();
            let cluster = &self.cluster;
            placement::sort_by_distance(
                &mut replicas,
                |&(idx, live)| {
                    if !live {
                        // Ranked behind every live replica.
                        return Distance::Remote;
                    }
                    let s = cluster.get(idx);
                    placement::distance(client_host, client_rack.as_deref(), &s.host, &s.rack)
                },
                &mut self.rng,
            );
            replicas.sort_by_key(|&(_, live)| !live);
            out.push(Located {
                handle: h,
                version: c.version,
                offset: chunk_off,
                length: c.length,
                replicas: replicas.into_iter().map(|(idx, _)| idx).collect(),
            });
        }
        Ok((f.length, out, f.writer.is_some()))
    }

    /// Registers a chunkserver and takes its full report: replicas it no longer lists are
    /// forgotten, stale ones are queued for deletion.
    pub fn register(
        &mut self,
        who: Identity<'_>,
        load: Load,
        chunks: &[ReportedReplica],
        now: Instant,
        now_ms: i64,
    ) -> ServerIdx {
        let idx = self.cluster.register(who, load, now, now_ms);
        let keep: HashSet<ChunkHandle> = chunks.iter().map(|c| c.handle).collect();
        self.chunks.retain_server(idx, &keep);
        let mut unknown = 0usize;
        for c in chunks {
            if self.take_report(idx, c, ReportKind::Held) == ReportOutcome::Unknown {
                unknown += 1;
            }
        }
        info!(
            id = who.id,
            addr = who.addr,
            rack = who.rack,
            chunks = chunks.len(),
            unknown,
            "chunkserver registered"
        );
        idx
    }

    /// Takes one replica report from `idx`: confirms a pending copy, queues a delete for
    /// a stale replica or an orphan.
    ///
    /// Orphans (handles the master does not know) are deleted only when two things hold:
    /// the master is out of safe mode (it knows its whole namespace and has heard from
    /// its chunkservers), and the handle is below the master's next handle, i.e. one this
    /// master allocated and then forgot (its file was deleted while the chunkserver was
    /// away, or its allocation never became durable). A handle at or above it comes from
    /// a namespace this master never had: a master started on an empty or wrong `--dir`
    /// must never wipe its chunkservers, so such replicas are kept (and handles are
    /// reserved above them so they are never reused). Orphans seen in safe mode wait in
    /// [`MasterState::deferred_orphans`].
    fn take_report(
        &mut self,
        idx: ServerIdx,
        c: &ReportedReplica,
        kind: ReportKind,
    ) -> ReportOutcome {
        let below_next = c.handle.0 < self.chunks.next_handle();
        let outcome = self.chunks.report(c.handle, idx, c.state(), kind);
        match outcome {
            ReportOutcome::Accepted => {
                if c.finalized {
                    self.replication.confirmed(c.handle, idx);
                }
            }
            ReportOutcome::Stale => {
                info!(chunk = c.handle.0, version = c.version, server = %self.cluster.get(idx).addr, "stale replica will be deleted");
                self.cluster.queue_delete(idx, DeleteCmd::upto(c.handle, c.version));
            }
            ReportOutcome::Outdated => {
                debug!(chunk = c.handle.0, version = c.version, server = %self.cluster.get(idx).addr, "late report of a replica since recovered: ignored");
            }
            ReportOutcome::WrongLength => {
                warn!(chunk = c.handle.0, server = %self.cluster.get(idx).addr, length = c.length, "replica length differs: marked corrupt");
            }
            ReportOutcome::Unknown if below_next => {
                if self.safemode.is_on() {
                    self.deferred_orphans.push((idx, c.handle));
                } else {
                    info!(chunk = c.handle.0, server = %self.cluster.get(idx).addr, "orphan replica will be deleted");
                    self.cluster.queue_delete(idx, DeleteCmd::upto(c.handle, u64::MAX));
                }
            }
            ReportOutcome::Unknown => {
                if self.chunks.reserve_above(c.handle) {
                    debug!(chunk = c.handle.0, "replica of a chunk from another namespace: kept");
                } else {
                    warn!(chunk = c.handle.0, server = %self.cluster.get(idx).addr, "replica with a handle no namespace allocates: kept, handle not reserved");
                }
            }
        }
        outcome
    }

    /// Queues the deletes of orphans reported during safe mode (once it is off), if the
    /// master still does not know them.
    pub fn release_deferred_orphans(&mut self) {
        if self.safemode.is_on() || self.deferred_orphans.is_empty() {
            return;
        }
        for (idx, h) in std::mem::take(&mut self.deferred_orphans) {
            if self.chunks.get(h).is_none() {
                info!(chunk = h.0, server = %self.cluster.get(idx).addr, "orphan replica will be deleted");
                self.cluster.queue_delete(idx, DeleteCmd::upto(h, u64::MAX));
            }
        }
    }

    /// Records a heartbeat; returns the commands for the server, or `None` if it must
    /// register first.
    pub fn heartbeat(
        &mut self,
        id: &str,
        load: Load,
        now: Instant,
        now_ms: i64,
    ) -> Option<HeartbeatReply> {
        let (idx, was_dead) = self.cluster.heartbeat(id, load, now, now_ms)?;
        if was_dead {
            info!(id, "chunkserver back from the dead: asking for a full report");
            return Some(HeartbeatReply { reregister: true, ..HeartbeatReply::default() });
        }
        if self.safemode.is_on() {
            // Nothing is deleted or copied in safe mode; the commands wait in the queue.
            return Some(HeartbeatReply::default());
        }
        Some(HeartbeatReply {
            deletes: self.cluster.take_deletes(idx),
            replicates: self.cluster.take_replicates(idx),
            reregister: false,
        })
    }

    /// Takes an incremental report. Returns false if the server must register first.
    pub fn report_chunks(
        &mut self,
        id: &str,
        received: &[ReportedReplica],
        deleted: &[ChunkHandle],
        corrupt: &[ChunkHandle],
    ) -> bool {
        let Some(idx) = self.cluster.lookup(id) else { return false };
        for c in received {
            self.take_report(idx, c, ReportKind::Received);
        }
        for &h in deleted {
            self.chunks.remove_replica(h, idx);
        }
        for &h in corrupt {
            if self.chunks.mark_corrupt(h, idx) {
                warn!(chunk = h.0, server = %self.cluster.get(idx).addr, "chunkserver reports a corrupt replica");
            }
        }
        true
    }

    /// A reader found a replica corrupt.
    ///
    /// # Errors
    /// [`Error::UnknownChunkserver`] for an id the master does not know.
    pub fn report_bad_replica(
        &mut self,
        handle: ChunkHandle,
        server_id: &str,
        reason: &str,
    ) -> Result<()> {
        let idx = self
            .cluster
            .lookup(server_id)
            .ok_or_else(|| Error::UnknownChunkserver(server_id.to_owned()))?;
        if self.chunks.mark_corrupt(handle, idx) {
            warn!(chunk = handle.0, server = %self.cluster.get(idx).addr, reason, "client reports a corrupt replica");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).expect("path")
    }

    fn state_with_servers(n: u32) -> (MasterState, Instant) {
        let cfg = Config { chunk_size: 1 << 20, ..Config::default() };
        let mut st = MasterState::new(cfg);
        let now = Instant::now();
        let load = Load { capacity: 1 << 30, remaining: 1 << 30, ..Load::default() };
        for i in 0..n {
            let rack = if i % 2 == 0 { "/rack-a" } else { "/rack-b" };
            let (id, addr) = (format!("cs{i}"), format!("127.0.0.{}:1", i + 2));
            st.register(Identity { id: &id, addr: &addr, rack }, load, &[], now, 0);
        }
        (st, now)
    }

    fn req<'a>(client: &'a str) -> CreateRequest<'a> {
        CreateRequest {
            replication: 0,
            chunk_size: 0,
            overwrite: false,
            create_parents: false,
            owner: "u",
            client,
        }
    }

    #[test]
    fn write_then_read_locations() {
        let (mut st, now) = state_with_servers(4);
        let f = p("/f");
        st.create(&f, &req("c"), 0).expect("create");
        let a = st.add_chunk(&f, "c", None, "127.0.0.3", &[], now, 0).expect("chunk 1");
        assert_eq!(a.replicas.len(), 3);
        assert_eq!(st.cluster.get(a.replicas[0]).host, "127.0.0.3", "writer-local first replica");
        let b = st
            .add_chunk(&f, "c", Some((a.handle, 1 << 20)), "127.0.0.3", &[], now, 0)
            .expect("chunk 2");
        st.complete(&f, "c", Some((b.handle, 5)), 0).expect("complete");
        let (len, chunks, uc) = st.locations(&f, 0, 0, "127.0.0.2", now).expect("locations");
        assert_eq!(len, (1 << 20) + 5);
        assert!(!uc);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].offset, 1 << 20);
        assert!(chunks.iter().all(|c| c.replicas.len() == 3));
        // Ranged lookups return only the chunks they overlap.
        let (_, tail, _) = st.locations(&f, (1 << 20) + 1, 1, "", now).expect("range");
        assert_eq!(tail.len(), 1);
    }

    #[test]
    fn quiet_servers_are_passed_over_but_never_leave_a_writer_with_none() {
        let (mut st, now) = state_with_servers(2);
        let load = Load { capacity: 1 << 30, remaining: 1 << 30, ..Load::default() };
        // Three heartbeat intervals on, only cs1 has heartbeated: cs0 missed two and a half,
        // though it is far from dead.
        let later = now + st.config.heartbeat_interval * 3;
        st.heartbeat("cs1", load, later, 0);
        st.create(&p("/f"), &req("c"), 0).expect("create");
        let a = st.add_chunk(&p("/f"), "c", None, "", &[], later, 0).expect("chunk");
        let on: Vec<&str> = a.replicas.iter().map(|&i| st.cluster.get(i).id.as_str()).collect();
        assert_eq!(on, ["cs1"], "the quiet server gets no new replica");
        // Both quiet, both still live: the writer still gets a pipeline.
        let much_later = later + st.config.heartbeat_interval * 3;
        st.create(&p("/g"), &req("c"), 0).expect("create");
        let g = st.add_chunk(&p("/g"), "c", None, "", &[], much_later, 0).expect("a chunk anyway");
        assert_eq!(g.replicas.len(), 2);
    }

    #[test]
    fn no_chunkserver_no_chunk() {
        let (mut st, now) = state_with_servers(0);
        st.create(&p("/f"), &req("c"), 0).expect("create");
        assert!(matches!(
            st.add_chunk(&p("/f"), "c", None, "", &[], now, 0),
            Err(Error::NoChunkservers)
        ));
        // Nothing was half-added.
        assert!(st.chunks.is_empty());
    }

    #[test]
    fn full_chunkservers_say_disk_full() {
        let (mut st, now) = state_with_servers(2);
        let tiny = Load { capacity: 1 << 30, remaining: 1000, ..Load::default() };
        for i in 0..2 {
            st.heartbeat(&format!("cs{i}"), tiny, now, 0);
        }
        st.create(&p("/f"), &req("c"), 0).expect("create");
        let err = st.add_chunk(&p("/f"), "c", None, "", &[], now, 0).expect_err("no room");
        assert!(matches!(err, Error::NoSpace { live: 2, most_free: 1000, .. }), "{err}");
        assert_eq!(tonic::Status::from(err).code(), tonic::Code::ResourceExhausted);
    }

    #[test]
    fn dead_servers_get_no_chunks_and_sort_last() {
        let (mut st, now) = state_with_servers(4);
        st.create(&p("/f"), &req("c"), 0).expect("create");
        let a = st.add_chunk(&p("/f"), "c", None, "", &[], now, 0).expect("chunk");
        st.complete(&p("/f"), "c", Some((a.handle, 10)), 0).expect("complete");
        let later = now + Duration::from_secs(40);
        // Only one server keeps heartbeating.
        st.heartbeat(
            "cs0",
            Load { capacity: 1 << 30, remaining: 1 << 30, ..Load::default() },
            later,
            0,
        );
        st.create(&p("/g"), &req("c"), 0).expect("create");
        let g =
            st.add_chunk(&p("/g"), "c", None, "", &[], later, 0).expect("chunk on the survivor");
        assert_eq!(g.replicas.len(), 1);
        let (_, chunks, _) = st.locations(&p("/f"), 0, 0, "", later).expect("locations");
        let live_first =
            chunks[0].replicas.iter().map(|&i| st.cluster.is_live(i, later)).collect::<Vec<_>>();
        let mut sorted = live_first.clone();
        sorted.sort_by_key(|l| !l);
        assert_eq!(live_first, sorted);
    }

    #[test]
    fn delete_queues_replica_deletes() {
        let (mut st, now) = state_with_servers(3);
        st.create(&p("/f"), &req("c"), 0).expect("create");
        let a = st.add_chunk(&p("/f"), "c", None, "", &[], now, 0).expect("chunk");
        st.complete(&p("/f"), "c", Some((a.handle, 10)), 0).expect("complete");
        st.delete(&p("/f"), false, 0).expect("delete");
        let load = Load::default();
        for i in 0..3 {
            let reply = st.heartbeat(&format!("cs{i}"), load, now, 0).expect("known");
            assert_eq!(reply.deletes, vec![DeleteCmd::upto(a.handle, u64::MAX)]);
        }
        assert_eq!(st.heartbeat("nobody", load, now, 0), None);
    }

    #[test]
    fn reports_and_corruption() {
        let (mut st, now) = state_with_servers(3);
        st.create(&p("/f"), &req("c"), 0).expect("create");
        let a = st.add_chunk(&p("/f"), "c", None, "", &[], now, 0).expect("chunk");
        st.complete(&p("/f"), "c", Some((a.handle, 10)), 0).expect("complete");
        let bad = st.cluster.get(a.replicas[0]).id.clone();
        st.report_bad_replica(a.handle, &bad, "checksum").expect("report");
        let (_, chunks, _) = st.locations(&p("/f"), 0, 0, "", now).expect("locations");
        assert_eq!(chunks[0].replicas.len(), 2);
        assert!(!chunks[0].replicas.contains(&a.replicas[0]));
        assert!(st.report_bad_replica(a.handle, "ghost", "x").is_err());
        // A full report that omits the chunk drops that replica.
        let id1 = st.cluster.get(a.replicas[1]).id.clone();
        let who = Identity { id: &id1, addr: "127.0.0.9:1", rack: "/rack-a" };
        st.register(who, Load::default(), &[], now, 0);
        let (_, chunks, _) = st.locations(&p("/f"), 0, 0, "", now).expect("locations");
        assert_eq!(chunks[0].replicas.len(), 1);
    }
}
