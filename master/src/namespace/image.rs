//! Whole-namespace images: the tree walked parent-first (what a checkpoint writes), the
//! tree rebuilt from such a walk (what recovery reads), and a canonical text dump used to
//! compare two namespaces (a recovered one against the live one) in tests and debugging.
//!
//! Inode ids are kept as they are, so the chunk map's file ids stay valid across a
//! checkpoint, and `next_inode` is restored so replayed creates get the same ids again.

use std::collections::BTreeMap;

use super::{FileMeta, Inode, InodeId, InodeKind, Namespace, ROOT};

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
        if let InodeKind::Dir(children) = &inode.kind {
            self.stack.extend(children.values().rev().copied());
        }
        Some((id, inode))
    }
}

impl Namespace {
    /// Every inode, the root first and each directory before its children.
    pub fn parent_first(&self) -> ParentFirst<'_> {
        ParentFirst { ns: self, stack: vec![ROOT] }
    }

    /// The id the next new inode will get.
    pub fn next_inode(&self) -> u64 {
        self.next_inode
    }

    /// A canonical listing: one line per inode in depth-first name order with every
    /// persistent field, so two namespaces are equal exactly when their dumps are.
    pub fn dump(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![(String::from("/"), ROOT)];
        while let Some((path, id)) = stack.pop() {
            let i = self.inode(id);
            let common =
                format!("{path} owner={} perm={:o} mtime={}", i.owner, i.permission, i.mtime_ms);
            match &i.kind {
                InodeKind::Dir(children) => {
                    out.push(format!("{common} dir"));
                    let base = if path == "/" { String::new() } else { path.clone() };
                    for (name, &child) in children.iter().rev() {
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
}

impl Default for NamespaceBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl NamespaceBuilder {
    /// A builder holding just the root.
    pub fn new() -> NamespaceBuilder {
        NamespaceBuilder { ns: Namespace::new() }
    }

    /// Adds one inode; the root's image replaces the root's attributes.
    ///
    /// # Errors
    /// A message saying why the image does not fit the tree built so far (unknown or
    /// non-directory parent, repeated id or name, a root that is a file).
    pub fn insert(&mut self, img: InodeImage) -> Result<(), String> {
        let owner = self.ns.intern(&img.owner);
        if img.id == ROOT {
            if img.file.is_some() {
                return Err("the root is recorded as a file".into());
            }
            let root = self.ns.inode_mut(ROOT);
            root.mtime_ms = img.mtime_ms;
            root.owner = owner;
            root.permission = img.permission;
            return Ok(());
        }
        if self.ns.inodes.contains_key(&img.id) {
            return Err(format!("inode {} appears twice", img.id.0));
        }
        if img.name.is_empty() || img.name.contains('/') {
            return Err(format!("inode {} has the invalid name {:?}", img.id.0, img.name));
        }
        match self.ns.inodes.get_mut(&img.parent).map(|p| &mut p.kind) {
            Some(InodeKind::Dir(children)) => {
                if children.insert(img.name.as_str().into(), img.id).is_some() {
                    return Err(format!(
                        "inode {} repeats the name {:?} in directory {}",
                        img.id.0, img.name, img.parent.0
                    ));
                }
            }
            Some(InodeKind::File(_)) => {
                return Err(format!("inode {}'s parent {} is a file", img.id.0, img.parent.0));
            }
            None => {
                return Err(format!(
                    "inode {}'s parent {} is not recorded before it",
                    img.id.0, img.parent.0
                ));
            }
        }
        let kind = match img.file {
            Some(f) => {
                self.ns.files += 1;
                InodeKind::File(f)
            }
            None => {
                self.ns.dirs += 1;
                InodeKind::Dir(BTreeMap::new())
            }
        };
        self.ns.next_inode = self.ns.next_inode.max(img.id.0 + 1);
        self.ns.inodes.insert(
            img.id,
            Inode {
                parent: img.parent,
                name: img.name.into(),
                mtime_ms: img.mtime_ms,
                owner,
                permission: img.permission,
                kind,
            },
        );
        Ok(())
    }

    /// The namespace, whose next inode id is `next_inode` (at least one above every id).
    pub fn finish(mut self, next_inode: u64) -> Namespace {
        self.ns.next_inode = self.ns.next_inode.max(next_inode);
        self.ns
    }
}

#[cfg(test)]
mod tests {
    use proto::path::DfsPath;

    use super::*;
    use crate::chunks::ChunkHandle;
    use crate::namespace::CreateArgs;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).expect("path")
    }

    fn image_of(i: &Inode, id: InodeId) -> InodeImage {
        InodeImage {
            id,
            parent: i.parent,
            name: i.name.to_string(),
            mtime_ms: i.mtime_ms,
            owner: i.owner.to_string(),
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
        ns.mkdir(&p("/a/b/c"), true, "alice", 5).expect("mkdir");
        let args = CreateArgs {
            replication: 2,
            chunk_size: 100,
            overwrite: false,
            create_parents: true,
            owner: "bob",
            client: "w",
            now_ms: 6,
        };
        ns.create(&p("/a/f"), &args).expect("create");
        ns.add_chunk(&p("/a/f"), "w", None, ChunkHandle(3), 7).expect("chunk");
        ns.create(&p("/z/g"), &args).expect("create");
        ns.complete(&p("/z/g"), "w", None, 8).expect("complete");
        let mut b = NamespaceBuilder::new();
        for (id, inode) in ns.parent_first() {
            b.insert(image_of(inode, id)).expect("insert");
        }
        let back = b.finish(ns.next_inode());
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
