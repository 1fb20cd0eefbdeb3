//! The gRPC edge of the master: translates `gfs.v1.Master` requests into
//! [`MasterState`] calls and the results back into protos. Holds no logic of its own.
//!
//! Every mutation follows one pattern: under the state lock, check the master is
//! writable (not in safe mode, log healthy), apply the change, and hand its record to the
//! journal; then, with the lock released, wait for the record to be durable before
//! answering. Nothing is acknowledged that a crash could lose.
//!
//! Non-idempotent mutations that carry a `client_id` and `call_id` go through the retry
//! cache ([`crate::retry_cache`]) first: a retried call gets its original answer, after
//! that original is durable, and the change is not applied again.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::gfs::master_server::Master;
use proto::gfs::{self as pb, ChunkCommand, DeleteChunks, ReplicateChunk, chunk_command};
use proto::path::DfsPath;
use tonic::{Request, Response, Status};
use tracing::{debug, info};

use crate::checkpoint::Checkpointer;
use crate::chunks::{ChunkHandle, ReplicaStatus};
use crate::cluster::{Identity, Load};
use crate::config;
use crate::error::Error;
use crate::namespace::{InodeId, InodeKind, Namespace};
use crate::oplog::{Durable, LoggedCall, Op};
use crate::report;
use crate::retry_cache::{Cached, CallKey, Reply};
use crate::state::{CreateRequest, Located, MasterState, ReportedReplica};

/// The `Master` service over shared state.
#[derive(Debug, Clone)]
pub struct MasterService {
    state: Arc<Mutex<MasterState>>,
    checkpointer: Checkpointer,
}

/// What a mutation did under the lock, still to be made durable.
enum Step<R> {
    /// A retried call: its cached answer, given once everything logged so far is durable.
    Cached(Reply, Durable),
    /// A new call: its answer and its record's durability.
    Applied(R, Durable),
}

/// How often `safemode wait` re-checks.
const SAFE_MODE_POLL: Duration = Duration::from_millis(100);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn path(s: &str) -> Result<DfsPath, Status> {
    DfsPath::parse(s).map_err(|e| Error::from(e).into())
}

/// `Some(handle)` unless the wire's "none" (0).
fn handle_len(handle: u64, len: u64) -> Option<(ChunkHandle, u64)> {
    (handle != 0).then_some((ChunkHandle(handle), len))
}

/// The host a request came from: what the client says, else its connection's peer.
fn client_host<T>(req: &Request<T>, claimed: &str) -> String {
    if !claimed.is_empty() {
        return claimed.to_owned();
    }
    req.remote_addr().map(|a| a.ip().to_string()).unwrap_or_default()
}

fn reported(c: &pb::ReportedChunk) -> ReportedReplica {
    ReportedReplica {
        handle: ChunkHandle(c.handle),
        version: c.version,
        length: c.length,
        finalized: c.finalized,
    }
}

/// The wire form of a file or directory's status.
pub fn file_status(ns: &Namespace, path: &DfsPath, id: InodeId) -> pb::FileStatus {
    let inode = ns.inode(id);
    let owner = ns.owner_of(inode);
    let mut st = pb::FileStatus {
        path: path.to_string(),
        mtime_ms: inode.mtime_ms,
        owner: owner.to_owned(),
        permission: u32::from(inode.permission),
        ..pb::FileStatus::default()
    };
    match &inode.kind {
        InodeKind::Dir(_) => st.is_dir = true,
        InodeKind::File(f) => {
            st.length = f.length;
            st.replication = u32::from(f.replication);
            st.chunk_size = f.chunk_size;
            st.under_construction = f.writer.is_some();
            st.chunk_count = f.chunks.len() as u64;
        }
    }
    st
}

impl MasterService {
    /// A service over `state`, taking checkpoints on demand with `checkpointer`.
    pub fn new(state: Arc<Mutex<MasterState>>, checkpointer: Checkpointer) -> MasterService {
        MasterService { state, checkpointer }
    }

    fn state(&self) -> MutexGuard<'_, MasterState> {
        // A panic while holding the lock is a bug that already failed its request; the
        // state itself is only ever changed by operations that complete or fail whole.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The state, locked, once it is known to accept a mutation.
    fn writable(&self) -> Result<MutexGuard<'_, MasterState>, Status> {
        let st = self.state();
        st.writable()?;
        Ok(st)
    }

    /// Runs one non-idempotent mutation: answers a retried call from the retry cache
    /// (once its original is durable), otherwise checks the master is writable, applies
    /// the change, logs it with the call's cache entry and waits until it is durable.
    async fn mutate<R>(
        &self,
        call: Option<CallKey>,
        t: i64,
        apply: impl FnOnce(&mut MasterState, i64) -> Result<(R, Op), Error>,
    ) -> Result<R, Status>
    where
        R: prost::Message + Default,
    {
        let step = {
            let mut st = self.state();
            Self::step(&mut st, call, t, apply)?
        };
        match step {
            Step::Cached(reply, durable) => {
                durable.wait().await?;
                match reply {
                    Reply::Ok(bytes) => R::decode(bytes).map_err(|e| {
                        Status::internal(format!("retry cache holds an undecodable answer: {e}"))
                    }),
                    Reply::Err(refusal) => Err(refusal.into()),
                }
            }
            Step::Applied(resp, durable) => {
                durable.wait().await?;
                Ok(resp)
            }
        }
    }

    /// The part of [`MasterService::mutate`] done under the state lock.
    fn step<R: prost::Message>(
        st: &mut MasterState,
        call: Option<CallKey>,
        t: i64,
        apply: impl FnOnce(&mut MasterState, i64) -> Result<(R, Op), Error>,
    ) -> Result<Step<R>, Status> {
        if let Some(key) = &call
            && let Some(cached) = st.retry_cache.get(key, t)
        {
            let reply = cached.reply.clone();
            debug!(client = %key.client_id, call = key.call_id, txid = cached.txid, "answering a retried call from the retry cache");
            // The original may still be waiting for its sync: answer no earlier than it.
            return Ok(Step::Cached(reply, st.journal.barrier()));
        }
        st.writable()?;
        match apply(st, t) {
            Ok((resp, op)) => {
                let logged = call.map(|key| LoggedCall { key, reply: resp.encode_to_vec().into() });
                let entry = logged.as_ref().map(|l| (l.key.clone(), l.reply.clone()));
                let durable = st.journal.append_call(op, t, logged);
                if let Some((key, reply)) = entry {
                    let txid = st.journal.last_txid();
                    st.retry_cache.insert(key, Cached { reply: Reply::Ok(reply), txid }, t);
                }
                Ok(Step::Applied(resp, durable))
            }
            Err(e) => {
                let status = Status::from(e);
                if let Some(key) = call
                    && let Some(reply) = Reply::refusal(&status)
                {
                    st.retry_cache.insert(key, Cached { reply, txid: 0 }, t);
                }
                Err(status)
            }
        }
    }

    fn safe_mode_status(st: &MasterState) -> pb::SafeModeResponse {
        let counts = st.reported_chunks();
        pb::SafeModeResponse {
            on: st.safemode.is_on(),
            manual: st.safemode.is_manual(),
            reported_chunks: counts.reported,
            total_chunks: counts.total,
            threshold: st.safemode.threshold(),
            message: st.safemode.message(counts),
        }
    }

    fn located(st: &MasterState, l: &Located) -> pb::LocatedChunk {
        let corrupt = st.chunks.get(l.handle).map_or(0, |c| {
            c.replicas.iter().filter(|r| r.status == ReplicaStatus::Corrupt).count()
        });
        pb::LocatedChunk {
            handle: l.handle.0,
            version: l.version,
            offset: l.offset,
            length: l.length,
            replicas: l.replicas.iter().map(|&i| report::server_info(st, i)).collect(),
            corrupt_replicas: u32::try_from(corrupt).unwrap_or(u32::MAX),
        }
    }
}

fn load(capacity: u64, used: u64, remaining: u64, active_writes: u32, chunk_count: u64) -> Load {
    Load { capacity, used, remaining, active_writes, chunk_count }
}

#[tonic::async_trait]
impl Master for MasterService {
    async fn mkdir(
        &self,
        req: Request<pb::MkdirRequest>,
    ) -> Result<Response<pb::MkdirResponse>, Status> {
        let r = req.into_inner();
        let p = path(&r.path)?;
        config::check_principal("owner", &r.owner)?;
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let resp = self
            .mutate(call, now_ms(), move |st, t| {
                st.mkdir(&p, r.parents, &r.owner, t)?;
                Ok((
                    pb::MkdirResponse {},
                    Op::Mkdir { path: p, parents: r.parents, owner: r.owner },
                ))
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        let r = req.into_inner();
        let p = path(&r.path)?;
        if r.client_name.is_empty() {
            return Err(Status::invalid_argument("create: client_name is required"));
        }
        config::check_principal("owner", &r.owner)?;
        config::check_principal("client name", &r.client_name)?;
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let resp = self
            .mutate(call, now_ms(), move |st, t| {
                let create = CreateRequest {
                    replication: r.replication,
                    chunk_size: r.chunk_size,
                    overwrite: r.overwrite,
                    create_parents: r.create_parents,
                    owner: &r.owner,
                    client: &r.client_name,
                };
                let id = st.create(&p, &create, t)?;
                st.leases.touch(&r.client_name, Instant::now());
                let status = file_status(&st.ns, &p, id);
                // The record holds the defaults as resolved, so a replay under another
                // configuration creates the same file.
                let (replication, chunk_size) =
                    st.ns.file(id).map_or((0, 0), |f| (f.replication, f.chunk_size));
                let op = Op::Create {
                    path: p,
                    replication,
                    chunk_size,
                    overwrite: r.overwrite,
                    create_parents: r.create_parents,
                    owner: r.owner,
                    client: r.client_name,
                };
                Ok((pb::CreateResponse { status: Some(status) }, op))
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn add_chunk(
        &self,
        req: Request<pb::AddChunkRequest>,
    ) -> Result<Response<pb::AddChunkResponse>, Status> {
        let host = client_host(&req, &req.get_ref().client_host);
        let r = req.into_inner();
        let p = path(&r.path)?;
        let prev = handle_len(r.previous_handle, r.previous_length);
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let resp = self
            .mutate(call, now_ms(), move |st, t| {
                let l =
                    st.add_chunk(&p, &r.client_name, prev, &host, &r.excluded, Instant::now(), t)?;
                // (add_chunk renews the writer's lease.)
                let chunk = Self::located(st, &l);
                let op = Op::AddChunk {
                    path: p,
                    client: r.client_name,
                    previous: prev,
                    handle: l.handle,
                };
                Ok((pb::AddChunkResponse { chunk: Some(chunk) }, op))
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let r = req.into_inner();
        let p = path(&r.path)?;
        let last = handle_len(r.last_handle, r.last_length);
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let resp = self
            .mutate(call, now_ms(), move |st, t| {
                st.complete(&p, &r.client_name, last, t)?;
                Ok((pb::CompleteResponse {}, Op::Complete { path: p, client: r.client_name, last }))
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn get_file_info(
        &self,
        req: Request<pb::GetFileInfoRequest>,
    ) -> Result<Response<pb::GetFileInfoResponse>, Status> {
        let p = path(&req.get_ref().path)?;
        let st = self.state();
        let id = st.ns.lookup(&p)?;
        Ok(Response::new(pb::GetFileInfoResponse { status: Some(file_status(&st.ns, &p, id)) }))
    }

    async fn list_dir(
        &self,
        req: Request<pb::ListDirRequest>,
    ) -> Result<Response<pb::ListDirResponse>, Status> {
        let p = path(&req.get_ref().path)?;
        let st = self.state();
        let entries = st.ns.list(&p)?.iter().map(|(cp, id)| file_status(&st.ns, cp, *id)).collect();
        Ok(Response::new(pb::ListDirResponse { entries }))
    }

    async fn get_chunk_locations(
        &self,
        req: Request<pb::GetChunkLocationsRequest>,
    ) -> Result<Response<pb::GetChunkLocationsResponse>, Status> {
        let host = client_host(&req, &req.get_ref().client_host);
        let r = req.into_inner();
        let p = path(&r.path)?;
        let mut st = self.state();
        let (file_length, chunks, under_construction) =
            st.locations(&p, r.offset, r.length, &host, Instant::now())?;
        let chunks = chunks.iter().map(|l| Self::located(&st, l)).collect();
        Ok(Response::new(pb::GetChunkLocationsResponse { file_length, chunks, under_construction }))
    }

    async fn rename(
        &self,
        req: Request<pb::RenameRequest>,
    ) -> Result<Response<pb::RenameResponse>, Status> {
        let r = req.into_inner();
        let (src, dst) = (path(&r.src)?, path(&r.dst)?);
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let resp = self
            .mutate(call, now_ms(), move |st, t| {
                let new_path = st.rename(&src, &dst, t)?;
                Ok((pb::RenameResponse { new_path: new_path.to_string() }, Op::Rename { src, dst }))
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = req.into_inner();
        let p = path(&r.path)?;
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let resp = self
            .mutate(call, now_ms(), move |st, t| {
                st.delete(&p, r.recursive, t)?;
                Ok((pb::DeleteResponse {}, Op::Delete { path: p, recursive: r.recursive }))
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn set_replication(
        &self,
        req: Request<pb::SetReplicationRequest>,
    ) -> Result<Response<pb::SetReplicationResponse>, Status> {
        let r = req.into_inner();
        let p = path(&r.path)?;
        let replication = crate::config::check_replication(r.replication)?;
        let t = now_ms();
        let (durable, files) = {
            let mut st = self.writable()?;
            let files = st.set_replication(&p, r.replication)?;
            (st.journal.append(Op::SetReplication { path: p, replication }, t), files)
        };
        durable.wait().await?;
        Ok(Response::new(pb::SetReplicationResponse { files }))
    }

    async fn get_content_summary(
        &self,
        req: Request<pb::GetContentSummaryRequest>,
    ) -> Result<Response<pb::GetContentSummaryResponse>, Status> {
        let p = path(&req.get_ref().path)?;
        let st = self.state();
        let (file_count, directory_count) = st.ns.count_under(&p)?;
        let (mut length, mut space_consumed) = (0u64, 0u64);
        for (_, id) in st.ns.files_under(&p)? {
            if let Some(f) = st.ns.file(id) {
                length += f.length;
                space_consumed += f.length * u64::from(f.replication);
            }
        }
        Ok(Response::new(pb::GetContentSummaryResponse {
            length,
            file_count,
            directory_count,
            space_consumed,
        }))
    }

    async fn fsck(
        &self,
        req: Request<pb::FsckRequest>,
    ) -> Result<Response<pb::FsckResponse>, Status> {
        let r = req.into_inner();
        let p = path(if r.path.is_empty() { "/" } else { &r.path })?;
        let st = self.state();
        Ok(Response::new(report::fsck(&st, &p, r.include_open, Instant::now())?))
    }

    async fn cluster_report(
        &self,
        _req: Request<pb::ClusterReportRequest>,
    ) -> Result<Response<pb::ClusterReportResponse>, Status> {
        let st = self.state();
        Ok(Response::new(report::cluster_report(&st, Instant::now())))
    }

    async fn report_bad_replica(
        &self,
        req: Request<pb::ReportBadReplicaRequest>,
    ) -> Result<Response<pb::ReportBadReplicaResponse>, Status> {
        let r = req.into_inner();
        self.state().report_bad_replica(ChunkHandle(r.handle), &r.chunkserver_id, &r.reason)?;
        Ok(Response::new(pb::ReportBadReplicaResponse {}))
    }

    async fn update_pipeline(
        &self,
        req: Request<pb::UpdatePipelineRequest>,
    ) -> Result<Response<pb::UpdatePipelineResponse>, Status> {
        let r = req.into_inner();
        let p = path(&r.path)?;
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let resp = self
            .mutate(call, now_ms(), move |st, _| {
                let handle = ChunkHandle(r.handle);
                let l =
                    st.update_pipeline(&p, &r.client_name, handle, &r.survivors, Instant::now())?;
                let chunk = Self::located(st, &l);
                let op = Op::UpdatePipeline {
                    path: p,
                    client: r.client_name,
                    handle,
                    version: l.version,
                };
                Ok((pb::UpdatePipelineResponse { chunk: Some(chunk) }, op))
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn renew_lease(
        &self,
        req: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::RenewLeaseResponse>, Status> {
        let r = req.into_inner();
        if r.client_name.is_empty() {
            return Err(Status::invalid_argument("renew lease: client_name is required"));
        }
        config::check_principal("client name", &r.client_name)?;
        let mut st = self.state();
        st.leases.touch(&r.client_name, Instant::now());
        let renew_interval_ms = st.leases.renew_interval().as_millis() as u64;
        Ok(Response::new(pb::RenewLeaseResponse { renew_interval_ms }))
    }

    async fn decommission(
        &self,
        req: Request<pb::DecommissionRequest>,
    ) -> Result<Response<pb::DecommissionResponse>, Status> {
        let r = req.into_inner();
        let mut st = self.state();
        let (idx, state, left) = st.decommission(&r.addr, r.recommission, Instant::now())?;
        Ok(Response::new(pb::DecommissionResponse {
            server: Some(report::server_info(&st, idx)),
            state: report::admin_state(state) as i32,
            chunks_to_copy: left,
        }))
    }

    async fn balance(
        &self,
        req: Request<pb::BalanceRequest>,
    ) -> Result<Response<pb::BalanceResponse>, Status> {
        let r = req.into_inner();
        let mut st = self.state();
        if r.stop {
            st.replication.balancer.stop("stopped by an administrator");
        } else if !r.query {
            if !(r.threshold_pct > 0.0 && r.threshold_pct <= 100.0) {
                return Err(Status::invalid_argument(format!(
                    "balance: threshold {} is outside (0, 100] percentage points",
                    r.threshold_pct
                )));
            }
            st.replication.balancer.start(r.threshold_pct);
            info!(threshold_pct = r.threshold_pct, "balancer started");
        }
        Ok(Response::new(report::balancer_status(&st)))
    }

    async fn checkpoint(
        &self,
        _req: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        let txid = self.checkpointer.checkpoint(now_ms()).await?;
        Ok(Response::new(pb::CheckpointResponse { txid }))
    }

    async fn safe_mode(
        &self,
        req: Request<pb::SafeModeRequest>,
    ) -> Result<Response<pb::SafeModeResponse>, Status> {
        use pb::SafeModeAction as A;
        let action = A::try_from(req.get_ref().action).map_err(|_| {
            Status::invalid_argument(format!("safe mode: unknown action {}", req.get_ref().action))
        })?;
        match action {
            A::Unspecified | A::Get => {}
            A::Enter => {
                self.state().safemode.enter();
                info!("safe mode entered by an administrator");
            }
            A::Leave => {
                self.state().safemode.leave();
                info!("safe mode left by an administrator");
            }
            A::Wait => loop {
                {
                    let mut st = self.state();
                    st.update_safemode(Instant::now());
                    if !st.safemode.is_on() {
                        break;
                    }
                }
                // Reports arrive by RPC; re-checking a few times a second is plenty for
                // an administrator's wait, and the client's deadline bounds it.
                tokio::time::sleep(SAFE_MODE_POLL).await;
            },
        }
        Ok(Response::new(Self::safe_mode_status(&self.state())))
    }

    async fn meta_save(
        &self,
        _req: Request<pb::MetaSaveRequest>,
    ) -> Result<Response<pb::MetaSaveResponse>, Status> {
        let text = crate::metasave::meta_save(&self.state(), Instant::now(), now_ms());
        Ok(Response::new(pb::MetaSaveResponse { text }))
    }

    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = req.into_inner();
        let Some(server) = r.server else {
            return Err(Status::invalid_argument("register: server is required"));
        };
        if server.id.is_empty() || server.addr.is_empty() {
            return Err(Status::invalid_argument("register: server id and addr are required"));
        }
        let chunks: Vec<ReportedReplica> = r.chunks.iter().map(reported).collect();
        let load = load(r.capacity, r.used, r.remaining, 0, chunks.len() as u64);
        let mut st = self.state();
        let now = Instant::now();
        st.register(
            Identity { id: &server.id, addr: &server.addr, rack: &server.rack },
            load,
            &chunks,
            now,
            now_ms(),
        );
        st.update_safemode(now);
        let heartbeat_interval_ms = st.config.heartbeat_interval.as_millis() as u64;
        let chunk_size = st.config.chunk_size;
        Ok(Response::new(pb::RegisterResponse { heartbeat_interval_ms, chunk_size }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        let load = load(r.capacity, r.used, r.remaining, r.active_writes, r.chunk_count);
        let st = &mut *self.state();
        let Some(reply) = st.heartbeat(&r.id, load, Instant::now(), now_ms()) else {
            return Ok(Response::new(pb::HeartbeatResponse { commands: vec![], reregister: true }));
        };
        let mut commands = Vec::new();
        if !reply.deletes.is_empty() {
            let replicas = reply
                .deletes
                .into_iter()
                .map(|d| pb::DeleteReplica {
                    handle: d.handle.0,
                    version: d.version,
                    rbw_only: d.rbw_only,
                })
                .collect();
            commands.push(ChunkCommand {
                command: Some(chunk_command::Command::Delete(DeleteChunks { replicas })),
            });
        }
        for c in reply.replicates {
            commands.push(ChunkCommand {
                command: Some(chunk_command::Command::Replicate(ReplicateChunk {
                    handle: c.handle.0,
                    version: c.version,
                    length: c.length,
                    source: Some(report::server_info(st, c.source)),
                })),
            });
        }
        Ok(Response::new(pb::HeartbeatResponse { commands, reregister: reply.reregister }))
    }

    async fn report_chunks(
        &self,
        req: Request<pb::ReportChunksRequest>,
    ) -> Result<Response<pb::ReportChunksResponse>, Status> {
        let r = req.into_inner();
        let received: Vec<ReportedReplica> = r.received.iter().map(reported).collect();
        let deleted: Vec<ChunkHandle> = r.deleted.iter().map(|&h| ChunkHandle(h)).collect();
        let corrupt: Vec<ChunkHandle> = r.corrupt.iter().map(|&h| ChunkHandle(h)).collect();
        let known = {
            let mut st = self.state();
            let known = st.report_chunks(&r.id, &received, &deleted, &corrupt);
            st.update_safemode(Instant::now());
            known
        };
        Ok(Response::new(pb::ReportChunksResponse { reregister: !known }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::oplog::LogThread;
    use crate::recovery::recover;

    fn start(dir: &Path) -> (MasterService, LogThread) {
        let cfg = Config {
            dir: dir.to_owned(),
            chunk_size: 1 << 20,
            replication: 1,
            safemode_extension: Duration::ZERO,
            ..Config::default()
        };
        let r = recover(cfg).expect("recover");
        let mut st = r.state;
        let load = Load { capacity: 1 << 40, remaining: 1 << 40, ..Load::default() };
        let now = Instant::now();
        st.register(Identity { id: "cs0", addr: "127.0.0.2:1", rack: "/r" }, load, &[], now, 0);
        st.safemode.leave();
        let state = Arc::new(Mutex::new(st));
        let cp = Checkpointer::new(state.clone(), dir.to_owned(), r.checkpoint_txid);
        (MasterService::new(state, cp), r.log)
    }

    fn create(path: &str, call_id: u64) -> Request<pb::CreateRequest> {
        Request::new(pb::CreateRequest {
            path: path.into(),
            client_name: "w".into(),
            owner: "u".into(),
            client_id: "client-a".into(),
            call_id,
            ..pb::CreateRequest::default()
        })
    }

    fn rename(src: &str, dst: &str, call_id: u64) -> Request<pb::RenameRequest> {
        Request::new(pb::RenameRequest {
            src: src.into(),
            dst: dst.into(),
            client_id: "client-a".into(),
            call_id,
        })
    }

    fn last_txid(svc: &MasterService) -> u64 {
        svc.state().journal.last_txid()
    }

    #[tokio::test]
    async fn names_a_request_carries_are_bounded_and_free_of_control_characters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (svc, log) = start(dir.path());
        let huge = "u".repeat(1 << 20);
        let mut req = create("/f", 1).into_inner();
        req.owner = huge.clone();
        let Err(err) = svc.create(Request::new(req)).await else {
            panic!("a megabyte owner was accepted");
        };
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("over the limit"), "{}", err.message());
        let mut req = create("/f", 2).into_inner();
        req.client_name = "w\nINFO forged line".into();
        let err = svc.create(Request::new(req)).await.expect_err("a newline in a name");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let mkdir = pb::MkdirRequest { path: "/d".into(), owner: huge, ..Default::default() };
        assert!(svc.mkdir(Request::new(mkdir)).await.is_err());
        let renew = pb::RenewLeaseRequest { client_name: "c\u{7}".into() };
        assert!(svc.renew_lease(Request::new(renew)).await.is_err());
        // Nothing entered the namespace.
        assert!(svc.create(create("/f", 3)).await.is_ok());
        log.stop();
    }

    #[tokio::test]
    async fn a_retried_mutation_gets_the_original_answer_and_applies_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (svc, log) = start(dir.path());
        let first = svc.create(create("/f", 1)).await.expect("create").into_inner();
        let txid = last_txid(&svc);
        // The same call again: no "file exists", the same status, nothing new logged.
        let again = svc.create(create("/f", 1)).await.expect("retry").into_inner();
        assert_eq!(again, first);
        assert_eq!(last_txid(&svc), txid);
        // A new call for the same path is a new request and is refused.
        let err = svc.create(create("/f", 2)).await.expect_err("exists");
        assert_eq!(err.code(), tonic::Code::AlreadyExists);
        // Rename a -> b, retried: not applied twice (b would move into itself or fail).
        svc.mkdir(Request::new(pb::MkdirRequest {
            path: "/a".into(),
            parents: true,
            ..Default::default()
        }))
        .await
        .expect("mkdir");
        let r1 = svc.rename(rename("/a", "/b", 3)).await.expect("rename").into_inner();
        let r2 = svc.rename(rename("/a", "/b", 3)).await.expect("retry").into_inner();
        assert_eq!((r1.new_path.as_str(), r2.new_path.as_str()), ("/b", "/b"));
        // A refusal is cached too: the retry gets it even though /c now exists.
        let err = svc.rename(rename("/c", "/d", 4)).await.expect_err("missing");
        assert_eq!(err.code(), tonic::Code::NotFound);
        svc.mkdir(Request::new(pb::MkdirRequest { path: "/c".into(), ..Default::default() }))
            .await
            .expect("mkdir");
        let again = svc.rename(rename("/c", "/d", 4)).await.expect_err("cached refusal");
        assert_eq!((again.code(), again.message()), (err.code(), err.message()));
        log.stop();
    }

    #[tokio::test]
    async fn retry_cache_entries_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (svc, log) = start(dir.path());
        let created = svc.create(create("/f", 1)).await.expect("create").into_inner();
        let add = |call_id| {
            Request::new(pb::AddChunkRequest {
                path: "/f".into(),
                client_name: "w".into(),
                client_id: "client-a".into(),
                call_id,
                ..Default::default()
            })
        };
        let chunk = svc.add_chunk(add(2)).await.expect("add chunk").into_inner();
        let moved = svc.rename(rename("/f", "/g", 3)).await.expect("rename").into_inner();
        log.stop();
        drop(svc);
        // The master crashed before its answers arrived: the client retries every call.
        let (svc, log) = start(dir.path());
        let txid = last_txid(&svc);
        assert_eq!(svc.create(create("/f", 1)).await.expect("retry").into_inner(), created);
        assert_eq!(svc.add_chunk(add(2)).await.expect("retry").into_inner(), chunk);
        assert_eq!(svc.rename(rename("/f", "/g", 3)).await.expect("retry").into_inner(), moved);
        assert_eq!(last_txid(&svc), txid, "nothing applied twice");
        let st = svc.state();
        assert!(st.ns.lookup(&DfsPath::parse("/g").expect("path")).is_ok());
        assert_eq!(st.ns.file_count(), 1);
        assert_eq!(st.chunks.len(), 1);
        drop(st);
        log.stop();
    }

    #[tokio::test]
    async fn safe_mode_refusals_are_not_cached() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (svc, log) = start(dir.path());
        svc.state().safemode.enter();
        let err = svc.create(create("/f", 1)).await.expect_err("safe mode");
        assert!(err.message().contains("safe mode"), "{}", err.message());
        svc.state().safemode.leave();
        // The retry after safe mode ends is applied.
        svc.create(create("/f", 1)).await.expect("created once writable");
        log.stop();
    }
}
