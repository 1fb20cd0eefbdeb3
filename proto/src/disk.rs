//! The on-disk schema of the master's metadata: operation log records and checkpoint
//! records (`proto/gfs/disk/v1/oplog.proto`, package `gfs.disk.v1`), framed by the
//! master's `oplog::frame`.
//!
//! Versioned apart from the wire schema ([`crate::gfs`]): the RPCs may change with their
//! clients, but a log or checkpoint written today must stay readable by every later
//! master. These messages lived in `gfs.v1` until the split; protobuf's binary encoding
//! carries no package name, so the bytes on disk did not change (the tests below decode
//! what the old types encoded).

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("gfs.disk.v1");
}

pub use generated::*;

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::checkpoint_record::Entry;
    use super::log_record::Op;
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex fixture"))
            .collect()
    }

    /// `LogRecord`s as the master encoded them when the type was `gfs.v1.LogRecord`
    /// (commit 8275823): one per operation, each with every field set, so a renumbered
    /// field or a changed type anywhere in the file shows up as a mismatch.
    const OLD_LOG_RECORDS: [&str; 9] = [
        "080710fbd095ffbc311a08636c69656e742d61202a2a040a026f6b52090a022f6410011a0175",
        "080710fbd095ffbc311a08636c69656e742d61202a2a040a026f6b5a170a042f642f6610031880808020200128013201753a0177",
        "080710fbd095ffbc311a08636c69656e742d61202a2a040a026f6b620f0a042f642f66120177180520642806",
        "080710fbd095ffbc311a08636c69656e742d61202a2a040a026f6b6a0e0a042f642f66120177180620c801",
        "080710fbd095ffbc311a08636c69656e742d61202a2a040a026f6b720c0a042f642f6612042f642f67",
        "080710fbd095ffbc311a08636c69656e742d61202a2a040a026f6b7a060a022f641001",
        "080710fbd095ffbc311a08636c69656e742d61202a2a040a026f6b8201080a042f642f671002",
        "080710fbd095ffbc311a08636c69656e742d61202a2a040a026f6b8a010d0a042f642f6712017718062009",
        "080710fbd095ffbc311a08636c69656e742d61202a2a040a026f6b92010b0a042f642f671201771806",
    ];

    /// `CheckpointRecord`s as encoded when the type was `gfs.v1.CheckpointRecord`
    /// (commit 8275823): a header, a file inode with a writer and two chunks, a trailer.
    const OLD_CHECKPOINT_RECORDS: [&str; 3] = [
        "0a0f080110071808200428fbd095ffbc31",
        "122f080310011a016620fbd095ffbc312a017530a4034003488080802050ac025a01776206080510011864620408061009",
        "1a0408031007",
    ];

    const T: i64 = 1_700_000_000_123;

    fn log_record(op: Op) -> LogRecord {
        LogRecord {
            txid: 7,
            time_ms: T,
            client_id: "client-a".into(),
            call_id: 42,
            reply: vec![0x0a, 0x02, b'o', b'k'].into(),
            op: Some(op),
        }
    }

    #[test]
    fn log_records_written_under_the_wire_package_decode_unchanged() {
        let (d, f, g, w) = ("/d".to_owned(), "/d/f".to_owned(), "/d/g".to_owned(), "w".to_owned());
        let expected = [
            // Records older than permissions carry no umask: they read as 0o022.
            Op::Mkdir(LogMkdir { path: d.clone(), parents: true, owner: "u".into(), umask: None }),
            Op::Create(LogCreate {
                path: f.clone(),
                replication: 3,
                chunk_size: 1 << 26,
                overwrite: true,
                create_parents: true,
                owner: "u".into(),
                client: w.clone(),
                umask: None,
            }),
            Op::AddChunk(LogAddChunk {
                path: f.clone(),
                client: w.clone(),
                previous_handle: 5,
                previous_length: 100,
                handle: 6,
            }),
            Op::Complete(LogComplete {
                path: f.clone(),
                client: w.clone(),
                last_handle: 6,
                last_length: 200,
            }),
            Op::Rename(LogRename { src: f, dst: g.clone() }),
            Op::Delete(LogDelete { path: d, recursive: true }),
            Op::SetReplication(LogSetReplication { path: g.clone(), replication: 2 }),
            Op::UpdatePipeline(LogUpdatePipeline {
                path: g.clone(),
                client: w.clone(),
                handle: 6,
                version: 9,
            }),
            Op::AbandonChunk(LogAbandonChunk { path: g, client: w, handle: 6 }),
        ];
        for (old, op) in OLD_LOG_RECORDS.iter().zip(expected) {
            let bytes = unhex(old);
            let want = log_record(op);
            assert_eq!(LogRecord::decode(&bytes[..]).expect("decodes"), want);
            // And the new type writes the very same bytes: nothing on disk changes.
            assert_eq!(want.encode_to_vec(), bytes);
        }
    }

    #[test]
    fn checkpoint_records_written_under_the_wire_package_decode_unchanged() {
        let expected = [
            Entry::Header(CheckpointHeader {
                format: 1,
                txid: 7,
                next_handle: 8,
                next_inode: 4,
                time_ms: T,
            }),
            Entry::Inode(CheckpointInode {
                id: 3,
                parent: 1,
                name: "f".into(),
                mtime_ms: T,
                owner: "u".into(),
                permission: 0o644,
                is_dir: false,
                replication: 3,
                chunk_size: 1 << 26,
                length: 300,
                writer: Some("w".into()),
                chunks: vec![
                    CheckpointChunk { handle: 5, version: 1, length: 100 },
                    CheckpointChunk { handle: 6, version: 9, length: 0 },
                ],
                // Images older than groups carry none: they read as "supergroup".
                group: None,
            }),
            Entry::Trailer(CheckpointTrailer { inodes: 3, txid: 7 }),
        ];
        for (old, entry) in OLD_CHECKPOINT_RECORDS.iter().zip(expected) {
            let bytes = unhex(old);
            let want = CheckpointRecord { entry: Some(entry) };
            assert_eq!(CheckpointRecord::decode(&bytes[..]).expect("decodes"), want);
            assert_eq!(want.encode_to_vec(), bytes);
        }
    }
}
