//! Whether the disk has room for one more chunk, judged on the space each heartbeat
//! reports, so that a full disk shows up in the chunkserver's own log and not only as
//! writes the master quietly stops placing here.
//!
//! The reserve is the master's chunk size (told at registration, see
//! [`crate::heartbeat`]): with less room than that, the master's placement passes this
//! chunkserver over for new chunks. [`SpaceWatch`] is edge-triggered: it reports crossing
//! below the reserve once and the way back once, never every heartbeat, so a full disk is
//! one warning line rather than one per interval.

/// A change in whether the disk can take a new chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceChange {
    /// Free space fell below the reserve: no new chunk fits.
    Low,
    /// Free space is back at or above the reserve.
    Recovered,
}

/// Remembers whether free space was below the reserve at the last look.
#[derive(Debug, Clone, Default)]
pub struct SpaceWatch {
    /// Bytes a new chunk needs; 0 until the master has said (nothing is judged then).
    reserve: u64,
    low: bool,
}

impl SpaceWatch {
    /// A watch with a reserve of `reserve` bytes (0 = unknown: never low).
    pub fn new(reserve: u64) -> SpaceWatch {
        SpaceWatch { reserve, low: false }
    }

    /// The bytes a new chunk needs.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Changes the reserve (the master may be restarted with another chunk size); the
    /// next [`SpaceWatch::observe`] judges against it.
    pub fn set_reserve(&mut self, reserve: u64) {
        self.reserve = reserve;
    }

    /// Takes the free space now; returns the change since the last look, if any.
    pub fn observe(&mut self, remaining: u64) -> Option<SpaceChange> {
        let low = self.reserve > 0 && remaining < self.reserve;
        if low == self.low {
            return None;
        }
        self.low = low;
        Some(if low { SpaceChange::Low } else { SpaceChange::Recovered })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_crossing_once() {
        let mut w = SpaceWatch::new(100);
        assert_eq!(w.observe(500), None, "room to spare: nothing to say");
        assert_eq!(w.observe(100), None, "exactly one chunk still fits");
        assert_eq!(w.observe(99), Some(SpaceChange::Low));
        assert_eq!(w.observe(0), None, "still full: not logged again");
        assert_eq!(w.observe(50), None);
        assert_eq!(w.observe(100), Some(SpaceChange::Recovered));
        assert_eq!(w.observe(1000), None);
        assert_eq!(w.observe(10), Some(SpaceChange::Low));
    }

    #[test]
    fn full_from_the_first_look_is_reported() {
        let mut w = SpaceWatch::new(64);
        assert_eq!(w.observe(0), Some(SpaceChange::Low));
    }

    #[test]
    fn an_unknown_reserve_is_never_low() {
        let mut w = SpaceWatch::default();
        assert_eq!(w.observe(0), None);
        // Told a reserve later, the next look judges against it.
        w.set_reserve(10);
        assert_eq!(w.reserve(), 10);
        assert_eq!(w.observe(5), Some(SpaceChange::Low));
        w.set_reserve(4);
        assert_eq!(w.observe(5), Some(SpaceChange::Recovered));
    }
}
