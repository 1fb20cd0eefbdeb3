//! The chunkserver's conversation with the master (`gfs.v1.ChunkserverProtocol`, the
//! master's service for chunkservers only): register with a full report, heartbeat with
//! space and load, carry out the commands in the replies, and flush incremental
//! reports (finalized, deleted, corrupt) from [`crate::reports`] within ~100 ms.
//!
//! With a replicated master group (`--master a,b,c`) the whole conversation is held with
//! every member, each in a task of its own with its own backoff, report queue and
//! full-report timer, so a member that is down delays nobody and a newly elected leader
//! already knows every replica (as DataNodes report to both NameNodes). Commands are
//! carried out only from the answer of the leader of the newest term seen
//! ([`crate::fence`]); each member's token keys are kept apart ([`crate::access`]). A
//! single master is a group of one.
//!
//! The master being down is normal (it restarts, or starts after us): every call is
//! retried with backoff, waiting is logged once a minute, and the loop only ends on
//! shutdown. A reply asking to re-register (the master forgot us, or had declared us
//! dead) sends a full report again; a full report also goes out every
//! `--full-report-secs`, so anything the master missed (a lost delete, a stale replica)
//! is corrected eventually. `Replicate` commands start background copies
//! ([`crate::replicate`]). The space each heartbeat reports also goes through
//! [`crate::space_watch`], which logs once when the disk can no longer take a chunk of the
//! master's chunk size and once when it can again. Every `Register` and `Heartbeat`
//! answer carries the master's chunk token keys, which replace those this node checks
//! requests with ([`crate::access`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::gfs::chunk_command::Command;
use proto::gfs::chunkserver_protocol_client::ChunkserverProtocolClient;
use proto::gfs::{
    ChunkserverInfo, DeleteReplica, HeartbeatRequest, HeartbeatResponse, RegisterRequest,
    ReportChunksRequest, ReportedChunk,
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use crate::access::Keys;
use crate::error::{Error, Result};
use crate::fence::{Fence, Verdict};
use crate::replicate::Copier;
use crate::reports::ReportQueue;
use crate::space_watch::{SpaceChange, SpaceWatch};
use crate::store::{Deleted, ReplicaInfo, Space, Store};

/// How long to gather events before sending them in one report.
const REPORT_DELAY: Duration = Duration::from_millis(50);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Waiting for the master is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Everything the reporter needs.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// The replica store to report on.
    pub store: Store,
    /// Where the masters' chunk token keys go (every register and heartbeat answer).
    pub keys: Keys,
    /// How the master knows us.
    pub server: ChunkserverInfo,
    /// The master's `host:port`, or each member's of a master group.
    pub masters: Vec<String>,
    /// Heartbeat interval until the master says otherwise.
    pub interval: Duration,
    /// Makes the copies the master asks for.
    pub copier: Copier,
    /// How often a full report is sent.
    pub full_report: Duration,
    /// Its credentials on every call (a service token in token mode).
    pub attach: security::Attach,
    /// The newest master term seen, which decides whose commands are carried out
    /// (shared with the service, which fences lease-recovery orders with it).
    pub fence: Fence,
}

/// The master's chunkserver service, every call carrying our credentials.
type Master = ChunkserverProtocolClient<InterceptedService<Channel, security::Attach>>;

/// The conversation with one master (one member of a group).
struct Link {
    /// Its `host:port`.
    master: String,
    client: Master,
    /// The replica events not yet reported to it.
    queue: Arc<ReportQueue>,
    /// The disk's state, logged once per change whichever member's turn it is.
    space: Arc<Mutex<SpaceWatch>>,
    log: QuietLog,
}

/// Logs a repeated failure at most once per [`LOG_EVERY`].
struct QuietLog {
    last: Option<Instant>,
}

impl QuietLog {
    fn failed(&mut self, what: &str, master: &str, status: &tonic::Status) {
        if self.last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            warn!(master, code = ?status.code(), cause = status.message(), "{what} failed; retrying");
            self.last = Some(Instant::now());
        } else {
            debug!(master, cause = status.message(), "{what} failed");
        }
    }
}

/// Logs a full disk when free space crosses below the reserve and again when it is back.
fn watch_space(watch: &mut SpaceWatch, space: &Space) {
    let reserve = watch.reserve();
    match watch.observe(space.remaining) {
        Some(SpaceChange::Low) => warn!(
            remaining = space.remaining,
            reserve,
            used = space.used,
            capacity = space.capacity,
            "disk full: less room than one chunk left, so the master places no new chunk here"
        ),
        Some(SpaceChange::Recovered) => {
            info!(remaining = space.remaining, reserve, "disk has room for a new chunk again")
        }
        None => {}
    }
}

fn to_proto(r: &ReplicaInfo) -> ReportedChunk {
    ReportedChunk { handle: r.handle, version: r.version, length: r.length, finalized: r.finalized }
}

impl Reporter {
    /// Runs until `shutdown` turns true: the conversation with every master at once.
    ///
    /// # Errors
    /// [`Error::Config`] if a master address is not a valid URI.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<()> {
        let space = Arc::new(Mutex::new(SpaceWatch::default()));
        let mut links = Vec::with_capacity(self.masters.len());
        for master in &self.masters {
            let channel = security::tls::endpoint(master)
                .map_err(|e| Error::Config(format!("master address {master}: {e}")))?
                .timeout(Duration::from_secs(30))
                .connect_lazy();
            links.push(Link {
                master: master.clone(),
                client: ChunkserverProtocolClient::with_interceptor(channel, self.attach.clone()),
                queue: self.store.reports().subscribe(),
                space: Arc::clone(&space),
                log: QuietLog { last: None },
            });
        }
        let this = Arc::new(self);
        let mut conversations = JoinSet::new();
        for link in links {
            conversations.spawn(Arc::clone(&this).converse(link, shutdown.clone()));
        }
        while let Some(done) = conversations.join_next().await {
            if let Err(e) = done {
                warn!(cause = %e, "a master conversation panicked");
            }
        }
        Ok(())
    }

    /// The conversation with one master until `shutdown` turns true.
    async fn converse(self: Arc<Self>, mut link: Link, mut shutdown: watch::Receiver<bool>) {
        'register: loop {
            let Some(interval) = self.register(&mut link, &mut shutdown).await else {
                return;
            };
            let mut next_beat = tokio::time::Instant::now() + interval;
            let full_report_due = tokio::time::Instant::now() + self.full_report;
            loop {
                if tokio::time::Instant::now() >= full_report_due {
                    debug!(master = %link.master, "periodic full report");
                    continue 'register;
                }
                tokio::select! {
                    _ = crate::stopped(&mut shutdown) => return,
                    _ = tokio::time::sleep_until(next_beat) => {
                        next_beat = tokio::time::Instant::now() + interval;
                        match self.heartbeat(&mut link).await {
                            Ok(reply) => {
                                link.log.last = None;
                                if self.execute(&link, reply).await {
                                    continue 'register;
                                }
                                // Events whose report failed earlier go out now.
                                match self.flush(&mut link).await {
                                    Ok(true) => continue 'register,
                                    Ok(false) => {}
                                    Err(status) => link.log.failed("report", &link.master, &status),
                                }
                            }
                            Err(status) => link.log.failed("heartbeat", &link.master, &status),
                        }
                    }
                    _ = link.queue.notified() => {
                        // Let a burst (a pipeline finalizing, a batch of deletes) gather.
                        tokio::time::sleep(REPORT_DELAY).await;
                        match self.flush(&mut link).await {
                            Ok(true) => continue 'register,
                            Ok(false) => {}
                            Err(status) => {
                                link.log.failed("report", &link.master, &status);
                                // Retry with the next heartbeat's wake-up or new events.
                            }
                        }
                    }
                }
            }
        }
    }

    /// Registers with a full report, retrying until the master answers; `None` on
    /// shutdown. Returns the heartbeat interval to use.
    async fn register(
        &self,
        link: &mut Link,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Duration> {
        let mut backoff = MIN_BACKOFF;
        loop {
            let store = self.store.clone();
            let chunks: Vec<ReportedChunk> = store.list().iter().map(to_proto).collect();
            let space = store.space();
            let req = RegisterRequest {
                server: Some(self.server.clone()),
                capacity: space.capacity,
                used: space.used,
                remaining: space.remaining,
                chunks,
                id_secret: store.id_secret().to_vec().into(),
            };
            let count = req.chunks.len();
            match link.client.register(req).await {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    self.keys.replace(&link.master, &reply.token_keys);
                    self.fence.observe(reply.term);
                    let ms = reply.heartbeat_interval_ms;
                    info!(master = %link.master, chunks = count, leader = reply.leader, term = reply.term, "registered with the master");
                    {
                        let mut space_watch = link.space.lock().unwrap_or_else(|p| p.into_inner());
                        if reply.chunk_size > 0 {
                            space_watch.set_reserve(reply.chunk_size);
                        }
                        watch_space(&mut space_watch, &space);
                    }
                    // The full report supersedes queued `received` events, but corrupt
                    // replicas are not in it: report them (again) now, to this master.
                    for h in store.corrupt() {
                        link.queue.corrupt(h);
                    }
                    return Some(if ms > 0 { Duration::from_millis(ms) } else { self.interval });
                }
                Err(status) => link.log.failed("register", &link.master, &status),
            }
            tokio::select! {
                _ = crate::stopped(shutdown) => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn heartbeat(
        &self,
        link: &mut Link,
    ) -> std::result::Result<HeartbeatResponse, tonic::Status> {
        let space = self.store.space();
        watch_space(&mut link.space.lock().unwrap_or_else(|p| p.into_inner()), &space);
        let req = HeartbeatRequest {
            id: self.server.id.clone(),
            capacity: space.capacity,
            used: space.used,
            remaining: space.remaining,
            active_writes: self.store.active_writes(),
            chunk_count: self.store.chunk_count(),
        };
        let reply = link.client.heartbeat(req).await?.into_inner();
        if !reply.reregister {
            self.keys.replace(&link.master, &reply.token_keys);
        }
        Ok(reply)
    }

    /// Carries out a heartbeat reply's commands if they come from the leader of the
    /// newest term seen ([`Fence::admit`]); true if the master wants a re-register.
    ///
    /// Deletes run to completion before any copy starts: a copy the master sent to
    /// replace a replica it also told this server to delete must land after the delete.
    async fn execute(&self, link: &Link, reply: HeartbeatResponse) -> bool {
        match self.fence.admit(reply.leader, reply.term) {
            Verdict::Admitted => {}
            _ if reply.commands.is_empty() => return reply.reregister,
            Verdict::NotLeader => {
                debug!(master = %link.master, term = reply.term, commands = reply.commands.len(), "ignoring commands from a master that does not lead");
                return reply.reregister;
            }
            Verdict::Stale { newest } => {
                debug!(master = %link.master, term = reply.term, newest, commands = reply.commands.len(), "ignoring commands from a deposed leader");
                return reply.reregister;
            }
        }
        let mut deletes: Vec<DeleteReplica> = Vec::new();
        let mut copies = Vec::new();
        for c in reply.commands {
            match c.command {
                Some(Command::Delete(d)) => deletes.extend(d.replicas),
                Some(Command::Replicate(r)) => copies.push(r),
                None => {}
            }
        }
        if !deletes.is_empty() {
            let store = self.store.clone();
            let deleted = tokio::task::spawn_blocking(move || {
                for d in deletes {
                    let h = d.handle;
                    match store.delete(h, d.version, d.rbw_only) {
                        Ok(Deleted::Kept(info)) => {
                            info!(chunk = %format!("{h:016x}"), version = info.version, upto = d.version, "kept a replica newer than the master's delete");
                            // The master decided on old news: tell it what is here (a
                            // good finalized replica; `get` leaves out a corrupt one).
                            if let Some(good) = store.get(h).filter(|r| r.finalized) {
                                store.reports().received(good);
                            }
                        }
                        Ok(outcome) => {
                            debug!(chunk = %format!("{h:016x}"), ?outcome, "deleted replica")
                        }
                        Err(e) => warn!(cause = %e, "failed to delete replica"),
                    }
                }
            })
            .await;
            if let Err(e) = deleted {
                warn!(cause = %e, "delete task failed");
            }
        }
        for r in copies {
            self.copier.spawn(r);
        }
        reply.reregister
    }

    /// Sends queued events; true if the master wants a re-register. Failed events are
    /// queued again.
    async fn flush(&self, link: &mut Link) -> std::result::Result<bool, tonic::Status> {
        let pending = link.queue.drain();
        if pending.is_empty() {
            return Ok(false);
        }
        let req = ReportChunksRequest {
            id: self.server.id.clone(),
            received: pending.received.iter().map(to_proto).collect(),
            deleted: pending.deleted.clone(),
            corrupt: pending.corrupt.clone(),
        };
        match link.client.report_chunks(req).await {
            Ok(reply) => Ok(reply.into_inner().reregister),
            Err(status) => {
                link.queue.requeue(pending);
                Err(status)
            }
        }
    }
}
