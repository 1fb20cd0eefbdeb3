//! `dfs fsck`: every file, chunk and replica below a path, then a summary ending with the
//! hdfs verdict line; `--json` prints the [`FsckReport`] as one document. Exit status 1
//! when a chunk is corrupt or missing.

use std::fmt::Write as _;
use std::process::ExitCode;

use proto::size::format_size;

use super::{Ctx, FsckArgs, out};
use crate::fsck::{ChunkHealth, FsckReport, FsckStatus};

pub(super) async fn fsck(ctx: &mut Ctx, args: &FsckArgs) -> ExitCode {
    let report = match ctx.client.fsck(args.path.as_str(), args.openforwrite).await {
        Ok(r) => r,
        Err(e) => {
            ctx.fail(&e);
            return ExitCode::FAILURE;
        }
    };
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => j + "\n",
            Err(e) => {
                ctx.fail_msg(format!("cannot encode the report as json: {e}"));
                return ExitCode::FAILURE;
            }
        }
    } else {
        format_fsck(&report)
    };
    ctx.note(out(&text));
    match report.status {
        FsckStatus::Healthy => ExitCode::SUCCESS,
        FsckStatus::Corrupt => ExitCode::FAILURE,
    }
}

/// The text report: one block per file, then the summary and the verdict.
pub(crate) fn format_fsck(r: &FsckReport) -> String {
    let mut s = format!("FSCK for path '{}'\n", r.path);
    for f in &r.files {
        let open = if f.under_construction { " OPENFORWRITE" } else { "" };
        let bad = f
            .chunks
            .iter()
            .filter(|c| matches!(c.health, ChunkHealth::Corrupt | ChunkHealth::Missing))
            .count();
        let verdict =
            if bad == 0 { "OK".to_owned() } else { format!("CORRUPT ({bad} bad chunks)") };
        let _ = writeln!(
            s,
            "{} {} bytes, replication {}, {} chunk(s){open}: {verdict}",
            f.path,
            f.length,
            f.replication,
            f.chunks.len()
        );
        for (i, c) in f.chunks.iter().enumerate() {
            let _ = writeln!(
                s,
                "  {i}. chunk {} v{} offset {} len {} {}",
                c.handle,
                c.version,
                c.offset,
                c.length,
                c.health.as_str()
            );
            for rep in &c.replicas {
                let _ = writeln!(
                    s,
                    "       {} {} {} (v{}, id {})",
                    rep.addr,
                    rep.rack,
                    rep.state.as_str(),
                    rep.version,
                    rep.id
                );
            }
        }
    }
    let m = &r.summary;
    let verdict = match r.status {
        FsckStatus::Healthy => "HEALTHY",
        FsckStatus::Corrupt => "CORRUPT",
    };
    let _ = write!(
        s,
        "\nStatus: {verdict}\n\
         \x20Total size:\t{} B ({})\n\
         \x20Total files:\t{}\n\
         \x20Total directories:\t{}\n\
         \x20Open files:\t{}\n\
         \x20Total chunks:\t{}\n\
         \x20Healthy chunks:\t{}\n\
         \x20Under-replicated chunks:\t{}\n\
         \x20Mis-replicated chunks:\t{}\n\
         \x20Over-replicated chunks:\t{}\n\
         \x20Corrupt chunks:\t{}\n\
         \x20Missing chunks:\t{}\n\
         \x20Chunks under construction:\t{}\n\
         \x20Corrupt replicas:\t{}\n\
         \x20Live chunkservers:\t{}\n\
         \x20Dead chunkservers:\t{}\n\
         \x20Racks:\t{}\n\
         \nThe filesystem under path '{}' is {verdict}\n",
        m.total_bytes,
        format_size(m.total_bytes),
        m.files,
        m.directories,
        m.open_files,
        m.chunks,
        m.healthy,
        m.under_replicated,
        m.mis_replicated,
        m.over_replicated,
        m.corrupt,
        m.missing,
        m.under_construction,
        m.corrupt_replicas,
        m.live_chunkservers,
        m.dead_chunkservers,
        m.racks,
        r.path,
    );
    s
}

#[cfg(test)]
mod tests {
    use proto::gfs;
    use proto::path::DfsPath;

    use super::*;

    fn report(corrupt: bool) -> FsckReport {
        let health = if corrupt { gfs::ChunkHealth::Corrupt } else { gfs::ChunkHealth::Healthy };
        let state = if corrupt { gfs::ReplicaState::Corrupt } else { gfs::ReplicaState::Healthy };
        let resp = gfs::FsckResponse {
            files: vec![gfs::FsckFile {
                path: "/f".into(),
                length: 10,
                replication: 1,
                under_construction: false,
                chunks: vec![gfs::FsckChunk {
                    handle: 42,
                    version: 1,
                    offset: 0,
                    length: 10,
                    health: health as i32,
                    replicas: vec![gfs::FsckReplica {
                        server: Some(gfs::ChunkserverInfo {
                            id: "cs1".into(),
                            addr: "127.0.0.1:9866".into(),
                            rack: "/rack-a".into(),
                        }),
                        state: state as i32,
                        version: 1,
                    }],
                }],
            }],
            summary: Some(gfs::FsckSummary {
                files: 1,
                chunks: 1,
                healthy: u64::from(!corrupt),
                corrupt: u64::from(corrupt),
                corrupt_replicas: u64::from(corrupt),
                live_chunkservers: 1,
                racks: 1,
                ..Default::default()
            }),
        };
        FsckReport::from_proto(&DfsPath::root(), resp)
    }

    #[test]
    fn healthy_report() {
        let t = format_fsck(&report(false));
        assert!(t.contains("/f 10 bytes, replication 1, 1 chunk(s): OK\n"), "{t}");
        assert!(t.contains("  0. chunk 000000000000002a v1 offset 0 len 10 healthy\n"), "{t}");
        assert!(t.contains("127.0.0.1:9866 /rack-a healthy"), "{t}");
        assert!(t.contains(" Corrupt chunks:\t0\n"), "{t}");
        assert!(t.ends_with("The filesystem under path '/' is HEALTHY\n"), "{t}");
    }

    #[test]
    fn corrupt_report() {
        let t = format_fsck(&report(true));
        assert!(t.contains(": CORRUPT (1 bad chunks)\n"), "{t}");
        assert!(t.contains("127.0.0.1:9866 /rack-a corrupt"), "{t}");
        assert!(t.ends_with("The filesystem under path '/' is CORRUPT\n"), "{t}");
    }
}
