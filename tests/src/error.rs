//! Errors of the mini cluster harness: a process that would not start, a binary that is
//! not built, a condition that never came true, a `cluster.json` that cannot be read.
//!
//! Messages carry the tail of the failing process's log where there is one, because a test
//! failure that says only "timed out" sends people digging through temp directories.

use std::path::PathBuf;

use thiserror::Error;

/// Result of harness operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while starting, driving or inspecting a mini cluster.
#[derive(Debug, Error)]
pub enum Error {
    /// A server binary is not next to the harness (nor in `MINICLUSTER_BIN_DIR`).
    #[error("binary {name} not found in {dir}: run `cargo build --workspace` first")]
    BinaryNotFound {
        /// Binary name (`master`, `chunkserver`, `dfs`).
        name: String,
        /// Directory that was searched.
        dir: PathBuf,
    },
    /// A file-system or process-spawning operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path or process.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A process exited while the harness waited for it to come up.
    #[error("{name} exited ({status}) before it was ready: {reason}; last lines of {log}:\n{tail}")]
    Exited {
        /// Process name (`master`, `cs-1`, ...).
        name: String,
        /// Its exit status as printed by the OS.
        status: String,
        /// The one line of its log that says why (see [`crate::process::exit_reason`]).
        reason: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// A process did not write its address file in time.
    #[error("{name} did not write {addr_file} within {secs} s; last lines of {log}:\n{tail}")]
    NotListening {
        /// Process name.
        name: String,
        /// The address file it should have written.
        addr_file: PathBuf,
        /// Seconds waited.
        secs: u64,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// A condition polled with [`crate::wait_until`] did not hold before the deadline.
    #[error("timed out after {secs} s waiting for {what}")]
    Timeout {
        /// Description of the condition.
        what: String,
        /// Seconds waited.
        secs: u64,
    },
    /// No process of that name in the cluster.
    #[error("no process named {0:?} in the cluster (expected master, cs-N, coordinator or w-N)")]
    UnknownProcess(String),
    /// `cluster.json` could not be parsed or written.
    #[error("bad cluster description {path}: {source}")]
    Spec {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The directory already holds a cluster whose processes are running.
    #[error(
        "a cluster is already running in {dir} (pid {pid}): run `minicluster down --dir {dir}` first"
    )]
    AlreadyRunning {
        /// The cluster directory.
        dir: PathBuf,
        /// A live process of it.
        pid: u32,
    },
    /// Sending a signal failed.
    #[error("cannot send {signal} to {name} (pid {pid}): {source}")]
    Signal {
        /// Process name.
        name: String,
        /// Process id.
        pid: u32,
        /// Signal name.
        signal: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// fsck lists no chunk being written for this path.
    #[error("{0} is not a file with a chunk being written")]
    NotWriting(String),
    /// The options describe a cluster that cannot exist.
    #[error("invalid cluster options: {0}")]
    InvalidOptions(String),
    /// Connecting to the master failed.
    #[error("cannot connect to the master at {addr}: {source}")]
    Connect {
        /// The master's address.
        addr: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The MapReduce client library failed.
    #[error(transparent)]
    MapReduce(#[from] mapred::Error),
    /// The `dfs` client library failed.
    #[error(transparent)]
    Client(#[from] dfs::Error),
    /// The master answered an RPC with an error.
    #[error("master at {addr}: {status}")]
    Rpc {
        /// The master's address.
        addr: String,
        /// Its answer.
        status: Box<tonic::Status>,
    },
}

impl Error {
    /// True when a process exited because its address was taken (`EADDRINUSE`): the one
    /// failure that starting it again, a moment later, may get past.
    pub fn is_address_in_use(&self) -> bool {
        // The servers print the OS error's text after the address they could not bind.
        matches!(self, Error::Exited { reason, .. } if reason.contains("in use"))
    }

    /// Wraps an I/O error with a description of what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
