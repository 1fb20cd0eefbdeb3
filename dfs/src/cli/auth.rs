//! `dfs auth`: the cluster secret and the tokens of token mode.
//!
//! - `secret FILE [--rotate]` creates the cluster secret (mode 0600), or puts a fresh
//!   signing key first in an existing one (old keys keep verifying until removed);
//! - `token` prints a token for the user `--user` names: issued by the master to a
//!   superuser, or, with `--secret-file`, signed here by whoever can read the secret
//!   (the first token of a new cluster);
//! - `renew` extends the token in `DFS_TOKEN_FILE` (or `--token-file`) in place;
//! - `show` prints what the current token says (unverified: the client's own view).
//!
//! `secret`, `show` and `token --secret-file` need no master.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use security::token::{self, Kind, Secret};

use super::{Ctx, out};

/// `dfs auth` commands.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Create a cluster secret file (mode 0600), or with --rotate add a new signing key
    /// in front of an existing one's keys.
    Secret {
        /// The file.
        file: PathBuf,
        /// Rotate the keys of an existing secret file.
        #[arg(long)]
        rotate: bool,
    },
    /// Print a token for the user given with --user (default: yourself): issued by the
    /// master (superuser only) or signed with --secret-file.
    Token {
        /// The user's groups, comma-separated (default: the master's group mapping).
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Seconds until the token must be renewed (default: the master's
        /// --token-renew-interval-secs; with --secret-file, one day).
        #[arg(long)]
        lifetime_secs: Option<u64>,
        /// Sign here with the cluster secret instead of asking the master.
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
    /// Renew the token in DFS_TOKEN_FILE (or --token-file), rewriting the file.
    Renew {
        /// The token file (default: DFS_TOKEN_FILE).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Print what the token in DFS_TOKEN_FILE says (user, groups, expiry).
    Show,
}

/// Lifetime of a token signed with `--secret-file` (HDFS's default renew interval).
const LOCAL_LIFETIME_SECS: u64 = 24 * 3600;
/// Its maximum lifetime (HDFS's default: 7 days).
const LOCAL_MAX_SECS: u64 = 7 * 24 * 3600;

/// Runs a command that needs no master (`user` is the global --user); `None` for one
/// that does ([`remote`]).
pub(super) fn local(cmd: &AuthCommand, user: Option<&str>) -> Option<Result<(), String>> {
    Some(match cmd {
        AuthCommand::Secret { file, rotate: false } => Secret::generate()
            .create(file)
            .map_err(|e| e.to_string())
            .and_then(|()| print(&format!("created cluster secret {}\n", file.display()))),
        AuthCommand::Secret { file, rotate: true } => rotate(file),
        AuthCommand::Token { groups, lifetime_secs, secret_file: Some(path) } => {
            local_token(path, groups, *lifetime_secs, user)
        }
        AuthCommand::Show => show(),
        AuthCommand::Token { secret_file: None, .. } | AuthCommand::Renew { .. } => return None,
    })
}

/// A token for `user` signed here with the secret at `path` (a new cluster's first).
fn local_token(
    path: &Path,
    groups: &[String],
    lifetime_secs: Option<u64>,
    user: Option<&str>,
) -> Result<(), String> {
    let secret = Secret::load(path).map_err(|e| e.to_string())?;
    let user = user.map_or_else(security::local_user, str::to_owned);
    security::check_name(&user).map_err(|e| format!("--user: {e}"))?;
    for g in groups {
        security::check_name(g).map_err(|e| format!("--groups: {e}"))?;
    }
    let life = lifetime_secs.unwrap_or(LOCAL_LIFETIME_SECS).max(1);
    let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let now = proto::clock::wall_ms();
    let t = secret.issue(Kind::User, &user, groups, now, ms(life), ms(LOCAL_MAX_SECS.max(life)));
    print(&format!("{t}\n"))
}

fn print(text: &str) -> Result<(), String> {
    out(text).map_err(|e| e.to_string())
}

/// Puts a fresh key first: tokens signed from now on use it; old ones still verify.
fn rotate(file: &Path) -> Result<(), String> {
    let rotated = Secret::load(file).map_err(|e| e.to_string())?.rotated();
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = file.with_file_name(format!(".{name}.rotating"));
    let _ = std::fs::remove_file(&tmp);
    rotated.create(&tmp).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, file).map_err(|e| format!("{}: {e}", file.display()))?;
    print(&format!(
        "rotated {}: a new key signs from now on; restart or signal the servers to load it\n",
        file.display()
    ))
}

fn show() -> Result<(), String> {
    let Some(path) = std::env::var_os(security::TOKEN_FILE_ENV).filter(|p| !p.is_empty()) else {
        return print(&format!(
            "no token (DFS_TOKEN_FILE unset): simple mode as user {}\n",
            security::local_user()
        ));
    };
    let t = token::read_token_file(Path::new(&path)).map_err(|e| e.to_string())?;
    let c = token::peek(&t).ok_or("not a token")?;
    print(&format!(
        "user: {}\ngroups: {}\nkind: {:?}\nexpires: {}\nrenewable until: {}\n",
        c.user,
        c.groups.join(","),
        c.kind,
        super::ls::format_time(c.expires_ms),
        super::ls::format_time(c.max_ms),
    ))
}

/// Runs a command that needs the master.
pub(super) async fn remote(ctx: &mut Ctx, cmd: &AuthCommand, user: Option<&str>) {
    match cmd {
        AuthCommand::Token { groups, lifetime_secs, secret_file: None } => {
            let user = user.map_or_else(security::local_user, str::to_owned);
            match ctx.client.issue_token(&user, groups, lifetime_secs.unwrap_or(0)).await {
                Ok(t) => ctx.note(out(&format!("{}\n", t.token))),
                Err(e) => ctx.fail(&e),
            }
        }
        AuthCommand::Renew { token_file } => {
            let path = match token_file.clone().or_else(|| {
                std::env::var_os(security::TOKEN_FILE_ENV)
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            }) {
                Some(p) => p,
                None => {
                    return ctx
                        .fail_msg("no token to renew: set DFS_TOKEN_FILE or pass --token-file");
                }
            };
            let old = match token::read_token_file(&path) {
                Ok(t) => t,
                Err(e) => return ctx.fail_msg(e),
            };
            let renewed = match ctx.client.renew_token(&old).await {
                Ok(t) => t,
                Err(e) => return ctx.fail(&e),
            };
            if let Err(e) = token::write_token_file(&path, &renewed.token) {
                return ctx.fail_msg(e);
            }
            ctx.note(out(&format!(
                "renewed {} until {}\n",
                path.display(),
                super::ls::format_time(renewed.expires_ms)
            )));
        }
        // Run by `local` before any connection is made.
        AuthCommand::Secret { .. } | AuthCommand::Show | AuthCommand::Token { .. } => {}
    }
}
