//! Errors of the chunkserver and their mapping to gRPC status codes and the
//! [`ErrorReason`] clients branch on ([`proto::reason`]).
//!
//! Store errors do not know the server's address; [`crate::server`] prefixes it when it
//! turns an error into a [`tonic::Status`], so every message a client sees names the node.

use proto::reason::{self, ErrorReason};
use thiserror::Error;

/// Anything that can go wrong in the chunkserver.
#[derive(Debug, Error)]
pub enum Error {
    /// A file system operation failed; `context` says which and on what.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. `write chunk 00000000000000ab data`.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `.meta` file whose header cannot be trusted.
    #[error("bad meta file {path}: {reason}")]
    BadMeta {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No replica of the chunk is stored here.
    #[error("chunk {handle:016x} not found")]
    NotFound {
        /// The chunk.
        handle: u64,
    },
    /// A finalized replica at this or a newer version is already stored.
    #[error("chunk {handle:016x} already stored at version {version}")]
    AlreadyExists {
        /// The chunk.
        handle: u64,
        /// Version of the stored replica.
        version: u64,
    },
    /// A write or copy at an older version than the replica stored: it would replace
    /// newer data with older (a frozen node's queued write, a late command).
    #[error(
        "chunk {handle:016x}: version {stored} is stored, refusing a write of older version {requested}"
    )]
    NewerStored {
        /// The chunk.
        handle: u64,
        /// Version stored here.
        stored: u64,
        /// Version of the refused write.
        requested: u64,
    },
    /// The stored replica is older than the version asked for.
    #[error("stale replica of chunk {handle:016x}: stored version {stored}, requested {requested}")]
    Stale {
        /// The chunk.
        handle: u64,
        /// Version stored here.
        stored: u64,
        /// Version the reader expects.
        requested: u64,
    },
    /// A block's bytes do not match its CRC.
    #[error("chunk {handle:016x}: checksum mismatch in block {block}")]
    Corrupt {
        /// The chunk.
        handle: u64,
        /// Index of the block within the chunk.
        block: u64,
    },
    /// The replica is known to be corrupt (bad header or an earlier checksum mismatch).
    #[error("chunk {handle:016x}: replica is corrupt")]
    ReplicaCorrupt {
        /// The chunk.
        handle: u64,
    },
    /// A newer write of the same chunk replaced the replica this writer was producing.
    #[error("chunk {handle:016x}: replica was replaced by a newer write")]
    Superseded {
        /// The chunk.
        handle: u64,
    },
    /// Not enough space for a replica.
    #[error("disk full: need {need} bytes, {remaining} remaining")]
    DiskFull {
        /// Bytes asked for.
        need: u64,
        /// Bytes available.
        remaining: u64,
    },
    /// A request whose chunk access token does not allow it.
    #[error("chunk {handle:016x}: {cause}")]
    Token {
        /// The chunk asked for.
        handle: u64,
        /// Why the token was refused.
        cause: security::chunk_token::TokenError,
    },
    /// A write or settle that would replace or cut a finalized replica without the
    /// master's order for a newer version.
    #[error(
        "chunk {handle:016x}: refusing to {what} a finalized replica of version {stored} at version {requested}"
    )]
    Finalized {
        /// The chunk.
        handle: u64,
        /// What was refused ("reopen", "cut").
        what: &'static str,
        /// The finalized replica's version.
        stored: u64,
        /// The version the request named.
        requested: u64,
    },
    /// Every data stream the chunkserver allows is in use ([`crate::streams`]).
    #[error("busy: all {cap} data streams allowed (--max-transfer-streams) are open")]
    Busy {
        /// The cap.
        cap: usize,
    },
    /// A write stream whose upstream sent nothing, neither packet nor keepalive, for
    /// the idle timeout; closed so it no longer holds a stream and reserved space.
    #[error(
        "{what}: nothing from upstream for {} s (--stream-idle-timeout-secs): stream closed",
        .idle.as_secs_f64()
    )]
    Idle {
        /// The stream, e.g. `write of chunk 00000000000000ab`.
        what: String,
        /// The idle timeout.
        idle: std::time::Duration,
    },
    /// An order from a master whose term is older than the newest this chunkserver has
    /// seen: a deposed leader's ([`crate::fence`]).
    #[error("order of master term {term} refused: term {newest} has been seen since")]
    StaleTerm {
        /// The ordering master's term.
        term: u64,
        /// The newest term seen.
        newest: u64,
    },
    /// A request that breaks the protocol.
    #[error("{0}")]
    InvalidArgument(String),
    /// A configuration that cannot work.
    #[error("invalid config: {0}")]
    Config(String),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl Error {
    /// An [`Error::Io`] with its context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }

    /// True if the error is the file system running out of space.
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::DiskFull { .. } => true,
            Error::Io { source, .. } => {
                source.kind() == std::io::ErrorKind::StorageFull
                    || source.raw_os_error() == Some(libc::ENOSPC)
                    || source.raw_os_error() == Some(libc::EDQUOT)
            }
            _ => false,
        }
    }

    /// The machine-readable reason a client sees for this error, beside its gRPC code.
    pub fn reason(&self) -> ErrorReason {
        match self {
            _ if self.is_no_space() => ErrorReason::NoSpace,
            Error::Io { .. } | Error::Transport(_) => ErrorReason::Internal,
            Error::BadMeta { .. } | Error::Corrupt { .. } | Error::ReplicaCorrupt { .. } => {
                ErrorReason::Corrupt
            }
            Error::NotFound { .. } => ErrorReason::NotFound,
            Error::AlreadyExists { .. } => ErrorReason::AlreadyExists,
            Error::Stale { .. } => ErrorReason::StaleVersion,
            Error::NewerStored { .. } => ErrorReason::NewerStored,
            Error::Superseded { .. } => ErrorReason::Superseded,
            Error::DiskFull { .. } => ErrorReason::NoSpace,
            Error::Token { cause: security::chunk_token::TokenError::Expired(_), .. } => {
                ErrorReason::TokenExpired
            }
            Error::Token { .. } => ErrorReason::BadToken,
            Error::Finalized { .. } => ErrorReason::Refused,
            Error::StaleTerm { .. } => ErrorReason::StaleTerm,
            Error::Busy { .. } => ErrorReason::Exhausted,
            // The peer (upstream) did not send in time.
            Error::Idle { .. } => ErrorReason::Unreachable,
            Error::InvalidArgument(_) | Error::Config(_) => ErrorReason::InvalidArgument,
        }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            _ if self.is_no_space() => Code::ResourceExhausted,
            Error::Io { .. } | Error::Transport(_) => Code::Internal,
            Error::BadMeta { .. } | Error::Corrupt { .. } | Error::ReplicaCorrupt { .. } => {
                Code::DataLoss
            }
            Error::NotFound { .. } => Code::NotFound,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::Stale { .. } | Error::NewerStored { .. } => Code::FailedPrecondition,
            Error::Superseded { .. } => Code::Aborted,
            Error::DiskFull { .. } => Code::ResourceExhausted,
            Error::Token { cause, .. } if cause.is_unauthenticated() => Code::Unauthenticated,
            Error::Token { .. } => Code::PermissionDenied,
            Error::Finalized { .. } | Error::StaleTerm { .. } => Code::FailedPrecondition,
            Error::Busy { .. } => Code::ResourceExhausted,
            Error::Idle { .. } => Code::DeadlineExceeded,
            Error::InvalidArgument(_) | Error::Config(_) => Code::InvalidArgument,
        }
    }
}

/// Result of chunkserver operations.
pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for tonic::Status {
    fn from(err: Error) -> tonic::Status {
        reason::status(err.code(), err.to_string(), err.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract() {
        assert_eq!(Error::NotFound { handle: 1 }.code(), tonic::Code::NotFound);
        assert_eq!(
            Error::Stale { handle: 1, stored: 1, requested: 2 }.code(),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(Error::Corrupt { handle: 1, block: 3 }.code(), tonic::Code::DataLoss);
        let enospc = Error::io("write", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(enospc.code(), tonic::Code::ResourceExhausted);
        let status = tonic::Status::from(Error::DiskFull { need: 10, remaining: 5 });
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(status.message(), "disk full: need 10 bytes, 5 remaining");
        assert_eq!(reason::of(&status), ErrorReason::NoSpace);
    }

    #[test]
    fn reasons_tell_apart_what_codes_do_not() {
        let stale = Error::Stale { handle: 1, stored: 1, requested: 2 };
        let newer = Error::NewerStored { handle: 1, stored: 2, requested: 1 };
        assert_eq!(stale.code(), newer.code());
        assert_eq!(reason::of(&stale.into()), ErrorReason::StaleVersion);
        assert_eq!(reason::of(&newer.into()), ErrorReason::NewerStored);
        let enospc = Error::io("write", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(enospc.reason(), ErrorReason::NoSpace, "a full disk, however it shows");
        let eio = Error::io("write", std::io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(eio.reason(), ErrorReason::Internal);
    }
}
