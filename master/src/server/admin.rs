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

use super::{Edge, command, path, unexpected};
use crate::checkpoint::Checkpointer;
use crate::command::{BalanceAction, Command, Reply, SafeModeAction};
use crate::core::Core;
use crate::driver::Driver;
use crate::report;

/// How often `safemode wait` re-checks.
const SAFE_MODE_POLL: Duration = Duration::from_millis(100);

/// The `AdminProtocol` service over the driver, taking checkpoints on demand.
#[derive(Debug, Clone)]
pub struct AdminProtocolService {
    driver: Driver,
    checkpointer: Checkpointer,
    edge: Edge,
}

impl AdminProtocolService {
    /// A service over `driver`, taking checkpoints on demand with `checkpointer`,
    /// learning callers at `edge`.
    pub fn new(driver: Driver, checkpointer: Checkpointer, edge: Edge) -> AdminProtocolService {
        AdminProtocolService { driver, checkpointer, edge }
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
        let m = self.driver.lock()?;
        Ok(Response::new(report::cluster_report(&m.core, self.driver.now().mono)))
    }

    async fn checkpoint(
        &self,
        req: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        self.edge.superuser(&req, "checkpoint")?;
        let txid = self.checkpointer.checkpoint(self.driver.now().wall_ms).await?;
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
}
