//! The simulated network between chunkservers and the master: messages in flight with a
//! delivery time, picked in random order among those due (reordering), and, when faults
//! are on, delayed, dropped (the sender sees its call fail) or delivered twice (a retried
//! call whose first attempt got through).

use master::chunks::ChunkHandle;
use master::core::{HeartbeatReply, ReportedReplica};
use rand::Rng;
use rand::rngs::StdRng;

use crate::faults::{Fault, FaultSet};

/// A message.
#[derive(Debug, Clone)]
pub enum Msg {
    /// Chunkserver `cs` registers with its full report.
    Register {
        /// Sender.
        cs: usize,
        /// Every replica it holds.
        chunks: Vec<ReportedReplica>,
    },
    /// Chunkserver `cs` heartbeats.
    Heartbeat {
        /// Sender.
        cs: usize,
    },
    /// Chunkserver `cs` sends an incremental report.
    Report {
        /// Sender.
        cs: usize,
        /// Replicas received or finished.
        received: Vec<ReportedReplica>,
        /// Replicas deleted.
        deleted: Vec<ChunkHandle>,
        /// Replicas found corrupt.
        corrupt: Vec<ChunkHandle>,
    },
    /// The master's answer to a heartbeat or report of chunkserver `cs`.
    Reply {
        /// Receiver.
        cs: usize,
        /// Commands, or a request to register again.
        reply: HeartbeatReply,
        /// The chunkserver each copy is to be made from, named when the answer was
        /// made (the master's indexes mean nothing to another master life).
        sources: Vec<Option<usize>>,
    },
}

/// Messages in flight.
#[derive(Debug)]
pub struct Network {
    in_flight: Vec<(u64, Msg)>,
    /// Whether faults are injected.
    pub faulty: bool,
    /// Which kinds of network fault may be: a kind turned off still draws its random
    /// number, so the rest of the run stays as alike as it can.
    pub kinds: FaultSet,
}

/// What became of a sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// On its way (once or twice).
    Queued,
    /// Lost: the sender's call fails.
    Dropped,
}

impl Network {
    /// Nothing in flight; once faulty, only the kinds of fault in `kinds`.
    pub fn new(kinds: FaultSet) -> Network {
        Network { in_flight: Vec::new(), faulty: false, kinds }
    }

    /// Sends `msg` at `now`.
    pub fn send(&mut self, rng: &mut StdRng, now: u64, msg: Msg) -> Sent {
        if !self.faulty {
            self.in_flight.push((now + rng.random_range(1..200), msg));
            return Sent::Queued;
        }
        if rng.random_bool(0.04) && self.kinds.has(Fault::Drop) {
            return Sent::Dropped;
        }
        let delay = if rng.random_bool(0.1) {
            rng.random_range(500..4000)
        } else {
            rng.random_range(1..300)
        };
        if rng.random_bool(0.03) && self.kinds.has(Fault::Duplicate) {
            self.in_flight.push((now + rng.random_range(1..4000), msg.clone()));
        }
        self.in_flight.push((now + delay, msg));
        Sent::Queued
    }

    /// A message due at `now`, chosen at random among those due.
    pub fn take_due(&mut self, rng: &mut StdRng, now: u64) -> Option<Msg> {
        let due: Vec<usize> = self
            .in_flight
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(i, _)| i)
            .collect();
        if due.is_empty() {
            return None;
        }
        let pick = due[rng.random_range(0..due.len())];
        Some(self.in_flight.swap_remove(pick).1)
    }

    /// Messages in flight.
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}
