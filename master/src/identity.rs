//! Callers at the master's edge: from the principal a request carries
//! ([`security::caller`]) to the [`Caller`] the core checks permissions against.
//!
//! In simple mode a request names only its user; the master resolves its groups itself,
//! as Hadoop's shell-based group mapping does on the NameNode, with the mapping
//! [`security::groups`] defines (this host's `/etc/passwd` and `/etc/group`, or a static
//! file given with `--group-mapping` in front of them), which the MapReduce coordinator
//! shares. In token mode an authenticating interceptor supplies the groups with the
//! principal, and they are taken as they are.
//!
//! Resolutions are cached per user for [`CACHE_TTL`] (Hadoop caches for 300 s), so the
//! hot path clones an `Arc` and reads no file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use security::Principal;
use tonic::{Request, Status};

pub use security::groups::{GroupMapping, StaticGroups, UnixGroups};

use crate::permission::Caller;

/// How long a user's resolved groups are reused.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Users cached at most; past it the cache starts over (names are the caller's choice).
const CACHE_MAX: usize = 4096;

/// Resolves callers: their groups, and whether they are superusers.
#[derive(Debug)]
pub struct Identities {
    superuser: String,
    supergroup: String,
    mapping: Box<dyn GroupMapping>,
    cache: Mutex<HashMap<String, (Instant, Arc<Caller>)>>,
}

impl Identities {
    /// Callers resolved with `mapping`; `superuser` and members of `supergroup` pass
    /// every check.
    pub fn new(
        superuser: impl Into<String>,
        supergroup: impl Into<String>,
        mapping: Box<dyn GroupMapping>,
    ) -> Identities {
        Identities {
            superuser: superuser.into(),
            supergroup: supergroup.into(),
            mapping,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The caller of `req`.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` (reason `UNAUTHENTICATED`) for a request that names no user or
    /// an unacceptable one.
    pub fn caller<T>(&self, req: &Request<T>) -> std::result::Result<Arc<Caller>, Status> {
        Ok(self.resolve(security::caller(req)?))
    }

    /// The caller a principal stands for: its groups as given (token mode) or resolved
    /// here (simple mode, cached).
    pub fn resolve(&self, p: Principal) -> Arc<Caller> {
        if !p.groups.is_empty() {
            return Arc::new(self.make(p.user, p.groups));
        }
        let now = Instant::now();
        // A poisoned cache is only a cache: start it over.
        let cache = self.cache.lock().unwrap_or_else(|e| {
            let mut g = e.into_inner();
            g.clear();
            g
        });
        if let Some((at, c)) = cache.get(&p.user)
            && now.duration_since(*at) < CACHE_TTL
        {
            return c.clone();
        }
        drop(cache);
        // Files are read outside the lock.
        let groups = self.mapping.groups(&p.user);
        let caller = Arc::new(self.make(p.user.clone(), groups));
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(p.user, (now, caller.clone()));
        caller
    }

    fn make(&self, user: String, groups: Vec<String>) -> Caller {
        let superuser = user == self.superuser || groups.contains(&self.supergroup);
        Caller { user, groups, superuser }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct NoGroups;
    impl GroupMapping for NoGroups {
        fn groups(&self, _: &str) -> Vec<String> {
            Vec::new()
        }
    }

    #[test]
    fn superusers_by_name_and_by_group() {
        let text = "# test users\nalice: staff, admins\nbob:\n";
        let m = StaticGroups::parse(text, Box::new(NoGroups)).expect("parse");
        assert_eq!(m.groups("alice"), ["staff", "admins"]);
        let ids = Identities::new("hdfs", "admins", Box::new(m));
        let alice = ids.resolve(Principal::user("alice"));
        assert!(alice.superuser && alice.in_group("staff"), "{alice:?}");
        assert!(!ids.resolve(Principal::user("bob")).superuser);
        assert!(ids.resolve(Principal::user("hdfs")).superuser);
        // Cached: the same Arc.
        assert!(Arc::ptr_eq(&alice, &ids.resolve(Principal::user("alice"))));
        // Groups a token gave are taken as they are.
        let p = Principal { user: "bob".into(), groups: vec!["admins".into()] };
        assert!(ids.resolve(p).superuser);
    }
}
