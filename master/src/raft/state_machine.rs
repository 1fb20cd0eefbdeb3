//! A member's state machine for openraft: the core, fed committed records, and its
//! snapshots (the checkpoints of [`crate::checkpoint`], kept in the member's `raft/`
//! directory beside `snapshot.meta`, which says which log id and transaction each holds).
//!
//! Applying an entry (see [`super`] for the speculation it reconciles):
//! - the leader's own records of its current term were applied when proposed: they only
//!   move the committed mark;
//! - any other entry, met while this member has records pending, means those were
//!   overwritten: the core is rebuilt from the snapshot and the committed log first;
//! - the first entry of this member's own new term makes it ready to lead;
//! - everything else is replayed through `Core::apply(Command::Replay)`.
//!
//! Snapshots are built from the committed state, not from the core (which on the leader
//! runs ahead): the last snapshot plus the log up to the applied index, replayed into a
//! scratch core off the lock. The same replay rebuilds a deposed leader's core.

use std::io::Cursor;
use std::path::PathBuf;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::TypeConfig;
use super::log_store::{SharedEntries, lock, replace_file};
use crate::checkpoint;
use crate::clock::Now;
use crate::command::Command;
use crate::config::Config;
use crate::core::Core;
use crate::driver::{Driver, Master};
use crate::error::{Error, Result};
use crate::oplog::Record;

/// Which checkpoint is the snapshot, and what it covers.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredMeta {
    meta: SnapshotMeta<u64, BasicNode>,
    txid: u64,
}

/// A core loaded from a snapshot.
#[derive(Debug)]
pub struct Image {
    /// What the snapshot covers.
    pub meta: SnapshotMeta<u64, BasicNode>,
    /// Last transaction in it.
    pub txid: u64,
    /// The state, without replicas (chunkservers report them).
    pub core: Core,
}

/// Where a member keeps its snapshots, and how it builds cores from them.
#[derive(Debug, Clone)]
pub struct Images {
    dir: PathBuf,
    config: Config,
}

fn corrupt(file: String, reason: String) -> Error {
    Error::Corrupt { file, offset: 0, reason }
}

impl Images {
    /// Snapshots in `dir`, cores built with `config`.
    pub fn new(dir: PathBuf, config: Config) -> Images {
        Images { dir, config }
    }

    /// An empty core.
    pub fn empty(&self) -> Core {
        Core::new(self.config.clone())
    }

    fn meta(&self) -> Result<Option<StoredMeta>> {
        let path = self.dir.join("snapshot.meta");
        match std::fs::read(&path) {
            Ok(buf) => postcard::from_bytes(&buf)
                .map(Some)
                .map_err(|e| corrupt(path.display().to_string(), format!("undecodable: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { what: format!("reading {}", path.display()), source }),
        }
    }

    /// The newest snapshot, loaded.
    ///
    /// # Errors
    /// A damaged snapshot (named) or an I/O error.
    pub fn latest(&self) -> Result<Option<Image>> {
        let Some(stored) = self.meta()? else { return Ok(None) };
        let path = self.dir.join(checkpoint::file_name(stored.txid));
        let loaded = checkpoint::read(&path)?;
        let core = self.empty().with_image(loaded.ns, loaded.chunks);
        Ok(Some(Image { meta: stored.meta, txid: stored.txid, core }))
    }

    /// The committed state as of `upto`: the newest snapshot with the log after it
    /// replayed. Returns the core and the last transaction in it.
    ///
    /// # Errors
    /// A damaged snapshot, a record that does not decode or apply, or a gap in the log.
    pub(crate) fn committed(
        &self,
        entries: &SharedEntries,
        upto: Option<LogId<u64>>,
    ) -> Result<(Core, u64)> {
        let (mut core, mut txid, from) = match self.latest()? {
            Some(img) => {
                let from = img.meta.last_log_id.map_or(0, |l| l.index + 1);
                (img.core, img.txid, from)
            }
            None => (self.empty(), 0, 0),
        };
        let Some(upto) = upto else { return Ok((core, txid)) };
        if upto.index < from {
            return Ok((core, txid));
        }
        let log = lock(entries).range(from..=upto.index);
        if log.first().map(|e| e.log_id.index) != Some(from) && from != 0 {
            return Err(corrupt(
                self.dir.join("log").display().to_string(),
                format!("the log does not reach back to index {from} after the snapshot"),
            ));
        }
        let now = Now { mono: std::time::Instant::now(), wall_ms: crate::clock::wall_ms() };
        for e in log {
            if let EntryPayload::Normal(p) = e.payload {
                let rec = decode(&p.record, e.log_id.index)?;
                txid = rec.txid;
                replay(&mut core, rec, now)?;
            }
        }
        Ok((core, txid))
    }

    /// Writes `core` (holding transactions up to `txid`) as the snapshot `meta`, and drops
    /// older ones.
    fn save(&self, core: &Core, txid: u64, meta: &SnapshotMeta<u64, BasicNode>) -> Result<()> {
        let snap = checkpoint::Snapshot::take(core, txid, crate::clock::wall_ms());
        checkpoint::write(&self.dir, &snap)?;
        self.commit_meta(StoredMeta { meta: meta.clone(), txid })
    }

    fn commit_meta(&self, stored: StoredMeta) -> Result<()> {
        let bytes = postcard::to_stdvec(&stored)
            .map_err(|e| Error::InvalidArgument(format!("encoding snapshot meta: {e}")))?;
        replace_file(&self.dir, "snapshot.meta", &bytes).map_err(|source| Error::Io {
            what: format!("writing {}", self.dir.join("snapshot.meta").display()),
            source,
        })?;
        for (t, path) in checkpoint::list(&self.dir)? {
            if t != stored.txid {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(())
    }

    fn bytes(&self, txid: u64) -> Result<Vec<u8>> {
        let path = self.dir.join(checkpoint::file_name(txid));
        std::fs::read(&path)
            .map_err(|source| Error::Io { what: format!("reading {}", path.display()), source })
    }

    /// Takes a snapshot received from the leader: checks it, keeps it, loads it.
    fn install(&self, meta: &SnapshotMeta<u64, BasicNode>, bytes: &[u8]) -> Result<Image> {
        let incoming = self.dir.join("incoming.ckpt");
        std::fs::write(&incoming, bytes).map_err(|source| Error::Io {
            what: format!("writing {}", incoming.display()),
            source,
        })?;
        let loaded = checkpoint::read(&incoming)?;
        let path = self.dir.join(checkpoint::file_name(loaded.txid));
        std::fs::File::open(&incoming)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&incoming, &path))
            .map_err(|source| Error::Io { what: format!("keeping {}", path.display()), source })?;
        self.commit_meta(StoredMeta { meta: meta.clone(), txid: loaded.txid })?;
        let core = self.empty().with_image(loaded.ns, loaded.chunks);
        Ok(Image { meta: meta.clone(), txid: loaded.txid, core })
    }
}

fn decode(bytes: &[u8], index: u64) -> Result<Record> {
    Record::decode(bytes).map_err(|e| {
        corrupt("the Raft log".into(), format!("entry {index}: undecodable record: {e}"))
    })
}

fn replay(core: &mut Core, rec: Record, now: Now) -> Result<()> {
    let txid = rec.txid;
    core.apply(Command::Replay(rec), now).reply.map(|_| ()).map_err(|e| {
        corrupt("the Raft log".into(), format!("transaction {txid} does not apply: {e}"))
    })
}

fn storage(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

/// The state machine handed to openraft: the driver's core.
#[derive(Debug, Clone)]
pub struct StateMachine {
    driver: Driver,
    entries: SharedEntries,
    images: Images,
}

impl StateMachine {
    /// The state machine over `driver`'s core, replaying from `entries` and `images`.
    pub(crate) fn new(driver: Driver, entries: SharedEntries, images: Images) -> StateMachine {
        StateMachine { driver, entries, images }
    }
}

/// Replaces `m`'s core with the committed state (see the module documentation).
fn rebuild(m: &mut Master, images: &Images, entries: &SharedEntries, now: Now) -> Result<()> {
    let Some(replica) = m.journal.group_mut() else { return Ok(()) };
    let (upto, spec) = (replica.applied, replica.spec);
    warn!(
        term = spec.term,
        proposed = spec.proposed,
        committed = spec.committed,
        "records this member applied as leader were not committed: rebuilding its state from the snapshot and the committed log"
    );
    let (mut core, txid) = images.committed(entries, upto)?;
    core.start(now.mono);
    m.core = core;
    if let Some(replica) = m.journal.group_mut() {
        replica.applied_txid = txid;
        replica.stop_leading();
    }
    m.journal.set_last_txid(txid);
    Ok(())
}

fn apply_entry(
    m: &mut Master,
    images: &Images,
    entries: &SharedEntries,
    e: Entry<TypeConfig>,
    now: Now,
) -> Result<()> {
    let lid = e.log_id;
    let Some(replica) = m.journal.group_mut() else { return Ok(()) };
    let me = replica.id();
    let own = |r: &super::Replica| {
        r.spec.term != 0 && lid.leader_id.node_id == me && lid.leader_id.term == r.spec.term
    };
    if !own(replica) && replica.spec.pending() {
        rebuild(m, images, entries, now)?;
    }
    let Some(replica) = m.journal.group_mut() else { return Ok(()) };
    let mine = own(replica);
    match e.payload {
        EntryPayload::Blank => {
            if lid.leader_id.node_id == me && lid.leader_id.term > replica.spec.term {
                // The first entry of this member's own term: everything committed before
                // it is applied, so the core is the group's state. Lead from here.
                replica.lead(lid.leader_id.term);
                let txid = replica.applied_txid;
                replica.applied = Some(lid);
                m.journal.set_last_txid(txid);
                m.core.promote(now.mono);
                debug!(
                    term = lid.leader_id.term,
                    txid, "applied the first entry of this member's term"
                );
                return Ok(());
            }
        }
        EntryPayload::Normal(p) => {
            if mine && p.seq <= replica.spec.proposed {
                replica.committed_own(p.seq);
                replica.applied_txid = replica.applied_txid.max(p.txid);
            } else {
                let rec = decode(&p.record, lid.index)?;
                replica.applied_txid = rec.txid;
                let txid = rec.txid;
                replay(&mut m.core, rec, now)?;
                m.journal.set_last_txid(txid);
            }
        }
        EntryPayload::Membership(mem) => {
            replica.membership = StoredMembership::new(Some(lid), mem);
        }
    }
    if let Some(replica) = m.journal.group_mut() {
        replica.applied = Some(lid);
    }
    Ok(())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> std::result::Result<
        (Option<LogId<u64>>, StoredMembership<u64, BasicNode>),
        StorageError<u64>,
    > {
        let mut m = self.driver.lock().map_err(storage)?;
        let replica = m.journal.group_mut().ok_or_else(|| storage("not a group member"))?;
        Ok((replica.applied, replica.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> std::result::Result<Vec<()>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let now = self.driver.now();
        let mut m = self.driver.lock().map_err(storage)?;
        let mut out = Vec::new();
        for e in entries {
            apply_entry(&mut m, &self.images, &self.entries, e, now).map_err(storage)?;
            out.push(());
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Builder {
        let (upto, membership) = match self.driver.lock() {
            Ok(mut m) => match m.journal.group_mut() {
                Some(r) => (r.applied, r.membership.clone()),
                None => (None, StoredMembership::default()),
            },
            Err(_) => (None, StoredMembership::default()),
        };
        Builder { images: self.images.clone(), entries: self.entries.clone(), upto, membership }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> std::result::Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> std::result::Result<(), StorageError<u64>> {
        let images = self.images.clone();
        let meta2 = meta.clone();
        let image = tokio::task::spawn_blocking(move || images.install(&meta2, snapshot.get_ref()))
            .await
            .map_err(storage)?
            .map_err(storage)?;
        let now = self.driver.now();
        let mut m = self.driver.lock().map_err(storage)?;
        let mut core = image.core;
        core.start(now.mono);
        m.core = core;
        if let Some(r) = m.journal.group_mut() {
            r.applied = meta.last_log_id;
            r.membership = meta.last_membership.clone();
            r.applied_txid = image.txid;
            r.stop_leading();
        }
        m.journal.set_last_txid(image.txid);
        info!(txid = image.txid, upto = ?meta.last_log_id, "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> std::result::Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let Some(stored) = self.images.meta().map_err(storage)? else { return Ok(None) };
        let bytes = self.images.bytes(stored.txid).map_err(storage)?;
        Ok(Some(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(bytes)) }))
    }
}

/// Builds a snapshot of the committed state as of when it was made.
#[derive(Debug)]
pub struct Builder {
    images: Images,
    entries: SharedEntries,
    upto: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(
        &mut self,
    ) -> std::result::Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (images, entries, upto) = (self.images.clone(), self.entries.clone(), self.upto);
        let membership = self.membership.clone();
        let built = tokio::task::spawn_blocking(move || -> Result<Snapshot<TypeConfig>> {
            let started = std::time::Instant::now();
            let (core, txid) = images.committed(&entries, upto)?;
            let meta = SnapshotMeta {
                last_log_id: upto,
                last_membership: membership,
                snapshot_id: format!("{}-{txid}", upto.map_or(0, |l| l.index)),
            };
            images.save(&core, txid, &meta)?;
            let bytes = images.bytes(txid)?;
            info!(txid, upto = ?upto, bytes = bytes.len(), elapsed_ms = started.elapsed().as_millis() as u64, "snapshot written");
            Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
        })
        .await
        .map_err(storage)?;
        built.map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use openraft::testing::log_id;
    use openraft::{RaftMetrics, ServerState};
    use proto::path::DfsPath;
    use tokio::sync::{mpsc, watch};

    use super::*;
    use crate::command::Mutation;
    use crate::oplog::{Journal, Op};
    use crate::permission::Caller;
    use crate::raft::{Pending, Proposal, Replica};

    type Metrics = watch::Sender<RaftMetrics<u64, BasicNode>>;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).expect("path")
    }

    fn exists(m: &Master, path: &str) -> bool {
        m.core.namespace().lookup(&p(path)).is_ok()
    }

    /// Member 1, told by Raft that it leads in term 1; what it proposes is kept for the
    /// test.
    fn leader() -> (Master, mpsc::UnboundedReceiver<Pending>, Metrics, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = mpsc::unbounded_channel();
        let mut metrics = RaftMetrics::new_initial(1);
        metrics.state = ServerState::Leader;
        metrics.current_leader = Some(1);
        metrics.current_term = 1;
        let (mtx, mrx) = watch::channel(metrics);
        let replica = Replica::new(
            1,
            tx,
            mrx,
            Duration::from_secs(1),
            Arc::new(AtomicU64::new(0)),
            Duration::from_secs(1),
        );
        let core = Core::new(Config::default());
        (Master { core, journal: Journal::group(replica) }, rx, mtx, dir)
    }

    fn mkdir(m: &mut Master, path: &str, parents: bool, now: Now) {
        let caller = Arc::new(Caller::superuser("root"));
        let mutation = Mutation::Mkdir { path: p(path), parents, umask: 0o022 };
        let (out, _durable) = m.apply(Command::Mutate { caller, mutation }, now);
        out.reply.expect("mkdir applies");
    }

    fn normal(term: u64, node: u64, index: u64, proposal: Proposal) -> Entry<TypeConfig> {
        Entry { log_id: log_id(term, node, index), payload: EntryPayload::Normal(proposal) }
    }

    fn blank(term: u64, node: u64, index: u64) -> Entry<TypeConfig> {
        Entry { log_id: log_id(term, node, index), payload: EntryPayload::Blank }
    }

    #[test]
    fn a_deposed_leader_drops_what_was_never_committed_and_follows() {
        let now = Now { mono: std::time::Instant::now(), wall_ms: 1_000 };
        let (mut m, mut proposed, _metrics, dir) = leader();
        let images = Images::new(dir.path().to_owned(), Config::default());
        let log: SharedEntries = Arc::new(Mutex::new(Default::default()));
        lock(&log).insert(blank(1, 1, 1));
        apply_entry(&mut m, &images, &log, blank(1, 1, 1), now).expect("blank");
        assert!(m.journal.replica().expect("member").ready(), "leading once its blank applied");

        // Two changes applied and proposed; only the first commits.
        mkdir(&mut m, "/a", false, now);
        mkdir(&mut m, "/b", false, now);
        let first = proposed.try_recv().expect("proposed").proposal;
        assert!(proposed.try_recv().is_ok(), "the second was proposed too");
        let committed = normal(1, 1, 2, first.clone());
        lock(&log).insert(committed.clone());
        apply_entry(&mut m, &images, &log, committed, now).expect("own entry");
        assert!(exists(&m, "/a") && exists(&m, "/b"), "the leader's core runs ahead");
        assert!(m.journal.replica().expect("member").spec.pending());

        // A new leader's first entry: /b was overwritten and must go.
        lock(&log).insert(blank(2, 2, 3));
        apply_entry(&mut m, &images, &log, blank(2, 2, 3), now).expect("foreign blank");
        assert!(exists(&m, "/a"), "committed changes stay");
        assert!(!exists(&m, "/b"), "the uncommitted change is gone");
        let r = m.journal.replica().expect("member");
        assert!(!r.spec.pending() && r.spec.term == 0, "no longer speculating");
        assert_eq!(m.journal.last_txid(), first.txid);

        // Then it follows: the new leader's records replay as on any follower.
        let rec = Record {
            txid: first.txid + 1,
            time_ms: 2_000,
            op: Op::Mkdir { path: p("/c"), parents: false, owner: "root".into(), umask: 0o022 },
            call: None,
        };
        let theirs = Proposal { seq: 1, txid: rec.txid, record: rec.encode().into() };
        apply_entry(&mut m, &images, &log, normal(2, 2, 4, theirs), now).expect("replay");
        assert!(exists(&m, "/c"));
        assert_eq!(m.journal.last_txid(), first.txid + 1);
    }

    #[test]
    fn the_leaders_own_committed_records_are_not_applied_twice() {
        let now = Now { mono: std::time::Instant::now(), wall_ms: 1_000 };
        let (mut m, mut proposed, _metrics, dir) = leader();
        let images = Images::new(dir.path().to_owned(), Config::default());
        let log: SharedEntries = Arc::new(Mutex::new(Default::default()));
        apply_entry(&mut m, &images, &log, blank(1, 1, 1), now).expect("blank");
        mkdir(&mut m, "/once", false, now);
        let mine = proposed.try_recv().expect("proposed").proposal;
        // Replayed a second time, a plain mkdir of an existing directory fails.
        apply_entry(&mut m, &images, &log, normal(1, 1, 2, mine), now).expect("skipped");
        let r = m.journal.replica().expect("member");
        assert_eq!((r.spec.proposed, r.spec.committed), (1, 1));
        assert!(!r.spec.pending());
    }
}
