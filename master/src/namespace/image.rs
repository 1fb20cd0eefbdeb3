//! Whole-namespace images: the tree walked parent-first (what a checkpoint writes), the
//! tree rebuilt from such a walk (what recovery reads), and a canonical text dump used to
//! compare two namespaces (a recovered one against the live one) in tests and debugging.
//!
//! Inode ids are not kept across a checkpoint: the builder gives each inode a fresh,
//! dense slot and says which id it got ([`NamespaceBuilder::insert`]), so the reader
//! files the chunks under the new id. Nothing persistent refers to an inode by id (log
//! records name paths), so replay after a restart needs no particular ids.

use std::collections::HashMap;

use proto::path::{MAX_PATH_LEN, check_component};

use super::{Children, FileMeta, Group, Inode, InodeId, InodeKind, Namespace, ROOT};

/// One inode as a checkpoint stores it.
#[derive(Debug, Clone)]
pub struct InodeImage {
    /// Its id.
    pub id: InodeId,
    /// Its parent's id (the root names itself).
    pub parent: InodeId,
    /// Name within the parent (empty for the root).
    pub name: String,
    /// Last modification, ms since the Unix epoch.
    pub mtime_ms: i64,
    /// Owner.
    pub owner: String,
    /// Group.
    pub group: String,
    /// Permission bits.
    pub permission: u16,
    /// File metadata; `None` for a directory (its children come as their own images).
    pub file: Option<FileMeta>,
}

/// Iterator over inodes, every directory before its children.
#[derive(Debug)]
pub struct ParentFirst<'a> {
    ns: &'a Namespace,
    stack: Vec<InodeId>,
}

impl<'a> Iterator for ParentFirst<'a> {
    type Item = (InodeId, &'a Inode);

    fn next(&mut self) -> Option<Self::Item> {
        let id = self.stack.pop()?;
        let inode = self.ns.inode(id);
        self.stack.extend(self.ns.children_of(inode));
        Some((id, inode))
    }
}

impl Namespace {
    /// Every inode, the root first and each directory before its children.
    pub fn parent_first(&self) -> ParentFirst<'_> {
        ParentFirst { ns: self, stack: vec![ROOT] }
    }

    /// One above the highest inode slot in use (kept in checkpoints as a size hint).
    pub fn next_inode(&self) -> u64 {
        self.slots.len() as u64
    }

    /// A canonical listing: one line per inode in depth-first name order with every
    /// persistent field, so two namespaces are equal exactly when their dumps are.
    pub fn dump(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![(String::from("/"), ROOT)];
        while let Some((path, id)) = stack.pop() {
            let i = self.inode(id);
            let common = format!(
                "{path} owner={} group={} perm={:o} mtime={}",
                self.owner_of(i),
                self.group_of(i),
                i.permission,
                i.mtime_ms
            );
            match &i.kind {
                InodeKind::Dir(_) => {
                    out.push(format!("{common} dir"));
                    let base = if path == "/" { String::new() } else { path.clone() };
                    for (name, child) in self.sorted_children(i).into_iter().rev() {
                        stack.push((format!("{base}/{name}"), child));
                    }
                }
                InodeKind::File(f) => {
                    let chunks: Vec<String> =
                        f.chunks.iter().map(|h| format!("{:#x}", h.0)).collect();
                    out.push(format!(
                        "{common} file repl={} chunk_size={} length={} writer={} chunks=[{}]",
                        f.replication,
                        f.chunk_size,
                        f.length,
                        f.writer.as_deref().unwrap_or("-"),
                        chunks.join(",")
                    ));
                }
            }
        }
        out
    }
}

/// Rebuilds a namespace from images given parent-first, checking each one fits.
#[derive(Debug)]
pub struct NamespaceBuilder {
    ns: Namespace,
    /// Directories by the id the images give them, to the id they have here and the
    /// length of their path below the root (0 for the root itself).
    dirs: HashMap<u64, (InodeId, usize)>,
}

impl Default for NamespaceBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl NamespaceBuilder {
    /// A builder holding just the root.
    pub fn new() -> NamespaceBuilder {
        NamespaceBuilder { ns: Namespace::new(), dirs: HashMap::from([(ROOT.0, (ROOT, 0))]) }
    }

    /// Adds one inode and returns the id it has in the rebuilt namespace; the root's image
    /// replaces the root's attributes.
    ///
    /// # Errors
    /// A message saying why the image does not fit the tree built so far (unknown or
    /// non-directory parent, repeated id or name, a root that is a file), or names what
    /// no path can (a name that is not a valid component, a path over [`MAX_PATH_LEN`]):
    /// the namespace never holds a path that no request could name.
    pub fn insert(&mut self, img: InodeImage) -> Result<InodeId, String> {
        let owner = self.ns.intern(&img.owner);
        let group = Group(self.ns.intern(&img.group).0);
        if img.id == ROOT {
            if img.file.is_some() {
                return Err("the root is recorded as a file".into());
            }
            let root = self.ns.inode_mut(ROOT);
            root.mtime_ms = img.mtime_ms;
            root.owner = owner;
            root.group = group;
            root.permission = img.permission;
            return Ok(ROOT);
        }
        if let Err(reason) = check_component(&img.name) {
            return Err(format!(
                "inode {} has the invalid name {:?}: {reason}",
                img.id.0, img.name
            ));
        }
        let Some(&(parent, parent_len)) = self.dirs.get(&img.parent.0) else {
            return Err(format!(
                "inode {}'s parent {} is not a directory recorded before it",
                img.id.0, img.parent.0
            ));
        };
        if self.dirs.contains_key(&img.id.0) {
            return Err(format!("inode {} appears twice", img.id.0));
        }
        let path_len = parent_len + 1 + img.name.len();
        if path_len > MAX_PATH_LEN {
            return Err(format!(
                "inode {}'s path is {path_len} bytes long, over the limit of {MAX_PATH_LEN}",
                img.id.0
            ));
        }
        if self.ns.child(parent, &img.name).is_some() {
            return Err(format!(
                "inode {} repeats the name {:?} in directory {}",
                img.id.0, img.name, img.parent.0
            ));
        }
        let is_dir = img.file.is_none();
        let kind = match img.file {
            Some(f) => {
                self.ns.files += 1;
                InodeKind::File(f)
            }
            None => {
                self.ns.dirs += 1;
                InodeKind::Dir(Children::default())
            }
        };
        let id = self.ns.place(Inode {
            parent,
            name: img.name.as_str().into(),
            mtime_ms: img.mtime_ms,
            owner,
            group,
            generation: 0,
            permission: img.permission,
            kind,
        });
        self.ns.link(parent, id);
        if is_dir {
            self.dirs.insert(img.id.0, (id, path_len));
        }
        Ok(id)
    }

    /// Room for `inodes` more inodes, when the count is known up front.
    pub fn reserve(&mut self, inodes: usize) {
        self.ns.slots.reserve(inodes);
    }

    /// The namespace.
    pub fn finish(self) -> Namespace {
        self.ns
    }
}

#[cfg(test)]
mod tests {
    use proto::path::DfsPath;

    use super::*;
    use crate::ids::ChunkHandle;
    use crate::namespace::CreateArgs;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).expect("path")
    }

    fn image_of(ns: &Namespace, i: &Inode, id: InodeId) -> InodeImage {
        InodeImage {
            id,
            parent: i.parent,
            name: i.name.to_string(),
            mtime_ms: i.mtime_ms,
            owner: ns.owner_of(i).to_string(),
            group: ns.group_of(i).to_string(),
            permission: i.permission,
            file: match &i.kind {
                InodeKind::File(f) => Some(f.clone()),
                InodeKind::Dir(_) => None,
            },
        }
    }

    #[test]
    fn a_walk_rebuilds_the_same_namespace() {
        let mut ns = Namespace::new();
        ns.mkdir(&p("/a/b/c"), true, "alice", 0o002, 5).expect("mkdir");
        let args = CreateArgs {
            replication: 2,
            chunk_size: 100,
            overwrite: false,
            create_parents: true,
            owner: "bob",
            umask: 0o027,
            client: "w",
            now_ms: 6,
        };
        ns.create(&p("/a/f"), &args).expect("create");
        ns.add_chunk(&p("/a/f"), "w", None, ChunkHandle(3), 7).expect("chunk");
        ns.create(&p("/z/g"), &args).expect("create");
        ns.complete(&p("/z/g"), "w", None, 8).expect("complete");
        let mut b = NamespaceBuilder::new();
        for (id, inode) in ns.parent_first() {
            b.insert(image_of(&ns, inode, id)).expect("insert");
        }
        let back = b.finish();
        assert_eq!(back.dump(), ns.dump());
        assert_eq!((back.file_count(), back.dir_count()), (ns.file_count(), ns.dir_count()));
        assert_eq!(back.next_inode(), ns.next_inode());
        assert!(ns.dump().iter().any(|l| l.starts_with("/a/f ") && l.contains("writer=w")));
    }

    #[test]
    fn misfits_are_refused() {
        let mut b = NamespaceBuilder::new();
        let dir = |id, parent, name: &str| InodeImage {
            id: InodeId(id),
            parent: InodeId(parent),
            name: name.into(),
            mtime_ms: 0,
            owner: "u".into(),
            group: "g".into(),
            permission: 0o755,
            file: None,
        };
        b.insert(dir(2, 1, "a")).expect("a");
        assert!(b.insert(dir(2, 1, "b")).is_err(), "repeated id");
        assert!(b.insert(dir(3, 1, "a")).is_err(), "repeated name");
        assert!(b.insert(dir(4, 9, "c")).is_err(), "parent not yet seen");
        assert!(b.insert(dir(5, 1, "")).is_err(), "empty name");
    }
}
