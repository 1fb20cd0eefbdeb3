//! The client side of the coordinator API, as the `mapred` command line and job
//! binaries use it: [`JobClient`] (connect with a one-line error when the coordinator is
//! down, submit, status, list, kill) and the text forms of job status.

use std::time::Duration;

use proto::mapred as pb;
use proto::mapred::coordinator_client::CoordinatorClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::counters::Counters;
use crate::error::{Error, Result};

/// Environment variable holding the coordinator's address.
pub const COORDINATOR_ENV: &str = "MAPRED_COORDINATOR";

/// A channel on which every request carries its caller's credentials (the coordinator
/// authorizes each call by who makes it).
pub type CallerChannel = InterceptedService<Channel, security::Attach>;

/// A connection to the coordinator.
#[derive(Debug, Clone)]
pub struct JobClient {
    inner: CoordinatorClient<CallerChannel>,
    addr: String,
}

/// The innermost cause of an error, where transport errors keep the useful part.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

impl JobClient {
    /// Connects to the coordinator at `addr` (`host:port`) with the credentials of this
    /// process's environment ([`security::Credentials::from_env`]: the token in
    /// `DFS_TOKEN_FILE`, else the user `DFS_USER` or the OS names).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a token file that can't be used,
    /// [`Error::Unavailable`] naming the address if the coordinator does not answer.
    pub async fn connect(addr: &str) -> Result<JobClient> {
        let creds = security::Credentials::from_env(None)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        JobClient::connect_as(addr, &creds).await
    }

    /// Connects to the coordinator at `addr` sending `creds` with every call.
    ///
    /// # Errors
    /// As [`JobClient::connect`].
    pub async fn connect_as(addr: &str, creds: &security::Credentials) -> Result<JobClient> {
        JobClient::connect_with(addr, creds, security::tls::default_client().as_ref()).await
    }

    /// As [`JobClient::connect_as`], over `tls` (`None`: plain TCP) instead of the
    /// process's TLS setting.
    ///
    /// # Errors
    /// As [`JobClient::connect`].
    pub async fn connect_with(
        addr: &str,
        creds: &security::Credentials,
        tls: Option<&tonic::transport::ClientTlsConfig>,
    ) -> Result<JobClient> {
        let attach = creds.attach().map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let unavailable = |cause: String| Error::Unavailable {
            what: "coordinator",
            addr: addr.to_owned(),
            cause,
        };
        let endpoint = security::tls::endpoint_with(addr, tls)
            .map_err(unavailable)?
            .timeout(Duration::from_secs(60))
            .tcp_nodelay(true);
        let channel = endpoint.connect().await.map_err(|e| unavailable(root_cause(&e)))?;
        Ok(JobClient {
            inner: CoordinatorClient::with_interceptor(channel, attach),
            addr: addr.to_owned(),
        })
    }

    /// The coordinator's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn err(&self, s: tonic::Status) -> Error {
        Error::from_status("coordinator", &self.addr, s)
    }

    /// Submits a job.
    ///
    /// # Errors
    /// The coordinator's refusal (existing output, missing input, ...).
    pub async fn submit(&self, req: pb::SubmitJobRequest) -> Result<pb::SubmitJobResponse> {
        self.inner.clone().submit_job(req).await.map(|r| r.into_inner()).map_err(|s| self.err(s))
    }

    /// A job's status with its tasks.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown job, a `PERMISSION_DENIED` [`Error::Rpc`]
    /// unless the caller owns it or is an admin.
    pub async fn status(&self, job_id: &str) -> Result<pb::JobStatus> {
        let req = pb::GetJobRequest { job_id: job_id.to_owned() };
        self.inner.clone().get_job(req).await.map(|r| r.into_inner()).map_err(|s| self.err(s))
    }

    /// Running jobs (with `all`, finished ones too).
    ///
    /// # Errors
    /// Transport errors.
    pub async fn list(&self, all: bool) -> Result<Vec<pb::JobStatus>> {
        let req = pb::ListJobsRequest { all };
        self.inner
            .clone()
            .list_jobs(req)
            .await
            .map(|r| r.into_inner().jobs)
            .map_err(|s| self.err(s))
    }

    /// Kills a running job.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::FailedPrecondition`] if it is over, a
    /// `PERMISSION_DENIED` [`Error::Rpc`] unless the caller owns it or is an admin.
    pub async fn kill(&self, job_id: &str) -> Result<()> {
        let req = pb::KillJobRequest { job_id: job_id.to_owned() };
        self.inner.clone().kill_job(req).await.map(|_| ()).map_err(|s| self.err(s))
    }

    /// The registered workers.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn workers(&self) -> Result<Vec<pb::WorkerInfo>> {
        let req = pb::ListWorkersRequest {};
        self.inner
            .clone()
            .list_workers(req)
            .await
            .map(|r| r.into_inner().workers)
            .map_err(|s| self.err(s))
    }
}

/// The coordinator address from a flag or `MAPRED_COORDINATOR`.
///
/// # Errors
/// [`Error::InvalidArgument`] if neither is set.
pub fn coordinator_addr(flag: Option<String>) -> Result<String> {
    flag.or_else(|| std::env::var(COORDINATOR_ENV).ok()).filter(|a| !a.is_empty()).ok_or_else(
        || {
            Error::InvalidArgument(format!(
                "no coordinator address: use --coordinator or set {COORDINATOR_ENV}"
            ))
        },
    )
}

fn seconds(s: &pb::JobStatus) -> f64 {
    let end = if s.finish_ms > 0 { s.finish_ms } else { crate::coordinator::service::now_ms() };
    (end - s.submit_ms).max(0) as f64 / 1000.0
}

/// One line per job: id, state, user, name, progress, elapsed, output (shown only to
/// those who may see the job's details).
pub fn job_line(s: &pb::JobStatus) -> String {
    format!(
        "{:<26} {:<10} {:<10} {:<14} map {:>3}% reduce {:>3}%  {:>8.1} s  {}",
        s.job_id,
        s.state,
        s.user,
        s.name,
        percent(s.maps_done, s.maps),
        percent(s.reduces_done, s.reduces),
        seconds(s),
        s.output
    )
}

/// Percentage done (100 when there is nothing to do).
pub fn percent(done: u32, total: u32) -> u32 {
    (done * 100).checked_div(total).unwrap_or(100)
}

/// For a job that skipped records: `succeeded with N skipped records (listed in
/// OUT/_skipped)` (or the job's state in place of `succeeded`).
pub fn skipped_summary(s: &pb::JobStatus) -> Option<String> {
    let n = s.skipped_records;
    (n > 0).then(|| {
        let records = if n == 1 { "record" } else { "records" };
        let allowed = if n <= s.skip_allowed {
            format!("; mapred.skip.allowed={}", s.skip_allowed)
        } else {
            String::new()
        };
        format!(
            "{} with {n} skipped {records} (listed in {}/_skipped{allowed})",
            s.state,
            s.output.trim_end_matches('/')
        )
    })
}

/// Whether a succeeded job skipped more records than its `mapred.skip.allowed`: its
/// output is incomplete and the submitter should hear it from the exit code.
pub fn skipped_too_many(s: &pb::JobStatus) -> bool {
    s.state == "succeeded" && s.skipped_records > s.skip_allowed
}

/// A job's status in full: header, tasks and attempts, error.
pub fn describe(s: &pb::JobStatus) -> String {
    let mut out = format!(
        "job {} ({}) {}\n  output {}\n  maps {}/{}  reduces {}/{}  elapsed {:.1} s\n",
        s.job_id,
        s.name,
        s.state,
        s.output,
        s.maps_done,
        s.maps,
        s.reduces_done,
        s.reduces,
        seconds(s)
    );
    if let Some(summary) = skipped_summary(s) {
        out.push_str(&format!("  {summary}\n"));
    }
    if !s.error.is_empty() {
        let mut lines = s.error.lines();
        out.push_str(&format!("  error: {}\n", lines.next().unwrap_or_default()));
        for l in lines {
            out.push_str(&format!("    {l}\n"));
        }
    }
    for t in &s.tasks {
        out.push_str(&format!("  {} {}\n", t.task_id, t.state));
        for a in &t.attempts {
            let dur = if a.end_ms > 0 { (a.end_ms - a.start_ms) as f64 / 1000.0 } else { 0.0 };
            out.push_str(&format!(
                "    {} {}{} on {} {:.2} s {}{}\n",
                a.attempt_id,
                a.state,
                a.replay_of.map_or_else(String::new, |r| format!(" (replay of record {r})")),
                a.worker,
                dur,
                a.locality,
                if a.error.is_empty() {
                    String::new()
                } else {
                    format!(" error: {}", a.error.lines().next().unwrap_or_default())
                }
            ));
        }
    }
    out
}

/// A job's counters as text.
pub fn counters_text(s: &pb::JobStatus) -> String {
    Counters::from_proto(&s.counters).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_lines() {
        assert_eq!(percent(1, 4), 25);
        assert_eq!(percent(0, 0), 100);
        let s = pb::JobStatus {
            job_id: "job_1_0001".into(),
            name: "wordcount".into(),
            state: "running".into(),
            maps: 4,
            maps_done: 2,
            ..Default::default()
        };
        assert!(job_line(&s).contains("map  50% reduce 100%"), "{}", job_line(&s));
        assert!(describe(&s).starts_with("job job_1_0001 (wordcount) running"));
        assert_eq!(skipped_summary(&s), None);
    }

    #[test]
    fn skipped_records_are_summed_up_and_judged_against_the_allowance() {
        let mut s = pb::JobStatus {
            job_id: "job_1_0001".into(),
            state: "succeeded".into(),
            output: "/out/".into(),
            skipped_records: 3,
            ..Default::default()
        };
        let line = "succeeded with 3 skipped records (listed in /out/_skipped)";
        assert_eq!(skipped_summary(&s).as_deref(), Some(line));
        assert!(describe(&s).contains(line), "{}", describe(&s));
        assert!(skipped_too_many(&s));
        s.skip_allowed = 3;
        assert!(!skipped_too_many(&s));
        assert_eq!(
            skipped_summary(&s).as_deref(),
            Some(
                "succeeded with 3 skipped records (listed in /out/_skipped; mapred.skip.allowed=3)"
            )
        );
        s.skipped_records = 0;
        assert_eq!(skipped_summary(&s), None);
    }

    #[tokio::test]
    async fn a_missing_coordinator_is_one_line() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let e = JobClient::connect(&addr).await.unwrap_err().to_string();
        assert!(e.starts_with(&format!("cannot reach coordinator at {addr}: ")), "{e}");
        assert!(!e.contains('\n'));
    }
}
