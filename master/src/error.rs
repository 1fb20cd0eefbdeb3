//! The master's error type and its mapping to gRPC status codes and the
//! [`ErrorReason`] clients branch on ([`proto::reason`]).

use proto::path::PathError;
use proto::reason::{self, ErrorReason};
use thiserror::Error;
use tonic::Code;

/// What can go wrong in a master operation.
#[derive(Debug, Error)]
pub enum Error {
    /// A path that is not valid syntax.
    #[error(transparent)]
    InvalidPath(#[from] PathError),
    /// A request argument out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No file or directory at the path.
    #[error("{0}: no such file or directory")]
    NotFound(String),
    /// Something already exists where the operation would create something.
    #[error("{0}: file exists")]
    AlreadyExists(String),
    /// A path component, or the target, is a file where a directory is needed.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// The target is a directory where a file is needed.
    #[error("{0}: is a directory")]
    IsADirectory(String),
    /// A non-recursive delete of a directory with children.
    #[error("{0}: directory is not empty")]
    DirectoryNotEmpty(String),
    /// The operation would make no sense on this path (the root, a move into itself, ...).
    #[error("{path}: {reason}")]
    Refused {
        /// Path concerned.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The caller may not do this (mode bits, the sticky bit, an owner-only or
    /// superuser-only change).
    #[error("{path}: permission denied: {detail}")]
    PermissionDenied {
        /// Path of the operation.
        path: String,
        /// Who was refused what on which inode (HDFS's shape:
        /// `user=bob, access=WRITE, inode=/alice (alice:staff:drwxr-xr-x)`).
        detail: String,
    },
    /// Another client holds the file open for writing.
    #[error("{path}: file is being written by {holder}")]
    LeaseHeld {
        /// File concerned.
        path: String,
        /// Client holding the lease.
        holder: String,
    },
    /// The caller is not the file's writer, or the file is not open for writing.
    #[error("{path}: not open for writing by {client}")]
    NotLeaseHolder {
        /// File concerned.
        path: String,
        /// The calling client.
        client: String,
    },
    /// The chunk named by the request is not the one the master expects.
    #[error("{path}: chunk {handle:#x} is not the file's last chunk")]
    WrongChunk {
        /// File concerned.
        path: String,
        /// Chunk named by the request.
        handle: u64,
    },
    /// No live chunkserver at all to place a new chunk on.
    #[error("no live chunkserver to place a chunk on")]
    NoChunkservers,
    /// Live chunkservers exist, but none has room for a whole chunk.
    #[error(
        "disk full: none of the {live} live chunkservers has room for a chunk of {chunk_size} bytes (most free: {most_free} bytes)"
    )]
    NoSpace {
        /// Size of the chunk to place.
        chunk_size: u64,
        /// Live chunkservers known.
        live: usize,
        /// Largest free space among them.
        most_free: u64,
    },
    /// No chunk handle is left to allocate (see [`crate::chunks::HandlesExhausted`]).
    #[error("chunk handles are exhausted: no new chunk can be allocated")]
    HandlesExhausted,
    /// A chunkserver the master does not know (for example after a master restart).
    #[error("unknown chunkserver {0}: register first")]
    UnknownChunkserver(String),
    /// The master refuses changes: it is in safe mode (the message says why and until when).
    #[error("{0}")]
    SafeMode(String),
    /// The operation log cannot be written: no change can be made durable any more.
    #[error(
        "operation log at {path} cannot be written: {reason}; the master refuses changes and still serves reads"
    )]
    LogFailed {
        /// The log directory or segment.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// This member of a replicated master group does not lead it (or lost the lead before
    /// the change was committed: it may still be, by the new leader; retry there with the
    /// same call id).
    #[error("{why}{}", leader.as_ref().map(|l| format!("; the leader is {l}")).unwrap_or_default())]
    NotLeader {
        /// What happened.
        why: String,
        /// The leader's `host:port`, if known.
        leader: Option<String>,
    },
    /// The leader could not make a change durable on a majority of its group.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// Metadata on disk (a log segment or a checkpoint) cannot be trusted.
    #[error("{file} at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        file: String,
        /// Byte offset of the bad record.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The newest checkpoint is damaged and what remains (an older checkpoint, or none,
    /// plus the kept log segments) does not rebuild everything it held.
    #[error("{damaged}; recovering from {fallback} and the log instead is not possible: {why}")]
    CheckpointLost {
        /// The damaged checkpoint's error (file, offset, reason).
        damaged: String,
        /// What start-up fell back to: an older checkpoint's file, or the empty namespace.
        fallback: String,
        /// Why that and the log do not cover it.
        why: String,
    },
    /// A long-lived task of the master (the monitor that runs re-replication, lease
    /// recovery and failure detection, or the checkpointer) ended while the master was
    /// serving: the master stops rather than go on without it.
    #[error("the master's {task} task stopped while serving: {cause}")]
    TaskDied {
        /// Which task.
        task: &'static str,
        /// Its panic message, or why it ended.
        cause: String,
    },
    /// An earlier call panicked inside the core: the state may hold a change the log
    /// does not, so nothing more is served from it; a restart rebuilds it from the log.
    #[error("the master's state is unusable after an internal error: restart the master")]
    CoreFailed,
    /// Binding or serving failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Local I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result of a master operation.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The machine-readable reason a client sees for this error, beside its gRPC code;
    /// clients decide what to do from it, never from the message.
    pub fn reason(&self) -> ErrorReason {
        match self {
            Error::InvalidPath(_) => ErrorReason::InvalidPath,
            Error::InvalidArgument(_) => ErrorReason::InvalidArgument,
            Error::NotFound(_) => ErrorReason::NotFound,
            Error::AlreadyExists(_) => ErrorReason::AlreadyExists,
            Error::NotADirectory(_) => ErrorReason::NotADirectory,
            Error::IsADirectory(_) => ErrorReason::IsADirectory,
            Error::DirectoryNotEmpty(_) => ErrorReason::DirectoryNotEmpty,
            Error::Refused { .. } => ErrorReason::Refused,
            Error::PermissionDenied { .. } => ErrorReason::PermissionDenied,
            Error::LeaseHeld { .. } => ErrorReason::LeaseHeld,
            Error::NotLeaseHolder { .. } => ErrorReason::NotLeaseHolder,
            Error::WrongChunk { .. } => ErrorReason::WrongChunk,
            Error::NoChunkservers => ErrorReason::NoChunkservers,
            Error::NoSpace { .. } => ErrorReason::NoSpace,
            Error::HandlesExhausted => ErrorReason::Exhausted,
            Error::UnknownChunkserver(_) => ErrorReason::UnknownChunkserver,
            Error::SafeMode(_) => ErrorReason::SafeMode,
            Error::LogFailed { .. } => ErrorReason::LogFailed,
            Error::NotLeader { .. } => ErrorReason::NotLeader,
            Error::NoQuorum(_) => ErrorReason::NoQuorum,
            Error::Corrupt { .. } | Error::CheckpointLost { .. } => ErrorReason::Corrupt,
            Error::TaskDied { .. } | Error::CoreFailed | Error::Transport(_) | Error::Io { .. } => {
                ErrorReason::Internal
            }
        }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidPath(_) | Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::NotADirectory(_)
            | Error::IsADirectory(_)
            | Error::DirectoryNotEmpty(_)
            | Error::Refused { .. }
            | Error::LeaseHeld { .. }
            | Error::NotLeaseHolder { .. }
            | Error::WrongChunk { .. }
            | Error::UnknownChunkserver(_)
            | Error::SafeMode(_) => Code::FailedPrecondition,
            Error::NoChunkservers
            | Error::LogFailed { .. }
            | Error::NotLeader { .. }
            | Error::NoQuorum(_) => Code::Unavailable,
            Error::NoSpace { .. } | Error::HandlesExhausted => Code::ResourceExhausted,
            Error::PermissionDenied { .. } => Code::PermissionDenied,
            Error::Transport(_)
            | Error::Io { .. }
            | Error::Corrupt { .. }
            | Error::CheckpointLost { .. }
            | Error::TaskDied { .. }
            | Error::CoreFailed => Code::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        if let Error::NotLeader { leader, .. } = &e {
            return reason::not_leader(e.to_string(), leader.as_deref());
        }
        reason::status(e.code(), e.to_string(), e.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_the_code_and_the_reason() {
        let cases = [
            (Error::SafeMode("master is in safe mode".into()), Code::FailedPrecondition),
            (Error::DirectoryNotEmpty("/d".into()), Code::FailedPrecondition),
            (Error::NotADirectory("/f".into()), Code::FailedPrecondition),
            (Error::IsADirectory("/d".into()), Code::FailedPrecondition),
            (Error::NoChunkservers, Code::Unavailable),
            (Error::LogFailed { path: "/m".into(), reason: "full".into() }, Code::Unavailable),
            (Error::NoSpace { chunk_size: 1, live: 1, most_free: 0 }, Code::ResourceExhausted),
            (Error::HandlesExhausted, Code::ResourceExhausted),
            (Error::NotFound("/x".into()), Code::NotFound),
            (Error::NotLeader { why: "a follower".into(), leader: None }, Code::Unavailable),
            (Error::NoQuorum("2 of 3 members unreachable".into()), Code::Unavailable),
        ];
        for (err, code) in cases {
            let (reason, message) = (err.reason(), err.to_string());
            assert_ne!(reason, ErrorReason::Unspecified, "{err}");
            let status = tonic::Status::from(err);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
            assert_eq!(reason::of(&status), reason, "{message}");
        }
    }
}
