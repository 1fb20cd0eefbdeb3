//! Log records: the domain form of one namespace mutation ([`Op`]) with its transaction id
//! and timestamp ([`Record`]), and their protobuf encoding (`gfs.disk.v1.LogRecord`, in
//! [`proto::disk`], the on-disk schema versioned apart from the wire's).
//!
//! A record holds exactly the arguments the mutation was applied with, defaults already
//! resolved and the new chunk handle included, so replaying it through the same
//! [`crate::core::Core`] methods rebuilds the same state.

use prost::Message;
use proto::disk::{self as pb, log_record};
use proto::path::DfsPath;

use crate::ids::ChunkHandle;
use crate::retry_cache::CallKey;

/// One namespace mutation as it was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// [`crate::core::Core::mkdir`].
    Mkdir {
        /// Directory created.
        path: DfsPath,
        /// `mkdir -p`.
        parents: bool,
        /// Owner of what it creates: the caller.
        owner: String,
        /// The caller's umask.
        umask: u16,
    },
    /// [`crate::core::Core::create`], with defaults resolved.
    Create {
        /// File created.
        path: DfsPath,
        /// Its replication factor.
        replication: u16,
        /// Its chunk size.
        chunk_size: u64,
        /// Replaced an existing file.
        overwrite: bool,
        /// Created missing parents.
        create_parents: bool,
        /// Owner: the caller.
        owner: String,
        /// The caller's umask.
        umask: u16,
        /// Writer holding the file open.
        client: String,
    },
    /// A chunk appended to a file being written, finishing the previous one.
    AddChunk {
        /// The file.
        path: DfsPath,
        /// Its writer.
        client: String,
        /// The chunk finished and its final length.
        previous: Option<(ChunkHandle, u64)>,
        /// The handle allocated for the new chunk.
        handle: ChunkHandle,
    },
    /// [`crate::core::Core::complete`].
    Complete {
        /// The file.
        path: DfsPath,
        /// Its writer.
        client: String,
        /// The last chunk and its final length.
        last: Option<(ChunkHandle, u64)>,
    },
    /// [`crate::core::Core::rename`].
    Rename {
        /// Source.
        src: DfsPath,
        /// Destination as the client gave it.
        dst: DfsPath,
    },
    /// [`crate::core::Core::delete`].
    Delete {
        /// Path deleted.
        path: DfsPath,
        /// Recursively.
        recursive: bool,
    },
    /// [`crate::core::Core::set_replication`].
    SetReplication {
        /// File or directory.
        path: DfsPath,
        /// New factor.
        replication: u16,
    },
    /// chmod.
    SetPermission {
        /// File or directory.
        path: DfsPath,
        /// The new bits (at most [`crate::permission::MAX_MODE`]).
        permission: u16,
    },
    /// chown / chgrp.
    SetOwner {
        /// File or directory.
        path: DfsPath,
        /// The new owner, if it changes.
        owner: Option<String>,
        /// The new group, if it changes.
        group: Option<String>,
    },
    /// A chunk being written got a new version (pipeline recovery, lease recovery).
    UpdatePipeline {
        /// The file.
        path: DfsPath,
        /// Its writer.
        client: String,
        /// The chunk.
        handle: ChunkHandle,
        /// Its new version.
        version: u64,
    },
    /// Lease recovery dropped a last chunk no replica held a byte of.
    AbandonChunk {
        /// The file.
        path: DfsPath,
        /// Its writer.
        client: String,
        /// The chunk.
        handle: ChunkHandle,
    },
}

/// The retry-cache entry of the call that made a mutation, logged with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedCall {
    /// The calling client and its call number.
    pub key: CallKey,
    /// The encoded response it was answered with.
    pub reply: bytes::Bytes,
}

/// A logged mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Transaction id, consecutive from 1.
    pub txid: u64,
    /// The mutation's timestamp, ms since the Unix epoch.
    pub time_ms: i64,
    /// The mutation.
    pub op: Op,
    /// The call that made it, for the retry cache (`None` for calls without ids).
    pub call: Option<LoggedCall>,
}

fn handle_len(h: u64, len: u64) -> Option<(ChunkHandle, u64)> {
    (h != 0).then_some((ChunkHandle(h), len))
}

fn split(v: Option<(ChunkHandle, u64)>) -> (u64, u64) {
    v.map_or((0, 0), |(h, len)| (h.0, len))
}

fn path(s: &str) -> Result<DfsPath, String> {
    DfsPath::parse(s).map_err(|e| format!("bad path in record: {e}"))
}

/// A umask from a record; records written before permissions carry none: 0o022, which
/// gives what those masters gave (0o755 directories, 0o644 files).
fn umask(u: Option<u32>) -> Result<u16, String> {
    let u = u.unwrap_or(u32::from(crate::permission::DEFAULT_UMASK));
    u16::try_from(u)
        .ok()
        .filter(|u| *u <= 0o777)
        .ok_or_else(|| format!("umask {u:#o} out of range in record"))
}

fn mode(m: u32) -> Result<u16, String> {
    u16::try_from(m)
        .ok()
        .filter(|m| *m <= crate::permission::MAX_MODE)
        .ok_or_else(|| format!("permission {m:#o} out of range in record"))
}

fn factor(r: u32) -> Result<u16, String> {
    u16::try_from(r).map_err(|_| format!("replication {r} out of range in record"))
}

impl Record {
    /// The protobuf encoding (the payload of one frame).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the protobuf encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let op = match &self.op {
            Op::Mkdir { path, parents, owner, umask } => log_record::Op::Mkdir(pb::LogMkdir {
                path: path.to_string(),
                parents: *parents,
                owner: owner.clone(),
                umask: Some(u32::from(*umask)),
            }),
            Op::Create {
                path,
                replication,
                chunk_size,
                overwrite,
                create_parents,
                owner,
                umask,
                client,
            } => log_record::Op::Create(pb::LogCreate {
                path: path.to_string(),
                replication: u32::from(*replication),
                chunk_size: *chunk_size,
                overwrite: *overwrite,
                create_parents: *create_parents,
                owner: owner.clone(),
                client: client.clone(),
                umask: Some(u32::from(*umask)),
            }),
            Op::AddChunk { path, client, previous, handle } => {
                let (previous_handle, previous_length) = split(*previous);
                log_record::Op::AddChunk(pb::LogAddChunk {
                    path: path.to_string(),
                    client: client.clone(),
                    previous_handle,
                    previous_length,
                    handle: handle.0,
                })
            }
            Op::Complete { path, client, last } => {
                let (last_handle, last_length) = split(*last);
                log_record::Op::Complete(pb::LogComplete {
                    path: path.to_string(),
                    client: client.clone(),
                    last_handle,
                    last_length,
                })
            }
            Op::Rename { src, dst } => {
                log_record::Op::Rename(pb::LogRename { src: src.to_string(), dst: dst.to_string() })
            }
            Op::Delete { path, recursive } => log_record::Op::Delete(pb::LogDelete {
                path: path.to_string(),
                recursive: *recursive,
            }),
            Op::SetReplication { path, replication } => {
                log_record::Op::SetReplication(pb::LogSetReplication {
                    path: path.to_string(),
                    replication: u32::from(*replication),
                })
            }
            Op::SetPermission { path, permission } => {
                log_record::Op::SetPermission(pb::LogSetPermission {
                    path: path.to_string(),
                    permission: u32::from(*permission),
                })
            }
            Op::SetOwner { path, owner, group } => log_record::Op::SetOwner(pb::LogSetOwner {
                path: path.to_string(),
                owner: owner.clone(),
                group: group.clone(),
            }),
            Op::UpdatePipeline { path, client, handle, version } => {
                log_record::Op::UpdatePipeline(pb::LogUpdatePipeline {
                    path: path.to_string(),
                    client: client.clone(),
                    handle: handle.0,
                    version: *version,
                })
            }
            Op::AbandonChunk { path, client, handle } => {
                log_record::Op::AbandonChunk(pb::LogAbandonChunk {
                    path: path.to_string(),
                    client: client.clone(),
                    handle: handle.0,
                })
            }
        };
        let (client_id, call_id, reply) = match &self.call {
            Some(c) => (c.key.client_id.to_string(), c.key.call_id, c.reply.clone()),
            None => (String::new(), 0, bytes::Bytes::new()),
        };
        pb::LogRecord {
            txid: self.txid,
            time_ms: self.time_ms,
            client_id,
            call_id,
            reply,
            op: Some(op),
        }
        .encode_raw(out);
    }

    /// Decodes a frame's payload.
    ///
    /// # Errors
    /// A message that does not decode, has no operation, or holds a bad path or factor.
    pub fn decode(payload: &[u8]) -> Result<Record, String> {
        let r = pb::LogRecord::decode(payload).map_err(|e| format!("undecodable record: {e}"))?;
        let op = match r.op.ok_or("record without an operation")? {
            log_record::Op::Mkdir(m) => Op::Mkdir {
                path: path(&m.path)?,
                parents: m.parents,
                owner: m.owner,
                umask: umask(m.umask)?,
            },
            log_record::Op::Create(c) => Op::Create {
                path: path(&c.path)?,
                replication: factor(c.replication)?,
                chunk_size: c.chunk_size,
                overwrite: c.overwrite,
                create_parents: c.create_parents,
                owner: c.owner,
                umask: umask(c.umask)?,
                client: c.client,
            },
            log_record::Op::AddChunk(a) => Op::AddChunk {
                path: path(&a.path)?,
                client: a.client,
                previous: handle_len(a.previous_handle, a.previous_length),
                handle: ChunkHandle(a.handle),
            },
            log_record::Op::Complete(c) => Op::Complete {
                path: path(&c.path)?,
                client: c.client,
                last: handle_len(c.last_handle, c.last_length),
            },
            log_record::Op::Rename(r) => Op::Rename { src: path(&r.src)?, dst: path(&r.dst)? },
            log_record::Op::Delete(d) => {
                Op::Delete { path: path(&d.path)?, recursive: d.recursive }
            }
            log_record::Op::SetReplication(s) => {
                Op::SetReplication { path: path(&s.path)?, replication: factor(s.replication)? }
            }
            log_record::Op::SetPermission(s) => {
                Op::SetPermission { path: path(&s.path)?, permission: mode(s.permission)? }
            }
            log_record::Op::SetOwner(s) => {
                Op::SetOwner { path: path(&s.path)?, owner: s.owner, group: s.group }
            }
            log_record::Op::UpdatePipeline(u) => Op::UpdatePipeline {
                path: path(&u.path)?,
                client: u.client,
                handle: ChunkHandle(u.handle),
                version: u.version,
            },
            log_record::Op::AbandonChunk(a) => Op::AbandonChunk {
                path: path(&a.path)?,
                client: a.client,
                handle: ChunkHandle(a.handle),
            },
        };
        let call = CallKey::from_request(&r.client_id, r.call_id)
            .map(|key| LoggedCall { key, reply: r.reply });
        Ok(Record { txid: r.txid, time_ms: r.time_ms, op, call })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).expect("path")
    }

    #[test]
    fn every_op_round_trips() {
        let ops = [
            Op::Mkdir { path: p("/a/b"), parents: true, owner: "u".into(), umask: 0o027 },
            Op::SetPermission { path: p("/a/b"), permission: 0o1777 },
            Op::SetOwner { path: p("/a"), owner: Some("bob".into()), group: None },
            Op::SetOwner { path: p("/a"), owner: None, group: Some("staff".into()) },
            Op::Create {
                path: p("/a/f"),
                replication: 2,
                chunk_size: 1 << 20,
                overwrite: true,
                create_parents: false,
                owner: "u".into(),
                umask: 0,
                client: "c1".into(),
            },
            Op::AddChunk {
                path: p("/a/f"),
                client: "c1".into(),
                previous: Some((ChunkHandle(4), 1 << 20)),
                handle: ChunkHandle(5),
            },
            Op::AddChunk {
                path: p("/a/f"),
                client: "c1".into(),
                previous: None,
                handle: ChunkHandle(4),
            },
            Op::Complete { path: p("/a/f"), client: "c1".into(), last: Some((ChunkHandle(5), 7)) },
            Op::Complete { path: p("/a/g"), client: "c1".into(), last: None },
            Op::Rename { src: p("/a"), dst: p("/b") },
            Op::Delete { path: p("/b"), recursive: true },
            Op::SetReplication { path: p("/"), replication: 1 },
            Op::UpdatePipeline {
                path: p("/a/f"),
                client: "c1".into(),
                handle: ChunkHandle(5),
                version: 3,
            },
            Op::AbandonChunk { path: p("/a/f"), client: "c1".into(), handle: ChunkHandle(5) },
        ];
        for (i, op) in ops.into_iter().enumerate() {
            // Every other record carries its call, as records of retryable calls do.
            let call = (i % 2 == 0).then(|| LoggedCall {
                key: CallKey { client_id: "c1".into(), call_id: i as u64 + 1 },
                reply: bytes::Bytes::from(vec![i as u8; 3]),
            });
            let rec =
                Record { txid: i as u64 + 1, time_ms: 1_700_000_000_000 + i as i64, op, call };
            assert_eq!(Record::decode(&rec.encode()).expect("decode"), rec);
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Record::decode(&[0xff, 0xff, 0xff]).is_err());
        // A valid message without an operation.
        let empty = pb::LogRecord { txid: 1, ..Default::default() }.encode_to_vec();
        assert!(Record::decode(&empty).is_err());
    }
}

/// Record generators shared by the property tests of the log.
#[cfg(test)]
pub(crate) mod proptests {
    use proptest::prelude::*;
    use proto::alloc_probe::largest_allocation;

    use super::*;

    /// A valid path component, mostly short ASCII, sometimes any other character.
    pub(crate) fn name() -> impl Strategy<Value = String> {
        prop_oneof![4 => "[a-z0-9_-][a-z0-9._-]{0,7}", 1 => "[^/:\u{0}.][^/:\u{0}]{0,9}"]
    }

    /// A valid path up to four components deep.
    pub(crate) fn path() -> impl Strategy<Value = DfsPath> {
        prop::collection::vec(name(), 0..4)
            .prop_map(|c| DfsPath::parse(&format!("/{}", c.join("/"))).expect("valid path"))
    }

    fn finished() -> impl Strategy<Value = Option<(ChunkHandle, u64)>> {
        // Handle 0 is the encoding's "none": no chunk has it.
        prop::option::of((1..=u64::MAX, any::<u64>()).prop_map(|(h, l)| (ChunkHandle(h), l)))
    }

    fn op() -> impl Strategy<Value = Op> {
        let s = any::<String>;
        prop_oneof![
            (path(), any::<bool>(), s(), 0..=0o777u16).prop_map(|(path, parents, owner, umask)| {
                Op::Mkdir { path, parents, owner, umask }
            }),
            (path(), any::<u16>(), any::<u64>(), any::<(bool, bool)>(), s(), s(), 0..=0o777u16)
                .prop_map(
                    |(
                        path,
                        replication,
                        chunk_size,
                        (overwrite, create_parents),
                        owner,
                        client,
                        umask,
                    )| {
                        Op::Create {
                            path,
                            replication,
                            chunk_size,
                            overwrite,
                            create_parents,
                            owner,
                            umask,
                            client,
                        }
                    }
                ),
            (path(), 0..=0o1777u16)
                .prop_map(|(path, permission)| Op::SetPermission { path, permission }),
            (path(), prop::option::of(s()), prop::option::of(s()))
                .prop_map(|(path, owner, group)| Op::SetOwner { path, owner, group }),
            (path(), s(), finished(), any::<u64>()).prop_map(|(path, client, previous, h)| {
                Op::AddChunk { path, client, previous, handle: ChunkHandle(h) }
            }),
            (path(), s(), finished()).prop_map(|(path, client, last)| Op::Complete {
                path,
                client,
                last
            }),
            (path(), path()).prop_map(|(src, dst)| Op::Rename { src, dst }),
            (path(), any::<bool>()).prop_map(|(path, recursive)| Op::Delete { path, recursive }),
            (path(), any::<u16>())
                .prop_map(|(path, replication)| Op::SetReplication { path, replication }),
            (path(), s(), any::<u64>(), any::<u64>()).prop_map(|(path, client, h, version)| {
                Op::UpdatePipeline { path, client, handle: ChunkHandle(h), version }
            }),
            (path(), s(), any::<u64>()).prop_map(|(path, client, h)| Op::AbandonChunk {
                path,
                client,
                handle: ChunkHandle(h)
            }),
        ]
    }

    /// Any record; a call, when there is one, has the non-empty id and non-zero number
    /// every call that is cached has.
    pub(crate) fn record() -> impl Strategy<Value = Record> {
        let call = prop::option::of(
            (".+", 1..=u64::MAX, prop::collection::vec(any::<u8>(), 0..16)).prop_map(
                |(id, call_id, reply): (String, u64, Vec<u8>)| LoggedCall {
                    key: CallKey { client_id: id.into(), call_id },
                    reply: reply.into(),
                },
            ),
        );
        (any::<u64>(), any::<i64>(), op(), call).prop_map(|(txid, time_ms, op, call)| Record {
            txid,
            time_ms,
            op,
            call,
        })
    }

    /// Bytes no decoder may trust: random, or a valid record flipped, cut, extended, or
    /// followed by a length-delimited field claiming far more bytes than there are.
    fn hostile() -> impl Strategy<Value = Vec<u8>> {
        let huge =
            prop_oneof![Just(1u64 << 40), Just(1 << 32), Just(u64::MAX), 1u64 << 20..1 << 62];
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            (record(), any::<prop::sample::Index>(), 0..8u8).prop_map(|(r, at, bit)| {
                let mut b = r.encode();
                let i = at.index(b.len());
                b[i] ^= 1 << bit;
                b
            }),
            (record(), any::<prop::sample::Index>()).prop_map(|(r, at)| {
                let mut b = r.encode();
                b.truncate(at.index(b.len()));
                b
            }),
            (record(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(r, tail)| {
                let mut b = r.encode();
                b.extend(tail);
                b
            }),
            (record(), 1..20u64, huge).prop_map(|(r, field, len)| {
                let mut b = r.encode();
                prost::encoding::encode_varint(field << 3 | 2, &mut b);
                prost::encoding::encode_varint(len, &mut b);
                b.extend_from_slice(b"tail");
                b
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn records_round_trip(rec in record()) {
            prop_assert_eq!(Record::decode(&rec.encode()), Ok(rec));
        }

        /// The log's frames hold the checksum, so a record alone may decode to another
        /// value; it must never panic, allocate more than its bytes call for, or decode
        /// to something that does not encode back to itself.
        #[test]
        fn hostile_records_never_panic(bytes in hostile()) {
            let (decoded, largest) = largest_allocation(|| Record::decode(&bytes));
            prop_assert!(largest <= 4096 + 4 * bytes.len(), "{} bytes allocated {}", bytes.len(), largest);
            if let Ok(rec) = decoded {
                prop_assert_eq!(Record::decode(&rec.encode()), Ok(rec));
            }
        }
    }
}
