//! The master, or the members of a replicated master group, from the client's side:
//! which member a call goes to, and where its next attempt goes when it fails.
//!
//! `--master` (`DFS_MASTER`) names one master or the comma-separated members of a group
//! (`m1:9000,m2:9000,m3:9000`, [`parse_list`]). A client keeps one channel per member
//! ([`Members`]; the first member reachable when it connects is connected at once, the
//! others on first use) and sends every call to the *current* member, the leader as far
//! as it knows. Only the leader answers changes, and lookups unless the client allows
//! stale reads ([`crate::ClientConfig::stale_ok`]); a follower answers `NOT_LEADER`,
//! naming the leader when it knows one. Where the next attempt goes ([`Route`]):
//!
//! - a follower named a member of the list: there, at once;
//! - a member could not be reached (or timed out), or a follower knew no leader (an
//!   election is under way) or named one the list lacks: the next member, at once;
//!   once every member has failed in a row the [`crate::retry::Backoff`] step is
//!   waited first, so a group that is down costs one probe per member per step;
//! - the member answered but cannot serve yet (safe mode, no chunkservers, no quorum):
//!   the same member after the backoff step (the leader's answer outranks a guess).
//!
//! Redirects are bounded as well: members that disagree on the leader (mid-election)
//! get one redirect per member, then a backoff step. The current member is shared by
//! every call of a client and of the clients made from it (`with_user`, `with_token`),
//! so once one call found the leader the others go there directly. A mutation keeps its
//! call id on every member it tries: the group replicates its retry cache, so a change
//! the old leader committed before it died is answered by the new one, not applied
//! twice. Whether a failure is retried at all, and until when, is [`crate::retry`]'s
//! decision, not this module's.
//!
//! A single address is a group of one: its retries all go back to it after the backoff,
//! exactly as they did before groups existed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proto::gfs::admin_protocol_client::AdminProtocolClient;
use proto::gfs::client_protocol_client::ClientProtocolClient;
use proto::reason::ErrorReason;
use tonic::transport::Channel;

use crate::client::MasterChannel;
use crate::error::{Error, Result};
use crate::retry::CallKind;

/// Largest master answer accepted (large listings and fsck reports).
const MASTER_MAX_MESSAGE: usize = 256 << 20;

/// The member addresses in `list`: one `host:port`, or several separated by commas
/// (spaces around them are ignored, a repeated address counts once).
///
/// # Errors
/// [`Error::InvalidArgument`] for an empty list or an empty member (`a,,b`).
pub fn parse_list(list: &str) -> Result<Vec<String>> {
    let mut addrs: Vec<String> = Vec::new();
    for addr in list.split(',').map(str::trim) {
        if addr.is_empty() {
            let message = if list.trim().is_empty() {
                "no master address: use --master or set DFS_MASTER".to_owned()
            } else {
                format!("master list {list:?} has an empty member")
            };
            return Err(Error::InvalidArgument { message });
        }
        if !addrs.iter().any(|a| a == addr) {
            addrs.push(addr.to_owned());
        }
    }
    Ok(addrs)
}

/// The members of one connection: their addresses and channels, and which one calls go
/// to. Shared by every client over the connection.
#[derive(Debug)]
pub(crate) struct Members {
    addrs: Vec<String>,
    channels: Vec<Channel>,
    current: AtomicUsize,
}

impl Members {
    /// Members at `addrs` over `channels` (in the same order), calls going to `current`.
    pub(crate) fn new(addrs: Vec<String>, channels: Vec<Channel>, current: usize) -> Members {
        debug_assert_eq!(addrs.len(), channels.len(), "one channel per member");
        Members { addrs, channels, current: AtomicUsize::new(current) }
    }
}

/// One member's services, every call carrying one client's credentials.
#[derive(Debug, Clone)]
pub(crate) struct Services {
    /// `gfs.v1.ClientProtocol`.
    pub(crate) master: ClientProtocolClient<MasterChannel>,
    /// `gfs.v1.AdminProtocol`.
    pub(crate) admin: AdminProtocolClient<MasterChannel>,
}

impl Services {
    fn over(channel: &Channel, attach: security::Attach) -> Services {
        Services {
            master: ClientProtocolClient::with_interceptor(channel.clone(), attach.clone())
                .max_decoding_message_size(MASTER_MAX_MESSAGE),
            admin: AdminProtocolClient::with_interceptor(channel.clone(), attach)
                .max_decoding_message_size(MASTER_MAX_MESSAGE),
        }
    }
}

/// The members as one client calls them: its services on each.
#[derive(Debug)]
pub(crate) struct Masters {
    members: Arc<Members>,
    /// Per member, for changes (and lookups unless stale reads are allowed).
    exact: Vec<Services>,
    /// Per member, for lookups: with [`security::STALE_OK_HEADER`] if stale reads are
    /// allowed, else the same as `exact`.
    reads: Vec<Services>,
}

impl Masters {
    /// Services on every member of `members` sending `attach`; lookups also allow a
    /// follower to answer if `stale_ok`.
    pub(crate) fn new(members: Arc<Members>, attach: &security::Attach, stale_ok: bool) -> Masters {
        let exact: Vec<Services> =
            members.channels.iter().map(|c| Services::over(c, attach.clone())).collect();
        let reads = if stale_ok {
            let stale = attach.clone().with_stale_ok();
            members.channels.iter().map(|c| Services::over(c, stale.clone())).collect()
        } else {
            exact.clone()
        };
        Masters { members, exact, reads }
    }

    /// The members, for clients over the same connection.
    pub(crate) fn members(&self) -> &Arc<Members> {
        &self.members
    }

    /// How many members there are (at least one).
    pub(crate) fn len(&self) -> usize {
        self.members.addrs.len()
    }

    /// The member calls go to now.
    pub(crate) fn current(&self) -> usize {
        self.members.current.load(Ordering::Relaxed)
    }

    /// Sends later calls to member `i`.
    pub(crate) fn set_current(&self, i: usize) {
        self.members.current.store(i, Ordering::Relaxed);
    }

    /// Member `i`'s `host:port`.
    pub(crate) fn addr(&self, i: usize) -> &str {
        &self.members.addrs[i]
    }

    /// The index of the member at `addr`, if it is one.
    pub(crate) fn position(&self, addr: &str) -> Option<usize> {
        self.members.addrs.iter().position(|a| a == addr)
    }

    /// Member `i`'s services for a call of `kind`.
    pub(crate) fn services(&self, i: usize, kind: CallKind) -> &Services {
        match kind {
            CallKind::Read => &self.reads[i],
            CallKind::Idempotent | CallKind::Mutation => &self.exact[i],
        }
    }
}

/// What a failed attempt says about where the next one should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A follower answered; the leader it named, if that is a member of the list.
    NotLeader(Option<usize>),
    /// The member is gone or said nothing useful (unreachable, no answer in time).
    MemberDown,
    /// The member answered but cannot serve yet (safe mode, no chunkservers, no
    /// quorum): asking another would only find a follower.
    NotReady,
}

impl Failure {
    /// Classifies a retryable error from the member called; `leader` is the member the
    /// answer named as leader, if any.
    pub(crate) fn of(err: &Error, leader: Option<usize>) -> Failure {
        match err {
            Error::Unavailable { reason: ErrorReason::NotLeader, .. } => Failure::NotLeader(leader),
            Error::MasterUnreachable { .. } | Error::Rpc { .. } => Failure::MemberDown,
            // A status without a reason (a server going down, a proxy) says nothing of
            // the group: try another member.
            Error::Unavailable {
                reason: ErrorReason::Unspecified | ErrorReason::Unreachable,
                ..
            } => Failure::MemberDown,
            _ => Failure::NotReady,
        }
    }
}

/// Where the next attempt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// To this member, at once.
    Now(usize),
    /// To this member, after the next backoff step.
    AfterBackoff(usize),
}

/// One call's walk over the members: how many failed, or redirected it, since it last
/// waited.
#[derive(Debug)]
pub(crate) struct Route {
    members: usize,
    failed: usize,
    redirects: usize,
}

impl Route {
    /// A call over `members` members (at least one).
    pub(crate) fn new(members: usize) -> Route {
        Route { members: members.max(1), failed: 0, redirects: 0 }
    }

    /// Where to go after the attempt on member `at` failed with `failure`.
    pub(crate) fn next(&mut self, at: usize, failure: Failure) -> Step {
        let n = self.members;
        let step = match failure {
            Failure::NotLeader(Some(leader)) if leader != at && leader < n => {
                self.redirects += 1;
                if self.redirects <= n {
                    return Step::Now(leader);
                }
                // Members sending the call round in a circle: let the election settle.
                Step::AfterBackoff(leader)
            }
            Failure::NotLeader(_) | Failure::MemberDown => {
                self.failed += 1;
                let next = (at + 1) % n;
                if self.failed < n {
                    return Step::Now(next);
                }
                Step::AfterBackoff(next)
            }
            Failure::NotReady => Step::AfterBackoff(at),
        };
        self.failed = 0;
        self.redirects = 0;
        step
    }
}

#[cfg(test)]
mod tests {
    use proto::reason;
    use tonic::{Code, Status};

    use super::*;

    #[test]
    fn lists_are_split_trimmed_and_deduplicated() {
        assert_eq!(parse_list("a:1").unwrap(), ["a:1"]);
        assert_eq!(parse_list("a:1, b:2,c:3 ,a:1").unwrap(), ["a:1", "b:2", "c:3"]);
        for bad in ["", " ", "a:1,,b:2", "a:1,"] {
            let err = parse_list(bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidArgument { .. }), "{bad:?}: {err:?}");
        }
        assert!(parse_list("").unwrap_err().to_string().contains("DFS_MASTER"));
    }

    #[test]
    fn a_single_master_is_retried_after_the_backoff_whatever_happened() {
        let mut r = Route::new(1);
        assert_eq!(r.next(0, Failure::MemberDown), Step::AfterBackoff(0));
        assert_eq!(r.next(0, Failure::NotLeader(None)), Step::AfterBackoff(0));
        assert_eq!(r.next(0, Failure::NotLeader(Some(0))), Step::AfterBackoff(0));
        assert_eq!(r.next(0, Failure::NotReady), Step::AfterBackoff(0));
    }

    #[test]
    fn a_named_leader_is_called_at_once_and_a_down_member_passed_over() {
        let mut r = Route::new(3);
        // 0 is down, 1 names 2, 2 answers: nobody waits.
        assert_eq!(r.next(0, Failure::MemberDown), Step::Now(1));
        assert_eq!(r.next(1, Failure::NotLeader(Some(2))), Step::Now(2));
        // A follower that knows no leader, or names one the list lacks: the next member.
        let mut r = Route::new(3);
        assert_eq!(r.next(2, Failure::NotLeader(None)), Step::Now(0));
        assert_eq!(r.next(0, Failure::NotLeader(Some(7))), Step::Now(1));
        // Every member failed in a row: wait, then start over.
        assert_eq!(r.next(1, Failure::MemberDown), Step::AfterBackoff(2));
        assert_eq!(r.next(2, Failure::MemberDown), Step::Now(0));
    }

    #[test]
    fn members_disagreeing_on_the_leader_end_in_a_wait() {
        let mut r = Route::new(2);
        assert_eq!(r.next(0, Failure::NotLeader(Some(1))), Step::Now(1));
        assert_eq!(r.next(1, Failure::NotLeader(Some(0))), Step::Now(0));
        assert_eq!(r.next(0, Failure::NotLeader(Some(1))), Step::AfterBackoff(1));
        assert_eq!(r.next(1, Failure::NotLeader(Some(0))), Step::Now(0), "counted afresh");
    }

    #[test]
    fn a_leader_that_cannot_serve_yet_is_asked_again_after_the_backoff() {
        let mut r = Route::new(3);
        assert_eq!(r.next(1, Failure::NotReady), Step::AfterBackoff(1));
    }

    #[test]
    fn failures_are_told_apart_by_reason() {
        let m = |s: Status| Error::from_master_status(s, "/", "m:1");
        let follower = m(reason::not_leader("a follower", Some("m:2")));
        assert_eq!(Failure::of(&follower, Some(1)), Failure::NotLeader(Some(1)));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(Failure::of(&m(Status::from_error(Box::new(io))), None), Failure::MemberDown);
        assert_eq!(Failure::of(&m(Status::unavailable("going down")), None), Failure::MemberDown);
        let rpc = Error::Rpc { what: "master".into(), status: Status::deadline_exceeded("slow") };
        assert_eq!(Failure::of(&rpc, None), Failure::MemberDown);
        for (code, r) in [
            (Code::Unavailable, ErrorReason::NoQuorum),
            (Code::Unavailable, ErrorReason::NoChunkservers),
            (Code::FailedPrecondition, ErrorReason::SafeMode),
        ] {
            let e = m(reason::status(code, "not yet", r));
            assert_eq!(Failure::of(&e, None), Failure::NotReady, "{r:?}");
        }
    }
}
