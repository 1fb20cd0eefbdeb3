//! Who may do what to the namespace, with HDFS's semantics (`FSPermissionChecker`): every
//! inode has an owner, a group and mode bits (`rwx` for the owner, the group and others,
//! plus the sticky bit `0o1000` on directories).
//!
//! - `x` on every directory on the way to traverse it;
//! - `w` on the deepest existing ancestor to create (mkdir, create, the target of a
//!   rename), `w` on the parent to delete or rename away, `r` to read a file, `r-x` to
//!   list a directory, `w` on a file to change its replication;
//! - a recursive delete needs `rwx` on every non-empty directory below (HDFS checks the
//!   subtree with `FsAction.ALL`);
//! - the sticky bit on a directory: only an entry's owner or the directory's owner may
//!   delete or rename the entry;
//! - chmod by the owner, chown by a superuser only, chgrp by the owner to a group it
//!   belongs to;
//! - a superuser (the user running the master, members of the supergroup) passes every
//!   check.
//!
//! A [`Caller`] is resolved at the gRPC edge ([`crate::identity`]); the checks here are
//! pure functions of the namespace and the caller, run by the core's decision half
//! ([`crate::command`]) and by its read queries, never by [`crate::core::Core::apply_op`]:
//! a replayed record was allowed when it was made.

use std::fmt;

use proto::path::DfsPath;
use smallvec::SmallVec;

use crate::error::{Error, Result};
use crate::ids::InodeId;
use crate::namespace::{Inode, InodeKind, Namespace, ROOT};

/// The sticky bit of a directory's mode.
pub const STICKY: u16 = 0o1000;
/// The highest mode bits an inode may hold (HDFS has no setuid or setgid).
pub const MAX_MODE: u16 = 0o1777;
/// The umask of a client that sends none (HDFS's `fs.permissions.umask-mode`).
pub const DEFAULT_UMASK: u16 = 0o022;

/// A caller as the core sees it: its user, its groups and whether it is a superuser,
/// resolved once at the edge ([`crate::identity::Identities`]) and shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user name.
    pub user: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// The master's superuser, or a member of its supergroup: every check passes.
    pub superuser: bool,
}

impl Caller {
    /// A superuser named `user` (the master's own work, tests, benchmarks).
    pub fn superuser(user: impl Into<String>) -> Caller {
        Caller { user: user.into(), groups: Vec::new(), superuser: true }
    }

    /// A plain user with `groups`.
    pub fn user(user: impl Into<String>, groups: &[&str]) -> Caller {
        let groups = groups.iter().map(|g| (*g).to_owned()).collect();
        Caller { user: user.into(), groups, superuser: false }
    }

    /// Whether it belongs to `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// A set of `rwx` bits asked for (HDFS's `FsAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access(u16);

impl Access {
    /// `r`.
    pub const READ: Access = Access(4);
    /// `w`.
    pub const WRITE: Access = Access(2);
    /// `x`.
    pub const EXECUTE: Access = Access(1);
    /// `r-x`.
    pub const READ_EXECUTE: Access = Access(5);
    /// `rwx`.
    pub const ALL: Access = Access(7);

    /// HDFS's name for it, as denials print it.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "NONE",
            1 => "EXECUTE",
            2 => "WRITE",
            3 => "WRITE_EXECUTE",
            4 => "READ",
            5 => "READ_EXECUTE",
            6 => "READ_WRITE",
            _ => "ALL",
        }
    }
}

/// Checks mode bits a request asks for.
///
/// # Errors
/// [`Error::InvalidArgument`] for bits beyond [`MAX_MODE`].
pub fn check_mode(mode: u16) -> Result<()> {
    if mode > MAX_MODE {
        return Err(Error::InvalidArgument(format!(
            "permission {mode:#o} is outside 0..={MAX_MODE:#o} (rwx for owner, group, others and the sticky bit)"
        )));
    }
    Ok(())
}

/// Checks a umask a request carries.
///
/// # Errors
/// [`Error::InvalidArgument`] for bits beyond `0o777`.
pub fn check_umask(umask: u32) -> Result<u16> {
    u16::try_from(umask)
        .ok()
        .filter(|u| *u <= 0o777)
        .ok_or_else(|| Error::InvalidArgument(format!("umask {umask:#o} is outside 0..=0o777")))
}

/// `rwxr-xr-x`: the nine permission characters of `mode`, the sticky bit as `t` (with
/// others' `x`) or `T` (without), as `ls` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbolic(pub u16);

impl fmt::Display for Symbolic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        let mut out = [b'-'; 9];
        for (i, c) in b"rwxrwxrwx".iter().enumerate() {
            if m & (0o400 >> i) != 0 {
                out[i] = *c;
            }
        }
        if m & STICKY != 0 {
            out[8] = if m & 1 != 0 { b't' } else { b'T' };
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

/// `alice:staff:drwxr-xr-x`, an inode as denials and the audit log describe it.
pub fn describe(ns: &Namespace, inode: &Inode) -> String {
    let kind = if matches!(inode.kind, InodeKind::Dir(_)) { 'd' } else { '-' };
    format!("{}:{}:{kind}{}", ns.owner_of(inode), ns.group_of(inode), Symbolic(inode.permission))
}

/// What an operation asks of the inodes along its path (HDFS's `checkPermission`
/// arguments). Every directory but the last component also needs `x`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Want {
    /// The caller must own the last component.
    pub owner: bool,
    /// Asked of the deepest existing inode above the last component.
    pub ancestor: Option<Access>,
    /// Asked of the last component's parent, if it exists (with `w`: and the sticky bit
    /// of the parent is honoured for the last component).
    pub parent: Option<Access>,
    /// Asked of the last component, if it exists.
    pub access: Option<Access>,
    /// Asked of every non-empty directory at or below the last component.
    pub sub_dirs: Option<Access>,
    /// Asked of every file at or below the last component.
    pub sub_files: Option<Access>,
}

/// The inodes along a path: the root, then each component found, up to the first that
/// is missing (or follows a file). Paths are short: no allocation on the common path.
type Walk = SmallVec<[InodeId; 16]>;

fn walk(ns: &Namespace, path: &DfsPath) -> Walk {
    let mut found = Walk::new();
    found.push(ROOT);
    let mut cur = ROOT;
    for name in path.components() {
        match ns.child(cur, name) {
            Some(id) => {
                found.push(id);
                cur = id;
            }
            None => break,
        }
    }
    found
}

/// Whether `caller` has `access` on `inode` by its mode bits (the owner's, else the
/// group's, else others'; no fall-through, as in POSIX and HDFS).
fn allows(ns: &Namespace, caller: &Caller, inode: &Inode, access: Access) -> bool {
    let mode = inode.permission;
    let bits = if ns.owner_of(inode) == caller.user {
        mode >> 6
    } else if caller.in_group(ns.group_of(inode)) {
        mode >> 3
    } else {
        mode
    } & 0o7;
    bits & access.0 == access.0
}

fn denied(
    ns: &Namespace,
    caller: &Caller,
    op_path: &DfsPath,
    id: InodeId,
    access: Access,
) -> Error {
    let inode = ns.inode(id);
    Error::PermissionDenied {
        path: op_path.to_string(),
        detail: format!(
            "user={}, access={}, inode={} ({})",
            caller.user,
            access.name(),
            ns.path_of(id),
            describe(ns, inode)
        ),
    }
}

fn require(
    ns: &Namespace,
    caller: &Caller,
    op_path: &DfsPath,
    id: InodeId,
    access: Access,
) -> Result<()> {
    if allows(ns, caller, ns.inode(id), access) {
        Ok(())
    } else {
        Err(denied(ns, caller, op_path, id, access))
    }
}

/// Checks `want` for `caller` on `path` (see [`Want`]).
///
/// # Errors
/// [`Error::PermissionDenied`] naming the user, the access and the inode refused.
pub fn check(ns: &Namespace, caller: &Caller, path: &DfsPath, want: Want) -> Result<()> {
    if caller.superuser {
        return Ok(());
    }
    let found = walk(ns, path);
    // Index of the last component in a complete walk: the root is 0.
    let last = path.components().count();
    // Traverse: x on every directory above the last component.
    for &id in found.iter().take(last) {
        if matches!(ns.inode(id).kind, InodeKind::Dir(_)) {
            require(ns, caller, path, id, Access::EXECUTE)?;
        }
    }
    if let Some(access) = want.ancestor {
        let deepest = found[found.len().min(last).max(1) - 1];
        if matches!(ns.inode(deepest).kind, InodeKind::Dir(_)) {
            require(ns, caller, path, deepest, access)?;
        }
    }
    let target = (found.len() == last + 1).then(|| found[last]);
    if let Some(access) = want.parent
        && last >= 1
        && let Some(&parent) = found.get(last - 1)
    {
        require(ns, caller, path, parent, access)?;
        if let Some(target) = target
            && access.0 & Access::WRITE.0 != 0
        {
            sticky(ns, caller, path, parent, target)?;
        }
    }
    let Some(target) = target else { return Ok(()) };
    if let Some(access) = want.access {
        require(ns, caller, path, target, access)?;
    }
    if want.sub_dirs.is_some() || want.sub_files.is_some() {
        subtree(ns, caller, path, target, want)?;
    }
    if want.owner {
        owner(ns, caller, path, target)?;
    }
    Ok(())
}

/// The sticky bit of `parent`: only the entry's owner or the directory's may remove or
/// rename `target`.
fn sticky(
    ns: &Namespace,
    caller: &Caller,
    path: &DfsPath,
    parent: InodeId,
    target: InodeId,
) -> Result<()> {
    let (dir, entry) = (ns.inode(parent), ns.inode(target));
    if dir.permission & STICKY == 0
        || ns.owner_of(dir) == caller.user
        || ns.owner_of(entry) == caller.user
    {
        return Ok(());
    }
    Err(Error::PermissionDenied {
        path: path.to_string(),
        detail: format!(
            "user={} is not the owner of inode={} ({}) in the sticky directory {} ({})",
            caller.user,
            ns.path_of(target),
            describe(ns, entry),
            ns.path_of(parent),
            describe(ns, dir)
        ),
    })
}

/// The caller must own `target`.
fn owner(ns: &Namespace, caller: &Caller, path: &DfsPath, target: InodeId) -> Result<()> {
    let inode = ns.inode(target);
    if ns.owner_of(inode) == caller.user {
        return Ok(());
    }
    Err(Error::PermissionDenied {
        path: path.to_string(),
        detail: format!(
            "user={} is not the owner of inode={} ({})",
            caller.user,
            ns.path_of(target),
            describe(ns, inode)
        ),
    })
}

/// `want.sub_dirs` on every non-empty directory and `want.sub_files` on every file at
/// or below `top`.
fn subtree(
    ns: &Namespace,
    caller: &Caller,
    path: &DfsPath,
    top: InodeId,
    want: Want,
) -> Result<()> {
    let mut stack = vec![top];
    while let Some(id) = stack.pop() {
        let inode = ns.inode(id);
        match &inode.kind {
            InodeKind::Dir(children) if !children.is_empty() => {
                if let Some(access) = want.sub_dirs {
                    require(ns, caller, path, id, access)?;
                }
                stack.extend(ns.children_of(inode));
            }
            InodeKind::Dir(_) => {}
            InodeKind::File(_) => {
                if let Some(access) = want.sub_files {
                    require(ns, caller, path, id, access)?;
                }
            }
        }
    }
    Ok(())
}

/// What chown/chgrp ask beyond owning the inode: a new owner only from a superuser, a
/// new group only one the caller belongs to (HDFS `setOwner`).
///
/// # Errors
/// [`Error::PermissionDenied`].
pub fn check_set_owner(
    ns: &Namespace,
    caller: &Caller,
    path: &DfsPath,
    owner: Option<&str>,
    group: Option<&str>,
) -> Result<()> {
    if caller.superuser {
        return Ok(());
    }
    check(ns, caller, path, Want { owner: true, ..Want::default() })?;
    if let Some(o) = owner
        && o != caller.user
    {
        return Err(Error::PermissionDenied {
            path: path.to_string(),
            detail: format!(
                "user={} is not a superuser: only a superuser changes owners",
                caller.user
            ),
        });
    }
    if let Some(g) = group
        && !caller.in_group(g)
    {
        return Err(Error::PermissionDenied {
            path: path.to_string(),
            detail: format!("user={} does not belong to group {g}", caller.user),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::CreateArgs;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).expect("path")
    }

    /// /alice (alice:staff 755) with f (644) and secret (600); /tmp (root 1777) with
    /// a (alice's); /shared (root:staff 775).
    fn tree() -> Namespace {
        let mut ns = Namespace::new();
        let mk = |ns: &mut Namespace, path: &str, owner: &str, group: &str, mode: u16| {
            ns.mkdir(&p(path), false, owner, 0, 1).expect("mkdir");
            ns.set_owner(&p(path), Some(owner), Some(group)).expect("chown");
            ns.set_permission(&p(path), mode).expect("chmod");
        };
        mk(&mut ns, "/alice", "alice", "staff", 0o755);
        mk(&mut ns, "/tmp", "root", "supergroup", 0o1777);
        mk(&mut ns, "/shared", "root", "staff", 0o775);
        for (f, mode) in [("/alice/f", 0o644), ("/alice/secret", 0o600), ("/tmp/a", 0o644)] {
            let args = CreateArgs {
                replication: 1,
                chunk_size: 1,
                overwrite: false,
                create_parents: false,
                owner: "alice",
                umask: 0,
                client: "c",
                now_ms: 1,
            };
            ns.create(&p(f), &args).expect("create");
            ns.set_permission(&p(f), mode).expect("chmod");
        }
        ns
    }

    fn alice() -> Caller {
        Caller::user("alice", &["staff"])
    }
    fn bob() -> Caller {
        Caller::user("bob", &["bob"])
    }
    fn carol() -> Caller {
        Caller::user("carol", &["staff"])
    }

    const READ: Want = Want {
        access: Some(Access::READ),
        owner: false,
        ancestor: None,
        parent: None,
        sub_dirs: None,
        sub_files: None,
    };
    const DELETE: Want = Want {
        parent: Some(Access::WRITE),
        sub_dirs: Some(Access::ALL),
        owner: false,
        ancestor: None,
        access: None,
        sub_files: None,
    };
    const CREATE: Want = Want {
        ancestor: Some(Access::WRITE),
        owner: false,
        parent: None,
        access: None,
        sub_dirs: None,
        sub_files: None,
    };

    #[test]
    fn modes_print_as_ls_prints_them() {
        assert_eq!(Symbolic(0o755).to_string(), "rwxr-xr-x");
        assert_eq!(Symbolic(0o1777).to_string(), "rwxrwxrwt");
        assert_eq!(Symbolic(0o1770).to_string(), "rwxrwx--T");
        assert_eq!(Symbolic(0).to_string(), "---------");
        assert_eq!(Access::READ_EXECUTE.name(), "READ_EXECUTE");
        assert!(check_mode(0o1777).is_ok() && check_mode(0o2000).is_err());
        assert!(check_umask(0o777).is_ok() && check_umask(0o1000).is_err());
    }

    #[test]
    fn owner_group_and_others_bits_decide_without_falling_through() {
        let ns = tree();
        assert!(check(&ns, &alice(), &p("/alice/secret"), READ).is_ok());
        let err = check(&ns, &bob(), &p("/alice/secret"), READ).expect_err("600");
        assert_eq!(
            err.to_string(),
            "/alice/secret: permission denied: user=bob, access=READ, inode=/alice/secret (alice:staff:-rw-------)"
        );
        assert!(check(&ns, &bob(), &p("/alice/f"), READ).is_ok());
        assert!(check(&ns, &carol(), &p("/shared/x"), CREATE).is_ok(), "group w on 775");
        assert!(check(&ns, &bob(), &p("/shared/x"), CREATE).is_err(), "others r-x on 775");
        // The owner's bits apply to the owner even when the group's would allow more.
        let mut ns = ns;
        ns.set_permission(&p("/shared"), 0o575).expect("chmod");
        ns.set_owner(&p("/shared"), Some("carol"), None).expect("chown");
        assert!(check(&ns, &carol(), &p("/shared/x"), CREATE).is_err());
    }

    #[test]
    fn traversal_needs_x_on_every_directory_above() {
        let mut ns = tree();
        ns.set_permission(&p("/alice"), 0o750).expect("chmod");
        let err = check(&ns, &bob(), &p("/alice/f"), Want::default()).expect_err("no x");
        assert!(
            err.to_string().contains("access=EXECUTE, inode=/alice (alice:staff:drwxr-x---)"),
            "{err}"
        );
        assert!(check(&ns, &carol(), &p("/alice/f"), READ).is_ok(), "group r-x");
        // x on the last component is not asked: a stat of a 700 directory is fine.
        ns.set_permission(&p("/alice"), 0o700).expect("chmod");
        assert!(check(&ns, &bob(), &p("/alice"), Want::default()).is_ok());
    }

    #[test]
    fn create_needs_w_on_the_deepest_existing_ancestor() {
        let ns = tree();
        assert!(check(&ns, &alice(), &p("/alice/new/deeper/f"), CREATE).is_ok());
        let err = check(&ns, &bob(), &p("/alice/new/deeper/f"), CREATE).expect_err("w");
        assert!(err.to_string().contains("access=WRITE, inode=/alice "), "{err}");
        assert!(check(&ns, &bob(), &p("/tmp/b"), CREATE).is_ok());
        assert!(check(&ns, &bob(), &p("/b"), CREATE).is_err(), "the root is 755 root's");
    }

    #[test]
    fn delete_needs_w_on_the_parent_the_sticky_bit_and_the_subtree() {
        let mut ns = tree();
        assert!(check(&ns, &bob(), &p("/alice/f"), DELETE).is_err());
        let err = check(&ns, &bob(), &p("/tmp/a"), DELETE).expect_err("sticky");
        assert!(err.to_string().contains("sticky directory /tmp"), "{err}");
        assert!(check(&ns, &alice(), &p("/tmp/a"), DELETE).is_ok(), "its owner");
        ns.set_owner(&p("/tmp"), Some("bob"), None).expect("chown");
        assert!(check(&ns, &bob(), &p("/tmp/a"), DELETE).is_ok(), "the directory's owner");
        // A non-empty directory below needs rwx; an empty one nothing.
        ns.mkdir(&p("/tmp/d/e"), true, "bob", 0, 1).expect("mkdir");
        ns.set_permission(&p("/tmp/d/e"), 0o500).expect("chmod");
        assert!(check(&ns, &bob(), &p("/tmp/d"), DELETE).is_ok(), "e is empty");
        ns.mkdir(&p("/tmp/d/e/f"), false, "bob", 0, 1).expect("mkdir");
        let err = check(&ns, &bob(), &p("/tmp/d"), DELETE).expect_err("e not writable");
        assert!(err.to_string().contains("access=ALL, inode=/tmp/d/e "), "{err}");
    }

    #[test]
    fn superusers_pass_everything_and_set_owner_has_its_own_rules() {
        let ns = tree();
        assert!(check(&ns, &Caller::superuser("root"), &p("/alice/secret"), READ).is_ok());
        let owner_only = Want { owner: true, ..Want::default() };
        assert!(check(&ns, &alice(), &p("/alice/f"), owner_only).is_ok());
        assert!(check(&ns, &bob(), &p("/alice/f"), owner_only).is_err());
        let f = p("/alice/f");
        assert!(check_set_owner(&ns, &alice(), &f, None, Some("staff")).is_ok());
        assert!(check_set_owner(&ns, &alice(), &f, None, Some("wheel")).is_err());
        assert!(check_set_owner(&ns, &alice(), &f, Some("bob"), None).is_err());
        assert!(check_set_owner(&ns, &alice(), &f, Some("alice"), None).is_ok());
        assert!(check_set_owner(&ns, &bob(), &f, None, Some("bob")).is_err(), "not the owner");
        assert!(check_set_owner(&ns, &Caller::superuser("root"), &f, Some("bob"), None).is_ok());
    }
}
