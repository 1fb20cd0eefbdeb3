//! [`Throttle`]: a byte-rate limit shared by the tasks of one kind (re-replication
//! copies, the scrubber), so background work leaves the disk and network to clients.
//!
//! Each caller reserves a slot for its bytes on a shared timeline advancing at the rate
//! and sleeps until its slot starts; no tokens refill in the background, and concurrent
//! callers queue up fairly in the order they asked.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A rate limit in bytes per second; `None` = unlimited.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: Option<u64>,
    next: Mutex<Option<Instant>>,
}

impl Throttle {
    /// A limit of `bytes_per_sec` (`None` or 0 = unlimited).
    pub fn new(bytes_per_sec: Option<u64>) -> Throttle {
        Throttle { bytes_per_sec: bytes_per_sec.filter(|&r| r > 0), next: Mutex::new(None) }
    }

    /// Waits until `bytes` more may go.
    pub async fn acquire(&self, bytes: u64) {
        let Some(rate) = self.bytes_per_sec else { return };
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = next.filter(|&t| t > now).unwrap_or(now);
            *next = Some(start + cost);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_are_spread_over_time() {
        let t = Throttle::new(Some(10_000));
        let t0 = Instant::now();
        for _ in 0..4 {
            t.acquire(500).await;
        }
        // Slots at 0, 50, 100 and 150 ms.
        assert!(Instant::now() - t0 >= Duration::from_millis(150));
        let free = Throttle::new(None);
        let t1 = std::time::Instant::now();
        free.acquire(1 << 40).await;
        assert!(t1.elapsed() < Duration::from_secs(1));
    }
}
