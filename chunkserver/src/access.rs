//! Chunk access tokens on the chunkserver's side: the master's keys this node holds
//! ([`Keys`], replaced by every `Register` and `Heartbeat` answer) and the check every
//! request passes before it touches a replica ([`Keys::check`]).
//!
//! What each request needs (format and signing: [`security::chunk_token`]):
//!
//! | request                         | token names           | modes accepted        |
//! |---------------------------------|-----------------------|-----------------------|
//! | `ReadChunk`                     | handle, asked version | read, replicate       |
//! | `WriteChunk` header             | handle, header version| write                 |
//! | `RecoverReplica`                | handle, new version   | recover               |
//! | `FinalizeReplica`               | handle, version       | recover               |
//!
//! A copy is a `ReadChunk` by the target against the source with the replicate token of
//! the master's copy order; a pipeline node forwards the client's write token downstream
//! in the header it sends on. A node that has not yet heard from the master holds no keys
//! and refuses everything ([`TokenError::UnknownKey`]); so does one whose master
//! restarted, for tokens of the old master, until it re-registers: clients then ask the
//! master again.

use std::sync::{Arc, RwLock};

use proto::clock::wall_ms;
use proto::gfs as pb;
use security::chunk_token::{Access, KeyRing, Modes, SECRET_LEN, TokenKey};
use tracing::{debug, warn};

use crate::error::{Error, Result};

/// The master's token keys as this node holds them; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Keys {
    ring: Arc<RwLock<KeyRing>>,
}

impl Keys {
    /// Replaces the keys held with the master's current set. Keys that are not well
    /// formed (a secret of the wrong length) are dropped.
    pub fn replace(&self, keys: &[pb::ChunkTokenKey]) {
        let keys: Vec<TokenKey> = keys
            .iter()
            .filter_map(|k| {
                let Ok(secret) = <[u8; SECRET_LEN]>::try_from(k.secret.as_ref()) else {
                    warn!(key = k.id, len = k.secret.len(), "ignoring a token key of a bad length");
                    return None;
                };
                Some(TokenKey { id: k.id, secret, expires_ms: k.expires_ms })
            })
            .collect();
        debug!(keys = keys.len(), "chunk token keys from the master");
        // A poisoned lock still holds a whole ring: it is replaced in one assignment.
        self.ring.write().unwrap_or_else(|p| p.into_inner()).replace(keys);
    }

    /// Checks that `token` allows one of `modes` on chunk `handle` at `version` now.
    ///
    /// # Errors
    /// [`Error::Token`] saying why not.
    pub fn check(&self, token: &[u8], handle: u64, version: u64, modes: Modes) -> Result<()> {
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        check(&ring, token, Access { handle, version, modes }, wall_ms())
    }
}

/// [`Keys::check`] as a pure function of the keys and the time.
///
/// # Errors
/// [`Error::Token`] naming the chunk and why its token is refused.
pub fn check(ring: &KeyRing, token: &[u8], access: Access, now_ms: i64) -> Result<()> {
    ring.verify(token, access, now_ms)
        .map(|_| ())
        .map_err(|cause| Error::Token { handle: access.handle, cause })
}

#[cfg(test)]
mod tests {
    use security::chunk_token::{TokenError, TokenMinter};

    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn every_request_needs_a_token_for_its_chunk_version_and_mode() {
        let m = TokenMinter::new(1, [3; SECRET_LEN], [4; SECRET_LEN], NOW, 60_000, 10_000);
        let ring = KeyRing::new(m.keys().iter().cloned());
        let read = |h, v| Access { handle: h, version: v, modes: Modes::READ | Modes::REPLICATE };
        let copy = m.sign(5, 2, Modes::REPLICATE, NOW);
        assert!(check(&ring, &copy, read(5, 2), NOW).is_ok(), "a copy reads the source");
        let write = m.sign(5, 2, Modes::WRITE, NOW);
        let refused = |r: Result<()>| match r {
            Err(Error::Token { cause, .. }) => cause,
            other => panic!("not refused: {other:?}"),
        };
        assert!(matches!(
            refused(check(&ring, &write, read(5, 2), NOW)),
            TokenError::WrongMode { .. }
        ));
        let recover = Access { handle: 5, version: 3, modes: Modes::RECOVER };
        assert!(matches!(
            refused(check(&ring, &write, recover, NOW)),
            TokenError::WrongVersion { .. }
        ));
        assert_eq!(refused(check(&ring, &[], read(5, 2), NOW)), TokenError::Missing);
        assert!(matches!(
            refused(check(&ring, &copy, read(5, 2), NOW + 10_001)),
            TokenError::Expired(1)
        ));
        // No keys yet (before registration): nothing passes.
        assert!(matches!(
            refused(check(&KeyRing::default(), &copy, read(5, 2), NOW)),
            TokenError::UnknownKey(1)
        ));
    }

    #[test]
    fn keys_of_a_bad_length_are_dropped() {
        let keys = Keys::default();
        let m = TokenMinter::new(1, [3; SECRET_LEN], [4; SECRET_LEN], NOW, 60_000, i64::MAX / 4);
        keys.replace(&[
            pb::ChunkTokenKey { id: 1, secret: vec![3; SECRET_LEN].into(), expires_ms: i64::MAX },
            pb::ChunkTokenKey { id: 2, secret: vec![3; 5].into(), expires_ms: i64::MAX },
        ]);
        let t = m.sign(9, 1, Modes::READ, wall_ms());
        assert!(keys.check(&t, 9, 1, Modes::READ).is_ok());
        assert_eq!(keys.ring.read().map(|r| r.len()).unwrap_or(0), 1);
    }
}
