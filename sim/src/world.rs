//! The simulated cluster: the master's real core with its durable log, in-memory
//! chunkservers, writers and readers, lease recoveries and a faulty network, all driven
//! by one seeded RNG and a virtual clock; and the invariants checked after every step.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use master::checkpoint;
use master::chunks::ChunkHandle;
use master::clock::Now;
use master::cluster::ServerIdx;
use master::command::{Command, Mutation, Reply, ServerName};
use master::config::Config;
use master::core::{Core, HeartbeatReply};
use master::ids::InodeId;
use master::lease_recovery::RecoveryPlan;
use master::oplog::{Op, Record};
use proto::path::DfsPath;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::chunkserver::{HeldWrite, Life, SimChunkserver};
use crate::faults::{Fault, FaultSet};
use crate::net::{Msg, Network, Sent};

/// Bytes in a full chunk (the master's chunk size).
pub const CHUNK: u64 = 1 << 20;
const HEARTBEAT_MS: u64 = 1000;
const FULL_REPORT_MS: u64 = 60_000;
const CHECKPOINT_MS: u64 = 15_000;
const TRACE: usize = 400;

/// How a run went wrong.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Virtual time (ms).
    pub t: u64,
    /// Step number.
    pub step: u64,
    /// Which invariant, and the values that broke it.
    pub what: String,
    /// The last events before it.
    pub trace: Vec<String>,
}

/// What a run did, for the soak summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Files acknowledged complete.
    pub acked_files: u64,
    /// Files closed by lease recovery.
    pub lease_recovered: u64,
    /// Master crashes.
    pub master_crashes: u64,
    /// Chunkserver kills.
    pub kills: u64,
    /// Replicas being written that a kill cut short or erased (unsynced bytes lost).
    pub torn_replicas: u64,
    /// Pipeline recoveries.
    pub pipeline_recoveries: u64,
    /// Reads that found every chunk.
    pub good_reads: u64,
}

/// The master: its core, the log records synced so far, and its newest checkpoint.
struct SimMaster {
    core: Core,
    log: Vec<Record>,
    /// The newest checkpoint written (a real checkpoint file) and its last txid.
    checkpoint: Option<(std::path::PathBuf, u64)>,
    next_checkpoint: u64,
    /// Down until this time, if crashed.
    down_until: Option<u64>,
    next_tick: u64,
}

#[derive(Debug, Clone)]
enum WriterState {
    Start,
    Open { path: DfsPath, lens: Vec<u64>, written: Vec<(ChunkHandle, u64)> },
    Gone,
}

#[derive(Debug, Clone)]
struct Writer {
    name: String,
    state: WriterState,
    files: u64,
}

/// A file acknowledged complete.
#[derive(Debug, Clone)]
struct Acked {
    path: DfsPath,
    /// Its inode (looked up again when the master restarts).
    id: InodeId,
    /// Its chunks and their lengths.
    chunks: Vec<(ChunkHandle, u64)>,
}

#[derive(Debug, Clone)]
struct Settle {
    plan: RecoveryPlan,
    at: u64,
}

/// The whole simulated cluster.
pub struct World {
    rng: StdRng,
    seed: u64,
    t: u64,
    step: u64,
    base: Instant,
    config: Config,
    master: SimMaster,
    css: Vec<SimChunkserver>,
    net: Network,
    writers: Vec<Writer>,
    settles: Vec<Settle>,
    /// Acknowledged complete files.
    acked: BTreeMap<String, Acked>,
    /// Highest version seen per chunk.
    versions: HashMap<u64, u64>,
    /// Handles of acknowledged files: each belongs to one file only.
    acked_handles: HashSet<u64>,
    trace: VecDeque<String>,
    faults: bool,
    /// The kinds of fault this run injects.
    enabled: FaultSet,
    /// Faults stopped and clients quiet: the cluster converges.
    settling: bool,
    /// Where the master's checkpoints are written.
    dir: std::path::PathBuf,
    /// What the run did.
    pub stats: Stats,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Errors a client waits out and retries.
fn transient(e: &master::Error) -> bool {
    matches!(
        e,
        master::Error::SafeMode(_) | master::Error::NoChunkservers | master::Error::NoSpace { .. }
    )
}

fn path(s: &str) -> DfsPath {
    DfsPath::parse(s).unwrap_or_else(|e| panic!("simulator path {s}: {e}")) // faulty code
}

/// What a restart must rebuild: namespace, chunk versions and lengths, handle counter.
type Durable = (Vec<String>, Vec<(u64, u64, u64)>, u64);

fn durable(core: &Core) -> Durable {
    let map = core.chunk_map();
    let mut chunks: Vec<_> = map.iter().map(|(h, c)| (h.0, c.version, c.length)).collect();
    chunks.sort_unstable();
    (core.namespace().dump(), chunks, map.next_handle())
}

impl World {
    /// A cluster of `chunkservers` on 2 racks, `writers` writing clients, driven by `seed`,
    /// with every kind of fault.
    pub fn new(seed: u64, chunkservers: usize, writers: usize) -> World {
        World::with_faults(seed, chunkservers, writers, FaultSet::all())
    }

    /// As [`World::new`], with only the kinds of fault in `enabled`.
    pub fn with_faults(seed: u64, chunkservers: usize, writers: usize, enabled: FaultSet) -> World {
        let config = Config {
            chunk_size: CHUNK,
            replication: 3,
            heartbeat_interval: Duration::from_millis(HEARTBEAT_MS),
            dead_after: Duration::from_secs(6),
            safemode_extension: Duration::ZERO,
            replication_timeout: Some(Duration::from_secs(8)),
            lease_soft_limit: Duration::from_secs(3),
            lease_hard_limit: Duration::from_secs(12),
            ..Config::default()
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let core = Core::seeded(config.clone(), rng.random());
        World {
            rng,
            seed,
            t: 0,
            step: 0,
            base: Instant::now(),
            config,
            master: SimMaster {
                core,
                log: Vec::new(),
                checkpoint: None,
                next_checkpoint: CHECKPOINT_MS,
                down_until: None,
                next_tick: HEARTBEAT_MS,
            },
            dir: std::env::temp_dir().join(format!("gfs-sim-{}-{seed}", std::process::id())),
            css: (0..chunkservers).map(|i| SimChunkserver::new(i, 2)).collect(),
            net: Network::new(enabled),
            writers: (0..writers)
                .map(|i| Writer {
                    name: format!("client-{i}"),
                    state: WriterState::Start,
                    files: 0,
                })
                .collect(),
            settles: Vec::new(),
            acked: BTreeMap::new(),
            versions: HashMap::new(),
            acked_handles: HashSet::new(),
            trace: VecDeque::new(),
            faults: false,
            enabled,
            settling: false,
            stats: Stats::default(),
        }
    }

    fn now(&self) -> Now {
        Now {
            mono: self.base + Duration::from_millis(self.t),
            wall_ms: 1_800_000_000_000 + self.t as i64,
        }
    }

    fn log(&mut self, line: String) {
        if self.trace.len() == TRACE {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("t={}ms step {}: {line}", self.t, self.step));
    }

    fn violation(&self, what: String) -> Violation {
        Violation { t: self.t, step: self.step, what, trace: self.trace.iter().cloned().collect() }
    }

    fn master_up(&self) -> bool {
        self.master.down_until.is_none()
    }

    /// Applies a command at the master and syncs its records; `None` if it is down.
    fn master_apply(&mut self, cmd: Command) -> Option<master::command::Outcome> {
        if !self.master_up() {
            return None;
        }
        let now = self.now();
        let out = self.master.core.apply(cmd, now);
        for op in &out.records {
            self.append(op.clone(), now.wall_ms);
        }
        Some(out)
    }

    fn append(&mut self, op: Op, time_ms: i64) {
        let txid = self.master.log.len() as u64 + 1;
        self.master.log.push(Record { txid, time_ms, op, call: None });
    }

    /// Writes a checkpoint of the master's state, as its checkpointer does.
    fn checkpoint(&mut self) -> Result<(), Violation> {
        let txid = self.master.log.len() as u64;
        let snap = checkpoint::Snapshot::take(&self.master.core, txid, self.now().wall_ms);
        let written = std::fs::create_dir_all(&self.dir)
            .map_err(|e| e.to_string())
            .and_then(|()| checkpoint::write(&self.dir, &snap).map_err(|e| e.to_string()));
        match written {
            Ok(path) => {
                if let Some((old, _)) = self.master.checkpoint.replace((path, txid)) {
                    let _ = std::fs::remove_file(old);
                }
                self.log(format!("checkpoint at txid {txid}"));
                Ok(())
            }
            Err(e) => Err(self.violation(format!("a checkpoint cannot be written: {e}"))),
        }
    }

    /// Rebuilds the master from its newest checkpoint and the log after it, checking it
    /// equals `expected`.
    fn restart_master(&mut self, expected: &Durable) -> Result<(), Violation> {
        let now = self.now();
        let mut core = Core::seeded(self.config.clone(), self.rng.random());
        let mut after = 0;
        if let Some((path, txid)) = self.master.checkpoint.clone() {
            match checkpoint::read(&path) {
                Ok(loaded) => core = core.with_image(loaded.ns, loaded.chunks),
                Err(e) => {
                    return Err(self.violation(format!("the checkpoint does not read back: {e}")));
                }
            }
            after = txid;
        }
        for rec in self.master.log.iter().skip(after as usize).cloned().collect::<Vec<_>>() {
            let txid = rec.txid;
            if let Err(e) = core.apply(Command::Replay(rec), now).reply {
                return Err(self.violation(format!("log record {txid} does not replay: {e}")));
            }
        }
        core.start(now.mono);
        let got = durable(&core);
        if &got != expected {
            return Err(self.violation(format!(
                "the state rebuilt from the log differs from the acknowledged state:\n  rebuilt {got:?}\n  expected {expected:?}"
            )));
        }
        for a in self.acked.values_mut() {
            match core.namespace().lookup(&a.path) {
                Ok(id) => a.id = id,
                Err(e) => {
                    let what = format!("acknowledged file {} is gone after a restart: {e}", a.path);
                    return Err(self.violation(what));
                }
            }
        }
        self.master.core = core;
        self.master.down_until = None;
        self.master.next_tick = self.t + HEARTBEAT_MS;
        self.settles.clear();
        self.log("master restarted from its log".into());
        Ok(())
    }

    /// Runs `steps` steps with faults, then heals everything and lets the cluster settle;
    /// checks the invariants after every step and convergence at the end.
    ///
    /// # Errors
    /// The first invariant broken.
    pub fn run(&mut self, steps: u64) -> Result<Stats, Violation> {
        self.faults = true;
        self.net.faulty = true;
        for _ in 0..steps {
            self.step()?;
        }
        self.heal()?;
        self.faults = false;
        self.net.faulty = false;
        self.settling = true;
        // Converging takes copies at the replication monitor's pace: allow 10 virtual
        // minutes, checking every 5 seconds whether it is done.
        let end = self.t + 600_000;
        let mut next_check = self.t + 5_000;
        loop {
            self.step()?;
            if self.t >= next_check {
                next_check = self.t + 5_000;
                match self.check_converged() {
                    Ok(()) => return Ok(self.stats),
                    Err(v) if self.t >= end => return Err(v),
                    Err(_) => {}
                }
            }
        }
    }

    fn heal(&mut self) -> Result<(), Violation> {
        self.log("healing: every process restarted or thawed, disks emptied".into());
        if !self.master_up() {
            let expected = durable(&self.master.core);
            self.restart_master(&expected)?;
        }
        for i in 0..self.css.len() {
            self.css[i].full = false;
            match self.css[i].life {
                Life::Down => self.css[i].life = Life::Up,
                Life::Frozen => self.thaw(i),
                Life::Up => {}
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<(), Violation> {
        self.step += 1;
        self.t += self.rng.random_range(0..40);
        if let Some(until) = self.master.down_until
            && self.t >= until
        {
            let expected = durable(&self.master.core);
            self.restart_master(&expected)?;
        }
        self.timers()?;
        for _ in 0..3 {
            let Some(msg) = self.net.take_due(&mut self.rng, self.t) else { break };
            self.deliver(msg);
        }
        match self.rng.random_range(0..10) {
            _ if self.settling => self.read()?,
            0..=5 => {
                let w = self.rng.random_range(0..self.writers.len());
                self.writer_step(w)?;
            }
            6 | 7 => self.read()?,
            _ => self.namespace_op(),
        }
        if self.faults {
            self.fault()?;
        }
        self.check()
    }

    /// Heartbeats, the master's tick, lease recoveries and copies that are due.
    fn timers(&mut self) -> Result<(), Violation> {
        for i in 0..self.css.len() {
            if self.css[i].life == Life::Up && self.t >= self.css[i].next_heartbeat {
                self.css[i].next_heartbeat = self.t + HEARTBEAT_MS;
                self.heartbeat(i);
            }
            let due: Vec<_> =
                self.css[i].copies.iter().filter(|c| c.done_at <= self.t).copied().collect();
            if self.css[i].life != Life::Up {
                continue;
            }
            self.css[i].copies.retain(|c| c.done_at > self.t);
            for copy in due {
                let src = &self.css[copy.source];
                let source = if src.life == Life::Up {
                    src.replicas.get(&copy.cmd.handle.0).copied()
                } else {
                    None
                };
                self.log(format!(
                    "cs{i} copy of {:#x} v{} from cs{} ends: {source:?}",
                    copy.cmd.handle.0, copy.cmd.version, copy.source
                ));
                self.css[i].finish_copy(copy, source);
            }
            if self.rng.random_bool(0.01) {
                self.css[i].scrub();
            }
        }
        if self.faults && self.master_up() && self.t >= self.master.next_checkpoint {
            self.master.next_checkpoint = self.t + CHECKPOINT_MS;
            self.checkpoint()?;
        }
        if self.master_up() && self.t >= self.master.next_tick {
            self.master.next_tick = self.t + HEARTBEAT_MS;
            if let Some(out) = self.master_apply(Command::Tick { log_writable: true }) {
                for plan in out.recoveries {
                    self.log(format!(
                        "lease recovery of {:#x} at v{} on {:?}",
                        plan.handle.0, plan.version, plan.replicas
                    ));
                    let at = self.t + self.rng.random_range(10..2000);
                    self.settles.push(Settle { plan, at });
                }
            }
        }
        let due: Vec<Settle> = self.settles.iter().filter(|s| s.at <= self.t).cloned().collect();
        self.settles.retain(|s| s.at > self.t);
        for s in due {
            self.settle(s.plan)?;
        }
        Ok(())
    }

    fn heartbeat(&mut self, i: usize) {
        // A full report now and then, as the real chunkserver's `--full-report-secs`:
        // anything the master missed (a lost or reordered report) is set right.
        if self.t >= self.css[i].next_full_report {
            self.css[i].next_full_report = self.t + FULL_REPORT_MS;
            self.css[i].registered = false;
        }
        if !self.css[i].registered {
            let chunks = self.css[i].full_report();
            self.css[i].registered = true;
            if self.net.send(&mut self.rng, self.t, Msg::Register { cs: i, chunks })
                == Sent::Dropped
            {
                self.css[i].registered = false;
            }
            return;
        }
        if !self.css[i].pending.is_empty() {
            let p = std::mem::take(&mut self.css[i].pending);
            let msg = Msg::Report {
                cs: i,
                received: p.received.clone(),
                deleted: p.deleted.clone(),
                corrupt: p.corrupt.clone(),
            };
            if self.net.send(&mut self.rng, self.t, msg) == Sent::Dropped {
                // The call failed: the reports are sent again with the next heartbeat.
                self.css[i].pending = p;
            }
        }
        self.net.send(&mut self.rng, self.t, Msg::Heartbeat { cs: i });
    }

    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::Register { cs, chunks } => {
                let c = &self.css[cs];
                let server = ServerName {
                    id: c.id.clone(),
                    addr: c.addr.clone(),
                    rack: c.rack.clone(),
                    proof: None,
                };
                let load = c.load();
                let n = chunks.len();
                if self.master_apply(Command::Register { server, load, chunks }).is_none() {
                    self.css[cs].registered = false;
                } else {
                    self.log(format!("cs{cs} registered with {n} replicas"));
                }
            }
            Msg::Heartbeat { cs } => {
                let load = self.css[cs].load();
                let id = self.css[cs].id.clone();
                let Some(out) = self.master_apply(Command::Heartbeat { id, load }) else { return };
                let reply = match out.reply {
                    Ok(Reply::Heartbeat(Some(r))) => r,
                    _ => HeartbeatReply { reregister: true, ..HeartbeatReply::default() },
                };
                if reply != HeartbeatReply::default() {
                    let sources =
                        reply.replicates.iter().map(|r| self.server_of(r.source)).collect();
                    self.net.send(&mut self.rng, self.t, Msg::Reply { cs, reply, sources });
                }
            }
            Msg::Report { cs, received, deleted, corrupt } => {
                let id = self.css[cs].id.clone();
                self.log(format!("master takes cs{cs}'s report: received {received:?} deleted {deleted:?} corrupt {corrupt:?}"));
                let cmd = Command::ReportChunks { id, received, deleted, corrupt };
                if let Some(out) = self.master_apply(cmd)
                    && let Ok(Reply::Known(false)) = out.reply
                {
                    let reply = HeartbeatReply { reregister: true, ..HeartbeatReply::default() };
                    self.net.send(&mut self.rng, self.t, Msg::Reply { cs, reply, sources: vec![] });
                }
            }
            Msg::Reply { cs, reply, sources } => self.command(cs, reply, sources),
        }
    }

    /// A chunkserver carries out the master's commands.
    fn command(&mut self, cs: usize, reply: HeartbeatReply, sources: Vec<Option<usize>>) {
        if self.css[cs].life != Life::Up {
            return;
        }
        if reply.reregister {
            self.css[cs].registered = false;
        }
        for d in reply.deletes {
            self.log(format!(
                "cs{cs} deletes {:#x} up to v{} rbw_only={}: holds {:?}",
                d.handle.0,
                d.version,
                d.rbw_only,
                self.css[cs].replicas.get(&d.handle.0)
            ));
            self.css[cs].delete(d);
        }
        for (r, source) in reply.replicates.into_iter().zip(sources) {
            let Some(source) = source else { continue };
            let done_at = self.t + self.rng.random_range(50..3000);
            self.log(format!(
                "cs{cs} starts a copy of {:#x} v{} from cs{source}",
                r.handle.0, r.version
            ));
            self.css[cs].start_copy(r, source, done_at);
        }
    }

    /// The simulated chunkserver the master knows as `idx`.
    fn server_of(&self, idx: ServerIdx) -> Option<usize> {
        let id = &self.master.core.cluster().get(idx).id;
        self.css.iter().position(|c| &c.id == id)
    }

    fn thaw(&mut self, i: usize) {
        self.css[i].life = Life::Up;
        for w in std::mem::take(&mut self.css[i].held) {
            let r = self.css[i].write(w.handle, w.version, w.len);
            self.log(format!(
                "cs{i} thaws and runs a queued write of {:#x} v{}: {r:?}",
                w.handle, w.version
            ));
            if r.is_err() {
                continue;
            }
            for &d in &w.downstream {
                if self.css[d].life != Life::Up {
                    break;
                }
                let r = self.css[d].write(w.handle, w.version, w.len);
                self.log(format!("cs{i} forwards it to cs{d}: {r:?}"));
                if r.is_err() {
                    break;
                }
            }
        }
    }

    /// One action of writer `w`.
    fn writer_step(&mut self, w: usize) -> Result<(), Violation> {
        let name = self.writers[w].name.clone();
        if self.master_up() {
            self.master_apply(Command::RenewLease { client: name.clone() });
        }
        match self.writers[w].state.clone() {
            WriterState::Gone => {
                if self.rng.random_bool(0.05) {
                    // A new process with the same name (leases are per client name).
                    self.writers[w].name = format!("{name}-again");
                    self.writers[w].state = WriterState::Start;
                }
            }
            WriterState::Start => {
                let n = self.writers[w].files;
                let p = path(&format!("/w/{name}/f{n}"));
                let replication = self.rng.random_range(2..=3);
                let m = Mutation::Create {
                    path: p.clone(),
                    replication,
                    chunk_size: 0,
                    overwrite: false,
                    create_parents: true,
                    umask: 0o022,
                    client: name.clone(),
                };
                if let Some(Ok(_)) = self
                    .master_apply(Command::Mutate { caller: sim_caller(), mutation: m })
                    .map(|o| o.reply)
                {
                    let chunks = self.rng.random_range(1..=3);
                    let mut lens = vec![CHUNK; chunks - 1];
                    lens.push(self.rng.random_range(1..=CHUNK));
                    self.writers[w].files += 1;
                    self.log(format!(
                        "{name} creates {p} ({chunks} chunks, replication {replication})"
                    ));
                    self.writers[w].state =
                        WriterState::Open { path: p, lens, written: Vec::new() };
                }
            }
            WriterState::Open { path: p, lens, written } => {
                if self.faults && self.rng.random_bool(0.01) && self.enabled.has(Fault::WriterDeath)
                {
                    self.log(format!("{name} dies writing {p}"));
                    self.writers[w].state = WriterState::Gone;
                    return Ok(());
                }
                if written.len() == lens.len() {
                    let last = written.last().copied();
                    let m = Mutation::Complete { path: p.clone(), client: name.clone(), last };
                    match self
                        .master_apply(Command::Mutate { caller: sim_caller(), mutation: m })
                        .map(|o| o.reply)
                    {
                        Some(Ok(_)) => {
                            self.log(format!("{name} completes {p}: acknowledged"));
                            let id = self.master.core.namespace().lookup(&p).map_err(|e| {
                                self.violation(format!(
                                    "{p} completed but cannot be looked up: {e}"
                                ))
                            })?;
                            if let Some(h) =
                                written.iter().find(|c| !self.acked_handles.insert(c.0.0))
                            {
                                let what = format!(
                                    "chunk {:#x} of {p} already belongs to another file",
                                    h.0.0
                                );
                                return Err(self.violation(what));
                            }
                            let acked = Acked { path: p.clone(), id, chunks: written };
                            self.acked.insert(p.to_string(), acked);
                            self.stats.acked_files += 1;
                            self.writers[w].state = WriterState::Start;
                        }
                        Some(Err(e)) if !transient(&e) => {
                            self.log(format!("{name} cannot complete {p}: {e}"));
                            self.writers[w].state = WriterState::Gone;
                        }
                        _ => {}
                    }
                    return Ok(());
                }
                self.write_chunk(w, p, lens, written);
            }
        }
        Ok(())
    }

    /// Allocates and writes the next chunk of writer `w`'s file through its pipeline,
    /// recovering the pipeline when nodes fail.
    fn write_chunk(
        &mut self,
        w: usize,
        p: DfsPath,
        lens: Vec<u64>,
        mut written: Vec<(ChunkHandle, u64)>,
    ) {
        let name = self.writers[w].name.clone();
        let m = Mutation::AddChunk {
            path: p.clone(),
            client: name.clone(),
            previous: written.last().copied(),
            client_host: String::new(),
            excluded: Vec::new(),
        };
        let located = match self
            .master_apply(Command::Mutate { caller: sim_caller(), mutation: m })
            .map(|o| o.reply)
        {
            Some(Ok(Reply::Chunk(l))) => l,
            Some(Err(e)) if !transient(&e) => {
                self.log(format!("{name} cannot add a chunk to {p}: {e}"));
                self.writers[w].state = WriterState::Gone;
                return;
            }
            _ => return,
        };
        let len = lens[written.len()];
        let (h, mut version) = (located.handle, located.version);
        let mut nodes: Vec<usize> =
            located.replicas.iter().filter_map(|&i| self.server_of(i)).collect();
        self.log(format!("{name} writes {:#x} v{version} of {p} ({len} bytes) to {nodes:?}", h.0));
        for attempt in 0..3 {
            // The pipeline is a chain: the first node that fails stops the data there,
            // and the client drops that node and recovers with all the others.
            let mut bad = None;
            for (k, &n) in nodes.iter().enumerate() {
                let r = match self.css[n].life {
                    Life::Up if attempt == 0 => self.css[n].write(h.0, version, len),
                    Life::Up => self.css[n].resume(h.0, version, len),
                    Life::Frozen => {
                        let downstream = nodes[k + 1..].to_vec();
                        self.css[n].held.push(HeldWrite { handle: h.0, version, len, downstream });
                        Err("timed out (frozen)".into())
                    }
                    Life::Down => Err("connection refused".into()),
                };
                if let Err(e) = r {
                    self.log(format!("{name}: cs{n} fails {:#x} v{version}: {e}", h.0));
                    bad = Some(k);
                    break;
                }
            }
            let Some(bad) = bad else {
                written.push((h, len));
                self.writers[w].state = WriterState::Open { path: p, lens, written };
                return;
            };
            let survivors: Vec<usize> =
                nodes.iter().enumerate().filter(|&(k, _)| k != bad).map(|(_, &n)| n).collect();
            if survivors.is_empty() {
                break;
            }
            let ids: Vec<String> = survivors.iter().map(|&n| self.css[n].id.clone()).collect();
            let m = Mutation::UpdatePipeline {
                path: p.clone(),
                client: name.clone(),
                handle: h,
                survivors: ids,
            };
            match self
                .master_apply(Command::Mutate { caller: sim_caller(), mutation: m })
                .map(|o| o.reply)
            {
                Some(Ok(Reply::Chunk(l))) => {
                    self.stats.pipeline_recoveries += 1;
                    version = l.version;
                    nodes = survivors;
                    self.log(format!(
                        "{name} recovers the pipeline of {:#x}: v{version} on {nodes:?}",
                        h.0
                    ));
                }
                other => {
                    self.log(format!(
                        "{name} cannot recover the pipeline of {:#x}: {other:?}",
                        h.0
                    ));
                    break;
                }
            }
        }
        self.log(format!("{name} gives up on {p}"));
        self.writers[w].state = WriterState::Gone;
    }

    /// Lease recovery's chunkserver calls, then their result to the master.
    fn settle(&mut self, plan: RecoveryPlan) -> Result<(), Violation> {
        if !self.master_up() {
            return Ok(());
        }
        let (h, v) = (plan.handle.0, plan.version);
        let mut answered = Vec::new();
        for (idx, addr) in &plan.replicas {
            let Some(i) = self.css.iter().position(|c| &c.addr == addr) else { continue };
            if self.css[i].life != Life::Up {
                continue;
            }
            if let Some(len) = self.css[i].recover(h, v) {
                answered.push((*idx, i, len));
            }
        }
        let length = answered.iter().map(|a| a.2).min();
        let mut settled = Vec::new();
        if let Some(len) = length.filter(|&l| l > 0) {
            for &(idx, i, _) in &answered {
                if self.css[i].settle(h, v, len) {
                    settled.push((idx, i));
                }
            }
        }
        self.log(format!("lease recovery of {h:#x} v{v}: answered {answered:?}, settled {settled:?} at {length:?}"));
        let cmd = Command::RecoverySettled {
            file: plan.file,
            client: plan.client.clone(),
            handle: plan.handle,
            length: length.unwrap_or(1),
            settled: settled.iter().map(|s| s.0).collect(),
        };
        self.master_apply(cmd);
        // The file, if closed, must end at a length every settled replica holds.
        let core = &self.master.core;
        let ns = core.namespace();
        if let Some(f) = ns.file(plan.file)
            && f.writer.is_none()
            && f.chunks.last() == Some(&plan.handle)
        {
            self.stats.lease_recovered += 1;
            let want = core.chunk_map().get(plan.handle).map_or(0, |c| c.length);
            for &(_, i) in &settled {
                let held = self.css[i].replicas.get(&h).copied();
                if !held.is_some_and(|r| r.version == v && r.len >= want && r.finalized) {
                    return Err(self.violation(format!(
                        "lease recovery closed {h:#x} at {want} bytes v{v} but cs{i} holds {held:?}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// A reader reads an acknowledged file whole, failing over between replicas.
    fn read(&mut self) -> Result<(), Violation> {
        if !self.master_up() || self.acked.is_empty() {
            return Ok(());
        }
        let k = self.rng.random_range(0..self.acked.len());
        let Some((p, chunks)) =
            self.acked.values().nth(k).map(|a| (a.path.clone(), a.chunks.clone()))
        else {
            return Ok(());
        };
        let mono = self.now().mono;
        let located = match self.master.core.locations(&p, 0, 0, "", mono) {
            Ok((_, l, _)) => l,
            Err(e) => {
                return Err(
                    self.violation(format!("acknowledged file {p} cannot be looked up: {e}"))
                );
            }
        };
        let mut whole = located.len() == chunks.len();
        for (l, &(h, len)) in located.iter().zip(&chunks) {
            if l.handle != h || l.length != len {
                return Err(self.violation(format!(
                    "acknowledged file {p} changed: chunk {:#x} of {} bytes where {:#x} of {len} was acknowledged",
                    l.handle.0, l.length, h.0
                )));
            }
            let mut served = false;
            for &idx in &l.replicas {
                let Some(i) = self.server_of(idx) else { continue };
                if self.css[i].life != Life::Up {
                    continue;
                }
                match self.css[i].replicas.get(&h.0).copied() {
                    Some(r) if r.version == l.version && r.len >= len && !r.corrupt => {
                        served = true;
                        break;
                    }
                    Some(r) if r.corrupt && r.version == l.version => {
                        // The CRCs do not match: the reader reports it and fails over.
                        let cmd = Command::ReportBadReplica {
                            handle: h,
                            server_id: self.css[i].id.clone(),
                            reason: "checksum".into(),
                        };
                        self.master_apply(cmd);
                    }
                    _ => {}
                }
            }
            whole &= served;
        }
        if whole {
            self.stats.good_reads += 1;
        }
        Ok(())
    }

    /// A namespace change under /n, colliding often.
    fn namespace_op(&mut self) {
        let names = ["/n/a", "/n/b", "/n/a/c", "/n/b/d"];
        let pick = |rng: &mut StdRng| path(names[rng.random_range(0..names.len())]);
        let m = match self.rng.random_range(0..3) {
            0 => Mutation::Mkdir { path: pick(&mut self.rng), parents: true, umask: 0o022 },
            1 => Mutation::Rename { src: pick(&mut self.rng), dst: pick(&mut self.rng) },
            _ => Mutation::Delete { path: pick(&mut self.rng), recursive: true },
        };
        self.master_apply(Command::Mutate { caller: sim_caller(), mutation: m });
    }

    /// At most one fault.
    fn fault(&mut self) -> Result<(), Violation> {
        let n = self.css.len();
        let i = self.rng.random_range(0..n);
        let roll = self.rng.random_range(0..10_000);
        match roll {
            0..=19
                if self.enabled.has(Fault::Kill)
                    && self.css[i].life == Life::Up
                    && self.css.iter().filter(|c| c.life == Life::Up).count() > 2 =>
            {
                self.log(format!("cs{i} is killed"));
                self.stats.kills += 1;
                let rng = &mut self.rng;
                let mut lost = Vec::new();
                self.css[i].crash(|h, len| {
                    // Unsynced bytes: often all kept (write-behind flushed them), else
                    // a tail lost, now and then the whole file.
                    let kept = match rng.random_range(0..6) {
                        0 => None,
                        1 | 2 => Some(rng.random_range(0..=len)),
                        _ => Some(len),
                    };
                    if kept != Some(len) {
                        lost.push(format!("{h:#x}: {len} -> {kept:?}"));
                    }
                    kept
                });
                self.stats.torn_replicas += lost.len() as u64;
                if !lost.is_empty() {
                    self.log(format!(
                        "cs{i}'s disk lost unsynced replica bytes: {}",
                        lost.join(", ")
                    ));
                }
            }
            20..=219 if self.css[i].life == Life::Down => {
                self.log(format!("cs{i} restarts"));
                self.css[i].life = Life::Up;
                self.css[i].next_heartbeat = self.t;
            }
            220..=239 if self.enabled.has(Fault::Freeze) && self.css[i].life == Life::Up => {
                self.log(format!("cs{i} is frozen"));
                self.css[i].life = Life::Frozen;
            }
            240..=439 if self.css[i].life == Life::Frozen => self.thaw(i),
            440..=449 if self.enabled.has(Fault::MasterCrash) && self.master_up() => {
                self.stats.master_crashes += 1;
                let restart_in = self.rng.random_range(100..5000);
                self.log(format!("the master crashes; back in {restart_in} ms"));
                self.master.down_until = Some(self.t + restart_in);
            }
            450..=479 if self.enabled.has(Fault::BitFlip) => self.flip_a_bit(i),
            480..=484 if self.enabled.has(Fault::DiskFull) => {
                self.css[i].full = !self.css[i].full;
                self.log(format!("cs{i} disk full: {}", self.css[i].full));
            }
            _ => {}
        }
        Ok(())
    }

    /// Corrupts a finalized replica on `i`, unless it is the last good one of its chunk
    /// (bit rot on every replica at once is data loss no system survives).
    fn flip_a_bit(&mut self, i: usize) {
        let handles: Vec<u64> = self.css[i]
            .replicas
            .iter()
            .filter(|(_, r)| r.finalized && !r.corrupt)
            .map(|(&h, _)| h)
            .collect();
        if handles.is_empty() {
            return;
        }
        let h = handles[self.rng.random_range(0..handles.len())];
        let rep = self.css[i].replicas[&h];
        let others = self
            .css
            .iter()
            .enumerate()
            .filter(|(j, c)| {
                *j != i
                    && c.replicas.get(&h).is_some_and(|r| {
                        r.version == rep.version && r.finalized && !r.corrupt && r.len == rep.len
                    })
            })
            .count();
        if others == 0 {
            return;
        }
        self.log(format!("a bit flips in cs{i}'s replica of {h:#x}"));
        if let Some(r) = self.css[i].replicas.get_mut(&h) {
            r.corrupt = true;
        }
    }

    /// The invariants that hold at every step.
    fn check(&mut self) -> Result<(), Violation> {
        let core = &self.master.core;
        let map = core.chunk_map();
        // Versions only grow.
        for (h, c) in map.iter() {
            let seen = self.versions.entry(h.0).or_insert(c.version);
            if c.version < *seen {
                let what = format!("chunk {:#x} went back from v{seen} to v{}", h.0, c.version);
                return Err(self.violation(what));
            }
            *seen = c.version;
        }
        // Every acknowledged file is there, whole, and keeps a good replica of each chunk.
        let core = &self.master.core;
        for (p, a) in &self.acked {
            let chunks = &a.chunks;
            let Some(file) = core.namespace().file(a.id) else {
                return Err(self.violation(format!("acknowledged file {p} is gone")));
            };
            let want: Vec<ChunkHandle> = chunks.iter().map(|c| c.0).collect();
            if file.chunks.as_slice() != want.as_slice() || file.writer.is_some() {
                return Err(
                    self.violation(format!("acknowledged file {p} changed: {:?}", file.chunks))
                );
            }
            for &(h, len) in chunks {
                let Some(c) = core.chunk_map().get(h) else {
                    return Err(self
                        .violation(format!("chunk {:#x} of acknowledged {p} is forgotten", h.0)));
                };
                if c.file != a.id {
                    return Err(self.violation(format!(
                        "chunk {:#x} of {p} is filed under inode {}",
                        h.0, c.file.0
                    )));
                }
                let good = self.css.iter().any(|cs| {
                    cs.replicas.get(&h.0).is_some_and(|r| {
                        r.version == c.version && r.finalized && !r.corrupt && r.len == len
                    })
                });
                if !good {
                    let held: Vec<_> =
                        self.css.iter().map(|cs| cs.replicas.get(&h.0).copied()).collect();
                    return Err(self.violation(format!(
                        "the last good replica of chunk {:#x} (v{}, {len} bytes) of acknowledged {p} is gone: {held:?}",
                        h.0, c.version
                    )));
                }
            }
        }
        Ok(())
    }

    /// Once faults stopped: every complete file's chunks have their factor of good
    /// replicas on live chunkservers, on two racks.
    fn check_converged(&self) -> Result<(), Violation> {
        let core = &self.master.core;
        let ns = core.namespace();
        let live = self.css.iter().filter(|c| c.life == Life::Up).count();
        for (h, c) in core.chunk_map().iter() {
            let Some(f) = ns.file(c.file) else { continue };
            if f.writer.is_some() {
                continue;
            }
            let want = usize::from(f.replication).min(live);
            let holders: Vec<&SimChunkserver> = self
                .css
                .iter()
                .filter(|cs| {
                    cs.life == Life::Up
                        && cs.replicas.get(&h.0).is_some_and(|r| {
                            r.version == c.version && r.finalized && !r.corrupt && r.len == c.length
                        })
                })
                .collect();
            let racks: BTreeSet<&str> = holders.iter().map(|cs| cs.rack.as_str()).collect();
            if holders.len() < want || (want >= 2 && racks.len() < 2) {
                let held: Vec<_> =
                    self.css.iter().map(|cs| cs.replicas.get(&h.0).copied()).collect();
                let known: Vec<String> = c
                    .replicas
                    .iter()
                    .map(|r| {
                        format!("{}:v{}:{:?}", core.cluster().get(r.server).id, r.version, r.status)
                    })
                    .collect();
                return Err(self.violation(format!(
                    "chunk {:#x} (v{}, {} bytes, replication {}) did not converge: {} good replicas on racks {racks:?}; held {held:?}; the master knows {known:?}",
                    h.0, c.version, c.length, f.replication, holders.len()
                )));
            }
        }
        Ok(())
    }

    /// The seed this world runs.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

/// The simulated clients' caller: a superuser (the simulator exercises storage, not
/// permissions).
fn sim_caller() -> std::sync::Arc<master::permission::Caller> {
    std::sync::Arc::new(master::permission::Caller::superuser("sim"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checker is not blind: losing every replica of an acknowledged chunk, or an
    /// acknowledged file, is reported at once.
    #[test]
    fn the_invariants_catch_a_lost_chunk_and_a_lost_file() {
        let mut w = World::new(3, 5, 3);
        w.faults = false;
        while w.acked.is_empty() {
            w.step().expect("a fault-free run keeps the invariants");
        }
        let (h, _) = w.acked.values().next().expect("acked").chunks[0];
        let saved = w.css.clone();
        for cs in &mut w.css {
            cs.replicas.remove(&h.0);
        }
        let err = w.check().expect_err("a lost chunk");
        assert!(err.what.contains("last good replica"), "{}", err.what);
        w.css = saved;
        w.check().expect("back to normal");
        let p = w.acked.values().next().expect("acked").path.clone();
        w.master_apply(Command::Mutate {
            caller: sim_caller(),
            mutation: Mutation::Delete { path: p, recursive: false },
        });
        let err = w.check().expect_err("a lost file");
        assert!(err.what.contains("is gone"), "{}", err.what);
    }
}
