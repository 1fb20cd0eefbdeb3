//! Checkpoints: the whole namespace, the chunks' persistent fields (handle, version,
//! length), the next handle and inode id, and the last transaction they include, in
//! `DIR/checkpoint-<txid as 020>.ckpt`.
//!
//! Format: `gfs.disk.v1.CheckpointRecord`s ([`proto::disk`]) framed by
//! [`crate::oplog::frame`]: one header, every inode parent-first (files carry their
//! chunks), one trailer repeating the txid and counting the inodes, so a file cut short
//! anywhere is detected.
//!
//! Writing never stops mutations for long: under the state lock the log rolls to a new
//! segment and the state is cloned ([`Snapshot::take`]); encoding and writing happen
//! outside it on a blocking thread, into a `.tmp` file that is synced and renamed into
//! place (then the directory is synced). A `.tmp` left by a crash is ignored at start-up.
//! Afterwards older checkpoints are removed except the previous one, and so are the log
//! segments the previous one covers; the segments after it are kept, so the previous
//! checkpoint plus the log still rebuild the namespace should the newest one ever be lost
//! ([`crate::recovery`] falls back to it by itself).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use proto::disk::{self as pb, checkpoint_record::Entry};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::chunks::{ChunkMap, ChunkVersions};
use crate::config;
use crate::core::Core;
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::ids::{ChunkHandle, InodeId};
use crate::namespace::{
    DEFAULT_GROUP, FileMeta, InodeImage, InodeKind, Namespace, NamespaceBuilder,
};
use crate::oplog::frame::{self, Frame, Frames};
use crate::oplog::segment;

/// Format version written in the header.
pub const FORMAT: u32 = 1;

/// File name of the checkpoint including transactions up to `txid`.
pub fn file_name(txid: u64) -> String {
    format!("checkpoint-{txid:020}.ckpt")
}

fn tmp_name(txid: u64) -> String {
    format!("checkpoint-{txid:020}.tmp")
}

/// The txid a complete checkpoint's file name stands for (`.tmp` files do not count).
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("checkpoint-")?.strip_suffix(".ckpt")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// Complete checkpoints in `dir`, oldest first.
///
/// # Errors
/// The directory cannot be read.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))? {
        let entry = entry.map_err(io(format!("listing {}", dir.display())))?;
        if let Some(txid) = entry.file_name().to_str().and_then(parse_name) {
            out.push((txid, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// A consistent copy of the persistent state, taken under the lock.
#[derive(Debug)]
pub struct Snapshot {
    txid: u64,
    time_ms: i64,
    ns: Namespace,
    chunks: ChunkVersions,
    next_handle: u64,
}

impl Snapshot {
    /// Copies what a checkpoint keeps (never replicas) as of the last logged transaction.
    pub fn take(st: &Core, txid: u64, time_ms: i64) -> Snapshot {
        Snapshot::of(txid, time_ms, st.ns.clone(), &st.chunks)
    }

    /// A snapshot of `ns` and `chunks` as of transaction `txid`.
    pub fn of(txid: u64, time_ms: i64, ns: Namespace, chunks: &ChunkMap) -> Snapshot {
        Snapshot {
            txid,
            time_ms,
            ns,
            chunks: chunks.persistent(),
            next_handle: chunks.next_handle(),
        }
    }

    /// The last transaction the snapshot includes.
    pub fn txid(&self) -> u64 {
        self.txid
    }
}

/// Writes `snap` as `dir/checkpoint-<txid>.ckpt` through a synced `.tmp` and a rename.
///
/// # Errors
/// I/O errors naming the file.
pub fn write(dir: &Path, snap: &Snapshot) -> Result<PathBuf> {
    let tmp = dir.join(tmp_name(snap.txid));
    let path = dir.join(file_name(snap.txid));
    let file = File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut emit = |entry: Entry, out: &mut BufWriter<File>| -> Result<()> {
        buf.clear();
        frame::push_message(&pb::CheckpointRecord { entry: Some(entry) }, &mut buf);
        out.write_all(&buf).map_err(io(format!("writing {}", tmp.display())))
    };
    emit(
        Entry::Header(pb::CheckpointHeader {
            format: FORMAT,
            txid: snap.txid,
            next_handle: snap.next_handle,
            next_inode: snap.ns.next_inode(),
            time_ms: snap.time_ms,
        }),
        &mut out,
    )?;
    let mut inodes = 0u64;
    for (id, inode) in snap.ns.parent_first() {
        let mut rec = pb::CheckpointInode {
            id: id.0,
            parent: inode.parent.0,
            name: inode.name.to_string(),
            mtime_ms: inode.mtime_ms,
            owner: snap.ns.owner_of(inode).to_owned(),
            group: Some(snap.ns.group_of(inode).to_owned()),
            permission: u32::from(inode.permission),
            is_dir: true,
            ..pb::CheckpointInode::default()
        };
        if let InodeKind::File(f) = &inode.kind {
            rec.is_dir = false;
            rec.replication = u32::from(f.replication);
            rec.chunk_size = f.chunk_size;
            rec.length = f.length;
            rec.writer = f.writer.as_deref().map(str::to_owned);
            rec.chunks = f
                .chunks
                .iter()
                .map(|h| {
                    let (version, length) = snap.chunks.get(*h).unwrap_or((1, 0));
                    pb::CheckpointChunk { handle: h.0, version, length }
                })
                .collect();
        }
        emit(Entry::Inode(rec), &mut out)?;
        inodes += 1;
    }
    emit(Entry::Trailer(pb::CheckpointTrailer { inodes, txid: snap.txid }), &mut out)?;
    let file = out.into_inner().map_err(|e| Error::Io {
        what: format!("writing {}", tmp.display()),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io(format!("syncing {}", tmp.display())))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io(format!("renaming {} into place", tmp.display())))?;
    segment::sync_dir(dir)?;
    Ok(path)
}

/// A namespace and chunk map loaded from a checkpoint.
#[derive(Debug)]
pub struct Loaded {
    /// Last transaction included.
    pub txid: u64,
    /// The namespace.
    pub ns: Namespace,
    /// The chunks, without replicas.
    pub chunks: ChunkMap,
}

/// Reads and checks a checkpoint.
///
/// # Errors
/// [`Error::Corrupt`] naming the file and offset for a bad checksum, a file cut short, a
/// missing header or trailer, a record that does not decode or does not fit the tree;
/// [`Error::Io`] if it cannot be read.
pub fn read(path: &Path) -> Result<Loaded> {
    let bad = |offset: u64, reason: String| Error::Corrupt {
        file: path.display().to_string(),
        offset,
        reason: format!("unreadable checkpoint: {reason}"),
    };
    let buf = fs::read(path).map_err(io(format!("reading {}", path.display())))?;
    let mut frames = Frames::new(&buf);
    let next = |frames: &mut Frames<'_>| -> Result<(u64, Entry)> {
        match frames.next_frame() {
            Frame::Record { offset, payload } => {
                let rec = pb::CheckpointRecord::decode(payload)
                    .map_err(|e| bad(offset, format!("undecodable record: {e}")))?;
                let entry = rec.entry.ok_or_else(|| bad(offset, "empty record".into()))?;
                Ok((offset, entry))
            }
            Frame::End => Err(bad(buf.len() as u64, "file ends before its trailer".into())),
            Frame::Torn { offset, reason } | Frame::Corrupt { offset, reason } => {
                Err(bad(offset, reason))
            }
        }
    };
    let header = match next(&mut frames)? {
        (_, Entry::Header(h)) if h.format == FORMAT => h,
        (offset, Entry::Header(h)) => {
            return Err(bad(offset, format!("unknown format {}", h.format)));
        }
        (offset, _) => return Err(bad(offset, "missing header".into())),
    };
    let mut builder = NamespaceBuilder::new();
    // The header's count is a hint, not a promise: every inode takes at least a frame
    // header of the file, so a count beyond that cannot be true and must not be reserved.
    let most = buf.len() / frame::HEADER_LEN;
    builder.reserve(usize::try_from(header.next_inode).unwrap_or(usize::MAX).min(most));
    let mut chunks = ChunkMap::new();
    let mut inodes = 0u64;
    loop {
        match next(&mut frames)? {
            (offset, Entry::Inode(i)) => {
                if i.is_dir && !i.chunks.is_empty() {
                    return Err(bad(offset, format!("directory inode {} lists chunks", i.id)));
                }
                let file =
                    if i.is_dir { None } else { Some(file_meta(&i).map_err(|r| bad(offset, r))?) };
                let permission =
                    u16::try_from(i.permission).ok().filter(|p| *p <= 0o7777).ok_or_else(|| {
                        bad(offset, format!("inode {} has permission {:#o}", i.id, i.permission))
                    })?;
                let id = builder
                    .insert(InodeImage {
                        id: InodeId(i.id),
                        parent: InodeId(i.parent),
                        name: i.name,
                        mtime_ms: i.mtime_ms,
                        owner: i.owner,
                        group: i.group.unwrap_or_else(|| DEFAULT_GROUP.to_owned()),
                        permission,
                        file,
                    })
                    .map_err(|r| bad(offset, r))?;
                for c in &i.chunks {
                    let h = ChunkHandle(c.handle);
                    if c.handle == 0 || c.version == 0 || chunks.get(h).is_some() {
                        return Err(bad(
                            offset,
                            format!(
                                "inode {} lists chunk {:#x} version {}: handle or version 0, \
                                 or a chunk another file holds",
                                i.id, c.handle, c.version
                            ),
                        ));
                    }
                    chunks.restore(h, id, c.version, c.length);
                }
                inodes += 1;
            }
            (offset, Entry::Trailer(t)) => {
                if t.inodes != inodes || t.txid != header.txid {
                    return Err(bad(
                        offset,
                        format!(
                            "trailer says {} inodes at txid {}, file holds {inodes} at txid {}",
                            t.inodes, t.txid, header.txid
                        ),
                    ));
                }
                break;
            }
            (offset, Entry::Header(_)) => return Err(bad(offset, "second header".into())),
        }
    }
    if let Frame::Record { offset, .. }
    | Frame::Torn { offset, .. }
    | Frame::Corrupt { offset, .. } = frames.next_frame()
    {
        return Err(bad(offset, "data after the trailer".into()));
    }
    chunks.restore_next_handle(header.next_handle);
    Ok(Loaded { txid: header.txid, ns: builder.finish(), chunks })
}

/// The file metadata of an inode record, checked as a create would check it.
fn file_meta(i: &pb::CheckpointInode) -> std::result::Result<FileMeta, String> {
    let replication = config::check_replication(i.replication).map_err(|e| e.to_string())?;
    config::check_chunk_size(i.chunk_size).map_err(|e| e.to_string())?;
    Ok(FileMeta {
        replication,
        chunk_size: i.chunk_size,
        chunks: i.chunks.iter().map(|c| ChunkHandle(c.handle)).collect(),
        length: i.length,
        writer: i.writer.as_deref().map(Into::into),
    })
}

/// Removes checkpoints older than `previous` and `.tmp` leftovers, and the log segments
/// holding only transactions up to `previous`.
///
/// # Errors
/// A directory that cannot be listed; files that cannot be removed are only logged.
pub fn prune(dir: &Path, log_dir: &Path, previous: u64) -> Result<()> {
    for (txid, path) in list(dir)? {
        if txid < previous {
            remove(&path);
        }
    }
    for entry in fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("checkpoint-") && name.ends_with(".tmp") {
            remove(&entry.path());
        }
    }
    let segments = segment::list(log_dir)?;
    for pair in segments.windows(2) {
        // Every record of pair[0] is below the next segment's first txid.
        if pair[1].0 <= previous + 1 {
            remove(&pair[0].1);
        }
    }
    Ok(())
}

fn remove(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => info!(file = %path.display(), "removed old metadata file"),
        Err(e) => warn!(file = %path.display(), error = %e, "cannot remove old metadata file"),
    }
}

/// Takes checkpoints, one at a time: on demand and when the log passes its threshold.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    driver: Driver,
    dir: PathBuf,
    /// Txid of the newest checkpoint on disk; held while one is being taken.
    last: Arc<tokio::sync::Mutex<u64>>,
}

impl Checkpointer {
    /// A checkpointer writing into `dir` whose newest checkpoint includes `last_txid`.
    pub fn new(driver: Driver, dir: PathBuf, last_txid: u64) -> Checkpointer {
        Checkpointer { driver, dir, last: Arc::new(tokio::sync::Mutex::new(last_txid)) }
    }

    /// Writes a checkpoint of the current state (unless the newest one is current) and
    /// returns the last transaction it includes.
    ///
    /// # Errors
    /// [`Error::LogFailed`] if the log cannot roll; I/O errors writing the file.
    pub async fn checkpoint(&self, time_ms: i64) -> Result<u64> {
        let mut last = self.last.lock().await;
        let (snap, rolled) = {
            let mut m = self.driver.lock()?;
            let txid = m.journal.last_txid();
            if txid == *last {
                return Ok(*last);
            }
            m.journal.writable()?;
            let rolled = m.journal.roll_for_checkpoint();
            (Snapshot::take(&m.core, txid, time_ms), rolled)
        };
        rolled.wait().await?;
        let (dir, previous, txid) = (self.dir.clone(), *last, snap.txid());
        let written = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let path = write(&dir, &snap)?;
            info!(file = %path.display(), txid, files = snap.ns.file_count(), elapsed_ms = started.elapsed().as_millis() as u64, "checkpoint written");
            prune(&dir, &segment::log_dir(&dir), previous)
        })
        .await;
        match written {
            Ok(r) => r?,
            Err(e) => {
                return Err(Error::Io {
                    what: "writing a checkpoint".into(),
                    source: std::io::Error::other(e.to_string()),
                });
            }
        }
        *last = txid;
        Ok(txid)
    }

    /// Writes a checkpoint each time the log passes `every` records, until `stop`.
    pub async fn run(self, wanted: Arc<Notify>, every: u64, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = wanted.notified() => {}
                _ = stop.changed() => return,
            }
            let due = match self.driver.lock() {
                Ok(m) => m.journal.since_checkpoint() >= every,
                Err(_) => return,
            };
            if due && let Err(e) = self.checkpoint(crate::clock::wall_ms()).await {
                warn!(error = %e, "checkpoint failed; the log keeps growing until one succeeds");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(file_name(7), "checkpoint-00000000000000000007.ckpt");
        assert_eq!(parse_name(&file_name(7)), Some(7));
        assert_eq!(parse_name(&tmp_name(7)), None);
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use proto::alloc_probe::largest_allocation;
    use proto::path::MAX_PATH_LEN;

    use super::*;
    use crate::namespace::ROOT;
    use crate::namespace::proptests::{Run, steps};
    use crate::oplog::frame::proptests::{damage, starts};

    /// Every chunk's persistent fields, by handle.
    fn chunk_fields(chunks: &ChunkMap) -> Vec<(u64, u64, u64)> {
        let mut out: Vec<_> = chunks.iter().map(|(h, c)| (h.0, c.version, c.length)).collect();
        out.sort_unstable();
        out
    }

    /// A namespace that random operations built, and its chunks.
    fn built() -> impl Strategy<Value = Run> {
        steps(30).prop_map(|steps| {
            let mut run = Run::new();
            for (i, s) in steps.iter().enumerate() {
                run.step(s, i as i64 + 1).expect("namespace agrees with its model");
            }
            run
        })
    }

    /// Reading allocates in proportion to the file, whatever its fields claim.
    fn read_bounded(path: &Path) -> std::result::Result<Result<Loaded>, TestCaseError> {
        let len = fs::metadata(path).expect("stat").len() as usize;
        let (loaded, largest) = largest_allocation(|| read(path));
        prop_assert!(largest <= 32 * len + (1 << 20), "{} bytes allocated {}", len, largest);
        Ok(loaded)
    }

    /// What a forged inode record gets wrong, if anything.
    #[derive(Debug, Clone, Copy)]
    enum Twist {
        None,
        Name(&'static str),
        Replication(u32),
        ChunkSize(u64),
        Permission(u32),
        Handle(u64),
        Version0,
        RepeatedChunk,
        Parent(u64),
    }

    fn twist() -> impl Strategy<Value = Twist> {
        let hostile = prop_oneof![
            prop_oneof![Just(""), Just("."), Just(".."), Just("a/b"), Just("a:b"), Just("a\0b")]
                .prop_map(Twist::Name),
            Just(Twist::Name("long")),
            prop_oneof![Just(0u32), Just(513), Just(u32::MAX)].prop_map(Twist::Replication),
            prop_oneof![Just(0u64), Just(65537)].prop_map(Twist::ChunkSize),
            prop_oneof![Just(0o10000u32), Just(u32::MAX)].prop_map(Twist::Permission),
            prop_oneof![Just(0u64), Just(u64::MAX)].prop_map(Twist::Handle),
            Just(Twist::Version0),
            Just(Twist::RepeatedChunk),
            prop_oneof![Just(0u64), Just(999)].prop_map(Twist::Parent),
        ];
        prop_oneof![40 => Just(Twist::None), 1 => hostile]
    }

    /// One forged inode: directory or file, where it hangs, whether its name is long
    /// (chains of long names pass the path limit), and what it gets wrong.
    type Spec = (bool, usize, bool, bool, Twist);

    fn forge(specs: &[Spec]) -> Vec<pb::CheckpointInode> {
        let mut dirs = vec![ROOT.0];
        let mut handle = 0;
        let mut out = Vec::new();
        for (i, &(is_dir, at, chain, long, twist)) in specs.iter().enumerate() {
            let id = i as u64 + 2;
            let parent =
                if chain { *dirs.last().unwrap_or(&ROOT.0) } else { dirs[at % dirs.len()] };
            // Names are unique, so only a twist repeats one.
            let name = if long { format!("{}{id:03}", "n".repeat(250)) } else { format!("f{id}") };
            let mut i = pb::CheckpointInode {
                id,
                parent,
                name,
                mtime_ms: id as i64,
                owner: "u".into(),
                permission: if is_dir { 0o755 } else { 0o644 },
                is_dir,
                ..pb::CheckpointInode::default()
            };
            if !is_dir {
                handle += 1;
                i.replication = 2;
                i.chunk_size = 64 << 10;
                i.length = 10;
                i.chunks = vec![pb::CheckpointChunk { handle, version: 1, length: 10 }];
            }
            match twist {
                Twist::None => {}
                Twist::Name("long") => i.name = "n".repeat(256),
                Twist::Name(n) => i.name = n.into(),
                Twist::Replication(r) => i.replication = r,
                Twist::ChunkSize(c) => i.chunk_size = c,
                Twist::Permission(p) => i.permission = p,
                Twist::Handle(h) => {
                    i.chunks = vec![pb::CheckpointChunk { handle: h, version: 1, length: 0 }]
                }
                Twist::Version0 => {
                    i.chunks =
                        vec![pb::CheckpointChunk { handle: 1000 + id, version: 0, length: 0 }]
                }
                Twist::RepeatedChunk => {
                    i.chunks = vec![pb::CheckpointChunk { handle: 1, version: 1, length: 0 }]
                }
                Twist::Parent(p) => i.parent = p,
            }
            if is_dir {
                dirs.push(id);
            }
            out.push(i);
        }
        out
    }

    /// Checkpoints whose every frame checks out but whose records may say anything a
    /// bug could write: bad names, paths over the limit, fields out of range, chunks held
    /// twice, a header promising 2^40 inodes, a trailer that miscounts.
    fn forged() -> impl Strategy<Value = Vec<u8>> {
        let spec = (
            any::<bool>(),
            any::<usize>(),
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.3),
            twist(),
        );
        let header = (
            prop_oneof![19 => Just(FORMAT), 1 => any::<u32>()],
            0..4u64,
            prop_oneof![0..64u64, Just(1 << 40), Just(u64::MAX)],
            any::<u64>(),
        );
        (
            header,
            prop::collection::vec(spec, 0..80),
            prop::bool::weighted(0.9),
            prop::bool::weighted(0.05),
        )
            .prop_map(
                |((format, txid, next_inode, next_handle), specs, true_count, extra)| {
                    let mut buf = Vec::new();
                    let mut emit = |entry| {
                        frame::push_message(&pb::CheckpointRecord { entry: Some(entry) }, &mut buf)
                    };
                    emit(Entry::Header(pb::CheckpointHeader {
                        format,
                        txid,
                        next_handle,
                        next_inode,
                        time_ms: 0,
                    }));
                    let count =
                        if true_count { specs.len() as u64 + 1 } else { specs.len() as u64 / 2 };
                    emit(Entry::Inode(pb::CheckpointInode {
                        id: ROOT.0,
                        parent: ROOT.0,
                        owner: "root".into(),
                        permission: 0o755,
                        is_dir: true,
                        ..Default::default()
                    }));
                    for i in forge(&specs) {
                        emit(Entry::Inode(i));
                    }
                    emit(Entry::Trailer(pb::CheckpointTrailer { inodes: count, txid }));
                    if extra {
                        emit(Entry::Trailer(pb::CheckpointTrailer { inodes: count, txid }));
                    }
                    buf
                },
            )
    }

    /// A checkpoint holding the root and `inodes`, whose header promises `next_inode`.
    fn checkpoint_of(next_inode: u64, inodes: Vec<pb::CheckpointInode>) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut emit =
            |entry| frame::push_message(&pb::CheckpointRecord { entry: Some(entry) }, &mut buf);
        emit(Entry::Header(pb::CheckpointHeader {
            format: FORMAT,
            txid: 1,
            next_handle: 1,
            next_inode,
            time_ms: 0,
        }));
        let count = inodes.len() as u64;
        for i in inodes {
            emit(Entry::Inode(i));
        }
        emit(Entry::Trailer(pb::CheckpointTrailer { inodes: count, txid: 1 }));
        buf
    }

    fn read_bytes(bytes: &[u8]) -> Result<Loaded> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(file_name(1));
        fs::write(&path, bytes).expect("write");
        read(&path)
    }

    /// Found by `forged_checkpoints_load_only_as_sound_namespaces`: a header promising
    /// 2^40 inodes made the reader reserve room for 2^28 of them (32 GiB) before reading
    /// one.
    #[test]
    fn a_header_promising_2_to_the_40_inodes_reserves_no_more_than_the_file_holds() {
        let bytes = checkpoint_of(1 << 40, forge(&[]));
        let (loaded, largest) = largest_allocation(|| read_bytes(&bytes));
        assert!(loaded.is_ok());
        assert!(largest < 1 << 20, "allocated {largest} bytes");
    }

    /// Found by the same property: names and paths that no request could make loaded,
    /// and `path_of` panicked on them later.
    #[test]
    fn names_no_path_may_hold_are_refused() {
        let dir = |id, parent, name: &str| pb::CheckpointInode {
            id,
            parent,
            name: name.into(),
            permission: 0o755,
            is_dir: true,
            ..pb::CheckpointInode::default()
        };
        for bad in ["..", ".", "a:b", "a\0b", &"n".repeat(256)] {
            let err = read_bytes(&checkpoint_of(3, vec![dir(2, 1, bad)])).expect_err(bad);
            assert!(err.to_string().contains("invalid name"), "{err}");
        }
        // 32 directories of 255-byte names: the last path is 8192 bytes long.
        let long: Vec<_> = (2..34).map(|id| dir(id, (id - 1).max(1), &"n".repeat(255))).collect();
        let err = read_bytes(&checkpoint_of(40, long)).expect_err("path too long");
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    /// Fields a create would refuse were clamped (a replication of 2^32 - 1 became
    /// 65535) or taken as they were; a chunk two files list was silently given to one.
    #[test]
    fn file_fields_out_of_range_and_shared_chunks_are_refused() {
        let file = |id, twist: Twist| {
            forge(&[(false, 0, false, false, twist)])
                .into_iter()
                .map(move |i| pb::CheckpointInode { id, name: format!("f{id}"), ..i })
                .next()
                .expect("one inode")
        };
        for twist in [
            Twist::Replication(u32::MAX),
            Twist::Replication(0),
            Twist::ChunkSize(65537),
            Twist::Permission(u32::MAX),
            Twist::Handle(0),
            Twist::Version0,
        ] {
            let err = read_bytes(&checkpoint_of(3, vec![file(2, twist)])).expect_err("refused");
            assert!(matches!(err, Error::Corrupt { .. }), "{twist:?}: {err}");
        }
        // Found later by the same property: a directory's record listing a chunk put it
        // in the chunk map, owned by the directory, and a checkpoint then dropped it.
        let dir_with_chunk = pb::CheckpointInode { is_dir: true, ..file(2, Twist::None) };
        let err = read_bytes(&checkpoint_of(3, vec![dir_with_chunk])).expect_err("refused");
        assert!(err.to_string().contains("directory inode 2 lists chunks"), "{err}");
        let shared = vec![file(2, Twist::None), file(3, Twist::None)];
        let err = read_bytes(&checkpoint_of(4, shared)).expect_err("shared chunk");
        assert!(err.to_string().contains("another file holds"), "{err}");
        assert!(read_bytes(&checkpoint_of(3, vec![file(2, Twist::None)])).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn checkpoints_round_trip(run in built(), txid in any::<u64>()) {
            let dir = tempfile::tempdir().expect("tempdir");
            let chunks = run.chunks();
            let path = write(dir.path(), &Snapshot::of(txid, 7, run.ns.clone(), &chunks)).expect("write");
            let loaded = read_bounded(&path)?.expect("read back");
            prop_assert_eq!(loaded.txid, txid);
            prop_assert_eq!(loaded.ns.dump(), run.ns.dump());
            prop_assert_eq!(chunk_fields(&loaded.chunks), chunk_fields(&chunks));
            prop_assert_eq!(loaded.chunks.next_handle(), chunks.next_handle());
        }

        /// Every frame is checksummed and the trailer counts them, so damage anywhere is
        /// `Corrupt`: never a panic, and never a namespace other than the one written.
        #[test]
        fn damaged_checkpoints_are_refused(run in built(), damage in damage()) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = write(dir.path(), &Snapshot::of(3, 7, run.ns.clone(), &run.chunks())).expect("write");
            let mut buf = fs::read(&path).expect("read");
            let frames = starts(&buf);
            let changed = damage.apply(&mut buf, &frames).is_some();
            fs::write(&path, &buf).expect("write");
            match read_bounded(&path)? {
                Ok(loaded) => {
                    prop_assert!(!changed, "{:?} went unnoticed", damage);
                    prop_assert_eq!(loaded.ns.dump(), run.ns.dump());
                }
                Err(e) => prop_assert!(changed && matches!(e, Error::Corrupt { .. }), "{}", e),
            }
        }

        /// A checkpoint whose checksums hold but whose records were written by a bug (or
        /// an attacker) loads only as a namespace every request could have built: each
        /// path valid and within the limit, so nothing later panics on it.
        #[test]
        fn forged_checkpoints_load_only_as_sound_namespaces(bytes in forged()) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join(file_name(1));
            fs::write(&path, &bytes).expect("write");
            let Ok(loaded) = read_bounded(&path)? else { return Ok(()) };
            for (id, _) in loaded.ns.parent_first() {
                let p = loaded.ns.path_of(id);
                prop_assert!(p.as_str().len() <= MAX_PATH_LEN);
            }
            let again = write(dir.path(), &Snapshot::of(loaded.txid, 0, loaded.ns.clone(), &loaded.chunks)).expect("write");
            let reread = read(&again).expect("a loaded checkpoint writes back readable");
            prop_assert_eq!(reread.ns.dump(), loaded.ns.dump());
            prop_assert_eq!(chunk_fields(&reread.chunks), chunk_fields(&loaded.chunks));
        }
    }
}
