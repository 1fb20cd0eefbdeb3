//! Configuration: the coordinator's and worker's settings (from their command lines), and
//! [`JobConf`], the key/value strings a job carries to every task.

use security::connections::Limits;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::acl::AccessList;
use crate::error::{Error, Result};

/// Settings of the coordinator process.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// The chunk store master (`host:port`), or a master group's members
    /// comma-separated (the client finds the leader, [`dfs::masters`]), for splits and
    /// committing outputs; task attempts get the same list.
    pub master: String,
    /// Directory for the coordinator's own files (finished job summaries).
    pub dir: PathBuf,
    /// Interval at which workers are asked to heartbeat.
    pub heartbeat: Duration,
    /// How long a job waits for a node-local slot before taking a rack-local one (and
    /// twice that before taking any): delay scheduling, which keeps maps data-local when
    /// every chunk has replicas on several workers' hosts.
    pub locality_delay: Duration,
    /// Silence after which a worker is declared dead (its attempts and its map outputs
    /// of unfinished jobs are run again elsewhere).
    pub dead_after: Duration,
    /// Default no-progress timeout of a task attempt (0 = none; jobs may override it with
    /// `mapred.task.timeout.ms`).
    pub task_timeout: Duration,
    /// Default attempts per task before its job fails (`mapred.task.max.attempts`).
    pub max_attempts: u32,
    /// Speculative execution: an attempt gets a backup once it has run this many times
    /// the median duration of the finished tasks of its phase ...
    pub speculative_slowness: f64,
    /// ... and at least this much longer than that median.
    pub speculative_lag: Duration,
    /// Cap on open connections and their idle timeout.
    pub connections: Limits,
    /// How callers prove who they are, and the cluster secret the coordinator mints its
    /// jobs' user tokens under (token mode).
    pub auth: security::ServerAuth,
    /// TLS for its port (`--tls-cert`, `--tls-key`); `None`: plain TCP.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Who may see and kill every job, besides the user running the coordinator
    /// (`--admins`, Hadoop's `mapreduce.cluster.administrators`).
    pub admins: AccessList,
    /// A static group mapping in front of this host's (simple mode), as the master's
    /// `--group-mapping`.
    pub group_mapping: Option<PathBuf>,
}

impl CoordinatorConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the bad setting.
    pub fn validate(&self) -> Result<()> {
        if self.heartbeat.is_zero() {
            return Err(Error::InvalidArgument("heartbeat interval must be positive".into()));
        }
        check_masters(&self.master)?;
        if self.dead_after <= self.heartbeat {
            return Err(Error::InvalidArgument(
                "the dead-worker timeout must be longer than the heartbeat interval".into(),
            ));
        }
        if !(1..=100).contains(&self.max_attempts) {
            return Err(Error::InvalidArgument("max attempts must be between 1 and 100".into()));
        }
        if self.speculative_slowness.is_nan() || self.speculative_slowness < 1.0 {
            return Err(Error::InvalidArgument("speculative slowness must be at least 1".into()));
        }
        Ok(())
    }
}

/// Settings of a worker process.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The coordinator (`host:port`).
    pub coordinator: String,
    /// The chunk store master (`host:port`), or a master group's members
    /// comma-separated, for fetching job binaries.
    pub master: String,
    /// This worker's host address (as its chunkserver's replicas are named).
    pub host: String,
    /// Its rack.
    pub rack: String,
    /// Task attempts it runs at once.
    pub slots: u32,
    /// Local directory for map outputs, attempt files and the binary cache.
    pub dir: PathBuf,
    /// Heartbeat interval (a freed slot also triggers one at once).
    pub heartbeat: Duration,
    /// Cap on open shuffle connections and their idle timeout.
    pub connections: Limits,
    /// How callers prove who they are; in token mode, the service token the worker
    /// calls the coordinator with.
    pub auth: security::ServerAuth,
    /// TLS for its shuffle port (`--tls-cert`, `--tls-key`); `None`: plain TCP.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

impl WorkerConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the bad setting.
    pub fn validate(&self) -> Result<()> {
        if self.slots == 0 {
            return Err(Error::InvalidArgument("a worker needs at least one slot".into()));
        }
        if self.heartbeat.is_zero() {
            return Err(Error::InvalidArgument("heartbeat interval must be positive".into()));
        }
        if self.host.is_empty() {
            return Err(Error::InvalidArgument("the worker's host is required".into()));
        }
        check_masters(&self.master)
    }
}

/// Refuses a master list the dfs client would not connect to (none, or an empty member).
fn check_masters(list: &str) -> Result<()> {
    if list.is_empty() {
        return Err(Error::InvalidArgument("the master address is required".into()));
    }
    dfs::masters::parse_list(list).map(|_| ()).map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// Well-known job configuration keys.
pub mod keys {
    /// Map-side sort buffer in MiB (Hadoop's `mapreduce.task.io.sort.mb`).
    pub const SORT_MB: &str = "mapred.sort.mb";
    /// Memory a reducer may hold fetched map output in, in MiB; beyond it, segments go
    /// to local disk.
    pub const REDUCE_MEMORY_MB: &str = "mapred.reduce.memory.mb";
    /// Map output fetches a reducer keeps in flight.
    pub const PARALLEL_FETCHES: &str = "mapred.reduce.parallel.copies";
    /// Replication factor of output files (0 = the cluster default).
    pub const OUTPUT_REPLICATION: &str = "mapred.output.replication";
    /// Output format: `text` (default) or `records`.
    pub const OUTPUT_FORMAT: &str = "mapred.output.format";
    /// Separator between key and value in text output (default a tab).
    pub const OUTPUT_SEPARATOR: &str = "mapred.output.separator";
    /// A built-in input format replacing the job's default: `text`, `keyvalue`,
    /// `records`, `wholefile` or `generate` ([`crate::input::builtin`]).
    pub const INPUT_FORMAT: &str = "mapred.input.format";
    /// Bytes fetched per DFS read request by map tasks.
    pub const READ_RANGE: &str = "mapred.input.read.bytes";
    /// Attempts per task before the job fails (Hadoop's `mapreduce.map.maxattempts`;
    /// default: the coordinator's `--max-attempts`, 4).
    pub const MAX_ATTEMPTS: &str = "mapred.task.max.attempts";
    /// An attempt that makes no progress (no new record, no framework I/O) for this many
    /// ms is killed and fails (Hadoop's `mapreduce.task.timeout`; 0 = never; default:
    /// the coordinator's `--task-timeout-ms`, 10 minutes).
    pub const TASK_TIMEOUT_MS: &str = "mapred.task.timeout.ms";
    /// Skip records (map) and key groups (reduce) shown to crash deterministically
    /// (default true).
    pub const SKIP_ENABLED: &str = "mapred.skip.enabled";
    /// Crashed attempts a record must cause before it is a suspect, replayed alone
    /// (default 2).
    pub const SKIP_AFTER: &str = "mapred.skip.attempts";
    /// Isolated replays of a suspect that must all crash (or hang past the task timeout)
    /// before later attempts skip it; one that runs fine clears it for good (default 3,
    /// 1 to 20).
    pub const SKIP_REPLAYS: &str = "mapred.skip.replays";
    /// Skipped records a job may have and still make `submit` exit 0 (default 0: any
    /// skipped record makes it exit with [`crate::runtime::SKIPPED_EXIT_CODE`]).
    pub const SKIP_ALLOWED: &str = "mapred.skip.allowed";
    /// Speculative execution: backup attempts for stragglers (default true).
    pub const SPECULATIVE: &str = "mapred.speculative";
    /// Times a reducer tries to fetch one map output before reporting it lost (default 3).
    pub const FETCH_RETRIES: &str = "mapred.reduce.fetch.retries";
    /// First back-off between fetch tries, doubled each time, in ms (default 250).
    pub const FETCH_BACKOFF_MS: &str = "mapred.reduce.fetch.backoff.ms";
    /// A fetch that receives nothing for this many ms fails (default 30000).
    pub const FETCH_TIMEOUT_MS: &str = "mapred.reduce.fetch.timeout.ms";
    /// Longest a reducer waits for a lost map output to be produced again before it
    /// fails, in ms (default 600000).
    pub const FETCH_WAIT_MS: &str = "mapred.reduce.fetch.wait.ms";
    /// Map tasks of a job with generated input (default 1, at most 100000).
    pub const GENERATE_MAPS: &str = "mapred.generate.maps";
}

/// A job option the framework reads: its key, default and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionDoc {
    /// The key, under `mapred.`.
    pub key: &'static str,
    /// Its default, as text.
    pub default: &'static str,
    /// What it does, in one line.
    pub help: &'static str,
}

/// Every `mapred.*` option the framework reads, in the order `options` lists them. A key
/// under `mapred.` that is not here is refused at submit (a typo must not pass silently);
/// a job's own options live under its own prefix.
pub const OPTIONS: &[OptionDoc] = &[
    OptionDoc {
        key: keys::INPUT_FORMAT,
        default: "text",
        help: "input format: text, keyvalue, records, wholefile or generate (replaces the job's default)",
    },
    OptionDoc {
        key: keys::READ_RANGE,
        default: "16777216",
        help: "bytes per DFS read request of a map task (at least 65536)",
    },
    OptionDoc {
        key: keys::GENERATE_MAPS,
        default: "1",
        help: "map tasks of a job with generated input (at most 100000)",
    },
    OptionDoc { key: keys::SORT_MB, default: "100", help: "map-side sort buffer, MiB (1 to 2047)" },
    OptionDoc {
        key: keys::REDUCE_MEMORY_MB,
        default: "512",
        help: "fetched map output a reducer holds in memory before spilling, MiB",
    },
    OptionDoc {
        key: keys::PARALLEL_FETCHES,
        default: "5",
        help: "map output fetches a reducer keeps in flight",
    },
    OptionDoc {
        key: keys::FETCH_RETRIES,
        default: "3",
        help: "tries per map output before it is reported lost (1 to 100)",
    },
    OptionDoc {
        key: keys::FETCH_BACKOFF_MS,
        default: "250",
        help: "first back-off between fetch tries, doubled each time, ms",
    },
    OptionDoc {
        key: keys::FETCH_TIMEOUT_MS,
        default: "30000",
        help: "a fetch that receives nothing this long fails, ms (at least 100)",
    },
    OptionDoc {
        key: keys::FETCH_WAIT_MS,
        default: "600000",
        help: "longest wait for a lost map output to be made again, ms",
    },
    OptionDoc { key: keys::OUTPUT_FORMAT, default: "text", help: "output format: text or records" },
    OptionDoc {
        key: keys::OUTPUT_SEPARATOR,
        default: "\\t",
        help: "separator between key and value in text output",
    },
    OptionDoc {
        key: keys::OUTPUT_REPLICATION,
        default: "0",
        help: "replication of output files (0 = the cluster default)",
    },
    OptionDoc {
        key: keys::MAX_ATTEMPTS,
        default: "4",
        help: "attempts per task before the job fails (1 to 100; default: the coordinator's --max-attempts)",
    },
    OptionDoc {
        key: keys::TASK_TIMEOUT_MS,
        default: "600000",
        help: "an attempt without progress this long is killed, ms (0 = never; default: the coordinator's --task-timeout-ms)",
    },
    OptionDoc { key: keys::SPECULATIVE, default: "true", help: "backup attempts for stragglers" },
    OptionDoc {
        key: keys::SKIP_ENABLED,
        default: "true",
        help: "skip records and key groups shown to crash deterministically",
    },
    OptionDoc {
        key: keys::SKIP_AFTER,
        default: "2",
        help: "crashed attempts that make a record a suspect (1 to 100)",
    },
    OptionDoc {
        key: keys::SKIP_REPLAYS,
        default: "3",
        help: "isolated replays of a suspect that must all crash before it is skipped (1 to 20)",
    },
    OptionDoc {
        key: keys::SKIP_ALLOWED,
        default: "0",
        help: "skipped records a job may have and still exit 0",
    },
];

/// A job's configuration: key/value strings set at submit (`-D key=value`) and by the job
/// definition, readable by every task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobConf(BTreeMap<String, String>);

impl JobConf {
    /// An empty configuration.
    pub fn new() -> JobConf {
        JobConf::default()
    }

    /// Sets `key` (replacing any value).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// Sets `key` only if it has no value yet.
    pub fn set_default(&mut self, key: &str, value: impl Into<String>) {
        self.0.entry(key.to_owned()).or_insert_with(|| value.into());
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The value of `key` as an unsigned number, or `default` if unset.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if it is set but not a number.
    pub fn get_u64(&self, key: &str, default: u64) -> Result<u64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| {
                Error::InvalidArgument(format!("job option {key}={v} is not a number"))
            }),
        }
    }

    /// The value of `key` as a boolean (`true`/`false`/`1`/`0`), or `default` if unset.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if it is set to something else.
    pub fn get_bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key).map(str::trim) {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(v) => {
                Err(Error::InvalidArgument(format!("job option {key}={v} is not a boolean")))
            }
        }
    }

    /// Parses `key=value` as given to `-D`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if there is no `=` or the key is empty.
    pub fn parse_assignment(s: &str) -> Result<(String, String)> {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
            _ => Err(Error::InvalidArgument(format!("-D {s}: expected key=value"))),
        }
    }

    /// Refuses a key under `mapred.` that the framework does not read ([`OPTIONS`]),
    /// suggesting the nearest known one: a mistyped option must not be ignored silently.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first unknown key and, if one is close, the
    /// option it probably meant.
    pub fn check_known(&self) -> Result<()> {
        for (key, _) in self.iter() {
            if !key.starts_with("mapred.") || OPTIONS.iter().any(|o| o.key == key) {
                continue;
            }
            let nearest = OPTIONS
                .iter()
                .map(|o| (strsim::levenshtein(key, o.key), o.key))
                .min()
                .filter(|&(d, _)| d <= 3.max(key.len() / 5));
            let hint = match nearest {
                Some((_, k)) => format!("; did you mean {k}?"),
                None => " (see `options` for the list)".to_owned(),
            };
            return Err(Error::InvalidArgument(format!("unknown job option {key}{hint}")));
        }
        Ok(())
    }

    /// Every entry, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl FromIterator<(String, String)> for JobConf {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> JobConf {
        JobConf(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_getters() {
        let mut c = JobConf::new();
        c.set("a", "12");
        c.set("b", "true");
        c.set("bad", "x");
        c.set_default("a", "99");
        assert_eq!(c.get_u64("a", 0).unwrap(), 12);
        assert_eq!(c.get_u64("missing", 7).unwrap(), 7);
        assert!(c.get_bool("b", false).unwrap());
        assert!(c.get_u64("bad", 0).is_err());
        assert!(c.get_bool("bad", false).is_err());
        assert_eq!(JobConf::parse_assignment("k=v=w").unwrap(), ("k".into(), "v=w".into()));
        assert!(JobConf::parse_assignment("=v").is_err());
    }

    #[test]
    fn unknown_framework_options_are_refused_with_the_nearest_known_one() {
        let mut c = JobConf::new();
        c.set(keys::TASK_TIMEOUT_MS, "5");
        c.set("grep.pattern", "x");
        assert!(c.check_known().is_ok(), "known keys and a job's own keys pass");
        c.set("mapred.task.timout.ms", "5");
        let err = c.check_known().expect_err("a typo").to_string();
        assert!(err.contains("unknown job option mapred.task.timout.ms"), "{err}");
        assert!(err.contains("did you mean mapred.task.timeout.ms?"), "{err}");
        let mut c = JobConf::new();
        c.set("mapred.something.else.entirely", "1");
        let err = c.check_known().expect_err("unknown").to_string();
        assert!(err.contains("see `options`"), "{err}");
        // Every documented key is one the code reads, once.
        let mut seen: Vec<&str> = OPTIONS.iter().map(|o| o.key).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), OPTIONS.len());
    }

    #[test]
    fn configs_validate() {
        let w = WorkerConfig {
            coordinator: "c:1".into(),
            master: "m:1".into(),
            host: "127.0.0.2".into(),
            rack: "/r".into(),
            slots: 0,
            dir: "/tmp".into(),
            heartbeat: Duration::from_millis(100),
            connections: Limits::default(),
            auth: security::ServerAuth::simple(),
            tls: None,
        };
        assert!(w.validate().is_err());
        assert!(WorkerConfig { slots: 2, ..w.clone() }.validate().is_ok());
        assert!(
            WorkerConfig { slots: 2, master: "m1:1,m2:1".into(), ..w.clone() }.validate().is_ok()
        );
        assert!(WorkerConfig { slots: 2, master: ",".into(), ..w }.validate().is_err());
        let c = CoordinatorConfig {
            master: "m:1".into(),
            dir: "/tmp".into(),
            heartbeat: Duration::from_millis(100),
            locality_delay: Duration::from_millis(100),
            dead_after: Duration::from_millis(1000),
            task_timeout: Duration::from_secs(600),
            max_attempts: 4,
            speculative_slowness: 2.0,
            speculative_lag: Duration::from_secs(5),
            connections: Limits::default(),
            auth: security::ServerAuth::simple(),
            tls: None,
            admins: AccessList::nobody(),
            group_mapping: None,
        };
        assert!(c.validate().is_ok());
        assert!(
            CoordinatorConfig { dead_after: Duration::from_millis(50), ..c.clone() }
                .validate()
                .is_err()
        );
        let group = CoordinatorConfig { master: "m1:1,m2:1,m3:1".into(), ..c.clone() };
        assert!(group.validate().is_ok(), "a master group");
        assert!(CoordinatorConfig { master: "m1:1,,m3:1".into(), ..c.clone() }.validate().is_err());
        assert!(CoordinatorConfig { master: String::new(), ..c.clone() }.validate().is_err());
        assert!(CoordinatorConfig { max_attempts: 0, ..c }.validate().is_err());
    }
}
