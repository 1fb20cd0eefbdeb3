//! Checkpoints: the whole namespace, the chunks' persistent fields (handle, version,
//! length), the next handle and inode id, and the last transaction they include, in
//! `DIR/checkpoint-<txid as 020>.ckpt`.
//!
//! Format: framed `gfs.v1.CheckpointRecord`s ([`crate::oplog::frame`]): one header, every
//! inode parent-first (files carry their chunks), one trailer repeating the txid and
//! counting the inodes, so a file cut short anywhere is detected.
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
use proto::gfs::{self as pb, checkpoint_record::Entry};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::chunks::{ChunkMap, ChunkVersions};
use crate::core::Core;
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::ids::{ChunkHandle, InodeId};
use crate::namespace::{FileMeta, InodeImage, InodeKind, Namespace, NamespaceBuilder};
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
        Snapshot {
            txid,
            time_ms,
            ns: st.ns.clone(),
            chunks: st.chunks.persistent(),
            next_handle: st.chunks.next_handle(),
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
    builder.reserve(usize::try_from(header.next_inode).unwrap_or(0).min(1 << 28));
    let mut chunks = ChunkMap::new();
    let mut inodes = 0u64;
    loop {
        match next(&mut frames)? {
            (offset, Entry::Inode(i)) => {
                let file = (!i.is_dir).then(|| FileMeta {
                    replication: u16::try_from(i.replication).unwrap_or(u16::MAX),
                    chunk_size: i.chunk_size,
                    chunks: i.chunks.iter().map(|c| ChunkHandle(c.handle)).collect(),
                    length: i.length,
                    writer: i.writer.map(Into::into),
                });
                let permission = u16::try_from(i.permission).unwrap_or(u16::MAX);
                let id = builder
                    .insert(InodeImage {
                        id: InodeId(i.id),
                        parent: InodeId(i.parent),
                        name: i.name,
                        mtime_ms: i.mtime_ms,
                        owner: i.owner,
                        permission,
                        file,
                    })
                    .map_err(|r| bad(offset, r))?;
                for c in &i.chunks {
                    chunks.restore(ChunkHandle(c.handle), id, c.version, c.length);
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
    let _ = chunks.reserve_above(ChunkHandle(header.next_handle.saturating_sub(1)));
    Ok(Loaded { txid: header.txid, ns: builder.finish(), chunks })
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
