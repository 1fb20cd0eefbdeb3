//! `metasave`: a plain-text dump of the master's state for debugging, after HDFS's
//! `dfsadmin -metasave`: safe mode and the log's position, every chunkserver with its
//! state and load, every chunk that needs attention (under-replicated, corrupt replicas,
//! missing) with its replicas, and every file open for writing with its writer.
//!
//! The text is for people; its shape is not a contract. It is built under the state lock
//! in one pass over the chunk map, so it is consistent but not free on a huge namespace.

use std::fmt::Write as _;
use std::time::Instant;

use crate::chunks::{ChunkInfo, ReplicaStatus};
use crate::core::Core;
use crate::driver::Master;
use crate::namespace::InodeKind;

/// Chunks and open files listed at most, so a damaged large cluster still dumps quickly.
pub const MAX_LISTED: usize = 10_000;

fn replica_list(st: &Core, c: &ChunkInfo, now: Instant) -> String {
    let mut out = Vec::with_capacity(c.replicas.len());
    for r in &c.replicas {
        let s = st.cluster.get(r.server);
        let state = if r.status == ReplicaStatus::Corrupt {
            "corrupt"
        } else if r.version < c.version {
            "stale"
        } else if !st.cluster.is_live(r.server, now) {
            "dead"
        } else if r.status == ReplicaStatus::Expected {
            "expected"
        } else {
            "ok"
        };
        out.push(format!("{}({state},v{})", s.addr, r.version));
    }
    if out.is_empty() { "none".to_owned() } else { out.join(" ") }
}

/// The dump (see the module documentation).
pub fn meta_save(m: &Master, now: Instant, now_ms: i64) -> String {
    let (st, journal) = (&m.core, &m.journal);
    let mut t = String::new();
    let counts = st.reported_chunks();
    let _ = writeln!(t, "metasave at {now_ms} ms since the epoch");
    let _ = writeln!(t, "safe mode: {}", if st.safemode.is_on() { "ON" } else { "OFF" });
    let _ = writeln!(t, "  {}", st.safemode.message(counts));
    let _ = writeln!(
        t,
        "operation log: last txid {}, {} records since the last checkpoint, {} syncs, {}",
        journal.last_txid(),
        journal.since_checkpoint(),
        journal.sync_count(),
        match journal.writable() {
            Ok(()) => "writable".to_owned(),
            Err(e) => format!("FAILED: {e}"),
        }
    );
    let _ = writeln!(t, "retry cache: {} entries", st.retry_cache.len());
    let _ = writeln!(
        t,
        "namespace: {} files, {} directories, {} chunks",
        st.ns.file_count(),
        st.ns.dir_count(),
        st.chunks.len()
    );

    let servers: Vec<_> = st.cluster.iter().collect();
    let _ = writeln!(t, "\nchunkservers: {}", servers.len());
    for (idx, s) in servers {
        let live = if st.cluster.is_live(idx, now) { "live" } else { "DEAD" };
        let _ = writeln!(
            t,
            "  {} id={} rack={} {live} last_contact={}ms_ago capacity={} used={} remaining={} chunks={} active_writes={} pending_deletes={}",
            s.addr,
            s.id,
            s.rack,
            now.saturating_duration_since(s.last_contact).as_millis(),
            s.load.capacity,
            s.load.used,
            s.load.remaining,
            s.load.chunk_count,
            s.load.active_writes,
            s.pending_deletes.len()
        );
    }

    let mut attention: Vec<(u64, &'static str, String)> = Vec::new();
    for (h, c) in st.chunks.iter() {
        // A chunk being written has no replica to count yet.
        if c.length == 0 {
            continue;
        }
        let good = c.readable().filter(|r| st.cluster.is_live(r.server, now)).count();
        let want = st.ns.file(c.file).map_or(0, |f| usize::from(f.replication));
        let corrupt = c.replicas.iter().any(|r| r.status == ReplicaStatus::Corrupt);
        let class = if good == 0 && corrupt {
            "corrupt"
        } else if good == 0 {
            "missing"
        } else if good < want {
            "under-replicated"
        } else if corrupt {
            "corrupt-replica"
        } else {
            continue;
        };
        let path = st.ns.path_of(c.file);
        let line = format!(
            "{:#018x} v{} len={} {class} {good}/{want} file={path} replicas: {}",
            h.0,
            c.version,
            c.length,
            replica_list(st, c, now)
        );
        attention.push((h.0, class, line));
    }
    attention.sort_unstable_by_key(|(h, _, _)| *h);
    let _ = writeln!(t, "\nchunks needing attention: {}", attention.len());
    for (_, _, line) in attention.iter().take(MAX_LISTED) {
        let _ = writeln!(t, "  {line}");
    }
    if attention.len() > MAX_LISTED {
        let _ = writeln!(t, "  ... {} more", attention.len() - MAX_LISTED);
    }

    let mut open = Vec::new();
    for (id, inode) in st.ns.parent_first() {
        if let InodeKind::File(f) = &inode.kind
            && let Some(w) = &f.writer
        {
            open.push(format!(
                "{} writer={w} length={} chunks={}",
                st.ns.path_of(id),
                f.length,
                f.chunks.len()
            ));
        }
    }
    let _ = writeln!(t, "\nfiles open for writing: {}", open.len());
    for line in open.iter().take(MAX_LISTED) {
        let _ = writeln!(t, "  {line}");
    }
    if open.len() > MAX_LISTED {
        let _ = writeln!(t, "  ... {} more", open.len() - MAX_LISTED);
    }
    t
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proto::path::DfsPath;

    use super::*;
    use crate::cluster::{Identity, Load};
    use crate::command::CreateRequest;
    use crate::config::Config;
    use crate::oplog::Journal;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).expect("path")
    }

    #[test]
    fn lists_servers_problem_chunks_and_open_files() {
        let mut st = Core::new(Config { replication: 2, ..Config::default() });
        let now = Instant::now();
        let load = Load { capacity: 1 << 40, remaining: 1 << 40, ..Load::default() };
        for i in 0..2 {
            let (id, addr) = (format!("cs{i}"), format!("127.0.0.{}:7", i + 2));
            st.register(Identity { id: &id, addr: &addr, rack: "/r" }, load, &[], now, 0);
        }
        let req = CreateRequest {
            replication: 0,
            chunk_size: 0,
            overwrite: false,
            create_parents: true,
            owner: "u",
            client: "writer-1",
        };
        st.create(&p("/d/done"), &req, 0).expect("create");
        let a = st.add_chunk(&p("/d/done"), "writer-1", None, "", &[], now, 0).expect("chunk");
        st.complete(&p("/d/done"), "writer-1", Some((a.handle, 5)), 0).expect("complete");
        st.create(&p("/d/open"), &req, 0).expect("create");
        let bad = st.cluster.get(a.replicas[0]).id.clone();
        st.report_bad_replica(a.handle, &bad, "checksum").expect("report");
        let m = Master { core: st, journal: Journal::in_memory() };
        let text = meta_save(&m, now + Duration::from_millis(1), 42);
        assert!(text.contains("safe mode: OFF"), "{text}");
        assert!(text.contains("chunkservers: 2"), "{text}");
        assert!(text.contains("127.0.0.2:7 id=cs0 rack=/r live"), "{text}");
        assert!(text.contains("chunks needing attention: 1"), "{text}");
        assert!(text.contains("under-replicated 1/2 file=/d/done"), "{text}");
        assert!(text.contains("corrupt"), "{text}");
        assert!(text.contains("files open for writing: 1"), "{text}");
        assert!(text.contains("/d/open writer=writer-1"), "{text}");
        assert!(text.contains("last txid 0"), "{text}");
    }
}
