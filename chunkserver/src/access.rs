//! Chunk access tokens on the chunkserver's side: the master's keys this node holds
//! ([`Keys`], replaced by every `Register` and `Heartbeat` answer) and the check every
//! request passes before it touches a replica ([`Keys::check`]).
//!
//! Each member of a replicated master group signs with keys of its own (a follower
//! answering a stale-ok lookup signs the locations it hands out; a new leader signs with
//! its keys from its first answer on), so the keys are kept per member, each member's
//! answers replacing only its own set, and a token passes if it verifies under any
//! member's current keys. A single master is a group of one.
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

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use proto::clock::wall_ms;
use proto::gfs as pb;
use security::chunk_token::{Access, KeyRing, Modes, SECRET_LEN, TokenError, TokenKey};
use tracing::{debug, warn};

use crate::error::{Error, Result};

/// The masters' token keys as this node holds them, per master (member address); cheap
/// to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Keys {
    rings: Arc<RwLock<BTreeMap<String, KeyRing>>>,
}

impl Keys {
    /// Replaces the keys held for `master` (its `host:port`) with its current set. Keys
    /// that are not well formed (a secret of the wrong length) are dropped.
    pub fn replace(&self, master: &str, keys: &[pb::ChunkTokenKey]) {
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
        debug!(master, keys = keys.len(), "chunk token keys from the master");
        // A poisoned lock still holds whole rings: each is replaced in one assignment.
        let mut rings = self.rings.write().unwrap_or_else(|p| p.into_inner());
        rings.entry(master.to_owned()).or_default().replace(keys);
    }

    /// Checks that `token` allows one of `modes` on chunk `handle` at `version` now,
    /// under the keys of any master.
    ///
    /// # Errors
    /// [`Error::Token`] saying why not.
    pub fn check(&self, token: &[u8], handle: u64, version: u64, modes: Modes) -> Result<()> {
        let rings = self.rings.read().unwrap_or_else(|p| p.into_inner());
        check_any(rings.values(), token, Access { handle, version, modes }, wall_ms())
    }
}

/// The check under one master's keys, as a pure function of the keys and the time.
///
/// # Errors
/// [`Error::Token`] naming the chunk and why its token is refused.
pub fn check(ring: &KeyRing, token: &[u8], access: Access, now_ms: i64) -> Result<()> {
    ring.verify(token, access, now_ms)
        .map(|_| ())
        .map_err(|cause| Error::Token { handle: access.handle, cause })
}

/// [`Keys::check`] as a pure function: the token passes if it verifies under one of
/// `rings`; none at all refuse it as an empty ring does (no master heard from yet).
///
/// # Errors
/// [`Error::Token`] with the refusal that says most: from a ring whose key verified the
/// signature (expired, another chunk, version or mode) over a bad signature (a key with
/// the same id, another member's) over an unknown key.
pub fn check_any<'a>(
    rings: impl IntoIterator<Item = &'a KeyRing>,
    token: &[u8],
    access: Access,
    now_ms: i64,
) -> Result<()> {
    let weight = |e: &TokenError| match e {
        TokenError::UnknownKey(_) => 0,
        TokenError::BadSignature => 1,
        _ => 2,
    };
    let mut refusal: Option<TokenError> = None;
    for ring in rings {
        match ring.verify(token, access, now_ms) {
            Ok(_) => return Ok(()),
            Err(e) if refusal.as_ref().is_none_or(|r| weight(&e) > weight(r)) => refusal = Some(e),
            Err(_) => {}
        }
    }
    match refusal {
        Some(cause) => Err(Error::Token { handle: access.handle, cause }),
        None => check(&KeyRing::default(), token, access, now_ms),
    }
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
        keys.replace(
            "m:1",
            &[
                pb::ChunkTokenKey {
                    id: 1,
                    secret: vec![3; SECRET_LEN].into(),
                    expires_ms: i64::MAX,
                },
                pb::ChunkTokenKey { id: 2, secret: vec![3; 5].into(), expires_ms: i64::MAX },
            ],
        );
        let t = m.sign(9, 1, Modes::READ, wall_ms());
        assert!(keys.check(&t, 9, 1, Modes::READ).is_ok());
        assert_eq!(keys.rings.read().map(|r| r["m:1"].len()).unwrap_or(0), 1);
    }

    #[test]
    fn a_token_of_any_master_passes_and_each_master_replaces_only_its_keys() {
        let keys = Keys::default();
        // Two members' minters: the same key id, different secrets.
        let a = TokenMinter::new(1, [3; SECRET_LEN], [4; SECRET_LEN], NOW, 60_000, i64::MAX / 4);
        let b = TokenMinter::new(1, [5; SECRET_LEN], [6; SECRET_LEN], NOW, 60_000, i64::MAX / 4);
        let proto_keys = |m: &TokenMinter| -> Vec<pb::ChunkTokenKey> {
            m.keys()
                .iter()
                .map(|k| pb::ChunkTokenKey {
                    id: k.id,
                    secret: k.secret.to_vec().into(),
                    expires_ms: k.expires_ms,
                })
                .collect()
        };
        keys.replace("a:1", &proto_keys(&a));
        keys.replace("b:1", &proto_keys(&b));
        let now = wall_ms();
        for m in [&a, &b] {
            assert!(keys.check(&m.sign(9, 1, Modes::READ, now), 9, 1, Modes::READ).is_ok());
        }
        // A's answer without keys drops A's, not B's.
        keys.replace("a:1", &[]);
        let refused = keys.check(&a.sign(9, 1, Modes::READ, now), 9, 1, Modes::READ);
        assert!(matches!(refused, Err(Error::Token { .. })), "{refused:?}");
        assert!(keys.check(&b.sign(9, 1, Modes::READ, now), 9, 1, Modes::READ).is_ok());
    }

    #[test]
    fn the_refusal_that_says_most_is_given() {
        let a = TokenMinter::new(1, [3; SECRET_LEN], [4; SECRET_LEN], NOW, 60_000, 10_000);
        let b = TokenMinter::new(1, [5; SECRET_LEN], [6; SECRET_LEN], NOW, 60_000, 10_000);
        let c = TokenMinter::new(7, [8; SECRET_LEN], [9; SECRET_LEN], NOW, 60_000, 10_000);
        let rings: Vec<KeyRing> =
            [&c, &b, &a].iter().map(|m| KeyRing::new(m.keys().iter().cloned())).collect();
        let read = Access { handle: 5, version: 2, modes: Modes::READ };
        let cause = |r: Result<()>| match r {
            Err(Error::Token { cause, .. }) => cause,
            other => panic!("not refused: {other:?}"),
        };
        // Unknown to c, a bad signature to b, expired to a, whose token it is.
        let late = a.sign(5, 2, Modes::READ, NOW);
        assert!(matches!(
            cause(check_any(&rings, &late, read, NOW + 10_001)),
            TokenError::Expired(_)
        ));
        // Only other members' keys: a bad signature beats an unknown key.
        assert_eq!(cause(check_any(&rings[..2], &late, read, NOW)), TokenError::BadSignature);
        // No master heard from: refused as before registration.
        assert_eq!(cause(check_any([], &late, read, NOW)), TokenError::UnknownKey(1));
        assert_eq!(cause(check_any([], &[], read, NOW)), TokenError::Missing);
    }
}
