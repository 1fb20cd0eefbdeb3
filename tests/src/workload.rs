//! A write workload for fault tests: writers that create (under a temporary name, then
//! renamed, so a file appears whole or not at all), rename and delete files while a test
//! kills servers, each keeping a ledger of what was acknowledged; and the check that the
//! namespace holds exactly that afterwards, every file byte for byte.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dfs::{Client, CreateOptions};

use crate::data::random_bytes;

const MIB: usize = 1 << 20;

/// The content written for file `i` of writer `w`: mostly small, now and then two chunks.
pub fn content(w: u64, i: u64) -> Vec<u8> {
    let len = if i % 7 == 3 { MIB + 12_345 } else { 1000 + (i as usize * 7919) % 150_000 };
    random_bytes(w * 1_000_003 + i, len)
}

/// What one writer knows about its directory.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Files whose last change was acknowledged: path -> seed of its content.
    pub files: BTreeMap<String, u64>,
    /// Paths touched by a change that failed (unacknowledged): either state is allowed,
    /// and a file there must hold the named content whole.
    pub uncertain: BTreeMap<String, u64>,
    /// Acknowledged operations, for the failure message.
    pub acked: usize,
}

/// Creates (temporary name + rename, so a file appears whole or not at all), renames and
/// deletes files under `/w{w}` until `stop`, recording every acknowledged change.
pub async fn writer(client: Client, w: u64, stop: Arc<AtomicBool>) -> Ledger {
    let dir = format!("/w{w}");
    let mut ledger = Ledger::default();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let seed = w * 1_000_003 + i;
        let tmp = format!("{dir}/.tmp{i}");
        let path = format!("{dir}/f{i}");
        let opts = CreateOptions { create_parents: true, ..CreateOptions::default() };
        let written = client.put_bytes(tmp.as_str(), &content(w, i), opts).await;
        let created = match written {
            Ok(()) => client.rename(tmp.as_str(), path.as_str()).await.map(drop),
            Err(e) => Err(e),
        };
        match created {
            Ok(()) => {
                ledger.files.insert(path.clone(), seed);
                ledger.acked += 1;
            }
            Err(e) => {
                eprintln!("writer {w}: create {path} not acknowledged: {e}");
                ledger.uncertain.insert(path.clone(), seed);
                ledger.uncertain.insert(tmp, seed);
                continue;
            }
        }
        if i.is_multiple_of(3) {
            let moved = format!("{dir}/m{i}");
            match client.rename(path.as_str(), moved.as_str()).await {
                Ok(_) => {
                    ledger.files.remove(&path);
                    ledger.files.insert(moved, seed);
                    ledger.acked += 1;
                }
                Err(e) => {
                    eprintln!("writer {w}: rename {path} not acknowledged: {e}");
                    ledger.files.remove(&path);
                    ledger.uncertain.insert(path, seed);
                    ledger.uncertain.insert(moved, seed);
                }
            }
        }
        if i.is_multiple_of(4)
            && let Some(victim) = ledger.files.keys().next().cloned()
        {
            match client.delete(victim.as_str(), false).await {
                Ok(()) => {
                    ledger.files.remove(&victim);
                    ledger.acked += 1;
                }
                Err(e) => {
                    eprintln!("writer {w}: delete {victim} not acknowledged: {e}");
                    if let Some(seed) = ledger.files.remove(&victim) {
                        ledger.uncertain.insert(victim, seed);
                    }
                }
            }
        }
    }
    ledger
}

/// Every file under `dir` with its length.
pub async fn files_under(client: &Client, dir: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Some(_) = client.try_stat(dir).await.expect("stat") else { return out };
    for e in client.list(dir).await.expect("list") {
        if !e.is_dir() {
            out.insert(e.path.to_string(), e.length);
        }
    }
    out
}

/// Checks `dir` holds exactly what the ledger says, every file byte for byte.
pub async fn verify(client: &Client, w: u64, ledger: &Ledger) {
    let dir = format!("/w{w}");
    let present = files_under(client, &dir).await;
    for (path, seed) in &ledger.files {
        let i = seed - w * 1_000_003;
        assert!(present.contains_key(path), "acknowledged {path} is missing after restarts");
        let data = client.read_all(path.as_str()).await.expect("read");
        assert!(data == content(w, i), "{path}: content differs after restarts");
    }
    for path in present.keys() {
        if ledger.files.contains_key(path) {
            continue;
        }
        let Some(seed) = ledger.uncertain.get(path) else {
            panic!("{path} exists but its change was never acknowledged (or was undone)");
        };
        let i = seed - w * 1_000_003;
        // A temporary file of a failed put may be left half-written; a final name never.
        if !path.contains("/.tmp") {
            let data = client.read_all(path.as_str()).await.expect("read");
            assert!(data == content(w, i), "{path}: an unacknowledged file is partial");
        }
    }
}
