//! Start-up: rebuilds the master's state from its metadata directory (the newest
//! checkpoint, then the log segments after it) and opens the log for new records. A
//! damaged newest checkpoint is skipped with a warning for the previous one, whose log
//! segments [`checkpoint::prune`] keeps for exactly this; start-up stops only when what
//! remains does not reach everything the damaged one held.
//!
//! Replay goes through the core's one entry point ([`Core::apply`] with
//! [`Command::Replay`]), which changes the state through the same function as the live
//! call did, so the rebuilt state is the one the master had. A record that no longer applies means the files disagree with each
//! other: start-up stops naming the file and offset rather than guess.

use std::path::Path;

use tracing::{info, warn};

use crate::checkpoint;
use crate::clock::Now;
use crate::command::Command;
use crate::config::Config;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::oplog::{Journal, LogThread, segment};

/// The state rebuilt at start-up and the log writer now serving it.
#[derive(Debug)]
pub struct Recovered {
    /// The state, in safe mode if it has chunks.
    pub core: Core,
    /// The log's handle, open after the last record.
    pub journal: Journal,
    /// The log writer thread.
    pub log: LogThread,
    /// The txid of the checkpoint loaded (0 = none).
    pub checkpoint_txid: u64,
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|source| Error::Io { what: format!("creating {}", dir.display()), source })
}

/// A checkpoint that did not read back whole.
#[derive(Debug)]
struct Damaged {
    path: std::path::PathBuf,
    txid: u64,
    error: Error,
}

/// A checkpoint that read back whole: its file and contents.
type Readable = (std::path::PathBuf, checkpoint::Loaded);

/// The newest checkpoint that reads back whole (`None`: start from the empty namespace)
/// and, if a newer one was damaged, the newest damaged one.
///
/// Older checkpoints are only tried past a damaged one: the previous checkpoint and the
/// log segments after it are kept exactly so that losing the newest one loses nothing
/// ([`checkpoint::prune`]). Whether they really cover it is for the replay to tell.
///
/// # Errors
/// A checkpoint directory that cannot be listed, or a checkpoint that cannot be read at
/// all (I/O, not damage): falling back over it could hide a problem that is not data.
fn newest_readable_checkpoint(dir: &Path) -> Result<(Option<Readable>, Option<Damaged>)> {
    let mut damaged: Option<Damaged> = None;
    for (txid, path) in checkpoint::list(dir)?.into_iter().rev() {
        match checkpoint::read(&path) {
            Ok(loaded) => return Ok((Some((path, loaded)), damaged)),
            Err(error @ Error::Corrupt { .. }) => {
                warn!(file = %path.display(), %error, "checkpoint is damaged; falling back to the one before it and replaying the log from there");
                damaged.get_or_insert(Damaged { path, txid, error });
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(d) = &damaged {
        warn!(damaged = %d.path.display(), "no older checkpoint: replaying the whole log from an empty namespace");
    }
    Ok((None, damaged))
}

/// Rebuilds the state from `config.dir` and opens the log after the last record.
///
/// A damaged newest checkpoint is set aside, loudly, for the previous one (or the empty
/// namespace) plus the log, as long as that replays without a gap up to at least the
/// damaged checkpoint's transaction.
///
/// # Errors
/// [`Error::Corrupt`] naming file and offset for a damaged or incomplete log, or a
/// record that does not apply; [`Error::CheckpointLost`] for a damaged checkpoint that
/// the older one and the log do not cover; I/O errors.
pub fn recover(config: Config) -> Result<Recovered> {
    let started = std::time::Instant::now();
    let dir = config.dir.clone();
    let log_dir = segment::log_dir(&dir);
    create_dir(&dir)?;
    create_dir(&log_dir)?;
    for entry in std::fs::read_dir(&dir)
        .map_err(|source| Error::Io { what: format!("listing {}", dir.display()), source })?
    {
        let name =
            entry.map_err(|source| Error::Io { what: "listing".into(), source })?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("checkpoint-") && name.ends_with(".tmp") {
            warn!(file = %dir.join(&*name).display(), "ignoring a half-written checkpoint");
        }
    }
    let (segment_size, every) = (config.segment_size, config.checkpoint_records);
    let (loaded, damaged) = newest_readable_checkpoint(&dir)?;
    let (mut state, checkpoint_txid) = match loaded {
        Some((path, loaded)) => {
            info!(file = %path.display(), txid = loaded.txid, "checkpoint loaded");
            (Core::new(config).with_image(loaded.ns, loaded.chunks), loaded.txid)
        }
        None => (Core::new(config), 0),
    };
    let mono = std::time::Instant::now();
    let replayed = segment::replay(&log_dir, checkpoint_txid, |file, offset, rec| {
        let (txid, now) = (rec.txid, Now { mono, wall_ms: rec.time_ms });
        let out = state.apply(Command::Replay(rec), now);
        out.reply.map(drop).map_err(|e| Error::Corrupt {
            file: file.display().to_string(),
            offset,
            reason: format!("txid {txid} does not apply: {e}"),
        })
    });
    let last = match (replayed, &damaged) {
        (Ok(last), None) => last,
        (Err(e), None) => return Err(e),
        (replayed, Some(d)) => {
            let fallback = match checkpoint_txid {
                0 => "the empty namespace".to_owned(),
                t => dir.join(checkpoint::file_name(t)).display().to_string(),
            };
            let lost = |why: String| Error::CheckpointLost {
                damaged: d.error.to_string(),
                fallback: fallback.clone(),
                why,
            };
            let last = replayed.map_err(|e| lost(e.to_string()))?;
            // Replay checks the log has no gap after the fallback; this checks it also
            // reaches everything the damaged checkpoint held.
            if last < d.txid {
                return Err(lost(format!(
                    "the log ends at txid {last}, before txid {} of the damaged checkpoint",
                    d.txid
                )));
            }
            warn!(damaged = %d.path.display(), fallback, replayed = last - checkpoint_txid, "recovered without the damaged checkpoint; it stays in place until a newer checkpoint supersedes it");
            last
        }
    };
    let (journal, log) = Journal::open(&log_dir, last, segment_size, every)?;
    state.start(mono);
    info!(
        checkpoint_txid,
        replayed = last - checkpoint_txid,
        files = state.ns.file_count(),
        directories = state.ns.dir_count(),
        chunks = state.chunks.len(),
        safe_mode = state.safemode.is_on(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "namespace recovered"
    );
    Ok(Recovered { core: state, journal, log, checkpoint_txid })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use proto::path::DfsPath;

    use super::*;
    use crate::checkpoint::Checkpointer;
    use crate::cluster::{Identity, Load};
    use crate::command::{Mutation, Reply};
    use crate::core::ReportedReplica;
    use crate::driver::Driver;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).expect("path")
    }

    fn cfg(dir: &Path) -> Config {
        Config {
            dir: dir.to_owned(),
            chunk_size: 1 << 20,
            replication: 2,
            safemode_extension: Duration::ZERO,
            ..Config::default()
        }
    }

    /// Everything a restart must bring back: the namespace and the chunks' persistent fields.
    fn persistent(st: &Core) -> (Vec<String>, Vec<(u64, u64, u64)>) {
        let mut chunks: Vec<_> =
            st.chunks.iter().map(|(h, c)| (h.0, c.version, c.length)).collect();
        chunks.sort_unstable();
        (st.ns.dump(), chunks)
    }

    fn register(st: &mut Core, n: u32, chunks: &[ReportedReplica]) {
        let load = Load { capacity: 1 << 40, remaining: 1 << 40, ..Load::default() };
        for i in 0..n {
            let (id, addr) = (format!("cs{i}"), format!("127.0.0.{}:1", i + 2));
            st.register(
                Identity { id: &id, addr: &addr, rack: "/r" },
                load,
                chunks,
                Instant::now(),
                0,
            );
        }
    }

    /// Applies and logs one mutation the way the gRPC edge does; returns its answer.
    async fn mutate(d: &Driver, m: Mutation) -> Reply {
        let caller = std::sync::Arc::new(crate::permission::Caller::superuser("u"));
        d.apply(Command::Mutate { caller, mutation: m })
            .await
            .expect("durable")
            .reply
            .expect("applied")
    }

    /// Writes a file with `chunks` chunks through the live allocation path.
    async fn write_file(d: &Driver, path: &str, chunks: usize) {
        let create = Mutation::Create {
            path: p(path),
            replication: 2,
            chunk_size: 1 << 20,
            overwrite: true,
            create_parents: true,
            umask: 0o022,
            client: "w".into(),
        };
        mutate(d, create).await;
        let mut prev = None;
        for _ in 0..chunks {
            let add = Mutation::AddChunk {
                path: p(path),
                client: "w".into(),
                previous: prev,
                client_host: String::new(),
                excluded: Vec::new(),
            };
            let Reply::Chunk(l) = mutate(d, add).await else { panic!("not a chunk") };
            prev = Some((l.handle, 1 << 20));
        }
        let last = prev.map(|(h, _)| (h, 7));
        mutate(d, Mutation::Complete { path: p(path), client: "w".into(), last }).await;
    }

    async fn workload(d: &Driver, round: i64) {
        let base = format!("/r{round}");
        let mkdir =
            Mutation::Mkdir { path: p(&format!("{base}/a/b")), parents: true, umask: 0o022 };
        mutate(d, mkdir).await;
        write_file(d, &format!("{base}/a/f"), 2).await;
        write_file(d, &format!("{base}/a/g"), 1).await;
        write_file(d, &format!("{base}/gone"), 1).await;
        let rename =
            Mutation::Rename { src: p(&format!("{base}/a/f")), dst: p(&format!("{base}/a/b")) };
        mutate(d, rename).await;
        mutate(d, Mutation::SetReplication { path: p(&format!("{base}/a")), replication: 1 }).await;
        mutate(d, Mutation::Delete { path: p(&format!("{base}/gone")), recursive: false }).await;
        // Overwrite releases the old file's chunks.
        write_file(d, &format!("{base}/a/g"), 1).await;
    }

    fn start(dir: &Path) -> (Driver, LogThread, u64) {
        let r = recover(cfg(dir)).expect("recover");
        let mut st = r.core;
        // Chunkservers for placement; the safe mode they end is tested on its own.
        register(&mut st, 3, &[]);
        st.safemode.leave();
        (Driver::new(st, r.journal), r.log, r.checkpoint_txid)
    }

    fn restart(dir: &Path) -> Core {
        recover(cfg(dir)).expect("recover").core
    }

    fn live(d: &Driver) -> (Vec<String>, Vec<(u64, u64, u64)>) {
        persistent(&d.lock().expect("lock").core)
    }

    fn last_txid(d: &Driver) -> u64 {
        d.lock().expect("lock").journal.last_txid()
    }

    #[tokio::test]
    async fn checkpoint_plus_replay_equals_the_live_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (state, log, ckpt) = start(dir.path());
        let cp = Checkpointer::new(state.clone(), dir.path().to_owned(), ckpt);
        workload(&state, 1).await;
        let first = cp.checkpoint(0).await.expect("checkpoint");
        assert_eq!(first, last_txid(&state));
        workload(&state, 3).await;
        let second = cp.checkpoint(0).await.expect("checkpoint");
        workload(&state, 5).await;
        let live = live(&state);
        log.stop();
        let r = recover(cfg(dir.path())).expect("recover");
        assert_eq!(persistent(&r.core), live);
        assert_eq!(r.journal.last_txid(), last_txid(&state));
        r.log.stop();
        let back = r.core;
        // New handles continue above every recovered one.
        assert!(back.chunks.next_handle() > live.1.iter().map(|c| c.0).max().unwrap_or(0));
        // Both checkpoints are kept; segments up to the first one are gone.
        let ckpts: Vec<u64> =
            checkpoint::list(dir.path()).expect("list").iter().map(|c| c.0).collect();
        assert_eq!(ckpts, vec![first, second]);
        let segs = segment::list(&segment::log_dir(dir.path())).expect("segments");
        assert!(segs.iter().all(|s| s.0 > 1), "{segs:?}");
        // Replay alone from the first checkpoint rebuilds the same state too.
        std::fs::remove_file(dir.path().join(checkpoint::file_name(second))).expect("rm");
        assert_eq!(persistent(&restart(dir.path())), live);
    }

    #[tokio::test]
    async fn a_half_written_checkpoint_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (state, log, ckpt) = start(dir.path());
        let cp = Checkpointer::new(state.clone(), dir.path().to_owned(), ckpt);
        workload(&state, 1).await;
        let txid = cp.checkpoint(0).await.expect("checkpoint");
        workload(&state, 2).await;
        let live = live(&state);
        log.stop();
        // A later checkpoint that crashed half-way: the first bytes of a valid one.
        let good = std::fs::read(dir.path().join(checkpoint::file_name(txid))).expect("read");
        let tmp: PathBuf = dir.path().join(format!("checkpoint-{:020}.tmp", txid + 5));
        std::fs::write(&tmp, &good[..good.len() / 2]).expect("write tmp");
        assert_eq!(persistent(&restart(dir.path())), live);
    }

    /// Flips a byte in the middle of a file, as bit rot would.
    fn flip_middle(path: &Path) -> Vec<u8> {
        let good = std::fs::read(path).expect("read");
        let mut flipped = good.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x10;
        std::fs::write(path, &flipped).expect("write");
        good
    }

    /// Two checkpoints with work after each; returns their txids and the live state.
    async fn two_checkpoints(dir: &Path) -> (u64, u64, (Vec<String>, Vec<(u64, u64, u64)>)) {
        let (state, log, ckpt) = start(dir);
        let cp = Checkpointer::new(state.clone(), dir.to_owned(), ckpt);
        workload(&state, 1).await;
        let first = cp.checkpoint(0).await.expect("checkpoint");
        workload(&state, 3).await;
        let second = cp.checkpoint(0).await.expect("checkpoint");
        workload(&state, 5).await;
        let live = live(&state);
        log.stop();
        (first, second, live)
    }

    #[tokio::test]
    async fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, second, live) = two_checkpoints(dir.path()).await;
        let newest = dir.path().join(checkpoint::file_name(second));
        flip_middle(&newest);
        let r = recover(cfg(dir.path())).expect("falls back");
        assert_eq!(r.checkpoint_txid, first, "the previous checkpoint was loaded");
        assert_eq!(persistent(&r.core), live);
        r.log.stop();
        // The damaged file is left for the operator; the next checkpoint supersedes it.
        assert!(newest.is_file());
    }

    #[tokio::test]
    async fn a_damaged_only_checkpoint_falls_back_to_the_whole_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (state, log, ckpt) = start(dir.path());
        let cp = Checkpointer::new(state.clone(), dir.path().to_owned(), ckpt);
        workload(&state, 1).await;
        let txid = cp.checkpoint(0).await.expect("checkpoint");
        workload(&state, 2).await;
        let live = live(&state);
        log.stop();
        let path = dir.path().join(checkpoint::file_name(txid));
        // Cut short: the trailer is missing.
        let good = std::fs::read(&path).expect("read");
        std::fs::write(&path, &good[..good.len() - 3]).expect("write");
        let r = recover(cfg(dir.path())).expect("falls back");
        assert_eq!(r.checkpoint_txid, 0);
        assert_eq!(persistent(&r.core), live);
    }

    #[tokio::test]
    async fn a_damaged_checkpoint_the_log_does_not_cover_stops_start_up_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, second, _) = two_checkpoints(dir.path()).await;
        let newest = dir.path().join(checkpoint::file_name(second));
        let good = flip_middle(&newest);
        // The segment right after the previous checkpoint is gone: a gap.
        let log_dir = segment::log_dir(dir.path());
        let gap = log_dir.join(segment::segment_name(first + 1));
        std::fs::remove_file(&gap).expect("remove segment");
        let err = recover(cfg(dir.path())).expect_err("must fail").to_string();
        assert!(!err.contains('\n'), "one line: {err}");
        assert!(err.contains(&newest.display().to_string()) && err.contains("offset"), "{err}");
        let previous = dir.path().join(checkpoint::file_name(first));
        assert!(err.contains(&previous.display().to_string()) && err.contains("missing"), "{err}");
        // Cut short instead, and the log ends before the damaged checkpoint's txid.
        std::fs::write(&newest, &good[..good.len() - 3]).expect("write");
        for (_, seg) in segment::list(&log_dir).expect("segments") {
            std::fs::remove_file(seg).expect("remove segment");
        }
        std::fs::remove_file(&previous).expect("remove previous");
        let err = recover(cfg(dir.path())).expect_err("must fail").to_string();
        assert!(err.contains(&newest.display().to_string()) && err.contains("checkpoint"), "{err}");
        assert!(err.contains("empty namespace") && err.contains("log ends at txid 0"), "{err}");
    }

    #[tokio::test]
    async fn safe_mode_holds_until_chunks_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (state, log, _) = start(dir.path());
        workload(&state, 1).await;
        let held: Vec<ReportedReplica> = state
            .lock()
            .expect("lock")
            .core
            .chunks
            .iter()
            .map(|(handle, c)| ReportedReplica {
                handle,
                version: c.version,
                length: c.length,
                finalized: true,
            })
            .collect();
        log.stop();
        let mut st = restart(dir.path());
        assert!(st.safemode.is_on());
        let err = st.writable().expect_err("refused").to_string();
        assert!(
            err.contains("safe mode") && err.contains(&format!("0 of {} chunks", held.len())),
            "{err}"
        );
        // Reads still work.
        assert!(st.ns.lookup(&p("/r1/a/b/f")).is_ok());
        // No replica locations survive a restart.
        assert!(st.chunks.iter().all(|(_, c)| c.replicas.is_empty()));
        // Half the chunks reported: still on, and no delete is handed out.
        register(&mut st, 1, &held[..held.len() / 2]);
        st.update_safemode(Instant::now());
        assert!(st.safemode.is_on());
        let stale = ReportedReplica { version: 0, ..held[0] };
        assert!(st.report_chunks("cs0", &[stale], &[], &[]));
        assert_eq!(
            st.heartbeat("cs0", Load::default(), Instant::now(), 0),
            Some(crate::core::HeartbeatReply::default())
        );
        register(&mut st, 1, &held);
        st.update_safemode(Instant::now());
        assert!(!st.safemode.is_on());
        st.writable().expect("writable once reported");
    }

    #[tokio::test]
    async fn the_log_passing_its_threshold_triggers_a_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = recover(Config { checkpoint_records: 10, ..cfg(dir.path()) }).expect("recover");
        let wanted = r.journal.checkpoint_wanted();
        let mut st = r.core;
        register(&mut st, 3, &[]);
        st.safemode.leave();
        let state = Driver::new(st, r.journal);
        let cp = Checkpointer::new(state.clone(), dir.path().to_owned(), 0);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(cp.run(wanted, 10, stop_rx));
        workload(&state, 1).await;
        let mut written = Vec::new();
        for _ in 0..500 {
            written = checkpoint::list(dir.path()).expect("list");
            if !written.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!written.is_empty(), "no checkpoint after the threshold");
        let _ = stop_tx.send(true);
        task.await.expect("checkpointer");
        let live = live(&state);
        r.log.stop();
        assert_eq!(persistent(&restart(dir.path())), live);
    }

    #[test]
    fn an_empty_namespace_starts_out_of_safe_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = recover(cfg(dir.path())).expect("recover");
        assert!(!r.core.safemode.is_on());
        r.core.writable().expect("writable");
    }
}
