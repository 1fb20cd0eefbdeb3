//! The gRPC edge of the master: translates `gfs.v1.Master` requests into core
//! [`Command`]s and [`Reply`]s back into protos, and maps errors to status codes. Holds
//! no logic of its own: every change goes through [`crate::core::Core::apply`].
//!
//! Every mutation follows one pattern: under the driver's lock, check the log is
//! writable, apply the command, and hand the record the core produced to the journal;
//! then, with the lock released, wait for the record to be durable before answering.
//! Nothing is acknowledged that a crash could lose.
//!
//! Non-idempotent mutations that carry a `client_id` and `call_id` go through the retry
//! cache ([`crate::retry_cache`]) first: a retried call gets its original answer, after
//! that original is durable, and the change is not applied again.

use std::time::Duration;

use proto::gfs::master_server::Master;
use proto::gfs::{self as pb, ChunkCommand, DeleteChunks, ReplicateChunk, chunk_command};
use proto::path::DfsPath;
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::checkpoint::Checkpointer;
use crate::chunks::ReplicaStatus;
use crate::cluster::Load;
use crate::command::{BalanceAction, Command, Mutation, Reply, SafeModeAction, ServerName};
use crate::config;
use crate::core::{Core, Located, ReportedReplica};
use crate::driver::Driver;
use crate::error::Error;
use crate::ids::{ChunkHandle, InodeId};
use crate::namespace::{InodeKind, Namespace};
use crate::oplog::{Durable, LoggedCall};
use crate::report;
use crate::retry_cache::{Cached, CallKey, Reply as CachedReply};

/// The `Master` service over the driver.
#[derive(Debug, Clone)]
pub struct MasterService {
    driver: Driver,
    checkpointer: Checkpointer,
}

/// What a mutation did under the lock, still to be made durable.
enum Step<R> {
    /// A retried call: its cached answer, given once everything logged so far is durable.
    Cached(CachedReply, Durable),
    /// A new call: its answer and its record's durability.
    Applied(R, Durable),
}

/// How often `safemode wait` re-checks.
const SAFE_MODE_POLL: Duration = Duration::from_millis(100);

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

/// The core answered something its call never answers: a bug, reported as one.
fn unexpected(reply: &Reply) -> Status {
    Status::internal(format!("the master answered {reply:?} to the wrong call"))
}

fn located(st: &Core, l: &Located) -> pb::LocatedChunk {
    let corrupt = st
        .chunks
        .get(l.handle)
        .map_or(0, |c| c.replicas.iter().filter(|r| r.status == ReplicaStatus::Corrupt).count());
    pb::LocatedChunk {
        handle: l.handle.0,
        version: l.version,
        offset: l.offset,
        length: l.length,
        replicas: l.replicas.iter().map(|&i| report::server_info(st, i)).collect(),
        corrupt_replicas: u32::try_from(corrupt).unwrap_or(u32::MAX),
    }
}

/// A chunk answer as the wire has it.
fn chunk_reply(st: &Core, reply: Reply) -> Result<Option<pb::LocatedChunk>, Status> {
    match reply {
        Reply::Chunk(l) => Ok(Some(located(st, &l))),
        other => Err(unexpected(&other)),
    }
}

fn load(capacity: u64, used: u64, remaining: u64, active_writes: u32, chunk_count: u64) -> Load {
    Load { capacity, used, remaining, active_writes, chunk_count }
}

impl MasterService {
    /// A service over `driver`, taking checkpoints on demand with `checkpointer`.
    pub fn new(driver: Driver, checkpointer: Checkpointer) -> MasterService {
        MasterService { driver, checkpointer }
    }

    /// Applies a command that logs nothing (a chunkserver message, an admin call) and
    /// answers with `answer` built from its reply under the same lock.
    fn command<R>(
        &self,
        cmd: Command,
        answer: impl FnOnce(&Core, Reply) -> Result<R, Status>,
    ) -> Result<R, Status> {
        let mut m = self.driver.lock()?;
        let (out, _) = m.apply(cmd, self.driver.now());
        answer(&m.core, out.reply?)
    }

    /// Runs one client mutation: answers a retried call from the retry cache (once its
    /// original is durable), otherwise checks the log is writable, applies the change,
    /// logs its record with the call's cache entry and waits until it is durable.
    async fn mutate<R>(
        &self,
        call: Option<CallKey>,
        mutation: Mutation,
        answer: impl FnOnce(&Core, Reply) -> Result<R, Status>,
    ) -> Result<R, Status>
    where
        R: prost::Message + Default,
    {
        let step = self.step(call, mutation, answer)?;
        match step {
            Step::Cached(reply, durable) => {
                durable.wait().await?;
                match reply {
                    CachedReply::Ok(bytes) => R::decode(bytes).map_err(|e| {
                        Status::internal(format!("retry cache holds an undecodable answer: {e}"))
                    }),
                    CachedReply::Err(refusal) => Err(refusal.into()),
                }
            }
            Step::Applied(resp, durable) => {
                durable.wait().await?;
                Ok(resp)
            }
        }
    }

    /// The part of [`MasterService::mutate`] done under the lock.
    fn step<R: prost::Message>(
        &self,
        call: Option<CallKey>,
        mutation: Mutation,
        answer: impl FnOnce(&Core, Reply) -> Result<R, Status>,
    ) -> Result<Step<R>, Status> {
        let mut m = self.driver.lock()?;
        let now = self.driver.now();
        let t = now.wall_ms;
        if let Some(key) = &call
            && let Some(cached) = m.core.retry_cache.get(key, t)
        {
            let reply = cached.reply.clone();
            debug!(client = %key.client_id, call = key.call_id, txid = cached.txid, "answering a retried call from the retry cache");
            // The original may still be waiting for its sync: answer no earlier than it.
            return Ok(Step::Cached(reply, m.journal.barrier()));
        }
        m.journal.writable()?;
        let mut out = m.core.apply(Command::Mutate(mutation), now);
        let reply = match out.reply {
            Ok(reply) => reply,
            Err(e) => {
                let status = Status::from(e);
                if let Some(key) = call
                    && let Some(reply) = CachedReply::refusal(&status)
                {
                    m.core.retry_cache.insert(key, Cached { reply, txid: 0 }, t);
                }
                return Err(status);
            }
        };
        let resp = answer(&m.core, reply)?;
        let logged = call.map(|key| LoggedCall { key, reply: resp.encode_to_vec().into() });
        let entry = logged.as_ref().map(|l| (l.key.clone(), l.reply.clone()));
        // A client mutation makes one record; the call's cache entry rides on it.
        let Some(op) = out.records.pop() else {
            return Err(Status::internal("a mutation produced no log record"));
        };
        let earlier = m.journal.append_all(std::mem::take(&mut out.records), t);
        drop(earlier);
        let durable = m.journal.append_call(op, t, logged);
        if let Some((key, reply)) = entry {
            let txid = m.journal.last_txid();
            m.core.retry_cache.insert(key, Cached { reply: CachedReply::Ok(reply), txid }, t);
        }
        Ok(Step::Applied(resp, durable))
    }

    fn safe_mode_status(st: &Core) -> pb::SafeModeResponse {
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
        let m = Mutation::Mkdir { path: p, parents: r.parents, owner: r.owner };
        let resp = self.mutate(call, m, |_, _| Ok(pb::MkdirResponse {})).await?;
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
        let m = Mutation::Create {
            path: p,
            replication: r.replication,
            chunk_size: r.chunk_size,
            overwrite: r.overwrite,
            create_parents: r.create_parents,
            owner: r.owner,
            client: r.client_name,
        };
        let resp = self
            .mutate(call, m, |st, reply| match reply {
                Reply::Created { path, id } => {
                    Ok(pb::CreateResponse { status: Some(file_status(&st.ns, &path, id)) })
                }
                other => Err(unexpected(&other)),
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
        let m = Mutation::AddChunk {
            path: path(&r.path)?,
            client: r.client_name,
            previous: handle_len(r.previous_handle, r.previous_length),
            client_host: host,
            excluded: r.excluded,
        };
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let resp = self
            .mutate(call, m, |st, reply| {
                Ok(pb::AddChunkResponse { chunk: chunk_reply(st, reply)? })
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let r = req.into_inner();
        let m = Mutation::Complete {
            path: path(&r.path)?,
            client: r.client_name,
            last: handle_len(r.last_handle, r.last_length),
        };
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let resp = self.mutate(call, m, |_, _| Ok(pb::CompleteResponse {})).await?;
        Ok(Response::new(resp))
    }

    async fn get_file_info(
        &self,
        req: Request<pb::GetFileInfoRequest>,
    ) -> Result<Response<pb::GetFileInfoResponse>, Status> {
        let p = path(&req.get_ref().path)?;
        let m = self.driver.lock()?;
        let id = m.core.ns.lookup(&p)?;
        Ok(Response::new(pb::GetFileInfoResponse { status: Some(file_status(&m.core.ns, &p, id)) }))
    }

    async fn list_dir(
        &self,
        req: Request<pb::ListDirRequest>,
    ) -> Result<Response<pb::ListDirResponse>, Status> {
        let p = path(&req.get_ref().path)?;
        let m = self.driver.lock()?;
        let ns = &m.core.ns;
        let entries = ns.list(&p)?.iter().map(|(cp, id)| file_status(ns, cp, *id)).collect();
        Ok(Response::new(pb::ListDirResponse { entries }))
    }

    async fn get_chunk_locations(
        &self,
        req: Request<pb::GetChunkLocationsRequest>,
    ) -> Result<Response<pb::GetChunkLocationsResponse>, Status> {
        let host = client_host(&req, &req.get_ref().client_host);
        let r = req.into_inner();
        let p = path(&r.path)?;
        let mut m = self.driver.lock()?;
        let now = self.driver.now().mono;
        let (file_length, chunks, under_construction) =
            m.core.locations(&p, r.offset, r.length, &host, now)?;
        let chunks = chunks.iter().map(|l| located(&m.core, l)).collect();
        Ok(Response::new(pb::GetChunkLocationsResponse { file_length, chunks, under_construction }))
    }

    async fn rename(
        &self,
        req: Request<pb::RenameRequest>,
    ) -> Result<Response<pb::RenameResponse>, Status> {
        let r = req.into_inner();
        let m = Mutation::Rename { src: path(&r.src)?, dst: path(&r.dst)? };
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let resp = self
            .mutate(call, m, |_, reply| match reply {
                Reply::Renamed(to) => Ok(pb::RenameResponse { new_path: to.to_string() }),
                other => Err(unexpected(&other)),
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = req.into_inner();
        let m = Mutation::Delete { path: path(&r.path)?, recursive: r.recursive };
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let resp = self.mutate(call, m, |_, _| Ok(pb::DeleteResponse {})).await?;
        Ok(Response::new(resp))
    }

    async fn set_replication(
        &self,
        req: Request<pb::SetReplicationRequest>,
    ) -> Result<Response<pb::SetReplicationResponse>, Status> {
        let r = req.into_inner();
        let m = Mutation::SetReplication { path: path(&r.path)?, replication: r.replication };
        // Idempotent: no retry-cache entry.
        let resp = self
            .mutate(None, m, |_, reply| match reply {
                Reply::Files(files) => Ok(pb::SetReplicationResponse { files }),
                other => Err(unexpected(&other)),
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn get_content_summary(
        &self,
        req: Request<pb::GetContentSummaryRequest>,
    ) -> Result<Response<pb::GetContentSummaryResponse>, Status> {
        let p = path(&req.get_ref().path)?;
        let m = self.driver.lock()?;
        let ns = &m.core.ns;
        let (file_count, directory_count) = ns.count_under(&p)?;
        let (mut length, mut space_consumed) = (0u64, 0u64);
        for (_, id) in ns.files_under(&p)? {
            if let Some(f) = ns.file(id) {
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
        let m = self.driver.lock()?;
        Ok(Response::new(report::fsck(&m.core, &p, r.include_open, self.driver.now().mono)?))
    }

    async fn cluster_report(
        &self,
        _req: Request<pb::ClusterReportRequest>,
    ) -> Result<Response<pb::ClusterReportResponse>, Status> {
        let m = self.driver.lock()?;
        Ok(Response::new(report::cluster_report(&m.core, self.driver.now().mono)))
    }

    async fn report_bad_replica(
        &self,
        req: Request<pb::ReportBadReplicaRequest>,
    ) -> Result<Response<pb::ReportBadReplicaResponse>, Status> {
        let r = req.into_inner();
        let cmd = Command::ReportBadReplica {
            handle: ChunkHandle(r.handle),
            server_id: r.chunkserver_id,
            reason: r.reason,
        };
        self.command(cmd, |_, _| Ok(()))?;
        Ok(Response::new(pb::ReportBadReplicaResponse {}))
    }

    async fn update_pipeline(
        &self,
        req: Request<pb::UpdatePipelineRequest>,
    ) -> Result<Response<pb::UpdatePipelineResponse>, Status> {
        let r = req.into_inner();
        let m = Mutation::UpdatePipeline {
            path: path(&r.path)?,
            client: r.client_name,
            handle: ChunkHandle(r.handle),
            survivors: r.survivors,
        };
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let resp = self
            .mutate(call, m, |st, reply| {
                Ok(pb::UpdatePipelineResponse { chunk: chunk_reply(st, reply)? })
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
        let renew_interval_ms = self
            .command(Command::RenewLease { client: r.client_name }, |st, _| {
                Ok(st.leases.renew_interval().as_millis() as u64)
            })?;
        Ok(Response::new(pb::RenewLeaseResponse { renew_interval_ms }))
    }

    async fn decommission(
        &self,
        req: Request<pb::DecommissionRequest>,
    ) -> Result<Response<pb::DecommissionResponse>, Status> {
        let r = req.into_inner();
        let cmd = Command::Decommission { who: r.addr, recommission: r.recommission };
        let resp = self.command(cmd, |st, reply| match reply {
            Reply::Decommission { server, state, left } => Ok(pb::DecommissionResponse {
                server: Some(report::server_info(st, server)),
                state: report::admin_state(state) as i32,
                chunks_to_copy: left,
            }),
            other => Err(unexpected(&other)),
        })?;
        Ok(Response::new(resp))
    }

    async fn balance(
        &self,
        req: Request<pb::BalanceRequest>,
    ) -> Result<Response<pb::BalanceResponse>, Status> {
        let r = req.into_inner();
        let action = if r.stop {
            BalanceAction::Stop
        } else if r.query {
            BalanceAction::Query
        } else {
            BalanceAction::Start(r.threshold_pct)
        };
        let resp =
            self.command(Command::Balance(action), |st, _| Ok(report::balancer_status(st)))?;
        Ok(Response::new(resp))
    }

    async fn checkpoint(
        &self,
        _req: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        let txid = self.checkpointer.checkpoint(self.driver.now().wall_ms).await?;
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
        let action = match action {
            A::Unspecified | A::Get | A::Wait => SafeModeAction::Check,
            A::Enter => SafeModeAction::Enter,
            A::Leave => SafeModeAction::Leave,
        };
        loop {
            let status =
                self.command(Command::SafeMode(action), |st, _| Ok(Self::safe_mode_status(st)))?;
            if !(status.on && req.get_ref().action == A::Wait as i32) {
                return Ok(Response::new(status));
            }
            // Reports arrive by RPC; re-checking a few times a second is plenty for an
            // administrator's wait, and the client's deadline bounds it.
            tokio::time::sleep(SAFE_MODE_POLL).await;
        }
    }

    async fn meta_save(
        &self,
        _req: Request<pb::MetaSaveRequest>,
    ) -> Result<Response<pb::MetaSaveResponse>, Status> {
        let now = self.driver.now();
        let m = self.driver.lock()?;
        let text = crate::metasave::meta_save(&m, now.mono, now.wall_ms);
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
        let server = ServerName { id: server.id, addr: server.addr, rack: server.rack };
        let resp = self.command(Command::Register { server, load, chunks }, |st, _| {
            Ok(pb::RegisterResponse {
                heartbeat_interval_ms: st.config.heartbeat_interval.as_millis() as u64,
                chunk_size: st.config.chunk_size,
            })
        })?;
        Ok(Response::new(resp))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        let load = load(r.capacity, r.used, r.remaining, r.active_writes, r.chunk_count);
        let resp = self.command(Command::Heartbeat { id: r.id, load }, |st, reply| {
            let reply = match reply {
                Reply::Heartbeat(Some(reply)) => reply,
                Reply::Heartbeat(None) => {
                    return Ok(pb::HeartbeatResponse { commands: vec![], reregister: true });
                }
                other => return Err(unexpected(&other)),
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
            Ok(pb::HeartbeatResponse { commands, reregister: reply.reregister })
        })?;
        Ok(Response::new(resp))
    }

    async fn report_chunks(
        &self,
        req: Request<pb::ReportChunksRequest>,
    ) -> Result<Response<pb::ReportChunksResponse>, Status> {
        let r = req.into_inner();
        let cmd = Command::ReportChunks {
            id: r.id,
            received: r.received.iter().map(reported).collect(),
            deleted: r.deleted.iter().map(|&h| ChunkHandle(h)).collect(),
            corrupt: r.corrupt.iter().map(|&h| ChunkHandle(h)).collect(),
        };
        let known = self.command(cmd, |_, reply| match reply {
            Reply::Known(known) => Ok(known),
            other => Err(unexpected(&other)),
        })?;
        Ok(Response::new(pb::ReportChunksResponse { reregister: !known }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use std::time::Instant;

    use super::*;
    use crate::cluster::Identity;
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
        let mut st = r.core;
        let load = Load { capacity: 1 << 40, remaining: 1 << 40, ..Load::default() };
        let now = Instant::now();
        st.register(Identity { id: "cs0", addr: "127.0.0.2:1", rack: "/r" }, load, &[], now, 0);
        st.safemode.leave();
        let driver = Driver::new(st, r.journal);
        let cp = Checkpointer::new(driver.clone(), dir.to_owned(), r.checkpoint_txid);
        (MasterService::new(driver, cp), r.log)
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
        svc.driver.lock().expect("lock").journal.last_txid()
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
        let m = svc.driver.lock().expect("lock");
        let st = &m.core;
        assert!(st.ns.lookup(&DfsPath::parse("/g").expect("path")).is_ok());
        assert_eq!(st.ns.file_count(), 1);
        assert_eq!(st.chunks.len(), 1);
        drop(m);
        log.stop();
    }

    #[tokio::test]
    async fn safe_mode_refusals_are_not_cached() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (svc, log) = start(dir.path());
        svc.driver.lock().expect("lock").core.safemode.enter();
        let err = svc.create(create("/f", 1)).await.expect_err("safe mode");
        assert!(err.message().contains("safe mode"), "{}", err.message());
        svc.driver.lock().expect("lock").core.safemode.leave();
        // The retry after safe mode ends is applied.
        svc.create(create("/f", 1)).await.expect("created once writable");
        log.stop();
    }
}
