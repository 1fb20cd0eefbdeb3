//! `gfs.v1.ClientProtocol`: what `dfs` clients and MapReduce tasks call. The namespace
//! (mkdir, create, rename, delete, listings, summaries), the write path (chunks,
//! pipelines, completion, leases) and the read path (chunk locations, bad replicas).
//!
//! Mutations go through [`super::mutate`] (the retry cache and the log); lookups read
//! the core under the driver's lock. Every call names its caller ([`super::Edge`]);
//! namespace calls are audited.

use proto::gfs as pb;
use proto::gfs::client_protocol_server::ClientProtocol;
use proto::path::{DfsPath, MAX_COMPONENT_LEN};
use security::chunk_token::Modes;
use tonic::{Request, Response, Status};

use super::{Audited, Edge, command, mutate, path, perm_of, unexpected};
use crate::chunk_tokens::ChunkTokens;
use crate::chunks::ReplicaStatus;
use crate::clock::wall_ms;
use crate::command::{Command, Mutation, Read, Reply};
use crate::config;
use crate::core::{Core, Located};
use crate::driver::Driver;
use crate::ids::{ChunkHandle, InodeId};
use crate::namespace::{InodeKind, Namespace};
use crate::permission::{self, DEFAULT_UMASK};
use crate::report;
use crate::retry_cache::CallKey;

/// The `ClientProtocol` service over the driver.
#[derive(Debug, Clone)]
pub struct ClientProtocolService {
    driver: Driver,
    edge: Edge,
}

impl ClientProtocolService {
    /// A service over `driver`, learning callers and auditing at `edge`.
    pub fn new(driver: Driver, edge: Edge) -> ClientProtocolService {
        ClientProtocolService { driver, edge }
    }
}

/// The umask a request carries, or the default.
fn umask(u: Option<u32>) -> Result<u16, Status> {
    Ok(match u {
        Some(u) => permission::check_umask(u)?,
        None => DEFAULT_UMASK,
    })
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

/// The wire form of a file or directory's status.
fn file_status(ns: &Namespace, path: &DfsPath, id: InodeId) -> pb::FileStatus {
    let inode = ns.inode(id);
    let owner = ns.owner_of(inode);
    let mut st = pb::FileStatus {
        path: path.to_string(),
        mtime_ms: inode.mtime_ms,
        owner: owner.to_owned(),
        group: ns.group_of(inode).to_owned(),
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

/// The wire form of a located chunk, with a token for `modes` on it (read for
/// locations, write for a pipeline).
fn located(st: &Core, l: &Located, tokens: &ChunkTokens, modes: Modes) -> pb::LocatedChunk {
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
        token: tokens.sign(l.handle.0, l.version, modes, wall_ms()).into(),
    }
}

/// The status of the path a chmod or chown changed, and its audit `perm` field.
fn attributes(
    st: &Core,
    reply: Reply,
    perm: &mut Option<String>,
) -> Result<Option<pb::FileStatus>, Status> {
    match reply {
        Reply::Attributes(path) => {
            *perm = perm_of(st, &path);
            let id = st.ns.lookup(&path)?;
            Ok(Some(file_status(&st.ns, &path, id)))
        }
        other => Err(unexpected(&other)),
    }
}

/// A pipeline answer (`AddChunk`, `UpdatePipeline`) as the wire has it: the chunk with
/// a write token for its version.
fn chunk_reply(
    st: &Core,
    reply: Reply,
    tokens: &ChunkTokens,
) -> Result<Option<pb::LocatedChunk>, Status> {
    match reply {
        Reply::Chunk(l) => Ok(Some(located(st, &l, tokens, Modes::WRITE))),
        other => Err(unexpected(&other)),
    }
}

#[tonic::async_trait]
impl ClientProtocol for ClientProtocolService {
    async fn mkdir(
        &self,
        req: Request<pb::MkdirRequest>,
    ) -> Result<Response<pb::MkdirResponse>, Status> {
        let caller = self.edge.caller(&req)?;
        let ip = req.remote_addr().map(|a| a.ip());
        let r = req.into_inner();
        let p = path(&r.path)?;
        // Ignored (the caller owns what it creates), but still bounded.
        config::check_principal("owner", &r.owner)?;
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let m = Mutation::Mkdir { path: p.clone(), parents: r.parents, umask: umask(r.umask)? };
        let mut perm = None;
        let res = mutate(&self.driver, call, caller.clone(), m, |st, _| {
            perm = perm_of(st, &p);
            Ok(pb::MkdirResponse {})
        })
        .await;
        let audited = Audited { caller: &caller, ip, cmd: "mkdirs", src: &r.path, dst: None };
        self.edge.audit(&audited, &res, perm.as_deref());
        Ok(Response::new(res?))
    }

    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        let caller = self.edge.caller(&req)?;
        let ip = req.remote_addr().map(|a| a.ip());
        let r = req.into_inner();
        let p = path(&r.path)?;
        if r.client_name.is_empty() {
            return Err(Status::invalid_argument("create: client_name is required"));
        }
        config::check_principal("owner", &r.owner)?;
        config::check_principal("client name", &r.client_name)?;
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let m = Mutation::Create {
            path: p.clone(),
            replication: r.replication,
            chunk_size: r.chunk_size,
            overwrite: r.overwrite,
            create_parents: r.create_parents,
            umask: umask(r.umask)?,
            client: r.client_name,
        };
        let mut perm = None;
        let res = mutate(&self.driver, call, caller.clone(), m, |st, reply| match reply {
            Reply::Created(id) => {
                perm = perm_of(st, &p);
                Ok(pb::CreateResponse { status: Some(file_status(&st.ns, &p, id)) })
            }
            other => Err(unexpected(&other)),
        })
        .await;
        let audited = Audited { caller: &caller, ip, cmd: "create", src: &r.path, dst: None };
        self.edge.audit(&audited, &res, perm.as_deref());
        Ok(Response::new(res?))
    }

    async fn add_chunk(
        &self,
        req: Request<pb::AddChunkRequest>,
    ) -> Result<Response<pb::AddChunkResponse>, Status> {
        let caller = self.edge.caller(&req)?;
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
        let tokens = self.driver.tokens();
        let resp = mutate(&self.driver, call, caller, m, |st, reply| {
            Ok(pb::AddChunkResponse { chunk: chunk_reply(st, reply, &tokens)? })
        })
        .await?;
        Ok(Response::new(resp))
    }

    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let caller = self.edge.caller(&req)?;
        let r = req.into_inner();
        let m = Mutation::Complete {
            path: path(&r.path)?,
            client: r.client_name,
            last: handle_len(r.last_handle, r.last_length),
        };
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let resp =
            mutate(&self.driver, call, caller, m, |_, _| Ok(pb::CompleteResponse {})).await?;
        Ok(Response::new(resp))
    }

    async fn get_file_info(
        &self,
        req: Request<pb::GetFileInfoRequest>,
    ) -> Result<Response<pb::GetFileInfoResponse>, Status> {
        let caller = self.edge.caller(&req)?;
        self.driver.check_read(super::stale_ok(&req))?;
        let ip = req.remote_addr().map(|a| a.ip());
        let p = path(&req.get_ref().path)?;
        let res = (|| {
            let m = self.driver.lock()?;
            m.core.authorize_read(&caller, &p, Read::Stat)?;
            let id = m.core.ns.lookup(&p)?;
            Ok(pb::GetFileInfoResponse { status: Some(file_status(&m.core.ns, &p, id)) })
        })();
        let src = p.as_str();
        self.edge.audit(
            &Audited { caller: &caller, ip, cmd: "getfileinfo", src, dst: None },
            &res,
            None,
        );
        Ok(Response::new(res?))
    }

    async fn list_dir(
        &self,
        req: Request<pb::ListDirRequest>,
    ) -> Result<Response<pb::ListDirResponse>, Status> {
        let caller = self.edge.caller(&req)?;
        self.driver.check_read(super::stale_ok(&req))?;
        let ip = req.remote_addr().map(|a| a.ip());
        let p = path(&req.get_ref().path)?;
        let start_after = req.get_ref().start_after.as_str();
        let res = (|| {
            if start_after.len() > MAX_COMPONENT_LEN {
                return Err(crate::Error::InvalidArgument(format!(
                    "listing cursor is {} bytes long, over the name limit of {MAX_COMPONENT_LEN}",
                    start_after.len()
                ))
                .into());
            }
            let m = self.driver.lock()?;
            // Every page is checked: access may have changed since the first.
            m.core.authorize_read(&caller, &p, Read::List)?;
            let ns = &m.core.ns;
            let page = ns.list_page(&p, start_after, m.core.config.ls_limit)?;
            let entries = page.entries.iter().map(|(cp, id)| file_status(ns, cp, *id)).collect();
            Ok(pb::ListDirResponse { entries, remaining: page.remaining })
        })();
        // One line per listing, as before pages: the first page is the listing (as the
        // first range is the open); a refused page is always written.
        if start_after.is_empty() || res.is_err() {
            let src = p.as_str();
            self.edge.audit(
                &Audited { caller: &caller, ip, cmd: "listStatus", src, dst: None },
                &res,
                None,
            );
        }
        Ok(Response::new(res?))
    }

    async fn get_chunk_locations(
        &self,
        req: Request<pb::GetChunkLocationsRequest>,
    ) -> Result<Response<pb::GetChunkLocationsResponse>, Status> {
        let caller = self.edge.caller(&req)?;
        self.driver.check_read(super::stale_ok(&req))?;
        let ip = req.remote_addr().map(|a| a.ip());
        let host = client_host(&req, &req.get_ref().client_host);
        let r = req.into_inner();
        let p = path(&r.path)?;
        let res = (|| {
            let mut m = self.driver.lock()?;
            m.core.authorize_read(&caller, &p, Read::Open)?;
            let now = self.driver.now().mono;
            let (file_length, chunks, under_construction) =
                m.core.locations(&p, r.offset, r.length, &host, now)?;
            let tokens = self.driver.tokens();
            let chunks = chunks.iter().map(|l| located(&m.core, l, &tokens, Modes::READ)).collect();
            Ok(pb::GetChunkLocationsResponse { file_length, chunks, under_construction })
        })();
        // A reader asks for locations range by range: the first one is the open.
        if r.offset == 0 {
            let src = p.as_str();
            self.edge.audit(
                &Audited { caller: &caller, ip, cmd: "open", src, dst: None },
                &res,
                None,
            );
        }
        Ok(Response::new(res?))
    }

    async fn rename(
        &self,
        req: Request<pb::RenameRequest>,
    ) -> Result<Response<pb::RenameResponse>, Status> {
        let caller = self.edge.caller(&req)?;
        let ip = req.remote_addr().map(|a| a.ip());
        let r = req.into_inner();
        let m = Mutation::Rename { src: path(&r.src)?, dst: path(&r.dst)? };
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let mut perm = None;
        let res = mutate(&self.driver, call, caller.clone(), m, |st, reply| match reply {
            Reply::Renamed(to) => {
                perm = perm_of(st, &to);
                Ok(pb::RenameResponse { new_path: to.to_string() })
            }
            other => Err(unexpected(&other)),
        })
        .await;
        let audited =
            Audited { caller: &caller, ip, cmd: "rename", src: &r.src, dst: Some(&r.dst) };
        self.edge.audit(&audited, &res, perm.as_deref());
        Ok(Response::new(res?))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let caller = self.edge.caller(&req)?;
        let ip = req.remote_addr().map(|a| a.ip());
        let r = req.into_inner();
        let m = Mutation::Delete { path: path(&r.path)?, recursive: r.recursive };
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let res =
            mutate(&self.driver, call, caller.clone(), m, |_, _| Ok(pb::DeleteResponse {})).await;
        let audited = Audited { caller: &caller, ip, cmd: "delete", src: &r.path, dst: None };
        self.edge.audit(&audited, &res, None);
        Ok(Response::new(res?))
    }

    async fn set_replication(
        &self,
        req: Request<pb::SetReplicationRequest>,
    ) -> Result<Response<pb::SetReplicationResponse>, Status> {
        let caller = self.edge.caller(&req)?;
        let ip = req.remote_addr().map(|a| a.ip());
        let r = req.into_inner();
        let m = Mutation::SetReplication { path: path(&r.path)?, replication: r.replication };
        // Idempotent: no retry-cache entry.
        let res = mutate(&self.driver, None, caller.clone(), m, |_, reply| match reply {
            Reply::Files(files) => Ok(pb::SetReplicationResponse { files }),
            other => Err(unexpected(&other)),
        })
        .await;
        let audited =
            Audited { caller: &caller, ip, cmd: "setReplication", src: &r.path, dst: None };
        self.edge.audit(&audited, &res, None);
        Ok(Response::new(res?))
    }

    async fn set_permission(
        &self,
        req: Request<pb::SetPermissionRequest>,
    ) -> Result<Response<pb::SetPermissionResponse>, Status> {
        let caller = self.edge.caller(&req)?;
        let ip = req.remote_addr().map(|a| a.ip());
        let r = req.into_inner();
        let permission = u16::try_from(r.permission).unwrap_or(u16::MAX);
        let m = Mutation::SetPermission { path: path(&r.path)?, permission };
        // Idempotent: no retry-cache entry.
        let mut perm = None;
        let res = mutate(&self.driver, None, caller.clone(), m, |st, reply| {
            attributes(st, reply, &mut perm).map(|status| pb::SetPermissionResponse { status })
        })
        .await;
        let audited =
            Audited { caller: &caller, ip, cmd: "setPermission", src: &r.path, dst: None };
        self.edge.audit(&audited, &res, perm.as_deref());
        Ok(Response::new(res?))
    }

    async fn set_owner(
        &self,
        req: Request<pb::SetOwnerRequest>,
    ) -> Result<Response<pb::SetOwnerResponse>, Status> {
        let caller = self.edge.caller(&req)?;
        let ip = req.remote_addr().map(|a| a.ip());
        let r = req.into_inner();
        if r.owner.is_none() && r.group.is_none() {
            return Err(Status::invalid_argument("set owner: neither an owner nor a group given"));
        }
        let m = Mutation::SetOwner { path: path(&r.path)?, owner: r.owner, group: r.group };
        // Idempotent: no retry-cache entry.
        let mut perm = None;
        let res = mutate(&self.driver, None, caller.clone(), m, |st, reply| {
            attributes(st, reply, &mut perm).map(|status| pb::SetOwnerResponse { status })
        })
        .await;
        let audited = Audited { caller: &caller, ip, cmd: "setOwner", src: &r.path, dst: None };
        self.edge.audit(&audited, &res, perm.as_deref());
        Ok(Response::new(res?))
    }

    async fn get_content_summary(
        &self,
        req: Request<pb::GetContentSummaryRequest>,
    ) -> Result<Response<pb::GetContentSummaryResponse>, Status> {
        let caller = self.edge.caller(&req)?;
        self.driver.check_read(super::stale_ok(&req))?;
        let ip = req.remote_addr().map(|a| a.ip());
        let p = path(&req.get_ref().path)?;
        let res = (|| {
            let m = self.driver.lock()?;
            m.core.authorize_read(&caller, &p, Read::Summary)?;
            let ns = &m.core.ns;
            let (file_count, directory_count) = ns.count_under(&p)?;
            let (mut length, mut space_consumed) = (0u64, 0u64);
            for (_, id) in ns.files_under(&p)? {
                if let Some(f) = ns.file(id) {
                    length += f.length;
                    space_consumed += f.length * u64::from(f.replication);
                }
            }
            Ok(pb::GetContentSummaryResponse {
                length,
                file_count,
                directory_count,
                space_consumed,
            })
        })();
        let src = p.as_str();
        let audited = Audited { caller: &caller, ip, cmd: "contentSummary", src, dst: None };
        self.edge.audit(&audited, &res, None);
        Ok(Response::new(res?))
    }

    async fn report_bad_replica(
        &self,
        req: Request<pb::ReportBadReplicaRequest>,
    ) -> Result<Response<pb::ReportBadReplicaResponse>, Status> {
        self.edge.caller(&req)?;
        self.driver.check_leader()?;
        let r = req.into_inner();
        let cmd = Command::ReportBadReplica {
            handle: ChunkHandle(r.handle),
            server_id: r.chunkserver_id,
            reason: r.reason,
        };
        command(&self.driver, cmd, |_, _| Ok(()))?;
        Ok(Response::new(pb::ReportBadReplicaResponse {}))
    }

    async fn update_pipeline(
        &self,
        req: Request<pb::UpdatePipelineRequest>,
    ) -> Result<Response<pb::UpdatePipelineResponse>, Status> {
        let caller = self.edge.caller(&req)?;
        let r = req.into_inner();
        let m = Mutation::UpdatePipeline {
            path: path(&r.path)?,
            client: r.client_name,
            handle: ChunkHandle(r.handle),
            survivors: r.survivors,
        };
        let call = CallKey::from_request(&r.client_id, r.call_id);
        let tokens = self.driver.tokens();
        let resp = mutate(&self.driver, call, caller, m, |st, reply| {
            Ok(pb::UpdatePipelineResponse { chunk: chunk_reply(st, reply, &tokens)? })
        })
        .await?;
        Ok(Response::new(resp))
    }

    async fn renew_token(
        &self,
        req: Request<pb::RenewTokenRequest>,
    ) -> Result<Response<pb::TokenResponse>, Status> {
        let caller = self.edge.caller(&req)?;
        Ok(Response::new(self.edge.renew_token(&caller, &req.into_inner().token)?))
    }

    async fn renew_lease(
        &self,
        req: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::RenewLeaseResponse>, Status> {
        self.edge.caller(&req)?;
        self.driver.check_leader()?;
        let r = req.into_inner();
        if r.client_name.is_empty() {
            return Err(Status::invalid_argument("renew lease: client_name is required"));
        }
        config::check_principal("client name", &r.client_name)?;
        let renew_interval_ms =
            command(&self.driver, Command::RenewLease { client: r.client_name }, |st, _| {
                Ok(st.leases.renew_interval().as_millis() as u64)
            })?;
        Ok(Response::new(pb::RenewLeaseResponse { renew_interval_ms }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use std::sync::Arc;

    use super::*;
    use crate::audit::AuditLog;
    use crate::cluster::{Identity, Load};
    use crate::config::Config;
    use crate::identity::{Identities, UnixGroups};
    use crate::oplog::LogThread;
    use crate::recovery::recover;

    /// A request from the superuser (the OS user, as the master's default).
    fn as_su<T>(msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        let user = security::os_user().parse().expect("an ASCII user name");
        req.metadata_mut().insert(security::USER_HEADER, user);
        req
    }

    fn start(dir: &Path) -> (ClientProtocolService, LogThread) {
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
        let ids = Identities::new(security::os_user(), "supergroup", Box::new(UnixGroups));
        let edge = Edge::new(Arc::new(ids), AuditLog::disabled(), None);
        (ClientProtocolService::new(driver, edge), r.log)
    }

    fn create(path: &str, call_id: u64) -> Request<pb::CreateRequest> {
        as_su(pb::CreateRequest {
            path: path.into(),
            client_name: "w".into(),
            owner: "u".into(),
            client_id: "client-a".into(),
            call_id,
            ..pb::CreateRequest::default()
        })
    }

    fn rename(src: &str, dst: &str, call_id: u64) -> Request<pb::RenameRequest> {
        as_su(pb::RenameRequest {
            src: src.into(),
            dst: dst.into(),
            client_id: "client-a".into(),
            call_id,
        })
    }

    fn last_txid(svc: &ClientProtocolService) -> u64 {
        svc.driver.lock().expect("lock").journal.last_txid()
    }

    #[tokio::test]
    async fn names_a_request_carries_are_bounded_and_free_of_control_characters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (svc, log) = start(dir.path());
        let huge = "u".repeat(1 << 20);
        let mut req = create("/f", 1).into_inner();
        req.owner = huge.clone();
        let Err(err) = svc.create(as_su(req)).await else {
            panic!("a megabyte owner was accepted");
        };
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("over the limit"), "{}", err.message());
        let mut req = create("/f", 2).into_inner();
        req.client_name = "w\nINFO forged line".into();
        let err = svc.create(as_su(req)).await.expect_err("a newline in a name");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let mkdir = pb::MkdirRequest { path: "/d".into(), owner: huge, ..Default::default() };
        assert!(svc.mkdir(as_su(mkdir)).await.is_err());
        let renew = pb::RenewLeaseRequest { client_name: "c\u{7}".into() };
        assert!(svc.renew_lease(as_su(renew)).await.is_err());
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
        svc.mkdir(as_su(pb::MkdirRequest {
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
        svc.mkdir(as_su(pb::MkdirRequest { path: "/c".into(), ..Default::default() }))
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
            as_su(pb::AddChunkRequest {
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
