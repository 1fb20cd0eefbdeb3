//! The kinds of fault a run injects, so a failing seed can be shrunk: [`shrink`] turns
//! kinds off one at a time and keeps each off while the seed still breaks an invariant,
//! leaving the fewest kinds of fault that still lead to the failure, and so the shortest
//! story to read.

use std::fmt;
use std::str::FromStr;

use crate::world::World;
use crate::{Failure, WRITERS, chunkservers};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A chunkserver is killed (and later restarts), losing unsynced bytes.
    Kill,
    /// A chunkserver is frozen (and later thawed).
    Freeze,
    /// The master crashes and is rebuilt from its checkpoint and log.
    MasterCrash,
    /// A bit flips in a finalized replica.
    BitFlip,
    /// A chunkserver's disk fills up (or frees).
    DiskFull,
    /// A message is lost.
    Drop,
    /// A message is delivered twice.
    Duplicate,
    /// A writer dies mid-file (its lease is recovered).
    WriterDeath,
}

impl Fault {
    /// Every kind, in the order [`shrink`] tries turning them off.
    pub const ALL: [Fault; 8] = [
        Fault::Duplicate,
        Fault::Drop,
        Fault::DiskFull,
        Fault::BitFlip,
        Fault::Freeze,
        Fault::WriterDeath,
        Fault::MasterCrash,
        Fault::Kill,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Freeze => "freeze",
            Fault::MasterCrash => "master-crash",
            Fault::BitFlip => "bit-flip",
            Fault::DiskFull => "disk-full",
            Fault::Drop => "drop",
            Fault::Duplicate => "duplicate",
            Fault::WriterDeath => "writer-death",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of fault kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultSet(u16);

impl FaultSet {
    /// Every kind.
    pub fn all() -> FaultSet {
        FaultSet(Fault::ALL.iter().fold(0, |acc, f| acc | f.bit()))
    }

    /// No kind.
    pub fn none() -> FaultSet {
        FaultSet(0)
    }

    /// Whether `f` is in it.
    pub fn has(self, f: Fault) -> bool {
        self.0 & f.bit() != 0
    }

    /// It without `f`.
    pub fn without(self, f: Fault) -> FaultSet {
        FaultSet(self.0 & !f.bit())
    }

    /// The kinds of `FaultSet::all()` not in it.
    pub fn missing(self) -> FaultSet {
        FaultSet(FaultSet::all().0 & !self.0)
    }

    /// True when it holds no kind.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for FaultSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> =
            Fault::ALL.iter().filter(|k| self.has(**k)).map(|k| k.name()).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for FaultSet {
    type Err = String;

    /// A comma-separated list of fault names (empty: none).
    fn from_str(s: &str) -> Result<FaultSet, String> {
        let mut set = FaultSet::none();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some(f) = Fault::ALL.iter().find(|f| f.name() == name) else {
                let known: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                return Err(format!("unknown fault {name:?} (known: {})", known.join(", ")));
            };
            set.0 |= f.bit();
        }
        Ok(set)
    }
}

/// Runs `seed` with only the faults in `enabled`.
///
/// # Errors
/// The first invariant broken.
pub fn run_with(seed: u64, steps: u64, enabled: FaultSet) -> Result<crate::Stats, Failure> {
    World::with_faults(seed, chunkservers(seed), WRITERS, enabled)
        .run(steps)
        .map_err(|violation| Failure { seed, without: enabled.missing(), violation })
}

/// Shrinks a failure of `seed` (with `enabled` faults): turns each kind of fault off in
/// turn and keeps it off while the seed still breaks an invariant (any one: turning a
/// fault off may move the failure, not hide it). Returns the failure with the fewest
/// kinds left, or `None` if the seed passes with `enabled` faults.
pub fn shrink(seed: u64, steps: u64, enabled: FaultSet) -> Option<Failure> {
    let mut best = run_with(seed, steps, enabled).err()?;
    let mut kept = enabled;
    for f in Fault::ALL {
        if !kept.has(f) {
            continue;
        }
        if let Err(failure) = run_with(seed, steps, kept.without(f)) {
            kept = kept.without(f);
            best = failure;
        }
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_sets_print_and_parse_back() {
        let set: FaultSet = "kill,drop".parse().expect("parse");
        assert!(set.has(Fault::Kill) && set.has(Fault::Drop) && !set.has(Fault::Freeze));
        assert_eq!(set.to_string().parse::<FaultSet>(), Ok(set));
        assert_eq!(FaultSet::all().missing(), FaultSet::none());
        assert!("kill,nope".parse::<FaultSet>().is_err());
        assert_eq!("".parse::<FaultSet>(), Ok(FaultSet::none()));
    }

    #[test]
    fn a_seed_that_passes_has_nothing_to_shrink_and_fewer_faults_change_the_run() {
        assert!(shrink(9, 1000, FaultSet::all()).is_none());
        let all = run_with(9, 1000, FaultSet::all()).expect("passes");
        let calm = run_with(9, 1000, FaultSet::none()).expect("passes");
        assert!(all.kills > 0 || all.master_crashes > 0, "{all:?}");
        assert_eq!((calm.kills, calm.master_crashes, calm.torn_replicas), (0, 0, 0), "{calm:?}");
    }
}
