//! The connection to a cluster: a [`Client`] holds a channel to the master (one per
//! member of a replicated master group, [`crate::masters`]) and a cache of chunkserver
//! channels by address, and offers the namespace operations (`mkdir`, `stat`, `list`,
//! `rename`, `delete`, ...). Writing and reading files live in
//! [`writer`](crate::writer) and [`reader`](crate::reader).
//!
//! Every master call has a deadline ([`ClientConfig::rpc_timeout`]), so a dead or stopped
//! master gives [`Error::MasterUnreachable`] naming its address instead of a hang. Calls
//! go through [`Client::call_master`] (the master's `gfs.v1.ClientProtocol`) or
//! [`Client::call_admin`] (its `gfs.v1.AdminProtocol`, for fsck, reports and
//! [`crate::admin`]), which retry them across a master restart as [`crate::retry`]
//! describes, up to [`ClientConfig::master_retry_deadline`], and send them on to the
//! leader of a master group as [`crate::masters`] describes. Both services share one
//! connection to each master's one port, and every call on it names the client's user
//! ([`ClientConfig::user`], sent by [`security::Attach`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::gfs;
use proto::gfs::admin_protocol_client::AdminProtocolClient;
use proto::gfs::chunkserver_client::ChunkserverClient;
use proto::gfs::client_protocol_client::ClientProtocolClient;
use proto::path::DfsPath;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::fsck::FsckReport;
use crate::masters::{self, Failure, Masters, Members, Route, Services, Step};
use crate::path::{PathArg, home_dir};
use crate::report::ClusterReport;
use crate::retry::{self, Backoff, CallKind, Calls, WaitNotice};
use crate::status::{ContentSummary, FileStatus};

/// A channel on which every request carries the client's credentials (to the master and
/// to chunkservers).
pub type MasterChannel = InterceptedService<Channel, security::Attach>;

/// Largest gRPC message exchanged with a chunkserver (packets are ~1 MiB plus overhead).
const CHUNKSERVER_MAX_MESSAGE: usize = 16 << 20;
/// Largest HTTP/2 DATA frame accepted from a chunkserver: more than a read message
/// (~1 MiB), so each arrives whole in one frame. The HTTP/2 default (16 KiB) cut every
/// message into 64 frames, each a separate trip through h2 and tonic's decoder; a frame
/// smaller than a message also makes tonic copy the buffered part again when it grows its
/// buffer to the message's length.
const CHUNKSERVER_MAX_FRAME: u32 = 4 << 20;

/// Keepalive interval of write streams unless configured otherwise
/// ([`ClientConfig::keepalive_interval`]).
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// How a client identifies itself and tunes its transfers.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Name of this client as a writer (the holder of file leases).
    pub client_name: String,
    /// The user this client acts as, sent with every master call (`DFS_USER`, else the
    /// OS user: [`security::local_user`]); the master makes it the owner of what it
    /// creates and checks permissions against it.
    pub user: String,
    /// The bearer token sent with every call (token mode): `None` reads the file
    /// `DFS_TOKEN_FILE` names, if set, when connecting.
    pub token: Option<String>,
    /// TLS to the master and chunkservers (`None`: plain TCP); by default the process's
    /// setting (`DFS_TLS_CA`, see [`security::tls`]).
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// Mode bits taken away from new files (`0o666`) and directories (`0o777`), as
    /// HDFS's `fs.permissions.umask-mode` (`DFS_UMASK` in octal, else `0o022`).
    pub umask: u16,
    /// Host address this client runs on, for placement and locality; `None` lets the
    /// master use the connection's peer address.
    pub client_host: Option<String>,
    /// Working directory that relative paths resolve against.
    pub cwd: DfsPath,
    /// Bytes of data per write packet; rounded up to whole 64 KiB blocks.
    pub packet_size: usize,
    /// Unacknowledged bytes a writer keeps in flight per pipeline.
    pub write_window: usize,
    /// Bytes fetched by one read request.
    pub read_range: usize,
    /// Read requests in flight while streaming a whole file.
    pub read_prefetch: usize,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Deadline of each master call.
    pub rpc_timeout: Duration,
    /// Longest wait for the next message of a chunkserver read stream.
    pub io_timeout: Duration,
    /// How often a write stream sends a keepalive to its pipeline, so that a writer
    /// whose input pauses (a slow producer piping into `dfs put -`) is not taken for a
    /// dead one by the chunkservers' `--stream-idle-timeout-secs` (default 60 s). Keep it
    /// well below that; zero sends none.
    pub keepalive_interval: Duration,
    /// Longest wait for the next ack of a write pipeline before the first node is
    /// declared hung and the pipeline recovered without it. Keep it above the
    /// chunkservers' `--pipeline-timeout-ms` x 1.5, so a node hung further down the
    /// pipeline is named by its neighbour first.
    pub ack_timeout: Duration,
    /// How long master calls keep being retried while the master is unreachable or (for
    /// changes) in safe mode; zero = never retry.
    pub master_retry_deadline: Duration,
    /// Spacing of those retries.
    pub backoff: Backoff,
    /// Told once when the client starts waiting for the master; `None` logs a warning.
    pub on_master_wait: Option<WaitNotice>,
    /// Let a follower of a replicated master group answer lookups from its possibly
    /// stale state (`dfs --stale-ok`, as GFS's shadow masters did): reads go on while
    /// the group has no leader. Changes always go to the leader.
    pub stale_ok: bool,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        let user = security::local_user();
        ClientConfig {
            umask: std::env::var("DFS_UMASK")
                .ok()
                .and_then(|u| parse_umask(&u).ok())
                .unwrap_or(DEFAULT_UMASK),
            client_name: default_client_name(),
            cwd: home_dir(&user),
            user,
            token: None,
            tls: security::tls::default_client(),
            client_host: None,
            packet_size: 1 << 20,
            write_window: 16 << 20,
            read_range: 8 << 20,
            read_prefetch: 4,
            connect_timeout: Duration::from_secs(5),
            rpc_timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(60),
            // A third of the chunkservers' default idle timeout: two keepalives may be
            // late or lost before a stream is cut.
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            // Twice the chunkservers' default 30 s pipeline timeout: above the 45 s the
            // first of three nodes waits for a hung one below it, so that one is named
            // first, and a hung first node still costs at most a minute.
            ack_timeout: Duration::from_secs(60),
            master_retry_deadline: Duration::from_secs(60),
            backoff: Backoff::default(),
            on_master_wait: None,
            stale_ok: false,
        }
    }
}

/// The umask of a client that sets none.
pub const DEFAULT_UMASK: u16 = 0o022;

/// Parses an octal umask (`022`, `0027`).
///
/// # Errors
/// A message for anything but an octal number up to `777`.
pub fn parse_umask(s: &str) -> std::result::Result<u16, String> {
    u16::from_str_radix(s, 8)
        .ok()
        .filter(|u| *u <= 0o777)
        .ok_or_else(|| format!("umask {s:?} is not an octal number up to 777"))
}

/// `dfs-<host or pid>-<random>`: unique enough that two clients never share a lease.
fn default_client_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| std::process::id().to_string());
    format!("dfs-{host}-{:08x}", rand::random::<u32>())
}

/// Tells the user, once per client, that it is waiting for the master.
fn notice_wait(cfg: &ClientConfig, calls: &Calls, addr: &str, err: &Error) {
    if !calls.first_wait() {
        return;
    }
    let line = format!("waiting for master at {addr} ({})...", retry::wait_cause(err));
    match &cfg.on_master_wait {
        Some(notice) => (notice.0)(&line),
        None => tracing::warn!("{line}"),
    }
}

/// A connected client; cheap to clone (clones share channels).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The master (or each member of the master group), with this client's credentials.
    masters: Masters,
    cfg: ClientConfig,
    chunkservers: Mutex<HashMap<String, ChunkserverClient<MasterChannel>>>,
    /// The credentials sent on every call.
    attach: security::Attach,
    calls: Calls,
}

/// The endpoint of the master (or member) at `addr`, as `cfg` asks.
fn master_endpoint(addr: &str, cfg: &ClientConfig) -> Result<Endpoint> {
    Ok(security::tls::endpoint_with(addr, cfg.tls.as_ref())
        .map_err(|cause| Error::MasterUnreachable { addr: addr.to_owned(), cause })?
        .connect_timeout(cfg.connect_timeout)
        .timeout(cfg.rpc_timeout)
        .tcp_nodelay(true))
}

/// A failed connection to the master at `addr`, as [`Error::MasterUnreachable`].
fn unreachable(addr: &str, err: tonic::transport::Error) -> Error {
    let status = tonic::Status::from_error(Box::new(err));
    let cause = match Error::from_master_status(status, "", addr) {
        Error::MasterUnreachable { cause, .. } => cause,
        other => other.to_string(),
    };
    Error::MasterUnreachable { addr: addr.to_owned(), cause }
}

impl Client {
    /// Connects to the master at `master` (`host:port`), or to a replicated master group
    /// given as its members' comma-separated addresses (`m1:9000,m2:9000,m3:9000`):
    /// the first member that accepts a connection is called first, the others are
    /// connected to when a call needs them ([`crate::masters`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty list; [`Error::MasterUnreachable`] naming
    /// the last member tried if none accepts a connection before
    /// [`ClientConfig::master_retry_deadline`].
    pub async fn connect(master: &str, mut cfg: ClientConfig) -> Result<Client> {
        if cfg.token.is_none() {
            cfg.token = security::Credentials::from_env(Some(cfg.user.clone()))
                .map_err(|e| Error::InvalidArgument { message: e.to_string() })?
                .token;
        }
        cfg.packet_size = cfg.packet_size.max(1).next_multiple_of(proto::checksum::BLOCK_SIZE);
        cfg.read_range = cfg.read_range.max(proto::checksum::BLOCK_SIZE);
        cfg.read_prefetch = cfg.read_prefetch.max(1);
        let addrs = masters::parse_list(master)?;
        let endpoints =
            addrs.iter().map(|a| master_endpoint(a, &cfg)).collect::<Result<Vec<_>>>()?;
        let calls = Calls::new();
        let deadline = Instant::now() + cfg.master_retry_deadline;
        // Each member in turn, at once; a backoff step once all of them failed.
        let (mut attempt, mut round) = (0usize, 0u32);
        let (first, channel) = loop {
            let i = attempt % endpoints.len();
            let err = match endpoints[i].connect().await {
                Ok(channel) => break (i, channel),
                Err(e) => unreachable(&addrs[i], e),
            };
            attempt += 1;
            if attempt % endpoints.len() != 0 {
                continue;
            }
            let Some(delay) = cfg.backoff.wait_before(round, deadline, Instant::now()) else {
                return Err(err);
            };
            notice_wait(&cfg, &calls, &addrs[i], &err);
            tokio::time::sleep(delay).await;
            round = round.saturating_add(1);
        };
        let channels = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| if i == first { channel.clone() } else { e.connect_lazy() })
            .collect();
        Client::over(Arc::new(Members::new(addrs, channels, first)), cfg, calls)
    }

    /// A client over the channels of `members`, sending `cfg.user` (and `cfg.token`).
    fn over(members: Arc<Members>, cfg: ClientConfig, calls: Calls) -> Result<Client> {
        let attach = security::Credentials { user: cfg.user.clone(), token: cfg.token.clone() }
            .attach()
            .map_err(|e| Error::InvalidArgument { message: format!("user: {e}") })?;
        let masters = Masters::new(members, &attach, cfg.stale_ok);
        Ok(Client {
            inner: Arc::new(Inner {
                masters,
                cfg,
                chunkservers: Mutex::new(HashMap::new()),
                attach,
                calls,
            }),
        })
    }

    /// A client acting as `user` over this one's connection (a service doing a user's
    /// work in simple mode, as the MapReduce coordinator commits a job's output as the
    /// job's user). Its working directory is the user's home.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a user name that can't be sent.
    pub fn with_user(&self, user: &str) -> Result<Client> {
        let cfg = ClientConfig {
            user: user.to_owned(),
            cwd: home_dir(user),
            token: None,
            ..self.inner.cfg.clone()
        };
        Client::over(Arc::clone(self.inner.masters.members()), cfg, Calls::new())
    }

    /// A client acting with `token` (token mode) over this one's connection: as the user
    /// the token names, from that user's home.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for something that is not a token.
    pub fn with_token(&self, token: &str) -> Result<Client> {
        let claims = security::token::peek(token)
            .ok_or_else(|| Error::InvalidArgument { message: "not a token".to_owned() })?;
        let cfg = ClientConfig {
            cwd: home_dir(&claims.user),
            user: claims.user,
            token: Some(token.to_owned()),
            ..self.inner.cfg.clone()
        };
        Client::over(Arc::clone(self.inner.masters.members()), cfg, Calls::new())
    }

    /// Calls the master's client service with `call` (given a handle on it; called once
    /// per attempt), retrying failures that [`retry::is_retryable`] allows for `kind` with
    /// backoff until [`ClientConfig::master_retry_deadline`], on the member
    /// [`crate::masters`] picks; errors are mapped for `path`.
    ///
    /// # Errors
    /// The last attempt's error, mapped by [`Error::from_master_status`].
    pub(crate) async fn call_master<T, F, Fut>(
        &self,
        kind: CallKind,
        path: &DfsPath,
        call: F,
    ) -> Result<T>
    where
        F: FnMut(ClientProtocolClient<MasterChannel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.inner.cfg.master_retry_deadline;
        self.call_retrying(kind, path, deadline, |s| &s.master, call).await
    }

    /// As [`Client::call_master`], on the master's admin service.
    ///
    /// # Errors
    /// The last attempt's error, mapped by [`Error::from_master_status`].
    pub(crate) async fn call_admin<T, F, Fut>(
        &self,
        kind: CallKind,
        path: &DfsPath,
        call: F,
    ) -> Result<T>
    where
        F: FnMut(AdminProtocolClient<MasterChannel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.inner.cfg.master_retry_deadline;
        self.call_retrying(kind, path, deadline, |s| &s.admin, call).await
    }

    /// The retry loop of [`Client::call_master`] and [`Client::call_admin`], calling
    /// `call` with a clone of the service `pick` chooses (a cheap handle on the shared
    /// channel) on the member each attempt goes to. A deadline already past still lets
    /// the call find the leader of a group (no waiting, each member at most once or
    /// twice), but never waits a backoff step.
    async fn call_retrying<S, T, F, Fut>(
        &self,
        kind: CallKind,
        path: &DfsPath,
        deadline: Instant,
        pick: fn(&Services) -> &S,
        mut call: F,
    ) -> Result<T>
    where
        S: Clone,
        F: FnMut(S) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let cfg = &self.inner.cfg;
        let masters = &self.inner.masters;
        let mut route = Route::new(masters.len());
        let mut at = masters.current();
        let mut waits = 0;
        // The latest answer from a member that is up (and which one), which says more
        // about the group than a later "cannot reach" from another member that is down:
        // what a caller giving up is told. Of one member, the latest word is the news.
        let mut answered: Option<(usize, Error)> = None;
        loop {
            let status = match call(pick(masters.services(at, kind)).clone()).await {
                Ok(resp) => {
                    masters.set_current(at);
                    return Ok(resp.into_inner());
                }
                Err(status) => status,
            };
            let leader = proto::reason::leader_of(&status).and_then(|l| masters.position(&l));
            let err = Error::from_master_status(status, path.as_str(), masters.addr(at));
            if !retry::is_retryable(&err, kind) {
                return Err(err);
            }
            let failure = Failure::of(&err, leader);
            let next = match route.next(at, failure) {
                Step::Now(next) => {
                    tracing::debug!(from = masters.addr(at), to = masters.addr(next), error = %err, "trying another master");
                    next
                }
                Step::AfterBackoff(next) => {
                    let Some(delay) = cfg.backoff.wait_before(waits, deadline, Instant::now())
                    else {
                        return Err(match (failure, answered) {
                            (Failure::MemberDown, Some((from, up))) if from != at => up,
                            _ => err,
                        });
                    };
                    notice_wait(cfg, &self.inner.calls, masters.addr(at), &err);
                    tracing::debug!(attempt = waits, delay_ms = delay.as_millis() as u64, to = masters.addr(next), error = %err, "retrying a master call");
                    tokio::time::sleep(delay).await;
                    waits = waits.saturating_add(1);
                    next
                }
            };
            if failure != Failure::MemberDown {
                answered = Some((at, err));
            }
            masters.set_current(next);
            at = next;
        }
    }

    /// This client's retry-cache id and a new call number, for a non-idempotent call.
    pub(crate) fn call_id(&self) -> (String, u64) {
        (self.inner.calls.client_id.clone(), self.inner.calls.next_call())
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// The `host:port` of the master calls go to now (of a group: the member last known
    /// to lead, or the one tried last).
    pub fn master_addr(&self) -> String {
        let masters = &self.inner.masters;
        masters.addr(masters.current()).to_owned()
    }
    /// Resolves a path argument against the working directory.
    ///
    /// # Errors
    /// [`Error::InvalidPath`] if it is not a valid path.
    pub fn resolve(&self, path: impl PathArg) -> Result<DfsPath> {
        Ok(path.resolve_against(&self.inner.cfg.cwd)?)
    }

    /// The `client_host` field for requests ("" = let the master use the peer address).
    pub(crate) fn client_host(&self) -> String {
        self.inner.cfg.client_host.clone().unwrap_or_default()
    }

    /// A client for the chunkserver at `addr`, connecting lazily and reusing the channel.
    pub(crate) fn chunkserver(&self, addr: &str) -> Result<ChunkserverClient<MasterChannel>> {
        let mut cache = self.inner.chunkservers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = security::tls::endpoint_with(addr, self.inner.cfg.tls.as_ref())
            .map_err(|cause| Error::ChunkserverUnreachable { addr: addr.to_owned(), cause })?
            .connect_timeout(self.inner.cfg.connect_timeout)
            .tcp_nodelay(true)
            // Large windows so one connection can stream at memory speed over loopback.
            .initial_stream_window_size(16 << 20)
            .initial_connection_window_size(64 << 20)
            .max_frame_size(CHUNKSERVER_MAX_FRAME)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20));
        let client =
            ChunkserverClient::with_interceptor(endpoint.connect_lazy(), self.inner.attach.clone())
                .max_decoding_message_size(CHUNKSERVER_MAX_MESSAGE)
                .max_encoding_message_size(CHUNKSERVER_MAX_MESSAGE);
        cache.insert(addr.to_owned(), client.clone());
        Ok(client)
    }

    /// Creates a directory; with `parents`, missing parents too and no error if it exists.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], [`Error::NotFound`] (missing parent without `parents`),
    /// [`Error::NotADirectory`], or a transport error.
    pub async fn mkdir(&self, path: impl PathArg, parents: bool) -> Result<()> {
        let path = self.resolve(path)?;
        // mkdir -p is idempotent, plain mkdir is not: both carry a call id, which costs
        // nothing and keeps a retried plain mkdir from failing with "file exists".
        let (client_id, call_id) = self.call_id();
        let req = gfs::MkdirRequest {
            path: path.to_string(),
            parents,
            owner: self.inner.cfg.user.clone(),
            client_id,
            call_id,
            umask: Some(u32::from(self.inner.cfg.umask)),
        };
        self.call_master(CallKind::Mutation, &path, |mut m| {
            let req = req.clone();
            async move { m.mkdir(req).await }
        })
        .await?;
        Ok(())
    }

    /// Sets the permission bits of `path` (chmod; at most `0o1777`). Returns its status.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] unless the caller owns it or is a superuser,
    /// [`Error::NotFound`], or a transport error.
    pub async fn set_permission(&self, path: impl PathArg, permission: u16) -> Result<FileStatus> {
        let path = self.resolve(path)?;
        let req =
            gfs::SetPermissionRequest { path: path.to_string(), permission: u32::from(permission) };
        let resp = self
            .call_master(CallKind::Mutation, &path, |mut m| {
                let req = req.clone();
                async move { m.set_permission(req).await }
            })
            .await?;
        self.status_of(resp.status, &path)
    }

    /// Sets the owner and/or the group of `path` (chown, chgrp). Returns its status.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] (a new owner needs a superuser, a new group the owner
    /// in that group), [`Error::NotFound`], or a transport error.
    pub async fn set_owner(
        &self,
        path: impl PathArg,
        owner: Option<&str>,
        group: Option<&str>,
    ) -> Result<FileStatus> {
        let path = self.resolve(path)?;
        let req = gfs::SetOwnerRequest {
            path: path.to_string(),
            owner: owner.map(str::to_owned),
            group: group.map(str::to_owned),
        };
        let resp = self
            .call_master(CallKind::Mutation, &path, |mut m| {
                let req = req.clone();
                async move { m.set_owner(req).await }
            })
            .await?;
        self.status_of(resp.status, &path)
    }

    fn status_of(&self, status: Option<gfs::FileStatus>, path: &DfsPath) -> Result<FileStatus> {
        let status = status.ok_or_else(|| Error::Protocol {
            addr: self.master_addr(),
            message: format!("no status in the answer for {path}"),
        })?;
        Ok(FileStatus::try_from(status)?)
    }

    /// The status of a file or directory.
    ///
    /// # Errors
    /// [`Error::NotFound`] if nothing is at `path`.
    pub async fn stat(&self, path: impl PathArg) -> Result<FileStatus> {
        let path = self.resolve(path)?;
        let req = gfs::GetFileInfoRequest { path: path.to_string() };
        let resp = self
            .call_master(CallKind::Read, &path, |mut m| {
                let req = req.clone();
                async move { m.get_file_info(req).await }
            })
            .await?;
        let status = resp.status.ok_or_else(|| Error::Protocol {
            addr: self.master_addr(),
            message: format!("no status in the answer for {path}"),
        })?;
        Ok(FileStatus::try_from(status)?)
    }

    /// The status of `path`, or `None` if nothing is there.
    ///
    /// # Errors
    /// As [`Client::stat`], except that a missing path is `Ok(None)`.
    pub async fn try_stat(&self, path: impl PathArg) -> Result<Option<FileStatus>> {
        match self.stat(path).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The children of a directory sorted by name, or the file itself for a file.
    ///
    /// The master answers a big directory in pages of at most its `--ls-limit` entries;
    /// this asks for page after page, each after the last name of the one before (as
    /// HDFS's `listStatus` does with `startAfter`), and returns them all. A directory
    /// that changes meanwhile is listed as it was at some point of each page: an entry
    /// that existed throughout is listed once; one added or removed meanwhile may or may
    /// not be.
    ///
    /// # Errors
    /// [`Error::NotFound`] if nothing is at `path` (or it went away between pages);
    /// [`Error::Protocol`] if the master's pages do not move forward.
    pub async fn list(&self, path: impl PathArg) -> Result<Vec<FileStatus>> {
        let path = self.resolve(path)?;
        let mut entries: Vec<FileStatus> = Vec::new();
        let mut start_after = String::new();
        loop {
            let req = gfs::ListDirRequest { path: path.to_string(), start_after };
            let resp = self
                .call_master(CallKind::Read, &path, |mut m| {
                    let req = req.clone();
                    async move { m.list_dir(req).await }
                })
                .await?;
            let first = entries.len();
            for e in resp.entries {
                entries.push(FileStatus::try_from(e)?);
            }
            if resp.remaining == 0 {
                break;
            }
            // The next page starts after this one's last name. A page that names nothing
            // past the cursor yet says more remain would have us ask the same forever.
            let last = entries[first..].iter().map(|e| e.path.name()).max().map(str::to_owned);
            match last {
                Some(name) if name.as_str() > req.start_after.as_str() => start_after = name,
                _ => {
                    return Err(Error::Protocol {
                        addr: self.master_addr(),
                        message: format!(
                            "listing {path} after {:?}: a page that does not move on ({} more said to remain)",
                            req.start_after, resp.remaining
                        ),
                    });
                }
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// Renames `src` to `dst` (into `dst` when it is an existing directory); returns the
    /// new path of `src`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::AlreadyExists`] and the like, as the master says.
    pub async fn rename(&self, src: impl PathArg, dst: impl PathArg) -> Result<DfsPath> {
        let src = self.resolve(src)?;
        let dst = self.resolve(dst)?;
        let (client_id, call_id) = self.call_id();
        let req =
            gfs::RenameRequest { src: src.to_string(), dst: dst.to_string(), client_id, call_id };
        let resp = self
            .call_master(CallKind::Mutation, &src, |mut m| {
                let req = req.clone();
                async move { m.rename(req).await }
            })
            .await?;
        Ok(DfsPath::parse(&resp.new_path)?)
    }

    /// Deletes a file, or a directory (with its contents when `recursive`).
    ///
    /// # Errors
    /// [`Error::NotFound`], or [`Error::DirectoryNotEmpty`] without `recursive`.
    pub async fn delete(&self, path: impl PathArg, recursive: bool) -> Result<()> {
        let path = self.resolve(path)?;
        let (client_id, call_id) = self.call_id();
        let req = gfs::DeleteRequest { path: path.to_string(), recursive, client_id, call_id };
        self.call_master(CallKind::Mutation, &path, |mut m| {
            let req = req.clone();
            async move { m.delete(req).await }
        })
        .await?;
        Ok(())
    }

    /// Sets the replication factor of a file or of every file below a directory; returns
    /// the number of files changed.
    ///
    /// # Errors
    /// [`Error::NotFound`], or [`Error::InvalidArgument`] for a factor the master refuses.
    pub async fn set_replication(&self, path: impl PathArg, replication: u32) -> Result<u64> {
        let path = self.resolve(path)?;
        let req = gfs::SetReplicationRequest { path: path.to_string(), replication };
        let resp = self
            .call_master(CallKind::Mutation, &path, |mut m| {
                let req = req.clone();
                async move { m.set_replication(req).await }
            })
            .await?;
        Ok(resp.files)
    }

    /// Totals below `path`.
    ///
    /// # Errors
    /// [`Error::NotFound`] if nothing is at `path`.
    pub async fn content_summary(&self, path: impl PathArg) -> Result<ContentSummary> {
        let path = self.resolve(path)?;
        let req = gfs::GetContentSummaryRequest { path: path.to_string() };
        let resp = self
            .call_master(CallKind::Read, &path, |mut m| {
                let req = req.clone();
                async move { m.get_content_summary(req).await }
            })
            .await?;
        Ok(resp.into())
    }

    /// Checks every file below `path`: its chunks, their replicas and health.
    ///
    /// # Errors
    /// [`Error::NotFound`] if nothing is at `path`.
    pub async fn fsck(&self, path: impl PathArg, include_open: bool) -> Result<FsckReport> {
        let path = self.resolve(path)?;
        let req = gfs::FsckRequest { path: path.to_string(), include_open };
        let resp = self
            .call_admin(CallKind::Read, &path, |mut m| {
                let req = req.clone();
                async move { m.fsck(req).await }
            })
            .await?;
        Ok(FsckReport::from_proto(&path, resp))
    }

    /// Capacity, usage and state of every chunkserver the master knows.
    ///
    /// # Errors
    /// A transport error if the master cannot be reached.
    pub async fn cluster_report(&self) -> Result<ClusterReport> {
        let resp = self
            .call_admin(CallKind::Read, &DfsPath::root(), |mut m| async move {
                m.cluster_report(gfs::ClusterReportRequest {}).await
            })
            .await?;
        Ok(ClusterReport::from(resp))
    }

    /// Tells the master a replica failed its checksum on read (best effort by callers:
    /// sent to the leader of a group, but never waited for).
    ///
    /// # Errors
    /// A transport error if the master cannot be reached.
    pub async fn report_bad_replica(
        &self,
        handle: crate::ChunkHandle,
        chunkserver_id: &str,
        reason: &str,
    ) -> Result<()> {
        let req = gfs::ReportBadReplicaRequest {
            handle: handle.0,
            chunkserver_id: chunkserver_id.to_owned(),
            reason: reason.to_owned(),
        };
        // A deadline already past: no backoff, the reader has replicas left to try.
        let now = Instant::now();
        self.call_retrying(
            CallKind::Idempotent,
            &DfsPath::root(),
            now,
            |s| &s.master,
            |mut m| {
                let req = req.clone();
                async move { m.report_bad_replica(req).await }
            },
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_sane() {
        let cfg = ClientConfig::default();
        assert!(cfg.client_name.starts_with("dfs-"));
        assert_eq!(cfg.packet_size % proto::checksum::BLOCK_SIZE, 0);
        assert!(cfg.write_window >= cfg.packet_size);
        assert!(cfg.cwd.as_str().starts_with('/'));
    }

    #[tokio::test]
    async fn connecting_to_nothing_names_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let cfg = ClientConfig { master_retry_deadline: Duration::ZERO, ..ClientConfig::default() };
        let err = Client::connect(&addr, cfg).await.expect_err("no master");
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("cannot reach master at {addr}: ")), "{msg}");
        assert!(msg.contains("connection refused"), "{msg}");
    }
}
