//! Who may do what to jobs, decided at the coordinator's edge.
//!
//! A job belongs to the user who submitted it: the caller the request proves (token
//! mode) or names (simple mode), never a name the request carries in a field. Its owner
//! and the coordinator's admins (`--admins`, an [`AccessList`], plus the user running the
//! coordinator) may see its details (tasks, attempts, counters, errors: Hadoop's
//! `VIEW_JOB`) and kill it (`MODIFY_JOB`); anyone may list every job's summary line, as
//! `mapred job -list` shows all jobs. Calls only cluster services make (a worker's
//! registration, heartbeats and reports) need a service token in token mode; the two a
//! reduce attempt makes (lost map outputs) take a service token or a token of the job's
//! own user, which is what an attempt holds: an attempt runs user code, and a service
//! token in its hands would let that code register as a worker and be sent other users'
//! tasks and tokens.
//!
//! In simple mode groups are resolved by the same mapping as the master's
//! ([`security::groups`]); in token mode they come with the token.

use std::fmt;

use security::Principal;
use security::groups::GroupMapping;
use security::token::{Claims, Kind};
use tonic::{Request, Status};

use crate::acl::AccessList;
use crate::error::Error;

/// What a caller wants to do with a job, named as Hadoop's job ACLs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOp {
    /// See its tasks, attempts, counters and errors.
    View,
    /// Kill it.
    Kill,
}

impl fmt::Display for JobOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobOp::View => "VIEW_JOB",
            JobOp::Kill => "KILL_JOB",
        })
    }
}

/// The coordinator's access rules: its admins and how it learns a caller's groups.
#[derive(Debug)]
pub struct JobAccess {
    admins: AccessList,
    mapping: Box<dyn GroupMapping>,
}

impl JobAccess {
    /// Rules with `admins` (the coordinator's own user included by the caller) and
    /// simple-mode groups from `mapping`.
    pub fn new(admins: AccessList, mapping: Box<dyn GroupMapping>) -> JobAccess {
        JobAccess { admins, mapping }
    }

    /// The caller of `req` with its groups: the token's (token mode) or the mapping's.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` for a request that names no acceptable user.
    pub fn caller<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        let mut p = security::caller(req)?;
        if p.groups.is_empty() {
            p.groups = self.mapping.groups(&p.user);
        }
        Ok(p)
    }

    /// Whether `p` may see and kill every job.
    pub fn is_admin(&self, p: &Principal) -> bool {
        self.admins.allows(p)
    }

    /// Whether `p` may do anything to a job of `owner`'s.
    pub fn may(&self, p: &Principal, owner: &str) -> bool {
        p.user == owner || self.is_admin(p)
    }

    /// Refuses `op` on job `job` (owned by `owner`) to anyone but its owner and admins.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]: `user=bob, access=KILL_JOB, job=job_1_0001 (owner alice)`.
    pub fn check(&self, p: &Principal, op: JobOp, job: &str, owner: &str) -> Result<(), Error> {
        if self.may(p, owner) {
            return Ok(());
        }
        Err(Error::PermissionDenied(format!(
            "user={}, access={op}, job={job} (owner {owner})",
            p.user
        )))
    }
}

/// Refuses a call about job `job` (owned by `owner`, `None` if unknown) unless it comes
/// from a cluster service or, in token mode, from a token of the job's own user (a
/// reduce attempt of it). Simple mode proves nothing and passes.
///
/// # Errors
/// [`Error::PermissionDenied`] for another user's token.
pub fn require_service_or_owner<T>(
    req: &Request<T>,
    job: &str,
    owner: Option<&str>,
) -> Result<(), Error> {
    match req.extensions().get::<Claims>() {
        Some(c) if c.kind == Kind::User && owner.is_some_and(|o| o != c.user) => {
            Err(Error::PermissionDenied(format!(
                "user={} is neither a cluster service nor the owner of {job}",
                c.user
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;
    impl GroupMapping for Fixed {
        fn groups(&self, user: &str) -> Vec<String> {
            if user == "carol" { vec!["ops".into()] } else { Vec::new() }
        }
    }

    fn access() -> JobAccess {
        let admins = AccessList::parse("dave ops").expect("acl").with_user("mapred");
        JobAccess::new(admins, Box::new(Fixed))
    }

    fn caller(access: &JobAccess, user: &str) -> Principal {
        let req = security::Credentials::simple(user).attach().expect("attach");
        let req = tonic::service::Interceptor::call(&mut { req }, Request::new(())).expect("req");
        access.caller(&req).expect("caller")
    }

    #[test]
    fn owners_and_admins_may_others_may_not() {
        let a = access();
        for who in ["alice", "dave", "carol", "mapred"] {
            let p = caller(&a, who);
            assert!(a.check(&p, JobOp::Kill, "job_1_0001", "alice").is_ok(), "{who}");
        }
        let bob = caller(&a, "bob");
        let err = a.check(&bob, JobOp::Kill, "job_1_0001", "alice").expect_err("bob");
        assert_eq!(
            err.to_string(),
            "permission denied: user=bob, access=KILL_JOB, job=job_1_0001 (owner alice)"
        );
        let status: Status = err.into();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(proto::reason::of(&status), proto::reason::ErrorReason::PermissionDenied);
    }

    #[test]
    fn attempts_calls_take_services_and_the_jobs_own_user() {
        let secret = security::token::Secret::generate();
        let now = proto::clock::wall_ms();
        let with = |kind, user: &str| {
            let claims = secret.verify(&secret.issue(kind, user, &[], now, 60_000, 60_000), now);
            let mut req = Request::new(());
            req.extensions_mut().insert(claims.expect("valid"));
            req
        };
        let job = "job_1_0001";
        assert!(
            require_service_or_owner(&with(Kind::Service, "worker"), job, Some("alice")).is_ok()
        );
        assert!(require_service_or_owner(&with(Kind::User, "alice"), job, Some("alice")).is_ok());
        let err = require_service_or_owner(&with(Kind::User, "bob"), job, Some("alice"));
        assert!(matches!(err, Err(Error::PermissionDenied(_))), "{err:?}");
        assert!(require_service_or_owner(&Request::new(()), job, Some("alice")).is_ok(), "simple");
    }
}
