//! The scrubber: re-verifies every finalized replica against its stored CRCs in the
//! background, so a replica rotting on disk is found and repaired before a reader needs
//! it (HDFS's block scanner).
//!
//! A pass walks the finalized replicas in handle order, reading each in windows through
//! the same verified read path clients use (a mismatch marks the replica corrupt and
//! queues a `corrupt` report; the master then copies a good replica elsewhere and deletes
//! this one). Passes start once per period (`--scrub-period-secs`, default a day), so
//! every replica is covered within it, and read at most `--scrub-bytes-per-sec` (default
//! 16 MiB/s) so clients keep the disk. If the data cannot be covered within the period at
//! that rate, a warning says so and the pass simply takes longer. Replicas being written
//! are not finalized and so never scrubbed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::store::Store;
use crate::throttle::Throttle;

/// Bytes verified per read.
const WINDOW: u64 = 4 << 20;

/// Runs passes until shutdown. A zero period disables the scrubber.
pub async fn run(
    store: Store,
    bytes_per_sec: u64,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if period.is_zero() {
        return;
    }
    let throttle = Throttle::new(Some(bytes_per_sec));
    loop {
        let started = Instant::now();
        let replicas = store.finalized();
        let total: u64 = replicas.iter().map(|r| r.1).sum();
        if bytes_per_sec > 0 && total / bytes_per_sec.max(1) > period.as_secs() {
            warn!(
                total,
                bytes_per_sec,
                period_secs = period.as_secs(),
                "scrubbing cannot cover every replica within the period at this rate"
            );
        }
        let mut corrupt = 0;
        for (h, len) in replicas {
            if *shutdown.borrow() {
                return;
            }
            if scrub_one(&store, h, len, &throttle).await {
                corrupt += 1;
            }
        }
        debug!(
            bytes = total,
            corrupt,
            ms = started.elapsed().as_millis() as u64,
            "scrub pass done"
        );
        tokio::select! {
            _ = tokio::time::sleep_until(started + period) => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
    }
}

/// Verifies one replica; true if it turned out corrupt.
async fn scrub_one(store: &Store, h: u64, len: u64, throttle: &Throttle) -> bool {
    let reader = match store.open_reader(h) {
        Ok(r) => Arc::new(r),
        // Deleted or found corrupt since the list was taken.
        Err(_) => return false,
    };
    let mut pos = 0;
    while pos < len {
        let end = (pos + WINDOW).min(len);
        throttle.acquire(end - pos).await;
        let r = Arc::clone(&reader);
        match tokio::task::spawn_blocking(move || r.read(pos, end)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e @ (Error::Corrupt { .. } | Error::ReplicaCorrupt { .. }))) => {
                // The read marked it corrupt and queued the report.
                info!(chunk = %format!("{h:016x}"), cause = %e, "scrubber found a corrupt replica");
                return true;
            }
            Ok(Err(e)) => {
                debug!(chunk = %format!("{h:016x}"), cause = %e, "scrubber could not read a replica");
                return false;
            }
            Err(_) => return false,
        }
        pos = end;
    }
    false
}
