//! Log segments on disk: `DIR/log/seg-<first txid as 020>.log`, each a run of framed
//! [`Record`]s with consecutive transaction ids, and the replay of those after a
//! checkpoint.
//!
//! Replay is strict: records must continue the checkpoint's transaction id one by one,
//! across segments. The one damage it repairs is a torn record at the very end of the last
//! segment (the mark a crash in the middle of an append leaves: a header or payload that
//! runs past the end of the file): it is cut off and logged. A bad checksum anywhere,
//! even on a complete last record, a missing segment or an undecodable record stops it
//! with the file and offset, so an operator sees exactly what is wrong and nothing is
//! silently dropped.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use tracing::warn;

use super::frame::{Frame, Frames};
use super::record::Record;
use crate::error::{Error, Result};

/// Name of the log's directory inside the master's metadata directory.
pub const LOG_DIR: &str = "log";

/// The log directory of metadata directory `dir`.
pub fn log_dir(dir: &Path) -> PathBuf {
    dir.join(LOG_DIR)
}

/// File name of the segment whose first record is `first_txid`.
pub fn segment_name(first_txid: u64) -> String {
    format!("seg-{first_txid:020}.log")
}

/// The first transaction id a segment file name stands for.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// Segments in `log_dir` by first transaction id, oldest first.
///
/// # Errors
/// The directory cannot be read.
pub fn list(log_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = fs::read_dir(log_dir).map_err(io(format!("listing {}", log_dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io(format!("listing {}", log_dir.display())))?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.push((first, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Makes a directory's entries (files created, renamed or removed in it) durable.
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing directory {}", dir.display())))
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Error {
    Error::Corrupt { file: path.display().to_string(), offset, reason: reason.into() }
}

/// Replays every record after `after_txid` from the segments in `log_dir`, in order,
/// through `apply(file, offset, record)`. Returns the last transaction id (`after_txid`
/// when there is nothing to replay).
///
/// # Errors
/// [`Error::Corrupt`] naming the file and offset for a bad checksum (other than a torn
/// tail), an undecodable record, a transaction id out of sequence or a missing segment;
/// whatever `apply` returns; I/O errors.
pub fn replay(
    log_dir: &Path,
    after_txid: u64,
    mut apply: impl FnMut(&Path, u64, Record) -> Result<()>,
) -> Result<u64> {
    let segments = list(log_dir)?;
    // Segments wholly covered by the checkpoint are skipped: those followed by one that
    // starts at or before the first transaction to replay.
    let start = segments.iter().rposition(|(first, _)| *first <= after_txid + 1).unwrap_or(0);
    let segments = &segments[start..];
    let mut expected = after_txid + 1;
    for (i, (first, path)) in segments.iter().enumerate() {
        if *first > expected {
            return Err(corrupt(
                path,
                0,
                format!(
                    "segment starts at txid {first} but txid {expected} is the next to replay: \
                     a log segment is missing"
                ),
            ));
        }
        let buf = fs::read(path).map_err(io(format!("reading {}", path.display())))?;
        let mut frames = Frames::new(&buf);
        loop {
            match frames.next_frame() {
                Frame::Record { offset, payload } => {
                    let rec = Record::decode(payload).map_err(|r| corrupt(path, offset, r))?;
                    if rec.txid <= after_txid && expected == after_txid + 1 {
                        // Already in the checkpoint (only before the first replayed record).
                        continue;
                    }
                    if rec.txid != expected {
                        return Err(corrupt(
                            path,
                            offset,
                            format!("txid {} out of sequence, expected {expected}", rec.txid),
                        ));
                    }
                    apply(path, offset, rec)?;
                    expected += 1;
                }
                Frame::End => break,
                Frame::Torn { offset, reason } if i + 1 == segments.len() => {
                    cut(path, offset)?;
                    warn!(file = %path.display(), offset, %reason, "cut a torn record off the end of the operation log");
                    break;
                }
                Frame::Torn { offset, reason } | Frame::Corrupt { offset, reason } => {
                    return Err(corrupt(path, offset, reason));
                }
            }
        }
    }
    Ok(expected - 1)
}

/// Truncates a segment at `offset` and makes that durable.
fn cut(path: &Path, offset: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(format!("opening {} to cut its torn tail", path.display())))?;
    f.set_len(offset)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("cutting {} at offset {offset}", path.display())))
}

#[cfg(test)]
mod tests {
    use proto::path::DfsPath;

    use super::super::frame;
    use super::super::record::Op;
    use super::*;

    fn rec(txid: u64) -> Record {
        let path = DfsPath::parse(&format!("/d{txid}")).expect("path");
        Record {
            txid,
            time_ms: txid as i64,
            op: Op::Mkdir { path, parents: false, owner: "u".into(), umask: 0o022 },
            call: None,
        }
    }

    fn write_segment(dir: &Path, txids: std::ops::RangeInclusive<u64>) -> PathBuf {
        let path = dir.join(segment_name(*txids.start()));
        let mut buf = Vec::new();
        for t in txids {
            frame::push(&rec(t).encode(), &mut buf);
        }
        fs::write(&path, buf).expect("write segment");
        path
    }

    fn replayed(dir: &Path, after: u64) -> Result<Vec<u64>> {
        let mut seen = Vec::new();
        replay(dir, after, |_, _, r| {
            seen.push(r.txid);
            Ok(())
        })?;
        Ok(seen)
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name(42), "seg-00000000000000000042.log");
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("seg-42.log"), None);
        assert_eq!(parse_segment_name("checkpoint-00000000000000000042.ckpt"), None);
    }

    #[test]
    fn replays_across_segments_after_a_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_segment(dir.path(), 1..=3);
        write_segment(dir.path(), 4..=6);
        write_segment(dir.path(), 7..=7);
        assert_eq!(replayed(dir.path(), 0).expect("replay"), (1..=7).collect::<Vec<_>>());
        assert_eq!(replayed(dir.path(), 5).expect("replay"), vec![6, 7]);
        assert_eq!(replayed(dir.path(), 7).expect("replay"), Vec::<u64>::new());
    }

    #[test]
    fn torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_segment(dir.path(), 1..=2);
        let last = write_segment(dir.path(), 3..=5);
        let full = fs::metadata(&last).expect("meta").len();
        let f = OpenOptions::new().write(true).open(&last).expect("open");
        f.set_len(full - 3).expect("truncate");
        assert_eq!(replayed(dir.path(), 0).expect("replay"), vec![1, 2, 3, 4]);
        let cut_len = fs::metadata(&last).expect("meta").len();
        assert!(cut_len < full - 3, "the torn record was removed from the file");
        // Replaying again finds a clean end.
        assert_eq!(replayed(dir.path(), 0).expect("again"), vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_complete_last_record_with_a_bad_checksum_stops_replay_and_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let last = write_segment(dir.path(), 1..=3);
        let mut bytes = fs::read(&last).expect("read");
        let end = bytes.len() - 1;
        bytes[end] ^= 0x40;
        fs::write(&last, &bytes).expect("write");
        let err = replayed(dir.path(), 0).expect_err("must fail").to_string();
        assert!(err.contains(&last.display().to_string()), "{err}");
        assert!(err.contains("checksum mismatch on a complete record"), "{err}");
        // Nothing was cut: the operator finds the file as it was.
        assert_eq!(fs::read(&last).expect("read"), bytes);
    }

    #[test]
    fn damage_before_the_end_stops_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = write_segment(dir.path(), 1..=3);
        write_segment(dir.path(), 4..=5);
        // A torn-looking tail in a segment that is not the last is corruption.
        let len = fs::metadata(&first).expect("meta").len();
        OpenOptions::new().write(true).open(&first).expect("open").set_len(len - 1).expect("cut");
        let err = replayed(dir.path(), 0).expect_err("must fail").to_string();
        assert!(err.contains(&first.display().to_string()) && err.contains("offset"), "{err}");
        // A flipped byte in the middle of the last segment.
        let dir = tempfile::tempdir().expect("tempdir");
        let seg = write_segment(dir.path(), 1..=3);
        let mut bytes = fs::read(&seg).expect("read");
        bytes[frame::HEADER_LEN + 2] ^= 0x40;
        fs::write(&seg, bytes).expect("write");
        let err = replayed(dir.path(), 0).expect_err("must fail").to_string();
        assert!(err.contains("offset 0") && err.contains("checksum"), "{err}");
    }

    #[test]
    fn missing_segment_is_a_gap() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_segment(dir.path(), 1..=3);
        let later = write_segment(dir.path(), 7..=8);
        let err = replayed(dir.path(), 0).expect_err("gap").to_string();
        assert!(err.contains(&later.display().to_string()) && err.contains("missing"), "{err}");
        // The checkpoint may not end before the log begins either.
        let dir = tempfile::tempdir().expect("tempdir");
        write_segment(dir.path(), 5..=6);
        assert!(replayed(dir.path(), 2).is_err());
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::super::frame;
    use super::super::frame::proptests::{Damage, damage, starts};
    use super::super::record::proptests::record;
    use super::*;

    /// Writes `records` as segments starting at the records `firsts` names (and the
    /// first); returns each segment's path and first record.
    fn write(dir: &Path, records: &[Record], firsts: &[Index]) -> Vec<(PathBuf, usize)> {
        let mut cuts: Vec<usize> = firsts.iter().map(|i| i.index(records.len())).collect();
        cuts.push(0);
        cuts.sort_unstable();
        cuts.dedup();
        let mut out = Vec::new();
        for (k, &first) in cuts.iter().enumerate() {
            let end = cuts.get(k + 1).copied().unwrap_or(records.len());
            let mut buf = Vec::new();
            for r in &records[first..end] {
                frame::push(&r.encode(), &mut buf);
            }
            let path = dir.join(segment_name(records[first].txid));
            fs::write(&path, buf).expect("write segment");
            out.push((path, first));
        }
        out
    }

    fn replayed(dir: &Path) -> Result<Vec<Record>> {
        let mut seen = Vec::new();
        replay(dir, 0, |_, _, r| {
            seen.push(r);
            Ok(())
        })?;
        Ok(seen)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Replay hands back exactly the records written, in order, or stops with
        /// `Corrupt`. It drops records only by cutting a torn tail off the last segment:
        /// a cut, or a length field changed so the last record runs past the end, which
        /// the format cannot tell from a torn append (the checksum covers the payload
        /// only). Damage anywhere else stops it.
        #[test]
        fn replay_returns_what_was_written_or_stops(
            records in prop::collection::vec(record(), 1..10),
            firsts in prop::collection::vec(any::<Index>(), 0..3),
            damaged in prop::option::of((any::<Index>(), damage())),
        ) {
            let records: Vec<Record> = records
                .into_iter()
                .enumerate()
                .map(|(i, r)| Record { txid: i as u64 + 1, ..r })
                .collect();
            let dir = tempfile::tempdir().expect("tempdir");
            let segments = write(dir.path(), &records, &firsts);
            // Which record the damage reached, whether in the last segment, and whether
            // only through a length field.
            let mut hit: Option<(usize, bool, bool)> = None;
            if let Some((which, damage)) = &damaged {
                let s = which.index(segments.len());
                let (path, first) = &segments[s];
                let mut buf = fs::read(path).expect("read");
                let frames = starts(&buf);
                let len = buf.len();
                if let Some(f) = damage.apply(&mut buf, &frames) {
                    let in_length = match damage {
                        Damage::Length { .. } => true,
                        Damage::Flip { at, .. } => {
                            frames.get(f).is_some_and(|&s| at.index(len) < s + 4)
                        }
                        _ => false,
                    };
                    hit = Some((first + f, s + 1 == segments.len(), in_length));
                }
                fs::write(path, &buf).expect("write");
            }
            match replayed(dir.path()) {
                Ok(got) => {
                    prop_assert_eq!(&got[..], &records[..got.len()]);
                    if got.len() < records.len() {
                        let cut = matches!(damaged, Some((_, Damage::Cut(_))));
                        let Some((at, last, in_length)) = hit else {
                            return Err(TestCaseError::fail("records lost without damage"));
                        };
                        prop_assert!(last && (cut || in_length), "lost records {}.. to {:?}", got.len(), damaged);
                        prop_assert_eq!(got.len(), at);
                        // The torn tail was cut off: a second replay reads the same.
                        prop_assert_eq!(replayed(dir.path()).expect("again"), got);
                    }
                }
                Err(e) => {
                    prop_assert!(matches!(e, Error::Corrupt { .. }), "{}", e);
                    let Some((_, last, _)) = hit else {
                        return Err(TestCaseError::fail(format!("undamaged log refused: {e}")));
                    };
                    // A last segment cut anywhere is a torn tail, never a refusal.
                    let cut = matches!(damaged, Some((_, Damage::Cut(_))));
                    prop_assert!(!(last && cut), "a cut last segment refused: {}", e);
                }
            }
        }
    }
}
