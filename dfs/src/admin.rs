//! Administration calls on the master's `gfs.v1.AdminProtocol` (`dfs admin ...`, like
//! `hdfs dfsadmin`): force a checkpoint, get or change safe mode, fetch the `metasave`
//! debugging dump, decommission or recommission a chunkserver, and start, stop or query
//! the balancer.
//!
//! All of them are idempotent, so they are retried only while the master is unreachable
//! ([`CallKind::Read`]), never because of safe mode: they are how one inspects or ends it.

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
            .call_admin(CallKind::Read, &DfsPath::root(), |mut m| async move {
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
        let action = match op {
            SafeModeOp::Get => SafeModeAction::Get,
            SafeModeOp::Enter => SafeModeAction::Enter,
            SafeModeOp::Leave => SafeModeAction::Leave,
        } as i32;
        let resp = self
            .call_admin(CallKind::Read, &DfsPath::root(), |mut m| async move {
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
            .call_admin(CallKind::Read, &DfsPath::root(), |mut m| {
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
        let req = gfs::BalanceRequest {
            threshold_pct: threshold_pct.unwrap_or(0.0),
            stop,
            query: threshold_pct.is_none() && !stop,
        };
        let r =
            self.call_admin(CallKind::Read, &DfsPath::root(), |mut m| async move {
                m.balance(req).await
            })
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
