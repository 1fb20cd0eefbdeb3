//! Time, as the core sees it: [`Now`] pairs a monotonic instant (liveness, leases,
//! timeouts) with the wall clock (what records and file times say). The core never reads
//! a clock; drivers pass the time in, read from a [`Clock`]: [`SystemClock`] in the
//! master, a virtual one in the simulator.

use std::time::Instant;

pub use proto::clock::wall_ms;

/// The time a command is applied at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub mono: Instant,
    /// Milliseconds since the Unix epoch.
    pub wall_ms: i64,
}

/// A source of [`Now`].
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Now;
}

/// The machine's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Now {
        Now { mono: Instant::now(), wall_ms: wall_ms() }
    }
}
