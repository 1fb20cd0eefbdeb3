//! An in-memory chunkserver: its replicas (version, length, state; no bytes), the reports
//! it owes the master, the copies it is making, and its life (up, frozen, down).
//!
//! Which replica a write, copy or delete may replace is decided by the real chunkserver's
//! rules ([`chunkserver::store::rules`]); the rest follows the store's documented state
//! machine: a failed copy aborts its replica being written, a pipeline recovery restamps
//! a survivor's replica, lease recovery stamps and settles one. Finalized replicas are
//! durable; a crash loses the queued reports and the copies under way, and leaves their
//! half-written replicas behind, as a real crash leaves files in `rbw/`, short of what
//! the page cache held when the crash came (or missing altogether).

use std::collections::BTreeMap;

use chunkserver::store::rules::{self, Held};
use master::chunks::ChunkHandle;
use master::cluster::{DeleteCmd, Load, ReplicateCmd};
use master::core::ReportedReplica;

/// One replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rep {
    /// Version stamped on it.
    pub version: u64,
    /// Bytes held.
    pub len: u64,
    /// Complete, as opposed to being written.
    pub finalized: bool,
    /// Its bytes no longer match their CRCs (a flipped bit).
    pub corrupt: bool,
}

impl Rep {
    fn held(&self) -> Held {
        Held { version: self.version, finalized: self.finalized, corrupt: self.corrupt }
    }

    fn report(&self, handle: u64) -> ReportedReplica {
        ReportedReplica {
            handle: ChunkHandle(handle),
            version: self.version,
            length: self.len,
            finalized: self.finalized,
        }
    }
}

/// Whether the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Serving.
    Up,
    /// Stopped (SIGSTOP): work sent to it waits and runs when it thaws.
    Frozen,
    /// Killed; its disk keeps what was durable.
    Down,
}

/// A pipeline write that reached a frozen chunkserver: it runs when the chunkserver
/// thaws, and is forwarded to the rest of its pipeline then, as a stalled stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldWrite {
    /// The chunk.
    pub handle: u64,
    /// Its version.
    pub version: u64,
    /// Bytes.
    pub len: u64,
    /// The pipeline's nodes after this one.
    pub downstream: Vec<usize>,
}

/// A copy under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copy {
    /// What the master asked.
    pub cmd: ReplicateCmd,
    /// The source's index among the simulated chunkservers.
    pub source: usize,
    /// When it ends (virtual ms).
    pub done_at: u64,
}

/// Reports not yet sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    /// Replicas received or finished.
    pub received: Vec<ReportedReplica>,
    /// Replicas deleted.
    pub deleted: Vec<ChunkHandle>,
    /// Replicas found corrupt.
    pub corrupt: Vec<ChunkHandle>,
}

impl Pending {
    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.received.is_empty() && self.deleted.is_empty() && self.corrupt.is_empty()
    }
}

/// One simulated chunkserver.
#[derive(Debug, Clone)]
pub struct SimChunkserver {
    /// Persistent id.
    pub id: String,
    /// Address.
    pub addr: String,
    /// Rack.
    pub rack: String,
    /// Up, frozen or down.
    pub life: Life,
    /// Replicas by handle.
    pub replicas: BTreeMap<u64, Rep>,
    /// Work waiting for a thaw.
    pub held: Vec<HeldWrite>,
    /// Reports owed to the master.
    pub pending: Pending,
    /// Copies under way.
    pub copies: Vec<Copy>,
    /// Whether the master knows it since it last started (else it registers).
    pub registered: bool,
    /// Next heartbeat (virtual ms).
    pub next_heartbeat: u64,
    /// Next periodic full report (virtual ms).
    pub next_full_report: u64,
    /// Disk full: every write and copy fails.
    pub full: bool,
}

impl SimChunkserver {
    /// Chunkserver `i` of a cluster on `racks` racks.
    pub fn new(i: usize, racks: usize) -> SimChunkserver {
        let rack = i % racks;
        SimChunkserver {
            id: format!("cs{i}"),
            addr: format!("10.0.{rack}.{i}:7000"),
            rack: format!("/rack-{rack}"),
            life: Life::Up,
            replicas: BTreeMap::new(),
            held: Vec::new(),
            pending: Pending::default(),
            copies: Vec::new(),
            registered: false,
            next_heartbeat: 0,
            next_full_report: 60_000 + 7_000 * i as u64,
            full: false,
        }
    }

    /// What heartbeats carry.
    pub fn load(&self) -> Load {
        let remaining = if self.full { 0 } else { 1 << 40 };
        Load {
            capacity: 1 << 40,
            used: self.replicas.values().map(|r| r.len).sum(),
            remaining,
            active_writes: 0,
            chunk_count: self.replicas.len() as u64,
        }
    }

    /// The full report of a registration; corrupt replicas go in the corrupt list.
    pub fn full_report(&mut self) -> Vec<ReportedReplica> {
        let mut out = Vec::new();
        for (&h, r) in &self.replicas {
            if r.corrupt {
                self.pending.corrupt.push(ChunkHandle(h));
            } else {
                out.push(r.report(h));
            }
        }
        out
    }

    fn received(&mut self, h: u64) {
        if let Some(r) = self.replicas.get(&h) {
            let rep = r.report(h);
            self.pending.received.push(rep);
        }
    }

    /// A pipeline write of a whole chunk (header, packets, finalize).
    ///
    /// # Errors
    /// Why it was refused.
    pub fn write(&mut self, handle: u64, version: u64, len: u64) -> Result<(), String> {
        if self.full {
            return Err("disk full".into());
        }
        let held = self.replicas.get(&handle).map(Rep::held);
        rules::may_write(handle, held, version).map_err(|e| e.to_string())?;
        self.replicas.insert(handle, Rep { version, len, finalized: true, corrupt: false });
        self.received(handle);
        Ok(())
    }

    /// Pipeline recovery: the survivor's replica is restamped `version` and finished
    /// again (the client resends what was not acknowledged); a survivor that got nothing
    /// yet is written afresh.
    ///
    /// # Errors
    /// A corrupt or newer replica, or a refused fresh write.
    pub fn resume(&mut self, handle: u64, version: u64, len: u64) -> Result<(), String> {
        match self.replicas.get_mut(&handle) {
            None => return self.write(handle, version, len),
            // The store's rule: a finalized replica is reopened only at a newer version.
            Some(r)
                if !r.corrupt
                    && r.version <= version
                    && rules::may_resume(handle, r.held(), version).is_ok() =>
            {
                *r = Rep { version, len, finalized: true, corrupt: false };
            }
            other => return Err(format!("cannot resume over {other:?}")),
        }
        self.received(handle);
        Ok(())
    }

    /// Lease recovery's first call: stamps `version`, answers the durable length.
    pub fn recover(&mut self, handle: u64, version: u64) -> Option<u64> {
        let r = self.replicas.get_mut(&handle)?;
        if r.corrupt || r.version > version {
            return None;
        }
        r.version = version;
        Some(r.len)
    }

    /// Lease recovery's second call: cuts to `len` and finalizes at `version`.
    pub fn settle(&mut self, handle: u64, version: u64, len: u64) -> bool {
        match self.replicas.get_mut(&handle) {
            Some(r)
                if rules::may_settle(handle, r.held(), version).is_ok()
                    && r.len >= len
                    && !r.corrupt =>
            {
                *r = Rep { version, len, finalized: true, corrupt: false };
            }
            _ => return false,
        }
        self.received(handle);
        true
    }

    /// A delete the master ordered; a replica it does not remove is reported again.
    pub fn delete(&mut self, cmd: DeleteCmd) {
        let h = cmd.handle.0;
        let Some(r) = self.replicas.get(&h).copied() else { return };
        if rules::delete_removes(r.held(), cmd.version, cmd.rbw_only) {
            self.replicas.remove(&h);
            self.pending.deleted.push(cmd.handle);
        } else if !r.corrupt {
            self.received(h);
        }
    }

    /// Starts a copy the master ordered from `source` (index); it ends at `done_at`.
    pub fn start_copy(&mut self, cmd: ReplicateCmd, source: usize, done_at: u64) {
        let h = cmd.handle.0;
        if self.full {
            return;
        }
        let held = self.replicas.get(&h).map(Rep::held);
        match rules::may_write(h, held, cmd.version) {
            Ok(()) => {
                let rbw = Rep { version: cmd.version, len: 0, finalized: false, corrupt: false };
                self.replicas.insert(h, rbw);
                self.copies.push(Copy { cmd, source, done_at });
            }
            // The copy is here already: say so again (the master may have missed it).
            Err(chunkserver::Error::AlreadyExists { .. }) => self.received(h),
            Err(_) => {}
        }
    }

    /// Ends a copy: finalized if the source served it whole, else aborted (its replica
    /// being written removed). `source` is what the source held, if it could serve.
    pub fn finish_copy(&mut self, copy: Copy, source: Option<Rep>) {
        let h = copy.cmd.handle.0;
        let ours = self.replicas.get(&h).copied();
        let still_ours =
            ours.is_some_and(|r| !r.finalized && r.version == copy.cmd.version && r.len == 0);
        if !still_ours {
            return;
        }
        let good = source.is_some_and(|s| {
            s.version == copy.cmd.version && s.finalized && !s.corrupt && s.len >= copy.cmd.length
        });
        if good {
            let rep = Rep {
                version: copy.cmd.version,
                len: copy.cmd.length,
                finalized: true,
                corrupt: false,
            };
            self.replicas.insert(h, rep);
            self.received(h);
        } else {
            self.replicas.remove(&h);
        }
    }

    /// A crash: reports and copies in memory are lost; finalized replicas stay (they were
    /// fsynced before they were acknowledged). A replica being written was not: the
    /// page cache it sat in is gone, so `lose` says, per such replica, how much of it
    /// the disk kept (`None`: the file itself never reached the disk).
    pub fn crash(&mut self, mut lose: impl FnMut(u64, u64) -> Option<u64>) {
        self.replicas.retain(|&h, r| {
            if r.finalized {
                return true;
            }
            match lose(h, r.len) {
                Some(kept) => {
                    r.len = kept.min(r.len);
                    true
                }
                None => false,
            }
        });
        self.life = Life::Down;
        self.pending = Pending::default();
        self.copies.clear();
        self.held.clear();
        self.registered = false;
    }

    /// The scrubber's pass: corrupt replicas not yet reported are.
    pub fn scrub(&mut self) {
        let found: Vec<ChunkHandle> = self
            .replicas
            .iter()
            .filter(|(h, r)| r.corrupt && !self.pending.corrupt.contains(&ChunkHandle(**h)))
            .map(|(&h, _)| ChunkHandle(h))
            .collect();
        self.pending.corrupt.extend(found);
    }
}
