//! Safe mode: after a restart the master knows its files and chunks but not yet where any
//! replica is, so it serves reads and refuses changes (and deletes nothing) until
//! chunkservers have reported enough of the chunks, as HDFS's NameNode does.
//!
//! Two independent reasons keep it on: the automatic one (entered at start-up when the
//! recovered namespace has chunks; left once the reported fraction reaches the threshold
//! and stays there for the extension, or at once when no complete chunk is expected) and
//! the manual one (an administrator's `enter`, kept until `leave`). The counts come from
//! [`crate::core::Core`]; time is passed in, so tests drive it.

use std::time::{Duration, Instant};

/// Where the automatic part stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auto {
    Off,
    /// Waiting for reports.
    Waiting,
    /// Threshold reached; leaves at `until` if it still holds.
    Extension {
        until: Instant,
    },
}

/// Safe mode's state.
#[derive(Debug, Clone)]
pub struct SafeMode {
    manual: bool,
    auto: Auto,
    threshold: f64,
    extension: Duration,
}

/// Chunk counts safe mode is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reported {
    /// Complete chunks with at least one readable replica reported.
    pub reported: u64,
    /// Complete chunks.
    pub total: u64,
}

impl SafeMode {
    /// Safe mode with this threshold and extension; on at start when `on` (the recovered
    /// namespace has chunks to wait for).
    pub fn new(threshold: f64, extension: Duration, on: bool) -> SafeMode {
        SafeMode {
            manual: false,
            auto: if on { Auto::Waiting } else { Auto::Off },
            threshold,
            extension,
        }
    }

    /// True while mutations and deletes are refused.
    pub fn is_on(&self) -> bool {
        self.manual || self.auto != Auto::Off
    }

    /// True when an administrator turned it on.
    pub fn is_manual(&self) -> bool {
        self.manual
    }

    /// The fraction of chunks that must be reported.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Turns safe mode on until [`SafeMode::leave`].
    pub fn enter(&mut self) {
        self.manual = true;
    }

    /// Turns safe mode off, whatever turned it on.
    pub fn leave(&mut self) {
        self.manual = false;
        self.auto = Auto::Off;
    }

    /// True when this many reported chunks reach the threshold.
    pub fn threshold_met(&self, counts: Reported) -> bool {
        counts.total == 0 || counts.reported as f64 >= self.threshold * counts.total as f64
    }

    /// True while the automatic part waits, so callers need to count chunks at all.
    pub fn waiting(&self) -> bool {
        self.auto != Auto::Off
    }

    /// Moves the automatic part on given the current counts. Returns true when that
    /// turned safe mode off.
    pub fn update(&mut self, counts: Reported, now: Instant) -> bool {
        let met = self.threshold_met(counts);
        // The extension lets stragglers report before deletes resume; with no complete
        // chunk in the namespace there is nothing to wait for, and holding every mutation
        // back for it would only make each restart of an empty master slower.
        let nothing_expected = counts.total == 0;
        self.auto = match self.auto {
            Auto::Off => return false,
            Auto::Waiting if met && (self.extension.is_zero() || nothing_expected) => Auto::Off,
            Auto::Waiting if met => Auto::Extension { until: now + self.extension },
            Auto::Waiting => Auto::Waiting,
            // A chunkserver lost during the extension sends it back to waiting.
            Auto::Extension { .. } if !met => Auto::Waiting,
            Auto::Extension { until } if now >= until => Auto::Off,
            ext @ Auto::Extension { .. } => ext,
        };
        self.auto == Auto::Off && !self.manual
    }

    /// A one-line description, used both to answer `safemode get` and to refuse changes.
    pub fn message(&self, counts: Reported) -> String {
        if self.manual {
            return "master is in safe mode: entered by an administrator; it stays on until \
                    `dfs admin safemode leave`"
                .into();
        }
        let pct = self.threshold * 100.0;
        match self.auto {
            Auto::Off => "safe mode is off".into(),
            Auto::Waiting => format!(
                "master is in safe mode: {} of {} chunks reported (threshold {pct:.1}%); it leaves \
                 safe mode by itself once chunkservers report in",
                counts.reported, counts.total
            ),
            Auto::Extension { .. } => format!(
                "master is in safe mode: {} of {} chunks reported (threshold {pct:.1}% reached); it \
                 leaves safe mode by itself in at most {} ms",
                counts.reported,
                counts.total,
                self.extension.as_millis()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(reported: u64, total: u64) -> Reported {
        Reported { reported, total }
    }

    #[test]
    fn leaves_by_itself_after_the_extension() {
        let t0 = Instant::now();
        let mut sm = SafeMode::new(0.999, Duration::from_secs(5), true);
        assert!(sm.is_on());
        assert!(!sm.update(counts(998, 1000), t0));
        assert!(
            sm.message(counts(998, 1000)).contains("998 of 1000 chunks reported (threshold 99.9%)")
        );
        assert!(!sm.update(counts(999, 1000), t0));
        assert!(sm.is_on(), "the extension runs first");
        // Losing reports during the extension starts the wait again.
        assert!(!sm.update(counts(10, 1000), t0 + Duration::from_secs(1)));
        assert!(!sm.update(counts(1000, 1000), t0 + Duration::from_secs(2)));
        assert!(!sm.update(counts(1000, 1000), t0 + Duration::from_secs(6)));
        assert!(sm.update(counts(1000, 1000), t0 + Duration::from_secs(7)));
        assert!(!sm.is_on());
    }

    #[test]
    fn zero_extension_leaves_at_once_and_empty_is_met() {
        let mut sm = SafeMode::new(1.0, Duration::ZERO, true);
        assert!(sm.update(counts(0, 0), Instant::now()));
        assert!(!SafeMode::new(0.999, Duration::ZERO, false).is_on());
    }

    #[test]
    fn no_complete_chunks_skips_the_extension() {
        // Chunks being written (length 0) are not counted: the namespace expects none.
        let mut sm = SafeMode::new(0.999, Duration::from_secs(5), true);
        assert!(sm.update(counts(0, 0), Instant::now()), "left at the first update");
        assert!(!sm.is_on());
        // With chunks to wait for, the extension still runs.
        let mut sm = SafeMode::new(0.999, Duration::from_secs(5), true);
        assert!(!sm.update(counts(1, 1), Instant::now()));
        assert!(sm.is_on());
    }

    #[test]
    fn manual_stays_until_leave() {
        let now = Instant::now();
        let mut sm = SafeMode::new(0.5, Duration::ZERO, false);
        sm.enter();
        assert!(!sm.update(counts(10, 10), now));
        assert!(sm.is_on() && sm.is_manual());
        assert!(sm.message(counts(10, 10)).contains("administrator"));
        sm.leave();
        assert!(!sm.is_on());
        // Leave also ends the automatic wait, as `hdfs dfsadmin -safemode leave` does.
        let mut sm = SafeMode::new(0.5, Duration::ZERO, true);
        sm.leave();
        assert!(!sm.is_on());
    }
}
