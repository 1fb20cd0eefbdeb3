//! Lease recovery: closing the files of a writer that stopped renewing its lease.
//!
//! Once a writer is past the hard limit ([`crate::leases`]), [`Core::lease_tick`]
//! looks at each of its open files. A file with no chunk, or whose last chunk is already
//! finished, is simply closed. A file whose last chunk is still being written needs its
//! replicas settled, which takes RPCs to chunkservers: the core returns a [`RecoveryPlan`], the driver
//! ([`crate::driver::settle`]) makes the calls and feeds the answers back:
//!
//! 1. under the lock, the chunk gets a new version (logged like a pipeline recovery), so a
//!    writer that is not dead after all can no longer add to any replica;
//! 2. each known replica is asked `RecoverReplica{handle, new_version}`: it stops any
//!    writer, syncs its data, cuts it to the longest prefix that verifies, stamps the new
//!    version and answers that durable length;
//! 3. the agreed length is the *minimum* over the replicas that answered: every one of
//!    them holds those bytes durably, and none of them may serve more;
//! 4. each is asked `FinalizeReplica{handle, version, length}`; those that succeed are the
//!    chunk's replicas, and the file is closed with that length (a logged `Complete`).
//!    If the agreed length is 0 the chunk is dropped from the file instead.
//!
//! If no replica answers (all down), nothing changes and the recovery is retried one
//! dead interval later; the file stays open and shows in `fsck -openforwrite`.

use std::time::Duration;

use tracing::{info, warn};

use crate::command::{Now, Records};
use crate::core::Core;
use crate::ids::{ChunkHandle, InodeId, ServerIdx};
use crate::oplog::Op;

/// How long a recovery counts as under way before another may start.
const IN_PROGRESS: Duration = Duration::from_secs(600);

/// A last chunk whose replicas must be settled (step 2 onwards).
#[derive(Debug, Clone)]
pub struct RecoveryPlan {
    /// The file.
    pub file: InodeId,
    /// Its (dead) writer.
    pub client: String,
    /// Its last chunk.
    pub handle: ChunkHandle,
    /// The chunk's new version.
    pub version: u64,
    /// Known replicas: index and address.
    pub replicas: Vec<(ServerIdx, String)>,
}

impl Core {
    /// Finds writers past the hard limit and starts recovering their files: files that
    /// need no chunkserver are closed here; the others are returned as plans for the
    /// driver to settle with the chunkservers. Appends the records of what it changed.
    pub(crate) fn lease_tick(&mut self, now: Now, records: &mut Records) -> Vec<RecoveryPlan> {
        if self.safemode.is_on() {
            return Vec::new();
        }
        let expired = self.leases.expired(now.mono);
        if expired.is_empty() {
            return Vec::new();
        }
        let open: Vec<(InodeId, String)> =
            self.ns.open_files().into_iter().map(|(id, w)| (id, w.to_owned())).collect();
        let mut plans = Vec::new();
        for client in expired {
            let files: Vec<InodeId> =
                open.iter().filter(|(_, w)| *w == client).map(|(id, _)| *id).collect();
            if files.is_empty() {
                self.leases.forget(&client);
                continue;
            }
            for id in files {
                if !self.leases.may_recover(id, now.mono) {
                    continue;
                }
                if let Some(plan) = self.start_recovery(id, &client, now, records) {
                    plans.push(plan);
                }
            }
        }
        plans
    }

    fn start_recovery(
        &mut self,
        id: InodeId,
        client: &str,
        now: Now,
        records: &mut Records,
    ) -> Option<RecoveryPlan> {
        let path = self.ns.path_of(id);
        let last = self.ns.file(id).and_then(|f| f.chunks.last().copied());
        info!(path = %path, client, "lease expired: recovering the file");
        let (h, c) = match last.map(|h| (h, self.chunks.get(h))) {
            None => return self.close_recovered(id, client, None, now.wall_ms, records),
            Some((h, Some(c))) if c.length > 0 => {
                let len = c.length;
                return self.close_recovered(id, client, Some((h, len)), now.wall_ms, records);
            }
            Some((h, Some(c))) => (h, c),
            Some((h, None)) => {
                // Allocated before a crash and replayed: no replica is known yet.
                self.leases.recovering(id, now.mono + self.config.dead_after);
                warn!(path = %path, chunk = h.0, "no replica known for the last chunk yet");
                return None;
            }
        };
        let version = c.version + 1;
        let replicas: Vec<(ServerIdx, String)> = c
            .replicas
            .iter()
            .map(|r| (r.server, self.cluster.get(r.server).addr.clone()))
            .collect();
        let op = Op::UpdatePipeline { path, client: client.to_owned(), handle: h, version };
        if let Err(e) = self.apply_op(&op, now.wall_ms) {
            warn!(error = %e, "cannot start lease recovery");
            return None;
        }
        records.push(op);
        self.leases.recovering(id, now.mono + IN_PROGRESS);
        Some(RecoveryPlan { file: id, client: client.to_owned(), handle: h, version, replicas })
    }

    /// Closes a recovered file with `last` as its last chunk and length (logged).
    fn close_recovered(
        &mut self,
        id: InodeId,
        client: &str,
        last: Option<(ChunkHandle, u64)>,
        now_ms: i64,
        records: &mut Records,
    ) -> Option<RecoveryPlan> {
        let path = self.ns.path_of(id);
        let op = Op::Complete { path: path.clone(), client: client.to_owned(), last };
        match self.apply_op(&op, now_ms) {
            Ok(_) => {
                let length = self.ns.file(id).map_or(0, |f| f.length);
                info!(path = %path, length, "file closed by lease recovery");
                records.push(op);
                self.leases.recovered(id);
            }
            Err(e) => warn!(path = %path, error = %e, "lease recovery cannot close the file"),
        }
        None
    }

    /// Ends a recovery with the replicas' answers (`settled`: those finalized at
    /// `length`; empty = none answered, retry later). Appends the records of what it
    /// changed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish_recovery(
        &mut self,
        id: InodeId,
        client: &str,
        h: ChunkHandle,
        length: u64,
        settled: &[ServerIdx],
        now: Now,
        records: &mut Records,
    ) {
        let still = self
            .ns
            .file(id)
            .is_some_and(|f| f.writer.as_deref() == Some(client) && f.chunks.last() == Some(&h));
        if !still {
            // Deleted, or closed some other way meanwhile.
            self.leases.recovered(id);
            return;
        }
        if settled.is_empty() && length > 0 {
            warn!(chunk = h.0, "no replica of the last chunk answered: retrying later");
            self.leases.recovering(id, now.mono + self.config.dead_after);
            return;
        }
        let path = self.ns.path_of(id);
        if length == 0 {
            let op = Op::AbandonChunk { path: path.clone(), client: client.to_owned(), handle: h };
            if let Err(e) = self.apply_op(&op, now.wall_ms) {
                warn!(path = %path, error = %e, "lease recovery cannot drop the empty chunk");
                return;
            }
            records.push(op);
            let prev = self.ns.file(id).and_then(|f| f.chunks.last().copied());
            let last = prev.map(|p| (p, self.chunks.get(p).map_or(0, |c| c.length)));
            self.close_recovered(id, client, last, now.wall_ms, records);
            return;
        }
        self.chunks.settle(h, length, settled);
        self.close_recovered(id, client, Some((h, length)), now.wall_ms, records);
    }
}
