//! The master's core: namespace, chunk map, cluster, leases, safe mode, the replication
//! monitor and the retry cache, and every decision across them. It does no I/O: no
//! clock, no network, no files, no threads. [`Core::apply`] ([`crate::command`]) is its
//! one entry point for change: a client call, a chunkserver message, an administrator's
//! call, a tick of the monitor or a replayed log record goes in with the time, and the
//! answer, the log records to make durable before answering and the orders to send to
//! chunkservers come out. Read-only queries (listings, locations, reports) are plain
//! `&self` methods.
//!
//! Durability and messaging are the driver's ([`crate::driver`]): it holds the core and
//! the operation log's [`crate::oplog::Journal`] under one lock, appends the records an
//! outcome carries in the order they were applied, and answers once they are durable.

use std::collections::HashSet;
use std::time::Instant;

use proto::path::DfsPath;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tracing::{debug, info, warn};

use crate::chunks::{ChunkMap, ReportKind, ReportOutcome, ReportedState};
use crate::cluster::{Cluster, DeleteCmd, Identity, Load, ReplicateCmd};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ids::{ChunkHandle, ServerIdx};
use crate::leases::Leases;
use crate::namespace::Namespace;
use crate::placement::{self, Distance};
use crate::replication::{Replicator, Settings};
use crate::retry_cache::RetryCache;
use crate::safemode::{Reported, SafeMode};

/// A chunk of a file with the replicas a client should use, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A chunk replica as a chunkserver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Everything the master holds in memory. The fields are the crate's, not the edge's:
/// outside the crate the core changes only through [`Core::apply`].
#[derive(Debug)]
pub struct Core {
    /// Defaults and timing.
    pub(crate) config: Config,
    /// The directory tree.
    pub(crate) ns: Namespace,
    /// Chunks and replicas.
    pub(crate) chunks: ChunkMap,
    /// Chunkservers.
    pub(crate) cluster: Cluster,
    /// Whether changes are refused until chunkservers report in.
    pub(crate) safemode: SafeMode,
    /// Answers of recent non-idempotent calls, for retries.
    pub(crate) retry_cache: RetryCache,
    /// The replication monitor's pending copies and the balancer.
    pub(crate) replication: Replicator,
    /// Writer lease times.
    pub(crate) leases: Leases,
    /// Orphan replicas reported during safe mode, deleted once it ends (see
    /// [`Core::take_report`]).
    pub(crate) deferred_orphans: Vec<(ServerIdx, ChunkHandle)>,
    pub(crate) rng: StdRng,
    /// Each chunkserver's liveness at the last tick, to log its changes once.
    was_live: Vec<bool>,
}

/// What a heartbeat reply carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// Replicas to delete.
    pub deletes: Vec<DeleteCmd>,
    /// Copies to make.
    pub replicates: Vec<ReplicateCmd>,
    /// Register again with a full report (the server had been declared dead: what it
    /// holds may have changed behind the master's back).
    pub reregister: bool,
}

impl Core {
    /// A master core with an empty namespace and no chunkservers, out of safe mode
    /// ([`crate::recovery::recover`] rebuilds one from the metadata directory).
    pub fn new(config: Config) -> Core {
        Core::with_rng(config, StdRng::from_os_rng(), rand::random())
    }

    /// As [`Core::new`], with placement and read-order choices drawn from `seed`: the
    /// same commands then give the same outcomes (the simulator's runs, replayable tests).
    pub fn seeded(config: Config, seed: u64) -> Core {
        Core::with_rng(config, StdRng::seed_from_u64(seed), seed)
    }

    /// `hash_seed` seeds the tables keyed by names peers choose (writers' leases): random
    /// in a server, so no client can pick names that collide; the run's seed in a
    /// simulation, so iteration orders repeat.
    fn with_rng(config: Config, rng: StdRng, hash_seed: u64) -> Core {
        let mut cluster = Cluster::new(config.dead_after);
        // Two missed heartbeats and a half: placement looks elsewhere.
        cluster.set_quiet_after(config.heartbeat_interval * 5 / 2);
        let safemode = SafeMode::new(config.safemode_threshold, config.safemode_extension, false);
        let replication = Replicator::new(Settings {
            max_streams: config.replication_max_streams,
            pending_timeout: config.pending_copy_timeout(),
        });
        let leases = Leases::new(config.lease_soft_limit, config.lease_hard_limit, hash_seed);
        let mut ns = Namespace::new();
        ns.set_root_owner(&config.superuser, &config.supergroup);
        Core {
            replication,
            leases,
            deferred_orphans: Vec::new(),
            config,
            ns,
            chunks: ChunkMap::new(),
            cluster,
            safemode,
            retry_cache: RetryCache::default(),
            rng,
            was_live: Vec::new(),
        }
    }

    /// This core with the namespace and chunk map of a checkpoint (before the log after
    /// it is replayed).
    pub fn with_image(mut self, ns: Namespace, chunks: ChunkMap) -> Core {
        self.ns = ns;
        self.chunks = chunks;
        self
    }

    /// Makes a core rebuilt from checkpoint and log ready to serve: in safe mode if it
    /// holds chunks (until chunkservers report them), and a fresh lease for the writer of
    /// every file left open (leases are not logged).
    pub fn start(&mut self, now: Instant) {
        let c = &self.config;
        self.safemode =
            SafeMode::new(c.safemode_threshold, c.safemode_extension, !self.chunks.is_empty());
        let writers: Vec<String> =
            self.ns.open_files().into_iter().map(|(_, w)| w.to_owned()).collect();
        self.leases.adopt(writers.iter().map(String::as_str), now);
    }

    /// Makes a follower that was just elected its group's leader ready to decide: every
    /// file left open gets a fresh lease (leases are not logged, and a new leader grants
    /// them anew as a restarted master does). What it learnt from chunkservers' reports
    /// as a follower stays: it knows where replicas are and need not wait in safe mode.
    pub fn promote(&mut self, now: Instant) {
        let writers: Vec<String> =
            self.ns.open_files().into_iter().map(|(_, w)| w.to_owned()).collect();
        self.leases.restart(writers.iter().map(String::as_str), now);
        self.update_safemode(now);
    }

    /// Fails unless a namespace change may be made now: not in safe mode. (Whether the
    /// log can take the record is the driver's to check.)
    ///
    /// # Errors
    /// [`Error::SafeMode`] saying why and until when.
    pub fn writable(&self) -> Result<()> {
        if self.safemode.is_on() {
            return Err(Error::SafeMode(self.safemode.message(self.reported_chunks())));
        }
        Ok(())
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
    pub(crate) fn update_safemode(&mut self, now: Instant) {
        if !self.safemode.waiting() {
            return;
        }
        let counts = self.reported_chunks();
        if self.safemode.update(counts, now) {
            info!(reported = counts.reported, total = counts.total, "leaving safe mode");
        }
    }

    /// The directory tree (read-only: changes go through [`Core::apply`]).
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// The chunk map (read-only).
    pub fn chunk_map(&self) -> &ChunkMap {
        &self.chunks
    }

    /// The chunkservers (read-only).
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Safe mode (read-only).
    pub fn safe_mode(&self) -> &SafeMode {
        &self.safemode
    }

    /// Logs chunkservers that were declared dead or came back since the last call.
    pub(crate) fn log_liveness_changes(&mut self, now: Instant) {
        for (idx, s) in self.cluster.iter() {
            let live = self.cluster.is_live(idx, now);
            let i = idx.0 as usize;
            if self.was_live.len() <= i {
                self.was_live.resize(i + 1, true);
            }
            if self.was_live[i] != live {
                if live {
                    info!(id = %s.id, addr = %s.addr, "chunkserver is live again");
                } else {
                    warn!(id = %s.id, addr = %s.addr, "chunkserver declared dead: no heartbeat within the dead interval");
                }
                self.was_live[i] = live;
            }
        }
    }

    /// The rack of the chunkserver on `host`, if one runs there.
    pub fn rack_of_host(&self, host: &str) -> Option<&str> {
        self.cluster.iter().find(|(_, s)| s.host == host).map(|(_, s)| s.rack.as_str())
    }

    /// Forgets chunks and tells their chunkservers to delete them (lazily, with their next
    /// heartbeat reply).
    pub(crate) fn release(&mut self, handles: &[ChunkHandle]) {
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
    pub(crate) fn register(
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
    /// must never wipe its chunkservers, so such replicas are kept. A report never moves
    /// the handle counter (a forged one could otherwise push it to the end of the space,
    /// and handles come from the master's log alone). Orphans seen in safe mode wait in
    /// [`Core::deferred_orphans`].
    ///
    /// A replica claiming a version the master never issued is recorded corrupt
    /// ([`ReportOutcome::Unissued`]): the chunk keeps its version and good replicas.
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
                warn!(chunk = c.handle.0, server = %self.cluster.get(idx).addr, "replica with a handle this master never allocated (another namespace, or forged): kept");
            }
            ReportOutcome::Unissued => {
                warn!(chunk = c.handle.0, version = c.version, server = %self.cluster.get(idx).addr, "replica with a version the master never issued: marked corrupt");
            }
        }
        outcome
    }

    /// Queues the deletes of orphans reported during safe mode (once it is off), if the
    /// master still does not know them.
    pub(crate) fn release_deferred_orphans(&mut self) {
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
    pub(crate) fn heartbeat(
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
    pub(crate) fn report_chunks(
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
    pub(crate) fn report_bad_replica(
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
    use crate::command::CreateRequest;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).expect("path")
    }

    fn state_with_servers(n: u32) -> (Core, Instant) {
        let cfg = Config { chunk_size: 1 << 20, ..Config::default() };
        let mut st = Core::new(cfg);
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
