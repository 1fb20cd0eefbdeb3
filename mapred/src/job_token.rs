//! Job tokens, as Hadoop's: each job gets a random secret at submit; its task attempts
//! receive it in their spec, and a reducer proves to a worker's shuffle service that it
//! belongs to the job by sending, with each fetch, an HMAC-SHA256 under that secret of
//! what it asks for. The worker keeps the secret of every job it runs attempts of (a
//! 0600 file in the job's directory, so it survives the worker's restart with the map
//! outputs beside it) and serves a map output only against a valid proof: another job's
//! reducers, or anyone on the network, get PERMISSION_DENIED.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::ids::{AttemptId, JobId};

/// Bytes of a job's secret.
const LEN: usize = 32;
/// File holding it in a worker's job directory.
pub const FILE: &str = "job-token";

/// A job's secret.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct JobToken([u8; LEN]);

impl fmt::Debug for JobToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JobToken(..)") // never print the secret
    }
}

impl JobToken {
    /// A fresh random secret.
    pub fn generate() -> JobToken {
        JobToken(rand::random())
    }

    /// Its hex form (how task specs carry it).
    pub fn to_hex(&self) -> String {
        security::token::hex::encode(&self.0)
    }

    /// Parses the hex form.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless it is 64 hex digits.
    pub fn from_hex(s: &str) -> Result<JobToken> {
        security::token::hex::decode(s)
            .map(JobToken)
            .ok_or_else(|| Error::InvalidArgument("malformed job token".into()))
    }

    fn mac(&self, attempt: AttemptId, partition: u32) -> Hmac<Sha256> {
        // HMAC takes keys of any length: this cannot fail.
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        m.update(b"fetch\0");
        m.update(attempt.to_string().as_bytes());
        m.update(&partition.to_be_bytes());
        m
    }

    /// The proof a reducer sends to fetch `partition` of `attempt`'s output.
    pub fn prove(&self, attempt: AttemptId, partition: u32) -> Vec<u8> {
        self.mac(attempt, partition).finalize().into_bytes().to_vec()
    }

    /// Whether `proof` is that proof (compared in constant time).
    pub fn verify(&self, attempt: AttemptId, partition: u32, proof: &[u8]) -> bool {
        self.mac(attempt, partition).verify_slice(proof).is_ok()
    }

    /// Stores it in `job_dir` (created if missing) unless it is there already.
    ///
    /// # Errors
    /// [`Error::Io`] if it can't be written.
    pub fn store(&self, job_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(job_dir)
            .map_err(Error::io(format!("cannot create {}", job_dir.display())))?;
        let path = job_dir.join(FILE);
        let opened =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
        match opened {
            Ok(mut f) => f
                .write_all(self.to_hex().as_bytes())
                .map_err(Error::io(format!("cannot write {}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::io(format!("cannot create {}", path.display()))(e)),
        }
    }

    /// The token stored for `job` under a worker's root, if any.
    pub fn load(job_dir: &Path) -> Option<JobToken> {
        let text = std::fs::read_to_string(job_dir.join(FILE)).ok()?;
        JobToken::from_hex(text.trim()).ok()
    }
}

/// File naming a job's user in a worker's job directory (token mode checks a reducer's
/// user token against it).
pub const OWNER_FILE: &str = "owner";

/// Records in `job_dir` (created if missing) that the job belongs to `user`, unless
/// recorded already: a job's owner never changes.
///
/// # Errors
/// [`Error::Io`] if it can't be written.
pub fn store_owner(job_dir: &Path, user: &str) -> Result<()> {
    std::fs::create_dir_all(job_dir)
        .map_err(Error::io(format!("cannot create {}", job_dir.display())))?;
    let path = job_dir.join(OWNER_FILE);
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(mut f) => f
            .write_all(user.as_bytes())
            .map_err(Error::io(format!("cannot write {}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(format!("cannot create {}", path.display()))(e)),
    }
}

/// The user recorded by [`store_owner`] in `job_dir`, if any.
pub fn owner(job_dir: &Path) -> Option<String> {
    std::fs::read_to_string(job_dir.join(OWNER_FILE)).ok()
}

/// Checks a fetch's proof for `attempt` of `job` against the token stored in
/// `job_dir`.
///
/// # Errors
/// [`Error::PermissionDenied`] without a stored token or with a wrong proof.
pub fn check_fetch(
    job_dir: &Path,
    job: JobId,
    attempt: AttemptId,
    partition: u32,
    proof: &[u8],
) -> Result<()> {
    match JobToken::load(job_dir) {
        Some(t) if t.verify(attempt, partition, proof) => Ok(()),
        _ => Err(Error::PermissionDenied(format!(
            "fetch of {attempt} partition {partition} without a valid token of {job}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(s: &str) -> AttemptId {
        AttemptId::parse(s).expect("attempt id")
    }

    #[test]
    fn a_proof_verifies_for_what_it_names_only() {
        let t = JobToken::generate();
        let a = attempt("attempt_1_0001_m_000003_0");
        let p = t.prove(a, 2);
        assert!(t.verify(a, 2, &p));
        assert!(!t.verify(a, 3, &p), "another partition");
        assert!(!t.verify(attempt("attempt_1_0001_m_000004_0"), 2, &p), "another map");
        assert!(!JobToken::generate().verify(a, 2, &p), "another job's token");
        assert!(!t.verify(a, 2, &[]));
        assert_eq!(JobToken::from_hex(&t.to_hex()).expect("hex"), t);
        assert!(JobToken::from_hex("zz").is_err());
        assert_eq!(format!("{t:?}"), "JobToken(..)");
    }

    #[test]
    fn the_stored_token_checks_fetches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let job = JobId::parse("job_1_0001").expect("job");
        let a = attempt("attempt_1_0001_m_000000_0");
        let t = JobToken::generate();
        assert!(check_fetch(dir.path(), job, a, 0, &t.prove(a, 0)).is_err(), "no token stored");
        t.store(dir.path()).expect("store");
        JobToken::generate().store(dir.path()).expect("a second store keeps the first");
        assert!(check_fetch(dir.path(), job, a, 0, &t.prove(a, 0)).is_ok());
        assert!(check_fetch(dir.path(), job, a, 0, b"forged").is_err());
        assert_eq!(owner(dir.path()), None);
        store_owner(dir.path(), "alice").expect("owner");
        store_owner(dir.path(), "bob").expect("a second store keeps the first");
        assert_eq!(owner(dir.path()).as_deref(), Some("alice"));
    }
}
