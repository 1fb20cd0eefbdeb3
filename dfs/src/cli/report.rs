//! `dfs report`: cluster capacity and every chunkserver, like `hdfs dfsadmin -report`;
//! `--json` prints the [`ClusterReport`] as one document.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use proto::size::format_size;

use super::ls::format_time;
use super::{Ctx, out};
use crate::report::{ChunkserverState, ClusterReport};

pub(super) async fn report(ctx: &mut Ctx, json: bool) {
    let report = match ctx.client.cluster_report().await {
        Ok(r) => r,
        Err(e) => return ctx.fail(&e),
    };
    let text = if json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => j + "\n",
            Err(e) => return ctx.fail_msg(format!("cannot encode the report as json: {e}")),
        }
    } else {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        format_report(&report, now)
    };
    ctx.note(out(&text));
}

fn bytes(n: u64) -> String {
    format!("{n} ({})", format_size(n))
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0.00%".to_owned()
    } else {
        format!("{:.2}%", part as f64 * 100.0 / whole as f64)
    }
}

/// The text report; `now_ms` is used for "seconds since last contact".
pub(crate) fn format_report(r: &ClusterReport, now_ms: i64) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "Configured Capacity: {}\nDFS Used: {}\nDFS Remaining: {}\nDFS Used%: {}\n\
         Files: {}\nDirectories: {}\nChunks: {}\nUnder replicated chunks: {}\n\
         Corrupt replicas: {}\nMissing chunks: {}\nPending replications: {}\n\
         Balancer: {}\nDefault replication: {}\nDefault chunk size: {}\n",
        bytes(r.configured_capacity),
        bytes(r.used),
        bytes(r.remaining),
        percent(r.used, r.configured_capacity),
        r.files,
        r.directories,
        r.chunks,
        r.under_replicated,
        r.corrupt_replicas,
        r.missing,
        r.pending_replications,
        if r.balancer.is_empty() { "not started" } else { &r.balancer },
        r.default_replication,
        bytes(r.default_chunk_size),
    );
    for (state, title, count) in [
        (ChunkserverState::Live, "Live", r.live_chunkservers),
        (ChunkserverState::Dead, "Dead", r.dead_chunkservers),
    ] {
        let _ = writeln!(
            s,
            "\n-------------------------------------------------\n{title} chunkservers ({count}):"
        );
        for c in r.chunkservers.iter().filter(|c| c.state == state) {
            let ago = (now_ms - c.last_contact_ms).max(0) / 1000;
            let _ = write!(
                s,
                "\nName: {} (id {})\nRack: {}\nState: {}\nDecommission status: {}\nCapacity: {}\nUsed: {}\n\
                 Remaining: {}\nUsed%: {}\nChunks: {}\nActive writes: {}\n\
                 Last contact: {} UTC ({ago}s ago)\n",
                c.addr,
                c.id,
                c.rack,
                c.state.as_str(),
                match c.admin_state.as_str() {
                    "decommissioning" => "DECOMMISSIONING (decommission in progress)",
                    "decommissioned" => "DECOMMISSIONED",
                    _ => "normal",
                },
                bytes(c.capacity),
                bytes(c.used),
                bytes(c.remaining),
                percent(c.used, c.capacity),
                c.chunks,
                c.active_writes,
                format_time(c.last_contact_ms),
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_live_then_dead() {
        let r = ClusterReport::from(crate::report::tests::sample());
        let t = format_report(&r, 1_700_000_005_000);
        assert!(t.starts_with("Configured Capacity: 1000 (1000 B)\n"), "{t}");
        let live = t.find("Live chunkservers (1):").expect("live section");
        let dead = t.find("Dead chunkservers (1):").expect("dead section");
        let a = t.find("Name: a:1").expect("a");
        let b = t.find("Name: b:2").expect("b");
        assert!(live < a && a < dead && dead < b, "{t}");
        assert!(t.contains("(5s ago)"), "{t}");
        assert!(t.contains("State: dead"), "{t}");
    }
}
