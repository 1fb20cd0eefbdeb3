//! The replicated master: a group of members (3 or 5) over an embedded Raft (openraft),
//! each holding the whole state in memory. The leader decides and the log carries what
//! it decided.
//!
//! - **What is replicated** is the operation log's records ([`crate::oplog::Record`]),
//!   not the commands: a command's outcome depends on soft state no log holds (which
//!   chunkservers are live, where replicas are), so only the leader runs commands, and
//!   followers replay its records through the same [`crate::core::Core::apply`] path a
//!   restarted master replays its log through.
//! - **The leader applies first** ([`Replica::propose`]): a mutation changes the leader's
//!   core under the state lock, as on a single master, and its record goes to Raft in the
//!   same order; the caller is answered once a majority has the record durable. The
//!   leader's core therefore runs ahead of the committed log by the records in flight
//!   (its *speculation*). Committed entries the leader proposed itself are not applied
//!   twice ([`state_machine`]).
//! - **A deposed leader** whose speculative records were never committed (a new leader
//!   overwrote them) holds changes nobody else has: its core is rebuilt from the last
//!   snapshot and the committed log before it applies anything else. Its callers got an
//!   error, never an answer: acknowledgements wait for a majority, which a deposed leader
//!   cannot have.
//! - **Ready to lead** means the member leads and has applied the first entry of its own
//!   term, so its core holds everything committed before; only then does it take
//!   mutations ([`Replica::writable`]).
//! - Snapshots are the existing checkpoints; [`log_store`] keeps the log and vote;
//!   [`network`] carries Raft's messages over gRPC (`gfs.v1.RaftProtocol`).

pub mod log_store;
pub mod network;
pub mod state_machine;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, LogId, Raft, RaftMetrics, ServerState, StoredMembership};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::oplog::{Durable, Record};

openraft::declare_raft_types!(
    /// The master group's Raft types: entries carry [`Proposal`]s; members are named by
    /// number and reached at their `host:port`.
    pub TypeConfig:
        D = Proposal,
        R = (),
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// One log record as the leader proposed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposer's sequence number within its term: which of its speculative records
    /// this is (see [`Speculation`]).
    pub seq: u64,
    /// The record's transaction id.
    pub txid: u64,
    /// The record, encoded as the operation log encodes it.
    pub record: bytes::Bytes,
}

/// How a member is set up: who it is, who its peers are, and its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// This member's id.
    pub id: u64,
    /// Every initial member's id and `host:port` (this one included).
    pub peers: BTreeMap<u64, String>,
    /// A follower that hears no leader for a random time in
    /// `[election_timeout, 1.5 * election_timeout]` stands for election.
    pub election_timeout: Duration,
    /// How often the leader sends heartbeats (and replicates).
    pub heartbeat: Duration,
    /// How long a mutation waits for a majority before the caller gets NO_QUORUM.
    pub quorum_timeout: Duration,
    /// Take a snapshot (a checkpoint) after this many log entries.
    pub snapshot_every: u64,
}

impl GroupConfig {
    /// The group of `peers` (`ID=HOST:PORT,...`) that member `id` belongs to, with the
    /// default timing: an election timeout of 1 s, heartbeats every 150 ms.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a malformed list, a duplicate id, or an `id` not in it.
    pub fn parse(id: u64, peers: &str) -> Result<GroupConfig> {
        let bad = |m: String| Error::InvalidArgument(format!("--peers: {m}"));
        let mut map = BTreeMap::new();
        for part in peers.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (n, addr) =
                part.split_once('=').ok_or_else(|| bad(format!("{part:?} is not ID=HOST:PORT")))?;
            let n: u64 = n
                .trim()
                .parse()
                .map_err(|_| bad(format!("{n:?} is not a member id (a number)")))?;
            let addr = addr.trim();
            if n == 0 {
                return Err(bad("member ids start at 1".into()));
            }
            if addr.is_empty() || addr.contains("://") || !addr.contains(':') {
                return Err(bad(format!("member {n}: {addr:?} is not HOST:PORT")));
            }
            if map.insert(n, addr.to_owned()).is_some() {
                return Err(bad(format!("member {n} is listed twice")));
            }
        }
        if !map.contains_key(&id) {
            return Err(bad(format!("this member's --id {id} is not in the list")));
        }
        Ok(GroupConfig {
            id,
            peers: map,
            election_timeout: Duration::from_millis(1000),
            heartbeat: Duration::from_millis(150),
            quorum_timeout: Duration::from_secs(10),
            snapshot_every: 100_000,
        })
    }

    /// openraft's settings for this group.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if openraft refuses the timing.
    pub fn raft_config(&self) -> Result<openraft::Config> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        let election = ms(self.election_timeout);
        openraft::Config {
            cluster_name: "dfs-master".into(),
            election_timeout_min: election,
            election_timeout_max: election + election / 2,
            heartbeat_interval: ms(self.heartbeat),
            install_snapshot_timeout: 10_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: 1000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::InvalidArgument(format!("Raft timing: {e}")))
    }
}

/// The leader's records applied to its core but not yet seen committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Speculation {
    /// The term in which this member leads and proposes (0: it does not).
    pub term: u64,
    /// Last sequence number proposed in that term.
    pub proposed: u64,
    /// Last of them seen committed (applied by the state machine).
    pub committed: u64,
}

impl Speculation {
    /// Whether records applied here may still be missing from the committed log.
    pub fn pending(&self) -> bool {
        self.proposed > self.committed
    }
}

/// A record on its way to Raft, and who waits for its commit.
pub(crate) struct Pending {
    pub(crate) proposal: Proposal,
    done: oneshot::Sender<Result<()>>,
}

/// A member's side of the operation log: where [`crate::oplog::Journal`] sends records in
/// a group, and the state machine's bookkeeping (kept under the state lock with the core,
/// so the two never disagree).
#[derive(Debug)]
pub struct Replica {
    me: u64,
    tx: mpsc::UnboundedSender<Pending>,
    metrics: watch::Receiver<RaftMetrics<u64, BasicNode>>,
    /// Records this member applied ahead of the committed log, as leader.
    pub spec: Speculation,
    /// Last log id applied to the core.
    pub applied: Option<LogId<u64>>,
    /// Transaction id of the last record applied (or proposed, on the leader: the journal
    /// numbers from it).
    pub applied_txid: u64,
    /// Membership as of `applied`.
    pub membership: StoredMembership<u64, BasicNode>,
    /// Sequence numbers of this member's own records seen committed, by term.
    committed: watch::Sender<(u64, u64)>,
    /// A leader serves reads only while a majority acknowledged it within this time
    /// (the election timeout): a deposed leader that was frozen cannot pass it.
    read_lease: Duration,
    /// The term this member leads in, for the orders it signs (0: none).
    term: Arc<AtomicU64>,
    /// How long a call waits for a majority.
    quorum_timeout: Duration,
}

impl Replica {
    fn new(
        me: u64,
        tx: mpsc::UnboundedSender<Pending>,
        metrics: watch::Receiver<RaftMetrics<u64, BasicNode>>,
        read_lease: Duration,
        term: Arc<AtomicU64>,
        quorum_timeout: Duration,
    ) -> Replica {
        Replica {
            quorum_timeout,
            me,
            tx,
            metrics,
            spec: Speculation::default(),
            applied: None,
            applied_txid: 0,
            membership: StoredMembership::default(),
            committed: watch::channel((0, 0)).0,
            read_lease,
            term,
        }
    }

    /// This member's id.
    pub fn id(&self) -> u64 {
        self.me
    }

    /// Reads Raft's state from `metrics` (once Raft runs).
    pub fn set_metrics(&mut self, metrics: watch::Receiver<RaftMetrics<u64, BasicNode>>) {
        self.metrics = metrics;
    }

    /// The latest Raft metrics.
    pub fn metrics(&self) -> RaftMetrics<u64, BasicNode> {
        self.metrics.borrow().clone()
    }

    /// Whether this member leads and has applied everything committed before its term.
    pub fn ready(&self) -> bool {
        let m = self.metrics.borrow();
        m.state == ServerState::Leader
            && m.current_leader == Some(self.me)
            && self.spec.term != 0
            && m.current_term == self.spec.term
    }

    /// The term this member is ready to lead in (0: it is not).
    pub fn leading_term(&self) -> u64 {
        if self.ready() { self.spec.term } else { 0 }
    }

    /// The current leader's `host:port`, if known.
    pub fn leader_addr(&self) -> Option<String> {
        let m = self.metrics.borrow();
        let leader = m.current_leader?;
        m.membership_config.membership().get_node(&leader).map(|n| n.addr.clone())
    }

    fn not_leader(&self, why: &str) -> Error {
        Error::NotLeader { why: format!("master {} {why}", self.me), leader: self.leader_addr() }
    }

    /// Fails unless this member may take a mutation now.
    ///
    /// # Errors
    /// [`Error::NotLeader`] naming the leader.
    pub fn writable(&self) -> Result<()> {
        if self.ready() {
            return Ok(());
        }
        let (leader, term) = {
            let m = self.metrics.borrow();
            (m.current_leader, m.current_term)
        };
        if leader.is_none() {
            return Err(Error::NoQuorum(format!(
                "master {} knows no leader at term {term}: an election is under way, or fewer \
                 than a majority of the master group is reachable",
                self.me
            )));
        }
        let leads = leader == Some(self.me);
        Err(self.not_leader(if leads {
            "was just elected and is catching up; retry"
        } else {
            "does not lead the master group"
        }))
    }

    /// Fails unless this member may answer a read: as the leader while a majority
    /// acknowledged it within the read lease, or any member when `stale_ok`.
    ///
    /// # Errors
    /// [`Error::NotLeader`] naming the leader.
    pub fn readable(&self, stale_ok: bool) -> Result<()> {
        if stale_ok {
            return Ok(());
        }
        self.writable()?;
        let lease = u64::try_from(self.read_lease.as_millis()).unwrap_or(u64::MAX);
        match self.metrics.borrow().millis_since_quorum_ack {
            Some(ms) if ms < lease => Ok(()),
            _ => Err(self.not_leader("has not heard from a majority within its lease")),
        }
    }

    /// Sends `record`, just applied to the core, to the group; resolves once committed.
    pub fn propose(&mut self, record: Record) -> Durable {
        self.spec.proposed += 1;
        let proposal =
            Proposal { seq: self.spec.proposed, txid: record.txid, record: record.encode().into() };
        let (done, rx) = oneshot::channel();
        if self.tx.send(Pending { proposal, done }).is_err() {
            return Durable::ready(Err(Error::NotLeader {
                why: format!("master {} is stopping", self.me),
                leader: None,
            }));
        }
        Durable::group(rx)
    }

    /// Resolves once every record proposed so far is committed (or fails after
    /// `timeout`): how a retried call whose original is in flight waits for it.
    pub fn barrier(&self) -> Durable {
        let timeout = self.quorum_timeout;
        let (term, target) = (self.spec.term, self.spec.proposed);
        if self.spec.committed >= target {
            return Durable::ready(Ok(()));
        }
        let mut seen = self.committed.subscribe();
        let (done, rx) = oneshot::channel();
        tokio::spawn(async move {
            let reached = seen.wait_for(|&(t, s)| t != term || s >= target);
            let r = match tokio::time::timeout(timeout, reached).await {
                Ok(Ok(got)) if got.0 == term => Ok(()),
                Ok(_) => Err(Error::NotLeader {
                    why: "the master lost the lead while the call was in flight".into(),
                    leader: None,
                }),
                Err(_) => Err(Error::NoQuorum(format!(
                    "the call in flight was not committed within {timeout:?}"
                ))),
            };
            let _ = done.send(r);
        });
        Durable::group(rx)
    }

    /// Starts leading in `term`: called when the first entry of this member's own term is
    /// applied. Nothing may be pending then.
    fn lead(&mut self, term: u64) {
        self.spec = Speculation { term, proposed: 0, committed: 0 };
        self.term.store(term, Ordering::Relaxed);
        self.committed.send_replace((term, 0));
    }

    /// Stops speculating (after a rebuild, or on losing the lead).
    fn stop_leading(&mut self) {
        self.spec = Speculation::default();
        self.term.store(0, Ordering::Relaxed);
        self.committed.send_replace((0, 0));
    }

    /// Records that this member's own record `seq` (of its leading term) committed.
    fn committed_own(&mut self, seq: u64) {
        self.spec.committed = seq;
        let term = self.spec.term;
        self.committed.send_replace((term, seq));
    }
}

/// Sends proposals to Raft in the order they were applied, and answers each once
/// committed, or with why not.
async fn propose_in_order(
    raft: Raft<TypeConfig>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    quorum_timeout: Duration,
) {
    while let Some(Pending { proposal, done }) = rx.recv().await {
        let answer = match raft.client_write_ff(proposal).await {
            Ok(answer) => answer,
            Err(fatal) => {
                let _ = done.send(Err(Error::NotLeader {
                    why: format!("the master's consensus stopped: {fatal}"),
                    leader: None,
                }));
                continue;
            }
        };
        // A record that never commits stays pending in the speculation; the state
        // machine rebuilds the core when the next leader's first entry arrives.
        tokio::spawn(async move {
            let r = match tokio::time::timeout(quorum_timeout, answer).await {
                Ok(Ok(Ok(_))) => Ok(()),
                Ok(Ok(Err(ClientWriteError::ForwardToLeader(f)))) => Err(Error::NotLeader {
                    why: "the master lost the lead before the change was committed".into(),
                    leader: f.leader_node.map(|n| n.addr),
                }),
                Ok(Ok(Err(e))) => Err(Error::NotLeader {
                    why: format!("the change was refused: {e}"),
                    leader: None,
                }),
                Ok(Err(_)) => {
                    // Raft dropped the request: it stepped down with it in flight. The
                    // state machine sorts out whether it committed.
                    Err(Error::NotLeader {
                        why: "the master lost the lead while the change was in flight; it may \
                              or may not be applied"
                            .into(),
                        leader: None,
                    })
                }
                Err(_) => Err(Error::NoQuorum(format!(
                    "a majority of the master group did not acknowledge the change within \
                     {quorum_timeout:?}; it may or may not be applied"
                ))),
            };
            let _ = done.send(r);
        });
    }
}

/// What the gRPC edge and the admin calls need of a running member.
#[derive(Clone)]
pub struct Group {
    /// The consensus handle.
    pub raft: Raft<TypeConfig>,
    /// This member's id.
    pub id: u64,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Maps an openraft error of a membership change to ours.
pub fn change_error(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Error::NotLeader {
            why: "membership changes go to the leader".into(),
            leader: f.leader_node.map(|n| n.addr),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            Error::InvalidArgument(c.to_string())
        }
        RaftError::Fatal(f) => {
            Error::NotLeader { why: format!("consensus stopped: {f}"), leader: None }
        }
    }
}

/// Starts member `group.id`: opens its log and snapshot in `config.dir/raft`, rebuilds
/// its core from them, starts Raft, and (on a brand-new group, at the member with the
/// lowest id) forms the group. Returns the driver and the group handle.
///
/// # Errors
/// Damaged files (named), I/O errors, invalid settings.
pub async fn start(
    config: crate::Config,
    group: GroupConfig,
    network: network::Network,
) -> Result<(Driver, Group, Arc<AtomicU64>)> {
    let dir = config.dir.join("raft");
    let raft_config = Arc::new(group.raft_config()?);
    let log = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || log_store::LogStore::open(&dir)
    })
    .await
    .map_err(|e| Error::Io {
        what: "opening the Raft log".into(),
        source: std::io::Error::other(e),
    })??;
    let images = state_machine::Images::new(dir.clone(), config.clone());
    let loaded = tokio::task::spawn_blocking({
        let images = images.clone();
        move || images.latest()
    })
    .await
    .map_err(|e| Error::Io {
        what: "loading the snapshot".into(),
        source: std::io::Error::other(e),
    })??;
    let fresh = loaded.is_none() && lock_is_empty(&log);
    let (tx, rx) = mpsc::unbounded_channel();
    let term = Arc::new(AtomicU64::new(0));
    // Metrics come from Raft, which needs the state machine, which needs the driver:
    // the replica starts with a placeholder watch, replaced once Raft runs.
    let (_placeholder_tx, placeholder) = watch::channel(RaftMetrics::new_initial(group.id));
    let mut replica = Replica::new(
        group.id,
        tx,
        placeholder,
        group.election_timeout,
        term.clone(),
        group.quorum_timeout,
    );
    let now = crate::clock::Clock::now(&crate::clock::SystemClock).mono;
    let core = match loaded {
        Some(image) => {
            replica.applied = image.meta.last_log_id;
            replica.membership = image.meta.last_membership.clone();
            replica.applied_txid = image.txid;
            info!(txid = image.txid, applied = ?image.meta.last_log_id, "member state loaded from its snapshot");
            image.core
        }
        None => images.empty(),
    };
    let mut core = core;
    core.start(now);
    let journal = crate::oplog::Journal::group(replica);
    let driver = Driver::new(core, journal);
    let sm = state_machine::StateMachine::new(driver.clone(), log.entries(), images);
    let raft = Raft::new(group.id, raft_config, network, log, sm)
        .await
        .map_err(|e| Error::InvalidArgument(format!("starting Raft: {e}")))?;
    if let Some(r) = driver.lock()?.journal.group_mut() {
        r.set_metrics(raft.metrics());
    }
    tokio::spawn(propose_in_order(raft.clone(), rx, group.quorum_timeout));
    tokio::spawn(log_changes(raft.metrics()));
    let first = group.peers.keys().next().copied();
    if fresh && first == Some(group.id) {
        let members: BTreeMap<u64, BasicNode> =
            group.peers.iter().map(|(&id, addr)| (id, BasicNode { addr: addr.clone() })).collect();
        match raft.initialize(members).await {
            Ok(()) => info!(members = group.peers.len(), "master group formed"),
            Err(e) => warn!(error = %e, "forming the master group: already formed"),
        }
    }
    Ok((driver, Group { raft, id: group.id }, term))
}

/// Ends when Raft stops by itself (a fatal error), logging why, or when `stop` says so.
pub async fn until_fatal(
    mut metrics: watch::Receiver<RaftMetrics<u64, BasicNode>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = &metrics.borrow_and_update().running_state {
            tracing::error!(error = %e, "the master group's consensus stopped");
            return;
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

/// Logs this member's role, term and leader each time one changes.
async fn log_changes(mut metrics: watch::Receiver<RaftMetrics<u64, BasicNode>>) {
    let mut last = None;
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            (m.state, m.current_term, m.current_leader)
        };
        if last != Some(now) {
            let (state, term, leader) = now;
            match leader {
                Some(l) => info!(role = ?state, term, leader = l, "master group"),
                None => warn!(role = ?state, term, "master group: no leader"),
            }
            last = Some(now);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

fn lock_is_empty(log: &log_store::LogStore) -> bool {
    let entries = log.entries();
    log_store::lock(&entries).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_lists_say_what_is_wrong() {
        let g = GroupConfig::parse(2, "1=127.0.0.1:9000, 2=127.0.0.2:9000,3=127.0.0.3:9000")
            .expect("valid");
        assert_eq!(g.peers.len(), 3);
        assert_eq!(g.peers[&2], "127.0.0.2:9000");
        for (id, bad, says) in [
            (1, "1=a:1,1=b:2", "listed twice"),
            (4, "1=a:1,2=b:2", "not in the list"),
            (1, "1=a:1,x=b:2", "not a member id"),
            (1, "1=a:1,2", "not ID=HOST:PORT"),
            (1, "1=http://a:1", "not HOST:PORT"),
            (0, "0=a:1", "start at 1"),
        ] {
            let err = GroupConfig::parse(id, bad).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(g.raft_config().is_ok());
    }

    #[test]
    fn speculation_is_pending_until_its_last_record_commits() {
        let mut s = Speculation { term: 3, proposed: 2, committed: 1 };
        assert!(s.pending());
        s.committed = 2;
        assert!(!s.pending());
    }
}
