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
//! - [`Credentials`] is what a client sends, and [`Attach`] the interceptor that sends it
//!   (with, when asked, [`STALE_OK_HEADER`]: read calls a master group's follower may
//!   answer from its possibly stale state, as GFS's shadow masters did);
//! - [`token`]: the signed bearer tokens of token mode and the cluster secret;
//! - [`chunk_token`]: the master's signed capabilities for chunk data (HDFS block access
//!   tokens), which chunkservers verify on every read, write, copy and recovery;
//! - [`groups`]: a simple-mode caller's groups, resolved the same way by every server;
//! - [`connections`]: the cap on open connections and the idle timeout every server
//!   accepts under.

pub mod chunk_token;
pub mod connections;
pub mod groups;
pub mod tls;
pub mod token;

use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Metadata entry in which a simple-mode caller names its user.
pub const USER_HEADER: &str = "x-dfs-user";
/// Metadata entry carrying a token-mode caller's `Bearer <token>`.
pub const AUTHORIZATION_HEADER: &str = "authorization";
/// Longest user or group name accepted from a peer.
pub const MAX_NAME_LEN: usize = 256;
/// Metadata entry (`1`) by which a client lets a follower of a replicated master group
/// answer its lookups from possibly stale state (`dfs --stale-ok`); without it a follower
/// sends every call to the leader. It travels with the credentials because it is set
/// per client, like them, and the same interceptor puts it on every call.
pub const STALE_OK_HEADER: &str = "x-dfs-stale-ok";

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
    /// The token is not one this cluster signed, or not well formed.
    #[error("bad token: {0}; get a new one with `dfs auth token`")]
    BadToken(String),
    /// Token mode, and the request carries no token.
    #[error(
        "no token: this cluster runs in token mode; set DFS_TOKEN_FILE to a token from `dfs auth token`"
    )]
    NoToken,
    /// A user's token on a port only services may call.
    #[error("{0} is not a cluster service: this port takes service tokens only")]
    NotAService(String),
    /// The token file named by `DFS_TOKEN_FILE` (or a flag) can't be used.
    #[error("token file {path}: {why}")]
    TokenFile {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The token was genuine but has expired.
    #[error(
        "the token of {user} has expired; renew it with `dfs auth renew` or get a new one with `dfs auth token`"
    )]
    Expired {
        /// Whose it was.
        user: String,
    },
}

impl From<AuthError> for Status {
    /// Who the caller is is unknown (UNAUTHENTICATED), except a proven user on a
    /// service's port (PERMISSION_DENIED: known, not allowed).
    fn from(e: AuthError) -> Status {
        match e {
            AuthError::NotAService(_) => proto::reason::status(
                tonic::Code::PermissionDenied,
                e.to_string(),
                proto::reason::ErrorReason::PermissionDenied,
            ),
            _ => proto::reason::status(
                tonic::Code::Unauthenticated,
                e.to_string(),
                proto::reason::ErrorReason::Unauthenticated,
            ),
        }
    }
}

/// Refuses a request a user's token authenticated where only cluster services may call
/// (a worker's report on a port users also call). Passes in simple mode, where nothing
/// is proven.
///
/// # Errors
/// [`AuthError::NotAService`] naming the user.
pub fn require_service<T>(req: &Request<T>) -> Result<(), AuthError> {
    match req.extensions().get::<token::Claims>() {
        Some(c) if c.kind != token::Kind::Service => Err(AuthError::NotAService(c.user.clone())),
        _ => Ok(()),
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

/// Whether a request lets a follower answer it from possibly stale state
/// ([`STALE_OK_HEADER`] is `1`).
pub fn stale_ok(md: &MetadataMap) -> bool {
    md.get(STALE_OK_HEADER).is_some_and(|v| v.as_bytes() == b"1")
}

/// The user a client process acts as: `DFS_USER` if set, else [`os_user`].
pub fn local_user() -> String {
    std::env::var("DFS_USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(os_user)
}

/// The OS user this process runs as: the name of its effective uid in `/etc/passwd`,
/// else `USER` or `LOGNAME`, else the uid as a number. The master's default superuser,
/// and a client's default user: both read the uid first, so a master and a client run
/// by the same account agree even where `USER` is unset (containers, CI).
pub fn os_user() -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let from_passwd = std::fs::read_to_string("/etc/passwd").ok().and_then(|passwd| {
        passwd.lines().find_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let id: u32 = f.nth(1)?.parse().ok()?;
            (id == uid && check_name(name).is_ok()).then(|| name.to_owned())
        })
    });
    from_passwd
        .or_else(|| {
            ["USER", "LOGNAME"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|u| check_name(u).is_ok()))
        })
        .unwrap_or_else(|| uid.to_string())
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

    /// A client's credentials from its environment: the token in the file
    /// [`TOKEN_FILE_ENV`] names, if set, and `user` if given, else the user that token
    /// names, else [`local_user`].
    ///
    /// # Errors
    /// [`AuthError::TokenFile`] if the token file can't be read.
    pub fn from_env(user: Option<String>) -> Result<Credentials, AuthError> {
        let token = match std::env::var_os(TOKEN_FILE_ENV).filter(|p| !p.is_empty()) {
            Some(path) => Some(token::read_token_file(std::path::Path::new(&path))?),
            None => None,
        };
        let user = user
            .or_else(|| token.as_deref().and_then(token::peek).map(|c| c.user))
            .unwrap_or_else(local_user);
        Ok(Credentials { user, token })
    }

    /// The interceptor that attaches these credentials to every request.
    ///
    /// # Errors
    /// [`AuthError::BadName`] if the user or token can't be sent as metadata.
    pub fn attach(&self) -> Result<Attach, AuthError> {
        check_name(&self.user)?;
        let user = ascii(&self.user, "the user name")?;
        let token = match &self.token {
            Some(t) => Bearer::Fixed(ascii(&format!("Bearer {t}"), "the token")?),
            None => Bearer::None,
        };
        Ok(Attach { user, token, stale_ok: false })
    }
}

/// Environment variable naming the file that holds a client's token (token mode).
pub const TOKEN_FILE_ENV: &str = "DFS_TOKEN_FILE";

fn ascii(s: &str, what: &str) -> Result<AsciiMetadataValue, AuthError> {
    AsciiMetadataValue::try_from(s)
        .map_err(|_| AuthError::BadName(format!("{what} is not printable ASCII")))
}

/// A tonic interceptor adding a client's [`Credentials`] to each request.
#[derive(Debug, Clone)]
pub struct Attach {
    user: AsciiMetadataValue,
    token: Bearer,
    /// Send [`STALE_OK_HEADER`] too.
    stale_ok: bool,
}

#[derive(Debug, Clone)]
enum Bearer {
    None,
    Fixed(AsciiMetadataValue),
    Minted(std::sync::Arc<token::ServiceMinter>),
}

impl Attach {
    /// A cluster service's credentials: tokens minted by `minter`, kept fresh.
    ///
    /// # Errors
    /// [`AuthError::BadName`] for a service name that can't be sent.
    pub fn service(minter: std::sync::Arc<token::ServiceMinter>) -> Result<Attach, AuthError> {
        check_name(minter.name())?;
        Ok(Attach {
            user: ascii(minter.name(), "the service name")?,
            token: Bearer::Minted(minter),
            stale_ok: false,
        })
    }

    /// A service's credentials in token mode (`minter`), or simple-mode ones naming
    /// `name` without one.
    ///
    /// # Errors
    /// As [`Attach::service`].
    pub fn for_service(
        minter: Option<&std::sync::Arc<token::ServiceMinter>>,
        name: &str,
    ) -> Result<Attach, AuthError> {
        match minter {
            Some(m) => Attach::service(m.clone()),
            None => Credentials::simple(name).attach(),
        }
    }

    /// The same credentials, also letting a master group's follower answer
    /// ([`STALE_OK_HEADER`]): for lookups only, never for changes.
    pub fn with_stale_ok(self) -> Attach {
        Attach { stale_ok: true, ..self }
    }
}

impl Interceptor for Attach {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let md = req.metadata_mut();
        md.insert(USER_HEADER, self.user.clone());
        match &self.token {
            Bearer::None => {}
            Bearer::Fixed(t) => {
                md.insert(AUTHORIZATION_HEADER, t.clone());
            }
            Bearer::Minted(m) => {
                let t =
                    ascii(&format!("Bearer {}", m.token(proto::clock::wall_ms())), "the token")?;
                md.insert(AUTHORIZATION_HEADER, t);
            }
        }
        if self.stale_ok {
            md.insert(STALE_OK_HEADER, AsciiMetadataValue::from_static("1"));
        }
        Ok(req)
    }
}

/// The authentication flags every server takes.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct AuthArgs {
    /// How callers prove who they are: `simple` (they name themselves, trusted) or
    /// `token` (a token signed under the cluster secret on every call).
    #[arg(long, default_value_t = AuthMode::Simple)]
    pub auth: AuthMode,
    /// The cluster secret (mode 0600; token mode). `dfs auth secret FILE` creates one.
    #[arg(long)]
    pub secret_file: Option<std::path::PathBuf>,
}

/// A server's authentication as its flags configure it.
#[derive(Debug, Clone)]
pub struct ServerAuth {
    /// The mode.
    pub mode: AuthMode,
    /// The cluster secret (token mode).
    pub secret: Option<std::sync::Arc<token::Secret>>,
    /// This server's own service credentials (token mode).
    pub minter: Option<std::sync::Arc<token::ServiceMinter>>,
}

impl ServerAuth {
    /// Simple mode.
    pub fn simple() -> ServerAuth {
        ServerAuth { mode: AuthMode::Simple, secret: None, minter: None }
    }

    /// Token mode under `secret`; this server's service tokens name `service`.
    pub fn token(secret: std::sync::Arc<token::Secret>, service: &str) -> ServerAuth {
        let minter = std::sync::Arc::new(token::ServiceMinter::new(secret.clone(), service));
        ServerAuth { mode: AuthMode::Token, secret: Some(secret), minter: Some(minter) }
    }

    /// The interceptor checking callers (any principal).
    pub fn interceptor(&self) -> Authenticate {
        match &self.secret {
            Some(s) => Authenticate::token(s.clone()),
            None => Authenticate::simple(),
        }
    }

    /// The credentials this server attaches to its own calls as `service`.
    ///
    /// # Errors
    /// As [`Attach::service`].
    pub fn attach(&self, service: &str) -> Result<Attach, AuthError> {
        Attach::for_service(self.minter.as_ref(), service)
    }
}

impl AuthArgs {
    /// The authentication these flags configure; `service` names this server's own
    /// service tokens.
    ///
    /// # Errors
    /// A one-line message: token mode without `--secret-file`, or a secret file that
    /// can't be used.
    pub fn load(&self, service: &str) -> Result<ServerAuth, String> {
        match (self.auth, &self.secret_file) {
            (AuthMode::Simple, _) => Ok(ServerAuth::simple()),
            (AuthMode::Token, None) => {
                Err("--auth token needs --secret-file (create one with `dfs auth secret FILE`)"
                    .into())
            }
            (AuthMode::Token, Some(path)) => {
                let secret = token::Secret::load(path).map_err(|e| e.to_string())?;
                Ok(ServerAuth::token(std::sync::Arc::new(secret), service))
            }
        }
    }
}

/// How a server learns who calls it (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Callers name themselves ([`USER_HEADER`]); trusted, as Hadoop's simple auth.
    #[default]
    Simple,
    /// Callers prove who they are with a token signed under the cluster secret.
    Token,
}

impl std::str::FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> Result<AuthMode, String> {
        match s {
            "simple" => Ok(AuthMode::Simple),
            "token" => Ok(AuthMode::Token),
            other => Err(format!("unknown auth mode {other:?} (simple or token)")),
        }
    }
}

impl std::fmt::Display for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthMode::Simple => "simple",
            AuthMode::Token => "token",
        })
    }
}

/// A server-side interceptor: in token mode it checks each request's bearer token and
/// puts the [`Principal`] it names in the request's extensions (where [`caller`] finds
/// it; the user header is then ignored), refusing requests without a valid one; in
/// simple mode it lets requests through for [`caller`] to read their claim.
#[derive(Debug, Clone)]
pub struct Authenticate {
    secret: Option<std::sync::Arc<token::Secret>>,
    services_only: bool,
}

impl Authenticate {
    /// Simple mode: nothing checked here.
    pub fn simple() -> Authenticate {
        Authenticate { secret: None, services_only: false }
    }

    /// Token mode under `secret`.
    pub fn token(secret: std::sync::Arc<token::Secret>) -> Authenticate {
        Authenticate { secret: Some(secret), services_only: false }
    }

    /// The same, accepting only service tokens (chunkserver and worker ports).
    pub fn services_only(mut self) -> Authenticate {
        self.services_only = true;
        self
    }

    /// The principal a request's metadata proves, at `now_ms` (`None` in simple mode).
    ///
    /// # Errors
    /// [`AuthError`] saying what is missing or wrong.
    pub fn check(&self, md: &MetadataMap, now_ms: i64) -> Result<Option<token::Claims>, AuthError> {
        let Some(secret) = &self.secret else { return Ok(None) };
        let value = md.get(AUTHORIZATION_HEADER).ok_or(AuthError::NoToken)?;
        let text = value.to_str().map_err(|_| AuthError::BadToken("not ASCII".into()))?;
        let bearer = text.strip_prefix("Bearer ").ok_or(AuthError::NoToken)?;
        let claims = secret.verify(bearer, now_ms)?;
        if self.services_only && claims.kind != token::Kind::Service {
            return Err(AuthError::NotAService(claims.user));
        }
        Ok(Some(claims))
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(claims) = self.check(req.metadata(), proto::clock::wall_ms())? {
            req.extensions_mut().insert(claims.principal());
            req.extensions_mut().insert(claims);
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
        assert!(!stale_ok(req.metadata()), "only when asked");
        let mut stale = Credentials::simple("alice").attach().expect("attach").with_stale_ok();
        let req = stale.call(Request::new(())).expect("call");
        assert!(stale_ok(req.metadata()));
        assert_eq!(caller(&req), Ok(Principal::user("alice")), "the credentials still go");
        for bad in ["", "a b", "a:b", "a\nb", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_mode_takes_the_user_from_the_token_and_refuses_the_rest() {
        let secret = std::sync::Arc::new(token::Secret::generate());
        let now = proto::clock::wall_ms();
        let alice = secret.issue(token::Kind::User, "alice", &[], now, 60_000, 60_000);
        let creds = Credentials { user: "mallory".into(), token: Some(alice) };
        let sent = creds.attach().expect("attach").call(Request::new(())).expect("call");
        let mut auth = Authenticate::token(secret.clone());
        let req = auth.call(sent).expect("authenticated");
        assert_eq!(caller(&req).map(|p| p.user), Ok("alice".into()), "the claim is ignored");
        let bare = Credentials::simple("alice").attach().expect("attach").call(Request::new(()));
        let err = auth.call(bare.expect("call")).expect_err("no token");
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        let user = Credentials {
            user: "alice".into(),
            token: Some(secret.issue(token::Kind::User, "alice", &[], now, 60_000, 60_000)),
        };
        let sent = user.attach().expect("attach").call(Request::new(())).expect("call");
        let err = auth.clone().services_only().call(sent).expect_err("a user on a service port");
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn the_os_user_is_a_valid_name() {
        assert!(check_name(&os_user()).is_ok(), "{}", os_user());
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
