//! The gRPC edge of the master: three services, one per audience, as HDFS separates
//! them, so each can be authorized on its own:
//! - [`client`]: `gfs.v1.ClientProtocol`, what `dfs` clients and MapReduce call;
//! - [`chunkserver`]: `gfs.v1.ChunkserverProtocol`, registration, heartbeats, reports;
//! - [`admin`]: `gfs.v1.AdminProtocol`, fsck, reports, safe mode, checkpoints,
//!   decommissioning and the balancer.
//!
//! All three are served on the master's one port ([`crate::run`]) over one
//! [`Driver`]. Each translates requests into core [`Command`]s and [`Reply`]s back into
//! protos, and maps errors to status codes; none holds logic of its own: every change
//! goes through [`crate::core::Core::apply`], by the two helpers here.
//!
//! Every mutation follows one pattern ([`mutate`]): under the driver's lock, check the
//! log is writable, apply the command, and hand the record the core produced to the
//! journal; then, with the lock released, wait for the record to be durable before
//! answering. Nothing is acknowledged that a crash could lose.
//!
//! Non-idempotent mutations that carry a `client_id` and `call_id` go through the retry
//! cache ([`crate::retry_cache`]) first: a retried call gets its original answer, after
//! that original is durable, and the change is not applied again.
//!
//! Every client and admin call first learns its caller ([`Edge::caller`]: the principal
//! of the request, its groups resolved and cached by [`crate::identity`]); a request
//! without one is `UNAUTHENTICATED`. The caller travels in the command, and the core
//! checks its permissions ([`crate::permission`]). Namespace calls are written to the
//! audit log ([`crate::audit`]) once answered, off the lock.

mod admin;
mod chunkserver;
mod client;

pub use admin::AdminProtocolService;
pub use chunkserver::ChunkserverProtocolService;
pub use client::ClientProtocolService;

use std::net::IpAddr;
use std::sync::Arc;

use proto::path::DfsPath;
use tonic::{Code, Request, Status};
use tracing::debug;

use crate::audit::{AuditLog, Event};
use crate::command::{Command, Mutation, Reply};
use crate::core::Core;
use crate::driver::Driver;
use crate::error::Error;
use crate::identity::Identities;
use crate::oplog::{Durable, LoggedCall};
use crate::permission::{Caller, Symbolic};
use crate::retry_cache::{Cached, CallKey, Reply as CachedReply};

/// What a mutation did under the lock, still to be made durable.
enum Step<R> {
    /// A retried call: its cached answer, given once everything logged so far is durable.
    Cached(CachedReply, Durable),
    /// A new call: its answer and its record's durability.
    Applied(R, Durable),
}

/// What the client and admin services share at the edge: who is calling, and the audit
/// log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Edge {
    identities: Arc<Identities>,
    audit: AuditLog,
    issuer: Option<Arc<TokenIssuer>>,
}

/// What token mode's issuing and renewing need: the cluster secret and the lifetimes.
#[derive(Debug)]
pub struct TokenIssuer {
    /// The cluster secret.
    pub secret: Arc<security::token::Secret>,
    /// A token must be renewed within this.
    pub renew_interval: std::time::Duration,
    /// And can't be renewed past this after issue.
    pub max_lifetime: std::time::Duration,
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Edge {
    /// An edge resolving callers with `identities`, auditing to `audit`, and issuing
    /// tokens with `issuer` (token mode; `None` in simple mode).
    pub fn new(identities: Arc<Identities>, audit: AuditLog, issuer: Option<TokenIssuer>) -> Edge {
        Edge { identities, audit, issuer: issuer.map(Arc::new) }
    }

    fn issuer(&self, what: &str) -> Result<&TokenIssuer, Status> {
        self.issuer.as_deref().ok_or_else(|| {
            Error::Refused {
                path: what.to_owned(),
                reason: "this master runs in simple mode (--auth simple): it issues no tokens",
            }
            .into()
        })
    }

    /// Issues a token for `user` (superuser only, checked by the caller): in `groups`, or
    /// the groups the master maps the user to; renewable every `lifetime` (capped at the
    /// master's renew interval) up to the maximum lifetime.
    ///
    /// # Errors
    /// `FAILED_PRECONDITION` (reason `REFUSED`) in simple mode, `INVALID_ARGUMENT` for a
    /// bad name.
    pub fn issue_token(
        &self,
        user: &str,
        groups: Vec<String>,
        lifetime: Option<std::time::Duration>,
    ) -> Result<pb_token::TokenResponse, Status> {
        let issuer = self.issuer("issue token")?;
        security::check_name(user).map_err(|e| Error::InvalidArgument(format!("user: {e}")))?;
        if groups.len() > security::token::MAX_GROUPS {
            return Err(Error::InvalidArgument(format!(
                "{} groups, over the limit of {}",
                groups.len(),
                security::token::MAX_GROUPS
            ))
            .into());
        }
        for g in &groups {
            security::check_name(g).map_err(|e| Error::InvalidArgument(format!("group: {e}")))?;
        }
        let groups = if groups.is_empty() {
            self.identities.resolve(security::Principal::user(user)).groups.clone()
        } else {
            groups
        };
        let life = lifetime.map_or(issuer.renew_interval, |l| l.min(issuer.renew_interval));
        let now = proto::clock::wall_ms();
        let token = issuer.secret.issue(
            security::token::Kind::User,
            user,
            &groups,
            now,
            millis(life).max(1),
            millis(issuer.max_lifetime),
        );
        token_response(token)
    }

    /// Renews `token` for the caller, who must be the user it names or a superuser.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` for a token not valid now; `PERMISSION_DENIED` for another
    /// user's token; as [`Edge::issue_token`] in simple mode.
    pub fn renew_token(
        &self,
        caller: &Caller,
        token: &str,
    ) -> Result<pb_token::TokenResponse, Status> {
        let issuer = self.issuer("renew token")?;
        let now = proto::clock::wall_ms();
        let claims = issuer.secret.verify(token, now)?;
        if claims.user != caller.user && !caller.superuser {
            return Err(Error::PermissionDenied {
                path: "renew token".to_owned(),
                detail: format!("user={} may not renew a token of {}", caller.user, claims.user),
            }
            .into());
        }
        let renewed = issuer.secret.renew(token, now, millis(issuer.renew_interval))?;
        token_response(renewed)
    }

    /// The caller of `req`.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` for a request naming no acceptable user.
    pub fn caller<T>(&self, req: &Request<T>) -> Result<Arc<Caller>, Status> {
        self.identities.caller(req)
    }

    /// The caller of `req`, who must be a superuser (administration, as `hdfs dfsadmin`).
    ///
    /// # Errors
    /// As [`Edge::caller`]; `PERMISSION_DENIED` for anyone else.
    pub fn superuser<T>(&self, req: &Request<T>, what: &str) -> Result<Arc<Caller>, Status> {
        let caller = self.caller(req)?;
        if !caller.superuser {
            return Err(Error::PermissionDenied {
                path: what.to_owned(),
                detail: format!("user={} is not a superuser", caller.user),
            }
            .into());
        }
        Ok(caller)
    }

    /// Audits a call that ended with `res`: allowed if it succeeded, denied if a
    /// permission check refused it; other failures are not audited (HDFS).
    pub fn audit<T>(&self, call: &Audited<'_>, res: &Result<T, Status>, perm: Option<&str>) {
        let allowed = match res {
            Ok(_) => true,
            Err(s) if s.code() == Code::PermissionDenied => false,
            Err(_) => return,
        };
        self.audit.log(&Event {
            allowed,
            user: &call.caller.user,
            ip: call.ip,
            cmd: call.cmd,
            src: call.src,
            dst: call.dst,
            perm,
        });
    }
}

/// A call as the audit log names it.
#[derive(Debug)]
pub struct Audited<'a> {
    /// The caller.
    pub caller: &'a Caller,
    /// Its address.
    pub ip: Option<IpAddr>,
    /// HDFS's name of the call.
    pub cmd: &'static str,
    /// Its path.
    pub src: &'a str,
    /// Its second path (rename).
    pub dst: Option<&'a str>,
}

use proto::gfs as pb_token;

fn token_response(token: String) -> Result<pb_token::TokenResponse, Status> {
    let claims = security::token::peek(&token)
        .ok_or_else(|| Status::internal("a token just signed does not decode"))?;
    Ok(pb_token::TokenResponse { token, expires_ms: claims.expires_ms, max_ms: claims.max_ms })
}

/// `owner:group:rwxr-xr-x` of `path` now, as the audit log's `perm` field.
fn perm_of(core: &Core, path: &DfsPath) -> Option<String> {
    let ns = &core.ns;
    let inode = ns.inode(ns.lookup(path).ok()?);
    Some(format!("{}:{}:{}", ns.owner_of(inode), ns.group_of(inode), Symbolic(inode.permission)))
}

/// Whether the caller accepts a possibly stale answer from a follower of a master group
/// (`dfs --stale-ok`; see [`security::stale_ok`]).
pub(crate) fn stale_ok<T>(req: &tonic::Request<T>) -> bool {
    security::stale_ok(req.metadata())
}

fn path(s: &str) -> Result<DfsPath, Status> {
    DfsPath::parse(s).map_err(|e| Error::from(e).into())
}

/// The core answered something its call never answers: a bug, reported as one.
fn unexpected(reply: &Reply) -> Status {
    Status::internal(format!("the master answered {reply:?} to the wrong call"))
}

/// Applies a command that logs nothing (a chunkserver message, an admin call, a lease
/// renewal) and answers with `answer` built from its reply under the same lock.
fn command<R>(
    driver: &Driver,
    cmd: Command,
    answer: impl FnOnce(&Core, Reply) -> Result<R, Status>,
) -> Result<R, Status> {
    let mut m = driver.lock()?;
    let (out, _) = m.apply(cmd, driver.now());
    answer(&m.core, out.reply?)
}

/// Runs one client mutation: answers a retried call from the retry cache (once its
/// original is durable), otherwise checks the log is writable, applies the change,
/// logs its record with the call's cache entry and waits until it is durable.
async fn mutate<R>(
    driver: &Driver,
    call: Option<CallKey>,
    caller: Arc<Caller>,
    mutation: Mutation,
    answer: impl FnOnce(&Core, Reply) -> Result<R, Status>,
) -> Result<R, Status>
where
    R: prost::Message + Default,
{
    let step = step(driver, call, caller, mutation, answer)?;
    match step {
        Step::Cached(reply, durable) => {
            durable.wait().await?;
            match reply {
                CachedReply::Ok(bytes) => R::decode(bytes).map_err(|e| {
                    Status::internal(format!("retry cache holds an undecodable answer: {e}"))
                }),
                CachedReply::Err(refusal) => Err(refusal.into()),
            }
        }
        Step::Applied(resp, durable) => {
            durable.wait().await?;
            Ok(resp)
        }
    }
}

/// The part of [`mutate`] done under the lock.
fn step<R: prost::Message>(
    driver: &Driver,
    call: Option<CallKey>,
    caller: Arc<Caller>,
    mutation: Mutation,
    answer: impl FnOnce(&Core, Reply) -> Result<R, Status>,
) -> Result<Step<R>, Status> {
    let mut m = driver.lock()?;
    let now = driver.now();
    let t = now.wall_ms;
    if let Some(key) = &call
        && let Some(cached) = m.core.retry_cache.get(key, t)
    {
        let reply = cached.reply.clone();
        debug!(client = %key.client_id, call = key.call_id, txid = cached.txid, "answering a retried call from the retry cache");
        // The original may still be waiting for its sync: answer no earlier than it.
        return Ok(Step::Cached(reply, m.journal.barrier()));
    }
    m.journal.writable()?;
    let out = m.core.apply(Command::Mutate { caller, mutation }, now);
    let reply = match out.reply {
        Ok(reply) => reply,
        Err(e) => {
            let status = Status::from(e);
            if let Some(key) = call
                && let Some(reply) = CachedReply::refusal(&status)
            {
                m.core.retry_cache.insert(key, Cached { reply, txid: 0 }, t);
            }
            return Err(status);
        }
    };
    let resp = answer(&m.core, reply)?;
    let logged = call.map(|key| LoggedCall { key, reply: resp.encode_to_vec().into() });
    let entry = logged.as_ref().map(|l| (l.key.clone(), l.reply.clone()));
    // A client mutation makes exactly one record; the call's cache entry rides on it.
    let mut records = out.records.into_iter();
    let (Some(op), None) = (records.next(), records.next()) else {
        return Err(Status::internal("a mutation did not produce exactly one log record"));
    };
    let durable = m.journal.append_call(op, t, logged);
    if let Some((key, reply)) = entry {
        let txid = m.journal.last_txid();
        m.core.retry_cache.insert(key, Cached { reply: CachedReply::Ok(reply), txid }, t);
    }
    Ok(Step::Applied(resp, durable))
}
