//! A model-based property test of [`Namespace`]: random sequences of mutations run
//! against a small reference model (a map from path to node) and the real namespace, with
//! the outcomes (success, or which error) and the whole tree compared after every step.
//! At the end the namespace goes through a checkpoint and, separately, through the
//! master's durable path (a checkpoint taken halfway plus the log of every change,
//! recovered by [`crate::recovery::recover`]); both must give back the model.
//!
//! The generators are shared with the checkpoint's property tests, which need namespaces
//! that real operations build.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;
use proto::path::DfsPath;

use super::{CreateArgs, DEFAULT_GROUP, DIR_PERMISSION, Namespace};
use crate::checkpoint::{self, Snapshot};
use crate::chunks::{ChunkHandle, ChunkMap};
use crate::error::Error;
use crate::oplog::{Op, Record, frame, segment};

/// Few names, so paths collide often.
const NAMES: [&str; 3] = ["a", "b", "c"];
const OWNERS: [&str; 2] = ["u1", "u2"];
const GROUPS: [&str; 2] = ["g1", "g2"];
const UMASKS: [u16; 3] = [0o022, 0o077, 0o000];
/// Modes a chmod asks for; the last is out of range.
const MODES: [u16; 4] = [0o755, 0o1777, 0o600, 0o2000];
const CLIENTS: [&str; 2] = ["c1", "c2"];
const CHUNK_SIZES: [u64; 2] = [64 << 10, 128 << 10];

/// A path: up to three components over [`NAMES`], or (resolved against the model when
/// the step runs, so most steps meet something) an existing node or a name below one.
#[derive(Debug, Clone)]
pub(crate) enum PathSel {
    Random(Vec<u8>),
    Existing(Index),
    /// A name in an existing directory.
    Under(Index, u8),
    /// An existing file (`/a` when there is none).
    File(Index),
}

/// The length a chunk is said to end at.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Len {
    Full,
    Short,
    Zero,
    Over,
}

/// The chunk a step names as finished: none, the file's last one (none when it has no
/// chunk), or another one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ChunkSel {
    None,
    Tail(Len),
    Other(Len),
}

/// One operation, its arguments still to be resolved against the model (which chunk is
/// the last one, which handle is next).
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Mkdir {
        path: PathSel,
        parents: bool,
        owner: u8,
        umask: u8,
    },
    Create {
        path: PathSel,
        replication: u16,
        chunk_size: u8,
        overwrite: bool,
        create_parents: bool,
        owner: u8,
        umask: u8,
        client: u8,
    },
    SetPermission {
        path: PathSel,
        mode: u8,
    },
    SetOwner {
        path: PathSel,
        owner: Option<u8>,
        group: Option<u8>,
    },
    AddChunk {
        path: PathSel,
        client: u8,
        previous: ChunkSel,
    },
    Complete {
        path: PathSel,
        client: u8,
        last: ChunkSel,
    },
    Rename {
        src: PathSel,
        dst: PathSel,
    },
    Delete {
        path: PathSel,
        recursive: bool,
    },
    SetReplication {
        path: PathSel,
        replication: u16,
    },
}

fn path_sel() -> impl Strategy<Value = PathSel> {
    let name = 0..NAMES.len() as u8;
    prop_oneof![
        2 => prop::collection::vec(name.clone(), 0..4).prop_map(PathSel::Random),
        3 => any::<Index>().prop_map(PathSel::Existing),
        3 => (any::<Index>(), name).prop_map(|(at, name)| PathSel::Under(at, name)),
    ]
}

/// Mostly an existing file: what chunk operations need to get anywhere.
fn file_sel() -> impl Strategy<Value = PathSel> {
    prop_oneof![4 => any::<Index>().prop_map(PathSel::File), 1 => path_sel()]
}

fn replication() -> impl Strategy<Value = u16> {
    prop_oneof![9 => 1..=3u16, 1 => Just(0)]
}

fn chunk_sel() -> impl Strategy<Value = ChunkSel> {
    let len = prop_oneof![4 => Just(Len::Full), 2 => Just(Len::Short), 1 => Just(Len::Zero), 1 => Just(Len::Over)];
    prop_oneof![
        2 => Just(ChunkSel::None),
        6 => len.clone().prop_map(ChunkSel::Tail),
        1 => len.prop_map(ChunkSel::Other),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    // Mostly the first client, so writes get somewhere; the second one meets leases.
    let client = prop_oneof![3 => Just(0u8), 1 => Just(1u8)];
    let owner = 0..OWNERS.len() as u8;
    let umask = 0..UMASKS.len() as u8;
    prop_oneof![
        3 => (path_sel(), any::<bool>(), owner.clone(), umask.clone())
            .prop_map(|(path, parents, owner, umask)| Step::Mkdir { path, parents, owner, umask }),
        6 => (prop_oneof![3 => path_sel(), 1 => file_sel()], replication(), 0..CHUNK_SIZES.len() as u8, any::<(bool, bool)>(), owner.clone(), umask, client.clone())
            .prop_map(|(path, replication, chunk_size, (overwrite, create_parents), owner, umask, client)| {
                Step::Create { path, replication, chunk_size, overwrite, create_parents, owner, umask, client }
            }),
        1 => (path_sel(), 0..MODES.len() as u8).prop_map(|(path, mode)| Step::SetPermission { path, mode }),
        1 => (path_sel(), prop::option::of(owner), prop::option::of(0..GROUPS.len() as u8))
            .prop_map(|(path, owner, group)| Step::SetOwner { path, owner, group }),
        5 => (file_sel(), client.clone(), chunk_sel())
            .prop_map(|(path, client, previous)| Step::AddChunk { path, client, previous }),
        3 => (file_sel(), client, chunk_sel())
            .prop_map(|(path, client, last)| Step::Complete { path, client, last }),
        2 => (path_sel(), path_sel()).prop_map(|(src, dst)| Step::Rename { src, dst }),
        1 => (path_sel(), any::<bool>()).prop_map(|(path, recursive)| Step::Delete { path, recursive }),
        1 => (path_sel(), replication()).prop_map(|(path, replication)| Step::SetReplication { path, replication }),
    ]
}

/// Sequences of up to `max` steps.
pub(crate) fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(), 1..max)
}

/// A node of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    owner: String,
    group: String,
    perm: u16,
    mtime: i64,
    file: Option<FileNode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileNode {
    replication: u16,
    chunk_size: u64,
    chunks: Vec<u64>,
    length: u64,
    writer: Option<String>,
}

/// Which error an operation gave, for comparing outcomes (messages may differ).
fn kind(e: &Error) -> String {
    format!("{e:?}").split([' ', '(', '{']).next().unwrap_or_default().to_owned()
}

/// The reference: every node by its path, `/` included.
#[derive(Debug, Clone)]
struct Model {
    nodes: BTreeMap<String, Node>,
}

type Outcome = std::result::Result<(), &'static str>;

impl Model {
    fn new() -> Model {
        let root = Node {
            owner: "root".into(),
            group: DEFAULT_GROUP.into(),
            perm: DIR_PERMISSION,
            mtime: 0,
            file: None,
        };
        Model { nodes: BTreeMap::from([("/".to_owned(), root)]) }
    }

    fn children(&self, dir: &str) -> Vec<String> {
        let prefix = if dir == "/" { "/".to_owned() } else { format!("{dir}/") };
        let mut out: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.len() > prefix.len() && !k[prefix.len()..].contains('/'))
            .map(|(k, _)| k.clone())
            .collect();
        out.sort_by(|a, b| a.rsplit('/').next().cmp(&b.rsplit('/').next()));
        out
    }

    fn is_dir(&self, p: &str) -> bool {
        self.nodes.get(p).is_some_and(|n| n.file.is_none())
    }

    /// As [`Namespace::lookup`]: `NotADirectory` where a file stands in the way.
    fn lookup(&self, p: &DfsPath) -> std::result::Result<String, &'static str> {
        let mut cur = "/".to_owned();
        for c in p.components() {
            if !self.is_dir(&cur) {
                return Err("NotADirectory");
            }
            cur = if cur == "/" { format!("/{c}") } else { format!("{cur}/{c}") };
            if !self.nodes.contains_key(&cur) {
                return Err("NotFound");
            }
        }
        Ok(cur)
    }

    fn touch(&mut self, p: &str, now: i64) {
        if let Some(n) = self.nodes.get_mut(p) {
            n.mtime = now;
        }
    }

    fn add(&mut self, p: &DfsPath, node: Node, now: i64) {
        self.nodes.insert(p.to_string(), node);
        let parent = p.parent().expect("not the root").to_string();
        self.touch(&parent, now);
    }

    /// A new node below `p`'s parent: in the parent's group.
    fn node(&self, p: &DfsPath, owner: &str, perm: u16, now: i64, file: Option<FileNode>) -> Node {
        let parent = p.parent().expect("not the root").to_string();
        let group = self.nodes[&parent].group.clone();
        Node { owner: owner.into(), group, perm, mtime: now, file }
    }

    fn mkdir(&mut self, p: &DfsPath, parents: bool, owner: &str, umask: u16, now: i64) -> Outcome {
        let mode = 0o777 & !umask;
        self.make_dirs(p, parents, owner, (mode, mode | 0o300), now)
    }

    fn make_dirs(
        &mut self,
        p: &DfsPath,
        parents: bool,
        owner: &str,
        (mode, parent_mode): (u16, u16),
        now: i64,
    ) -> Outcome {
        if parents {
            let mut walked = DfsPath::root();
            for c in p.components() {
                walked = walked.join(c).expect("short path");
                match self.nodes.get(walked.as_str()) {
                    Some(n) if n.file.is_none() => {}
                    Some(_) if walked == *p => return Err("AlreadyExists"),
                    Some(_) => return Err("NotADirectory"),
                    None => {
                        let m = if walked == *p { mode } else { parent_mode };
                        let node = self.node(&walked, owner, m, now, None);
                        self.add(&walked, node, now);
                    }
                }
            }
            return Ok(());
        }
        if p.is_root() {
            return Err("AlreadyExists");
        }
        self.parent_dir(p)?;
        if self.nodes.contains_key(p.as_str()) {
            return Err("AlreadyExists");
        }
        let node = self.node(p, owner, mode, now, None);
        self.add(p, node, now);
        Ok(())
    }

    fn set_permission(&mut self, p: &DfsPath, mode: u16) -> Outcome {
        if mode > 0o1777 {
            return Err("InvalidArgument");
        }
        let at = self.lookup(p)?;
        self.nodes.get_mut(&at).expect("found").perm = mode;
        Ok(())
    }

    fn set_owner(&mut self, p: &DfsPath, owner: Option<&str>, group: Option<&str>) -> Outcome {
        let at = self.lookup(p)?;
        let n = self.nodes.get_mut(&at).expect("found");
        if let Some(o) = owner {
            n.owner = o.into();
        }
        if let Some(g) = group {
            n.group = g.into();
        }
        Ok(())
    }

    fn parent_dir(&self, p: &DfsPath) -> Outcome {
        let parent = p.parent().ok_or("Refused")?;
        let at = self.lookup(&parent)?;
        if self.is_dir(&at) { Ok(()) } else { Err("NotADirectory") }
    }

    fn remove(&mut self, p: &str) {
        let below = format!("{p}/");
        self.nodes.retain(|k, _| k != p && !k.starts_with(&below));
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        p: &DfsPath,
        replication: u16,
        chunk_size: u64,
        overwrite: bool,
        create_parents: bool,
        owner: &str,
        umask: u16,
        client: &str,
        now: i64,
    ) -> Outcome {
        if replication == 0 {
            return Err("InvalidArgument");
        }
        if create_parents {
            let parent = p.parent().ok_or("Refused")?;
            let dir_mode = (0o777 & !umask) | 0o300;
            self.make_dirs(&parent, true, owner, (dir_mode, dir_mode), now)?;
        }
        self.parent_dir(p)?;
        if let Some(existing) = self.nodes.get(p.as_str()) {
            match &existing.file {
                None => return Err("IsADirectory"),
                Some(f) if f.writer.as_deref().is_some_and(|w| w != client) => {
                    return Err("LeaseHeld");
                }
                Some(_) if !overwrite => return Err("AlreadyExists"),
                Some(_) => self.remove(p.as_str()),
            }
        }
        let file = FileNode {
            replication,
            chunk_size,
            chunks: Vec::new(),
            length: 0,
            writer: Some(client.into()),
        };
        let node = self.node(p, owner, 0o666 & !umask, now, Some(file));
        self.add(p, node, now);
        Ok(())
    }

    fn open_for_write(
        &mut self,
        p: &DfsPath,
        client: &str,
    ) -> std::result::Result<String, &'static str> {
        let at = self.lookup(p)?;
        match &self.nodes[&at].file {
            None => Err("IsADirectory"),
            Some(f) if f.writer.as_deref() == Some(client) => Ok(at),
            Some(_) => Err("NotLeaseHolder"),
        }
    }

    fn file_mut(&mut self, at: &str) -> &mut FileNode {
        self.nodes.get_mut(at).and_then(|n| n.file.as_mut()).expect("a file")
    }

    fn finish_last(&mut self, at: &str, last: Option<(u64, u64)>) -> Outcome {
        let f = self.file_mut(at);
        match (last, f.chunks.last()) {
            (None, None) => Ok(()),
            (Some((h, len)), Some(&tail)) if h == tail => {
                if len == 0 || len > f.chunk_size {
                    return Err("InvalidArgument");
                }
                f.length = (f.chunks.len() as u64 - 1) * f.chunk_size + len;
                Ok(())
            }
            _ => Err("WrongChunk"),
        }
    }

    fn add_chunk(
        &mut self,
        p: &DfsPath,
        client: &str,
        previous: Option<(u64, u64)>,
        new: u64,
        now: i64,
    ) -> Outcome {
        let at = self.open_for_write(p, client)?;
        if previous.is_some_and(|(_, len)| len != self.file_mut(&at).chunk_size) {
            return Err("InvalidArgument");
        }
        self.finish_last(&at, previous)?;
        self.touch(&at, now);
        self.file_mut(&at).chunks.push(new);
        Ok(())
    }

    fn complete(
        &mut self,
        p: &DfsPath,
        client: &str,
        last: Option<(u64, u64)>,
        now: i64,
    ) -> Outcome {
        let at = self.open_for_write(p, client)?;
        self.finish_last(&at, last)?;
        self.touch(&at, now);
        self.file_mut(&at).writer = None;
        Ok(())
    }

    fn rename(&mut self, src: &DfsPath, dst: &DfsPath, now: i64) -> Outcome {
        if src.is_root() {
            return Err("Refused");
        }
        let from = self.lookup(src)?;
        let mut target = dst.clone();
        if let Ok(existing) = self.lookup(dst)
            && self.is_dir(&existing)
            && existing != from
        {
            target = dst.join(src.name()).expect("short path");
        }
        if target == *src {
            return Ok(());
        }
        if src.is_ancestor_of(&target) {
            return Err("Refused");
        }
        self.parent_dir(&target)?;
        if self.nodes.contains_key(target.as_str()) {
            return Err("AlreadyExists");
        }
        let below = format!("{from}/");
        let moved: Vec<(String, Node)> = self
            .nodes
            .iter()
            .filter(|(k, _)| **k == from || k.starts_with(&below))
            .map(|(k, n)| (format!("{target}{}", &k[from.len()..]), n.clone()))
            .collect();
        self.remove(&from);
        self.nodes.extend(moved);
        self.touch(&src.parent().expect("not the root").to_string(), now);
        self.touch(&target.parent().expect("not the root").to_string(), now);
        Ok(())
    }

    fn delete(&mut self, p: &DfsPath, recursive: bool, now: i64) -> Outcome {
        if p.is_root() {
            return Err("Refused");
        }
        let at = self.lookup(p)?;
        if self.is_dir(&at) && !recursive && !self.children(&at).is_empty() {
            return Err("DirectoryNotEmpty");
        }
        self.touch(&p.parent().expect("not the root").to_string(), now);
        self.remove(&at);
        Ok(())
    }

    fn set_replication(&mut self, p: &DfsPath, replication: u16) -> Outcome {
        if replication == 0 {
            return Err("InvalidArgument");
        }
        let at = self.lookup(p)?;
        let below = format!("{at}/");
        for (k, n) in self.nodes.iter_mut() {
            if let Some(f) =
                n.file.as_mut().filter(|_| *k == at || k.starts_with(&below) || at == "/")
            {
                f.replication = replication;
            }
        }
        Ok(())
    }

    /// The model in the format of [`Namespace::dump`].
    fn dump(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec!["/".to_owned()];
        while let Some(p) = stack.pop() {
            let n = &self.nodes[&p];
            let common = format!(
                "{p} owner={} group={} perm={:o} mtime={}",
                n.owner, n.group, n.perm, n.mtime
            );
            match &n.file {
                None => {
                    out.push(format!("{common} dir"));
                    stack.extend(self.children(&p).into_iter().rev());
                }
                Some(f) => {
                    let chunks: Vec<String> = f.chunks.iter().map(|h| format!("{h:#x}")).collect();
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

/// The model, the namespace, and what a master would have logged.
#[derive(Debug)]
pub(crate) struct Run {
    model: Model,
    /// The namespace the steps built.
    pub(crate) ns: Namespace,
    /// The records of the steps that changed something, in order (txid from 1).
    pub(crate) log: Vec<Record>,
    next_handle: u64,
}

impl Run {
    pub(crate) fn new() -> Run {
        Run { model: Model::new(), ns: Namespace::new(), log: Vec::new(), next_handle: 1 }
    }

    fn path(&self, sel: &PathSel) -> DfsPath {
        let existing = |at: &Index, dirs_only: bool| {
            let nodes: Vec<&String> = self
                .model
                .nodes
                .iter()
                .filter(|(_, n)| !dirs_only || n.file.is_none())
                .map(|(p, _)| p)
                .collect();
            DfsPath::parse(nodes[at.index(nodes.len())]).expect("model path")
        };
        match sel {
            PathSel::Random(names) => {
                let names: Vec<&str> = names.iter().map(|&i| NAMES[usize::from(i)]).collect();
                DfsPath::parse(&format!("/{}", names.join("/"))).expect("valid path")
            }
            PathSel::Existing(at) => existing(at, false),
            PathSel::Under(at, name) => {
                existing(at, true).join(NAMES[usize::from(*name)]).expect("short path")
            }
            PathSel::File(at) => {
                let files: Vec<&String> = self
                    .model
                    .nodes
                    .iter()
                    .filter(|(_, n)| n.file.is_some())
                    .map(|(p, _)| p)
                    .collect();
                match files.len() {
                    0 => DfsPath::parse("/a").expect("valid path"),
                    n => DfsPath::parse(files[at.index(n)]).expect("model path"),
                }
            }
        }
    }

    /// The finished chunk `sel` names for the file at `p` (as the model has it).
    fn resolve(&self, p: &DfsPath, sel: ChunkSel) -> Option<(u64, u64)> {
        let f = self.model.nodes.get(p.as_str()).and_then(|n| n.file.as_ref());
        let chunk_size = f.map_or(CHUNK_SIZES[0], |f| f.chunk_size);
        let len = |l: Len| match l {
            Len::Full => chunk_size,
            Len::Short => chunk_size / 2,
            Len::Zero => 0,
            Len::Over => chunk_size + 1,
        };
        match sel {
            ChunkSel::None => None,
            // A file without chunks has no last one to name.
            ChunkSel::Tail(l) => f.and_then(|f| f.chunks.last()).map(|&h| (h, len(l))),
            ChunkSel::Other(l) => Some((self.next_handle + 1000, len(l))),
        }
    }

    /// Runs one step on both, checking they agree; returns the step's outcome.
    pub(crate) fn step(&mut self, step: &Step, now: i64) -> std::result::Result<(), TestCaseError> {
        let handle = |v: Option<(u64, u64)>| v.map(|(h, l)| (ChunkHandle(h), l));
        let (want, got, op) = match step {
            Step::Mkdir { path, parents, owner, umask } => {
                let (p, owner) = (self.path(path), OWNERS[usize::from(*owner)]);
                let umask = UMASKS[usize::from(*umask)];
                let want = self.model.mkdir(&p, *parents, owner, umask, now);
                let got = self.ns.mkdir(&p, *parents, owner, umask, now);
                (want, got, Op::Mkdir { path: p, parents: *parents, owner: owner.into(), umask })
            }
            Step::SetPermission { path, mode } => {
                let (p, mode) = (self.path(path), MODES[usize::from(*mode)]);
                let want = self.model.set_permission(&p, mode);
                let got = self.ns.set_permission(&p, mode).map(drop);
                (want, got, Op::SetPermission { path: p, permission: mode })
            }
            Step::SetOwner { path, owner, group } => {
                let p = self.path(path);
                let owner = owner.map(|o| OWNERS[usize::from(o)]);
                let group = group.map(|g| GROUPS[usize::from(g)]);
                let want = self.model.set_owner(&p, owner, group);
                let got = self.ns.set_owner(&p, owner, group).map(drop);
                let op = Op::SetOwner {
                    path: p,
                    owner: owner.map(str::to_owned),
                    group: group.map(str::to_owned),
                };
                (want, got, op)
            }
            Step::Create {
                path,
                replication,
                chunk_size,
                overwrite,
                create_parents,
                owner,
                umask,
                client,
            } => {
                let p = self.path(path);
                let args = CreateArgs {
                    replication: *replication,
                    chunk_size: CHUNK_SIZES[usize::from(*chunk_size)],
                    overwrite: *overwrite,
                    create_parents: *create_parents,
                    owner: OWNERS[usize::from(*owner)],
                    umask: UMASKS[usize::from(*umask)],
                    client: CLIENTS[usize::from(*client)],
                    now_ms: now,
                };
                let want = self.model.create(
                    &p,
                    args.replication,
                    args.chunk_size,
                    args.overwrite,
                    args.create_parents,
                    args.owner,
                    args.umask,
                    args.client,
                    now,
                );
                let got = self.ns.create(&p, &args).map(drop);
                let op = Op::Create {
                    path: p,
                    replication: args.replication,
                    chunk_size: args.chunk_size,
                    overwrite: args.overwrite,
                    create_parents: args.create_parents,
                    owner: args.owner.into(),
                    umask: args.umask,
                    client: args.client.into(),
                };
                (want, got, op)
            }
            Step::AddChunk { path, client, previous } => {
                let (p, client) = (self.path(path), CLIENTS[usize::from(*client)]);
                let previous = self.resolve(&p, *previous);
                let new = self.next_handle;
                let want = self.model.add_chunk(&p, client, previous, new, now);
                let got = self.ns.add_chunk(&p, client, handle(previous), ChunkHandle(new), now);
                if got.is_ok() {
                    self.next_handle += 1;
                }
                let op = Op::AddChunk {
                    path: p,
                    client: client.into(),
                    previous: handle(previous),
                    handle: ChunkHandle(new),
                };
                (want, got.map(drop), op)
            }
            Step::Complete { path, client, last } => {
                let (p, client) = (self.path(path), CLIENTS[usize::from(*client)]);
                let last = self.resolve(&p, *last);
                let want = self.model.complete(&p, client, last, now);
                let got = self.ns.complete(&p, client, handle(last), now).map(drop);
                (want, got, Op::Complete { path: p, client: client.into(), last: handle(last) })
            }
            Step::Rename { src, dst } => {
                let (src, dst) = (self.path(src), self.path(dst));
                let want = self.model.rename(&src, &dst, now);
                let got = self.ns.rename(&src, &dst, now).map(drop);
                (want, got, Op::Rename { src, dst })
            }
            Step::Delete { path, recursive } => {
                let p = self.path(path);
                let want = self.model.delete(&p, *recursive, now);
                let got = self.ns.delete(&p, *recursive, now).map(drop);
                (want, got, Op::Delete { path: p, recursive: *recursive })
            }
            Step::SetReplication { path, replication } => {
                let p = self.path(path);
                let want = self.model.set_replication(&p, *replication);
                let got = self.ns.set_replication(&p, *replication).map(drop);
                (want, got, Op::SetReplication { path: p, replication: *replication })
            }
        };
        let got_kind = got.as_ref().map(drop).map_err(kind);
        prop_assert_eq!(got_kind, want.map_err(str::to_owned), "{:?}", step);
        if got.is_ok() {
            let txid = self.log.len() as u64 + 1;
            self.log.push(Record { txid, time_ms: now, op, call: None });
        }
        self.check()
    }

    /// The whole tree, the counts and a listing of every directory agree.
    fn check(&self) -> std::result::Result<(), TestCaseError> {
        prop_assert_eq!(self.ns.dump(), self.model.dump());
        let files = self.model.nodes.values().filter(|n| n.file.is_some()).count() as u64;
        let dirs = self.model.nodes.len() as u64 - files;
        prop_assert_eq!((self.ns.file_count(), self.ns.dir_count()), (files, dirs));
        for (p, node) in &self.model.nodes {
            let listed: Vec<String> = self
                .ns
                .list(&DfsPath::parse(p).expect("model path"))
                .expect("list")
                .into_iter()
                .map(|(p, _)| p.to_string())
                .collect();
            let want = if node.file.is_some() { vec![p.clone()] } else { self.model.children(p) };
            prop_assert_eq!(listed, want);
        }
        Ok(())
    }

    /// Chunks as a master would hold them: version 1, finished ones at their length.
    pub(crate) fn chunks(&self) -> ChunkMap {
        let mut chunks = ChunkMap::new();
        for (_, id) in self.ns.files_under(&DfsPath::root()).expect("walk") {
            let f = self.ns.file(id).expect("a file");
            for (i, h) in f.chunks.iter().enumerate() {
                let done = i + 1 < f.chunks.len() || f.writer.is_none();
                let len = if done { f.length.saturating_sub(i as u64 * f.chunk_size) } else { 0 };
                chunks.restore(*h, id, 1, len.min(f.chunk_size));
            }
        }
        chunks
    }
}

/// Writes `records` as one log segment of the metadata directory `dir`.
fn write_log(dir: &Path, records: &[Record]) {
    let log = segment::log_dir(dir);
    fs::create_dir_all(&log).expect("log dir");
    let mut buf = Vec::new();
    for r in records {
        frame::push(&r.encode(), &mut buf);
    }
    fs::write(log.join(segment::segment_name(1)), buf).expect("write segment");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The namespace behaves as the model, step by step; a checkpoint of the result
    /// reads back as the model; and a master recovering from a checkpoint taken halfway
    /// plus the log of every change rebuilds the model too.
    #[test]
    fn namespace_behaves_as_the_model(steps in steps(40), half in any::<Index>()) {
        let mut run = Run::new();
        let half = half.index(steps.len());
        let dir = tempfile::tempdir().expect("tempdir");
        let mut midway = None;
        for (i, step) in steps.iter().enumerate() {
            if i == half {
                let snap = Snapshot::of(run.log.len() as u64, 0, run.ns.clone(), &run.chunks());
                midway = Some(checkpoint::write(dir.path(), &snap).expect("checkpoint"));
            }
            run.step(step, i as i64 + 1)?;
        }
        let want = run.model.dump();

        let image = tempfile::tempdir().expect("tempdir");
        let snap = Snapshot::of(run.log.len() as u64, 0, run.ns.clone(), &run.chunks());
        let path = checkpoint::write(image.path(), &snap).expect("checkpoint");
        let loaded = checkpoint::read(&path).expect("read back");
        prop_assert_eq!(loaded.ns.dump(), want.clone());
        prop_assert_eq!(loaded.txid, run.log.len() as u64);

        prop_assert!(midway.is_some());
        write_log(dir.path(), &run.log);
        let config = crate::Config {
            dir: dir.path().to_owned(),
            superuser: "root".into(),
            ..crate::Config::default()
        };
        let recovered = crate::recovery::recover(config).expect("recover");
        prop_assert_eq!(recovered.core.namespace().dump(), want);
        recovered.log.stop();
    }
}

#[test]
fn the_model_agrees_on_a_known_sequence() {
    let p = |names: &[u8]| PathSel::Random(names.to_vec());
    let mut run = Run::new();
    let steps = [
        Step::Mkdir { path: p(&[0, 1]), parents: true, owner: 0, umask: 1 },
        Step::SetOwner { path: p(&[0]), owner: None, group: Some(1) },
        Step::SetPermission { path: p(&[0]), mode: 1 },
        Step::Create {
            path: p(&[0, 1, 2]),
            replication: 2,
            chunk_size: 0,
            overwrite: false,
            create_parents: false,
            owner: 1,
            umask: 0,
            client: 0,
        },
        Step::AddChunk { path: p(&[0, 1, 2]), client: 0, previous: ChunkSel::None },
        Step::AddChunk { path: p(&[0, 1, 2]), client: 0, previous: ChunkSel::Tail(Len::Full) },
        Step::Complete { path: p(&[0, 1, 2]), client: 0, last: ChunkSel::Tail(Len::Short) },
        Step::Rename { src: p(&[0, 1]), dst: p(&[2]) },
        Step::Delete { path: p(&[0]), recursive: false },
    ];
    for (i, s) in steps.iter().enumerate() {
        run.step(s, i as i64 + 1).expect("agree");
    }
    assert!(run.ns.lookup(&DfsPath::parse("/c/c").expect("path")).is_ok());
    assert_eq!(run.log.len(), steps.len());
}
