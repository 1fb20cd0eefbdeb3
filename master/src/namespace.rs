//! The namespace: a tree of directories and files held in memory, as in GFS and HDFS.
//!
//! This module owns names, the directory tree and per-file metadata (replication factor,
//! chunk size, the ordered list of chunk handles, length, writer). It does no I/O and knows
//! nothing of replicas: where chunks live is the business of [`crate::chunks`] and
//! [`crate::cluster`]. Every mutation is a method whose result depends only on its
//! arguments and the current tree (timestamps and chunk handles are passed in), so that
//! an operation log can record the arguments and replay them to the same state.

use std::collections::HashMap;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use proto::path::{DfsPath, MAX_PATH_LEN};
use smallvec::SmallVec;

use crate::error::{Error, Result};
use crate::ids::ChunkHandle;

mod image;
mod name;
#[cfg(test)]
pub(crate) mod proptests;

pub use image::{InodeImage, NamespaceBuilder};
pub use name::Name;

pub use crate::ids::InodeId;

/// The root directory's inode.
pub const ROOT: InodeId = InodeId(1);

/// Permission bits of the root of a new namespace (HDFS's too).
pub const DIR_PERMISSION: u16 = 0o755;
/// Group of the root of a new namespace, and of inodes in images and logs written before
/// inodes had groups (HDFS's default `dfs.permissions.superusergroup`).
pub const DEFAULT_GROUP: &str = "supergroup";

/// A page of a directory listing ([`Namespace::list_page`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Children (or the file itself), with their paths, in name order.
    pub entries: Vec<(DfsPath, InodeId)>,
    /// Children after the page's last entry (0: the listing is complete).
    pub remaining: u64,
}

/// An interned owner name (most inodes share a few owners); see [`Namespace::owner_of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner(u32);

/// An interned group name, from the same table as owners; see [`Namespace::group_of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group(u32);

/// A directory or a file.
#[derive(Debug, Clone)]
pub struct Inode {
    /// Parent directory (the root is its own parent).
    pub parent: InodeId,
    /// Name within the parent (empty for the root).
    pub name: Name,
    /// Last modification, milliseconds since the Unix epoch.
    pub mtime_ms: i64,
    /// Owner's user name, interned.
    pub owner: Owner,
    /// Group name, interned.
    pub group: Group,
    /// Generation of the inode's slot (see [`InodeId`]).
    generation: u32,
    /// Permission bits: rwx for owner, group and others, and the sticky bit
    /// ([`crate::permission`]).
    pub permission: u16,
    /// Directory- or file-specific data.
    pub kind: InodeKind,
}

/// A directory's children: a hash table of their slots, hashed and compared by the
/// name each child holds, so a name is stored once (in its inode), not also as a key.
/// Unordered: listings sort by name when they are asked for.
#[derive(Debug, Clone, Default)]
pub struct Children(HashTable<u32>);

impl Children {
    /// Number of children.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the directory is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What an inode is.
#[derive(Debug, Clone)]
pub enum InodeKind {
    /// A directory and its children.
    Dir(Children),
    /// A file.
    File(FileMeta),
}

/// A file's chunk handles: one held inline, more on the heap.
pub type ChunkList = SmallVec<[ChunkHandle; 1]>;

/// Metadata of a file.
#[derive(Debug, Clone)]
pub struct FileMeta {
    /// Replicas each chunk should have.
    pub replication: u16,
    /// Largest size of one chunk.
    pub chunk_size: u64,
    /// The file's chunks in order.
    pub chunks: ChunkList,
    /// Bytes in the file's finished chunks (a chunk being written counts once finished).
    pub length: u64,
    /// The client holding the file open for writing, if any.
    pub writer: Option<Box<str>>,
}

/// Arguments of [`Namespace::create`].
#[derive(Debug, Clone)]
pub struct CreateArgs<'a> {
    /// Replication factor of the new file.
    pub replication: u16,
    /// Chunk size of the new file.
    pub chunk_size: u64,
    /// Replace an existing file.
    pub overwrite: bool,
    /// Create missing parent directories.
    pub create_parents: bool,
    /// Owner of the new file (and of parents it creates).
    pub owner: &'a str,
    /// The creator's umask: the file gets `0o666 & !umask`, parents it creates
    /// `0o777 & !umask | 0o300` (HDFS).
    pub umask: u16,
    /// Client that will write the file.
    pub client: &'a str,
    /// Creation time, milliseconds since the Unix epoch.
    pub now_ms: i64,
}

/// One entry of the inode table.
#[derive(Debug, Clone)]
enum Slot {
    Used(Inode),
    /// A free slot: the generation its next inode gets, and the next free slot (0: none).
    Free {
        generation: u32,
        next: u32,
    },
}

/// The directory tree and file metadata. Cloned whole for a checkpoint snapshot.
///
/// Inodes live in one table indexed by slot (no hash map keyed by id: its buckets cost
/// more than the inodes at millions of files); freed slots are reused, which is why an
/// [`InodeId`] carries the slot's generation.
#[derive(Debug, Clone)]
pub struct Namespace {
    slots: Vec<Slot>,
    /// First free slot (0: none, slot 0 is never used).
    free: u32,
    /// Owner and group names, interned (a name is both as often as not).
    owners: Vec<Box<str>>,
    owner_ids: HashMap<Box<str>, u32>,
    hasher: DefaultHashBuilder,
    files: u64,
    dirs: u64,
}

impl Default for Namespace {
    fn default() -> Self {
        Self::new()
    }
}

impl Namespace {
    /// An empty namespace: just `/`, owned by `root` and group [`DEFAULT_GROUP`], mode
    /// [`DIR_PERMISSION`] ([`Namespace::set_root_owner`] names the master's superuser).
    pub fn new() -> Namespace {
        let mut ns = Namespace {
            slots: vec![Slot::Free { generation: 0, next: 0 }],
            free: 0,
            owners: Vec::new(),
            owner_ids: HashMap::new(),
            hasher: DefaultHashBuilder::default(),
            files: 0,
            dirs: 1,
        };
        let owner = ns.intern("root");
        let group = Group(ns.intern(DEFAULT_GROUP).0);
        ns.slots.push(Slot::Used(Inode {
            parent: ROOT,
            name: Name::default(),
            mtime_ms: 0,
            owner,
            group,
            generation: 0,
            permission: DIR_PERMISSION,
            kind: InodeKind::Dir(Children::default()),
        }));
        ns
    }

    /// Gives the root of a new namespace its owner and group (the superuser and the
    /// supergroup, as HDFS's format does). Not logged: a namespace rebuilt from the log
    /// alone gets them from the configuration again, one with a checkpoint from it.
    pub fn set_root_owner(&mut self, owner: &str, group: &str) {
        let (owner, group) = (self.intern(owner), Group(self.intern(group).0));
        let root = self.inode_mut(ROOT);
        root.owner = owner;
        root.group = group;
    }

    /// Number of files.
    pub fn file_count(&self) -> u64 {
        self.files
    }

    /// Number of directories, the root included.
    pub fn dir_count(&self) -> u64 {
        self.dirs
    }

    /// The inode with this id, if it exists.
    pub fn get(&self, id: InodeId) -> Option<&Inode> {
        match self.slots.get(id.slot()) {
            Some(Slot::Used(i)) if i.generation == id.generation() => Some(i),
            _ => None,
        }
    }

    /// The inode with this id.
    ///
    /// # Panics
    /// If the id is not in the tree: ids come only from this namespace, so that is a bug.
    pub fn inode(&self, id: InodeId) -> &Inode {
        match self.get(id) {
            Some(i) => i,
            None => panic!("inode {id:?} missing from the namespace"), // faulty code
        }
    }

    fn inode_mut(&mut self, id: InodeId) -> &mut Inode {
        match self.slots.get_mut(id.slot()) {
            Some(Slot::Used(i)) if i.generation == id.generation() => i,
            _ => panic!("inode {id:?} missing from the namespace"), // faulty code
        }
    }

    /// The inode in `slot`, which a directory lists as a child.
    fn at(&self, slot: u32) -> &Inode {
        match self.slots.get(slot as usize) {
            Some(Slot::Used(i)) => i,
            _ => panic!("directory entry {slot} names a free inode slot"), // faulty code
        }
    }

    fn id_at(&self, slot: u32) -> InodeId {
        InodeId::new(slot, self.at(slot).generation)
    }

    /// The owner's name.
    pub fn owner_of(&self, inode: &Inode) -> &str {
        self.owners.get(inode.owner.0 as usize).map_or("", |o| o)
    }

    /// The group's name.
    pub fn group_of(&self, inode: &Inode) -> &str {
        self.owners.get(inode.group.0 as usize).map_or("", |o| o)
    }

    /// The file metadata of inode `id`, if it exists and is a file.
    pub fn file(&self, id: InodeId) -> Option<&FileMeta> {
        match &self.get(id)?.kind {
            InodeKind::File(f) => Some(f),
            InodeKind::Dir(_) => None,
        }
    }

    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    /// The children of directory `dir` as ids, in no particular order.
    pub(crate) fn children_of(&self, dir: &Inode) -> Vec<InodeId> {
        match &dir.kind {
            InodeKind::Dir(c) => c.0.iter().map(|&s| self.id_at(s)).collect(),
            InodeKind::File(_) => Vec::new(),
        }
    }

    /// The children of `dir` with their names, sorted by name.
    fn sorted_children(&self, dir: &Inode) -> Vec<(&str, InodeId)> {
        let InodeKind::Dir(c) = &dir.kind else { return Vec::new() };
        let mut out: Vec<(&str, InodeId)> =
            c.0.iter()
                .map(|&s| {
                    let i = self.at(s);
                    (i.name.as_str(), InodeId::new(s, i.generation))
                })
                .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// The length of the longest path below `id`, relative to it (`/b/c` below it counts
    /// 4; 0 for a file or an empty directory): what moving `id` adds to its new path.
    /// Walks the whole subtree, so a rename of a directory costs a pass over what it holds.
    fn longest_below(&self, id: InodeId) -> usize {
        let mut longest = 0;
        let mut stack: Vec<(&Inode, usize)> = vec![(self.inode(id), 0)];
        while let Some((inode, len)) = stack.pop() {
            longest = longest.max(len);
            if let InodeKind::Dir(c) = &inode.kind {
                for &slot in c.0.iter() {
                    let child = self.at(slot);
                    stack.push((child, len + 1 + child.name.as_str().len()));
                }
            }
        }
        longest
    }

    /// Enters `child` (already holding its name) in directory `dir`'s table.
    fn link(&mut self, dir: InodeId, child: InodeId) {
        let hash = self.hash(self.inode(child).name.as_str());
        let InodeKind::Dir(mut table) =
            std::mem::replace(&mut self.inode_mut(dir).kind, InodeKind::Dir(Children::default()))
        else {
            panic!("inode {dir:?} is not a directory"); // faulty code
        };
        let slot = child.slot() as u32;
        table.0.insert_unique(hash, slot, |&s| self.hasher.hash_one(self.at(s).name.as_str()));
        self.inode_mut(dir).kind = InodeKind::Dir(table);
    }

    /// Removes the entry `name` from directory `dir`'s table.
    fn unlink(&mut self, dir: InodeId, name: &str) {
        let hash = self.hash(name);
        let InodeKind::Dir(mut table) =
            std::mem::replace(&mut self.inode_mut(dir).kind, InodeKind::Dir(Children::default()))
        else {
            return;
        };
        if let Ok(e) = table.0.find_entry(hash, |&s| self.at(s).name.as_str() == name) {
            e.remove();
        }
        self.inode_mut(dir).kind = InodeKind::Dir(table);
    }

    /// Takes a free slot (or a new one) for `inode`, stamping it with the slot's generation.
    fn place(&mut self, mut inode: Inode) -> InodeId {
        if self.free != 0 {
            let slot = self.free;
            let Slot::Free { generation, next } = self.slots[slot as usize] else {
                panic!("free list names used slot {slot}"); // faulty code
            };
            self.free = next;
            inode.generation = generation;
            self.slots[slot as usize] = Slot::Used(inode);
            return InodeId::new(slot, generation);
        }
        let slot = u32::try_from(self.slots.len()).unwrap_or_else(|_| {
            panic!("more than {} inodes", u32::MAX) // beyond any memory this runs in
        });
        inode.generation = 0;
        self.slots.push(Slot::Used(inode));
        InodeId::new(slot, 0)
    }

    /// Frees `id`'s slot (its next inode gets a newer generation) and returns the inode.
    fn release(&mut self, id: InodeId) -> Option<Inode> {
        self.get(id)?;
        let slot = id.slot();
        let freed = Slot::Free { generation: id.generation().wrapping_add(1), next: self.free };
        self.free = slot as u32;
        match std::mem::replace(&mut self.slots[slot], freed) {
            Slot::Used(i) => Some(i),
            Slot::Free { .. } => None,
        }
    }

    /// Resolves a path to its inode.
    ///
    /// # Errors
    /// [`Error::NotFound`] if a component is missing, [`Error::NotADirectory`] if a
    /// component other than the last is a file.
    pub fn lookup(&self, path: &DfsPath) -> Result<InodeId> {
        let mut cur = ROOT;
        for (depth, name) in path.components().enumerate() {
            if let InodeKind::File(_) = self.inode(cur).kind {
                // The component walked so far names a file.
                let walked: Vec<&str> = path.components().take(depth).collect();
                return Err(Error::NotADirectory(format!("/{}", walked.join("/"))));
            }
            cur = self.child(cur, name).ok_or_else(|| Error::NotFound(path.to_string()))?;
        }
        Ok(cur)
    }

    /// The absolute path of an inode.
    pub fn path_of(&self, mut id: InodeId) -> DfsPath {
        let mut names = Vec::new();
        while id != ROOT {
            let inode = self.inode(id);
            names.push(inode.name.as_str());
            id = inode.parent;
        }
        names.reverse();
        let joined = format!("/{}", names.join("/"));
        // Names were validated when they entered the tree.
        DfsPath::parse(&joined).unwrap_or_else(|e| panic!("corrupt name in namespace: {e}")) // faulty code
    }

    /// The children of a directory, in name order.
    ///
    /// # Errors
    /// As [`Namespace::lookup`]; for a file, returns just the file.
    pub fn list(&self, path: &DfsPath) -> Result<Vec<(DfsPath, InodeId)>> {
        Ok(self.list_page(path, "", usize::MAX)?.entries)
    }

    /// One page of a listing (HDFS's `getListing` with `startAfter`): the first `limit`
    /// children of a directory whose names sort bytewise strictly after `start_after`
    /// (empty: from the first), in name order, and how many children follow them.
    ///
    /// The cursor is a name, so a directory changing between pages never makes a caller
    /// skip a child that existed throughout or see one twice; `start_after` need not exist
    /// (deleted since the last page): the page starts where it would sort. A file lists
    /// as itself on the first page and as nothing after. A `limit` of 0 counts as 1.
    ///
    /// Children sit in a hash table, not in name order: a page is one pass over them
    /// (picking the `limit` smallest after the cursor), not a sort of the directory.
    ///
    /// # Errors
    /// As [`Namespace::lookup`].
    pub fn list_page(&self, path: &DfsPath, start_after: &str, limit: usize) -> Result<ListPage> {
        let id = self.lookup(path)?;
        let inode = self.inode(id);
        let InodeKind::Dir(children) = &inode.kind else {
            let entries =
                if start_after.is_empty() { vec![(path.clone(), id)] } else { Vec::new() };
            return Ok(ListPage { entries, remaining: 0 });
        };
        let limit = limit.max(1);
        let mut after: Vec<(&str, InodeId)> = children
            .0
            .iter()
            .filter_map(|&slot| {
                let child = self.at(slot);
                let name = child.name.as_str();
                (name > start_after).then(|| (name, InodeId::new(slot, child.generation)))
            })
            .collect();
        let total = after.len();
        if total > limit {
            // Names in a directory are unique, so the order is total.
            after.select_nth_unstable_by(limit - 1, |a, b| a.0.cmp(b.0));
            after.truncate(limit);
        }
        after.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let remaining = (total - after.len()) as u64;
        let entries = after
            .into_iter()
            .map(|(name, child)| Ok((path.join(name)?, child)))
            .collect::<Result<Vec<_>>>()?;
        Ok(ListPage { entries, remaining })
    }

    /// Every file at or below `path`, with its path, in depth-first name order.
    ///
    /// # Errors
    /// As [`Namespace::lookup`].
    pub fn files_under(&self, path: &DfsPath) -> Result<Vec<(DfsPath, InodeId)>> {
        let id = self.lookup(path)?;
        let mut out = Vec::new();
        let mut stack = vec![(path.clone(), id)];
        while let Some((p, id)) = stack.pop() {
            let inode = self.inode(id);
            match &inode.kind {
                InodeKind::File(_) => out.push((p, id)),
                InodeKind::Dir(_) => {
                    for (name, child) in self.sorted_children(inode).into_iter().rev() {
                        stack.push((p.join(name)?, child));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Counts (files, directories) at or below `path`, `path` itself included.
    ///
    /// # Errors
    /// As [`Namespace::lookup`].
    pub fn count_under(&self, path: &DfsPath) -> Result<(u64, u64)> {
        let mut stack = vec![self.lookup(path)?];
        let (mut files, mut dirs) = (0, 0);
        while let Some(id) = stack.pop() {
            let inode = self.inode(id);
            match &inode.kind {
                InodeKind::File(_) => files += 1,
                InodeKind::Dir(_) => {
                    dirs += 1;
                    stack.extend(self.children_of(inode));
                }
            }
        }
        Ok((files, dirs))
    }

    fn intern(&mut self, owner: &str) -> Owner {
        if let Some(&o) = self.owner_ids.get(owner) {
            return Owner(o);
        }
        let o = self.owners.len() as u32;
        self.owners.push(owner.into());
        self.owner_ids.insert(owner.into(), o);
        Owner(o)
    }

    /// A new inode in `parent`, owned by `owner`, in the parent's group (HDFS: BSD
    /// group semantics), with `permission`.
    fn alloc(
        &mut self,
        parent: InodeId,
        name: &str,
        owner: &str,
        permission: u16,
        now_ms: i64,
        kind: InodeKind,
    ) -> InodeId {
        match kind {
            InodeKind::Dir(_) => self.dirs += 1,
            InodeKind::File(_) => self.files += 1,
        }
        let owner = self.intern(owner);
        let group = self.inode(parent).group;
        let id = self.place(Inode {
            parent,
            name: name.into(),
            mtime_ms: now_ms,
            owner,
            group,
            generation: 0,
            permission,
            kind,
        });
        self.link(parent, id);
        self.inode_mut(parent).mtime_ms = now_ms;
        id
    }

    /// The parent directory of `path`, creating missing ones (owned by `owner`, mode
    /// `dir_mode`) when `create` is set.
    fn parent_dir(
        &mut self,
        path: &DfsPath,
        create: bool,
        owner: &str,
        dir_mode: u16,
        now_ms: i64,
    ) -> Result<InodeId> {
        let Some(parent) = path.parent() else {
            return Err(Error::Refused {
                path: path.to_string(),
                reason: "the root has no parent",
            });
        };
        if create {
            self.make_dirs(&parent, true, owner, (dir_mode, dir_mode), now_ms)?;
        }
        let id = self.lookup(&parent)?;
        match self.inode(id).kind {
            InodeKind::Dir(_) => Ok(id),
            InodeKind::File(_) => Err(Error::NotADirectory(parent.to_string())),
        }
    }

    /// The entry `name` of directory `dir`, if any.
    pub(crate) fn child(&self, dir: InodeId, name: &str) -> Option<InodeId> {
        let InodeKind::Dir(children) = &self.inode(dir).kind else { return None };
        let slot = *children.0.find(self.hash(name), |&s| self.at(s).name.as_str() == name)?;
        Some(self.id_at(slot))
    }

    /// Creates a directory (with `parents`: also missing ancestors, and no error when it
    /// exists already, like `mkdir -p`).
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when something is at `path` (without `parents`, or a file
    /// with it), [`Error::NotFound`] for a missing parent without `parents`,
    /// [`Error::NotADirectory`] when an ancestor is a file.
    ///
    /// The directory gets `0o777 & !umask`; missing parents also `u+wx` (HDFS), so their
    /// creator can go on creating below them whatever its umask.
    pub fn mkdir(
        &mut self,
        path: &DfsPath,
        parents: bool,
        owner: &str,
        umask: u16,
        now_ms: i64,
    ) -> Result<()> {
        let mode = 0o777 & !umask;
        self.make_dirs(path, parents, owner, (mode, mode | 0o300), now_ms)
    }

    /// [`Namespace::mkdir`] with the modes of the directory and of missing parents given.
    fn make_dirs(
        &mut self,
        path: &DfsPath,
        parents: bool,
        owner: &str,
        (mode, parent_mode): (u16, u16),
        now_ms: i64,
    ) -> Result<()> {
        if parents {
            let mut cur = ROOT;
            let mut walked = DfsPath::root();
            for name in path.components() {
                walked = walked.join(name)?;
                cur = match self.child(cur, name) {
                    Some(id) => match self.inode(id).kind {
                        InodeKind::Dir(_) => id,
                        InodeKind::File(_) if walked == *path => {
                            return Err(Error::AlreadyExists(walked.to_string()));
                        }
                        InodeKind::File(_) => return Err(Error::NotADirectory(walked.to_string())),
                    },
                    None => {
                        let m = if walked == *path { mode } else { parent_mode };
                        self.alloc(cur, name, owner, m, now_ms, InodeKind::Dir(Children::default()))
                    }
                };
            }
            return Ok(());
        }
        if path.is_root() {
            return Err(Error::AlreadyExists(path.to_string()));
        }
        let parent = self.parent_dir(path, false, owner, mode, now_ms)?;
        if self.child(parent, path.name()).is_some() {
            return Err(Error::AlreadyExists(path.to_string()));
        }
        self.alloc(parent, path.name(), owner, mode, now_ms, InodeKind::Dir(Children::default()));
        Ok(())
    }

    /// Creates a file open for writing by `args.client`. Returns the new inode and the
    /// chunks of the file it replaced (with `overwrite`), which the caller must release.
    ///
    /// # Errors
    /// [`Error::IsADirectory`] if a directory is at `path`; [`Error::AlreadyExists`] if a
    /// file is there without `overwrite`; [`Error::LeaseHeld`] if another client is writing
    /// it; parent errors as in [`Namespace::mkdir`]; [`Error::InvalidArgument`] for a zero
    /// replication factor or chunk size.
    pub fn create(
        &mut self,
        path: &DfsPath,
        args: &CreateArgs<'_>,
    ) -> Result<(InodeId, Vec<ChunkHandle>)> {
        if args.replication == 0 || args.chunk_size == 0 {
            return Err(Error::InvalidArgument(format!(
                "{path}: replication and chunk size must be positive"
            )));
        }
        let dir_mode = (0o777 & !args.umask) | 0o300;
        let parent =
            self.parent_dir(path, args.create_parents, args.owner, dir_mode, args.now_ms)?;
        let mut released = Vec::new();
        if let Some(existing) = self.child(parent, path.name()) {
            match &self.inode(existing).kind {
                InodeKind::Dir(_) => return Err(Error::IsADirectory(path.to_string())),
                InodeKind::File(f) => {
                    if let Some(holder) = f.writer.as_deref().filter(|h| *h != args.client) {
                        return Err(Error::LeaseHeld {
                            path: path.to_string(),
                            holder: holder.to_owned(),
                        });
                    }
                    if !args.overwrite {
                        return Err(Error::AlreadyExists(path.to_string()));
                    }
                }
            }
            released = self.remove(existing);
        }
        let meta = FileMeta {
            replication: args.replication,
            chunk_size: args.chunk_size,
            chunks: ChunkList::new(),
            length: 0,
            writer: Some(args.client.into()),
        };
        let mode = 0o666 & !args.umask;
        let id =
            self.alloc(parent, path.name(), args.owner, mode, args.now_ms, InodeKind::File(meta));
        Ok((id, released))
    }

    /// The file at `path`, checked to be open for writing by `client`.
    ///
    /// # Errors
    /// Lookup errors, [`Error::IsADirectory`], or [`Error::NotLeaseHolder`].
    pub fn open_for_write(&self, path: &DfsPath, client: &str) -> Result<InodeId> {
        let id = self.lookup(path)?;
        match &self.inode(id).kind {
            InodeKind::Dir(_) => Err(Error::IsADirectory(path.to_string())),
            InodeKind::File(f) if f.writer.as_deref() == Some(client) => Ok(id),
            InodeKind::File(_) => {
                Err(Error::NotLeaseHolder { path: path.to_string(), client: client.to_owned() })
            }
        }
    }

    fn file_mut(&mut self, id: InodeId) -> &mut FileMeta {
        match &mut self.inode_mut(id).kind {
            InodeKind::File(f) => f,
            InodeKind::Dir(_) => panic!("inode {id:?} is not a file"), // faulty code
        }
    }

    /// Finishes the file's last chunk at `length` bytes (if `last` names it), checking that
    /// `last` really is the file's last chunk and that `length` fits the chunk size.
    fn finish_last_chunk(
        &mut self,
        path: &DfsPath,
        id: InodeId,
        last: Option<(ChunkHandle, u64)>,
    ) -> Result<()> {
        let f = self.file_mut(id);
        match (last, f.chunks.last()) {
            (None, None) => Ok(()),
            (Some((h, len)), Some(&tail)) if h == tail => {
                if len == 0 || len > f.chunk_size {
                    return Err(Error::InvalidArgument(format!(
                        "{path}: chunk {:#x} length {len} outside 1..={}",
                        h.0, f.chunk_size
                    )));
                }
                // Earlier chunks are full by construction; the file length is theirs plus this one.
                f.length = (f.chunks.len() as u64 - 1) * f.chunk_size + len;
                Ok(())
            }
            (Some((h, _)), _) => Err(Error::WrongChunk { path: path.to_string(), handle: h.0 }),
            (None, Some(&tail)) => {
                Err(Error::WrongChunk { path: path.to_string(), handle: tail.0 })
            }
        }
    }

    /// Appends chunk `new` to a file open for writing by `client`, after finishing the
    /// previous chunk at its final length. Every chunk but the last is full, so a previous
    /// chunk shorter than the chunk size is refused. Returns the file and the new chunk's
    /// offset.
    ///
    /// # Errors
    /// As [`Namespace::open_for_write`], [`Error::WrongChunk`] if `previous` is not the
    /// file's last chunk, [`Error::InvalidArgument`] if its length is not the chunk size.
    pub fn add_chunk(
        &mut self,
        path: &DfsPath,
        client: &str,
        previous: Option<(ChunkHandle, u64)>,
        new: ChunkHandle,
        now_ms: i64,
    ) -> Result<(InodeId, u64)> {
        let id = self.open_for_write(path, client)?;
        let chunk_size = self.file_mut(id).chunk_size;
        if let Some((h, len)) = previous
            && len != chunk_size
        {
            return Err(Error::InvalidArgument(format!(
                "{path}: chunk {:#x} ended at {len} bytes, short of the chunk size {chunk_size}",
                h.0
            )));
        }
        self.finish_last_chunk(path, id, previous)?;
        self.inode_mut(id).mtime_ms = now_ms;
        let f = self.file_mut(id);
        let offset = f.chunks.len() as u64 * f.chunk_size;
        f.chunks.push(new);
        Ok((id, offset))
    }

    /// Finishes the last chunk (if any) at `length` and closes the file: the lease is
    /// released and the length final.
    ///
    /// # Errors
    /// As [`Namespace::add_chunk`].
    pub fn complete(
        &mut self,
        path: &DfsPath,
        client: &str,
        last: Option<(ChunkHandle, u64)>,
        now_ms: i64,
    ) -> Result<InodeId> {
        let id = self.open_for_write(path, client)?;
        self.finish_last_chunk(path, id, last)?;
        self.inode_mut(id).mtime_ms = now_ms;
        self.file_mut(id).writer = None;
        Ok(id)
    }

    /// Removes the file's last chunk, still being written, from a file open by `client`
    /// (lease recovery found no byte of it on any replica).
    ///
    /// # Errors
    /// As [`Namespace::open_for_write`]; [`Error::WrongChunk`] if `handle` is not the
    /// file's last chunk.
    pub fn abandon_last_chunk(
        &mut self,
        path: &DfsPath,
        client: &str,
        handle: ChunkHandle,
    ) -> Result<InodeId> {
        let id = self.open_for_write(path, client)?;
        let f = self.file_mut(id);
        if f.chunks.last() != Some(&handle) {
            return Err(Error::WrongChunk { path: path.to_string(), handle: handle.0 });
        }
        f.chunks.pop();
        f.length = f.chunks.len() as u64 * f.chunk_size;
        Ok(id)
    }

    /// Every file open for writing, with its writer (in no particular order).
    pub fn open_files(&self) -> Vec<(InodeId, &str)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| match s {
                Slot::Used(
                    inode @ Inode {
                        kind: InodeKind::File(FileMeta { writer: Some(w), .. }), ..
                    },
                ) => Some((InodeId::new(slot as u32, inode.generation), &**w)),
                _ => None,
            })
            .collect()
    }

    /// Renames `src` to `dst`; an existing directory at `dst` receives `src` under its own
    /// name (as `mv` does). Returns the path `src` now has.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a missing `src` or parent of `dst`, [`Error::AlreadyExists`]
    /// if the final target exists, [`Error::Refused`] for the root or a move into itself.
    pub fn rename(&mut self, src: &DfsPath, dst: &DfsPath, now_ms: i64) -> Result<DfsPath> {
        if src.is_root() {
            return Err(Error::Refused { path: src.to_string(), reason: "cannot rename the root" });
        }
        let id = self.lookup(src)?;
        let mut target = dst.clone();
        if let Ok(existing) = self.lookup(dst)
            && matches!(self.inode(existing).kind, InodeKind::Dir(_))
            && existing != id
        {
            target = dst.join(src.name())?;
        }
        if target == *src {
            return Ok(target);
        }
        if src.is_ancestor_of(&target) {
            return Err(Error::Refused {
                path: dst.to_string(),
                reason: "cannot move a directory into itself",
            });
        }
        let new_parent = self.parent_dir(&target, false, "", 0, now_ms)?;
        if self.child(new_parent, target.name()).is_some() {
            return Err(Error::AlreadyExists(target.to_string()));
        }
        // Every path below the moved directory must stay within the limit too: the tree
        // never holds a path that no request could name (and `path_of` relies on it).
        // Only a longer name can push them over, so the walk is skipped otherwise.
        let longer = target.as_str().len() > src.as_str().len();
        let deepest = if longer { target.as_str().len() + self.longest_below(id) } else { 0 };
        if deepest > MAX_PATH_LEN {
            return Err(Error::InvalidArgument(format!(
                "renaming {src} to {target} would make paths below it {deepest} bytes long, over the limit of {MAX_PATH_LEN}"
            )));
        }
        let old_parent = self.inode(id).parent;
        // Out of the old directory under the old name, into the new one under the new.
        self.unlink(old_parent, src.name());
        let inode = self.inode_mut(id);
        inode.parent = new_parent;
        inode.name = target.name().into();
        self.link(new_parent, id);
        self.inode_mut(old_parent).mtime_ms = now_ms;
        self.inode_mut(new_parent).mtime_ms = now_ms;
        Ok(target)
    }

    /// Deletes `path` (a non-empty directory only with `recursive`). Returns the chunks of
    /// every file removed, which the caller must release.
    ///
    /// # Errors
    /// Lookup errors, [`Error::DirectoryNotEmpty`], [`Error::Refused`] for the root.
    pub fn delete(
        &mut self,
        path: &DfsPath,
        recursive: bool,
        now_ms: i64,
    ) -> Result<Vec<ChunkHandle>> {
        if path.is_root() {
            return Err(Error::Refused {
                path: path.to_string(),
                reason: "cannot delete the root",
            });
        }
        let id = self.lookup(path)?;
        if let InodeKind::Dir(children) = &self.inode(id).kind
            && !children.is_empty()
            && !recursive
        {
            return Err(Error::DirectoryNotEmpty(path.to_string()));
        }
        let parent = self.inode(id).parent;
        self.inode_mut(parent).mtime_ms = now_ms;
        Ok(self.remove(id))
    }

    /// Unlinks `id` from its parent and drops it and everything below it.
    fn remove(&mut self, id: InodeId) -> Vec<ChunkHandle> {
        let parent = self.inode(id).parent;
        let name = self.inode(id).name.clone();
        self.unlink(parent, name.as_str());
        let mut released = Vec::new();
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            if let Some(InodeKind::Dir(_)) = self.get(id).map(|i| &i.kind) {
                stack.extend(self.children_of(self.inode(id)));
            }
            let Some(inode) = self.release(id) else { continue };
            match inode.kind {
                InodeKind::File(f) => {
                    self.files -= 1;
                    released.extend(f.chunks);
                }
                InodeKind::Dir(_) => self.dirs -= 1,
            }
        }
        released
    }

    /// Sets the permission bits of `path` (chmod). Returns its inode.
    ///
    /// # Errors
    /// Lookup errors; [`Error::InvalidArgument`] for bits beyond `0o1777`.
    pub fn set_permission(&mut self, path: &DfsPath, permission: u16) -> Result<InodeId> {
        crate::permission::check_mode(permission)?;
        let id = self.lookup(path)?;
        self.inode_mut(id).permission = permission;
        Ok(id)
    }

    /// Sets the owner and/or the group of `path` (chown, chgrp). Returns its inode.
    ///
    /// # Errors
    /// Lookup errors.
    pub fn set_owner(
        &mut self,
        path: &DfsPath,
        owner: Option<&str>,
        group: Option<&str>,
    ) -> Result<InodeId> {
        let id = self.lookup(path)?;
        let owner = owner.map(|o| self.intern(o));
        let group = group.map(|g| Group(self.intern(g).0));
        let inode = self.inode_mut(id);
        if let Some(o) = owner {
            inode.owner = o;
        }
        if let Some(g) = group {
            inode.group = g;
        }
        Ok(id)
    }

    /// Sets the replication factor of the file at `path`, or of every file below the
    /// directory at `path`. Returns the files changed.
    ///
    /// # Errors
    /// Lookup errors; [`Error::InvalidArgument`] for a factor of 0.
    pub fn set_replication(&mut self, path: &DfsPath, replication: u16) -> Result<Vec<InodeId>> {
        if replication == 0 {
            return Err(Error::InvalidArgument(format!("{path}: replication must be positive")));
        }
        let files = self.files_under(path)?;
        for (_, id) in &files {
            self.file_mut(*id).replication = replication;
        }
        Ok(files.into_iter().map(|(_, id)| id).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).expect("valid path")
    }

    fn args(client: &str) -> CreateArgs<'_> {
        CreateArgs {
            replication: 3,
            chunk_size: 100,
            overwrite: false,
            create_parents: false,
            owner: "alice",
            umask: 0o022,
            client,
            now_ms: 1,
        }
    }

    fn ns_with(paths: &[&str]) -> Namespace {
        let mut ns = Namespace::new();
        for path in paths {
            if let Some(dir) = path.strip_suffix('/') {
                ns.mkdir(&p(dir), true, "alice", 0o022, 1).expect("mkdir");
            } else {
                ns.create(&p(path), &CreateArgs { create_parents: true, ..args("c") })
                    .expect("create");
                ns.complete(&p(path), "c", None, 1).expect("complete");
            }
        }
        ns
    }

    #[test]
    fn mkdir_needs_parent_unless_p() {
        let mut ns = Namespace::new();
        assert!(matches!(ns.mkdir(&p("/a/b"), false, "u", 0o022, 1), Err(Error::NotFound(_))));
        ns.mkdir(&p("/a/b"), true, "u", 0o022, 1).expect("mkdir -p");
        ns.mkdir(&p("/a/b"), true, "u", 0o022, 1).expect("mkdir -p is idempotent");
        assert!(matches!(ns.mkdir(&p("/a/b"), false, "u", 0o022, 1), Err(Error::AlreadyExists(_))));
        assert_eq!(ns.dir_count(), 3);
    }

    #[test]
    fn mkdir_through_a_file_fails() {
        let mut ns = ns_with(&["/f"]);
        assert!(matches!(ns.mkdir(&p("/f/x"), true, "u", 0o022, 1), Err(Error::NotADirectory(_))));
        assert!(matches!(ns.mkdir(&p("/f"), true, "u", 0o022, 1), Err(Error::AlreadyExists(_))));
        assert!(matches!(ns.mkdir(&p("/f/x"), false, "u", 0o022, 1), Err(Error::NotADirectory(_))));
    }

    #[test]
    fn create_checks_existing_and_leases() {
        let mut ns = ns_with(&["/d/", "/d/f"]);
        assert!(matches!(ns.create(&p("/d/f"), &args("c")), Err(Error::AlreadyExists(_))));
        assert!(matches!(ns.create(&p("/d"), &args("c")), Err(Error::IsADirectory(_))));
        assert!(matches!(ns.create(&p("/nope/f"), &args("c")), Err(Error::NotFound(_))));
        ns.create(&p("/d/g"), &args("w1")).expect("create");
        assert!(matches!(
            ns.create(&p("/d/g"), &CreateArgs { overwrite: true, ..args("w2") }),
            Err(Error::LeaseHeld { .. })
        ));
        assert!(matches!(
            ns.add_chunk(&p("/d/g"), "w2", None, ChunkHandle(9), 1),
            Err(Error::NotLeaseHolder { .. })
        ));
    }

    #[test]
    fn chunks_and_length() {
        let mut ns = Namespace::new();
        let f = p("/f");
        ns.create(&f, &args("c")).expect("create");
        let (_, off) = ns.add_chunk(&f, "c", None, ChunkHandle(1), 2).expect("first");
        assert_eq!(off, 0);
        assert!(matches!(
            ns.add_chunk(&f, "c", Some((ChunkHandle(1), 50)), ChunkHandle(2), 2),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            ns.add_chunk(&f, "c", Some((ChunkHandle(7), 100)), ChunkHandle(2), 2),
            Err(Error::WrongChunk { .. })
        ));
        let (_, off) =
            ns.add_chunk(&f, "c", Some((ChunkHandle(1), 100)), ChunkHandle(2), 2).expect("second");
        assert_eq!(off, 100);
        let id = ns.complete(&f, "c", Some((ChunkHandle(2), 1)), 3).expect("complete");
        let meta = ns.file(id).expect("file");
        assert_eq!(meta.length, 101);
        assert_eq!(&meta.chunks[..], &[ChunkHandle(1), ChunkHandle(2)]);
        assert!(meta.writer.is_none());
        assert!(matches!(ns.complete(&f, "c", None, 4), Err(Error::NotLeaseHolder { .. })));
    }

    #[test]
    fn overwrite_releases_old_chunks() {
        let mut ns = Namespace::new();
        let f = p("/f");
        ns.create(&f, &args("c")).expect("create");
        ns.add_chunk(&f, "c", None, ChunkHandle(5), 1).expect("chunk");
        ns.complete(&f, "c", Some((ChunkHandle(5), 10)), 1).expect("complete");
        let (_, released) =
            ns.create(&f, &CreateArgs { overwrite: true, ..args("c") }).expect("overwrite");
        assert_eq!(released, vec![ChunkHandle(5)]);
        assert_eq!(ns.file_count(), 1);
    }

    #[test]
    fn a_rename_never_makes_a_path_below_it_too_long() {
        // /d/<name>/<name>/... down to a file whose path is one byte under the limit.
        let name = "n".repeat(100);
        let mut deep = String::from("/d");
        while deep.len() + 2 * (1 + name.len()) < MAX_PATH_LEN {
            deep = format!("{deep}/{name}");
        }
        let file = format!("{deep}/{}", "f".repeat(MAX_PATH_LEN - deep.len() - 2));
        assert_eq!(file.len(), MAX_PATH_LEN - 1);
        let mut ns = ns_with(&[&file, "/e/"]);
        let longer = "/d-with-a-much-longer-name";
        let err = ns.rename(&p("/d"), &p(longer), 2).expect_err("too long below");
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains("over the limit"), "{err}");
        // Nothing moved, and every path is still within the limit.
        let id = ns.lookup(&p(&file)).expect("still there");
        assert_eq!(ns.path_of(id).as_str(), file);
        // Into a directory: the moved name joins the target, which counts too.
        assert!(ns.rename(&p("/d"), &p("/e"), 2).is_err());
        // A rename that keeps within the limit goes through.
        ns.rename(&p("/d"), &p("/x"), 2).expect("shorter");
        let moved = format!("/x{}", &file[2..]);
        assert_eq!(ns.path_of(ns.lookup(&p(&moved)).expect("moved")).as_str(), moved);
    }

    #[test]
    fn rename_semantics() {
        let mut ns = ns_with(&["/a/", "/b/", "/a/f", "/a/g"]);
        assert_eq!(ns.rename(&p("/a/f"), &p("/b"), 1).expect("into dir"), p("/b/f"));
        assert!(ns.lookup(&p("/b/f")).is_ok());
        assert!(matches!(ns.lookup(&p("/a/f")), Err(Error::NotFound(_))));
        assert_eq!(ns.rename(&p("/a/g"), &p("/a/h"), 1).expect("rename"), p("/a/h"));
        assert!(matches!(ns.rename(&p("/a/h"), &p("/b/f"), 1), Err(Error::AlreadyExists(_))));
        assert!(matches!(ns.rename(&p("/a"), &p("/a/sub"), 1), Err(Error::Refused { .. })));
        assert!(ns.rename(&p("/a"), &p("/a"), 1).is_ok());
        assert!(matches!(ns.rename(&p("/missing"), &p("/x"), 1), Err(Error::NotFound(_))));
        assert!(matches!(ns.rename(&p("/a/h"), &p("/nope/x"), 1), Err(Error::NotFound(_))));
        assert!(matches!(ns.rename(&p("/"), &p("/x"), 1), Err(Error::Refused { .. })));
        ns.rename(&p("/a"), &p("/b"), 1).expect("dir into dir");
        assert_eq!(ns.path_of(ns.lookup(&p("/b/a/h")).expect("moved")), p("/b/a/h"));
    }

    #[test]
    fn delete_semantics() {
        let mut ns = ns_with(&["/d/e/", "/d/f"]);
        assert!(matches!(ns.delete(&p("/d"), false, 1), Err(Error::DirectoryNotEmpty(_))));
        assert!(ns.lookup(&p("/d/f")).is_ok());
        assert!(matches!(ns.delete(&p("/"), true, 1), Err(Error::Refused { .. })));
        ns.delete(&p("/d/e"), false, 1).expect("empty dir");
        ns.delete(&p("/d"), true, 1).expect("recursive");
        assert_eq!((ns.file_count(), ns.dir_count()), (0, 1));
        assert!(matches!(ns.delete(&p("/d"), true, 1), Err(Error::NotFound(_))));
    }

    #[test]
    fn listing_and_walks() {
        let ns = ns_with(&["/a/x/", "/a/b", "/a/x/c", "/z"]);
        let names: Vec<String> =
            ns.list(&p("/a")).expect("list").into_iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(names, ["/a/b", "/a/x"]);
        let files: Vec<String> = ns
            .files_under(&p("/"))
            .expect("walk")
            .into_iter()
            .map(|(p, _)| p.to_string())
            .collect();
        assert_eq!(files, ["/a/b", "/a/x/c", "/z"]);
        assert_eq!(ns.count_under(&p("/a")).expect("count"), (2, 2));
        assert_eq!(ns.list(&p("/z")).expect("file").len(), 1);
    }

    /// The names of a page's entries and its remaining count.
    fn page(ns: &Namespace, dir: &str, after: &str, limit: usize) -> (Vec<String>, u64) {
        let page = ns.list_page(&p(dir), after, limit).expect("page");
        (page.entries.into_iter().map(|(p, _)| p.to_string()).collect(), page.remaining)
    }

    #[test]
    fn listing_pages_end_where_they_should() {
        let none: Vec<String> = Vec::new();
        let ns = ns_with(&["/e/", "/d/a", "/d/b", "/d/c", "/d/d", "/d/e/", "/d/f"]);
        assert_eq!(page(&ns, "/e", "", 3), (none.clone(), 0), "an empty directory");
        // Six children, three a page: the second page says nothing remains, so there
        // is no third, empty, page to ask for.
        assert_eq!(page(&ns, "/d", "", 3), (vec!["/d/a".into(), "/d/b".into(), "/d/c".into()], 3));
        assert_eq!(page(&ns, "/d", "c", 3), (vec!["/d/d".into(), "/d/e".into(), "/d/f".into()], 0));
        assert_eq!(page(&ns, "/d", "", 6).1, 0, "exactly one full page");
        assert_eq!(page(&ns, "/d", "", 7).0.len(), 6);
        // Past the end, or at the last name.
        assert_eq!(page(&ns, "/d", "f", 3), (none.clone(), 0));
        assert_eq!(page(&ns, "/d", "zzz", 3), (none.clone(), 0));
        // A cursor between names starts at the next one; a limit of 0 is 1.
        assert_eq!(page(&ns, "/d", "bb", 2), (vec!["/d/c".into(), "/d/d".into()], 2));
        assert_eq!(page(&ns, "/d", "", 0), (vec!["/d/a".into()], 5));
        // A file lists as itself on the first page only.
        assert_eq!(page(&ns, "/d/a", "", 3), (vec!["/d/a".into()], 0));
        assert_eq!(page(&ns, "/d/a", "a", 3), (none, 0));
        assert!(matches!(ns.list_page(&p("/nope"), "", 3), Err(Error::NotFound(_))));
    }

    #[test]
    fn a_deleted_cursor_pages_on_from_where_it_sorted() {
        let mut ns = ns_with(&["/d/a", "/d/b", "/d/c", "/d/d", "/d/e"]);
        assert_eq!(page(&ns, "/d", "", 2).0, ["/d/a", "/d/b"]);
        // Between pages: the cursor's own entry goes, one appears before the cursor (not
        // listed: as HDFS, a listing is not a snapshot) and one after it (listed).
        ns.delete(&p("/d/b"), false, 2).expect("delete");
        for new in ["/d/a2", "/d/c2"] {
            ns.create(&p(new), &args("c")).expect("create");
        }
        assert_eq!(page(&ns, "/d", "b", 2), (vec!["/d/c".into(), "/d/c2".into()], 2));
        assert_eq!(page(&ns, "/d", "c2", 2), (vec!["/d/d".into(), "/d/e".into()], 0));
    }

    #[test]
    fn pages_of_any_size_add_up_to_the_whole_listing() {
        let names: Vec<String> = (0..40).map(|i| format!("/d/{}", (i * 7919) % 1000)).collect();
        let paths: Vec<&str> = names.iter().map(String::as_str).collect();
        let ns = ns_with(&paths);
        let whole: Vec<String> =
            ns.list(&p("/d")).expect("list").into_iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(whole.len(), 40);
        for limit in [1, 2, 3, 7, 39, 40, 41] {
            let (mut got, mut after) = (Vec::new(), String::new());
            loop {
                let (names, remaining) = page(&ns, "/d", &after, limit);
                assert!(names.len() <= limit);
                after = names
                    .last()
                    .map(|n| n.rsplit('/').next().unwrap_or("").to_owned())
                    .unwrap_or_default();
                got.extend(names);
                assert_eq!(remaining as usize, 40 - got.len(), "limit {limit}");
                if remaining == 0 {
                    break;
                }
            }
            assert_eq!(got, whole, "limit {limit}");
        }
    }

    #[test]
    fn setrep_on_a_tree() {
        let mut ns = ns_with(&["/a/b", "/a/c"]);
        assert_eq!(ns.set_replication(&p("/a"), 2).expect("setrep").len(), 2);
        let id = ns.lookup(&p("/a/b")).expect("file");
        assert_eq!(ns.file(id).map(|f| f.replication), Some(2));
        assert!(ns.set_replication(&p("/a"), 0).is_err());
    }

    #[test]
    fn inodes_stay_compact() {
        // Memory per file is the budget at millions of files (see the module docs).
        assert!(std::mem::size_of::<Slot>() <= 128, "{}", std::mem::size_of::<Slot>());
    }

    #[test]
    fn freed_slots_are_reused_with_a_new_generation() {
        let mut ns = ns_with(&["/a", "/b"]);
        let old = ns.lookup(&p("/a")).expect("a");
        ns.delete(&p("/a"), false, 1).expect("delete");
        ns.create(&p("/c"), &args("c")).expect("create");
        let new = ns.lookup(&p("/c")).expect("c");
        assert_eq!(new.slot(), old.slot());
        assert!(ns.get(old).is_none() && ns.file(old).is_none(), "a stale id names nothing");
        assert!(ns.file(new).is_some());
    }
}
