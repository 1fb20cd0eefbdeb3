//! Errors of the MapReduce runtime, one enum for the library, with the gRPC status and
//! [`ErrorReason`] ([`proto::reason`]) each maps to at a service edge and
//! [`Error::is_retryable`] for callers that retry.

use proto::reason::{self, ErrorReason};
use thiserror::Error;

/// Result of runtime operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the coordinator, a worker, a task or a client.
#[derive(Debug, Error)]
pub enum Error {
    /// The chunk store failed (reading input, writing output, renaming).
    #[error(transparent)]
    Dfs(#[from] dfs::Error),
    /// A local file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Bytes that should hold an encoded key, value or record do not.
    #[error("cannot decode {0}")]
    Decode(String),
    /// A value could not be serialized.
    #[error("cannot encode {0}")]
    Encode(String),
    /// The user's map or reduce code reported an error.
    #[error("task failed: {0}")]
    Task(String),
    /// The job's code says this failure will happen wherever and however often the task
    /// runs (a malformed option, an input it can never read): the job fails at once
    /// instead of retrying the task on other hosts.
    #[error("fatal: {0}")]
    Fatal(String),
    /// Something named does not exist (input path, job, attempt, map output).
    #[error("{0}")]
    NotFound(String),
    /// Something that must not exist does (the job's output directory).
    #[error("{0}")]
    AlreadyExists(String),
    /// A request or a flag makes no sense.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is valid but the state does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not do this (a fetch without its job's token).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A peer (coordinator, worker) cannot be reached.
    #[error("cannot reach {what} at {addr}: {cause}")]
    Unavailable {
        /// Which kind of peer ("coordinator", "worker").
        what: &'static str,
        /// Its address.
        addr: String,
        /// Why.
        cause: String,
    },
    /// A peer answered with an error status.
    #[error("{what} at {addr}: {message}")]
    Rpc {
        /// Which kind of peer.
        what: &'static str,
        /// Its address.
        addr: String,
        /// The status code.
        code: tonic::Code,
        /// The status message.
        message: String,
        /// The reason the status carried.
        reason: ErrorReason,
    },
    /// Data failed its checksum (a map output segment).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl Error {
    /// Wraps an I/O error with a description of what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    /// A [`Error::Fatal`] with this message: the job fails at once, no retries.
    pub fn fatal(msg: impl Into<String>) -> Error {
        Error::Fatal(msg.into())
    }

    /// True for [`Error::Fatal`].
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::Fatal(_))
    }

    /// True if trying the same thing again may succeed (a peer down, a transient I/O or
    /// corruption problem); false for user errors and bad requests.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } | Error::Corrupt(_) | Error::Io { .. } => true,
            Error::Rpc { code, .. } => {
                matches!(code, tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
            }
            Error::Dfs(e) => !e.is_not_found(),
            _ => false,
        }
    }

    /// The machine-readable reason a client sees for this error, beside its gRPC code: a
    /// chunk store error passes on the store's reason, an error a peer answered with passes
    /// on the peer's.
    pub fn reason(&self) -> ErrorReason {
        match self {
            Error::Dfs(d) => d.reason(),
            Error::Io { .. } => ErrorReason::Internal,
            Error::Decode(_) | Error::Encode(_) | Error::InvalidArgument(_) => {
                ErrorReason::InvalidArgument
            }
            Error::Task(_) | Error::Fatal(_) => ErrorReason::TaskFailed,
            Error::NotFound(_) => ErrorReason::NotFound,
            Error::AlreadyExists(_) => ErrorReason::AlreadyExists,
            // The state that refuses it (a job over, a file closed) is in the message; no
            // caller branches on which.
            Error::FailedPrecondition(_) => ErrorReason::Unspecified,
            Error::PermissionDenied(_) => ErrorReason::PermissionDenied,
            Error::Unavailable { .. } => ErrorReason::Unreachable,
            Error::Rpc { reason, .. } => *reason,
            Error::Corrupt(_) => ErrorReason::Corrupt,
            Error::Protocol(_) => ErrorReason::Protocol,
        }
    }

    /// Maps a status answered by a peer.
    pub fn from_status(what: &'static str, addr: &str, status: tonic::Status) -> Error {
        let message = status.message().to_owned();
        let reason = reason::of(&status);
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                Error::Unavailable { what, addr: addr.to_owned(), cause: first_line(&message) }
            }
            tonic::Code::NotFound => Error::NotFound(message),
            tonic::Code::AlreadyExists => Error::AlreadyExists(message),
            tonic::Code::InvalidArgument => Error::InvalidArgument(message),
            tonic::Code::FailedPrecondition => Error::FailedPrecondition(message),
            code => Error::Rpc { what, addr: addr.to_owned(), code, message, reason },
        }
    }
}

/// `?` on I/O in job code: the error is the task's, retried like any I/O failure.
impl From<std::io::Error> for Error {
    fn from(source: std::io::Error) -> Error {
        Error::Io { what: "i/o in job code".to_owned(), source }
    }
}

/// `?` on parsing in job code: a record that does not parse fails its task.
macro_rules! task_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::Task(e.to_string())
            }
        }
    )*};
}

task_error_from!(
    std::num::ParseIntError,
    std::num::ParseFloatError,
    std::str::ParseBoolError,
    std::str::Utf8Error,
    std::string::FromUtf8Error
);

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        use tonic::Code;
        let code = match &e {
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::InvalidArgument(_) | Error::Decode(_) | Error::Encode(_) => {
                Code::InvalidArgument
            }
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Unavailable { .. } => Code::Unavailable,
            Error::Corrupt(_) => Code::DataLoss,
            Error::Dfs(d) if d.is_not_found() => Code::NotFound,
            // The store refused the job's user: a refusal, not an outage (a client would
            // otherwise say it cannot reach the coordinator).
            Error::Dfs(dfs::Error::PermissionDenied { .. }) => Code::PermissionDenied,
            Error::Dfs(dfs::Error::Unauthenticated { .. }) => Code::Unauthenticated,
            Error::Dfs(_) => Code::Unavailable,
            Error::Rpc { code, .. } => *code,
            Error::Io { .. } | Error::Task(_) | Error::Fatal(_) | Error::Protocol(_) => {
                Code::Internal
            }
        };
        reason::status(code, e.to_string(), e.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_mark_works_on_io_and_parsing_in_job_code() {
        fn parse(b: &[u8]) -> Result<u64> {
            let s = std::str::from_utf8(b)?;
            Ok(s.trim().parse::<u64>()?)
        }
        fn open() -> Result<std::fs::File> {
            Ok(std::fs::File::open("/no/such/file/anywhere")?)
        }
        assert_eq!(parse(b" 42 ").unwrap(), 42);
        assert!(matches!(parse(b"x"), Err(Error::Task(_))));
        assert!(matches!(parse(&[0xff]), Err(Error::Task(_))));
        assert!(matches!(open(), Err(Error::Io { .. })));
    }

    #[test]
    fn statuses_round_trip_to_the_same_kind() {
        let s: tonic::Status = Error::AlreadyExists("output /o already exists".into()).into();
        assert_eq!(s.code(), tonic::Code::AlreadyExists);
        let back = Error::from_status("coordinator", "h:1", s);
        assert_eq!(back.to_string(), "output /o already exists");
        let down = Error::from_status("coordinator", "h:1", tonic::Status::unavailable("x\ny"));
        assert!(down.is_retryable());
        assert_eq!(down.to_string(), "cannot reach coordinator at h:1: x");
        assert!(!Error::InvalidArgument("bad".into()).is_retryable());
    }

    #[test]
    fn reasons_cross_the_edge_both_ways() {
        let s: tonic::Status = Error::Task("boom".into()).into();
        assert_eq!((s.code(), reason::of(&s)), (tonic::Code::Internal, ErrorReason::TaskFailed));
        let back = Error::from_status("worker", "h:2", s);
        assert_eq!(back.reason(), ErrorReason::TaskFailed, "kept by Error::Rpc");
        let dfs = dfs::Error::DirectoryNotEmpty { path: "/o".into(), message: "/o: x".into() };
        let s: tonic::Status = Error::Dfs(dfs).into();
        assert_eq!(s.code(), tonic::Code::Unavailable, "codes as before");
        assert_eq!(reason::of(&s), ErrorReason::DirectoryNotEmpty, "the store's reason");
        let denied = dfs::Error::PermissionDenied { path: "/x".into(), message: "/x: no".into() };
        let s: tonic::Status = Error::Dfs(denied).into();
        assert_eq!(
            (s.code(), reason::of(&s)),
            (tonic::Code::PermissionDenied, ErrorReason::PermissionDenied)
        );
    }
}
