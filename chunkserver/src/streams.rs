//! The cap on a chunkserver's concurrent data streams, as HDFS's
//! `dfs.datanode.max.transfer.threads`: every `WriteChunk` stream, every `ReadChunk`
//! stream it serves (to clients and to peers copying from it) and every copy it pulls in
//! holds a [`StreamPermit`] for as long as it runs. One over the cap is refused at once
//! with [`Error::Busy`] (`RESOURCE_EXHAUSTED`, reason `EXHAUSTED`), which clients treat
//! as a failed node ([`crate::server`], [`crate::replicate`]).
//!
//! Refusing rather than queueing is deliberate: a stream waiting here would hold its
//! connection and its caller's time for nothing, while another replica or another node
//! can serve it now. Idle streams do not hold a permit forever: a write stream is closed
//! after `--stream-idle-timeout-secs` without a packet or keepalive ([`crate::pipeline`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// Refusals are logged at most this often (with how many there were), so a storm of
/// streams at a busy node does not become a storm of log lines.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The stream cap of one chunkserver; clones share it.
#[derive(Debug, Clone)]
pub struct Streams {
    permits: Arc<Semaphore>,
    cap: usize,
    refusals: Arc<Mutex<Refusals>>,
}

/// Refusals not yet logged, and when the last line was written.
#[derive(Debug, Default)]
struct Refusals {
    unlogged: u64,
    logged_at: Option<Instant>,
}

/// One open data stream; dropping it makes room for another.
#[derive(Debug)]
pub struct StreamPermit {
    _permit: OwnedSemaphorePermit,
}

impl Streams {
    /// A cap of `cap` streams at once (at least 1).
    pub fn new(cap: usize) -> Streams {
        let cap = cap.clamp(1, Semaphore::MAX_PERMITS);
        Streams { permits: Arc::new(Semaphore::new(cap)), cap, refusals: Arc::default() }
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.cap - self.permits.available_permits()
    }

    /// Opens a stream if the cap allows one, without waiting.
    ///
    /// # Errors
    /// [`Error::Busy`] naming the cap when every permit is held.
    pub fn try_open(&self) -> Result<StreamPermit> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Ok(StreamPermit { _permit: permit }),
            Err(_) => {
                let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
                r.unlogged += 1;
                Err(Error::Busy { cap: self.cap })
            }
        }
    }

    /// How many streams were refused since the last time this returned a count, once
    /// per [`LOG_EVERY`] at most (the first refusal at once): what to log.
    pub fn refusals_to_log(&self) -> Option<u64> {
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        let due = r.logged_at.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if r.unlogged == 0 || !due {
            return None;
        }
        r.logged_at = Some(Instant::now());
        Some(std::mem::take(&mut r.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::reason::{self, ErrorReason};

    #[test]
    fn one_over_the_cap_is_refused_until_a_stream_ends() {
        let streams = Streams::new(2);
        let a = streams.try_open().expect("first");
        let _b = streams.try_open().expect("second");
        assert_eq!(streams.open(), 2);
        let err = streams.try_open().expect_err("third");
        assert!(matches!(err, Error::Busy { cap: 2 }), "{err:?}");
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(reason::of(&status), ErrorReason::Exhausted);
        assert!(status.message().contains("--max-transfer-streams"), "{}", status.message());
        drop(a);
        assert_eq!(streams.open(), 1);
        let _c = streams.try_open().expect("room again");
    }

    #[test]
    fn a_storm_of_refusals_is_logged_once_with_its_count() {
        let streams = Streams::new(1);
        let _held = streams.try_open().expect("one");
        assert_eq!(streams.refusals_to_log(), None, "nothing refused yet");
        assert!(streams.try_open().is_err());
        assert_eq!(streams.refusals_to_log(), Some(1), "the first refusal at once");
        for _ in 0..5 {
            assert!(streams.try_open().is_err());
        }
        assert_eq!(streams.refusals_to_log(), None, "the rest later, counted");
    }

    #[test]
    fn a_cap_of_zero_is_one() {
        let streams = Streams::new(0);
        assert_eq!(streams.cap(), 1);
        let _a = streams.try_open().expect("one");
        assert!(streams.try_open().is_err());
    }
}
