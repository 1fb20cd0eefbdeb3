//! Administration calls on the master's `gfs.v1.AdminProtocol` (`dfs admin ...`, like
//! `hdfs dfsadmin`): force a checkpoint, get or change safe mode, fetch the `metasave`
//! debugging dump, decommission or recommission a chunkserver, start, stop or query
//! the balancer, and list or change the members of a replicated master group.
//!
//! All of them are idempotent, so they are retried only while the master is unreachable,
//! never because of safe mode: they are how one inspects or ends it. The queries are
//! [`CallKind::Read`] (a follower may answer them with `--stale-ok`: its own `metasave`,
//! its view of the group), the orders [`CallKind::Idempotent`] (the leader carries them
//! out).

use std::time::Duration;

use proto::gfs::{self, SafeModeAction};
use proto::path::DfsPath;

use crate::client::Client;
use crate::error::Result;
use crate::retry::CallKind;

/// What to do with safe mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafeModeOp {
    /// Report it.
    Get,
    /// Turn it on until an explicit leave.
    Enter,
    /// Turn it off, whatever turned it on.
    Leave,
}

/// Safe mode as the master reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SafeModeStatus {
    /// Whether changes are refused.
    pub on: bool,
    /// Whether an administrator turned it on.
    pub manual: bool,
    /// Complete chunks with a reported replica.
    pub reported_chunks: u64,
    /// Complete chunks.
    pub total_chunks: u64,
    /// Fraction of chunks that must be reported before it ends by itself.
    pub threshold: f64,
    /// The master's one-line description.
    pub message: String,
}

impl From<gfs::SafeModeResponse> for SafeModeStatus {
    fn from(r: gfs::SafeModeResponse) -> Self {
        SafeModeStatus {
            on: r.on,
            manual: r.manual,
            reported_chunks: r.reported_chunks,
            total_chunks: r.total_chunks,
            threshold: r.threshold,
            message: r.message,
        }
    }
}

/// How often [`Client::wait_safe_mode_off`] asks again.
const SAFE_MODE_POLL: Duration = Duration::from_millis(250);

impl Client {
    /// Makes the master write a checkpoint now; returns the last transaction it includes.
    ///
    /// # Errors
    /// The master's error (its log cannot roll, the checkpoint cannot be written), or a
    /// transport error.
    pub async fn checkpoint(&self) -> Result<u64> {
        let resp = self
            .call_admin(CallKind::Idempotent, &DfsPath::root(), |mut m| async move {
                m.checkpoint(gfs::CheckpointRequest {}).await
            })
            .await?;
        Ok(resp.txid)
    }

    /// Gets, enters or leaves safe mode; returns the state afterwards.
    ///
    /// # Errors
    /// A transport error if the master cannot be reached.
    pub async fn safe_mode(&self, op: SafeModeOp) -> Result<SafeModeStatus> {
        let (action, kind) = match op {
            SafeModeOp::Get => (SafeModeAction::Get, CallKind::Read),
            SafeModeOp::Enter => (SafeModeAction::Enter, CallKind::Idempotent),
            SafeModeOp::Leave => (SafeModeAction::Leave, CallKind::Idempotent),
        };
        let action = action as i32;
        let resp = self
            .call_admin(kind, &DfsPath::root(), |mut m| async move {
                m.safe_mode(gfs::SafeModeRequest { action }).await
            })
            .await?;
        Ok(resp.into())
    }

    /// Returns once the master is out of safe mode (polling, so it rides through a
    /// master restart as any call does).
    ///
    /// # Errors
    /// A transport error once the master stays unreachable past the retry deadline.
    pub async fn wait_safe_mode_off(&self) -> Result<SafeModeStatus> {
        loop {
            let status = self.safe_mode(SafeModeOp::Get).await?;
            if !status.on {
                return Ok(status);
            }
            tokio::time::sleep(SAFE_MODE_POLL).await;
        }
    }

    /// The master's `metasave` dump: chunkservers, chunks needing attention, open files,
    /// safe mode and the log's position, as text.
    ///
    /// # Errors
    /// A transport error if the master cannot be reached.
    pub async fn meta_save(&self) -> Result<String> {
        let resp = self
            .call_admin(CallKind::Read, &DfsPath::root(), |mut m| async move {
                m.meta_save(gfs::MetaSaveRequest {}).await
            })
            .await?;
        Ok(resp.text)
    }
}

/// A chunkserver's decommission state as the master answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecommissionStatus {
    /// `host:port` of the chunkserver.
    pub addr: String,
    /// `normal`, `decommissioning` or `decommissioned`.
    pub state: String,
    /// Chunks it holds that still lack their full replication elsewhere.
    pub chunks_to_copy: u64,
}

/// The balancer's progress.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerStatus {
    /// Whether it is moving replicas.
    pub running: bool,
    /// Its threshold in percentage points.
    pub threshold_pct: f64,
    /// Moves scheduled and completed, and the bytes moved.
    pub moves_scheduled: u64,
    /// Moves completed.
    pub moves_done: u64,
    /// Bytes the completed moves copied.
    pub bytes_moved: u64,
    /// Largest distance of a chunkserver's utilization from the mean, in points.
    pub max_deviation_pct: f64,
    /// What it is doing.
    pub message: String,
}

impl Client {
    /// Starts decommissioning the chunkserver at `addr` (host:port or id), or with
    /// `recommission` puts it back in service; returns its state.
    ///
    /// # Errors
    /// The master's error for an unknown chunkserver, or a transport error.
    pub async fn decommission(&self, addr: &str, recommission: bool) -> Result<DecommissionStatus> {
        let req = gfs::DecommissionRequest { addr: addr.to_owned(), recommission };
        let resp = self
            .call_admin(CallKind::Idempotent, &DfsPath::root(), |mut m| {
                let req = req.clone();
                async move { m.decommission(req).await }
            })
            .await?;
        Ok(DecommissionStatus {
            addr: resp.server.as_ref().map(|s| s.addr.clone()).unwrap_or_default(),
            state: crate::report::admin_state_name(resp.state()).to_owned(),
            chunks_to_copy: resp.chunks_to_copy,
        })
    }

    /// Starts the balancer with `threshold_pct` (`Some`), stops it (`None` with `stop`),
    /// or only reports it.
    ///
    /// # Errors
    /// The master's error for a bad threshold, or a transport error.
    pub async fn balance(&self, threshold_pct: Option<f64>, stop: bool) -> Result<BalancerStatus> {
        let query = threshold_pct.is_none() && !stop;
        let req = gfs::BalanceRequest { threshold_pct: threshold_pct.unwrap_or(0.0), stop, query };
        let kind = if query { CallKind::Read } else { CallKind::Idempotent };
        let r = self
            .call_admin(kind, &DfsPath::root(), |mut m| async move { m.balance(req).await })
            .await?;
        Ok(BalancerStatus {
            running: r.running,
            threshold_pct: r.threshold_pct,
            moves_scheduled: r.moves_scheduled,
            moves_done: r.moves_done,
            bytes_moved: r.bytes_moved,
            max_deviation_pct: r.max_deviation_pct,
            message: r.message,
        })
    }
}

/// One member of a replicated master group, as the member that answered sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterMember {
    /// Its id in the group.
    pub id: u64,
    /// Its `host:port`.
    pub addr: String,
    /// `leader`, `follower`, `candidate`, `learner` or `unreachable`.
    pub role: String,
    /// Its Raft term.
    pub term: u64,
    /// Last log index applied to its state (as the leader last heard).
    pub applied: u64,
    /// Entries behind the leader's log (0 on the leader).
    pub lag: u64,
    /// Whether it votes (a learner catching up does not).
    pub voter: bool,
}

/// The members of a master group (`dfs admin masters`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterGroup {
    /// Every member, in id order.
    pub members: Vec<MasterMember>,
    /// The id of the member that answered.
    pub answered_by: u64,
    /// The id of the leader it knows of (0: none).
    pub leader: u64,
}

impl From<gfs::MastersResponse> for MasterGroup {
    fn from(r: gfs::MastersResponse) -> MasterGroup {
        let mut members: Vec<MasterMember> = r
            .members
            .into_iter()
            .map(|m| MasterMember {
                id: m.id,
                addr: m.addr,
                role: m.role,
                term: m.term,
                applied: m.applied,
                lag: m.lag,
                voter: m.voter,
            })
            .collect();
        members.sort_by_key(|m| m.id);
        MasterGroup { members, answered_by: r.answered_by, leader: r.leader }
    }
}

impl Client {
    /// The members of the master group, their roles, terms and progress. A single
    /// master answers as a group of one.
    ///
    /// # Errors
    /// A transport error if no member can be reached.
    pub async fn masters(&self) -> Result<MasterGroup> {
        let resp = self
            .call_admin(CallKind::Read, &DfsPath::root(), |mut m| async move {
                m.masters(gfs::MastersRequest {}).await
            })
            .await?;
        Ok(resp.into())
    }

    /// Adds member `id` at `addr` to the master group (`Some`: it joins as a learner,
    /// then votes once caught up), or removes member `id` (`None`). One change at a time;
    /// superuser only. Returns the group afterwards.
    ///
    /// # Errors
    /// The leader's refusal (a change already under way, an unknown member, not a
    /// superuser), or a transport error.
    pub async fn change_masters(&self, id: u64, addr: Option<&str>) -> Result<MasterGroup> {
        let req = gfs::ChangeMastersRequest { id, addr: addr.unwrap_or_default().to_owned() };
        let resp = self
            .call_admin(CallKind::Idempotent, &DfsPath::root(), |mut m| {
                let req = req.clone();
                async move { m.change_masters(req).await }
            })
            .await?;
        Ok(resp.into())
    }
}

/// The table `dfs admin masters` prints: one line per member, the leader marked `*`,
/// then who answered.
pub fn format_masters(g: &MasterGroup) -> String {
    let addr_width = g.members.iter().map(|m| m.addr.len()).max().unwrap_or(0).max(7);
    let mut out = format!(
        "  {:>4}  {:<addr_width$}  {:<11}  {:>6}  {:>10}  {:>8}  VOTER\n",
        "ID", "ADDRESS", "ROLE", "TERM", "APPLIED", "LAG"
    );
    for m in &g.members {
        let mark = if m.id == g.leader && g.leader != 0 { '*' } else { ' ' };
        out.push_str(&format!(
            "{mark} {:>4}  {:<addr_width$}  {:<11}  {:>6}  {:>10}  {:>8}  {}\n",
            m.id,
            m.addr,
            m.role,
            m.term,
            m.applied,
            m.lag,
            if m.voter { "yes" } else { "no" }
        ));
    }
    let leader = match g.leader {
        0 => "no leader is known".to_owned(),
        id => format!("the leader is member {id}"),
    };
    out.push_str(&format!("Answered by member {}; {leader}.\n", g.answered_by));
    out
}

/// The lines `dfs admin balance` prints.
pub fn format_balancer(b: &BalancerStatus) -> String {
    format!(
        "Balancer is {}: {}\nThreshold: {:.1} points; largest deviation from the mean: {:.2} points\nMoves: {} scheduled, {} done, {} bytes moved\n",
        if b.running { "RUNNING" } else { "idle" },
        b.message,
        b.threshold_pct,
        b.max_deviation_pct,
        b.moves_scheduled,
        b.moves_done,
        b.bytes_moved
    )
}

/// The lines `dfs admin safemode` prints, after `hdfs dfsadmin -safemode`.
pub fn format_safe_mode(s: &SafeModeStatus) -> String {
    let mut out = format!("Safe mode is {}\n", if s.on { "ON" } else { "OFF" });
    out.push_str(&format!(
        "Reported chunks: {} of {} (threshold {:.1}%)\n",
        s.reported_chunks,
        s.total_chunks,
        s.threshold * 100.0
    ));
    if s.on {
        out.push_str(&s.message);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_members_table_marks_the_leader() {
        let member = |id: u64, role: &str, lag: u64, voter: bool| MasterMember {
            id,
            addr: format!("127.0.0.{id}:9000"),
            role: role.into(),
            term: 3,
            applied: 120 - lag,
            lag,
            voter,
        };
        let g = MasterGroup::from(gfs::MastersResponse {
            members: [(2, "follower", 0, true), (1, "leader", 0, true), (3, "learner", 40, false)]
                .iter()
                .map(|&(id, role, lag, voter)| {
                    let m = member(id, role, lag, voter);
                    gfs::MasterMember {
                        id: m.id,
                        addr: m.addr,
                        role: m.role,
                        term: m.term,
                        applied: m.applied,
                        lag: m.lag,
                        voter: m.voter,
                    }
                })
                .collect(),
            answered_by: 2,
            leader: 1,
        });
        assert_eq!(
            format_masters(&g),
            "    ID  ADDRESS         ROLE           TERM     APPLIED       LAG  VOTER\n\
             *    1  127.0.0.1:9000  leader            3         120         0  yes\n\
             \x20    2  127.0.0.2:9000  follower          3         120         0  yes\n\
             \x20    3  127.0.0.3:9000  learner           3          80        40  no\n\
             Answered by member 2; the leader is member 1.\n"
        );
        let leaderless = MasterGroup { leader: 0, ..g };
        let table = format_masters(&leaderless);
        assert!(!table.contains('*'), "{table}");
        assert!(table.ends_with("Answered by member 2; no leader is known.\n"), "{table}");
    }

    #[test]
    fn safe_mode_lines_follow_hdfs() {
        let mut s = SafeModeStatus {
            on: true,
            manual: false,
            reported_chunks: 3,
            total_chunks: 12,
            threshold: 0.999,
            message: "master is in safe mode: 3 of 12 chunks reported".into(),
        };
        assert_eq!(
            format_safe_mode(&s),
            "Safe mode is ON\nReported chunks: 3 of 12 (threshold 99.9%)\n\
             master is in safe mode: 3 of 12 chunks reported\n"
        );
        s.on = false;
        s.reported_chunks = 12;
        assert_eq!(
            format_safe_mode(&s),
            "Safe mode is OFF\nReported chunks: 12 of 12 (threshold 99.9%)\n"
        );
    }
}
