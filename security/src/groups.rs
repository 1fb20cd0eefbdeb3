//! Where a simple-mode caller's groups come from (Hadoop's `GroupMappingServiceProvider`):
//! a request names only its user, and each server that checks permissions (the master
//! for files, the coordinator for jobs) resolves its groups the same way, so one user is
//! in the same groups everywhere.
//!
//! [`UnixGroups`] reads this host's `/etc/passwd` (primary group) and `/etc/group`
//! (supplementary), as Hadoop's shell-based mapping does; [`StaticGroups`] is a fixed
//! mapping from a file (`--group-mapping`, lines `user: group1,group2`) in front of it,
//! as Hadoop's static overrides are. A user unknown to both has no groups. In token mode
//! the groups come with the token and no mapping is consulted.

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::Path;

use crate::check_name;

/// Why a group mapping file can't be used.
#[derive(Debug, thiserror::Error)]
pub enum GroupMappingError {
    /// It can't be read.
    #[error("reading the group mapping {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `user: group1,group2` of acceptable names.
    #[error("group mapping line {line}: {why}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
}

/// Where a user's groups come from.
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
    /// [`GroupMappingError::Line`] naming the line that is not of that form or holds a
    /// name [`check_name`] refuses.
    pub fn parse(
        text: &str,
        fallback: Box<dyn GroupMapping>,
    ) -> Result<StaticGroups, GroupMappingError> {
        let mut map = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: String| GroupMappingError::Line { line: n + 1, why };
            let (user, groups) =
                line.split_once(':').ok_or_else(|| bad("expected `user: group1,group2`".into()))?;
            let user = user.trim();
            check_name(user).map_err(|e| bad(e.to_string()))?;
            let groups: Vec<String> = groups
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(|g| check_name(g).map(|()| g.to_owned()))
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?;
            map.insert(user.to_owned(), groups);
        }
        Ok(StaticGroups { map, fallback })
    }

    /// Reads and parses a mapping file, in front of this host's groups.
    ///
    /// # Errors
    /// [`GroupMappingError::Io`] if it can't be read; as [`StaticGroups::parse`].
    pub fn load(path: &Path) -> Result<StaticGroups, GroupMappingError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| GroupMappingError::Io { path: path.display().to_string(), source })?;
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

/// The mapping a server's `--group-mapping` flag configures: the file's in front of this
/// host's, or this host's alone.
///
/// # Errors
/// As [`StaticGroups::load`].
pub fn from_flag(file: Option<&Path>) -> Result<Box<dyn GroupMapping>, GroupMappingError> {
    Ok(match file {
        Some(f) => Box::new(StaticGroups::load(f)?),
        None => Box::new(UnixGroups),
    })
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
    fn a_static_mapping_in_front_of_another() {
        let text = "# test users\nalice: staff, admins\nbob:\n";
        let m = StaticGroups::parse(text, Box::new(NoGroups)).expect("parse");
        assert_eq!(m.groups("alice"), ["staff", "admins"]);
        assert!(m.groups("bob").is_empty() && m.groups("carol").is_empty());
        let err = StaticGroups::parse("no colon", Box::new(NoGroups)).expect_err("no colon");
        assert_eq!(err.to_string(), "group mapping line 1: expected `user: group1,group2`");
        assert!(StaticGroups::parse("a: b c", Box::new(NoGroups)).is_err());
        assert!(StaticGroups::parse("a\u{7}: b", Box::new(NoGroups)).is_err());
    }
}
