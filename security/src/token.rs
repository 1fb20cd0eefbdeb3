//! Bearer tokens (token mode): who a caller is, signed by the cluster.
//!
//! A token names a user and its groups, says whether it is a person's or a service's
//! (chunkserver, worker, coordinator), and expires. It is signed with HMAC-SHA256 under
//! one of the cluster's keys ([`Secret`]): whoever holds the secret file can mint tokens
//! (the master, for users; services, for themselves), and every server can check them
//! without asking anyone. Like an HDFS delegation token it can be renewed by its holder
//! until its maximum lifetime, after which a new one must be issued.
//!
//! On the wire: `base64url(payload) "." base64url(mac)`, where the payload is
//! [`Claims`] in postcard and the MAC covers the payload bytes. The MAC is checked
//! before the payload is decoded, so bytes nobody signed are never parsed; sizes are
//! bounded ([`MAX_TOKEN_LEN`]) before anything else.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{AuthError, Principal, check_name};

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted, in bytes of its text.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Most groups a token may name.
pub const MAX_GROUPS: usize = 64;
/// Bytes of one key.
const KEY_LEN: usize = 32;

/// Whose token it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A person (or a job acting for one).
    User,
    /// A cluster service: chunkserver, worker, coordinator.
    Service,
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Format version (1).
    pub version: u8,
    /// Id of the key that signed it.
    pub key_id: u32,
    /// User or service.
    pub kind: Kind,
    /// The user (or service) name.
    pub user: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// When it was issued (wall ms).
    pub issued_ms: i64,
    /// When it expires unless renewed (wall ms).
    pub expires_ms: i64,
    /// The latest it can be renewed to (wall ms).
    pub max_ms: i64,
    /// A random id (audit lines name it; renewals keep it).
    pub id: u64,
}

impl Claims {
    /// The principal it names.
    pub fn principal(&self) -> Principal {
        Principal { user: self.user.clone(), groups: self.groups.clone() }
    }
}

/// The cluster's signing keys: the first signs, every one verifies (so a new key can be
/// put first and the old one kept until tokens signed with it have expired).
#[derive(Clone)]
pub struct Secret {
    keys: Vec<(u32, [u8; KEY_LEN])>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key bytes.
        let ids: Vec<u32> = self.keys.iter().map(|(id, _)| *id).collect();
        f.debug_struct("Secret").field("key_ids", &ids).finish()
    }
}

/// Why a secret file can't be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// It can't be read or written.
    #[error("secret file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Others than its owner can read it.
    #[error("secret file {path} is readable by others (mode {mode:o}): chmod 600 it")]
    Exposed {
        /// The file.
        path: String,
        /// Its mode bits.
        mode: u32,
    },
    /// A line is not `KEY_ID HEX_KEY`.
    #[error("secret file {path} line {line}: {what}")]
    Malformed {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        what: String,
    },
}

impl Secret {
    /// A fresh secret with one random key of id 1.
    pub fn generate() -> Secret {
        Secret { keys: vec![(1, rand::random())] }
    }

    /// The same keys with a fresh random key put first (it signs from now on).
    pub fn rotated(&self) -> Secret {
        let next = self.keys.iter().map(|(id, _)| *id).max().unwrap_or(0).wrapping_add(1);
        let mut keys = vec![(next, rand::random())];
        keys.extend(self.keys.iter().copied());
        Secret { keys }
    }

    /// Reads a secret file: one `KEY_ID HEX_KEY` per line (the first signs), `#`
    /// comments. Refused if group or others can read it.
    ///
    /// # Errors
    /// [`SecretError`] naming the file (and line).
    pub fn load(path: &Path) -> Result<Secret, SecretError> {
        let shown = path.display().to_string();
        let io = |source| SecretError::Io { path: shown.clone(), source };
        let mode = fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(SecretError::Exposed { path: shown, mode: mode & 0o7777 });
        }
        let text = fs::read_to_string(path).map_err(io)?;
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: &str| SecretError::Malformed {
                path: shown.clone(),
                line: i + 1,
                what: what.to_owned(),
            };
            let (id, digits) =
                line.split_once(' ').ok_or_else(|| bad("expected KEY_ID HEX_KEY"))?;
            let id: u32 = id.parse().map_err(|_| bad("key id is not a number"))?;
            let key = hex::decode::<KEY_LEN>(digits.trim())
                .ok_or_else(|| bad("key is not 64 hex digits"))?;
            if keys.iter().any(|(k, _)| *k == id) {
                return Err(bad("key id used twice"));
            }
            keys.push((id, key));
        }
        if keys.is_empty() {
            return Err(SecretError::Malformed { path: shown, line: 0, what: "no key".into() });
        }
        Ok(Secret { keys })
    }

    /// Writes it to `path`, created with mode 0600 (refuses to overwrite a file).
    ///
    /// # Errors
    /// [`SecretError::Io`] naming the file.
    pub fn create(&self, path: &Path) -> Result<(), SecretError> {
        let io = |source| SecretError::Io { path: path.display().to_string(), source };
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let mut text = String::from("# cluster secret: keep it 0600; the first key signs\n");
        for (id, key) in &self.keys {
            text.push_str(&format!("{id} {}\n", hex::encode(key)));
        }
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Signs `claims` (their `key_id` is set to the signing key's).
    pub fn sign(&self, mut claims: Claims) -> String {
        let (id, key) = self.keys[0];
        claims.key_id = id;
        // Encoding a struct of strings and integers into a Vec cannot fail.
        let payload = postcard::to_allocvec(&claims).unwrap_or_default();
        let mac = mac(&key, &payload);
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(mac))
    }

    /// Mints a token for `user` in `groups`, valid `lifetime_ms` from `now_ms` and
    /// renewable up to `max_ms` after it.
    pub fn issue(
        &self,
        kind: Kind,
        user: &str,
        groups: &[String],
        now_ms: i64,
        lifetime_ms: i64,
        max_ms: i64,
    ) -> String {
        self.sign(Claims {
            version: 1,
            key_id: 0,
            kind,
            user: user.to_owned(),
            groups: groups.to_vec(),
            issued_ms: now_ms,
            expires_ms: now_ms.saturating_add(lifetime_ms),
            max_ms: now_ms.saturating_add(max_ms.max(lifetime_ms)),
            id: rand::random(),
        })
    }

    /// Checks a token's size, signature, format and expiry at `now_ms`.
    ///
    /// # Errors
    /// [`AuthError::BadToken`] for anything not signed by one of these keys or not
    /// well formed, [`AuthError::Expired`] for a genuine token past its expiry.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Claims, AuthError> {
        let bad = |why: &str| AuthError::BadToken(why.to_owned());
        if token.len() > MAX_TOKEN_LEN {
            return Err(bad("longer than any token the cluster issues"));
        }
        let (payload, mac_text) = token.split_once('.').ok_or_else(|| bad("not a token"))?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad("not base64"))?;
        let given = URL_SAFE_NO_PAD.decode(mac_text).map_err(|_| bad("not base64"))?;
        // The key id is in the signed payload, which is not to be parsed before it is
        // known to be signed: try each key (there are one or two).
        let signed = self.keys.iter().any(|(_, key)| {
            let mut m = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
            m.update(&payload);
            m.verify_slice(&given).is_ok()
        });
        if !signed {
            return Err(bad("not signed by this cluster (forged, or from a rotated-out key)"));
        }
        let claims: Claims = postcard::from_bytes(&payload).map_err(|_| bad("malformed"))?;
        if claims.version != 1 {
            return Err(bad("unknown token version"));
        }
        if claims.groups.len() > MAX_GROUPS {
            return Err(bad("too many groups"));
        }
        for name in std::iter::once(&claims.user).chain(&claims.groups) {
            check_name(name)?;
        }
        if now_ms >= claims.expires_ms {
            return Err(AuthError::Expired { user: claims.user });
        }
        Ok(claims)
    }

    /// Renews a valid token for `lifetime_ms` more from `now_ms`, capped at its maximum
    /// lifetime.
    ///
    /// # Errors
    /// As [`Secret::verify`]; [`AuthError::Expired`] once the maximum is reached.
    pub fn renew(&self, token: &str, now_ms: i64, lifetime_ms: i64) -> Result<String, AuthError> {
        let mut claims = self.verify(token, now_ms)?;
        claims.expires_ms = now_ms.saturating_add(lifetime_ms).min(claims.max_ms);
        if claims.expires_ms <= now_ms {
            return Err(AuthError::Expired { user: claims.user });
        }
        Ok(self.sign(claims))
    }
}

/// What a token says, read without checking its signature: for its holder, to learn the
/// user it names and when it expires. Never trust this on a server: use
/// [`Secret::verify`].
pub fn peek(token: &str) -> Option<Claims> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (payload, _) = token.split_once('.')?;
    postcard::from_bytes(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// Reads a token file (`DFS_TOKEN_FILE`): one token, surrounding whitespace ignored.
///
/// # Errors
/// [`AuthError::TokenFile`] naming the file and what is wrong with it.
pub fn read_token_file(path: &Path) -> Result<String, AuthError> {
    let bad = |why: String| AuthError::TokenFile { path: path.display().to_string(), why };
    let len = fs::metadata(path).map_err(|e| bad(e.to_string()))?.len();
    if len > MAX_TOKEN_LEN as u64 + 2 {
        return Err(bad(format!("{len} bytes, longer than any token")));
    }
    let text = fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(bad("expected one token (from `dfs auth token`)".to_owned()));
    }
    peek(token).ok_or_else(|| bad("not a token".to_owned()))?;
    Ok(token.to_owned())
}

/// Writes `token` to `path` with mode 0600, replacing it atomically (a renewal must
/// never leave a half-written file behind).
///
/// # Errors
/// [`AuthError::TokenFile`] naming the file.
pub fn write_token_file(path: &Path, token: &str) -> Result<(), AuthError> {
    write_private(path, &format!("{token}\n"))
        .map_err(|e| AuthError::TokenFile { path: path.display().to_string(), why: e.to_string() })
}

/// Writes `text` to `path` with mode 0600, atomically (a temporary file beside it,
/// synced, renamed over it, the directory synced): a private file (a token, a
/// chunkserver's id secret) is either whole or absent, never half-written.
///
/// # Errors
/// The I/O error; the temporary file is removed.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{:08x}.tmp", rand::random::<u32>()));
    let written = (|| {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Service credentials minted on demand from the cluster secret: a chunkserver, worker,
/// coordinator or master proves it is a cluster service with a short-lived token it
/// signs itself, re-minted well before it expires.
#[derive(Debug)]
pub struct ServiceMinter {
    secret: std::sync::Arc<Secret>,
    name: String,
    current: std::sync::Mutex<(String, i64)>,
}

/// How long a service token lives; a fresh one is minted at half of it.
pub const SERVICE_TOKEN_LIFETIME_MS: i64 = 60 * 60 * 1000;

impl ServiceMinter {
    /// Service tokens for `name` under `secret`.
    pub fn new(secret: std::sync::Arc<Secret>, name: &str) -> ServiceMinter {
        ServiceMinter {
            secret,
            name: name.to_owned(),
            current: std::sync::Mutex::new((String::new(), i64::MIN)),
        }
    }

    /// A token valid for at least half its lifetime from `now_ms`.
    pub fn token(&self, now_ms: i64) -> String {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if now_ms >= cur.1 {
            let t = self.secret.issue(
                Kind::Service,
                &self.name,
                &[],
                now_ms,
                SERVICE_TOKEN_LIFETIME_MS,
                SERVICE_TOKEN_LIFETIME_MS,
            );
            *cur = (t, now_ms.saturating_add(SERVICE_TOKEN_LIFETIME_MS / 2));
        }
        cur.0.clone()
    }

    /// The service name its tokens carry.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn mac(key: &[u8; KEY_LEN], payload: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length; 32 bytes always fits.
    let mut m = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(payload);
    m.finalize().into_bytes().to_vec()
}

/// Secrets as text: lowercase hex, fixed length (the secret file, job tokens).
pub mod hex {
    /// The hex form of `bytes`.
    pub fn encode(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Exactly `2 * N` hex digits as `N` bytes; `None` for anything else.
    pub fn decode<const N: usize>(s: &str) -> Option<[u8; N]> {
        if s.len() != N * 2 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; N];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn alice(secret: &Secret) -> String {
        secret.issue(Kind::User, "alice", &["staff".into()], NOW, HOUR, 24 * HOUR)
    }

    #[test]
    fn token_files_round_trip_privately_and_junk_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tok");
        let s = Secret::generate();
        let t = alice(&s);
        write_token_file(&path, &t).expect("write");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_token_file(&path).expect("read"), t);
        assert_eq!(peek(&t).map(|c| c.user), Some("alice".into()));
        write_token_file(&path, "two words").expect("write");
        let err = read_token_file(&path).expect_err("junk");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        assert!(read_token_file(&dir.path().join("none")).is_err());
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1, "no temporary left");
    }

    #[test]
    fn a_service_minter_reuses_its_token_until_half_its_life() {
        let s = std::sync::Arc::new(Secret::generate());
        let m = ServiceMinter::new(s.clone(), "chunkserver");
        let first = m.token(NOW);
        assert_eq!(m.token(NOW + SERVICE_TOKEN_LIFETIME_MS / 2 - 1), first);
        let next = m.token(NOW + SERVICE_TOKEN_LIFETIME_MS / 2);
        assert_ne!(next, first);
        let c = s.verify(&next, NOW + SERVICE_TOKEN_LIFETIME_MS - 1).expect("valid");
        assert_eq!((c.kind, c.user.as_str()), (Kind::Service, "chunkserver"));
    }

    #[test]
    fn a_token_verifies_names_its_user_and_expires() {
        let s = Secret::generate();
        let t = alice(&s);
        let c = s.verify(&t, NOW + 1).expect("valid");
        assert_eq!(c.principal(), Principal { user: "alice".into(), groups: vec!["staff".into()] });
        assert_eq!(c.kind, Kind::User);
        assert_eq!(s.verify(&t, NOW + HOUR), Err(AuthError::Expired { user: "alice".into() }));
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let s = Secret::generate();
        let t = alice(&s);
        // Another cluster's token.
        assert!(matches!(Secret::generate().verify(&t, NOW), Err(AuthError::BadToken(_))));
        // A payload changed to name someone else, the MAC kept.
        let (_, mac) = t.split_once('.').expect("dot");
        let mut claims = s.verify(&t, NOW).expect("valid");
        claims.user = "root".into();
        let forged = format!(
            "{}.{mac}",
            URL_SAFE_NO_PAD.encode(postcard::to_allocvec(&claims).expect("encode"))
        );
        assert!(matches!(s.verify(&forged, NOW), Err(AuthError::BadToken(_))));
        for junk in ["", ".", "a.b", "!!!.???", &"A".repeat(MAX_TOKEN_LEN + 1)] {
            assert!(matches!(s.verify(junk, NOW), Err(AuthError::BadToken(_))), "{junk:?}");
        }
    }

    #[test]
    fn renewal_extends_up_to_the_maximum_and_rotation_keeps_old_tokens() {
        let s = Secret::generate();
        let t = alice(&s);
        let later = NOW + HOUR - 1;
        let renewed = s.renew(&t, later, HOUR).expect("renew");
        assert!(s.verify(&renewed, NOW + 2 * HOUR - 2).is_ok());
        let last = s.verify(&renewed, later).expect("valid");
        assert_eq!(last.id, s.verify(&t, NOW).expect("valid").id, "renewal keeps the id");
        let mut tok = t;
        let mut at = NOW;
        while let Ok(next) = s.renew(&tok, at, HOUR) {
            tok = next;
            at += HOUR - 1;
            assert!(at <= NOW + 25 * HOUR, "renewed past the maximum");
        }
        let rotated = s.rotated();
        assert!(rotated.verify(&alice(&s), NOW).is_ok(), "old key still verifies");
        assert!(s.verify(&alice(&rotated), NOW).is_err(), "the new key signs");
    }

    #[test]
    fn the_secret_file_is_created_private_and_an_exposed_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        let s = Secret::generate().rotated();
        s.create(&path).expect("create");
        assert_eq!(fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
        let loaded = Secret::load(&path).expect("load");
        assert!(loaded.verify(&alice(&s), NOW).is_ok());
        assert!(s.create(&path).is_err(), "never overwritten");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(Secret::load(&path), Err(SecretError::Exposed { .. })));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        fs::write(&path, "1 abc\n").expect("write");
        let err = Secret::load(&path).expect_err("malformed").to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Random text and mutations of a real token never panic and never verify.
        #[test]
        fn random_and_mutated_tokens_never_verify(
            junk in ".{0,300}",
            flip in 0usize..400,
            bit in 0u8..8,
        ) {
            let s = Secret::generate();
            prop_assert!(s.verify(&junk, NOW).is_err());
            let t = alice(&s);
            let mut bytes = t.clone().into_bytes();
            let i = flip % bytes.len();
            bytes[i] ^= 1 << bit;
            if let Ok(m) = String::from_utf8(bytes)
                && m != t
            {
                prop_assert!(s.verify(&m, NOW).is_err(), "{m}");
            }
        }

        /// What is signed verifies back to the same claims.
        #[test]
        fn claims_round_trip(user in "[a-z]{1,20}", groups in proptest::collection::vec("[a-z]{1,10}", 0..5), life in 1i64..1_000_000) {
            let s = Secret::generate();
            let t = s.issue(Kind::Service, &user, &groups, NOW, life, life * 2);
            let c = s.verify(&t, NOW).expect("valid");
            prop_assert_eq!(c.user, user);
            prop_assert_eq!(c.groups, groups);
            prop_assert_eq!(c.expires_ms, NOW + life);
        }
    }
}
