//! The core's driver: everything [`Core`] does not do itself. It holds the core and the
//! operation log's [`Journal`] under one lock ([`Master`]), so records are appended in
//! the order their changes were applied; reads the clock; runs the monitor loop that
//! ticks the core; and settles lease recoveries with chunkservers through a
//! [`ReplicaSettler`] (gRPC here, in memory in the simulator).
//!
//! A panic inside the core while the lock is held may leave a change the log does not
//! hold. The lock is then never used again: every call fails with
//! [`Error::CoreFailed`] and the monitor ends, which stops the master; a restart
//! rebuilds the state from the log, which holds exactly what was acknowledged.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use proto::gfs::chunkserver_client::ChunkserverClient;
use proto::gfs::{FinalizeReplicaRequest, RecoverReplicaRequest};
use security::chunk_token::Modes;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::chunk_tokens::ChunkTokens;
use crate::clock::{Clock, Now, SystemClock, wall_ms};
use crate::command::{Command, Outcome};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::ids::ChunkHandle;
use crate::lease_recovery::RecoveryPlan;
use crate::oplog::{Durable, Journal};

/// How long one chunkserver call of a lease recovery may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The core and the log's handle, locked together.
#[derive(Debug)]
pub struct Master {
    /// The state machine.
    pub core: Core,
    /// Where its records go.
    pub journal: Journal,
}

impl Master {
    /// Applies `cmd` and appends the records it produced; returns the outcome and the
    /// durability of its last record (ready at once if it produced none).
    pub fn apply(&mut self, cmd: Command, now: Now) -> (Outcome, Durable) {
        let mut out = self.core.apply(cmd, now);
        let durable = self.journal.append_all(std::mem::take(&mut out.records), now.wall_ms);
        (out, durable)
    }
}

/// The shared master and its clock; cheap to clone.
#[derive(Debug, Clone)]
pub struct Driver {
    master: Arc<Mutex<Master>>,
    clock: Arc<dyn Clock>,
    tokens: Arc<ChunkTokens>,
}

impl Driver {
    /// A driver over `core` logging to `journal`, on the machine's clocks.
    pub fn new(core: Core, journal: Journal) -> Driver {
        Driver::with_clock(core, journal, Arc::new(SystemClock))
    }

    /// A driver with another clock.
    pub fn with_clock(core: Core, journal: Journal, clock: Arc<dyn Clock>) -> Driver {
        let lifetime =
            i64::try_from(core.config.chunk_token_lifetime.as_millis()).unwrap_or(i64::MAX);
        let tokens = Arc::new(ChunkTokens::new(clock.now().wall_ms, lifetime));
        Driver { master: Arc::new(Mutex::new(Master { core, journal })), clock, tokens }
    }

    /// The chunk access token keys and signer.
    pub fn tokens(&self) -> Arc<ChunkTokens> {
        Arc::clone(&self.tokens)
    }

    /// The current time.
    pub fn now(&self) -> Now {
        self.clock.now()
    }

    /// The master, locked.
    ///
    /// # Errors
    /// [`Error::CoreFailed`] if a panic ever happened under the lock (see the module
    /// documentation).
    pub fn lock(&self) -> Result<MutexGuard<'_, Master>> {
        self.master.lock().map_err(|_| Error::CoreFailed)
    }

    /// Whether this master leads (always, alone) and its term (0 alone): what heartbeat
    /// answers say, so chunkservers take orders from the leader only.
    pub fn leadership(&self) -> Result<(bool, u64)> {
        let m = self.lock()?;
        Ok(match m.journal.replica() {
            None => (true, 0),
            Some(r) => (r.ready(), r.metrics().current_term),
        })
    }

    /// Fails unless this master may take a change now: alone always, in a group as its
    /// ready leader.
    ///
    /// # Errors
    /// [`Error::NotLeader`] naming the leader.
    pub fn check_leader(&self) -> Result<()> {
        let m = self.lock()?;
        m.journal.replica().map_or(Ok(()), |r| r.writable())
    }

    /// Fails unless this master may answer a read: alone always; in a group as its leader
    /// within its lease, or any member when the caller accepts stale answers.
    ///
    /// # Errors
    /// [`Error::NotLeader`] naming the leader.
    pub fn check_read(&self, stale_ok: bool) -> Result<()> {
        let m = self.lock()?;
        m.journal.replica().map_or(Ok(()), |r| r.readable(stale_ok))
    }

    /// Applies `cmd` now, then waits until its records are durable; returns its outcome.
    ///
    /// # Errors
    /// [`Error::CoreFailed`]; [`Error::LogFailed`] if the records cannot be made durable.
    pub async fn apply(&self, cmd: Command) -> Result<Outcome> {
        let (out, durable) = {
            let mut m = self.lock()?;
            m.apply(cmd, self.now())
        };
        durable.wait().await?;
        Ok(out)
    }
}

/// The chunkserver calls of a lease recovery (steps 2 and 4 of
/// [`crate::lease_recovery`]).
pub trait ReplicaSettler: Send + Sync + 'static {
    /// `RecoverReplica`: the replica's durable length once stamped with `version`.
    fn recover(
        &self,
        addr: &str,
        handle: ChunkHandle,
        version: u64,
    ) -> impl Future<Output = std::result::Result<u64, String>> + Send;
    /// `FinalizeReplica` at `version` and `length`.
    fn finalize(
        &self,
        addr: &str,
        handle: ChunkHandle,
        version: u64,
        length: u64,
    ) -> impl Future<Output = std::result::Result<(), String>> + Send;
}

/// [`ReplicaSettler`] over gRPC, each call bounded by a timeout and carrying a recover
/// token: chunkservers take lease-recovery orders only signed by the master.
#[derive(Debug, Clone)]
pub struct GrpcSettler {
    tokens: Arc<ChunkTokens>,
    attach: security::Attach,
    /// The term the master leads in (0 alone): chunkservers refuse orders of older terms.
    term: Arc<std::sync::atomic::AtomicU64>,
}

impl GrpcSettler {
    /// A settler signing its orders with `tokens`, calling with the master's own
    /// credentials `attach` (a service token in token mode).
    pub fn new(tokens: Arc<ChunkTokens>, attach: security::Attach) -> GrpcSettler {
        GrpcSettler { tokens, attach, term: Arc::default() }
    }

    /// As [`GrpcSettler::new`], for a member of a master group leading in `term`.
    pub fn with_term(
        tokens: Arc<ChunkTokens>,
        attach: security::Attach,
        term: Arc<std::sync::atomic::AtomicU64>,
    ) -> GrpcSettler {
        GrpcSettler { tokens, attach, term }
    }

    fn term(&self) -> u64 {
        self.term.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn token(&self, handle: ChunkHandle, version: u64) -> bytes::Bytes {
        self.tokens.sign(handle.0, version, Modes::RECOVER, wall_ms()).into()
    }
}

type ServiceChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, security::Attach>;

fn client_for(
    addr: &str,
    attach: &security::Attach,
) -> std::result::Result<ChunkserverClient<ServiceChannel>, String> {
    let channel = security::tls::endpoint(addr)?.connect_lazy();
    Ok(ChunkserverClient::with_interceptor(channel, attach.clone()))
}

impl ReplicaSettler for GrpcSettler {
    async fn recover(
        &self,
        addr: &str,
        handle: ChunkHandle,
        version: u64,
    ) -> std::result::Result<u64, String> {
        let mut cs = client_for(addr, &self.attach)?;
        let token = self.token(handle, version);
        let req = RecoverReplicaRequest {
            handle: handle.0,
            new_version: version,
            token,
            term: self.term(),
        };
        match tokio::time::timeout(CALL_TIMEOUT, cs.recover_replica(req)).await {
            Ok(Ok(r)) => Ok(r.into_inner().length),
            Ok(Err(s)) => Err(s.message().to_owned()),
            Err(_) => Err("timed out".into()),
        }
    }

    async fn finalize(
        &self,
        addr: &str,
        handle: ChunkHandle,
        version: u64,
        length: u64,
    ) -> std::result::Result<(), String> {
        let mut cs = client_for(addr, &self.attach)?;
        let token = self.token(handle, version);
        let req =
            FinalizeReplicaRequest { handle: handle.0, version, length, token, term: self.term() };
        match tokio::time::timeout(CALL_TIMEOUT, cs.finalize_replica(req)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(s)) => Err(s.message().to_owned()),
            Err(_) => Err("timed out".into()),
        }
    }
}

/// Steps 2-4 of a lease recovery (see [`crate::lease_recovery`]) once the version bump
/// is durable, then [`Command::RecoverySettled`].
pub async fn settle<S: ReplicaSettler>(
    driver: Driver,
    settler: Arc<S>,
    plan: RecoveryPlan,
    bump: Durable,
) {
    let RecoveryPlan { file, client, handle, version, replicas } = plan;
    info!(
        chunk = handle.0,
        version,
        replicas = replicas.len(),
        "settling the last chunk of a recovered file"
    );
    if let Err(e) = bump.wait().await {
        warn!(error = %e, "lease recovery: the version bump is not durable");
        return;
    }
    let mut answered = Vec::new();
    for (idx, addr) in &replicas {
        match settler.recover(addr, handle, version).await {
            Ok(length) => answered.push((*idx, addr.clone(), length)),
            Err(e) => warn!(%addr, chunk = handle.0, error = %e, "recover replica failed"),
        }
    }
    let length = answered.iter().map(|a| a.2).min();
    let mut settled = Vec::new();
    if let Some(len) = length.filter(|&l| l > 0) {
        for (idx, addr, _) in &answered {
            match settler.finalize(addr, handle, version, len).await {
                Ok(()) => settled.push(*idx),
                Err(e) => warn!(%addr, chunk = handle.0, error = %e, "finalize replica failed"),
            }
        }
    }
    // None answered: a positive length with nobody settled, so it is retried.
    let length = length.unwrap_or(1);
    let cmd = Command::RecoverySettled { file, client, handle, length, settled };
    if let Err(e) = driver.apply(cmd).await {
        warn!(error = %e, "lease recovery: closing the file failed");
    }
}

/// Once per heartbeat interval, until `stop`: ticks the core ([`Command::Tick`]) and
/// starts the lease recoveries it asks for. Returns early only if the core failed, which
/// stops the master (see the module documentation).
pub async fn monitor<S: ReplicaSettler>(
    driver: Driver,
    settler: Arc<S>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let started = {
            let Ok(mut m) = driver.lock() else {
                error!("the master's state failed under its lock: the monitor stops");
                return;
            };
            // In a master group only the leader repairs, recovers leases and orders
            // chunkservers about: a follower's copies would never be carried out.
            if m.journal.replica().is_some_and(|r| !r.ready()) {
                continue;
            }
            let log_writable = m.journal.writable().is_ok();
            let (out, _) = m.apply(Command::Tick { log_writable }, driver.now());
            // Everything appended so far includes each recovery's version bump.
            out.recoveries.into_iter().map(|plan| (plan, m.journal.barrier())).collect::<Vec<_>>()
        };
        for (plan, bump) in started {
            tokio::spawn(settle(driver.clone(), settler.clone(), plan, bump));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[tokio::test]
    async fn a_panic_under_the_lock_fails_every_later_call_and_stops_the_monitor() {
        let driver = Driver::new(Core::new(Config::default()), Journal::in_memory());
        let held = driver.clone();
        let panicked = std::thread::spawn(move || {
            let _m = held.lock().expect("lock");
            panic!("a bug inside the core");
        })
        .join();
        assert!(panicked.is_err());
        assert!(matches!(driver.lock(), Err(Error::CoreFailed)));
        let status = tonic::Status::from(Error::CoreFailed);
        assert_eq!(status.code(), tonic::Code::Internal);
        // The monitor ends by itself, so the supervisor stops the master.
        let (_stop_tx, stop_rx) = watch::channel(false);
        let attach = security::Credentials::simple("master").attach().expect("a valid name");
        let settler = Arc::new(GrpcSettler::new(driver.tokens(), attach));
        let monitor = monitor(driver, settler, Duration::from_millis(5), stop_rx);
        tokio::time::timeout(Duration::from_secs(10), monitor).await.expect("the monitor stops");
    }
}
