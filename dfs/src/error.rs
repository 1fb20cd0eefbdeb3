//! Errors of the client library: what failed and where (path, master or chunkserver
//! address), and the mapping from the `tonic::Status` the servers send.
//!
//! A status maps to a variant by its [`ErrorReason`] ([`proto::reason`]) where the reason
//! tells apart what the gRPC code does not (a directory not empty, not a directory, is a
//! directory: all `failed_precondition`), and by its code otherwise; never by its message,
//! which servers may reword. [`Error::reason`] keeps the reason for callers that branch
//! further (retries: [`crate::retry`]).
//!
//! The master and chunkservers answer with one-line lowercase messages that already name
//! the path or chunk; those messages are kept as they are. Transport failures (nothing
//! listening, a timeout) become [`Error::MasterUnreachable`] or
//! [`Error::ChunkserverUnreachable`] with a short cause such as `connection refused`.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io;

use proto::path::PathError;
use proto::reason::{self, ErrorReason};
use tonic::{Code, Status};

use crate::chunk::ChunkHandle;

/// Result of the client library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One replica that a read tried and why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFailure {
    /// Address of the chunkserver.
    pub addr: String,
    /// What went wrong there.
    pub error: String,
}

/// Everything the client library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path (or a parent) does not exist; the message is the master's.
    #[error("{message}")]
    NotFound {
        /// Path of the operation.
        path: String,
        /// What the master said.
        message: String,
    },
    /// The path exists already.
    #[error("{message}")]
    AlreadyExists {
        /// Path of the operation.
        path: String,
        /// What the master (or the client) said.
        message: String,
    },
    /// A file was expected but the path is a directory.
    #[error("{message}")]
    IsADirectory {
        /// Path of the operation.
        path: String,
        /// Full message.
        message: String,
    },
    /// A directory was expected but the path (or a parent) is a file.
    #[error("{message}")]
    NotADirectory {
        /// Path of the operation.
        path: String,
        /// Full message.
        message: String,
    },
    /// A non-recursive delete of a directory with children.
    #[error("{message}")]
    DirectoryNotEmpty {
        /// Path of the operation.
        path: String,
        /// Full message.
        message: String,
    },
    /// Another precondition failed (a lease held by another writer, a stale replica, the
    /// master in safe mode, ...): [`Error::reason`] says which.
    #[error("{message}")]
    FailedPrecondition {
        /// Path of the operation.
        path: String,
        /// Full message.
        message: String,
        /// Which precondition, as the server gave it.
        reason: ErrorReason,
    },
    /// The caller may not do this (mode bits, the sticky bit, an owner-only or
    /// superuser-only change); the message names the user, the access and the inode.
    #[error("{message}")]
    PermissionDenied {
        /// Path of the operation.
        path: String,
        /// What the master said.
        message: String,
    },
    /// The server does not accept the caller's identity (none, or a bad user name).
    #[error("{message}")]
    Unauthenticated {
        /// What the server said.
        message: String,
    },
    /// A path that is not valid in the namespace.
    #[error(transparent)]
    InvalidPath(#[from] PathError),
    /// Arguments the master or chunkserver refused.
    #[error("{message}")]
    InvalidArgument {
        /// Full message.
        message: String,
    },
    /// The master cannot be reached or did not answer in time.
    #[error("cannot reach master at {addr}: {cause}")]
    MasterUnreachable {
        /// `host:port` of the master.
        addr: String,
        /// Why, e.g. `connection refused`.
        cause: String,
    },
    /// A chunkserver cannot be reached or did not answer in time.
    #[error("cannot reach chunkserver at {addr}: {cause}")]
    ChunkserverUnreachable {
        /// `host:port` of the chunkserver.
        addr: String,
        /// Why, e.g. `connection refused`.
        cause: String,
    },
    /// The cluster cannot serve the request now (no chunkservers, a failed operation log,
    /// ...): [`Error::reason`] says why.
    #[error("{message}")]
    Unavailable {
        /// Full message.
        message: String,
        /// Why, as the server gave it.
        reason: ErrorReason,
    },
    /// The master group's leader could not make a change durable on a majority of its
    /// members in time (reason `NO_QUORUM`): the change may or may not be applied. A
    /// mutation retried with the same call id is applied at most once; past the retry
    /// deadline this is what the caller sees.
    #[error("no quorum: {}", without_prefix(.message))]
    NoQuorum {
        /// `host:port` of the member that answered.
        addr: String,
        /// What it said.
        message: String,
    },
    /// A replica's data failed its checksum.
    #[error("corrupt replica on chunkserver {addr}: {message}")]
    Corrupt {
        /// `host:port` of the chunkserver.
        addr: String,
        /// What the chunkserver said (names the chunk and block).
        message: String,
    },
    /// Every replica of a chunk failed to serve a read.
    #[error("no live replica of chunk {handle} of {path}: {}", format_tried(.tried))]
    NoLiveReplica {
        /// Path of the file.
        path: String,
        /// The chunk.
        handle: ChunkHandle,
        /// Each replica tried, in order, with its error.
        tried: Vec<ReplicaFailure>,
    },
    /// Every replica of a chunk is corrupt: known so to the master, or found so by the
    /// read itself. Unlike [`Error::NoLiveReplica`], waiting does not help: the data is
    /// damaged everywhere it is kept.
    #[error("{}", all_corrupt(*.replicas, *.handle, .path))]
    AllReplicasCorrupt {
        /// Path of the file.
        path: String,
        /// The chunk.
        handle: ChunkHandle,
        /// How many replicas there are, all corrupt.
        replicas: u32,
    },
    /// The write pipeline failed at a chunkserver.
    #[error("write pipeline failed at chunkserver {addr}: {message}")]
    Pipeline {
        /// `host:port` of the failing chunkserver.
        addr: String,
        /// What it said.
        message: String,
    },
    /// A chunkserver refused a data stream because it already serves as many as it
    /// allows (`--max-transfer-streams`; reason `EXHAUSTED`). Handled like a failed
    /// node: a reader tries the next replica, a writer drops it from the pipeline and
    /// excludes it from its next chunks. The message is the chunkserver's (it names the
    /// node and the cap).
    #[error("{message}")]
    Busy {
        /// `host:port` of the chunkserver.
        addr: String,
        /// What it said.
        message: String,
    },
    /// A chunkserver or the master ran out of space.
    #[error("no space left at {addr}: {message}")]
    DiskFull {
        /// `host:port` of the server that is full.
        addr: String,
        /// What it said.
        message: String,
    },
    /// A server broke the protocol (unexpected offsets, acks, lengths).
    #[error("protocol error from {addr}: {message}")]
    Protocol {
        /// `host:port` of the server.
        addr: String,
        /// What was wrong.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {}", describe_io(.source))]
    Io {
        /// The local path.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing to the caller's output (a file, stdout) failed.
    #[error("cannot write output: {}", describe_io(.source))]
    Output {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A writer is used after an earlier error; the file is left incomplete.
    #[error("writer for {path} failed earlier: {message}")]
    WriterFailed {
        /// Path of the file.
        path: String,
        /// The first error.
        message: String,
    },
    /// Any other error status from a server.
    #[error("{what}: {} ({:?})", .status.message(), .status.code())]
    Rpc {
        /// Which server and request.
        what: String,
        /// The status it returned.
        status: Status,
    },
}

impl Error {
    /// Maps a status the master returned for an operation on `path`.
    pub fn from_master_status(status: Status, path: &str, master_addr: &str) -> Error {
        if let Some(cause) = transport_cause(&status) {
            return Error::MasterUnreachable { addr: master_addr.to_owned(), cause };
        }
        match (status.code(), reason::of(&status)) {
            (Code::ResourceExhausted, _) => Error::DiskFull {
                addr: master_addr.to_owned(),
                message: status.message().to_owned(),
            },
            (_, ErrorReason::NoQuorum) => Error::NoQuorum {
                addr: master_addr.to_owned(),
                message: status.message().to_owned(),
            },
            _ => Error::from_status_code(status, path, &format!("master at {master_addr}")),
        }
    }

    /// Maps a status a chunkserver at `addr` returned.
    pub fn from_chunkserver_status(status: Status, addr: &str) -> Error {
        if let Some(cause) = transport_cause(&status) {
            return Error::ChunkserverUnreachable { addr: addr.to_owned(), cause };
        }
        let message = status.message().to_owned();
        match status.code() {
            Code::DataLoss => Error::Corrupt { addr: addr.to_owned(), message },
            // Busy and full share the code; only the reason tells them apart.
            Code::ResourceExhausted if reason::of(&status) == ErrorReason::Exhausted => {
                Error::Busy { addr: addr.to_owned(), message }
            }
            Code::ResourceExhausted => Error::DiskFull { addr: addr.to_owned(), message },
            Code::Unavailable => {
                Error::ChunkserverUnreachable { addr: addr.to_owned(), cause: message }
            }
            _ => Error::from_status_code(status, "", &format!("chunkserver at {addr}")),
        }
    }

    fn from_status_code(status: Status, path: &str, what: &str) -> Error {
        let path = path.to_owned();
        let message = status.message().to_owned();
        let reason = reason::of(&status);
        // The master answers failed_precondition for several namespace conditions: the
        // reason tells them apart, and names the others where the code is enough.
        match (reason, status.code()) {
            (ErrorReason::DirectoryNotEmpty, _) => Error::DirectoryNotEmpty { path, message },
            (ErrorReason::NotADirectory, _) => Error::NotADirectory { path, message },
            (ErrorReason::IsADirectory, _) => Error::IsADirectory { path, message },
            (ErrorReason::NotFound, _) | (_, Code::NotFound) => Error::NotFound { path, message },
            // By reason only: a chunkserver refusing a chunk access token answers these
            // codes too, with a token reason the reader acts on (it asks the master
            // again), kept in `Error::Rpc`.
            (ErrorReason::PermissionDenied, _) => Error::PermissionDenied { path, message },
            (ErrorReason::Unauthenticated, _) => Error::Unauthenticated { message },
            (ErrorReason::AlreadyExists, _) | (_, Code::AlreadyExists) => {
                Error::AlreadyExists { path, message }
            }
            (_, Code::FailedPrecondition) => Error::FailedPrecondition { path, message, reason },
            (_, Code::InvalidArgument) => Error::InvalidArgument { message },
            (_, Code::Unavailable) => Error::Unavailable { message, reason },
            (_, Code::DataLoss) => Error::Corrupt { addr: what.to_owned(), message },
            _ => Error::Rpc { what: what.to_owned(), status },
        }
    }

    /// The machine-readable reason of this error: the one the server gave, or the one its
    /// variant stands for; [`ErrorReason::Unspecified`] for errors of this client alone
    /// (local I/O, a failed pipeline) and statuses that gave none.
    pub fn reason(&self) -> ErrorReason {
        match self {
            Error::NotFound { .. } => ErrorReason::NotFound,
            Error::PermissionDenied { .. } => ErrorReason::PermissionDenied,
            Error::Unauthenticated { .. } => ErrorReason::Unauthenticated,
            Error::AlreadyExists { .. } => ErrorReason::AlreadyExists,
            Error::IsADirectory { .. } => ErrorReason::IsADirectory,
            Error::NotADirectory { .. } => ErrorReason::NotADirectory,
            Error::DirectoryNotEmpty { .. } => ErrorReason::DirectoryNotEmpty,
            Error::FailedPrecondition { reason, .. } | Error::Unavailable { reason, .. } => *reason,
            Error::InvalidPath(_) => ErrorReason::InvalidPath,
            Error::InvalidArgument { .. } => ErrorReason::InvalidArgument,
            Error::MasterUnreachable { .. }
            | Error::ChunkserverUnreachable { .. }
            | Error::NoLiveReplica { .. } => ErrorReason::Unreachable,
            Error::Corrupt { .. } | Error::AllReplicasCorrupt { .. } => ErrorReason::Corrupt,
            Error::DiskFull { .. } => ErrorReason::NoSpace,
            Error::Busy { .. } => ErrorReason::Exhausted,
            Error::NoQuorum { .. } => ErrorReason::NoQuorum,
            Error::Protocol { .. } => ErrorReason::Protocol,
            Error::Rpc { status, .. } => reason::of(status),
            Error::Pipeline { .. }
            | Error::Io { .. }
            | Error::Output { .. }
            | Error::WriterFailed { .. } => ErrorReason::Unspecified,
        }
    }

    /// True when retrying later (or elsewhere) may succeed: a server was unreachable,
    /// busy or failed mid-stream, as opposed to a namespace or argument error.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::MasterUnreachable { .. }
            | Error::ChunkserverUnreachable { .. }
            | Error::Unavailable { .. }
            | Error::NoQuorum { .. }
            | Error::Pipeline { .. }
            | Error::NoLiveReplica { .. }
            | Error::Busy { .. }
            | Error::Protocol { .. } => true,
            Error::Rpc { status, .. } => {
                matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Aborted)
            }
            _ => false,
        }
    }

    /// True when the error is a write to a closed pipe (`dfs cat f | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output { source } if source.kind() == io::ErrorKind::BrokenPipe)
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// The gRPC code a service should answer with when it fails because of this error.
    pub fn code(&self) -> Code {
        match self {
            Error::NotFound { .. } => Code::NotFound,
            Error::PermissionDenied { .. } => Code::PermissionDenied,
            Error::Unauthenticated { .. } => Code::Unauthenticated,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::IsADirectory { .. }
            | Error::NotADirectory { .. }
            | Error::DirectoryNotEmpty { .. }
            | Error::FailedPrecondition { .. }
            | Error::WriterFailed { .. } => Code::FailedPrecondition,
            Error::InvalidPath(_) | Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::MasterUnreachable { .. }
            | Error::ChunkserverUnreachable { .. }
            | Error::Unavailable { .. }
            | Error::NoQuorum { .. }
            | Error::Pipeline { .. } => Code::Unavailable,
            Error::Corrupt { .. }
            | Error::NoLiveReplica { .. }
            | Error::AllReplicasCorrupt { .. } => Code::DataLoss,
            Error::DiskFull { .. } | Error::Busy { .. } => Code::ResourceExhausted,
            Error::Protocol { .. } | Error::Io { .. } | Error::Output { .. } => Code::Internal,
            Error::Rpc { status, .. } => status.code(),
        }
    }
}

impl From<Status> for Error {
    /// Maps a status with no known path or server (prefer the `from_*_status` constructors).
    fn from(status: Status) -> Error {
        if let Some(cause) = transport_cause(&status) {
            return Error::Unavailable { message: cause, reason: ErrorReason::Unreachable };
        }
        Error::from_status_code(status, "", "server")
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        reason::status(err.code(), err.to_string(), err.reason())
    }
}

/// The cause of a transport-level failure (nothing listening, timeout), or `None` when
/// the status came from the server itself.
fn transport_cause(status: &Status) -> Option<String> {
    let source = StdError::source(status)?;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(source);
    let mut last = source.to_string();
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(describe_io(io));
        }
        if e.downcast_ref::<tonic::TimeoutExpired>().is_some() {
            return Some("no answer before the timeout".to_owned());
        }
        last = e.to_string();
        cur = e.source();
    }
    Some(lowercase_first(&last))
}

/// A short lowercase description of an I/O error, without the `(os error N)` suffix.
pub(crate) fn describe_io(err: &io::Error) -> String {
    use io::ErrorKind as K;
    let fixed = match err.kind() {
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset => "connection reset",
        K::TimedOut => "timed out",
        K::NotFound => "no such file or directory",
        K::PermissionDenied => "permission denied",
        K::AlreadyExists => "file exists",
        K::BrokenPipe => "broken pipe",
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_owned();
    }
    let s = err.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    lowercase_first(s)
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The master's words without a leading `no quorum: ` of its own, so the line does not
/// say it twice (presentation only: nothing branches on it).
fn without_prefix(message: &str) -> &str {
    message.strip_prefix("no quorum: ").unwrap_or(message)
}

fn all_corrupt(replicas: u32, handle: ChunkHandle, path: &str) -> String {
    match replicas {
        1 => format!("the only replica of chunk {handle} of {path} is corrupt"),
        n => format!("all {n} replicas of chunk {handle} of {path} are corrupt"),
    }
}

fn format_tried(tried: &[ReplicaFailure]) -> String {
    if tried.is_empty() {
        return "the master knows no replica".to_owned();
    }
    let mut out = String::new();
    for (i, f) in tried.iter().enumerate() {
        let sep = if i == 0 { "tried " } else { "; " };
        let _ = write!(out, "{sep}{} ({})", f.addr, f.error);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(code: Code, message: &str, r: ErrorReason) -> Status {
        reason::status(code, message, r)
    }

    #[test]
    fn master_codes_map_to_variants() {
        let m = |s: Status| Error::from_master_status(s, "/x", "127.0.0.1:9000");
        assert!(matches!(
            m(Status::not_found("/x: no such file or directory")),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            m(Status::already_exists("/x: file exists")),
            Error::AlreadyExists { .. }
        ));
        assert!(matches!(
            m(with(Code::FailedPrecondition, "/x: lease held by c1", ErrorReason::LeaseHeld)),
            Error::FailedPrecondition { reason: ErrorReason::LeaseHeld, .. }
        ));
        assert!(matches!(m(Status::invalid_argument("bad")), Error::InvalidArgument { .. }));
        assert!(matches!(
            m(with(Code::Unavailable, "no chunkservers", ErrorReason::NoChunkservers)),
            Error::Unavailable { reason: ErrorReason::NoChunkservers, .. }
        ));
        assert!(matches!(m(Status::internal("boom")), Error::Rpc { .. }));
    }

    /// The three namespace conditions the master answers with `failed_precondition` were
    /// told apart by words in the message; now only the reason tells them apart.
    #[test]
    fn namespace_preconditions_follow_the_reason_not_the_words() {
        let m = |s: Status| Error::from_master_status(s, "/x", "127.0.0.1:9000");
        let fp = Code::FailedPrecondition;
        // The reason with a reworded message: classified by the reason.
        let e = m(with(fp, "/x still has children", ErrorReason::DirectoryNotEmpty));
        assert!(matches!(e, Error::DirectoryNotEmpty { .. }), "{e:?}");
        let e = m(with(fp, "/x/y: /x is a plain file", ErrorReason::NotADirectory));
        assert!(matches!(e, Error::NotADirectory { .. }), "{e:?}");
        let e = m(with(fp, "/x: wanted a file, found a folder", ErrorReason::IsADirectory));
        assert!(matches!(e, Error::IsADirectory { .. }), "{e:?}");
        // The old words without a reason: a precondition like any other.
        for words in
            ["/x: directory is not empty", "/x/y: /x is not a directory", "/x: is a directory"]
        {
            let e = m(Status::failed_precondition(words));
            assert!(
                matches!(e, Error::FailedPrecondition { reason: ErrorReason::Unspecified, .. }),
                "{words}: {e:?}"
            );
            assert_eq!(e.to_string(), words, "the message is kept as it is");
        }
    }

    #[test]
    fn the_reason_is_kept_and_passed_on() {
        let e = Error::from_master_status(
            with(Code::FailedPrecondition, "/x: in use", ErrorReason::LeaseHeld),
            "/x",
            "a:1",
        );
        assert_eq!(e.reason(), ErrorReason::LeaseHeld);
        let s = Status::from(e);
        assert_eq!((s.code(), reason::of(&s)), (Code::FailedPrecondition, ErrorReason::LeaseHeld));
        let e = Error::from_chunkserver_status(
            with(Code::FailedPrecondition, "older", ErrorReason::StaleVersion),
            "h:1",
        );
        assert_eq!(e.reason(), ErrorReason::StaleVersion);
        let e = Error::from_master_status(
            with(Code::Internal, "boom", ErrorReason::Internal),
            "/",
            "a:1",
        );
        assert!(matches!(e, Error::Rpc { .. }));
        assert_eq!(e.reason(), ErrorReason::Internal);
    }

    #[test]
    fn no_quorum_is_its_own_line_and_retryable() {
        let e = Error::from_master_status(
            with(Code::Unavailable, "no quorum: 2 of 3 members unreachable", ErrorReason::NoQuorum),
            "/x",
            "m2:9000",
        );
        assert!(matches!(&e, Error::NoQuorum { addr, .. } if addr == "m2:9000"), "{e:?}");
        assert_eq!(e.to_string(), "no quorum: 2 of 3 members unreachable");
        assert!(e.is_retryable());
        let s = Status::from(e);
        assert_eq!((s.code(), reason::of(&s)), (Code::Unavailable, ErrorReason::NoQuorum));
        // Worded otherwise, the same reason gives the same line.
        let e = Error::from_master_status(
            with(Code::Unavailable, "majority unreachable", ErrorReason::NoQuorum),
            "/x",
            "m2:9000",
        );
        assert_eq!(e.to_string(), "no quorum: majority unreachable");
    }

    #[test]
    fn master_messages_are_kept() {
        let e = Error::from_master_status(
            Status::not_found("/x: no such file or directory"),
            "/x",
            "a:1",
        );
        assert_eq!(e.to_string(), "/x: no such file or directory");
        assert!(e.is_not_found());
    }

    #[test]
    fn chunkserver_codes_map_to_variants() {
        let e = Error::from_chunkserver_status(Status::data_loss("chunk 1 block 2 corrupt"), "h:1");
        assert_eq!(e.to_string(), "corrupt replica on chunkserver h:1: chunk 1 block 2 corrupt");
        let e = Error::from_chunkserver_status(Status::resource_exhausted("disk full"), "h:1");
        assert!(matches!(e, Error::DiskFull { .. }));
        // The same code with the reason EXHAUSTED: a node at its stream cap, not full.
        let busy =
            "chunkserver h:1: busy: all 2 data streams allowed (--max-transfer-streams) are open";
        let e = Error::from_chunkserver_status(
            with(Code::ResourceExhausted, busy, ErrorReason::Exhausted),
            "h:1",
        );
        assert!(matches!(e, Error::Busy { .. }), "{e:?}");
        assert_eq!(e.to_string(), busy);
        assert!(e.is_retryable());
        let s = Status::from(e);
        assert_eq!((s.code(), reason::of(&s)), (Code::ResourceExhausted, ErrorReason::Exhausted));
        let e = Error::from_chunkserver_status(Status::failed_precondition("stale"), "h:1");
        assert!(matches!(e, Error::FailedPrecondition { .. }));
    }

    #[test]
    fn transport_errors_name_the_address() {
        let io = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        let status = Status::from_error(Box::new(io));
        let e = Error::from_master_status(status, "/", "127.0.0.1:9");
        assert_eq!(e.to_string(), "cannot reach master at 127.0.0.1:9: connection refused");
        assert!(e.is_retryable());
    }

    #[test]
    fn no_live_replica_lists_each_try() {
        let e = Error::NoLiveReplica {
            path: "/f".into(),
            handle: ChunkHandle(42),
            tried: vec![
                ReplicaFailure { addr: "a:1".into(), error: "connection refused".into() },
                ReplicaFailure { addr: "b:2".into(), error: "corrupt".into() },
            ],
        };
        assert_eq!(
            e.to_string(),
            "no live replica of chunk 000000000000002a of /f: tried a:1 (connection refused); b:2 (corrupt)"
        );
    }

    #[test]
    fn all_replicas_corrupt_says_so() {
        let e =
            Error::AllReplicasCorrupt { path: "/f".into(), handle: ChunkHandle(42), replicas: 3 };
        assert_eq!(e.to_string(), "all 3 replicas of chunk 000000000000002a of /f are corrupt");
        assert!(!e.is_retryable());
        assert_eq!(e.code(), Code::DataLoss);
        let e =
            Error::AllReplicasCorrupt { path: "/f".into(), handle: ChunkHandle(42), replicas: 1 };
        assert_eq!(e.to_string(), "the only replica of chunk 000000000000002a of /f is corrupt");
    }

    #[test]
    fn errors_convert_to_status_codes() {
        let s: Status = Error::NotFound { path: "/x".into(), message: "/x: missing".into() }.into();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "/x: missing");
    }

    #[test]
    fn io_errors_are_short() {
        let e = io::Error::from_raw_os_error(28);
        assert_eq!(describe_io(&e), "no space left on device");
    }
}
