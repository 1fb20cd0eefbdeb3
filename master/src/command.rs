//! The core's one entry point for change: [`Core::apply`] takes a [`Command`] and the
//! time ([`Now`]) and returns an [`Outcome`]: the answer, the log records that must be
//! durable before the answer is given, and the lease recoveries to run against
//! chunkservers.
//!
//! A namespace change is made in two halves. The first decides: it checks the request,
//! resolves defaults, allocates the chunk handle and picks replicas, and writes all of it
//! into an [`Op`], the record that will be logged. The second, [`Core::apply_op`],
//! changes the state from the `Op` alone. A live call runs both halves; a replayed record
//! (at start-up, or from a replicated log) runs only the second, through the same
//! function, so replay rebuilds exactly the durable state the live call built. What a
//! live call adds beyond that (expected replicas, lease renewals, space reserved on the
//! chosen servers) is soft state that chunkserver reports and clients rebuild.

use std::sync::Arc;
use std::time::Instant;

use proto::path::DfsPath;
use smallvec::{SmallVec, smallvec};
use tracing::{info, warn};

pub use crate::clock::Now;
use crate::cluster::{AdminState, Chunkserver, Identity, Load};
use crate::config;
use crate::core::{Core, HeartbeatReply, Located, ReportedReplica};
use crate::error::{Error, Result};
use crate::ids::{ChunkHandle, InodeId, ServerIdx};
use crate::lease_recovery::RecoveryPlan;
use crate::namespace::CreateArgs;
use crate::oplog::{Op, Record};
use crate::permission::{self, Access, Caller, Want};
use crate::placement::{self, Candidate};
use crate::retry_cache::{Cached, Reply as CachedReply};

/// A namespace change a client asks for. Each becomes one logged [`Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Create a directory.
    Mkdir {
        /// The directory.
        path: DfsPath,
        /// Create missing parents (`mkdir -p`).
        parents: bool,
        /// The caller's umask (the caller owns what it creates).
        umask: u16,
    },
    /// Create a file open for writing.
    Create {
        /// The file.
        path: DfsPath,
        /// Replication factor (0 = the cluster's default).
        replication: u32,
        /// Chunk size (0 = the cluster's default).
        chunk_size: u64,
        /// Replace an existing file.
        overwrite: bool,
        /// Create missing parents.
        create_parents: bool,
        /// The caller's umask (the caller owns what it creates).
        umask: u16,
        /// Writer holding it open.
        client: String,
    },
    /// Finish the previous chunk (if any) and allocate the next one.
    AddChunk {
        /// The file.
        path: DfsPath,
        /// Its writer.
        client: String,
        /// The previous chunk and its final length.
        previous: Option<(ChunkHandle, u64)>,
        /// The writer's host, for placement.
        client_host: String,
        /// Chunkserver ids or addresses the writer could not use.
        excluded: Vec<String>,
    },
    /// Finish the last chunk and close the file.
    Complete {
        /// The file.
        path: DfsPath,
        /// Its writer.
        client: String,
        /// The last chunk and its final length.
        last: Option<(ChunkHandle, u64)>,
    },
    /// Rename a file or directory.
    Rename {
        /// Source.
        src: DfsPath,
        /// Destination.
        dst: DfsPath,
    },
    /// Delete a path, its chunks queued for deletion.
    Delete {
        /// The path.
        path: DfsPath,
        /// Also a non-empty directory.
        recursive: bool,
    },
    /// Set the replication factor of a file or of every file below a directory.
    SetReplication {
        /// File or directory.
        path: DfsPath,
        /// New factor.
        replication: u32,
    },
    /// chmod.
    SetPermission {
        /// File or directory.
        path: DfsPath,
        /// New bits, at most [`permission::MAX_MODE`].
        permission: u16,
    },
    /// chown / chgrp.
    SetOwner {
        /// File or directory.
        path: DfsPath,
        /// New owner (`None`: unchanged).
        owner: Option<String>,
        /// New group (`None`: unchanged).
        group: Option<String>,
    },
    /// Pipeline recovery: the chunk being written gets a new version on `survivors`.
    UpdatePipeline {
        /// The file.
        path: DfsPath,
        /// Its writer.
        client: String,
        /// The chunk.
        handle: ChunkHandle,
        /// Surviving chunkserver ids, pipeline order.
        survivors: Vec<String>,
    },
}

/// A read query a caller makes, for [`Core::authorize_read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A path's status: the way to it.
    Stat,
    /// A directory's entries: `r-x` on it (a file: its status).
    List,
    /// A file's chunk locations: `r` on it.
    Open,
    /// Counts and sizes below a path: `r-x` on every directory below.
    Summary,
}

/// A chunkserver as it names itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerName {
    /// Its persistent id.
    pub id: String,
    /// Its data address.
    pub addr: String,
    /// Its rack.
    pub rack: String,
    /// Digest of the secret it keeps beside its id (see [`Cluster::check_claim`]);
    /// `None` from a chunkserver that sends none.
    ///
    /// [`Cluster::check_claim`]: crate::cluster::Cluster::check_claim
    pub proof: Option<[u8; 32]>,
}

/// What an administrator asks of the balancer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BalanceAction {
    /// Report only.
    Query,
    /// Start (or retarget) with this threshold in percentage points.
    Start(f64),
    /// Stop.
    Stop,
}

/// What an administrator asks of safe mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafeModeAction {
    /// Let it end by itself if enough chunks are reported (also what `get` and `wait` do).
    Check,
    /// Enter manually.
    Enter,
    /// Leave manually.
    Leave,
}

/// Everything that changes the core.
#[derive(Debug, Clone)]
pub enum Command {
    /// A client's namespace change (logged), checked against the caller's permissions.
    Mutate {
        /// Who asks, resolved at the edge (shared: the edge caches it per user).
        caller: Arc<Caller>,
        /// The change.
        mutation: Mutation,
    },
    /// A logged record: the same state change its live call made, and the retry-cache
    /// entry of that call.
    Replay(Record),
    /// A chunkserver registers with its full report.
    Register {
        /// Who.
        server: ServerName,
        /// Its load.
        load: Load,
        /// Every replica it holds.
        chunks: Vec<ReportedReplica>,
    },
    /// A chunkserver's heartbeat.
    Heartbeat {
        /// Its id.
        id: String,
        /// Its load.
        load: Load,
    },
    /// A chunkserver's incremental report.
    ReportChunks {
        /// Its id.
        id: String,
        /// Replicas received or finished.
        received: Vec<ReportedReplica>,
        /// Replicas deleted.
        deleted: Vec<ChunkHandle>,
        /// Replicas found corrupt.
        corrupt: Vec<ChunkHandle>,
    },
    /// A reader found a replica corrupt.
    ReportBadReplica {
        /// The chunk.
        handle: ChunkHandle,
        /// The chunkserver holding the bad replica.
        server_id: String,
        /// What the reader saw.
        reason: String,
    },
    /// A writer renews its lease.
    RenewLease {
        /// The writer.
        client: String,
    },
    /// Start or stop decommissioning a chunkserver.
    Decommission {
        /// Its address or id.
        who: String,
        /// Put it back in service instead.
        recommission: bool,
    },
    /// Balancer control.
    Balance(BalanceAction),
    /// Safe mode control.
    SafeMode(SafeModeAction),
    /// The monitor's periodic pass: safe mode, replication, decommissions, liveness,
    /// leases past their hard limit.
    Tick {
        /// Whether the log takes records (lease recovery logs; it waits while it can't).
        log_writable: bool,
    },
    /// The chunkservers' answers to a lease recovery.
    RecoverySettled {
        /// The file.
        file: InodeId,
        /// Its dead writer.
        client: String,
        /// Its last chunk.
        handle: ChunkHandle,
        /// The length every settled replica holds (positive with none settled: retry).
        length: u64,
        /// Replicas finalized at that length.
        settled: Vec<ServerIdx>,
    },
}

/// What a command answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Done; nothing to say.
    Done,
    /// A file was created: its inode (the caller knows the path it asked for).
    Created(InodeId),
    /// A chunk to write: allocated, or resumed after pipeline recovery.
    Chunk(Located),
    /// Where a renamed path ended up.
    Renamed(DfsPath),
    /// How many files a replication change touched.
    Files(u64),
    /// The path whose permission, owner or group changed.
    Attributes(DfsPath),
    /// A chunkserver registered.
    Registered(ServerIdx),
    /// A heartbeat's commands; `None` if the server must register first.
    Heartbeat(Option<HeartbeatReply>),
    /// Whether an incremental report came from a known server (false: register first).
    Known(bool),
    /// A decommission's state.
    Decommission {
        /// The server.
        server: ServerIdx,
        /// Its state now.
        state: AdminState,
        /// Chunks it still has to see copied.
        left: u64,
    },
}

/// The log records of one command: a client mutation makes exactly one, held inline so
/// the hot path allocates nothing for it; ticks and recoveries may make more.
pub type Records = SmallVec<[Op; 1]>;

/// What applying a command produced.
#[derive(Debug)]
pub struct Outcome {
    /// The answer (an error changed nothing).
    pub reply: Result<Reply>,
    /// Records to make durable, in order, before the answer is given.
    pub records: Records,
    /// Lease recoveries to run against chunkservers (after their records are durable).
    pub recoveries: Vec<RecoveryPlan>,
}

impl Outcome {
    fn reply(reply: Result<Reply>) -> Outcome {
        Outcome { reply, records: Records::new(), recoveries: Vec::new() }
    }
}

/// What [`Core::apply_op`] made, for the live call's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Nothing worth reporting.
    Done,
    /// The file created.
    Inode(InodeId),
    /// The offset of the chunk added.
    Offset(u64),
    /// The renamed path.
    Path(DfsPath),
    /// Files touched.
    Count(u64),
}

impl Core {
    /// Applies one command at `now` (see the module documentation).
    pub fn apply(&mut self, cmd: Command, now: Now) -> Outcome {
        match cmd {
            Command::Mutate { caller, mutation } => match self.mutate(&caller, mutation, now) {
                Ok((reply, op)) => {
                    Outcome { reply: Ok(reply), records: smallvec![op], recoveries: Vec::new() }
                }
                Err(e) => Outcome::reply(Err(e)),
            },
            Command::Replay(rec) => Outcome::reply(self.replay(rec).map(|()| Reply::Done)),
            Command::Register { server, load, chunks } => {
                if let Err(e) = self.cluster.check_claim(&server.id, &server.addr, server.proof) {
                    return Outcome::reply(Err(e));
                }
                let who = Identity { id: &server.id, addr: &server.addr, rack: &server.rack };
                let idx = self.register(who, load, &chunks, now.mono, now.wall_ms);
                self.cluster.set_proof(idx, server.proof);
                self.update_safemode(now.mono);
                Outcome::reply(Ok(Reply::Registered(idx)))
            }
            Command::Heartbeat { id, load } => Outcome::reply(Ok(Reply::Heartbeat(
                self.heartbeat(&id, load, now.mono, now.wall_ms),
            ))),
            Command::ReportChunks { id, received, deleted, corrupt } => {
                let known = self.report_chunks(&id, &received, &deleted, &corrupt);
                self.update_safemode(now.mono);
                Outcome::reply(Ok(Reply::Known(known)))
            }
            Command::ReportBadReplica { handle, server_id, reason } => Outcome::reply(
                self.report_bad_replica(handle, &server_id, &reason).map(|()| Reply::Done),
            ),
            Command::RenewLease { client } => {
                self.leases.touch(&client, now.mono);
                Outcome::reply(Ok(Reply::Done))
            }
            Command::Decommission { who, recommission } => Outcome::reply(
                self.decommission(&who, recommission, now.mono)
                    .map(|(server, state, left)| Reply::Decommission { server, state, left }),
            ),
            Command::Balance(action) => Outcome::reply(self.balance(action).map(|()| Reply::Done)),
            Command::SafeMode(action) => {
                match action {
                    SafeModeAction::Check => self.update_safemode(now.mono),
                    SafeModeAction::Enter => {
                        self.safemode.enter();
                        info!("safe mode entered by an administrator");
                    }
                    SafeModeAction::Leave => {
                        self.safemode.leave();
                        info!("safe mode left by an administrator");
                    }
                }
                Outcome::reply(Ok(Reply::Done))
            }
            Command::Tick { log_writable } => {
                self.update_safemode(now.mono);
                self.replication_tick(now.mono);
                self.log_liveness_changes(now.mono);
                let mut records = Records::new();
                let recoveries =
                    if log_writable { self.lease_tick(now, &mut records) } else { Vec::new() };
                Outcome { reply: Ok(Reply::Done), records, recoveries }
            }
            Command::RecoverySettled { file, client, handle, length, settled } => {
                let mut records = Records::new();
                self.finish_recovery(file, &client, handle, length, &settled, now, &mut records);
                Outcome { reply: Ok(Reply::Done), records, recoveries: Vec::new() }
            }
        }
    }

    /// Whether `caller` may make change `m` (HDFS's checks for each call; see
    /// [`crate::permission`]). Part of the decision half: a replayed record is not
    /// checked again.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; lookups fail later, in the change itself.
    fn authorize(&self, caller: &Caller, m: &Mutation) -> Result<()> {
        if caller.superuser {
            return Ok(());
        }
        let ns = &self.ns;
        let write = Some(Access::WRITE);
        match m {
            Mutation::Mkdir { path, .. } => {
                // An existing directory (mkdir -p) only needs the way to it.
                let ancestor = if ns.lookup(path).is_ok() { None } else { write };
                permission::check(ns, caller, path, Want { ancestor, ..Want::default() })
            }
            Mutation::Create { path, overwrite, .. } => {
                let access = if *overwrite { write } else { None };
                permission::check(
                    ns,
                    caller,
                    path,
                    Want { ancestor: write, access, ..Want::default() },
                )
            }
            Mutation::Rename { src, dst } => {
                permission::check(ns, caller, src, Want { parent: write, ..Want::default() })?;
                // Into an existing directory, as the rename itself resolves it.
                let target = match ns.lookup(dst) {
                    Ok(d)
                        if matches!(ns.inode(d).kind, crate::namespace::InodeKind::Dir(_))
                            && ns.lookup(src).ok() != Some(d) =>
                    {
                        dst.join(src.name()).unwrap_or_else(|_| dst.clone())
                    }
                    _ => dst.clone(),
                };
                permission::check(ns, caller, &target, Want { ancestor: write, ..Want::default() })
            }
            Mutation::Delete { path, .. } => permission::check(
                ns,
                caller,
                path,
                Want { parent: write, sub_dirs: Some(Access::ALL), ..Want::default() },
            ),
            Mutation::SetReplication { path, .. } => permission::check(
                ns,
                caller,
                path,
                Want { sub_dirs: Some(Access::READ_EXECUTE), sub_files: write, ..Want::default() },
            ),
            Mutation::SetPermission { path, .. } => {
                permission::check(ns, caller, path, Want { owner: true, ..Want::default() })
            }
            Mutation::SetOwner { path, owner, group } => {
                permission::check_set_owner(ns, caller, path, owner.as_deref(), group.as_deref())
            }
            // The writer's own calls: its lease (client name) is what they are checked by.
            Mutation::AddChunk { .. }
            | Mutation::Complete { .. }
            | Mutation::UpdatePipeline { .. } => Ok(()),
        }
    }

    /// Whether `caller` may make read query `read` of `path` (HDFS's checks).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`].
    pub fn authorize_read(&self, caller: &Caller, path: &DfsPath, read: Read) -> Result<()> {
        if caller.superuser {
            return Ok(());
        }
        let want = match read {
            Read::Stat => Want::default(),
            Read::List => match self.ns.lookup(path).map(|id| &self.ns.inode(id).kind) {
                Ok(crate::namespace::InodeKind::Dir(_)) => {
                    Want { access: Some(Access::READ_EXECUTE), ..Want::default() }
                }
                _ => Want::default(),
            },
            Read::Open => Want { access: Some(Access::READ), ..Want::default() },
            Read::Summary => Want { sub_dirs: Some(Access::READ_EXECUTE), ..Want::default() },
        };
        permission::check(&self.ns, caller, path, want)
    }

    /// The decision half of a namespace change, then [`Core::apply_op`].
    fn mutate(&mut self, caller: &Caller, m: Mutation, now: Now) -> Result<(Reply, Op)> {
        self.writable()?;
        self.authorize(caller, &m)?;
        let t = now.wall_ms;
        match m {
            Mutation::Mkdir { path, parents, umask } => {
                let op = Op::Mkdir { path, parents, owner: caller.user.clone(), umask };
                self.apply_op(&op, t)?;
                Ok((Reply::Done, op))
            }
            Mutation::SetPermission { path, permission } => {
                permission::check_mode(permission)?;
                let op = Op::SetPermission { path: path.clone(), permission };
                self.apply_op(&op, t)?;
                Ok((Reply::Attributes(path), op))
            }
            Mutation::SetOwner { path, owner, group } => {
                for name in owner.iter().chain(group.iter()) {
                    config::check_principal("owner or group", name)?;
                    security::check_name(name)
                        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                }
                let op = Op::SetOwner { path: path.clone(), owner, group };
                self.apply_op(&op, t)?;
                Ok((Reply::Attributes(path), op))
            }
            Mutation::Create {
                path,
                replication,
                chunk_size,
                overwrite,
                create_parents,
                umask,
                client,
            } => {
                // The record holds the defaults as resolved, so a replay under another
                // configuration creates the same file.
                let replication = match replication {
                    0 => self.config.replication,
                    r => config::check_replication(r)?,
                };
                let chunk_size = match chunk_size {
                    0 => self.config.chunk_size,
                    c => {
                        config::check_chunk_size(c)?;
                        c
                    }
                };
                let op = Op::Create {
                    path,
                    replication,
                    chunk_size,
                    overwrite,
                    create_parents,
                    owner: caller.user.clone(),
                    umask,
                    client,
                };
                let Applied::Inode(id) = self.apply_op(&op, t)? else {
                    unreachable!("a create applies to an inode") // faulty code
                };
                // The writer's name is read back from the record rather than cloned
                // before it: one allocation less on every create.
                if let Op::Create { client, .. } = &op {
                    self.leases.touch(client, now.mono);
                }
                Ok((Reply::Created(id), op))
            }
            Mutation::AddChunk { path, client, previous, client_host, excluded } => {
                let (targets, chunk_size) =
                    self.place_chunk(&path, &client, &client_host, &excluded, now.mono)?;
                if self.chunks.is_exhausted() {
                    return Err(Error::HandlesExhausted);
                }
                let handle = ChunkHandle(self.chunks.next_handle());
                let op = Op::AddChunk { path, client, previous, handle };
                let Applied::Offset(offset) = self.apply_op(&op, t)? else {
                    unreachable!("an added chunk has an offset") // faulty code
                };
                // Soft state, rebuilt by reports after a restart: where the chunk is
                // expected, and the space the writes will take there.
                self.chunks.set_pipeline(handle, 1, &targets);
                for &s in &targets {
                    self.cluster.note_write(s, chunk_size);
                }
                let located = Located { handle, version: 1, offset, length: 0, replicas: targets };
                Ok((Reply::Chunk(located), op))
            }
            Mutation::Complete { path, client, last } => {
                let op = Op::Complete { path, client, last };
                self.apply_op(&op, t)?;
                Ok((Reply::Done, op))
            }
            Mutation::Rename { src, dst } => {
                let op = Op::Rename { src, dst };
                let Applied::Path(to) = self.apply_op(&op, t)? else {
                    unreachable!("a rename applies to a path") // faulty code
                };
                Ok((Reply::Renamed(to), op))
            }
            Mutation::Delete { path, recursive } => {
                let op = Op::Delete { path, recursive };
                self.apply_op(&op, t)?;
                Ok((Reply::Done, op))
            }
            Mutation::SetReplication { path, replication } => {
                let replication = config::check_replication(replication)?;
                let op = Op::SetReplication { path, replication };
                let Applied::Count(n) = self.apply_op(&op, t)? else {
                    unreachable!("a replication change counts files") // faulty code
                };
                Ok((Reply::Files(n), op))
            }
            Mutation::UpdatePipeline { path, client, handle, survivors } => {
                let (version, offset, idxs) =
                    self.plan_pipeline(&path, &client, handle, &survivors)?;
                let op = Op::UpdatePipeline {
                    path: path.clone(),
                    client: client.clone(),
                    handle,
                    version,
                };
                self.apply_op(&op, t)?;
                self.chunks.set_pipeline(handle, version, &idxs);
                self.leases.touch(&client, now.mono);
                info!(path = %path, chunk = handle.0, version, survivors = idxs.len(), "pipeline recovered");
                let located = Located { handle, version, offset, length: 0, replicas: idxs };
                Ok((Reply::Chunk(located), op))
            }
        }
    }

    /// Applies a logged change to the durable state: the namespace, chunk versions and
    /// lengths, the handle counter. The only function that makes these changes, live or
    /// replayed; it fails without changing anything.
    ///
    /// # Errors
    /// Whatever the change is refused for; on replay that means log and state disagree.
    pub(crate) fn apply_op(&mut self, op: &Op, time_ms: i64) -> Result<Applied> {
        match op {
            Op::Mkdir { path, parents, owner, umask } => {
                self.ns.mkdir(path, *parents, owner, *umask, time_ms)?;
                Ok(Applied::Done)
            }
            Op::SetPermission { path, permission } => {
                self.ns.set_permission(path, *permission)?;
                Ok(Applied::Done)
            }
            Op::SetOwner { path, owner, group } => {
                self.ns.set_owner(path, owner.as_deref(), group.as_deref())?;
                Ok(Applied::Done)
            }
            Op::Create {
                path,
                replication,
                chunk_size,
                overwrite,
                create_parents,
                owner,
                umask,
                client,
            } => {
                let args = CreateArgs {
                    replication: *replication,
                    chunk_size: *chunk_size,
                    overwrite: *overwrite,
                    create_parents: *create_parents,
                    owner,
                    umask: *umask,
                    client,
                    now_ms: time_ms,
                };
                let (id, released) = self.ns.create(path, &args)?;
                self.release(&released);
                Ok(Applied::Inode(id))
            }
            Op::AddChunk { path, client, previous, handle } => {
                let (file, offset) =
                    self.ns.add_chunk(path, client, *previous, *handle, time_ms)?;
                self.chunks.restore(*handle, file, 1, 0);
                if let Some((prev, len)) = previous {
                    self.chunks.finish(*prev, *len);
                }
                Ok(Applied::Offset(offset))
            }
            Op::Complete { path, client, last } => {
                self.ns.complete(path, client, *last, time_ms)?;
                if let Some((h, len)) = last {
                    self.chunks.finish(*h, *len);
                }
                Ok(Applied::Done)
            }
            Op::Rename { src, dst } => Ok(Applied::Path(self.ns.rename(src, dst, time_ms)?)),
            Op::Delete { path, recursive } => {
                let released = self.ns.delete(path, *recursive, time_ms)?;
                self.release(&released);
                Ok(Applied::Done)
            }
            Op::SetReplication { path, replication } => {
                Ok(Applied::Count(self.ns.set_replication(path, *replication)?.len() as u64))
            }
            Op::UpdatePipeline { path, client, handle, version } => {
                self.writing_chunk(path, client, *handle)?;
                self.chunks.set_version(*handle, *version);
                Ok(Applied::Done)
            }
            Op::AbandonChunk { path, client, handle } => {
                self.ns.abandon_last_chunk(path, client, *handle)?;
                self.drop_chunk(*handle);
                Ok(Applied::Done)
            }
        }
    }

    /// A replayed record: its change, and the answer its call got for a retry.
    fn replay(&mut self, rec: Record) -> Result<()> {
        self.apply_op(&rec.op, rec.time_ms)?;
        // A client retrying a call whose answer the crash swallowed gets that answer.
        if let Some(call) = rec.call {
            let cached = Cached { reply: CachedReply::Ok(call.reply), txid: rec.txid };
            self.retry_cache.insert(call.key, cached, rec.time_ms);
        }
        Ok(())
    }

    /// Replicas for the next chunk of `path`, chosen by the placement policy among live
    /// chunkservers the writer can use; and the file's chunk size.
    ///
    /// # Errors
    /// As [`crate::namespace::Namespace::open_for_write`]; [`Error::NoChunkservers`] when
    /// no chunkserver is live, [`Error::NoSpace`] when none of the live ones has room.
    fn place_chunk(
        &mut self,
        path: &DfsPath,
        client: &str,
        client_host: &str,
        excluded: &[String],
        now: Instant,
    ) -> Result<(Vec<ServerIdx>, u64)> {
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
        Ok((targets, chunk_size))
    }

    fn balance(&mut self, action: BalanceAction) -> Result<()> {
        match action {
            BalanceAction::Query => {}
            BalanceAction::Stop => self.replication.balancer.stop("stopped by an administrator"),
            BalanceAction::Start(threshold_pct) => {
                if !(threshold_pct > 0.0 && threshold_pct <= 100.0) {
                    return Err(Error::InvalidArgument(format!(
                        "balance: threshold {threshold_pct} is outside (0, 100] percentage points"
                    )));
                }
                self.replication.balancer.start(threshold_pct);
                info!(threshold_pct, "balancer started");
            }
        }
        Ok(())
    }
}

/// Arguments of the test shorthand [`Core::create`].
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct CreateRequest<'a> {
    pub replication: u32,
    pub chunk_size: u64,
    pub overwrite: bool,
    pub create_parents: bool,
    pub owner: &'a str,
    pub client: &'a str,
}

/// Test shorthands: the live calls with the signatures the core's unit tests use.
#[cfg(test)]
impl Core {
    fn test_mutate(&mut self, m: Mutation, now: Instant, wall_ms: i64) -> Result<Reply> {
        self.test_mutate_as(Caller::superuser("u"), m, now, wall_ms)
    }

    fn test_mutate_as(
        &mut self,
        caller: Caller,
        m: Mutation,
        now: Instant,
        wall_ms: i64,
    ) -> Result<Reply> {
        let cmd = Command::Mutate { caller: Arc::new(caller), mutation: m };
        self.apply(cmd, Now { mono: now, wall_ms }).reply
    }

    pub(crate) fn create(
        &mut self,
        path: &DfsPath,
        req: &CreateRequest<'_>,
        t: i64,
    ) -> Result<InodeId> {
        let m = Mutation::Create {
            path: path.clone(),
            replication: req.replication,
            chunk_size: req.chunk_size,
            overwrite: req.overwrite,
            create_parents: req.create_parents,
            umask: permission::DEFAULT_UMASK,
            client: req.client.into(),
        };
        match self.test_mutate_as(Caller::superuser(req.owner), m, Instant::now(), t)? {
            Reply::Created(id) => Ok(id),
            other => panic!("create answered {other:?}"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_chunk(
        &mut self,
        path: &DfsPath,
        client: &str,
        previous: Option<(ChunkHandle, u64)>,
        client_host: &str,
        excluded: &[String],
        now: Instant,
        t: i64,
    ) -> Result<Located> {
        let m = Mutation::AddChunk {
            path: path.clone(),
            client: client.into(),
            previous,
            client_host: client_host.into(),
            excluded: excluded.to_vec(),
        };
        match self.test_mutate(m, now, t)? {
            Reply::Chunk(l) => Ok(l),
            other => panic!("add chunk answered {other:?}"),
        }
    }

    pub(crate) fn complete(
        &mut self,
        path: &DfsPath,
        client: &str,
        last: Option<(ChunkHandle, u64)>,
        t: i64,
    ) -> Result<()> {
        let m = Mutation::Complete { path: path.clone(), client: client.into(), last };
        self.test_mutate(m, Instant::now(), t).map(drop)
    }

    pub(crate) fn delete(&mut self, path: &DfsPath, recursive: bool, t: i64) -> Result<()> {
        let m = Mutation::Delete { path: path.clone(), recursive };
        self.test_mutate(m, Instant::now(), t).map(drop)
    }

    pub(crate) fn update_pipeline(
        &mut self,
        path: &DfsPath,
        client: &str,
        handle: ChunkHandle,
        survivors: &[String],
        now: Instant,
    ) -> Result<Located> {
        let m = Mutation::UpdatePipeline {
            path: path.clone(),
            client: client.into(),
            handle,
            survivors: survivors.to_vec(),
        };
        match self.test_mutate(m, now, 0)? {
            Reply::Chunk(l) => Ok(l),
            other => panic!("update pipeline answered {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::config::Config;
    use crate::oplog::Record;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).expect("path")
    }

    /// What a restart must rebuild: the namespace, every chunk's version and length, and
    /// the handle counter.
    fn durable_state(c: &Core) -> (Vec<String>, Vec<(u64, u64, u64)>, u64) {
        let mut chunks: Vec<_> = c.chunks.iter().map(|(h, c)| (h.0, c.version, c.length)).collect();
        chunks.sort_unstable();
        (c.ns.dump(), chunks, c.chunks.next_handle())
    }

    fn core_with_servers(seed: u64, now: Now) -> Core {
        let mut core = Core::seeded(Config { chunk_size: 1 << 20, ..Config::default() }, seed);
        let load = Load { capacity: 1 << 40, remaining: 1 << 40, ..Load::default() };
        for i in 0..4 {
            let server = ServerName {
                id: format!("cs{i}"),
                addr: format!("127.0.0.{}:1", i + 2),
                rack: format!("/rack-{}", i % 2),
                proof: None,
            };
            core.apply(Command::Register { server, load, chunks: vec![] }, now);
        }
        core
    }

    /// A random client call over a small tree, so calls collide (exists, not empty, wrong
    /// chunk, not the writer...) as often as they succeed.
    fn random_mutation(rng: &mut StdRng, open: &[(DfsPath, Option<ChunkHandle>)]) -> Mutation {
        let names = ["/a", "/b", "/a/x", "/a/y", "/b/z", "/a/x/f"];
        let any = |rng: &mut StdRng| p(names[rng.random_range(0..names.len())]);
        let client = |rng: &mut StdRng| ["w1", "w2"][rng.random_range(0..2)].to_owned();
        let umask = |rng: &mut StdRng| [0o022, 0o077, 0o002, 0o000][rng.random_range(0..4)];
        let name = |rng: &mut StdRng| ["alice", "bob", "staff", "u"][rng.random_range(0..4)];
        match rng.random_range(0..11) {
            0 => {
                Mutation::Mkdir { path: any(rng), parents: rng.random_bool(0.5), umask: umask(rng) }
            }
            1 => Mutation::Create {
                path: any(rng),
                replication: rng.random_range(0..4),
                chunk_size: 0,
                overwrite: rng.random_bool(0.3),
                create_parents: rng.random_bool(0.5),
                umask: umask(rng),
                client: client(rng),
            },
            9 => Mutation::SetPermission {
                path: any(rng),
                permission: [0o755, 0o700, 0o1777, 0o644, 0o2000][rng.random_range(0..5)],
            },
            10 => Mutation::SetOwner {
                path: any(rng),
                owner: rng.random_bool(0.5).then(|| name(rng).to_owned()),
                group: rng.random_bool(0.5).then(|| name(rng).to_owned()),
            },
            2 | 3 if !open.is_empty() => {
                let (path, last) = open[rng.random_range(0..open.len())].clone();
                Mutation::AddChunk {
                    path,
                    client: client(rng),
                    previous: last.map(|h| (h, 1 << 20)),
                    client_host: String::new(),
                    excluded: Vec::new(),
                }
            }
            4 if !open.is_empty() => {
                let (path, last) = open[rng.random_range(0..open.len())].clone();
                Mutation::Complete { path, client: client(rng), last: last.map(|h| (h, 77)) }
            }
            5 if !open.is_empty() => {
                let (path, last) = open[rng.random_range(0..open.len())].clone();
                Mutation::UpdatePipeline {
                    path,
                    client: client(rng),
                    handle: last.unwrap_or(ChunkHandle(1)),
                    survivors: vec!["cs1".into(), "cs3".into()],
                }
            }
            6 => Mutation::Rename { src: any(rng), dst: any(rng) },
            7 => Mutation::Delete { path: any(rng), recursive: rng.random_bool(0.5) },
            _ => Mutation::SetReplication { path: any(rng), replication: rng.random_range(1..4) },
        }
    }

    /// Files open for writing and their last chunk, as a writer would know them.
    fn open_files(core: &Core) -> Vec<(DfsPath, Option<ChunkHandle>)> {
        core.ns
            .open_files()
            .into_iter()
            .map(|(id, _)| {
                (core.ns.path_of(id), core.ns.file(id).and_then(|f| f.chunks.last().copied()))
            })
            .collect()
    }

    /// A random caller: the superuser, or alice or bob in a few groups, so calls are
    /// allowed and denied by owners, groups, modes and the sticky bit.
    fn random_caller(rng: &mut StdRng) -> Arc<Caller> {
        Arc::new(match rng.random_range(0..4) {
            0 => Caller::superuser("root"),
            1 => Caller::user("alice", &["staff"]),
            2 => Caller::user("bob", &["bob"]),
            _ => Caller::user("bob", &["staff", "alice"]),
        })
    }

    #[test]
    fn replaying_the_records_rebuilds_exactly_what_the_live_calls_built() {
        let (mut allowed, mut denied) = (0, 0);
        for seed in 0..200 {
            let mut rng = StdRng::seed_from_u64(seed);
            let start = Instant::now();
            let mut live = core_with_servers(seed, Now { mono: start, wall_ms: 1_000 });
            let mut log = Vec::new();
            for step in 0..80 {
                let now =
                    Now { mono: start + Duration::from_millis(step), wall_ms: 1_000 + step as i64 };
                let m = random_mutation(&mut rng, &open_files(&live));
                let caller = random_caller(&mut rng);
                let before = durable_state(&live);
                let out = live
                    .apply(Command::Mutate { caller: caller.clone(), mutation: m.clone() }, now);
                match out.reply {
                    Ok(_) => {
                        allowed += 1;
                        assert_eq!(out.records.len(), 1, "seed {seed}: {m:?}");
                        for op in out.records {
                            log.push(Record {
                                txid: log.len() as u64 + 1,
                                time_ms: now.wall_ms,
                                op,
                                call: None,
                            });
                        }
                    }
                    Err(e) => {
                        if matches!(e, Error::PermissionDenied { .. }) {
                            denied += 1;
                        }
                        assert!(out.records.is_empty(), "seed {seed}: a refusal logged something");
                        assert_eq!(
                            durable_state(&live),
                            before,
                            "seed {seed}: {m:?} refused ({e}) but changed state"
                        );
                    }
                }
            }
            let mut replayed =
                Core::seeded(Config { chunk_size: 1 << 20, ..Config::default() }, seed + 1);
            for rec in log {
                let now = Now { mono: start, wall_ms: rec.time_ms };
                let out = replayed.apply(Command::Replay(rec.clone()), now);
                assert!(
                    out.reply.is_ok(),
                    "seed {seed}: txid {} does not replay: {:?}",
                    rec.txid,
                    out.reply
                );
            }
            assert_eq!(durable_state(&replayed), durable_state(&live), "seed {seed}");
        }
        // The generator exercises both sides of the checks.
        assert!(allowed > 2_000 && denied > 500, "allowed {allowed}, denied {denied}");
    }

    #[test]
    fn a_mutation_in_safe_mode_is_refused_and_logs_nothing() {
        let now = Now { mono: Instant::now(), wall_ms: 5 };
        let mut core = core_with_servers(1, now);
        core.apply(Command::SafeMode(SafeModeAction::Enter), now);
        let mkdir = || Command::Mutate {
            caller: Arc::new(Caller::superuser("u")),
            mutation: Mutation::Mkdir { path: p("/d"), parents: false, umask: 0o022 },
        };
        let out = core.apply(mkdir(), now);
        assert!(matches!(out.reply, Err(Error::SafeMode(_))), "{:?}", out.reply);
        assert!(out.records.is_empty());
        core.apply(Command::SafeMode(SafeModeAction::Leave), now);
        let out = core.apply(mkdir(), now);
        assert!(out.reply.is_ok());
        assert_eq!(
            out.records.as_slice(),
            [Op::Mkdir { path: p("/d"), parents: false, owner: "u".into(), umask: 0o022 }]
        );
    }

    #[test]
    fn the_same_seed_places_chunks_the_same_way() {
        let placements = |seed| {
            let now = Now { mono: Instant::now(), wall_ms: 5 };
            let mut core = core_with_servers(seed, now);
            let mut got = Vec::new();
            for i in 0..20 {
                let path = p(&format!("/f{i}"));
                let create = Mutation::Create {
                    path: path.clone(),
                    replication: 2,
                    chunk_size: 0,
                    overwrite: false,
                    create_parents: false,
                    umask: 0o022,
                    client: "w".into(),
                };
                let su = Arc::new(Caller::superuser("u"));
                let cmd = |mutation| Command::Mutate { caller: su.clone(), mutation };
                core.apply(cmd(create), now).reply.expect("create");
                let add = Mutation::AddChunk {
                    path,
                    client: "w".into(),
                    previous: None,
                    client_host: String::new(),
                    excluded: Vec::new(),
                };
                match core.apply(cmd(add), now).reply {
                    Ok(Reply::Chunk(l)) => got.push(l.replicas),
                    other => panic!("{other:?}"),
                }
            }
            got
        };
        assert_eq!(placements(7), placements(7));
        assert_ne!(placements(7), placements(8), "20 placements over 4 servers differ by seed");
    }
}
