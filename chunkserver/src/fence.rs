//! Fencing a replicated master group's orders by term: a chunkserver carries out orders
//! only from the leader of the newest term it has seen, so a deposed leader (frozen,
//! partitioned, not yet aware it lost) cannot delete, copy or cut replicas behind its
//! successor's back.
//!
//! Every answer from a member (register, heartbeat) carries whether it leads and its
//! Raft term; [`Fence`] remembers the largest term heard from any member. Commands ride
//! on heartbeat answers ([`crate::heartbeat`]): they are carried out only from an answer
//! that says `leader` with a term at least the newest seen ([`Fence::admit`]); others are
//! ignored (logged at debug: a deposed leader's late orders are expected, not alarming).
//! Lease recovery's `RecoverReplica`/`FinalizeReplica` come as calls from the master
//! ([`crate::server`]): one of a term older than the newest seen is refused with
//! `STALE_TERM` ([`Fence::check_order`]), and a newer term raises the newest.
//!
//! A single master always answers `leader` at term 0, so it is never fenced. The check
//! happens when an order arrives: a newer term learned while a delete batch already runs
//! does not stop it; the newer leader's own view (reports, versioned deletes) repairs
//! what a late order could do in that window.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// The newest master term this chunkserver has seen; cheap to clone (shared by the
/// conversation with every member and the service).
#[derive(Debug, Clone, Default)]
pub struct Fence {
    newest: Arc<AtomicU64>,
}

/// Whether an answer's commands may be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the leader of the newest term seen: carry them out.
    Admitted,
    /// From a member that does not lead (it should send none).
    NotLeader,
    /// From a leader of an older term than `newest`: deposed.
    Stale {
        /// The newest term seen.
        newest: u64,
    },
}

impl Fence {
    /// The newest term seen (0 before any, and always for a single master).
    pub fn newest(&self) -> u64 {
        self.newest.load(Ordering::SeqCst)
    }

    /// Notes `term`, heard from a member; returns the newest term seen since.
    pub fn observe(&self, term: u64) -> u64 {
        self.newest.fetch_max(term, Ordering::SeqCst).max(term)
    }

    /// Notes the term of an answer from a member that says whether it `leader`s, and
    /// tells whether its commands may be carried out.
    pub fn admit(&self, leader: bool, term: u64) -> Verdict {
        let newest = self.observe(term);
        match (leader, term < newest) {
            (false, _) => Verdict::NotLeader,
            (true, true) => Verdict::Stale { newest },
            (true, false) => Verdict::Admitted,
        }
    }

    /// Checks a lease-recovery order of `term`, noting it.
    ///
    /// # Errors
    /// [`Error::StaleTerm`] if a newer term has been seen.
    pub fn check_order(&self, term: u64) -> Result<()> {
        let newest = self.observe(term);
        if term < newest {
            return Err(Error::StaleTerm { term, newest });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proto::reason::{self, ErrorReason};

    use super::*;

    #[test]
    fn a_single_master_is_always_admitted() {
        let f = Fence::default();
        for _ in 0..3 {
            assert_eq!(f.admit(true, 0), Verdict::Admitted);
            assert!(f.check_order(0).is_ok());
        }
        assert_eq!(f.newest(), 0);
    }

    #[test]
    fn only_the_leader_of_the_newest_term_is_obeyed() {
        let f = Fence::default();
        assert_eq!(f.admit(true, 3), Verdict::Admitted);
        assert_eq!(f.admit(false, 3), Verdict::NotLeader, "a follower of the same term");
        // A follower's answer of a newer term is news enough: the old leader is deposed.
        assert_eq!(f.admit(false, 4), Verdict::NotLeader);
        assert_eq!(f.admit(true, 3), Verdict::Stale { newest: 4 });
        assert_eq!(f.admit(true, 5), Verdict::Admitted);
        assert_eq!(f.newest(), 5);
        assert_eq!(f.admit(true, 4), Verdict::Stale { newest: 5 }, "terms never go back");
    }

    #[test]
    fn an_order_of_an_older_term_is_refused_as_stale_term() {
        let f = Fence::default();
        f.observe(7);
        let err = f.check_order(6).expect_err("older than the newest seen");
        assert!(matches!(err, Error::StaleTerm { term: 6, newest: 7 }), "{err:?}");
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(reason::of(&status), ErrorReason::StaleTerm);
        assert!(f.check_order(7).is_ok());
        assert!(f.check_order(9).is_ok(), "a newer order raises the newest");
        assert_eq!(f.newest(), 9);
        assert!(f.check_order(8).is_err());
    }
}
