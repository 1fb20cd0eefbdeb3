//! A deterministic cluster simulator, in the spirit of FoundationDB's simulation and
//! TigerBeetle's VOPR: one seed drives the master's real core ([`master::core::Core`])
//! with its log, N in-memory chunkservers applying the real replica rules
//! ([`chunkserver::store::rules`]), writing and reading clients, lease recoveries, and a
//! network that delays, drops, duplicates and reorders, on a virtual clock. The master
//! crashes (and is rebuilt from its newest real checkpoint file and the log after it),
//! chunkservers die, freeze and come back with stale replicas, bits flip and disks fill.
//!
//! After every step the invariants are checked ([`world`]): every acknowledged file is
//! there whole and keeps a good replica of each chunk, the state rebuilt from the log
//! equals the acknowledged one, versions only grow, handles belong to one file, lease
//! recovery closes a file at a length its settled replicas hold; once faults stop, every
//! complete chunk converges to its factor on two racks. A failing seed is shrunk
//! ([`shrink`]: kinds of fault turned off while it still fails), then printed with the
//! invariant and the events before it, and `sim --seed N [--without KINDS]` replays it
//! exactly.
//!
//! Layout: [`net`] (messages in flight), [`chunkserver`] (a chunkserver's replicas and
//! reports), [`faults`] (the kinds of fault, and shrinking), [`world`] (the cluster, the
//! actors, the faults and the invariants).

pub mod chunkserver;
pub mod faults;
pub mod net;
pub mod world;

use std::fmt;

pub use faults::{Fault, FaultSet, run_with, shrink};
pub use world::{Stats, Violation, World};

/// Chunkservers in a simulated cluster: 3, 4 or 5 by seed (3 is the replication
/// factor itself, where a server that cannot take a copy leaves no other choice).
pub fn chunkservers(seed: u64) -> usize {
    3 + (seed % 3) as usize
}
/// Writing clients.
pub const WRITERS: usize = 3;

/// Runs seed `seed` for `steps` faulty steps plus the settling phase.
///
/// # Errors
/// The first invariant broken, with the seed.
pub fn run(seed: u64, steps: u64) -> Result<Stats, Failure> {
    run_with(seed, steps, FaultSet::all())
}

/// A seed that broke an invariant.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// Kinds of fault turned off in that run.
    pub without: FaultSet,
    /// What broke, and the events before it.
    pub violation: Violation,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.violation;
        writeln!(
            f,
            "seed {} broke an invariant at step {} (t={} ms): {}",
            self.seed, v.step, v.t, v.what
        )?;
        writeln!(f, "last {} events:", v.trace.len())?;
        for line in &v.trace {
            writeln!(f, "  {line}")?;
        }
        write!(f, "replay: cargo run -p sim --bin sim -- --seed {}", self.seed)?;
        if !self.without.is_empty() {
            write!(f, " --without {}", self.without)?;
        }
        Ok(())
    }
}
