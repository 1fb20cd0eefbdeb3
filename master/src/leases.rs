//! Writer leases: which clients hold files open for writing and when they last renewed.
//!
//! A file's writer is recorded in the namespace (it survives restarts through the log);
//! the lease *times* live here, in memory only. After a master restart every open file's
//! lease is considered fresh ([`Leases::adopt`]), as HDFS does: a writer still alive
//! renews it, a dead one loses it one hard limit later.
//!
//! Limits: a writer renews every soft limit / 2 (the master tells it the interval); once
//! past the *hard* limit the master recovers its files (see
//! [`crate::core::Core::lease_tick`]): the last chunk is settled to the length every
//! surviving replica holds durably and the file is closed. The soft limit is the renewal
//! contract only: another client asking for the file gets "lease held" until the hard
//! limit, which keeps a slow but live writer safe.
//!
//! Recoveries in progress are remembered per file, with the time a failed attempt (no
//! replica answered) may be retried.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;

use crate::ids::InodeId;

/// Lease times and recoveries under way.
#[derive(Debug)]
pub struct Leases {
    soft: Duration,
    hard: Duration,
    /// Renewal times by writer, hashed under a seed the core chooses (see
    /// [`Leases::new`]): a touch is on every create and chunk allocation.
    renewed: HashMap<String, Instant, FixedState>,
    /// Files being recovered (or waiting to retry), with when they may be tried again.
    recovering: HashMap<InodeId, Instant>,
}

impl Leases {
    /// No leases; writers renew every `soft / 2` and lose their files after `hard`.
    /// Writers' names are hashed under `hash_seed`: random in a server (names come from
    /// peers), fixed in a simulation (iteration order must repeat).
    pub fn new(soft: Duration, hard: Duration, hash_seed: u64) -> Leases {
        let renewed = HashMap::with_hasher(FixedState::with_seed(hash_seed));
        Leases { soft, hard, renewed, recovering: HashMap::new() }
    }

    /// How often writers should renew.
    pub fn renew_interval(&self) -> Duration {
        self.soft / 2
    }

    /// `client` is alive (it renewed, created, added a chunk, ...).
    pub fn touch(&mut self, client: &str, now: Instant) {
        match self.renewed.get_mut(client) {
            Some(t) => *t = now,
            None => {
                self.renewed.insert(client.to_owned(), now);
            }
        }
    }

    /// Gives every writer of an open file a fresh lease unless it has one (after a
    /// restart, or a file whose writer never renewed with this master).
    /// Forgets every lease and recovery and gives each of `writers` a fresh lease from
    /// `now`: what a member that just became the group's leader does, since leases are
    /// not logged and its followers' view of them is stale.
    pub fn restart<'a>(&mut self, writers: impl IntoIterator<Item = &'a str>, now: Instant) {
        self.renewed.clear();
        self.recovering.clear();
        self.adopt(writers, now);
    }

    /// Gives each of `writers` without a lease one from `now`.
    pub fn adopt<'a>(&mut self, writers: impl IntoIterator<Item = &'a str>, now: Instant) {
        for w in writers {
            if !self.renewed.contains_key(w) {
                self.renewed.insert(w.to_owned(), now);
            }
        }
    }

    /// True if `client` renewed within the hard limit.
    pub fn holds(&self, client: &str, now: Instant) -> bool {
        self.renewed.get(client).is_some_and(|&t| now.saturating_duration_since(t) < self.hard)
    }

    /// Clients whose lease is past the hard limit.
    pub fn expired(&self, now: Instant) -> Vec<String> {
        self.renewed
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= self.hard)
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Forgets a client (it holds no file any more).
    pub fn forget(&mut self, client: &str) {
        self.renewed.remove(client);
    }

    /// True if `file` may start a recovery now (none under way, no retry pending).
    pub fn may_recover(&self, file: InodeId, now: Instant) -> bool {
        self.recovering.get(&file).is_none_or(|&at| now >= at)
    }

    /// A recovery of `file` started; another may start at `retry_at` at the earliest.
    pub fn recovering(&mut self, file: InodeId, retry_at: Instant) {
        self.recovering.insert(file, retry_at);
    }

    /// The recovery of `file` is over.
    pub fn recovered(&mut self, file: InodeId) {
        self.recovering.remove(&file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_expire_after_the_hard_limit_unless_renewed() {
        let t0 = Instant::now();
        let mut l = Leases::new(Duration::from_secs(60), Duration::from_secs(600), 0);
        assert_eq!(l.renew_interval(), Duration::from_secs(30));
        l.touch("w", t0);
        l.adopt(["w", "old"], t0 + Duration::from_secs(100));
        assert!(l.holds("w", t0 + Duration::from_secs(599)));
        assert_eq!(l.expired(t0 + Duration::from_secs(650)), vec!["w".to_owned()]);
        l.touch("w", t0 + Duration::from_secs(650));
        assert!(l.expired(t0 + Duration::from_secs(650)).is_empty());
        let late = t0 + Duration::from_secs(701);
        assert_eq!(l.expired(late), vec!["old".to_owned()]);
        l.forget("old");
        assert!(l.expired(late).is_empty());
    }

    #[test]
    fn recoveries_are_not_started_twice() {
        let t0 = Instant::now();
        let mut l = Leases::new(Duration::from_secs(1), Duration::from_secs(2), 0);
        let f = InodeId(3);
        assert!(l.may_recover(f, t0));
        l.recovering(f, t0 + Duration::from_secs(5));
        assert!(!l.may_recover(f, t0 + Duration::from_secs(4)));
        assert!(l.may_recover(f, t0 + Duration::from_secs(5)));
        l.recovered(f);
        assert!(l.may_recover(f, t0));
    }
}
