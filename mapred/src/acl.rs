//! Access control lists in Hadoop's shape (`mapreduce.cluster.administrators`,
//! `mapreduce.job.acl-view-job`): `"user1,user2 group1,group2"`, users before the first
//! space and groups after it, `*` for everyone, and an empty or blank list for no one.
//! The coordinator's `--admins` is one: its members may see and kill every job.

use std::collections::BTreeSet;
use std::fmt;

use security::Principal;

use crate::error::{Error, Result};

/// Who a list lets in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    everyone: bool,
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
}

impl AccessList {
    /// A list letting no one in.
    pub fn nobody() -> AccessList {
        AccessList::default()
    }

    /// Parses `"user1,user2 group1,group2"` (either part may be empty: `" ops"` is the
    /// group `ops` alone), or `*` for everyone.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a name [`security::check_name`] refuses, or more
    /// than the two space-separated parts.
    pub fn parse(text: &str) -> Result<AccessList> {
        if text.trim() == "*" {
            return Ok(AccessList { everyone: true, ..AccessList::default() });
        }
        let text = text.trim_end();
        let (users, groups) = text.split_once(' ').unwrap_or((text, ""));
        let names = |part: &str, what: &str| -> Result<BTreeSet<String>> {
            part.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| {
                    security::check_name(n).map(|()| n.to_owned()).map_err(|e| {
                        Error::InvalidArgument(format!("access list {text:?}: {what} {e}"))
                    })
                })
                .collect()
        };
        Ok(AccessList {
            everyone: false,
            users: names(users, "user")?,
            groups: names(groups, "group")?,
        })
    }

    /// The same list with `user` added (the coordinator's own user is always an admin).
    pub fn with_user(mut self, user: &str) -> AccessList {
        self.users.insert(user.to_owned());
        self
    }

    /// Whether `p` is in: named, in a named group, or the list is `*`.
    pub fn allows(&self, p: &Principal) -> bool {
        self.everyone
            || self.users.contains(&p.user)
            || p.groups.iter().any(|g| self.groups.contains(g))
    }
}

impl fmt::Display for AccessList {
    /// The list in the form [`AccessList::parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.everyone {
            return f.write_str("*");
        }
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
        write!(f, "{} {}", join(&self.users), join(&self.groups))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(user: &str, groups: &[&str]) -> Principal {
        Principal { user: user.into(), groups: groups.iter().map(|g| (*g).to_owned()).collect() }
    }

    #[test]
    fn users_before_the_space_groups_after() {
        let acl = AccessList::parse("alice,bob ops,wheel").expect("parse");
        assert!(acl.allows(&p("alice", &[])));
        assert!(acl.allows(&p("carol", &["staff", "ops"])));
        assert!(!acl.allows(&p("carol", &["staff"])));
        assert!(!acl.allows(&p("ops", &[])), "a group's name is not a user's");
        assert_eq!(acl.to_string(), "alice,bob ops,wheel");
        let groups_only = AccessList::parse(" ops").expect("parse");
        assert!(groups_only.allows(&p("x", &["ops"])) && !groups_only.allows(&p("ops", &[])));
    }

    #[test]
    fn star_is_everyone_and_blank_is_no_one() {
        assert!(AccessList::parse("*").expect("parse").allows(&p("anyone", &[])));
        for blank in ["", " ", "  "] {
            assert!(!AccessList::parse(blank).expect("parse").allows(&p("anyone", &["g"])));
        }
        let acl = AccessList::nobody().with_user("mapred");
        assert!(acl.allows(&p("mapred", &[])) && !acl.allows(&p("alice", &[])));
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["a:b", "alice bob carol", "a\u{1b}[31m"] {
            assert!(AccessList::parse(bad).is_err(), "{bad:?}");
        }
    }
}
