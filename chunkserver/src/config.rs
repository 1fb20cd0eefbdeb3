//! Chunkserver configuration: where the master is, where replicas live, how often to
//! report. The listening address is not here: [`crate::run`] takes a bound listener and
//! advertises its address.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Settings of one chunkserver.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The master's `host:port` (without a scheme).
    pub master: String,
    /// Data directory holding `VERSION`, `rbw/` and `finalized/`.
    pub dir: PathBuf,
    /// Rack name, such as `/rack-a`; used by the master for placement.
    pub rack: String,
    /// Heartbeat interval in milliseconds, until the master asks for another one.
    pub heartbeat_ms: u64,
    /// Cap on the bytes this chunkserver may use; `None` = the file system's space.
    pub capacity: Option<u64>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            master: "127.0.0.1:9000".to_owned(),
            dir: PathBuf::from("chunkserver-data"),
            rack: "/default-rack".to_owned(),
            heartbeat_ms: 3000,
            capacity: None,
        }
    }
}

impl Config {
    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Config`] if the master address is empty or has a scheme, the directory
    /// or the rack name is empty, or the heartbeat interval is 0.
    pub fn validate(&self) -> Result<()> {
        if self.master.is_empty() {
            return Err(Error::Config("master address is empty".to_owned()));
        }
        if self.master.contains("://") {
            return Err(Error::Config(format!(
                "master address {:?} must be host:port without a scheme",
                self.master
            )));
        }
        if self.dir.as_os_str().is_empty() {
            return Err(Error::Config("data directory is empty".to_owned()));
        }
        if self.rack.is_empty() {
            return Err(Error::Config("rack name is empty".to_owned()));
        }
        if self.heartbeat_ms == 0 {
            return Err(Error::Config("heartbeat interval must be positive".to_owned()));
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
            Config { rack: String::new(), ..Config::default() },
            Config { heartbeat_ms: 0, ..Config::default() },
            Config { dir: PathBuf::new(), ..Config::default() },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?} should be refused");
        }
    }
}
