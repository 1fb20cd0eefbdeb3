//! The master's self-healing operations on [`Core`]: pipeline recovery
//! (`UpdatePipeline`), the replication monitor's tick (copies, deletions, decommission
//! progress, orphans found in safe mode), decommissioning and the balancer's controls.
//!
//! Like the rest of the state these are plain methods under the state lock with time
//! passed in; the decisions themselves are [`crate::replication`]'s.

use std::time::Instant;

use proto::path::DfsPath;
use tracing::{info, warn};

use crate::chunks::ReplicaStatus;
use crate::cluster::{AdminState, ReplicateCmd};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::ids::{ChunkHandle, ServerIdx};
use crate::replication::Command;

impl Core {
    /// Checks `handle` is the last chunk of `path`, open for writing by `client`, and
    /// still being written.
    pub(crate) fn writing_chunk(
        &self,
        path: &DfsPath,
        client: &str,
        handle: ChunkHandle,
    ) -> Result<()> {
        let id = self.ns.open_for_write(path, client)?;
        let last = self.ns.file(id).and_then(|f| f.chunks.last().copied());
        if last != Some(handle) {
            return Err(Error::WrongChunk { path: path.to_string(), handle: handle.0 });
        }
        Ok(())
    }

    /// Decides a pipeline recovery: `handle` must be the last chunk of `path`, open for
    /// writing by `client` and still being written; `survivors` (chunkserver ids,
    /// pipeline order) must be known. Returns the chunk's next version, its offset in the
    /// file and the survivors. Nodes left out keep the old version and are deleted as
    /// stale when they report it.
    ///
    /// # Errors
    /// As [`crate::namespace::Namespace::open_for_write`]; [`Error::WrongChunk`];
    /// [`Error::InvalidArgument`] for no survivors or a finished chunk;
    /// [`Error::UnknownChunkserver`] for an id the master does not know.
    pub(crate) fn plan_pipeline(
        &self,
        path: &DfsPath,
        client: &str,
        handle: ChunkHandle,
        survivors: &[String],
    ) -> Result<(u64, u64, Vec<ServerIdx>)> {
        self.writing_chunk(path, client, handle)?;
        if survivors.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{path}: chunk {:#x}: a pipeline needs at least one surviving node",
                handle.0
            )));
        }
        let mut idxs = Vec::with_capacity(survivors.len());
        for id in survivors {
            idxs.push(
                self.cluster.lookup(id).ok_or_else(|| Error::UnknownChunkserver(id.clone()))?,
            );
        }
        match self.chunks.get(handle) {
            Some(c) if c.length == 0 => {
                let offset = self
                    .ns
                    .file(c.file)
                    .map_or(0, |f| f.chunks.len().saturating_sub(1) as u64 * f.chunk_size);
                Ok((c.version + 1, offset, idxs))
            }
            _ => Err(Error::InvalidArgument(format!(
                "{path}: chunk {:#x} is not being written",
                handle.0
            ))),
        }
    }

    /// One replication monitor pass: applies [`crate::replication::Replicator::tick`]'s
    /// commands (copies and deletes ride the next heartbeat replies), moves finished
    /// decommissions on, and deletes orphans reported during safe mode.
    pub(crate) fn replication_tick(&mut self, now: Instant) {
        self.release_deferred_orphans();
        let safemode = self.safemode.is_on();
        let cmds = self.replication.tick(
            &self.chunks,
            &self.cluster,
            &self.ns,
            safemode,
            now,
            &mut self.rng,
        );
        for cmd in cmds {
            match cmd {
                Command::Replicate { target, source, handle, version, length } => {
                    // The copy replaces whatever the target holds (a corrupt, stale or
                    // half-written replica): a delete of that must not follow it.
                    self.cluster.cancel_delete(target, handle);
                    self.cluster
                        .queue_replicate(target, ReplicateCmd { handle, version, length, source });
                }
                Command::Delete { server, delete } => {
                    // Forgotten at once so no reader is sent there meanwhile.
                    self.chunks.remove_replica(delete.handle, server);
                    self.cluster.queue_delete(server, delete);
                }
            }
        }
        if safemode {
            return;
        }
        let draining: Vec<ServerIdx> = self
            .cluster
            .iter()
            .filter(|(_, s)| s.admin == AdminState::Decommissioning)
            .map(|(i, _)| i)
            .collect();
        for idx in draining {
            if self.chunks_to_copy(idx, now) == 0 {
                self.cluster.set_admin(idx, AdminState::Decommissioned);
                info!(addr = %self.cluster.get(idx).addr, "chunkserver decommissioned: it may be stopped");
            }
        }
    }

    /// Chunks with a replica on `idx` that do not yet have their full replication on
    /// chunkservers in service (a chunk still being written counts until it is done).
    pub fn chunks_to_copy(&self, idx: ServerIdx, now: Instant) -> u64 {
        let mut n = 0;
        for (_, c) in self.chunks.iter() {
            if !c.replicas.iter().any(|r| r.server == idx) {
                continue;
            }
            if c.length == 0 {
                n += 1;
                continue;
            }
            let want = self.ns.file(c.file).map_or(0, |f| usize::from(f.replication));
            let good = c
                .readable()
                .filter(|r| {
                    let s = self.cluster.get(r.server);
                    s.admin == AdminState::Normal && self.cluster.is_live(r.server, now)
                })
                .count();
            if good < want {
                n += 1;
            }
        }
        n
    }

    /// Starts decommissioning the chunkserver with address or id `who` (or, with
    /// `recommission`, puts it back in service). Returns it, its state and the chunks it
    /// still has to see copied.
    ///
    /// # Errors
    /// [`Error::UnknownChunkserver`].
    pub(crate) fn decommission(
        &mut self,
        who: &str,
        recommission: bool,
        now: Instant,
    ) -> Result<(ServerIdx, AdminState, u64)> {
        let idx = self.cluster.find(who).ok_or_else(|| Error::UnknownChunkserver(who.into()))?;
        let current = self.cluster.get(idx).admin;
        let next = match (recommission, current) {
            (true, _) => AdminState::Normal,
            (false, AdminState::Normal) => AdminState::Decommissioning,
            (false, other) => other,
        };
        if next != current {
            self.cluster.set_admin(idx, next);
            let addr = &self.cluster.get(idx).addr;
            match next {
                AdminState::Normal => info!(%addr, "chunkserver recommissioned"),
                _ => warn!(%addr, "decommissioning chunkserver: its replicas are copied elsewhere"),
            }
        }
        Ok((idx, next, self.chunks_to_copy(idx, now)))
    }

    /// Replicas of `idx` that are readable (for reports).
    pub fn readable_on(&self, idx: ServerIdx) -> usize {
        self.chunks
            .iter()
            .filter(|(_, c)| {
                c.replicas.iter().any(|r| {
                    r.server == idx
                        && r.status == ReplicaStatus::Finalized
                        && r.version == c.version
                })
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cluster::{DeleteCmd, Identity, Load};
    use crate::command::CreateRequest;
    use crate::config::Config;
    use crate::core::ReportedReplica;
    use crate::oplog::Op;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).expect("path")
    }

    fn state(n: u32) -> (Core, Instant) {
        let mut st = Core::new(Config { chunk_size: 1 << 20, ..Config::default() });
        let now = Instant::now();
        let load = Load { capacity: 1 << 30, remaining: 1 << 30, ..Load::default() };
        for i in 0..n {
            let rack = if i % 2 == 0 { "/a" } else { "/b" };
            let (id, addr) = (format!("cs{i}"), format!("127.0.0.{}:1", i + 2));
            st.register(Identity { id: &id, addr: &addr, rack }, load, &[], now, 0);
        }
        (st, now)
    }

    fn create(st: &mut Core, path: &str) {
        let req = CreateRequest {
            replication: 0,
            chunk_size: 0,
            overwrite: false,
            create_parents: false,
            owner: "u",
            client: "w",
        };
        st.create(&p(path), &req, 0).expect("create");
    }

    #[test]
    fn pipeline_recovery_bumps_the_version_and_keeps_the_survivors() {
        let (mut st, now) = state(4);
        create(&mut st, "/f");
        let a = st.add_chunk(&p("/f"), "w", None, "", &[], now, 0).expect("chunk");
        let ids: Vec<String> = a.replicas.iter().map(|&i| st.cluster.get(i).id.clone()).collect();
        let l = st.update_pipeline(&p("/f"), "w", a.handle, &ids[1..], now).expect("update");
        assert_eq!(l.version, 2);
        assert_eq!(l.replicas, a.replicas[1..].to_vec());
        // The dropped node reports its old replica: stale, deleted.
        let old = ReportedReplica { handle: a.handle, version: 1, length: 0, finalized: false };
        let dropped = st.cluster.get(a.replicas[0]).id.clone();
        st.report_chunks(&dropped, &[old], &[], &[]);
        let reply = st.heartbeat(&dropped, Load::default(), now, 0).expect("known");
        assert_eq!(reply.deletes, vec![DeleteCmd::upto(a.handle, 1)]);
        // A survivor's late report of version 1 (sent before the bump) deletes nothing.
        st.report_chunks(&ids[1], &[ReportedReplica { finalized: true, ..old }], &[], &[]);
        let reply = st.heartbeat(&ids[1], Load::default(), now, 0).expect("known");
        assert!(reply.deletes.is_empty(), "{:?}", reply.deletes);
        let c = st.chunks.get(a.handle).expect("chunk");
        assert_eq!(c.replicas.len(), 2);
        assert!(c.replicas.iter().all(|r| r.version == 2));
        // Replaying a logged bump gives its version.
        let bump =
            Op::UpdatePipeline { path: p("/f"), client: "w".into(), handle: a.handle, version: 3 };
        st.apply_op(&bump, 0).expect("replay");
        assert_eq!(st.chunks.get(a.handle).map(|c| c.version), Some(3));
        // Only the writer, only the last chunk, only with survivors.
        assert!(st.update_pipeline(&p("/f"), "x", a.handle, &ids, now).is_err());
        assert!(st.update_pipeline(&p("/f"), "w", ChunkHandle(99), &ids, now).is_err());
        assert!(st.update_pipeline(&p("/f"), "w", a.handle, &[], now).is_err());
        st.complete(&p("/f"), "w", Some((a.handle, 5)), 0).expect("complete");
        assert!(st.update_pipeline(&p("/f"), "w", a.handle, &ids, now).is_err());
    }

    #[test]
    fn orphans_are_deleted_only_outside_safe_mode_and_below_the_next_handle() {
        let (mut st, now) = state(1);
        create(&mut st, "/f");
        let a = st.add_chunk(&p("/f"), "w", None, "", &[], now, 0).expect("chunk");
        st.complete(&p("/f"), "w", Some((a.handle, 10)), 0).expect("complete");
        st.delete(&p("/f"), false, 0).expect("delete");
        // The delete command was lost (say the chunkserver was away and the master
        // restarted); the replica comes back in a full report, with one from elsewhere.
        st.cluster.take_deletes(ServerIdx(0));
        let forgotten =
            ReportedReplica { handle: a.handle, version: 1, length: 10, finalized: true };
        let foreign = ReportedReplica { handle: ChunkHandle(1000), ..forgotten };
        st.safemode.enter();
        st.report_chunks("cs0", &[forgotten, foreign], &[], &[]);
        assert!(st.cluster.get(ServerIdx(0)).pending_deletes.is_empty(), "not in safe mode");
        st.safemode.leave();
        st.replication_tick(now);
        let reply = st.heartbeat("cs0", Load::default(), now, 0).expect("known");
        let deletes: Vec<ChunkHandle> = reply.deletes.iter().map(|d| d.handle).collect();
        assert_eq!(deletes, vec![a.handle], "the foreign handle is kept");
        // Reports never move the handle counter, wherever their handles are (forged, or
        // a damaged disk): later chunks still get fresh, small handles.
        let next = st.chunks.next_handle();
        assert!(next < 1000);
        let forged = ReportedReplica { handle: ChunkHandle(u64::MAX), ..forgotten };
        st.report_chunks("cs0", &[forged], &[], &[]);
        assert_eq!(st.chunks.next_handle(), next);
    }

    #[test]
    fn a_dead_server_coming_back_must_report_in_full() {
        let (mut st, now) = state(1);
        let later = now + Duration::from_secs(60);
        let reply = st.heartbeat("cs0", Load::default(), later, 0).expect("known");
        assert!(reply.reregister);
        assert!(!st.heartbeat("cs0", Load::default(), later, 0).expect("known").reregister);
    }

    #[test]
    fn decommission_finishes_once_every_chunk_is_copied() {
        let (mut st, now) = state(4);
        create(&mut st, "/f");
        let a = st.add_chunk(&p("/f"), "w", None, "", &[], now, 0).expect("chunk");
        st.complete(&p("/f"), "w", Some((a.handle, 10)), 0).expect("complete");
        let victim = a.replicas[0];
        let addr = st.cluster.get(victim).addr.clone();
        let (_, state, left) = st.decommission(&addr, false, now).expect("decommission");
        assert_eq!((state, left), (AdminState::Decommissioning, 1));
        st.replication_tick(now);
        let target = (0..4).map(ServerIdx).find(|i| !a.replicas.contains(i)).expect("spare");
        let cmds = st.cluster.take_replicates(target);
        assert_eq!(cmds.len(), 1);
        assert_eq!(cmds[0].source, victim, "copied from the draining server");
        let id = st.cluster.get(target).id.clone();
        let got = ReportedReplica { handle: a.handle, version: 1, length: 10, finalized: true };
        st.report_chunks(&id, &[got], &[], &[]);
        st.replication_tick(now);
        assert_eq!(st.cluster.get(victim).admin, AdminState::Decommissioned);
        // Nothing is deleted from it, and no new chunk goes there.
        assert!(st.cluster.get(victim).pending_deletes.is_empty());
        create(&mut st, "/g");
        for _ in 0..20 {
            let g = st.add_chunk(&p("/g"), "w", None, "", &[], now, 0);
            if let Ok(g) = g {
                assert!(!g.replicas.contains(&victim));
                break;
            }
        }
        let (_, state, _) = st.decommission(&addr, true, now).expect("recommission");
        assert_eq!(state, AdminState::Normal);
    }
}
