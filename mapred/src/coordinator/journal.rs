//! The coordinator's job journal: an append-only file of JSON lines in its `--dir`
//! (`journal.jsonl`), one line when a job is submitted and one when it ends, each synced
//! to disk before the client hears about it.
//!
//! After a restart the coordinator replays it: jobs that ended are known again (for
//! `status` and `list`), and jobs that were running are *not silently forgotten*: they are
//! recorded as failed with the reason, and their temporaries are cleaned. Continuing them
//! would need the map outputs' locations, which died with the old incarnations of the
//! workers; resubmitting is what Hadoop 1 asked of its users too.
//!
//! A torn last line (the coordinator died mid-write) is ignored.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// File name of the journal inside the coordinator's directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Entry {
    /// A job was accepted.
    Submit {
        /// Its id.
        job_id: String,
        /// Its name.
        name: String,
        /// Its output directory.
        output: String,
        /// Who submitted it.
        user: String,
        /// When (ms since the epoch).
        submit_ms: i64,
    },
    /// A job ended.
    End {
        /// Its id.
        job_id: String,
        /// `succeeded`, `failed` or `killed`.
        state: String,
        /// Why it failed.
        error: String,
        /// When (ms since the epoch).
        finish_ms: i64,
    },
}

/// A job as the journal remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    /// Its id.
    pub job_id: String,
    /// Its name.
    pub name: String,
    /// Its output directory.
    pub output: String,
    /// Who submitted it.
    pub user: String,
    /// When it was submitted.
    pub submit_ms: i64,
    /// How it ended (state, error, time), if it did.
    pub end: Option<(String, String, i64)>,
}

/// The open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl Journal {
    /// Opens (creating) `DIR/journal.jsonl` and returns it with the jobs it remembers,
    /// in submission order.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read or opened for appending.
    pub fn open(dir: &Path) -> Result<(Journal, Vec<Remembered>)> {
        let path = dir.join(JOURNAL_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(Error::Io {
                    what: format!("cannot read {}", path.display()),
                    source: e,
                });
            }
        };
        let mut order = Vec::new();
        let mut jobs: BTreeMap<String, Remembered> = BTreeMap::new();
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Entry>(line) {
                Ok(Entry::Submit { job_id, name, output, user, submit_ms }) => {
                    order.push(job_id.clone());
                    jobs.insert(
                        job_id.clone(),
                        Remembered { job_id, name, output, user, submit_ms, end: None },
                    );
                }
                Ok(Entry::End { job_id, state, error, finish_ms }) => {
                    if let Some(j) = jobs.get_mut(&job_id) {
                        j.end = Some((state, error, finish_ms));
                    }
                }
                Err(e) => {
                    tracing::warn!(journal = %path.display(), error = %e, "skipping a torn journal line")
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(Error::io(format!("cannot open {}", path.display())))?;
        let mut file = file;
        if text.last().is_some_and(|&b| b != b'\n') {
            // End the torn line, so the next entry starts on a line of its own.
            file.write_all(b"\n").map_err(Error::io(format!("cannot write {}", path.display())))?;
        }
        let remembered = order.into_iter().filter_map(|id| jobs.remove(&id)).collect();
        Ok((Journal { path, file: Mutex::new(file) }, remembered))
    }

    /// Appends `entry` and syncs it to disk.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be written.
    pub fn append(&self, entry: &Entry) -> Result<()> {
        let mut line =
            serde_json::to_vec(entry).map_err(|e| Error::Encode(format!("journal entry: {e}")))?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let what = || format!("cannot append to {}", self.path.display());
        f.write_all(&line).map_err(Error::io(what()))?;
        f.sync_data().map_err(Error::io(what()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_remembered_across_reopening_and_torn_lines_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (j, none) = Journal::open(dir.path()).unwrap();
        assert!(none.is_empty());
        let submit = |id: &str| Entry::Submit {
            job_id: id.into(),
            name: "wc".into(),
            output: format!("/out/{id}"),
            user: "u".into(),
            submit_ms: 1,
        };
        j.append(&submit("job_1_0001")).unwrap();
        j.append(&submit("job_1_0002")).unwrap();
        j.append(&Entry::End {
            job_id: "job_1_0001".into(),
            state: "succeeded".into(),
            error: String::new(),
            finish_ms: 2,
        })
        .unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(dir.path().join(JOURNAL_FILE)).unwrap();
        f.write_all(b"{\"op\":\"end\",\"job_").unwrap();
        drop(f);
        let (j, jobs) = Journal::open(dir.path()).unwrap();
        j.append(&submit("job_1_0003")).unwrap();
        drop(j);
        let (_, jobs3) = Journal::open(dir.path()).unwrap();
        assert_eq!(jobs3.len(), 3, "an entry after a torn line is read");
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].end.as_ref().map(|e| e.0.as_str()), Some("succeeded"));
        assert_eq!(jobs[1].job_id, "job_1_0002");
        assert!(jobs[1].end.is_none(), "still running when the coordinator stopped");
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    fn entry() -> impl Strategy<Value = Entry> {
        let id = (1..4u8).prop_map(|n| format!("job_1_000{n}"));
        prop_oneof![
            (id.clone(), ".{0,6}", ".{0,6}", any::<i64>()).prop_map(
                |(job_id, name, user, submit_ms)| {
                    Entry::Submit {
                        output: format!("/out/{job_id}"),
                        job_id,
                        name,
                        user,
                        submit_ms,
                    }
                }
            ),
            (
                id,
                prop_oneof![Just("succeeded"), Just("failed"), Just("killed")],
                ".{0,6}",
                any::<i64>()
            )
                .prop_map(|(job_id, state, error, finish_ms)| Entry::End {
                    job_id,
                    state: state.into(),
                    error,
                    finish_ms
                }),
        ]
    }

    /// What the journal should remember after `entries`, in submission order.
    fn remembered(entries: &[Entry]) -> Vec<Remembered> {
        let mut out: Vec<Remembered> = Vec::new();
        for e in entries {
            match e.clone() {
                Entry::Submit { job_id, name, output, user, submit_ms } => {
                    // Ids are unique; were one repeated, the first submission's place
                    // and the last one's fields are kept.
                    let job = Remembered { job_id, name, output, user, submit_ms, end: None };
                    match out.iter_mut().find(|j| j.job_id == job.job_id) {
                        Some(j) => *j = job,
                        None => out.push(job),
                    }
                }
                Entry::End { job_id, state, error, finish_ms } => {
                    if let Some(j) = out.iter_mut().find(|j| j.job_id == job_id) {
                        j.end = Some((state, error, finish_ms));
                    }
                }
            }
        }
        out
    }

    #[derive(Debug, Clone)]
    enum Damage {
        Flip(Index, u8),
        Cut(Index),
        Garbage(Vec<u8>),
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            (any::<Index>(), 0..8u8).prop_map(|(i, b)| Damage::Flip(i, b)),
            any::<Index>().prop_map(Damage::Cut),
            prop::collection::vec(any::<u8>(), 1..40).prop_map(Damage::Garbage),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// What was appended is remembered after reopening; after damage anywhere in the
        /// file (it has no checksum, so a flipped byte may change a value), reopening never
        /// fails or panics, and an entry appended then is read back after the next reopen.
        #[test]
        fn the_journal_survives_reopening_and_damage(
            entries in prop::collection::vec(entry(), 0..8),
            damage in damage(),
            after in entry(),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let (j, none) = Journal::open(dir.path()).expect("open");
            prop_assert!(none.is_empty());
            for e in &entries {
                j.append(e).expect("append");
            }
            drop(j);
            let (j, got) = Journal::open(dir.path()).expect("reopen");
            prop_assert_eq!(got, remembered(&entries));
            drop(j);

            let path = dir.path().join(JOURNAL_FILE);
            let mut bytes = std::fs::read(&path).expect("read");
            match &damage {
                Damage::Flip(at, bit) if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    bytes[i] ^= 1 << bit;
                }
                Damage::Flip(..) => {}
                Damage::Cut(at) => bytes.truncate(at.index(bytes.len() + 1)),
                Damage::Garbage(g) => bytes.extend_from_slice(g),
            }
            std::fs::write(&path, &bytes).expect("write");
            let (j, _) = Journal::open(dir.path()).expect("damage never stops the coordinator");
            j.append(&after).expect("append");
            drop(j);
            let (_, got) = Journal::open(dir.path()).expect("reopen");
            if let Entry::Submit { job_id, .. } = &after {
                prop_assert!(got.iter().any(|r| r.job_id == *job_id), "{:?} lost after {:?}", after, damage);
            }
        }
    }
}
