//! Callers at the master's edge: from the principal a request carries
//! ([`security::caller`]) to the [`Caller`] the core checks permissions against.
//!
//! In simple mode a request names only its user; the master resolves its groups itself,
//! as Hadoop's shell-based group mapping does on the NameNode: from this host's
//! `/etc/passwd` (primary group) and `/etc/group` (supplementary), or from a static
//! mapping file given with `--group-mapping` (lines `user: group1,group2`, consulted
//! first, as Hadoop's static overrides are). A user unknown to both has no groups. In
//! token mode an authenticating interceptor supplies the groups with the principal, and
//! they are taken as they are.
//!
//! Resolutions are cached per user for [`CACHE_TTL`] (Hadoop caches for 300 s), so the
//! hot path clones an `Arc` and reads no file.

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use security::Principal;
use tonic::{Request, Status};

use crate::error::{Error, Result};
use crate::permission::Caller;

/// How long a user's resolved groups are reused.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Users cached at most; past it the cache starts over (names are the caller's choice).
const CACHE_MAX: usize = 4096;

/// Where a user's groups come from (Hadoop's `GroupMappingServiceProvider`).
pub trait GroupMapping: Debug + Send + Sync {
    /// The groups of `user`, its primary group first; none for a user it does not know.
    fn groups(&self, user: &str) -> Vec<String>;
}

/// This host's `/etc/passwd` and `/etc/group`.
#[derive(Debug, Clone, Default)]
pub struct UnixGroups;

impl GroupMapping for UnixGroups {
    fn groups(&self, user: &str) -> Vec<String> {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        unix_groups(&read("/etc/passwd"), &read("/etc/group"), user)
    }
}

/// `user`'s groups by the contents of a passwd and a group file.
fn unix_groups(passwd: &str, group: &str, user: &str) -> Vec<String> {
    let Some(gid) = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == user).then(|| f[3].to_owned())
    }) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for l in group.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            continue;
        }
        let member = f[3].split(',').any(|m| m.trim() == user);
        if f[2] == gid {
            out.insert(0, f[0].to_owned());
        } else if member && !out.iter().any(|g| g == f[0]) {
            out.push(f[0].to_owned());
        }
    }
    out
}

/// A fixed mapping read from a file, in front of another mapping for users it does not
/// list.
#[derive(Debug)]
pub struct StaticGroups {
    map: HashMap<String, Vec<String>>,
    fallback: Box<dyn GroupMapping>,
}

impl StaticGroups {
    /// Parses `text`: one `user: group1,group2` per line, `#` comments, blank lines.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the line that is not of that form or holds a
    /// name [`security::check_name`] refuses.
    pub fn parse(text: &str, fallback: Box<dyn GroupMapping>) -> Result<StaticGroups> {
        let mut map = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: String| {
                Error::InvalidArgument(format!("group mapping line {}: {why}", n + 1))
            };
            let (user, groups) =
                line.split_once(':').ok_or_else(|| bad("expected `user: group1,group2`".into()))?;
            let user = user.trim();
            security::check_name(user).map_err(|e| bad(e.to_string()))?;
            let groups: Vec<String> = groups
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(|g| security::check_name(g).map(|()| g.to_owned()))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?;
            map.insert(user.to_owned(), groups);
        }
        Ok(StaticGroups { map, fallback })
    }

    /// Reads and parses a mapping file, in front of this host's groups.
    ///
    /// # Errors
    /// [`Error::Io`] if it can't be read; as [`StaticGroups::parse`].
    pub fn load(path: &Path) -> Result<StaticGroups> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            what: format!("reading the group mapping {}", path.display()),
            source,
        })?;
        StaticGroups::parse(&text, Box::new(UnixGroups))
    }
}

impl GroupMapping for StaticGroups {
    fn groups(&self, user: &str) -> Vec<String> {
        match self.map.get(user) {
            Some(g) => g.clone(),
            None => self.fallback.groups(user),
        }
    }
}

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

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:100::/home/bob:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nalice:x:1000:\nusers:x:100:\nstaff:x:50:alice,bob\nwheel:x:10: alice\n";

    #[test]
    fn unix_groups_put_the_primary_group_first() {
        assert_eq!(unix_groups(PASSWD, GROUP, "alice"), ["alice", "staff", "wheel"]);
        assert_eq!(unix_groups(PASSWD, GROUP, "bob"), ["users", "staff"]);
        assert!(unix_groups(PASSWD, GROUP, "mallory").is_empty());
    }

    #[derive(Debug)]
    struct NoGroups;
    impl GroupMapping for NoGroups {
        fn groups(&self, _: &str) -> Vec<String> {
            Vec::new()
        }
    }

    #[test]
    fn a_static_mapping_and_the_superusers() {
        let text = "# test users\nalice: staff, admins\nbob:\n";
        let m = StaticGroups::parse(text, Box::new(NoGroups)).expect("parse");
        assert_eq!(m.groups("alice"), ["staff", "admins"]);
        assert!(m.groups("bob").is_empty() && m.groups("carol").is_empty());
        assert!(StaticGroups::parse("no colon", Box::new(NoGroups)).is_err());
        assert!(StaticGroups::parse("a: b c", Box::new(NoGroups)).is_err());
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
