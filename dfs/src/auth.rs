//! Tokens of token mode, from the client's side: a superuser asks the master to issue
//! one for a user (`dfs auth token`), a holder renews its own (`dfs auth renew`).
//! Issuing and renewing change nothing on the master, so both are retried like reads.

use proto::gfs;
use proto::path::DfsPath;

use crate::client::Client;
use crate::error::Result;
use crate::retry::CallKind;

/// A token and its lifetimes, as the master answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token text, to be kept in a private file.
    pub token: String,
    /// Wall-clock ms at which it expires unless renewed.
    pub expires_ms: i64,
    /// The latest it can be renewed to.
    pub max_ms: i64,
}

impl From<gfs::TokenResponse> for Token {
    fn from(r: gfs::TokenResponse) -> Token {
        Token { token: r.token, expires_ms: r.expires_ms, max_ms: r.max_ms }
    }
}

impl Client {
    /// Asks the master for a token naming `user` in `groups` (empty: the master's
    /// mapping), valid for `lifetime_secs` (0: the master's default). Superuser only.
    ///
    /// # Errors
    /// [`crate::error::Error::PermissionDenied`] for anyone else, `FailedPrecondition` if
    /// the master runs in simple mode, or a transport error.
    pub async fn issue_token(
        &self,
        user: &str,
        groups: &[String],
        lifetime_secs: u64,
    ) -> Result<Token> {
        let req = gfs::IssueTokenRequest {
            user: user.to_owned(),
            groups: groups.to_vec(),
            lifetime_secs,
        };
        let resp = self
            .call_admin(CallKind::Read, &DfsPath::root(), |mut m| {
                let req = req.clone();
                async move { m.issue_token(req).await }
            })
            .await?;
        Ok(resp.into())
    }

    /// Renews `token` (the caller's own, or any as a superuser).
    ///
    /// # Errors
    /// As [`Client::issue_token`]; [`crate::error::Error::Unauthenticated`] past its maximum.
    pub async fn renew_token(&self, token: &str) -> Result<Token> {
        let req = gfs::RenewTokenRequest { token: token.to_owned() };
        let resp = self
            .call_master(CallKind::Read, &DfsPath::root(), |mut m| {
                let req = req.clone();
                async move { m.renew_token(req).await }
            })
            .await?;
        Ok(resp.into())
    }
}
