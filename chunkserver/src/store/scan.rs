//! Start-up scan of the data directory: loads finalized replicas, recovers replicas a
//! crash left in `rbw/`, and completes a finalize interrupted between its two renames.
//!
//! Nothing found on disk makes start-up fail: a replica whose header or sizes are wrong
//! is loaded as corrupt (reported to the master, which re-replicates and deletes it).
//! A replica being written is cut to the longest prefix of blocks whose CRCs verify,
//! which is at least everything that was acknowledged (acks follow the local write).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use proto::checksum::{self, BLOCK_SIZE};
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::meta::{self, HEADER_LEN, Header};
use crate::store::{ReplicaInfo, Store};

const B: u64 = BLOCK_SIZE as u64;
/// Blocks verified per read while recovering a replica.
const RECOVERY_BLOCKS: u64 = 64;

/// Loads every replica under `store`'s directories into it.
///
/// # Errors
/// [`Error::Io`] only if a directory cannot be listed or a rename fails.
pub(crate) fn load(store: &Store) -> Result<()> {
    let fin_dir = store.dir(true).to_owned();
    let rbw_dir = store.dir(false).to_owned();
    let finalized = handles_in(&fin_dir)?;
    for &h in &finalized {
        let (meta, data) = (fin_dir.join(name(h, "meta")), fin_dir.join(name(h, "data")));
        let rbw_data = rbw_dir.join(name(h, "data"));
        if meta.exists() && !data.exists() && rbw_data.exists() {
            info!(chunk = %format!("{h:016x}"), "completing an interrupted finalize");
            fs::rename(&rbw_data, &data).map_err(|e| {
                Error::io(format!("rename {} to {}", rbw_data.display(), data.display()), e)
            })?;
        }
        load_finalized(store, &fin_dir, h);
    }
    for h in handles_in(&rbw_dir)? {
        if finalized.contains(&h) {
            // Finalized wins: the rbw leftovers are an older, failed attempt.
            store.remove_files(false, h)?;
            continue;
        }
        recover_rbw(store, &rbw_dir, h);
    }
    Ok(())
}

fn name(handle: u64, ext: &str) -> String {
    format!("{handle:016x}.{ext}")
}

/// Handles of the `<16 hex>.data`/`.meta` files in `dir`; anything else is ignored.
fn handles_in(dir: &Path) -> Result<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    let entries = fs::read_dir(dir).map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let Some((stem, ext)) = file.split_once('.') else { continue };
        if stem.len() != 16 || !(ext == "data" || ext == "meta") {
            continue;
        }
        if let Ok(h) = u64::from_str_radix(stem, 16) {
            out.insert(h);
        }
    }
    Ok(out)
}

fn load_finalized(store: &Store, dir: &Path, h: u64) {
    let meta_path = dir.join(name(h, "meta"));
    let data_len = fs::metadata(dir.join(name(h, "data"))).map(|m| m.len());
    let checked = fs::read(&meta_path)
        .map_err(|e| Error::io(format!("read {}", meta_path.display()), e))
        .and_then(|raw| {
            let what = meta_path.display().to_string();
            let header = Header::decode(&raw, &what)?;
            let bad = |reason: String| Error::BadMeta { path: what.clone(), reason };
            if header.handle != h {
                return Err(bad(format!("header names chunk {:016x}", header.handle)));
            }
            let want_meta = HEADER_LEN + 4 * checksum::block_count(header.length as usize) as u64;
            if raw.len() as u64 != want_meta {
                return Err(bad(format!("{} bytes, expected {want_meta}", raw.len())));
            }
            match data_len {
                Ok(n) if n == header.length => Ok(header),
                Ok(n) => {
                    Err(bad(format!("data file has {n} bytes, header says {}", header.length)))
                }
                Err(_) => Err(bad("data file is missing".to_owned())),
            }
        });
    match checked {
        Ok(header) => store.insert_loaded(
            ReplicaInfo {
                handle: h,
                version: header.version,
                length: header.length,
                finalized: true,
            },
            false,
        ),
        Err(e) => {
            warn!(cause = %e, "finalized replica is corrupt");
            let length = data_len.unwrap_or(0);
            store.insert_loaded(
                ReplicaInfo { handle: h, version: 0, length, finalized: true },
                true,
            );
        }
    }
}

fn recover_rbw(store: &Store, dir: &Path, h: u64) {
    match verified_prefix(dir, h) {
        Ok((version, length)) => {
            store.insert_loaded(ReplicaInfo { handle: h, version, length, finalized: false }, false)
        }
        Err(e) => {
            warn!(cause = %e, "replica being written is corrupt");
            let length = fs::metadata(dir.join(name(h, "data"))).map(|m| m.len()).unwrap_or(0);
            store.insert_loaded(
                ReplicaInfo { handle: h, version: 0, length, finalized: false },
                true,
            );
        }
    }
}

/// Cuts an rbw replica to the longest prefix of blocks that verify; returns its version
/// and new length.
pub(super) fn verified_prefix(dir: &Path, h: u64) -> Result<(u64, u64)> {
    let (meta_path, data_path) = (dir.join(name(h, "meta")), dir.join(name(h, "data")));
    let open = |p: &Path| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .map_err(|e| Error::io(format!("open {}", p.display()), e))
    };
    let meta_file = open(&meta_path)?;
    let mut raw = [0u8; HEADER_LEN as usize];
    let what = meta_path.display().to_string();
    meta_file.read_exact_at(&mut raw, 0).map_err(|e| Error::io(format!("read {what}"), e))?;
    let header = Header::decode(&raw, &what)?;
    if header.handle != h {
        return Err(Error::BadMeta {
            path: what,
            reason: format!("header names chunk {:016x}", header.handle),
        });
    }
    let data_file = open(&data_path)?;
    let len_of = |f: &File, p: &Path| {
        f.metadata().map(|m| m.len()).map_err(|e| Error::io(format!("stat {}", p.display()), e))
    };
    let data_len = len_of(&data_file, &data_path)?;
    let meta_len = len_of(&meta_file, &meta_path)?;
    let stored_crcs = meta_len.saturating_sub(HEADER_LEN) / 4;
    let blocks = data_len.div_ceil(B).min(stored_crcs);
    let mut good = 0u64;
    'verify: while good < blocks {
        let n = RECOVERY_BLOCKS.min(blocks - good);
        let start = good * B;
        let end = ((good + n) * B).min(data_len);
        let mut buf = vec![0u8; (end - start) as usize];
        data_file
            .read_exact_at(&mut buf, start)
            .map_err(|e| Error::io(format!("read {}", data_path.display()), e))?;
        let crcs = meta::read_crcs(&meta_file, good, n as usize, &what)?;
        for (bytes, want) in buf.chunks(BLOCK_SIZE).zip(crcs) {
            if checksum::crc(bytes) != want {
                break 'verify;
            }
            // Only a chunk's last block may be short; a verified short block ends it.
            good += 1;
            if bytes.len() < BLOCK_SIZE {
                break 'verify;
            }
        }
    }
    let length = (good * B).min(data_len);
    let truncate = |f: &File, len: u64, p: &Path| {
        f.set_len(len).map_err(|e| Error::io(format!("truncate {}", p.display()), e))
    };
    if length != data_len || HEADER_LEN + 4 * good != meta_len {
        info!(
            chunk = %format!("{h:016x}"),
            kept = length,
            found = data_len,
            "recovered replica left by an interrupted write"
        );
        truncate(&data_file, length, &data_path)?;
        truncate(&meta_file, HEADER_LEN + 4 * good, &meta_path)?;
    }
    Ok((header.version, length))
}

#[cfg(test)]
mod proptests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use proptest::sample::Index;
    use proto::alloc_probe::largest_allocation;

    use super::*;
    use crate::reports::ReportQueue;
    use crate::store::tests::{data, write};

    /// How a replica's files are found at start-up.
    #[derive(Debug, Clone)]
    enum Damage {
        None,
        Flip {
            meta: bool,
            at: Index,
            bit: u8,
        },
        Cut {
            meta: bool,
            at: Index,
        },
        Append {
            meta: bool,
            bytes: Vec<u8>,
        },
        /// A header rewritten whole, its CRC correct, claiming this length.
        Length(u64),
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            1 => Just(Damage::None),
            3 => (any::<bool>(), any::<Index>(), 0..8u8).prop_map(|(meta, at, bit)| Damage::Flip { meta, at, bit }),
            2 => (any::<bool>(), any::<Index>()).prop_map(|(meta, at)| Damage::Cut { meta, at }),
            1 => (any::<bool>(), prop::collection::vec(any::<u8>(), 1..9)).prop_map(|(meta, bytes)| Damage::Append { meta, bytes }),
            1 => prop_oneof![Just(1u64 << 40), Just(u64::MAX), 0..4 * B].prop_map(Damage::Length),
        ]
    }

    fn apply(damage: &Damage, dir: &Path, h: u64) {
        let path = |meta: bool| dir.join(name(h, if meta { "meta" } else { "data" }));
        let edit = |meta: bool, f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = fs::read(path(meta)).expect("read");
            f(&mut b);
            fs::write(path(meta), b).expect("write");
        };
        match damage {
            Damage::None => {}
            Damage::Flip { meta, at, bit } => edit(*meta, &|b| {
                if !b.is_empty() {
                    let i = at.index(b.len());
                    b[i] ^= 1 << bit;
                }
            }),
            Damage::Cut { meta, at } => edit(*meta, &|b| b.truncate(at.index(b.len() + 1))),
            Damage::Append { meta, bytes } => edit(*meta, &|b| b.extend_from_slice(bytes)),
            Damage::Length(length) => edit(true, &|b| {
                let header = Header::decode(b, "meta").expect("a true header");
                b[..HEADER_LEN as usize]
                    .copy_from_slice(&Header { length: *length, ..header }.encode());
            }),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever happened to a replica's `.meta` or `.data` file, start-up never fails
        /// or panics over it and never serves other bytes than were written: a finalized
        /// replica loads whole (reads then give its bytes or a checksum error) or as
        /// corrupt; one being written keeps a prefix of what was written.
        #[test]
        fn start_up_never_serves_other_bytes(
            len in 0..3 * BLOCK_SIZE + 100,
            seed in any::<u8>(),
            finalized in any::<bool>(),
            damage in damage(),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let bytes = data(len, seed);
            let store = crate::store::tests::open(dir.path(), None);
            write(&store, 7, 3, &bytes, finalized);
            drop(store);
            let sub = dir.path().join(if finalized { "finalized" } else { "rbw" });
            apply(&damage, &sub, 7);
            let (store, largest) = largest_allocation(|| Store::open(dir.path(), None, Arc::new(ReportQueue::new())));
            let store = store.expect("start-up never fails over a replica");
            prop_assert!(largest <= 8 << 20, "start-up allocated {} bytes", largest);
            if store.corrupt().contains(&7) {
                prop_assert!(!matches!(damage, Damage::None));
                return Ok(());
            }
            let info = store.get(7).expect("loaded");
            prop_assert_eq!((info.version, info.finalized), (3, finalized));
            if finalized {
                prop_assert_eq!(info.length, len as u64);
            } else {
                prop_assert!(info.length <= len as u64);
            }
            let reader = store.open_reader(7).expect("open");
            match reader.read(0, info.length) {
                Ok(got) => prop_assert_eq!(&got[..], &bytes[..info.length as usize]),
                Err(e) => prop_assert!(matches!(e, Error::Corrupt { .. } | Error::ReplicaCorrupt { .. }), "{}", e),
            }
        }
    }
}
