//! Machine-readable error reasons carried in a [`tonic::Status`], so clients decide what a
//! failure means from an [`ErrorReason`] and never from the message text.
//!
//! A server builds its error statuses with [`status`], which puts an [`ErrorDetail`] in the
//! status details. Following gRPC's rich error model (what `tonic-types` and the other
//! gRPC libraries read), the details hold a `google.rpc.Status` whose `details` list has the
//! `ErrorDetail` packed in a `google.protobuf.Any`, so other gRPC tools decode our
//! trailers as they decode anyone's. A client reads the reason back with [`of`]. The gRPC
//! code stays the coarse class and the message stays for people: rewording a message never
//! changes what a client does.
//!
//! The reasons themselves are listed, with what each means, in `proto/gfs/v1/errors.proto`.
//! Each server maps its own error enum to them in one place: `master::Error::reason`,
//! `chunkserver::Error::reason`, `mapred::Error::reason`.

use prost::Message;
use tonic::{Code, Status};

pub use crate::gfs::{ErrorDetail, ErrorReason};

/// The envelope gRPC's rich error model puts in the details (`google/rpc/status.proto`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod rpc {
    tonic::include_proto!("google.rpc");
}

/// Type URL of a packed [`ErrorDetail`], as `google.protobuf.Any` spells type names.
const TYPE_URL: &str = "type.googleapis.com/gfs.v1.ErrorDetail";

/// A status with `code` and `message` that carries `reason` in its details.
///
/// [`ErrorReason::Unspecified`] attaches nothing: the status is a plain `Status::new`.
///
/// The message is cut in the middle to [`MAX_MESSAGE_LEN`] bytes: it travels in an HTTP/2
/// header, and headers past the peer's limit (16 KiB by default) break the whole stream,
/// which a client reads as an unreachable server. A message naming a path near the path
/// limit would otherwise do that (it is sent twice: as `grpc-message` and inside the
/// details, base64-encoded).
pub fn status(code: Code, message: impl Into<String>, reason: ErrorReason) -> Status {
    with_detail(code, message, ErrorDetail { reason: reason.into(), leader: String::new() })
}

/// UNAVAILABLE with [`ErrorReason::NotLeader`] and the leader's address (`None`: not known
/// to the member answering).
pub fn not_leader(message: impl Into<String>, leader: Option<&str>) -> Status {
    let detail = ErrorDetail {
        reason: ErrorReason::NotLeader.into(),
        leader: leader.unwrap_or_default().to_owned(),
    };
    with_detail(Code::Unavailable, message, detail)
}

fn with_detail(code: Code, message: impl Into<String>, detail: ErrorDetail) -> Status {
    let message = bounded(message.into());
    if detail.reason == i32::from(ErrorReason::Unspecified) {
        return Status::new(code, message);
    }
    let envelope = rpc::Status {
        code: code as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: TYPE_URL.to_owned(),
            value: detail.encode_to_vec(),
        }],
    };
    Status::with_details(code, message, envelope.encode_to_vec().into())
}

/// Longest status message sent, in bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// `message`, cut in the middle (at character boundaries) to [`MAX_MESSAGE_LEN`] bytes.
pub fn bounded(message: String) -> String {
    if message.len() <= MAX_MESSAGE_LEN {
        return message;
    }
    let keep = (MAX_MESSAGE_LEN - 32) / 2;
    let head = message.floor_char_boundary(keep);
    let tail = message.ceil_char_boundary(message.len() - keep);
    format!("{} [... {} bytes ...] {}", &message[..head], tail - head, &message[tail..])
}

/// The reason `status` carries, or [`ErrorReason::Unspecified`] when it carries none.
///
/// Never fails: details that do not decode, or a reason this build does not know (from a
/// newer server), also read as unspecified, leaving the caller the gRPC code to go on.
pub fn of(status: &Status) -> ErrorReason {
    detail(status)
        .and_then(|detail| ErrorReason::try_from(detail.reason).ok())
        .unwrap_or(ErrorReason::Unspecified)
}

/// The leader a [`ErrorReason::NotLeader`] status names, if any.
pub fn leader_of(status: &Status) -> Option<String> {
    detail(status)
        .filter(|d| d.reason == i32::from(ErrorReason::NotLeader) && !d.leader.is_empty())
        .map(|d| d.leader)
}

fn detail(status: &Status) -> Option<ErrorDetail> {
    let envelope = rpc::Status::decode(status.details()).ok()?;
    envelope
        .details
        .iter()
        .filter(|any| any.type_url.rsplit('/').next() == TYPE_URL.rsplit('/').next())
        .find_map(|any| ErrorDetail::decode(any.value.as_slice()).ok())
}

#[cfg(test)]
mod tests {
    use tonic::codegen::http::HeaderMap;

    use super::*;

    #[test]
    fn long_messages_are_cut_in_the_middle_and_short_ones_kept() {
        let short = "a".repeat(MAX_MESSAGE_LEN);
        assert_eq!(bounded(short.clone()), short);
        let long = format!("start {} é end", "é".repeat(10_000));
        let cut = bounded(long.clone());
        assert!(cut.len() <= MAX_MESSAGE_LEN, "{}", cut.len());
        assert!(cut.starts_with("start ") && cut.ends_with(" é end"), "{cut}");
        let s = status(Code::NotFound, long, ErrorReason::NotFound);
        assert!(s.message().len() <= MAX_MESSAGE_LEN);
        assert_eq!(of(&s), ErrorReason::NotFound);
    }

    fn every_reason() -> impl Iterator<Item = ErrorReason> {
        (0..).map_while(|n| ErrorReason::try_from(n).ok())
    }

    #[test]
    fn every_reason_reads_back() {
        assert!(every_reason().count() > 20, "the enum is read up to its first gap");
        for reason in every_reason() {
            let s = status(Code::FailedPrecondition, "/x: something", reason);
            assert_eq!(of(&s), reason);
            assert_eq!(s.code(), Code::FailedPrecondition);
            assert_eq!(s.message(), "/x: something");
        }
    }

    #[test]
    fn the_reason_survives_the_trailers() {
        let sent = status(Code::Unavailable, "master is in safe mode", ErrorReason::SafeMode);
        let mut headers = HeaderMap::new();
        sent.add_header(&mut headers).expect("encodes");
        let received = Status::from_header_map(&headers).expect("a status");
        assert_eq!(of(&received), ErrorReason::SafeMode);
        assert_eq!(received.message(), "master is in safe mode");
    }

    #[test]
    fn a_not_leader_status_names_the_leader_through_the_trailers() {
        let sent = not_leader("master 2 is a follower", Some("127.0.0.3:9000"));
        let mut headers = HeaderMap::new();
        sent.add_header(&mut headers).expect("encodes");
        let received = Status::from_header_map(&headers).expect("a status");
        assert_eq!(received.code(), Code::Unavailable);
        assert_eq!(of(&received), ErrorReason::NotLeader);
        assert_eq!(leader_of(&received).as_deref(), Some("127.0.0.3:9000"));
        assert_eq!(leader_of(&not_leader("no leader yet", None)), None);
        let other = status(Code::Unavailable, "safe mode", ErrorReason::SafeMode);
        assert_eq!(leader_of(&other), None);
    }

    #[test]
    fn a_status_without_a_reason_is_unspecified() {
        assert_eq!(
            of(&Status::failed_precondition("master is in safe mode")),
            ErrorReason::Unspecified
        );
        let plain = status(Code::NotFound, "x", ErrorReason::Unspecified);
        assert!(plain.details().is_empty(), "unspecified attaches nothing");
    }

    #[test]
    fn details_that_do_not_decode_are_unspecified() {
        for junk in [&b"\xff\xff\xff"[..], b"\x0a", b"\x1a\x05\x0a\x03abc", &[0x80; 64]] {
            let s = Status::with_details(Code::Internal, "x", junk.to_vec().into());
            assert_eq!(of(&s), ErrorReason::Unspecified, "{junk:?}");
        }
    }

    #[test]
    fn other_details_and_unknown_reasons_are_unspecified() {
        let packed = |type_url: &str, reason: i32| {
            let envelope = rpc::Status {
                code: Code::Internal as i32,
                message: "x".into(),
                details: vec![prost_types::Any {
                    type_url: type_url.into(),
                    value: ErrorDetail { reason, leader: String::new() }.encode_to_vec(),
                }],
            };
            Status::with_details(Code::Internal, "x", envelope.encode_to_vec().into())
        };
        let safe_mode = ErrorReason::SafeMode.into();
        assert_eq!(
            of(&packed("type.googleapis.com/google.rpc.ErrorInfo", safe_mode)),
            ErrorReason::Unspecified
        );
        assert_eq!(of(&packed(TYPE_URL, 10_000)), ErrorReason::Unspecified, "from a newer server");
        assert_eq!(of(&packed("example.com/gfs.v1.ErrorDetail", safe_mode)), ErrorReason::SafeMode);
    }

    #[test]
    fn the_details_are_a_google_rpc_status() {
        let s = status(Code::NotFound, "/x: no such file or directory", ErrorReason::NotFound);
        let envelope = rpc::Status::decode(s.details()).expect("a google.rpc.Status");
        assert_eq!(envelope.code, Code::NotFound as i32);
        assert_eq!(envelope.message, "/x: no such file or directory");
        assert_eq!(envelope.details.len(), 1);
        assert_eq!(envelope.details[0].type_url, TYPE_URL);
    }
}
