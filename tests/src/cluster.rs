//! [`MiniCluster`]: a master and N chunkservers running as real processes on loopback
//! addresses (`127.0.0.1` for the master, `127.0.0.{i+1}` for `cs-i`), each with its own
//! data directory and log under one cluster directory:
//!
//! ```text
//! DIR/cluster.json      what was started (see crate::spec)
//! DIR/master/           master metadata         DIR/logs/master.log
//! DIR/cs-1/             chunkserver data        DIR/logs/cs-1.log
//! DIR/coordinator/      coordinator files       DIR/logs/coordinator.log   (MapReduce on)
//! DIR/w-1/              worker files            DIR/logs/w-1.log           (beside cs-1)
//! DIR/run/NAME.addr     bound address of each process (written by the process)
//! ```
//!
//! Tests start one with [`MiniCluster::start`] in a temporary directory and get every
//! process SIGKILLed when it is dropped. The `minicluster` binary starts one with
//! [`Lifetime::Detached`] and [`MiniCluster::detach`]es it so it outlives the command,
//! then finds it again with [`MiniCluster::attach`]. Processes are driven by name
//! (`master`, `cs-1`, ...): [`MiniCluster::kill`], [`MiniCluster::stop`],
//! [`MiniCluster::cont`], [`MiniCluster::restart`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use nix::sys::signal::Signal;
use proto::gfs::admin_protocol_client::AdminProtocolClient;
use proto::gfs::chunkserver_client::ChunkserverClient;
use proto::gfs::chunkserver_protocol_client::ChunkserverProtocolClient;
use proto::gfs::client_protocol_client::ClientProtocolClient;
use proto::gfs::{
    ChunkserverState, ClusterReportRequest, ClusterReportResponse, FsckRequest, FsckResponse,
    GetChunkLocationsRequest, LocatedChunk,
};
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use crate::command::{self, CmdOutput};
use crate::error::{Error, Result};
use crate::process::{self, ProcessState};
use crate::spec::{COORDINATOR, ClusterOptions, ClusterSpec, MASTER, ProcessSpec, Role, set_flag};
use crate::wait::{DEFAULT_POLL, wait_until};

/// How long a process may take to write its address file.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long chunkservers may take to register with the master.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);
/// Set to keep a test cluster's directory (and print where) instead of deleting it.
pub const KEEP_ENV: &str = "MINICLUSTER_KEEP";

/// Whether the cluster's processes may outlive the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Processes die with the harness: SIGKILLed on drop, and by the kernel if the thread
    /// that started them dies first (a test that panics or is killed).
    Scoped,
    /// Processes are killed on drop only until [`MiniCluster::detach`] is called, so a
    /// failed start-up cleans up after itself but a successful one keeps running.
    Detached,
}

/// A running mini cluster (see the module documentation).
#[derive(Debug)]
pub struct MiniCluster {
    spec: ClusterSpec,
    /// Processes this harness started, by name; reaped when they are killed or restarted.
    children: HashMap<String, Child>,
    lifetime: Lifetime,
    kill_on_drop: bool,
    /// The temporary directory of a test cluster, deleted on drop.
    temp: Option<TempDir>,
}

impl MiniCluster {
    /// Starts a scoped cluster in a new temporary directory and waits until every
    /// chunkserver has registered with the master.
    ///
    /// # Errors
    /// See [`MiniCluster::start_in`].
    pub async fn start(options: ClusterOptions) -> Result<MiniCluster> {
        let temp = tempfile::Builder::new()
            .prefix("minicluster-")
            .tempdir()
            .map_err(Error::io("cannot create a temporary directory"))?;
        let mut cluster = MiniCluster::start_in(temp.path(), options, Lifetime::Scoped).await?;
        cluster.temp = Some(temp);
        Ok(cluster)
    }

    /// Starts a cluster in `dir` (created if missing; existing data is reused) and waits
    /// until every chunkserver has registered with the master; writes `DIR/cluster.json`.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`], [`Error::BinaryNotFound`], [`Error::AlreadyRunning`] if
    /// `dir` holds a live cluster, [`Error::Exited`]/[`Error::NotListening`] if a process
    /// does not come up, [`Error::Timeout`] if the chunkservers do not all register.
    /// Whatever was started is killed before the error is returned.
    pub async fn start_in(
        dir: &Path,
        options: ClusterOptions,
        lifetime: Lifetime,
    ) -> Result<MiniCluster> {
        options.validate()?;
        let bin_dir = process::bin_dir()?;
        if options.mapreduce {
            process::check_mapreduce_binaries(&bin_dir)?;
        }
        std::fs::create_dir_all(dir)
            .map_err(Error::io(format!("cannot create {}", dir.display())))?;
        let dir =
            dir.canonicalize().map_err(Error::io(format!("cannot resolve {}", dir.display())))?;
        if let Ok(old) = ClusterSpec::load(&dir)
            && let Some(p) = old.processes().find(|p| process::probe(p) != ProcessState::Exited)
        {
            return Err(Error::AlreadyRunning { dir, pid: p.pid });
        }
        let spec = ClusterSpec::plan(dir, bin_dir, options);
        let mut cluster = MiniCluster {
            spec,
            children: HashMap::new(),
            lifetime,
            kill_on_drop: true,
            temp: None,
        };
        cluster.launch().await?;
        Ok(cluster)
    }

    /// Starts every process and waits for the cluster to be whole.
    async fn launch(&mut self) -> Result<()> {
        if self.spec.options.token_auth {
            self.create_secret()?;
        }
        let tls = crate::certs::TlsFiles::in_dir(&self.spec.dir);
        if self.spec.options.tls && !tls.exist() {
            // Every loopback address a process of this cluster may listen on.
            let last = self.spec.options.chunkservers + 2;
            let mut names = vec!["localhost".to_owned()];
            names.extend((1..=last).map(|i| format!("127.0.0.{i}")));
            names.extend((1..=self.spec.options.masters).map(|i| format!("127.0.1.{i}")));
            crate::certs::generate(&tls, &names)?;
        }
        let masters: Vec<String> = self.spec.masters().map(|m| m.name.clone()).collect();
        for name in &masters {
            self.spawn(name, None)?;
        }
        for name in &masters {
            self.await_listening(name).await?;
        }
        let master_addr = self.spec.master_addrs();
        for cs in &mut self.spec.chunkservers {
            if let Some(i) = cs.args.iter().position(|a| a == "--master") {
                cs.args[i + 1] = master_addr.clone();
            }
        }
        // Start the chunkservers together, then collect their addresses: start-up overlaps.
        let names: Vec<String> = self.spec.chunkservers.iter().map(|c| c.name.clone()).collect();
        for name in &names {
            self.spawn(name, None)?;
        }
        for name in &names {
            self.await_listening(name).await?;
        }
        self.spec.save()?;
        self.wait_for_live_chunkservers(names.len(), REGISTER_TIMEOUT).await?;
        if self.spec.coordinator.is_some() {
            self.launch_mapreduce(&master_addr).await?;
        }
        info!(dir = %self.spec.dir.display(), master = %master_addr, "mini cluster up");
        Ok(())
    }

    /// Starts the coordinator, then the workers, and waits until every worker registered.
    async fn launch_mapreduce(&mut self, master_addr: &str) -> Result<()> {
        if let Some(c) = self.spec.coordinator.as_mut() {
            set_flag(&mut c.args, "--master", master_addr);
        }
        self.spawn(COORDINATOR, None)?;
        self.await_listening(COORDINATOR).await?;
        let coordinator = self.coordinator_addr().unwrap_or_default().to_owned();
        for w in &mut self.spec.workers {
            set_flag(&mut w.args, "--master", master_addr);
            set_flag(&mut w.args, "--coordinator", &coordinator);
        }
        let names: Vec<String> = self.spec.workers.iter().map(|w| w.name.clone()).collect();
        for name in &names {
            self.spawn(name, None)?;
        }
        for name in &names {
            self.await_listening(name).await?;
        }
        self.spec.save()?;
        self.wait_for_workers(names.len(), REGISTER_TIMEOUT).await
    }

    /// The coordinator's `host:port` (what `MAPRED_COORDINATOR` is set to), if MapReduce
    /// is on.
    pub fn coordinator_addr(&self) -> Option<&str> {
        self.spec.coordinator.as_ref().map(|c| c.addr.as_str())
    }

    /// The workers, `w-1` first.
    pub fn workers(&self) -> &[ProcessSpec] {
        &self.spec.workers
    }

    /// A client of the coordinator.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] if MapReduce is off; [`Error::MapReduce`] if the
    /// coordinator does not answer.
    pub async fn job_client(&self) -> Result<mapred::client::JobClient> {
        let addr = self
            .coordinator_addr()
            .ok_or_else(|| Error::InvalidOptions("this cluster runs no coordinator".into()))?;
        let creds = self.credentials(&security::os_user());
        Ok(mapred::client::JobClient::connect_with(addr, &creds, self.client_tls().as_ref())
            .await?)
    }

    /// Waits until job `job` is no longer running, and returns its final status.
    ///
    /// # Errors
    /// [`Error::Timeout`] naming the job.
    pub async fn wait_job_end(
        &self,
        job: &str,
        timeout: Duration,
    ) -> Result<proto::mapred::JobStatus> {
        let what = format!("job {job} to end");
        crate::wait_for(&what, timeout, Duration::from_millis(200), || async {
            let s = self.job_client().await.ok()?.status(job).await.ok()?;
            (s.state != "running").then_some(s)
        })
        .await
    }

    /// Waits until the coordinator knows at least `n` workers.
    ///
    /// # Errors
    /// [`Error::Timeout`].
    pub async fn wait_for_workers(&self, n: usize, timeout: Duration) -> Result<()> {
        let what =
            format!("{n} workers to register (logs in {})", self.spec.dir.join("logs").display());
        wait_until(&what, timeout, DEFAULT_POLL, || async {
            match self.job_client().await {
                Ok(c) => c.workers().await.map(|w| w.len() >= n).unwrap_or(false),
                Err(_) => false,
            }
        })
        .await
    }

    /// A command running the binary `name` (`mapred`, `mapred-examples`) with
    /// `DFS_MASTER` and `MAPRED_COORDINATOR` set to this cluster's.
    pub fn mr_cmd(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.spec.bin_dir.join(name));
        cmd.env("DFS_MASTER", self.spec.master_addrs());
        self.with_token_env(&mut cmd, &security::os_user());
        if let Some(addr) = self.coordinator_addr() {
            cmd.env("MAPRED_COORDINATOR", addr);
        }
        cmd
    }

    /// Runs `name ARGS` (see [`MiniCluster::mr_cmd`]) to completion.
    ///
    /// # Panics
    /// If the binary cannot be executed at all.
    pub fn mr(&self, name: &str, args: &[&str]) -> CmdOutput {
        match command::run(self.mr_cmd(name), args, None) {
            Ok(out) => out,
            Err(e) => panic!("{e}"), // the test environment is broken, not the code under test
        }
    }

    /// Finds the cluster described by `DIR/cluster.json`. The returned harness never kills
    /// anything on drop; processes it restarts are detached.
    ///
    /// # Errors
    /// [`Error::Io`]/[`Error::Spec`] if `DIR/cluster.json` is missing or unreadable.
    pub fn attach(dir: &Path) -> Result<MiniCluster> {
        let spec = ClusterSpec::load(dir)?;
        Ok(MiniCluster {
            spec,
            children: HashMap::new(),
            lifetime: Lifetime::Detached,
            kill_on_drop: false,
            temp: None,
        })
    }

    /// Leaves the processes running when the harness is dropped, and returns what was
    /// started. Only meaningful for [`Lifetime::Detached`] clusters: scoped processes die
    /// with the thread that started them anyway.
    pub fn detach(mut self) -> ClusterSpec {
        self.kill_on_drop = false;
        // Dropping a `Child` neither kills nor waits for it.
        self.children.clear();
        self.spec.clone()
    }

    /// What was started: every process's address, pid, directories and command line.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }

    /// The master's `host:port` (of member 1 in a master group: see
    /// [`MiniCluster::master_addrs`]).
    pub fn master_addr(&self) -> &str {
        &self.spec.master.addr
    }

    /// Every master's `host:port`, comma-separated: what `DFS_MASTER` is set to.
    pub fn master_addrs(&self) -> String {
        self.spec.master_addrs()
    }

    /// The `host:port` of the master that leads (the only master, alone), asking the
    /// members until one names a leader.
    ///
    /// # Errors
    /// [`Error::Timeout`] if no member names a leader within 20 s.
    pub async fn leader_addr(&self) -> Result<String> {
        if self.spec.other_masters.is_empty() {
            return Ok(self.spec.master.addr.clone());
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            for m in self.spec.masters() {
                if let Some(addr) = self.leader_seen_by(&m.addr).await {
                    return Ok(addr);
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "a leader of the master group {} (logs in {})",
                        self.spec.master_addrs(),
                        self.spec.dir.join("logs").display()
                    ),
                    secs: 20,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader member `addr` knows of, asked with `x-dfs-stale-ok`.
    async fn leader_seen_by(&self, addr: &str) -> Option<String> {
        let channel =
            tokio::time::timeout(Duration::from_secs(1), self.endpoint(addr).ok()?.connect())
                .await
                .ok()?
                .ok()?;
        let attach = security::Credentials::simple(security::os_user()).attach().ok()?;
        let mut admin = AdminProtocolClient::with_interceptor(channel, attach);
        let mut req = tonic::Request::new(proto::gfs::MastersRequest {});
        req.metadata_mut()
            .insert("x-dfs-stale-ok", tonic::metadata::MetadataValue::from_static("1"));
        let resp =
            tokio::time::timeout(Duration::from_secs(1), admin.masters(req)).await.ok()?.ok()?;
        let r = resp.into_inner();
        r.members.iter().find(|m| m.id == r.leader && r.leader != 0).map(|m| m.addr.clone())
    }

    /// The process called `name` (`master`, `cs-1`, ...).
    ///
    /// # Errors
    /// [`Error::UnknownProcess`] if there is none.
    pub fn process(&self, name: &str) -> Result<&ProcessSpec> {
        self.spec.process(name)
    }

    /// The chunkserver called `name` (`cs-1`, ...).
    ///
    /// # Errors
    /// [`Error::UnknownProcess`] if there is no such chunkserver.
    pub fn chunkserver(&self, name: &str) -> Result<&ProcessSpec> {
        self.spec
            .chunkservers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::UnknownProcess(name.to_owned()))
    }

    /// The chunkservers, `cs-1` first.
    pub fn chunkservers(&self) -> &[ProcessSpec] {
        &self.spec.chunkservers
    }

    /// The chunkserver listening on `addr` (as the master reports replicas).
    pub fn chunkserver_by_addr(&self, addr: &str) -> Option<&ProcessSpec> {
        self.spec.chunkservers.iter().find(|c| c.addr == addr)
    }

    /// The name (`cs-2`) of the chunkserver listening on `addr`.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`] if none does.
    pub fn name_of(&self, addr: &str) -> Result<String> {
        self.chunkserver_by_addr(addr)
            .map(|c| c.name.clone())
            .ok_or_else(|| Error::UnknownProcess(addr.to_owned()))
    }

    /// Data directory of the process called `name`.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`] if there is none.
    pub fn data_dir(&self, name: &str) -> Result<PathBuf> {
        Ok(self.process(name)?.dir.clone())
    }

    /// The last `lines` lines of `name`'s log.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`] if there is none.
    pub fn log_tail(&self, name: &str, lines: usize) -> Result<String> {
        Ok(process::log_tail(&self.process(name)?.log, lines))
    }

    /// Path of the finalized replica of chunk `handle` on chunkserver `name`
    /// (`DIR/cs-i/finalized/<handle:016x>.data`), whether or not it exists.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`] if there is no such chunkserver.
    pub fn replica_path(&self, name: &str, handle: u64) -> Result<PathBuf> {
        Ok(self.chunkserver(name)?.dir.join("finalized").join(format!("{handle:016x}.data")))
    }

    /// The chunkservers holding a finalized replica of `handle` on disk, with its path.
    pub fn replicas_on_disk(&self, handle: u64) -> Vec<(String, PathBuf)> {
        self.spec
            .chunkservers
            .iter()
            .filter_map(|c| {
                let path = c.dir.join("finalized").join(format!("{handle:016x}.data"));
                path.is_file().then(|| (c.name.clone(), path))
            })
            .collect()
    }

    /// Whether `name` is running, stopped or gone (reaping it if it exited).
    ///
    /// # Errors
    /// [`Error::UnknownProcess`] if there is none.
    pub fn state(&mut self, name: &str) -> Result<ProcessState> {
        let spec = self.spec.process(name)?;
        if let Some(child) = self.children.get_mut(name)
            && let Ok(Some(_)) = child.try_wait()
        {
            self.children.remove(name);
            return Ok(ProcessState::Exited);
        }
        Ok(process::probe(spec))
    }

    /// SIGKILLs `name` and reaps it (a no-op if it is already gone).
    ///
    /// # Errors
    /// [`Error::UnknownProcess`], [`Error::Signal`].
    pub fn kill(&mut self, name: &str) -> Result<()> {
        let spec = self.spec.process(name)?;
        process::send_signal(spec, Signal::SIGKILL)?;
        if let Some(mut child) = self.children.remove(name) {
            // SIGKILL also ends a stopped process; wait() reaps it so no zombie is left.
            let _ = child.kill();
            let _ = child.wait();
        } else {
            process::wait_gone(spec, Duration::from_secs(10));
        }
        info!(process = name, "killed");
        Ok(())
    }

    /// Freezes `name` with SIGSTOP: it keeps its sockets but answers nothing.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`], [`Error::Signal`].
    pub fn stop(&mut self, name: &str) -> Result<()> {
        process::send_signal(self.spec.process(name)?, Signal::SIGSTOP)?;
        Ok(())
    }

    /// Resumes `name` after [`MiniCluster::stop`] with SIGCONT.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`], [`Error::Signal`].
    pub fn cont(&mut self, name: &str) -> Result<()> {
        process::send_signal(self.spec.process(name)?, Signal::SIGCONT)?;
        Ok(())
    }

    /// Starts `name` again with the same flags, data and (if it can get it) address,
    /// SIGKILLing it first if it is still running; waits until it listens and, if the
    /// master is up, until the master sees every running chunkserver live again.
    ///
    /// # Errors
    /// [`Error::Exited`]/[`Error::NotListening`] if it does not come up,
    /// [`Error::Timeout`] if it does not re-register.
    pub async fn restart(&mut self, name: &str) -> Result<()> {
        if self.state(name)? != ProcessState::Exited {
            self.kill(name)?;
        }
        let spec = self.spec.process(name)?.clone();
        let same_addr = spec.restart_args();
        // The old port is usually free at once (servers bind with SO_REUSEADDR), but another
        // test's port-0 bind may have taken it meanwhile: retry, then let a chunkserver take
        // any port (the master cannot: chunkservers are configured with its address).
        let mut attempts = vec![same_addr.clone(), same_addr.clone(), same_addr];
        if matches!(spec.role, Role::Chunkserver | Role::Worker) {
            attempts.push(spec.args_with_addr(&format!("{}:0", spec.host())));
        }
        let mut last_err = None;
        for args in attempts {
            self.spawn(name, Some(args))?;
            match self.await_listening(name).await {
                Ok(()) => {
                    last_err = None;
                    break;
                }
                // Only a taken port is worth another try; anything else (a log that
                // does not recover, a bad flag) fails the same way again.
                Err(e) if !e.is_address_in_use() => return Err(e),
                Err(e) => {
                    warn!(process = name, error = %e, "restart attempt failed");
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        if let Some(e) = last_err {
            return Err(e);
        }
        self.spec.save()?;
        info!(process = name, addr = %self.spec.process(name)?.addr, "restarted");
        if self.state(MASTER)? == ProcessState::Running {
            let running = self.running_chunkservers();
            self.wait_for_live_chunkservers(running, REGISTER_TIMEOUT).await?;
        }
        Ok(())
    }

    /// Number of chunkservers whose process is running (not stopped or gone).
    fn running_chunkservers(&mut self) -> usize {
        let names: Vec<String> = self.spec.chunkservers.iter().map(|c| c.name.clone()).collect();
        names.iter().filter(|n| matches!(self.state(n), Ok(ProcessState::Running))).count()
    }

    /// Stops every process gracefully: SIGTERM (and SIGCONT, so stopped ones see it), up
    /// to `grace` for them to exit, then SIGKILL. Returns the names that needed SIGKILL.
    ///
    /// # Errors
    /// [`Error::Signal`] if a signal cannot be sent.
    pub fn shutdown(&mut self, grace: Duration) -> Result<Vec<String>> {
        let specs: Vec<ProcessSpec> = self.spec.processes().cloned().collect();
        // Chunkservers first, so they do not spend the grace period retrying a gone master.
        for p in specs.iter().rev() {
            if process::send_signal(p, Signal::SIGTERM)? {
                process::send_signal(p, Signal::SIGCONT)?;
            }
        }
        let deadline = std::time::Instant::now() + grace;
        let mut forced = Vec::new();
        for p in specs.iter().rev() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let gone = match self.children.get_mut(&p.name) {
                Some(child) => wait_child(child, left),
                None => process::wait_gone(p, left),
            };
            if !gone {
                forced.push(p.name.clone());
            }
            self.kill(&p.name)?;
        }
        Ok(forced)
    }

    /// Creates the cluster secret of a token-mode cluster (kept if it exists: a cluster
    /// started again in its directory keeps its secret, and its tokens stay valid) and
    /// the superuser's token file.
    fn create_secret(&self) -> Result<()> {
        let path = crate::spec::secret_file(&self.spec.dir);
        if !path.exists() {
            security::token::Secret::generate()
                .create(&path)
                .map_err(|e| Error::InvalidOptions(e.to_string()))?;
        }
        self.token_file(&security::os_user()).map(|_| ())
    }

    /// A token for `user` signed with this cluster's secret (token mode), valid for a day.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] in simple mode or if the secret can't be read.
    pub fn token_for(&self, user: &str) -> Result<String> {
        if !self.spec.options.token_auth {
            return Err(Error::InvalidOptions("this cluster runs in simple mode".into()));
        }
        let secret = security::token::Secret::load(&crate::spec::secret_file(&self.spec.dir))
            .map_err(|e| Error::InvalidOptions(e.to_string()))?;
        let day = 24 * 3600 * 1000;
        let now = proto::clock::wall_ms();
        Ok(secret.issue(security::token::Kind::User, user, &[], now, day, 7 * day))
    }

    /// The file `DIR/tokens/USER.token` holding a token for `user` (token mode),
    /// created on first use; `None` in simple mode.
    ///
    /// # Errors
    /// As [`MiniCluster::token_for`]; [`Error::Io`] if the file can't be written.
    pub fn token_file(&self, user: &str) -> Result<Option<PathBuf>> {
        if !self.spec.options.token_auth {
            return Ok(None);
        }
        let dir = self.spec.dir.join("tokens");
        std::fs::create_dir_all(&dir)
            .map_err(Error::io(format!("cannot create {}", dir.display())))?;
        let path = dir.join(format!("{user}.token"));
        if !path.exists() {
            security::token::write_token_file(&path, &self.token_for(user)?)
                .map_err(|e| Error::InvalidOptions(e.to_string()))?;
        }
        Ok(Some(path))
    }

    /// The credentials a client acting as `user` sends here: the name (simple mode) or a
    /// token for it (token mode).
    ///
    /// # Panics
    /// If a token can't be minted: a broken test environment.
    fn credentials(&self, user: &str) -> security::Credentials {
        let token = self.spec.options.token_auth.then(|| match self.token_for(user) {
            Ok(t) => t,
            Err(e) => panic!("{e}"), // the test environment is broken
        });
        security::Credentials { user: user.to_owned(), token }
    }

    /// TLS to this cluster's servers (`None` without `--tls`).
    ///
    /// # Panics
    /// If the cluster's CA can't be read: a broken test environment.
    fn client_tls(&self) -> Option<tonic::transport::ClientTlsConfig> {
        self.spec.options.tls.then(|| {
            let ca = crate::certs::TlsFiles::in_dir(&self.spec.dir).ca;
            match security::tls::client_config(&ca) {
                Ok(c) => c,
                Err(e) => panic!("{e}"), // the test environment is broken
            }
        })
    }

    /// An endpoint for a server of this cluster (TLS with `--tls`).
    fn endpoint(&self, addr: &str) -> Result<Endpoint> {
        security::tls::endpoint_with(addr, self.client_tls().as_ref())
            .map_err(Error::InvalidOptions)
    }

    /// Sets `DFS_TOKEN_FILE` on `cmd` to the token file of `user` in token mode (and
    /// `DFS_TLS_CA` to the cluster's CA with `--tls`).
    fn with_token_env(&self, cmd: &mut Command, user: &str) {
        if self.spec.options.tls {
            cmd.env(security::tls::CA_ENV, crate::certs::TlsFiles::in_dir(&self.spec.dir).ca);
        }
        match self.token_file(user) {
            Ok(Some(path)) => {
                cmd.env(security::TOKEN_FILE_ENV, path);
            }
            Ok(None) => {}
            Err(e) => panic!("{e}"), // the test environment is broken
        }
    }

    /// A `dfs` command with `DFS_MASTER` set to this cluster's master (and in token mode
    /// `DFS_TOKEN_FILE` to the OS user's token: the superuser's).
    pub fn dfs_cmd(&self) -> Command {
        let mut cmd = Command::new(self.spec.bin_dir.join("dfs"));
        cmd.env("DFS_MASTER", self.spec.master_addrs());
        self.with_token_env(&mut cmd, &security::os_user());
        cmd
    }

    /// Runs `dfs ARGS` against this cluster to completion (stdin empty).
    ///
    /// # Panics
    /// If the `dfs` binary cannot be executed at all: a broken test environment, not a
    /// result to check.
    pub fn dfs(&self, args: &[&str]) -> CmdOutput {
        self.dfs_with_stdin(args, None)
    }

    /// Runs `dfs ARGS` against this cluster as `user` (`DFS_USER`), stdin empty.
    ///
    /// # Panics
    /// If the `dfs` binary cannot be executed at all.
    pub fn dfs_as(&self, user: &str, args: &[&str]) -> CmdOutput {
        let mut cmd = self.dfs_cmd();
        cmd.env("DFS_USER", user);
        self.with_token_env(&mut cmd, user);
        match command::run(cmd, args, None) {
            Ok(out) => out,
            Err(e) => panic!("{e}"), // the test environment is broken, not the code under test
        }
    }

    /// Runs `dfs ARGS` against this cluster, feeding it `stdin`.
    ///
    /// # Panics
    /// If the `dfs` binary cannot be executed at all.
    pub fn dfs_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> CmdOutput {
        match command::run(self.dfs_cmd(), args, stdin) {
            Ok(out) => out,
            Err(e) => panic!("{e}"), // the test environment is broken, not the code under test
        }
    }

    /// Path of a server binary (`master`, `chunkserver`, `dfs`) this cluster uses.
    pub fn binary(&self, name: &str) -> PathBuf {
        self.spec.bin_dir.join(name)
    }

    /// Asserts that `dfs cat REMOTE` succeeds and prints exactly `expected` (a test
    /// helper: panics naming the file otherwise, without dumping the bytes).
    ///
    /// # Panics
    /// If the command fails or its output differs.
    #[track_caller]
    pub fn assert_cat(&self, remote: &str, expected: &[u8]) {
        let out = self.dfs(&["cat", remote]);
        out.assert_ok();
        assert_eq!(out.stdout.len(), expected.len(), "length of {remote}");
        assert!(out.stdout == expected, "{remote}: different bytes");
    }

    /// A `dfs` client library handle connected to this cluster's master (default
    /// configuration: relative paths resolve against the user's home directory).
    ///
    /// # Errors
    /// [`Error::Client`] if the master cannot be reached.
    pub async fn client(&self) -> Result<dfs::Client> {
        self.client_as(&security::os_user()).await
    }

    /// A connection to the master's one port, which serves its three services.
    ///
    /// # Errors
    /// [`Error::Connect`] if the master does not accept the connection.
    async fn master_channel(&self) -> Result<Channel> {
        let addr = &self.leader_addr().await?;
        let refused = |source| Error::Connect { addr: addr.clone(), source };
        self.endpoint(addr)?.connect().await.map_err(refused)
    }

    /// A `dfs` client library handle acting as `user` (simple mode: the master takes
    /// the user the client names).
    ///
    /// # Errors
    /// [`Error::Client`] if the master cannot be reached.
    pub async fn client_as(&self, user: &str) -> Result<dfs::Client> {
        let cfg = dfs::ClientConfig {
            user: user.to_owned(),
            cwd: dfs::path::home_dir(user),
            token: self.credentials(user).token,
            tls: self.client_tls(),
            ..dfs::ClientConfig::default()
        };
        Ok(dfs::Client::connect(&self.spec.master_addrs(), cfg).await?)
    }

    /// A raw gRPC client of the master's client service (what `dfs` calls), naming the
    /// OS user (the master's superuser) in every call.
    ///
    /// # Errors
    /// [`Error::Connect`] if the master does not accept the connection.
    pub async fn master_client(&self) -> Result<ClientProtocolClient<dfs::client::MasterChannel>> {
        self.master_client_as(&security::os_user()).await
    }

    /// As [`MiniCluster::master_client`], naming `user`.
    ///
    /// # Errors
    /// [`Error::Connect`] if the master does not accept the connection.
    pub async fn master_client_as(
        &self,
        user: &str,
    ) -> Result<ClientProtocolClient<dfs::client::MasterChannel>> {
        let attach = attach(&self.credentials(user));
        Ok(ClientProtocolClient::with_interceptor(self.master_channel().await?, attach))
    }

    /// A raw gRPC client of the master's admin service (fsck, reports, safe mode), as
    /// the OS user (the master's superuser).
    ///
    /// # Errors
    /// [`Error::Connect`] if the master does not accept the connection.
    pub async fn admin_client(&self) -> Result<AdminProtocolClient<dfs::client::MasterChannel>> {
        let attach = attach(&self.credentials(&security::os_user()));
        Ok(AdminProtocolClient::with_interceptor(self.master_channel().await?, attach))
    }

    /// A raw gRPC client of the master's chunkserver service, to speak as a chunkserver.
    ///
    /// # Errors
    /// [`Error::Connect`] if the master does not accept the connection.
    pub async fn chunkserver_protocol_client(&self) -> Result<ChunkserverProtocolClient<Channel>> {
        Ok(ChunkserverProtocolClient::new(self.master_channel().await?))
    }

    /// A raw gRPC client of the chunkserver at `addr` (reads, writes, lease-recovery
    /// orders), to speak to it as a client, a peer or the master would.
    ///
    /// # Errors
    /// [`Error::Connect`] if the chunkserver does not accept the connection.
    pub async fn chunkserver_client(&self, addr: &str) -> Result<ChunkserverClient<Channel>> {
        let refused = |source| Error::Connect { addr: addr.to_owned(), source };
        let channel = self.endpoint(addr)?.connect().await.map_err(refused)?;
        Ok(ChunkserverClient::new(channel))
    }

    /// As [`MiniCluster::chunkserver_client`], sending the credentials of `user` (in
    /// token mode a valid token for it: an authenticated user overreaching).
    ///
    /// # Errors
    /// [`Error::Connect`] if the chunkserver does not accept the connection.
    pub async fn chunkserver_client_as(
        &self,
        addr: &str,
        user: &str,
    ) -> Result<ChunkserverClient<dfs::client::MasterChannel>> {
        let refused = |source| Error::Connect { addr: addr.to_owned(), source };
        let channel = self.endpoint(addr)?.connect().await.map_err(refused)?;
        Ok(ChunkserverClient::with_interceptor(channel, attach(&self.credentials(user))))
    }

    /// The master's cluster report (chunkservers, their state and space).
    ///
    /// # Errors
    /// [`Error::Connect`], [`Error::Rpc`].
    pub async fn cluster_report(&self) -> Result<ClusterReportResponse> {
        let mut master = self.admin_client().await?;
        master
            .cluster_report(ClusterReportRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|s| Error::Rpc { addr: self.spec.master.addr.clone(), status: Box::new(s) })
    }

    /// The master's fsck report of everything under `path`.
    ///
    /// # Errors
    /// [`Error::Connect`], [`Error::Rpc`].
    pub async fn fsck(&self, path: &str) -> Result<FsckResponse> {
        let mut master = self.admin_client().await?;
        let request = FsckRequest { path: path.to_owned(), include_open: true };
        master
            .fsck(request)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| Error::Rpc { addr: self.spec.master.addr.clone(), status: Box::new(s) })
    }

    /// The last chunk of the file being written at `path` and its pipeline's addresses,
    /// in order (fsck with open files).
    ///
    /// # Errors
    /// [`Error::Connect`], [`Error::Rpc`]; [`Error::NotWriting`] if `path` is not a file
    /// with a chunk being written.
    pub async fn writing_pipeline(&self, path: &str) -> Result<(u64, Vec<String>)> {
        let r = self.fsck("/").await?;
        let ch =
            r.files.iter().find(|f| f.path == path).and_then(|f| f.chunks.last()).ok_or_else(
                || Error::UnknownProcess(format!("no chunk being written to {path}")),
            )?;
        let addrs = ch.replicas.iter().filter_map(|r| r.server.as_ref()).map(|s| s.addr.clone());
        Ok((ch.handle, addrs.collect()))
    }

    /// Every chunk of the file at `path` with its readable replicas, as the master hands
    /// them to a reader (nearest first for a client on no chunkserver's host).
    ///
    /// # Errors
    /// [`Error::Connect`], [`Error::Rpc`].
    pub async fn locations(&self, path: &str) -> Result<Vec<LocatedChunk>> {
        let mut master = self.master_client().await?;
        let request = GetChunkLocationsRequest {
            path: path.to_owned(),
            offset: 0,
            length: 0,
            client_host: String::new(),
        };
        master
            .get_chunk_locations(request)
            .await
            .map(|r| r.into_inner().chunks)
            .map_err(|s| Error::Rpc { addr: self.spec.master.addr.clone(), status: Box::new(s) })
    }

    /// Waits until the master reports at least `n` live chunkservers.
    ///
    /// # Errors
    /// [`Error::Timeout`] naming the master's address and the logs directory.
    pub async fn wait_for_live_chunkservers(&self, n: usize, timeout: Duration) -> Result<()> {
        let what = format!(
            "{n} chunkservers to be live at the master {} (logs in {})",
            self.spec.master.addr,
            self.spec.dir.join("logs").display()
        );
        wait_until(&what, timeout, DEFAULT_POLL, || async {
            let live = LIVE;
            match self.cluster_report().await {
                Ok(r) => r.chunkservers.iter().filter(|c| c.state == live).count() >= n,
                Err(_) => false,
            }
        })
        .await
    }

    /// Spawns `name` with `args` (default: its recorded arguments) and records its pid.
    fn spawn(&mut self, name: &str, args: Option<Vec<String>>) -> Result<()> {
        let die_with_parent = self.lifetime == Lifetime::Scoped;
        let spec = self.spec.process_mut(name)?;
        if let Some(args) = args {
            spec.args = args;
        }
        let child = process::spawn(spec, &spec.args, die_with_parent)?;
        spec.pid = child.id();
        self.children.insert(name.to_owned(), child);
        Ok(())
    }

    /// Waits for `name`'s address file and records its address; kills it on failure.
    async fn await_listening(&mut self, name: &str) -> Result<()> {
        let spec = self.spec.process(name)?.clone();
        let Some(child) = self.children.get_mut(name) else {
            return Err(Error::UnknownProcess(name.to_owned()));
        };
        match process::wait_for_addr_file(&spec, child, LISTEN_TIMEOUT).await {
            Ok(addr) => {
                self.spec.process_mut(name)?.addr = addr;
                Ok(())
            }
            Err(e) => {
                if let Some(mut child) = self.children.remove(name) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                Err(e)
            }
        }
    }
}

/// The `state` value of a live chunkserver in a cluster report.
const LIVE: i32 = ChunkserverState::Live as i32;

impl Drop for MiniCluster {
    fn drop(&mut self) {
        if !self.kill_on_drop {
            return;
        }
        let keep = std::env::var_os(KEEP_ENV).is_some();
        if std::thread::panicking() {
            // A failing test's cluster directory is about to vanish: show what the servers said.
            for p in self.spec.processes() {
                eprintln!("---- last lines of {} ({}) ----", p.name, p.log.display());
                eprintln!("{}", process::log_tail(&p.log, 40));
            }
        }
        for (_, mut child) in self.children.drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if keep && let Some(temp) = self.temp.take() {
            eprintln!("minicluster: keeping {}", temp.keep().display());
        }
    }
}

/// Polls a child until it exits or `timeout` passes; returns whether it exited.
fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let start = std::time::Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The interceptor sending `creds` with every request.
///
/// # Panics
/// For a user name no request may carry: test code chose it.
fn attach(creds: &security::Credentials) -> security::Attach {
    match creds.attach() {
        Ok(a) => a,
        Err(e) => panic!("test user {:?}: {e}", creds.user), // faulty test
    }
}
