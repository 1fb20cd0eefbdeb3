//! Chunk access tokens: the master's short-lived, signed word that the bearer may read,
//! write, copy or recover one chunk at one version (HDFS's block access tokens).
//!
//! The master ([`TokenMinter`]) signs a [`ChunkToken`] into every answer that sends a
//! client or a chunkserver to chunk data: locations (read), `AddChunk` and
//! `UpdatePipeline` (write), copy commands (replicate: the target reads from the
//! source), and lease-recovery orders (recover). Chunkservers hold the master's current
//! keys ([`KeyRing`], handed out in `Register` and `Heartbeat` answers) and check the
//! token of every request with [`KeyRing::verify`] before touching a replica.
//!
//! Wire form ([`ChunkToken::encode`]), 62 bytes, all integers big-endian:
//!
//! ```text
//! format (1) = 1 | key id (4) | handle (8) | version (8) | modes (1) | expires_ms (8) | HMAC-SHA256 (32)
//! ```
//!
//! The MAC covers everything before it, under the 32-byte secret of the key named by the
//! key id. Keys rotate every [`KEY_ROTATION_MS`]; a key stays valid until the last token
//! it signed has expired, so rotation never fails a request in flight. Keys live only in
//! memory: a restarted master makes new ones, chunkservers get them when they register
//! again, and a token from before the restart fails as [`TokenError::UnknownKey`], which
//! tells a client to ask the master again.
//!
//! The codec never panics on any input and takes no allocation from the peer: a token
//! is exactly [`TOKEN_LEN`] bytes or it is refused.

use std::collections::HashMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of an encoded token.
pub const TOKEN_LEN: usize = 1 + 4 + 8 + 8 + 1 + 8 + MAC_LEN;
/// Bytes of a key's secret.
pub const SECRET_LEN: usize = 32;
const MAC_LEN: usize = 32;
const FORMAT: u8 = 1;

/// How often the master makes a new key (10 hours, HDFS's default key update interval).
pub const KEY_ROTATION_MS: i64 = 10 * 3600 * 1000;
/// How long a token is valid by default (10 hours, HDFS's default token lifetime).
pub const TOKEN_LIFETIME_MS: i64 = 10 * 3600 * 1000;

/// What a token lets its bearer do with the chunk. Several may be set.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Modes(u8);

impl Modes {
    /// Read the chunk (`ReadChunk`).
    pub const READ: Modes = Modes(1);
    /// Write the chunk in a pipeline (`WriteChunk`), creating or resuming a replica.
    pub const WRITE: Modes = Modes(2);
    /// Read the chunk as the source of a copy the master ordered.
    pub const REPLICATE: Modes = Modes(4);
    /// Lease recovery (`RecoverReplica`, `FinalizeReplica`): stamp, cut and finalize.
    pub const RECOVER: Modes = Modes(8);
    const ALL: u8 = 15;

    /// The raw bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether every mode of `other` is in `self`.
    pub fn contains(self, other: Modes) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether `self` and `other` share a mode.
    pub fn intersects(self, other: Modes) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for Modes {
    type Output = Modes;
    fn bitor(self, rhs: Modes) -> Modes {
        Modes(self.0 | rhs.0)
    }
}

impl fmt::Debug for Modes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [(1, "read"), (2, "write"), (4, "replicate"), (8, "recover")];
        let set: Vec<&str> =
            names.iter().filter(|(b, _)| self.0 & b != 0).map(|(_, n)| *n).collect();
        write!(f, "{}", set.join("|"))
    }
}

/// The claims of a chunk access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkToken {
    /// The key it is signed with.
    pub key_id: u32,
    /// The chunk.
    pub handle: u64,
    /// The version it allows: the chunk's version when issued (read, replicate), the
    /// version the pipeline writes (write), or the version recovery stamps (recover).
    pub version: u64,
    /// What the bearer may do.
    pub modes: Modes,
    /// Wall-clock milliseconds (Unix epoch) after which it is refused.
    pub expires_ms: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token came with the request.
    #[error("no chunk access token")]
    Missing,
    /// Not a token of this format (wrong length or format byte, unknown mode bits).
    #[error("malformed chunk access token")]
    Malformed,
    /// Signed with a key this chunkserver does not hold (a restarted master's old token,
    /// or a chunkserver that has not heard from the master yet).
    #[error("chunk access token signed with unknown key {0}")]
    UnknownKey(u32),
    /// The signature does not verify: forged or damaged.
    #[error("chunk access token has a bad signature")]
    BadSignature,
    /// Past its expiry time.
    #[error("chunk access token expired {0} ms ago")]
    Expired(i64),
    /// Valid, but for another chunk.
    #[error("chunk access token is for chunk {token:016x}, not {request:016x}")]
    WrongChunk {
        /// The token's handle.
        token: u64,
        /// The request's handle.
        request: u64,
    },
    /// Valid, but for another version.
    #[error("chunk access token is for version {token}, not {request}")]
    WrongVersion {
        /// The token's version.
        token: u64,
        /// The request's version.
        request: u64,
    },
    /// Valid, but it does not allow this access.
    #[error("chunk access token allows {granted:?}, not {wanted:?}")]
    WrongMode {
        /// What the token allows.
        granted: Modes,
        /// What the request needs.
        wanted: Modes,
    },
}

impl TokenError {
    /// Whether asking the master for a fresh token may help: the token expired, or its
    /// key is gone (the master restarted). A forged or mismatched token never will.
    pub fn is_stale(&self) -> bool {
        matches!(self, TokenError::Expired(_) | TokenError::UnknownKey(_))
    }

    /// Whether the token itself is not a valid credential (as opposed to a valid one
    /// that does not cover the request).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            TokenError::Missing
                | TokenError::Malformed
                | TokenError::UnknownKey(_)
                | TokenError::BadSignature
                | TokenError::Expired(_)
        )
    }
}

fn mac(secret: &[u8; SECRET_LEN], body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; a 32-byte one cannot be refused.
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret).expect("hmac accepts any key length");
    m.update(body);
    m
}

impl ChunkToken {
    fn body(&self) -> [u8; TOKEN_LEN - MAC_LEN] {
        let mut b = [0u8; TOKEN_LEN - MAC_LEN];
        b[0] = FORMAT;
        b[1..5].copy_from_slice(&self.key_id.to_be_bytes());
        b[5..13].copy_from_slice(&self.handle.to_be_bytes());
        b[13..21].copy_from_slice(&self.version.to_be_bytes());
        b[21] = self.modes.0;
        b[22..30].copy_from_slice(&self.expires_ms.to_be_bytes());
        b
    }

    /// The token signed with `secret` (the secret of key `self.key_id`).
    pub fn encode(&self, secret: &[u8; SECRET_LEN]) -> Vec<u8> {
        let body = self.body();
        let tag = mac(secret, &body).finalize().into_bytes();
        let mut out = Vec::with_capacity(TOKEN_LEN);
        out.extend_from_slice(&body);
        out.extend_from_slice(&tag);
        out
    }

    /// The claims of `bytes` and its MAC, unverified.
    ///
    /// # Errors
    /// [`TokenError::Missing`] for no bytes, [`TokenError::Malformed`] for anything
    /// that is not exactly one token of this format.
    pub fn decode(bytes: &[u8]) -> Result<(ChunkToken, &[u8]), TokenError> {
        if bytes.is_empty() {
            return Err(TokenError::Missing);
        }
        if bytes.len() != TOKEN_LEN || bytes[0] != FORMAT || bytes[21] & !Modes::ALL != 0 {
            return Err(TokenError::Malformed);
        }
        let be8 = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&bytes[at..at + 8]);
            a
        };
        let mut id = [0u8; 4];
        id.copy_from_slice(&bytes[1..5]);
        let token = ChunkToken {
            key_id: u32::from_be_bytes(id),
            handle: u64::from_be_bytes(be8(5)),
            version: u64::from_be_bytes(be8(13)),
            modes: Modes(bytes[21]),
            expires_ms: i64::from_be_bytes(be8(22)),
        };
        Ok((token, &bytes[TOKEN_LEN - MAC_LEN..]))
    }
}

/// One signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenKey {
    /// Its id, carried in every token it signs.
    pub id: u32,
    /// The HMAC secret.
    pub secret: [u8; SECRET_LEN],
    /// Wall-clock milliseconds after which no token it signed is valid.
    pub expires_ms: i64,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret (logs, panics).
        f.debug_struct("TokenKey")
            .field("id", &self.id)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// What a request asks of a chunk, to be checked against its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The chunk.
    pub handle: u64,
    /// The version the request names.
    pub version: u64,
    /// The modes any one of which allows it.
    pub modes: Modes,
}

/// The keys a chunkserver verifies tokens with.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: HashMap<u32, TokenKey>,
}

impl KeyRing {
    /// A ring holding `keys`.
    pub fn new(keys: impl IntoIterator<Item = TokenKey>) -> KeyRing {
        KeyRing { keys: keys.into_iter().map(|k| (k.id, k)).collect() }
    }

    /// Replaces the keys held with `keys` (the master's whole current set).
    pub fn replace(&mut self, keys: impl IntoIterator<Item = TokenKey>) {
        *self = KeyRing::new(keys);
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True before the master handed out any key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `token` for `access` at wall-clock time `now_ms`; returns its claims.
    ///
    /// # Errors
    /// A [`TokenError`] saying why it is refused.
    pub fn verify(
        &self,
        token: &[u8],
        access: Access,
        now_ms: i64,
    ) -> Result<ChunkToken, TokenError> {
        let (t, tag) = ChunkToken::decode(token)?;
        let key = self.keys.get(&t.key_id).ok_or(TokenError::UnknownKey(t.key_id))?;
        mac(&key.secret, &token[..TOKEN_LEN - MAC_LEN])
            .verify_slice(tag)
            .map_err(|_| TokenError::BadSignature)?;
        let expires = t.expires_ms.min(key.expires_ms);
        if now_ms > expires {
            return Err(TokenError::Expired(now_ms.saturating_sub(expires)));
        }
        if t.handle != access.handle {
            return Err(TokenError::WrongChunk { token: t.handle, request: access.handle });
        }
        if t.version != access.version {
            return Err(TokenError::WrongVersion { token: t.version, request: access.version });
        }
        if !t.modes.intersects(access.modes) {
            return Err(TokenError::WrongMode { granted: t.modes, wanted: access.modes });
        }
        Ok(t)
    }
}

/// The master's keys and the signing of tokens. Randomness and time come from the
/// caller, so the minter itself is deterministic (tests, the simulator).
///
/// As HDFS's `BlockTokenSecretManager`, it holds the key it signs with *and the next
/// one*, made a whole rotation period before it signs anything: chunkservers hear of a
/// key in a heartbeat long before they see a token signed with it, so a rotation never
/// makes a fresh token fail on a chunkserver that has not heard of its key yet.
#[derive(Debug, Clone)]
pub struct TokenMinter {
    /// Keys still valid, oldest first; the last is the next key, the one before it the
    /// signing key.
    keys: Vec<TokenKey>,
    next_id: u32,
    rotate_at: i64,
    rotation_ms: i64,
    lifetime_ms: i64,
}

impl TokenMinter {
    /// A minter at `now_ms` signing with a key of id `first_id` made of `secret`, with
    /// the next key (id `first_id + 1`) made of `next_secret`; keys rotate every
    /// `rotation_ms` and tokens live `lifetime_ms`. Pick `first_id` at random, so a
    /// restarted master's keys do not share ids with its last life's.
    pub fn new(
        first_id: u32,
        secret: [u8; SECRET_LEN],
        next_secret: [u8; SECRET_LEN],
        now_ms: i64,
        rotation_ms: i64,
        lifetime_ms: i64,
    ) -> TokenMinter {
        let mut m = TokenMinter {
            keys: Vec::new(),
            next_id: first_id,
            rotate_at: now_ms,
            rotation_ms: rotation_ms.max(1),
            lifetime_ms: lifetime_ms.max(1),
        };
        m.add_key(secret, now_ms, 1);
        m.add_key(next_secret, now_ms, 2);
        m
    }

    /// Adds a key that will sign from `periods - 1` rotations after `now_ms` on, for one
    /// rotation period; its last token lives a lifetime more.
    fn add_key(&mut self, secret: [u8; SECRET_LEN], now_ms: i64, periods: i64) {
        let expires_ms = now_ms
            .saturating_add(self.rotation_ms.saturating_mul(periods))
            .saturating_add(self.lifetime_ms);
        self.keys.push(TokenKey { id: self.next_id, secret, expires_ms });
        self.next_id = self.next_id.wrapping_add(1);
        self.rotate_at = now_ms.saturating_add(self.rotation_ms);
    }

    /// Whether a new key is due at `now_ms` ([`TokenMinter::rotate`]).
    pub fn needs_rotation(&self, now_ms: i64) -> bool {
        now_ms >= self.rotate_at
    }

    /// Starts signing with the next key, makes a new next key of `secret`, and drops
    /// keys whose tokens have all expired.
    pub fn rotate(&mut self, secret: [u8; SECRET_LEN], now_ms: i64) {
        self.add_key(secret, now_ms, 2);
        self.keys.retain(|k| k.expires_ms >= now_ms);
    }

    /// Every key still valid, for chunkservers.
    pub fn keys(&self) -> &[TokenKey] {
        &self.keys
    }

    /// A token for `modes` on chunk `handle` at `version`, valid from `now_ms`.
    pub fn sign(&self, handle: u64, version: u64, modes: Modes, now_ms: i64) -> Vec<u8> {
        let Some(key) = self.keys.len().checked_sub(2).and_then(|i| self.keys.get(i)) else {
            // `new` makes two keys, and `rotate` adds one and keeps every key whose
            // tokens may still be valid, which the signing key's always are.
            unreachable!("a token minter always holds its signing key") // faulty code
        };
        let t = ChunkToken {
            key_id: key.id,
            handle,
            version,
            modes,
            expires_ms: now_ms.saturating_add(self.lifetime_ms).min(key.expires_ms),
        };
        t.encode(&key.secret)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn minter() -> TokenMinter {
        TokenMinter::new(7, [9; SECRET_LEN], [8; SECRET_LEN], NOW, 1000, 500)
    }

    fn ring(m: &TokenMinter) -> KeyRing {
        KeyRing::new(m.keys().iter().cloned())
    }

    fn read(handle: u64, version: u64) -> Access {
        Access { handle, version, modes: Modes::READ }
    }

    #[test]
    fn a_signed_token_verifies_for_what_it_names_only() {
        let m = minter();
        let r = ring(&m);
        let t = m.sign(42, 3, Modes::READ | Modes::REPLICATE, NOW);
        assert_eq!(t.len(), TOKEN_LEN);
        let claims = r.verify(&t, read(42, 3), NOW + 10).expect("valid");
        assert_eq!((claims.key_id, claims.handle, claims.version), (7, 42, 3));
        let copy = Access { modes: Modes::REPLICATE, ..read(42, 3) };
        assert!(r.verify(&t, copy, NOW).is_ok());
        assert_eq!(
            r.verify(&t, read(43, 3), NOW),
            Err(TokenError::WrongChunk { token: 42, request: 43 })
        );
        assert_eq!(
            r.verify(&t, read(42, 4), NOW),
            Err(TokenError::WrongVersion { token: 3, request: 4 })
        );
        let write = Access { modes: Modes::WRITE, ..read(42, 3) };
        assert!(matches!(r.verify(&t, write, NOW), Err(TokenError::WrongMode { .. })));
        assert_eq!(r.verify(&t, read(42, 3), NOW + 501), Err(TokenError::Expired(1)));
        assert_eq!(r.verify(&[], read(42, 3), NOW), Err(TokenError::Missing));
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let m = minter();
        let r = ring(&m);
        let mut t = m.sign(42, 3, Modes::READ, NOW);
        // Change the handle without re-signing.
        t[12] ^= 1;
        assert_eq!(r.verify(&t, read(42 ^ 1, 3), NOW), Err(TokenError::BadSignature));
        // Signed with a secret the ring does not hold, under a key id it does.
        let forged = ChunkToken {
            key_id: 7,
            handle: 42,
            version: 3,
            modes: Modes::READ,
            expires_ms: NOW + 100,
        }
        .encode(&[0; SECRET_LEN]);
        assert_eq!(r.verify(&forged, read(42, 3), NOW), Err(TokenError::BadSignature));
        // A restarted master's token: another key id.
        let other = TokenMinter::new(100, [1; SECRET_LEN], [2; SECRET_LEN], NOW, 1000, 500);
        let t = other.sign(42, 3, Modes::READ, NOW);
        assert_eq!(r.verify(&t, read(42, 3), NOW), Err(TokenError::UnknownKey(100)));
        assert!(TokenError::UnknownKey(100).is_stale());
        assert!(!TokenError::BadSignature.is_stale());
    }

    #[test]
    fn rotation_keeps_old_keys_until_their_tokens_expire() {
        let mut m = minter();
        // Chunkservers hold the next key before anything is signed with it.
        let before = ring(&m);
        let old = m.sign(1, 1, Modes::READ, NOW);
        assert_eq!(ChunkToken::decode(&old).map(|(t, _)| t.key_id), Ok(7));
        assert!(!m.needs_rotation(NOW + 999));
        assert!(m.needs_rotation(NOW + 1000));
        m.rotate([5; SECRET_LEN], NOW + 1000);
        let new = m.sign(1, 1, Modes::READ, NOW + 1000);
        assert_eq!(ChunkToken::decode(&new).map(|(t, _)| t.key_id), Ok(8));
        assert!(before.verify(&new, read(1, 1), NOW + 1000).is_ok(), "known before use");
        let r = ring(&m);
        assert_eq!(m.keys().iter().map(|k| k.id).collect::<Vec<_>>(), vec![7, 8, 9]);
        // The old token is still good until its own expiry.
        assert!(r.verify(&old, read(1, 1), NOW + 400).is_ok());
        assert!(r.verify(&new, read(1, 1), NOW + 1400).is_ok());
        // Once past the old key's last token, the key goes at the next rotation.
        m.rotate([6; SECRET_LEN], NOW + 2000);
        assert_eq!(m.keys().iter().map(|k| k.id).collect::<Vec<_>>(), vec![8, 9, 10]);
        for i in 0..10 {
            m.rotate([i; SECRET_LEN], NOW + 3000 + 1000 * i64::from(i));
            assert!(m.keys().len() >= 2);
        }
    }

    #[test]
    fn keys_never_print_their_secret() {
        let m = minter();
        let shown = format!("{:?}", m.keys()[0]);
        assert!(!shown.contains("secret") && shown.contains("id: 7"), "{shown}");
    }

    proptest! {
        #[test]
        fn any_claims_round_trip(
            key_id in any::<u32>(), handle in any::<u64>(), version in any::<u64>(),
            modes in 0u8..16, expires_ms in any::<i64>(), secret in any::<[u8; 32]>(),
        ) {
            let t = ChunkToken { key_id, handle, version, modes: Modes(modes), expires_ms };
            let bytes = t.encode(&secret);
            let (back, _) = ChunkToken::decode(&bytes).expect("decodes");
            prop_assert_eq!(back, t);
            let r = KeyRing::new([TokenKey { id: key_id, secret, expires_ms: i64::MAX }]);
            let access = Access { handle, version, modes: Modes(modes) };
            let now = expires_ms.saturating_sub(1);
            if modes != 0 {
                prop_assert!(r.verify(&bytes, access, now).is_ok());
            }
        }

        #[test]
        fn random_bytes_never_panic_and_never_verify(
            bytes in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let r = ring(&minter());
            let _ = ChunkToken::decode(&bytes);
            let access = Access { handle: 1, version: 1, modes: Modes::READ };
            prop_assert!(r.verify(&bytes, access, NOW).is_err());
        }

        #[test]
        fn any_mutation_of_a_token_is_refused(at in 0..TOKEN_LEN, flip in 1u8..=255) {
            let m = minter();
            let r = ring(&m);
            let mut t = m.sign(42, 3, Modes::READ, NOW);
            t[at] ^= flip;
            let access = Access { handle: 42, version: 3, modes: Modes::READ };
            prop_assert!(r.verify(&t, access, NOW).is_err());
            // Whatever the claims now say, they never verify either.
            if let Ok((c, _)) = ChunkToken::decode(&t) {
                let access = Access { handle: c.handle, version: c.version, modes: c.modes };
                prop_assert!(r.verify(&t, access, NOW).is_err());
            }
        }
    }
}
