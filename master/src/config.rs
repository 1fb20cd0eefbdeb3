//! Master configuration: defaults, and the invariants checked before start.

use security::connections::Limits;
use std::path::PathBuf;
use std::time::Duration;

use proto::checksum::BLOCK_SIZE;

use crate::error::{Error, Result};

/// How the master runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory for the master's metadata; created if missing.
    pub dir: PathBuf,
    /// Chunk size of files that do not ask for another (bytes, a multiple of 64 KiB).
    pub chunk_size: u64,
    /// Replication factor of files that do not ask for another.
    pub replication: u16,
    /// How often chunkservers are asked to heartbeat.
    pub heartbeat_interval: Duration,
    /// A chunkserver silent for this long is dead.
    pub dead_after: Duration,
    /// A checkpoint is written once this many log records follow the last one.
    pub checkpoint_records: u64,
    /// A log segment past this many bytes is closed and a new one started.
    pub segment_size: u64,
    /// Fraction of complete chunks that must have a reported replica before the master
    /// leaves safe mode by itself (0 = leave at once).
    pub safemode_threshold: f64,
    /// How long the master stays in safe mode after the threshold is reached, so that
    /// chunkservers still registering are counted before it starts repairing.
    pub safemode_extension: Duration,
    /// Chunk copies at most pending per chunkserver as a source and as a target
    /// (0 = unlimited).
    pub replication_max_streams: u32,
    /// A copy not confirmed within this is issued again (`None` = 20 heartbeats, at
    /// least 5 s).
    pub replication_timeout: Option<Duration>,
    /// Writers renew their lease every soft limit / 2.
    pub lease_soft_limit: Duration,
    /// A writer silent this long loses its files: the master recovers and closes them.
    pub lease_hard_limit: Duration,
    /// Cap on open client connections and their idle timeout.
    pub connections: Limits,
    /// The superuser: passes every permission check, owns the root of a new namespace
    /// (default: the OS user running the master, as HDFS's NameNode user).
    pub superuser: String,
    /// Members of this group are superusers too; a new namespace's root has it as group.
    pub supergroup: String,
    /// A static group mapping (`user: group1,group2` lines) consulted before this host's
    /// `/etc/passwd` and `/etc/group` (`None`: those alone).
    pub group_mapping: Option<PathBuf>,
    /// Where the audit log goes.
    pub audit_log: AuditTarget,
    /// How long a chunk access token the master signs stays valid (see
    /// [`crate::chunk_tokens`]); HDFS's default block token lifetime is 10 hours.
    pub chunk_token_lifetime: Duration,
    /// How callers prove who they are (`--auth`, `--secret-file`).
    pub auth: security::ServerAuth,
    /// TLS for the master's port (`--tls-cert`, `--tls-key`); `None`: plain TCP.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// A user token the master issues must be renewed within this (HDFS's
    /// `dfs.namenode.delegation.token.renew-interval`, one day).
    pub token_renew_interval: Duration,
    /// ... and can't be renewed past this after issue (HDFS's max lifetime, 7 days).
    pub token_max_lifetime: Duration,
    /// Most entries in one `ListDir` answer (HDFS's `dfs.ls.limit`): a bigger directory
    /// is listed in pages, so no answer, and no time under the lock, grows with it.
    pub ls_limit: usize,
    /// The replicated master group this master is a member of (`--id`, `--peers` with
    /// more than one member); `None`: a single master with its own operation log.
    pub group: Option<crate::raft::GroupConfig>,
}

/// Where the master writes its audit log ([`crate::audit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    /// `audit.log` in the metadata directory.
    InDir,
    /// Nowhere (`--audit-log none`).
    Off,
    /// This file.
    File(PathBuf),
}

impl AuditTarget {
    /// `none` is [`AuditTarget::Off`], anything else a file.
    pub fn parse(s: &str) -> AuditTarget {
        if s == "none" { AuditTarget::Off } else { AuditTarget::File(PathBuf::from(s)) }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dir: PathBuf::from("master-data"),
            chunk_size: 64 << 20,
            replication: 3,
            heartbeat_interval: Duration::from_secs(3),
            dead_after: Duration::from_secs(30),
            checkpoint_records: 1_000_000,
            segment_size: 64 << 20,
            safemode_threshold: 0.999,
            safemode_extension: Duration::from_secs(5),
            replication_max_streams: 2,
            replication_timeout: None,
            lease_soft_limit: Duration::from_secs(60),
            lease_hard_limit: Duration::from_secs(600),
            connections: Limits::default(),
            superuser: security::os_user(),
            supergroup: crate::namespace::DEFAULT_GROUP.to_owned(),
            group_mapping: None,
            audit_log: AuditTarget::InDir,
            chunk_token_lifetime: Duration::from_millis(
                security::chunk_token::TOKEN_LIFETIME_MS as u64,
            ),
            auth: security::ServerAuth::simple(),
            tls: None,
            token_renew_interval: Duration::from_secs(24 * 3600),
            token_max_lifetime: Duration::from_secs(7 * 24 * 3600),
            ls_limit: DEFAULT_LS_LIMIT,
            group: None,
        }
    }
}

/// Entries per `ListDir` page unless `--ls-limit` says otherwise (HDFS's default).
pub const DEFAULT_LS_LIMIT: usize = 1000;

/// Largest replication factor accepted (HDFS's default `dfs.replication.max` is 512; a
/// handful is all this design's pipelines are meant for).
pub const MAX_REPLICATION: u16 = 32;

/// Checks a chunk size: a positive multiple of the 64 KiB checksum block, so chunk
/// boundaries never split a block.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the size.
pub fn check_chunk_size(chunk_size: u64) -> Result<()> {
    if chunk_size == 0 || !chunk_size.is_multiple_of(BLOCK_SIZE as u64) {
        return Err(Error::InvalidArgument(format!(
            "chunk size {chunk_size} is not a positive multiple of {BLOCK_SIZE}"
        )));
    }
    Ok(())
}

/// Longest user or client name a request may carry, in bytes.
pub const MAX_PRINCIPAL_LEN: usize = 256;

/// Checks a user (owner) or client name a request carries: at most
/// [`MAX_PRINCIPAL_LEN`] bytes and no control characters. Names are kept in the namespace
/// and the lease table for as long as their files live, printed in listings and logged:
/// a megabyte of name, or a newline forging a log line, must not get in.
///
/// # Errors
/// [`Error::InvalidArgument`] saying which name (`what`) and why.
pub fn check_principal(what: &str, name: &str) -> Result<()> {
    if name.len() > MAX_PRINCIPAL_LEN {
        return Err(Error::InvalidArgument(format!(
            "{what} is {} bytes long, over the limit of {MAX_PRINCIPAL_LEN}",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(Error::InvalidArgument(format!(
            "{what} {:?} holds the control character {c:?}",
            name.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// Checks a replication factor is within 1..=[`MAX_REPLICATION`].
///
/// # Errors
/// [`Error::InvalidArgument`] naming the factor.
pub fn check_replication(replication: u32) -> Result<u16> {
    match u16::try_from(replication) {
        Ok(r) if (1..=MAX_REPLICATION).contains(&r) => Ok(r),
        _ => Err(Error::InvalidArgument(format!(
            "replication {replication} is outside 1..={MAX_REPLICATION}"
        ))),
    }
}

impl Config {
    /// Checks the invariants between fields.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] saying which setting is wrong.
    pub fn validate(&self) -> Result<()> {
        check_chunk_size(self.chunk_size)?;
        check_replication(u32::from(self.replication))?;
        if self.heartbeat_interval.is_zero() {
            return Err(Error::InvalidArgument("heartbeat interval must be positive".into()));
        }
        if self.dead_after <= self.heartbeat_interval {
            return Err(Error::InvalidArgument(format!(
                "dead interval {:?} must exceed the heartbeat interval {:?}",
                self.dead_after, self.heartbeat_interval
            )));
        }
        for (what, name) in [("superuser", &self.superuser), ("supergroup", &self.supergroup)] {
            security::check_name(name)
                .map_err(|e| Error::InvalidArgument(format!("{what}: {e}")))?;
        }
        if self.checkpoint_records == 0 {
            return Err(Error::InvalidArgument("checkpoint records must be positive".into()));
        }
        if self.segment_size < MIN_SEGMENT_SIZE {
            return Err(Error::InvalidArgument(format!(
                "segment size {} is below the minimum {MIN_SEGMENT_SIZE}",
                self.segment_size
            )));
        }
        if self.lease_soft_limit.is_zero() || self.lease_hard_limit < self.lease_soft_limit {
            return Err(Error::InvalidArgument(format!(
                "lease limits: soft {:?} must be positive and not above hard {:?}",
                self.lease_soft_limit, self.lease_hard_limit
            )));
        }
        if self.token_renew_interval.is_zero()
            || self.token_max_lifetime < self.token_renew_interval
        {
            return Err(Error::InvalidArgument(format!(
                "token lifetimes: renew interval {:?} must be positive and not above the maximum {:?}",
                self.token_renew_interval, self.token_max_lifetime
            )));
        }
        if self.ls_limit == 0 {
            return Err(Error::InvalidArgument("listing limit must be at least 1".into()));
        }
        if self.chunk_token_lifetime.is_zero() {
            return Err(Error::InvalidArgument("chunk token lifetime must be positive".into()));
        }
        if !(0.0..=1.0).contains(&self.safemode_threshold) {
            return Err(Error::InvalidArgument(format!(
                "safe mode threshold {} is outside 0..=1",
                self.safemode_threshold
            )));
        }
        Ok(())
    }
}

impl Config {
    /// How long a chunk copy may stay unconfirmed before it is issued again.
    pub fn pending_copy_timeout(&self) -> Duration {
        self.replication_timeout
            .unwrap_or_else(|| (self.heartbeat_interval * 20).max(Duration::from_secs(5)))
    }
}

/// Smallest log segment size accepted: a segment must hold at least a few records.
pub const MIN_SEGMENT_SIZE: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().expect("defaults");
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = [
            Config { chunk_size: 1000, ..Config::default() },
            Config { chunk_size: 0, ..Config::default() },
            Config { replication: 0, ..Config::default() },
            Config { dead_after: Duration::from_secs(1), ..Config::default() },
            Config { checkpoint_records: 0, ..Config::default() },
            Config { segment_size: 100, ..Config::default() },
            Config { safemode_threshold: 1.5, ..Config::default() },
            Config { safemode_threshold: f64::NAN, ..Config::default() },
            Config { lease_hard_limit: Duration::from_secs(1), ..Config::default() },
            Config { ls_limit: 0, ..Config::default() },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        assert!(check_replication(33).is_err());
        assert_eq!(check_replication(2).ok(), Some(2));
    }
}
