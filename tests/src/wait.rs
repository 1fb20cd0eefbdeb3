//! Polling for conditions that become true eventually: a chunkserver registering, the
//! master noticing a corrupt replica, a dead node being declared dead.
//!
//! Tests never assert on how fast something happens, only that it happens before a
//! generous deadline, so a loaded CI machine slows them down instead of failing them.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Default deadline for eventually-consistent conditions in tests.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default pause between two checks of a condition.
pub const DEFAULT_POLL: Duration = Duration::from_millis(100);

/// Calls `condition` every `poll` until it returns true, for at most `timeout`.
///
/// `what` describes the condition for the error message ("cs-2 to be declared dead").
/// The condition is always checked at least once, and once more at the deadline.
///
/// # Errors
/// [`Error::Timeout`] if the condition never held.
pub async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut condition: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        let last_chance = start.elapsed() >= timeout;
        if condition().await {
            return Ok(());
        }
        if last_chance {
            return Err(Error::Timeout { what: what.to_owned(), secs: timeout.as_secs() });
        }
        let left = timeout.saturating_sub(start.elapsed());
        tokio::time::sleep(poll.min(left)).await;
    }
}

/// Like [`wait_until`], for a condition that produces a value once it holds.
///
/// # Errors
/// [`Error::Timeout`] if the condition never produced a value.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut condition: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        let last_chance = start.elapsed() >= timeout;
        if let Some(value) = condition().await {
            return Ok(value);
        }
        if last_chance {
            return Err(Error::Timeout { what: what.to_owned(), secs: timeout.as_secs() });
        }
        let left = timeout.saturating_sub(start.elapsed());
        tokio::time::sleep(poll.min(left)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn returns_once_the_condition_holds() {
        let calls = AtomicU32::new(0);
        wait_until("three calls", Duration::from_secs(10), Duration::from_millis(1), || async {
            calls.fetch_add(1, Ordering::SeqCst) >= 2
        })
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn times_out_with_the_description() {
        let err =
            wait_until("never", Duration::from_millis(30), Duration::from_millis(5), || async {
                false
            })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "timed out after 0 s waiting for never");
    }

    #[tokio::test]
    async fn wait_for_returns_the_value() {
        let mut n = 0;
        let v = wait_for("n to reach 2", Duration::from_secs(10), Duration::from_millis(1), || {
            n += 1;
            let v = n;
            async move { (v == 2).then_some(v * 10) }
        })
        .await
        .unwrap();
        assert_eq!(v, 20);
    }
}
