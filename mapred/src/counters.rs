//! Counters: named totals kept by every task attempt, summed per job from successful
//! attempts only (a failed or killed attempt's partial counts would double-count work).
//!
//! Names follow Hadoop's: the framework's task counters live in group [`TASK`], file
//! system counters in [`FS`], job-level counters kept by the coordinator (launched and
//! failed attempts, locality) in [`JOB`]; user counters use any other group.

use std::collections::BTreeMap;
use std::fmt;

use proto::mapred as pb;
use serde::{Deserialize, Serialize};

/// Group of the framework's per-task counters.
pub const TASK: &str = "mapred";
/// Group of file system counters.
pub const FS: &str = "fs";
/// Group of the coordinator's job counters.
pub const JOB: &str = "job";

/// Input records maps skipped because they crashed earlier attempts.
pub const MAP_SKIPPED_RECORDS: &str = "MAP_SKIPPED_RECORDS";
/// Key groups reduces skipped because they crashed earlier attempts.
pub const REDUCE_SKIPPED_GROUPS: &str = "REDUCE_SKIPPED_GROUPS";
/// Records read by maps.
pub const MAP_INPUT_RECORDS: &str = "MAP_INPUT_RECORDS";
/// Bytes of input consumed by maps.
pub const MAP_INPUT_BYTES: &str = "MAP_INPUT_BYTES";
/// Pairs emitted by maps.
pub const MAP_OUTPUT_RECORDS: &str = "MAP_OUTPUT_RECORDS";
/// Encoded bytes of the pairs emitted by maps.
pub const MAP_OUTPUT_BYTES: &str = "MAP_OUTPUT_BYTES";
/// Bytes of map output files after combining (what the shuffle moves).
pub const MAP_OUTPUT_MATERIALIZED_BYTES: &str = "MAP_OUTPUT_MATERIALIZED_BYTES";
/// Pairs fed to the combiner.
pub const COMBINE_INPUT_RECORDS: &str = "COMBINE_INPUT_RECORDS";
/// Pairs the combiner produced.
pub const COMBINE_OUTPUT_RECORDS: &str = "COMBINE_OUTPUT_RECORDS";
/// Records written to local spill and output files.
pub const SPILLED_RECORDS: &str = "SPILLED_RECORDS";
/// Distinct keys reduced.
pub const REDUCE_INPUT_GROUPS: &str = "REDUCE_INPUT_GROUPS";
/// Values reduced.
pub const REDUCE_INPUT_RECORDS: &str = "REDUCE_INPUT_RECORDS";
/// Pairs written by reducers.
pub const REDUCE_OUTPUT_RECORDS: &str = "REDUCE_OUTPUT_RECORDS";
/// Bytes fetched by reducers from map outputs.
pub const REDUCE_SHUFFLE_BYTES: &str = "REDUCE_SHUFFLE_BYTES";
/// Map output segments fetched.
pub const SHUFFLED_MAPS: &str = "SHUFFLED_MAPS";
/// Bytes read from the chunk store.
pub const DFS_BYTES_READ: &str = "DFS_BYTES_READ";
/// Bytes written to the chunk store.
pub const DFS_BYTES_WRITTEN: &str = "DFS_BYTES_WRITTEN";
/// Bytes read from local disk.
pub const FILE_BYTES_READ: &str = "FILE_BYTES_READ";
/// Bytes written to local disk.
pub const FILE_BYTES_WRITTEN: &str = "FILE_BYTES_WRITTEN";
/// Replays started: attempts running one suspect record alone to tell whether it crashes
/// deterministically (also counted as launched attempts).
pub const NUM_REPLAYS: &str = "NUM_REPLAYS";
/// Replays that crashed (or hung) on their record.
pub const NUM_REPLAYS_CRASHED: &str = "NUM_REPLAYS_CRASHED";
/// Suspect records that ran fine alone, so were processed normally.
pub const NUM_SUSPECTS_CLEARED: &str = "NUM_SUSPECTS_CLEARED";
/// Map attempts started.
pub const TOTAL_LAUNCHED_MAPS: &str = "TOTAL_LAUNCHED_MAPS";
/// Reduce attempts started.
pub const TOTAL_LAUNCHED_REDUCES: &str = "TOTAL_LAUNCHED_REDUCES";
/// Map attempts that failed.
pub const NUM_FAILED_MAPS: &str = "NUM_FAILED_MAPS";
/// Reduce attempts that failed.
pub const NUM_FAILED_REDUCES: &str = "NUM_FAILED_REDUCES";
/// Map attempts killed.
pub const NUM_KILLED_MAPS: &str = "NUM_KILLED_MAPS";
/// Reduce attempts killed.
pub const NUM_KILLED_REDUCES: &str = "NUM_KILLED_REDUCES";
/// Maps run on a host holding a replica of their split.
pub const DATA_LOCAL_MAPS: &str = "DATA_LOCAL_MAPS";
/// Maps run on the rack of a replica, not its host.
pub const RACK_LOCAL_MAPS: &str = "RACK_LOCAL_MAPS";
/// Maps run elsewhere.
pub const OTHER_LOCAL_MAPS: &str = "OTHER_LOCAL_MAPS";

/// Totals by group and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    groups: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Counters {
    /// No counters.
    pub fn new() -> Counters {
        Counters::default()
    }

    /// Adds `by` to `group.name`.
    pub fn add(&mut self, group: &str, name: &str, by: u64) {
        // Look up before inserting so the common case allocates nothing.
        if let Some(g) = self.groups.get_mut(group) {
            if let Some(v) = g.get_mut(name) {
                *v += by;
                return;
            }
            g.insert(name.to_owned(), by);
            return;
        }
        self.groups.entry(group.to_owned()).or_default().insert(name.to_owned(), by);
    }

    /// The value of `group.name` (0 if never counted).
    pub fn get(&self, group: &str, name: &str) -> u64 {
        self.groups.get(group).and_then(|g| g.get(name)).copied().unwrap_or(0)
    }

    /// Adds every counter of `other`.
    pub fn merge(&mut self, other: &Counters) {
        for (g, names) in &other.groups {
            for (n, v) in names {
                self.add(g, n, *v);
            }
        }
    }

    /// Every counter as (group, name, value), sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, u64)> {
        self.groups
            .iter()
            .flat_map(|(g, names)| names.iter().map(move |(n, v)| (g.as_str(), n.as_str(), *v)))
    }

    /// True if nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The counters as protobuf messages.
    pub fn to_proto(&self) -> Vec<pb::Counter> {
        self.iter()
            .map(|(g, n, v)| pb::Counter { group: g.to_owned(), name: n.to_owned(), value: v })
            .collect()
    }

    /// Counters from protobuf messages.
    pub fn from_proto(list: &[pb::Counter]) -> Counters {
        let mut c = Counters::new();
        for x in list {
            c.add(&x.group, &x.name, x.value);
        }
        c
    }
}

impl fmt::Display for Counters {
    /// One counter per line, `group.NAME value`, aligned.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.iter().map(|(g, n, _)| g.len() + n.len() + 1).max().unwrap_or(0);
        for (g, n, v) in self.iter() {
            writeln!(f, "  {:<width$}  {v:>14}", format!("{g}.{n}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_merge_and_round_trip() {
        let mut a = Counters::new();
        a.add(TASK, MAP_INPUT_RECORDS, 3);
        a.add(TASK, MAP_INPUT_RECORDS, 2);
        a.add("user", "lines", 1);
        let mut b = Counters::new();
        b.add(TASK, MAP_INPUT_RECORDS, 10);
        b.merge(&a);
        assert_eq!(b.get(TASK, MAP_INPUT_RECORDS), 15);
        assert_eq!(b.get("user", "lines"), 1);
        assert_eq!(b.get("user", "none"), 0);
        assert_eq!(Counters::from_proto(&b.to_proto()), b);
        let text = b.to_string();
        assert!(text.contains("mapred.MAP_INPUT_RECORDS"), "{text}");
    }
}
