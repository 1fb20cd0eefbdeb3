//! Chunkserver configuration: where the master is, where replicas live, how often to
//! report. The listening address is not here: [`crate::run`] takes a bound listener and
//! advertises its address.

use security::connections::Limits;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Settings of one chunkserver.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The master's `host:port` (without a scheme), or the comma-separated addresses of
    /// every member of a replicated master group: it registers, heartbeats and reports
    /// to each of them ([`crate::heartbeat`]); see [`Config::masters`].
    pub master: String,
    /// Data directory holding `VERSION`, `rbw/` and `finalized/`.
    pub dir: PathBuf,
    /// Rack name, such as `/rack-a`; used by the master for placement.
    pub rack: String,
    /// Heartbeat interval in milliseconds, until the master asks for another one.
    pub heartbeat_ms: u64,
    /// Cap on the bytes this chunkserver may use; `None` = the file system's space.
    pub capacity: Option<u64>,
    /// How long the node above a hung pipeline node waits for its ack, in milliseconds.
    pub pipeline_timeout_ms: u64,
    /// The scrubber reads at most this many bytes per second.
    pub scrub_bytes_per_sec: u64,
    /// Every finalized replica is verified once per this many seconds (0 = never).
    pub scrub_period_secs: u64,
    /// Cap on re-replication copies into this chunkserver, bytes per second (`None` =
    /// unlimited).
    pub replication_bandwidth: Option<u64>,
    /// A full block report is sent this often (seconds), besides at registration.
    pub full_report_secs: u64,
    /// Most data streams at once: write streams, read streams served (to clients and to
    /// peers copying from here) and copies pulled in (HDFS's
    /// `dfs.datanode.max.transfer.threads`). One more is refused at once with
    /// `RESOURCE_EXHAUSTED` (reason `EXHAUSTED`).
    pub max_transfer_streams: usize,
    /// A write stream that receives nothing (no packet, no keepalive) for this many
    /// seconds is closed: its replica being written is kept, as when a writer dies, and
    /// its space reservation released. Writers send keepalives well within it.
    pub stream_idle_timeout_secs: u64,
    /// Cap on open connections (clients, pipelines, copies) and their idle timeout
    /// (command-line flags only).
    #[serde(skip)]
    pub connections: Limits,
    /// How callers prove who they are, and our own credentials (command-line flags only).
    #[serde(skip)]
    pub auth: security::ServerAuth,
    /// TLS for its port (command-line flags only); `None`: plain TCP.
    #[serde(skip)]
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            master: "127.0.0.1:9000".to_owned(),
            dir: PathBuf::from("chunkserver-data"),
            rack: "/default-rack".to_owned(),
            heartbeat_ms: 3000,
            capacity: None,
            pipeline_timeout_ms: 30_000,
            scrub_bytes_per_sec: 16 << 20,
            scrub_period_secs: 86_400,
            replication_bandwidth: None,
            full_report_secs: 3600,
            max_transfer_streams: DEFAULT_MAX_TRANSFER_STREAMS,
            stream_idle_timeout_secs: DEFAULT_STREAM_IDLE_TIMEOUT_SECS,
            connections: Limits::default(),
            auth: security::ServerAuth::simple(),
            tls: None,
        }
    }
}

/// Data streams at once unless `--max-transfer-streams` says otherwise.
pub const DEFAULT_MAX_TRANSFER_STREAMS: usize = 256;
/// Seconds a write stream may stay silent unless `--stream-idle-timeout-secs` says
/// otherwise (HDFS's DataNode socket timeout is 60 s too). The dfs client's keepalive
/// interval (20 s by default) is well below it.
pub const DEFAULT_STREAM_IDLE_TIMEOUT_SECS: u64 = 60;

impl Config {
    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// How long a write stream may receive nothing before it is closed.
    pub fn stream_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.stream_idle_timeout_secs)
    }

    /// The masters in [`Config::master`]: one, or each member of a group, in the order
    /// given, each once (the syntax of `dfs --master`, `dfs::masters::parse_list`).
    ///
    /// # Errors
    /// [`Error::Config`] for an empty list or member, or an address with a scheme.
    pub fn masters(&self) -> Result<Vec<String>> {
        if self.master.trim().is_empty() {
            return Err(Error::Config("master address is empty".to_owned()));
        }
        let mut masters: Vec<String> = Vec::new();
        for addr in self.master.split(',').map(str::trim) {
            if addr.is_empty() {
                return Err(Error::Config(format!(
                    "master list {:?} has an empty member",
                    self.master
                )));
            }
            if addr.contains("://") {
                return Err(Error::Config(format!(
                    "master address {addr:?} must be host:port without a scheme"
                )));
            }
            if !masters.iter().any(|m| m == addr) {
                masters.push(addr.to_owned());
            }
        }
        Ok(masters)
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Config`] if the master list is empty or an address in it is empty or has
    /// a scheme, the directory or the rack name is empty, or an interval, timeout, rate
    /// or the stream cap is 0.
    pub fn validate(&self) -> Result<()> {
        self.masters()?;
        if self.dir.as_os_str().is_empty() {
            return Err(Error::Config("data directory is empty".to_owned()));
        }
        if self.rack.is_empty() {
            return Err(Error::Config("rack name is empty".to_owned()));
        }
        if self.heartbeat_ms == 0 {
            return Err(Error::Config("heartbeat interval must be positive".to_owned()));
        }
        if self.pipeline_timeout_ms == 0 {
            return Err(Error::Config("pipeline timeout must be positive".to_owned()));
        }
        if self.scrub_bytes_per_sec == 0 {
            return Err(Error::Config("scrub rate must be positive".to_owned()));
        }
        if self.full_report_secs == 0 {
            return Err(Error::Config("full report interval must be positive".to_owned()));
        }
        if self.max_transfer_streams == 0 {
            return Err(Error::Config("max transfer streams must be at least 1".to_owned()));
        }
        if self.stream_idle_timeout_secs == 0 {
            return Err(Error::Config("stream idle timeout must be positive".to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(Config::default().heartbeat_interval(), Duration::from_secs(3));
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = [
            Config { master: String::new(), ..Config::default() },
            Config { master: "http://x:1".to_owned(), ..Config::default() },
            Config { master: "a:1,,b:2".to_owned(), ..Config::default() },
            Config { master: "a:1,http://b:2".to_owned(), ..Config::default() },
            Config { rack: String::new(), ..Config::default() },
            Config { heartbeat_ms: 0, ..Config::default() },
            Config { dir: PathBuf::new(), ..Config::default() },
            Config { pipeline_timeout_ms: 0, ..Config::default() },
            Config { scrub_bytes_per_sec: 0, ..Config::default() },
            Config { max_transfer_streams: 0, ..Config::default() },
            Config { stream_idle_timeout_secs: 0, ..Config::default() },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?} should be refused");
        }
    }

    #[test]
    fn a_master_group_is_a_list() {
        let one = Config { master: "m:9000".to_owned(), ..Config::default() };
        assert_eq!(one.masters().unwrap(), ["m:9000"]);
        let group = Config { master: "a:1, b:2,c:3,a:1".to_owned(), ..Config::default() };
        group.validate().unwrap();
        assert_eq!(group.masters().unwrap(), ["a:1", "b:2", "c:3"]);
    }
}
