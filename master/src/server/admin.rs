//! `gfs.v1.AdminProtocol`: what administrators call (`dfs fsck`, `dfs admin ...`, HDFS's
//! `hdfs fsck` and `hdfs dfsadmin`). Read-only reports (fsck, cluster report, metasave)
//! and operations on the cluster (safe mode, checkpoints, decommissioning, balancing).
//!
//! Every call needs a caller; the reports (fsck, cluster report, safe mode `get` and
//! `wait`, the balancer's status) are anyone's, everything that changes the cluster or
//! dumps its state is the superusers' (as `hdfs dfsadmin`).

use std::time::Duration;

use proto::gfs as pb;
use proto::gfs::admin_protocol_server::AdminProtocol;
use tonic::{Request, Response, Status};

use super::{Edge, command, path, stale_ok, unexpected};
use crate::checkpoint::Checkpointer;
use crate::command::{BalanceAction, Command, Reply, SafeModeAction};
use crate::core::Core;
use crate::driver::Driver;
use crate::raft::Group;
use crate::report;

/// How often `safemode wait` re-checks.
const SAFE_MODE_POLL: Duration = Duration::from_millis(100);

/// The `AdminProtocol` service over the driver, taking checkpoints on demand.
#[derive(Debug, Clone)]
pub struct AdminProtocolService {
    driver: Driver,
    checkpointer: Option<Checkpointer>,
    edge: Edge,
    /// The master group this master is a member of, if any.
    group: Option<Group>,
}

impl AdminProtocolService {
    /// A service over `driver`, taking checkpoints on demand with `checkpointer`,
    /// learning callers at `edge`.
    pub fn new(driver: Driver, checkpointer: Checkpointer, edge: Edge) -> AdminProtocolService {
        AdminProtocolService { driver, checkpointer: Some(checkpointer), edge, group: None }
    }

    /// The service of a member of a master group: checkpoints are the group's snapshots.
    pub fn for_group(driver: Driver, group: Group, edge: Edge) -> AdminProtocolService {
        AdminProtocolService { driver, checkpointer: None, edge, group: Some(group) }
    }

    fn masters_table(&self) -> Result<pb::MastersResponse, Status> {
        let Some(group) = &self.group else {
            return Ok(pb::MastersResponse::default());
        };
        let m = group.raft.metrics().borrow().clone();
        let me = group.id;
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let mut members = Vec::new();
        for (id, node) in membership.nodes() {
            let voter = voters.contains(id);
            let (role, term, applied, lag) = if *id == me {
                let role = match m.state {
                    openraft::ServerState::Leader => "leader",
                    openraft::ServerState::Candidate => "candidate",
                    openraft::ServerState::Learner => "learner",
                    _ => "follower",
                };
                let applied = m.last_applied.map_or(0, |l| l.index);
                (role, m.current_term, applied, last.saturating_sub(applied))
            } else {
                let matched = m.replication.as_ref().and_then(|r| r.get(id).copied());
                let role = if m.current_leader == Some(*id) {
                    "leader"
                } else if !voter {
                    "learner"
                } else {
                    "follower"
                };
                match matched {
                    // What the leader knows the member holds.
                    Some(Some(l)) => (role, m.current_term, l.index, last.saturating_sub(l.index)),
                    Some(None) => ("unreachable", 0, 0, last),
                    // Not the leader: it does not track the others.
                    None => (role, 0, 0, 0),
                }
            };
            members.push(pb::MasterMember {
                id: *id,
                addr: node.addr.clone(),
                role: role.to_owned(),
                term,
                applied,
                lag,
                voter,
            });
        }
        Ok(pb::MastersResponse { members, answered_by: me, leader: m.current_leader.unwrap_or(0) })
    }
}

fn safe_mode_status(st: &Core) -> pb::SafeModeResponse {
    let counts = st.reported_chunks();
    pb::SafeModeResponse {
        on: st.safemode.is_on(),
        manual: st.safemode.is_manual(),
        reported_chunks: counts.reported,
        total_chunks: counts.total,
        threshold: st.safemode.threshold(),
        message: st.safemode.message(counts),
    }
}

#[tonic::async_trait]
impl AdminProtocol for AdminProtocolService {
    async fn fsck(
        &self,
        req: Request<pb::FsckRequest>,
    ) -> Result<Response<pb::FsckResponse>, Status> {
        self.edge.caller(&req)?;
        self.driver.check_read(stale_ok(&req))?;
        let r = req.into_inner();
        let p = path(if r.path.is_empty() { "/" } else { &r.path })?;
        let m = self.driver.lock()?;
        Ok(Response::new(report::fsck(&m.core, &p, r.include_open, self.driver.now().mono)?))
    }

    async fn cluster_report(
        &self,
        req: Request<pb::ClusterReportRequest>,
    ) -> Result<Response<pb::ClusterReportResponse>, Status> {
        self.edge.caller(&req)?;
        self.driver.check_read(stale_ok(&req))?;
        let m = self.driver.lock()?;
        Ok(Response::new(report::cluster_report(&m.core, self.driver.now().mono)))
    }

    async fn checkpoint(
        &self,
        req: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        self.edge.superuser(&req, "checkpoint")?;
        if let Some(group) = &self.group {
            // A member's checkpoint is its Raft snapshot, built from the committed log.
            let txid = self.driver.lock()?.journal.replica().map_or(0, |r| r.applied_txid);
            group.raft.trigger().snapshot().await.map_err(|e| Status::internal(e.to_string()))?;
            return Ok(Response::new(pb::CheckpointResponse { txid }));
        }
        let Some(checkpointer) = &self.checkpointer else {
            return Err(Status::internal("no checkpointer"));
        };
        let txid = checkpointer.checkpoint(self.driver.now().wall_ms).await?;
        Ok(Response::new(pb::CheckpointResponse { txid }))
    }

    async fn safe_mode(
        &self,
        req: Request<pb::SafeModeRequest>,
    ) -> Result<Response<pb::SafeModeResponse>, Status> {
        use pb::SafeModeAction as A;
        let action = A::try_from(req.get_ref().action).map_err(|_| {
            Status::invalid_argument(format!("safe mode: unknown action {}", req.get_ref().action))
        })?;
        let action = match action {
            A::Unspecified | A::Get | A::Wait => SafeModeAction::Check,
            A::Enter => SafeModeAction::Enter,
            A::Leave => SafeModeAction::Leave,
        };
        if action == SafeModeAction::Check {
            self.edge.caller(&req)?;
        } else {
            self.edge.superuser(&req, "safemode")?;
            self.driver.check_leader()?;
        }
        loop {
            let status =
                command(&self.driver, Command::SafeMode(action), |st, _| Ok(safe_mode_status(st)))?;
            if !(status.on && req.get_ref().action == A::Wait as i32) {
                return Ok(Response::new(status));
            }
            // Reports arrive by RPC; re-checking a few times a second is plenty for an
            // administrator's wait, and the client's deadline bounds it.
            tokio::time::sleep(SAFE_MODE_POLL).await;
        }
    }

    async fn meta_save(
        &self,
        req: Request<pb::MetaSaveRequest>,
    ) -> Result<Response<pb::MetaSaveResponse>, Status> {
        self.edge.superuser(&req, "metasave")?;
        let now = self.driver.now();
        let m = self.driver.lock()?;
        let text = crate::metasave::meta_save(&m, now.mono, now.wall_ms);
        Ok(Response::new(pb::MetaSaveResponse { text }))
    }

    async fn decommission(
        &self,
        req: Request<pb::DecommissionRequest>,
    ) -> Result<Response<pb::DecommissionResponse>, Status> {
        self.edge.superuser(&req, "decommission")?;
        self.driver.check_leader()?;
        let r = req.into_inner();
        let cmd = Command::Decommission { who: r.addr, recommission: r.recommission };
        let resp = command(&self.driver, cmd, |st, reply| match reply {
            Reply::Decommission { server, state, left } => Ok(pb::DecommissionResponse {
                server: Some(report::server_info(st, server)),
                state: report::admin_state(state) as i32,
                chunks_to_copy: left,
            }),
            other => Err(unexpected(&other)),
        })?;
        Ok(Response::new(resp))
    }

    async fn issue_token(
        &self,
        req: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::TokenResponse>, Status> {
        self.edge.superuser(&req, "issue token")?;
        let r = req.into_inner();
        let lifetime = (r.lifetime_secs > 0).then(|| Duration::from_secs(r.lifetime_secs));
        Ok(Response::new(self.edge.issue_token(&r.user, r.groups, lifetime)?))
    }

    async fn balance(
        &self,
        req: Request<pb::BalanceRequest>,
    ) -> Result<Response<pb::BalanceResponse>, Status> {
        if req.get_ref().query {
            self.edge.caller(&req)?;
        } else {
            self.edge.superuser(&req, "balance")?;
            self.driver.check_leader()?;
        }
        let r = req.into_inner();
        let action = if r.stop {
            BalanceAction::Stop
        } else if r.query {
            BalanceAction::Query
        } else {
            BalanceAction::Start(r.threshold_pct)
        };
        let resp = command(&self.driver, Command::Balance(action), |st, _| {
            Ok(report::balancer_status(st))
        })?;
        Ok(Response::new(resp))
    }

    async fn masters(
        &self,
        req: Request<pb::MastersRequest>,
    ) -> Result<Response<pb::MastersResponse>, Status> {
        self.edge.caller(&req)?;
        // The leader knows every member's progress; any member answers a stale-ok caller
        // (with no leader, that is all there is to see).
        if self.group.is_some() {
            self.driver.check_read(stale_ok(&req))?;
        }
        Ok(Response::new(self.masters_table()?))
    }

    async fn change_masters(
        &self,
        req: Request<pb::ChangeMastersRequest>,
    ) -> Result<Response<pb::MastersResponse>, Status> {
        self.edge.superuser(&req, "change masters")?;
        let Some(group) = &self.group else {
            return Err(proto::reason::status(
                tonic::Code::FailedPrecondition,
                "this master is not a member of a master group (started without --peers)",
                proto::reason::ErrorReason::Refused,
            ));
        };
        self.driver.check_leader()?;
        let r = req.into_inner();
        if r.id == 0 {
            return Err(Status::invalid_argument("change masters: member ids start at 1"));
        }
        let ids = std::collections::BTreeSet::from([r.id]);
        let changed = if r.addr.is_empty() {
            group.raft.change_membership(openraft::ChangeMembers::RemoveVoters(ids), false).await
        } else {
            let node = openraft::BasicNode { addr: r.addr.clone() };
            // A learner first: it catches up (a snapshot, then the log) before it votes.
            group.raft.add_learner(r.id, node, true).await.map_err(crate::raft::change_error)?;
            group.raft.change_membership(openraft::ChangeMembers::AddVoterIds(ids), true).await
        };
        changed.map_err(crate::raft::change_error)?;
        Ok(Response::new(self.masters_table()?))
    }
}
