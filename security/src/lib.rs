//! Who is calling. Every server of the cluster (master, chunkservers, coordinator,
//! workers) learns the caller of each RPC from this crate, and every client attaches its
//! credentials with it, so the rules live in one place:
//!
//! - a [`Principal`] is a user name and its groups, resolved once per call at the gRPC
//!   edge and handed to the logic below;
//! - on the wire a caller names itself in the [`USER_HEADER`] metadata entry (simple
//!   mode, as Hadoop's simple authentication: a claim, trusted) or proves who it is with
//!   a bearer token in [`AUTHORIZATION_HEADER`] (token mode);
//! - [`caller`] reads the principal of a request: one an authenticating interceptor
//!   placed in the request's extensions if there is one, else the simple-mode claim;
//! - [`Credentials`] is what a client sends, and [`Attach`] the interceptor that sends it;
//! - [`chunk_token`]: the master's signed capabilities for chunk data (HDFS block access
//!   tokens), which chunkservers verify on every read, write, copy and recovery.

pub mod chunk_token;

use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Metadata entry in which a simple-mode caller names its user.
pub const USER_HEADER: &str = "x-dfs-user";
/// Metadata entry carrying a token-mode caller's `Bearer <token>`.
pub const AUTHORIZATION_HEADER: &str = "authorization";
/// Longest user or group name accepted from a peer.
pub const MAX_NAME_LEN: usize = 256;

/// A caller: a user and the groups it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The user name.
    pub user: String,
    /// Its groups; the first is its primary group.
    pub groups: Vec<String>,
}

impl Principal {
    /// A principal named `user` with no groups (yet).
    pub fn user(user: impl Into<String>) -> Principal {
        Principal { user: user.into(), groups: Vec::new() }
    }

    /// Whether it belongs to `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Why a caller's identity was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request names no user and carries no token.
    #[error("the request names no user: set DFS_USER or pass --user")]
    Anonymous,
    /// The user name is not acceptable.
    #[error("bad user name: {0}")]
    BadName(String),
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Status {
        Status::unauthenticated(e.to_string())
    }
}

/// Checks a user or group name a peer sent: 1..=[`MAX_NAME_LEN`] bytes, no control
/// characters, no whitespace or `:` (which separate names in listings and tokens).
///
/// # Errors
/// [`AuthError::BadName`] saying why.
pub fn check_name(name: &str) -> Result<(), AuthError> {
    if name.is_empty() {
        return Err(AuthError::BadName("empty".to_owned()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(AuthError::BadName(format!(
            "{} bytes long, over the limit of {MAX_NAME_LEN}",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || c.is_whitespace() || *c == ':') {
        return Err(AuthError::BadName(format!(
            "{:?} holds {c:?}",
            name.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// The principal of a request: the one an authenticating interceptor placed in its
/// extensions, else the user its [`USER_HEADER`] claims (simple mode; groups are left
/// for the server to resolve).
///
/// # Errors
/// [`AuthError::Anonymous`] without either, [`AuthError::BadName`] for an unacceptable
/// claim.
pub fn caller<T>(req: &Request<T>) -> Result<Principal, AuthError> {
    if let Some(p) = req.extensions().get::<Principal>() {
        return Ok(p.clone());
    }
    claimed(req.metadata()).map(Principal::user)
}

/// The user a simple-mode request claims in [`USER_HEADER`].
///
/// # Errors
/// As [`caller`].
pub fn claimed(md: &MetadataMap) -> Result<String, AuthError> {
    let value = md.get(USER_HEADER).ok_or(AuthError::Anonymous)?;
    let user = value.to_str().map_err(|_| AuthError::BadName("not ASCII".to_owned()))?;
    check_name(user)?;
    Ok(user.to_owned())
}

/// The user this process runs as: `DFS_USER` if set, else the OS user (`USER`,
/// `LOGNAME`), else `dfs`.
pub fn local_user() -> String {
    ["DFS_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "dfs".to_owned())
}

/// What a client sends to say who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user it claims (simple mode) or that its token names.
    pub user: String,
    /// A bearer token (token mode), sent as is.
    pub token: Option<String>,
}

impl Credentials {
    /// Simple-mode credentials naming `user`.
    pub fn simple(user: impl Into<String>) -> Credentials {
        Credentials { user: user.into(), token: None }
    }

    /// The interceptor that attaches these credentials to every request.
    ///
    /// # Errors
    /// [`AuthError::BadName`] if the user or token can't be sent as metadata.
    pub fn attach(&self) -> Result<Attach, AuthError> {
        check_name(&self.user)?;
        let ascii = |s: &str, what: &str| {
            AsciiMetadataValue::try_from(s)
                .map_err(|_| AuthError::BadName(format!("{what} is not printable ASCII")))
        };
        let user = ascii(&self.user, "the user name")?;
        let token = match &self.token {
            Some(t) => Some(ascii(&format!("Bearer {t}"), "the token")?),
            None => None,
        };
        Ok(Attach { user, token })
    }
}

/// A tonic interceptor adding a client's [`Credentials`] to each request.
#[derive(Debug, Clone)]
pub struct Attach {
    user: AsciiMetadataValue,
    token: Option<AsciiMetadataValue>,
}

impl Interceptor for Attach {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let md = req.metadata_mut();
        md.insert(USER_HEADER, self.user.clone());
        if let Some(t) = &self.token {
            md.insert(AUTHORIZATION_HEADER, t.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_user_is_read_back_and_bad_names_are_refused() {
        let mut attach = Credentials::simple("alice").attach().expect("attach");
        let req = attach.call(Request::new(())).expect("call");
        assert_eq!(caller(&req), Ok(Principal::user("alice")));
        assert_eq!(caller(&Request::new(())), Err(AuthError::Anonymous));
        for bad in ["", "a b", "a:b", "a\nb", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_interceptors_principal_wins_over_the_claim() {
        let mut req =
            Credentials::simple("mallory").attach().expect("attach").call(Request::new(()));
        let req = req.as_mut().expect("call");
        let alice = Principal { user: "alice".into(), groups: vec!["staff".into()] };
        req.extensions_mut().insert(alice.clone());
        assert_eq!(caller(req), Ok(alice));
    }
}
