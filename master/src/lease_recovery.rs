//! Lease recovery: closing the files of a writer that stopped renewing its lease.
//!
//! Once a writer is past the hard limit ([`crate::leases`]), [`MasterState::lease_tick`]
//! looks at each of its open files. A file with no chunk, or whose last chunk is already
//! finished, is simply closed. A file whose last chunk is still being written needs its
//! replicas settled, which takes RPCs to chunkservers and so happens outside the lock
//! ([`recover`]):
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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::gfs::chunkserver_client::ChunkserverClient;
use proto::gfs::{FinalizeReplicaRequest, RecoverReplicaRequest};
use tonic::transport::Endpoint;
use tracing::{info, warn};

use crate::chunks::ChunkHandle;
use crate::cluster::ServerIdx;
use crate::namespace::InodeId;
use crate::oplog::{Durable, Op};
use crate::state::MasterState;

/// How long one chunkserver call of a recovery may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a recovery counts as under way before another may start.
const IN_PROGRESS: Duration = Duration::from_secs(600);

/// A last chunk whose replicas must be settled (step 2 onwards).
#[derive(Debug)]
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
    /// The version bump's log record.
    pub durable: Durable,
}

impl MasterState {
    /// Finds writers past the hard limit and starts recovering their files: files that
    /// need no chunkserver are closed here; the others are returned as plans for
    /// [`recover`].
    pub fn lease_tick(&mut self, now: Instant, now_ms: i64) -> Vec<RecoveryPlan> {
        if self.safemode.is_on() || self.journal.writable().is_err() {
            return Vec::new();
        }
        let expired = self.leases.expired(now);
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
                if !self.leases.may_recover(id, now) {
                    continue;
                }
                if let Some(plan) = self.start_recovery(id, &client, now, now_ms) {
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
        now: Instant,
        now_ms: i64,
    ) -> Option<RecoveryPlan> {
        let path = self.ns.path_of(id);
        let last = self.ns.file(id).and_then(|f| f.chunks.last().copied());
        info!(path = %path, client, "lease expired: recovering the file");
        let (h, c) = match last.map(|h| (h, self.chunks.get(h))) {
            None => return self.close_recovered(id, client, None, now_ms),
            Some((h, Some(c))) if c.length > 0 => {
                let len = c.length;
                return self.close_recovered(id, client, Some((h, len)), now_ms);
            }
            Some((h, Some(c))) => (h, c),
            Some((h, None)) => {
                // Allocated before a crash and replayed: no replica is known yet.
                self.leases.recovering(id, now + self.config.dead_after);
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
        if let Err(e) = self.set_chunk_version(&path, client, h, version) {
            warn!(path = %path, error = %e, "cannot start lease recovery");
            return None;
        }
        let op = Op::UpdatePipeline { path, client: client.to_owned(), handle: h, version };
        let durable = self.journal.append(op, now_ms);
        self.leases.recovering(id, now + IN_PROGRESS);
        Some(RecoveryPlan {
            file: id,
            client: client.to_owned(),
            handle: h,
            version,
            replicas,
            durable,
        })
    }

    /// Closes a recovered file with `last` as its last chunk and length (logged).
    fn close_recovered(
        &mut self,
        id: InodeId,
        client: &str,
        last: Option<(ChunkHandle, u64)>,
        now_ms: i64,
    ) -> Option<RecoveryPlan> {
        let path = self.ns.path_of(id);
        match self.complete(&path, client, last, now_ms) {
            Ok(()) => {
                let length = self.ns.file(id).map_or(0, |f| f.length);
                info!(path = %path, length, "file closed by lease recovery");
                let op = Op::Complete { path, client: client.to_owned(), last };
                drop(self.journal.append(op, now_ms));
                self.leases.recovered(id);
            }
            Err(e) => warn!(path = %path, error = %e, "lease recovery cannot close the file"),
        }
        None
    }

    /// Ends a recovery with the replicas' answers (`settled`: those finalized at
    /// `length`; empty = none answered, retry later).
    #[allow(clippy::too_many_arguments)]
    pub fn finish_recovery(
        &mut self,
        id: InodeId,
        client: &str,
        h: ChunkHandle,
        length: u64,
        settled: &[ServerIdx],
        now: Instant,
        now_ms: i64,
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
            self.leases.recovering(id, now + self.config.dead_after);
            return;
        }
        let path = self.ns.path_of(id);
        if length == 0 {
            if let Err(e) = self.abandon_last_chunk(&path, client, h) {
                warn!(path = %path, error = %e, "lease recovery cannot drop the empty chunk");
                return;
            }
            let op = Op::AbandonChunk { path: path.clone(), client: client.to_owned(), handle: h };
            drop(self.journal.append(op, now_ms));
            let prev = self.ns.file(id).and_then(|f| f.chunks.last().copied());
            let last = prev.map(|p| (p, self.chunks.get(p).map_or(0, |c| c.length)));
            self.close_recovered(id, client, last, now_ms);
            return;
        }
        self.chunks.settle(h, length, settled);
        self.close_recovered(id, client, Some((h, length)), now_ms);
    }
}

/// Steps 2-4 of a recovery (see the module documentation), then
/// [`MasterState::finish_recovery`].
pub async fn recover(state: Arc<Mutex<MasterState>>, plan: RecoveryPlan) {
    let RecoveryPlan { file, client, handle, version, replicas, durable } = plan;
    info!(
        chunk = handle.0,
        version,
        replicas = replicas.len(),
        "settling the last chunk of a recovered file"
    );
    if let Err(e) = durable.wait().await {
        warn!(error = %e, "lease recovery: the version bump is not durable");
        return;
    }
    let mut answered = Vec::new();
    for (idx, addr) in &replicas {
        let Some(mut cs) = client_for(addr) else { continue };
        let req = RecoverReplicaRequest { handle: handle.0, new_version: version };
        match tokio::time::timeout(CALL_TIMEOUT, cs.recover_replica(req)).await {
            Ok(Ok(r)) => answered.push((*idx, addr.clone(), r.into_inner().length)),
            Ok(Err(s)) => {
                warn!(%addr, chunk = handle.0, error = %s.message(), "recover replica failed")
            }
            Err(_) => warn!(%addr, chunk = handle.0, "recover replica timed out"),
        }
    }
    let length = answered.iter().map(|a| a.2).min();
    let mut settled = Vec::new();
    if let Some(len) = length.filter(|&l| l > 0) {
        for (idx, addr, _) in &answered {
            let Some(mut cs) = client_for(addr) else { continue };
            let req = FinalizeReplicaRequest { handle: handle.0, version, length: len };
            match tokio::time::timeout(CALL_TIMEOUT, cs.finalize_replica(req)).await {
                Ok(Ok(_)) => settled.push(*idx),
                Ok(Err(s)) => {
                    warn!(%addr, chunk = handle.0, error = %s.message(), "finalize replica failed")
                }
                Err(_) => warn!(%addr, chunk = handle.0, "finalize replica timed out"),
            }
        }
    }
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    // None answered: report a positive length with nobody settled, so it is retried.
    let len = length.unwrap_or(1);
    st.finish_recovery(
        file,
        &client,
        handle,
        len,
        &settled,
        Instant::now(),
        crate::server::now_ms(),
    );
}

fn client_for(addr: &str) -> Option<ChunkserverClient<tonic::transport::Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).ok()?;
    Some(ChunkserverClient::new(endpoint.connect_timeout(Duration::from_secs(5)).connect_lazy()))
}
