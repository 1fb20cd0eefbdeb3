//! The master's chunk access tokens (HDFS's `BlockTokenSecretManager`): the keys, made
//! from the operating system's randomness and rotated every
//! [`KEY_ROTATION_MS`](security::chunk_token::KEY_ROTATION_MS), and the signing of the
//! tokens that ride in every answer sending someone to chunk data (see
//! [`security::chunk_token`] for the format and the rules chunkservers check).
//!
//! This lives beside the core, not in it: the core stays free of randomness and clocks
//! (the simulator replays it by seed), and tokens change nothing it decides. The gRPC
//! edge signs as it translates answers: locations get read tokens, `AddChunk` and
//! `UpdatePipeline` write tokens, copy orders replicate tokens, lease-recovery orders
//! recover tokens. Keys are never logged nor written to disk: a restarted master makes
//! new ones and chunkservers get them in its `Register` and `Heartbeat` answers, so a
//! token from before the restart is refused and its bearer asks the master again.

use std::sync::Mutex;

use proto::gfs as pb;
use rand::RngCore;
use security::chunk_token::{KEY_ROTATION_MS, Modes, SECRET_LEN, TokenMinter};

/// The master's token keys and signer; shared by every service (behind the driver).
#[derive(Debug)]
pub struct ChunkTokens {
    minter: Mutex<TokenMinter>,
}

fn secret() -> [u8; SECRET_LEN] {
    let mut s = [0u8; SECRET_LEN];
    rand::rng().fill_bytes(&mut s);
    s
}

impl ChunkTokens {
    /// Fresh keys at `now_ms`, signing tokens valid for `lifetime_ms`.
    pub fn new(now_ms: i64, lifetime_ms: i64) -> ChunkTokens {
        let first_id = rand::rng().next_u32();
        let minter =
            TokenMinter::new(first_id, secret(), secret(), now_ms, KEY_ROTATION_MS, lifetime_ms);
        ChunkTokens { minter: Mutex::new(minter) }
    }

    fn minter(&self, now_ms: i64) -> std::sync::MutexGuard<'_, TokenMinter> {
        // The minter is never left half-changed: a poisoned lock still holds good keys.
        let mut m = self.minter.lock().unwrap_or_else(|p| p.into_inner());
        if m.needs_rotation(now_ms) {
            m.rotate(secret(), now_ms);
        }
        m
    }

    /// A token allowing `modes` on chunk `handle` at `version`, issued at `now_ms`.
    pub fn sign(&self, handle: u64, version: u64, modes: Modes, now_ms: i64) -> Vec<u8> {
        self.minter(now_ms).sign(handle, version, modes, now_ms)
    }

    /// The keys chunkservers must hold at `now_ms`, as the wire has them.
    pub fn keys(&self, now_ms: i64) -> Vec<pb::ChunkTokenKey> {
        self.minter(now_ms)
            .keys()
            .iter()
            .map(|k| pb::ChunkTokenKey {
                id: k.id,
                secret: k.secret.to_vec().into(),
                expires_ms: k.expires_ms,
            })
            .collect()
    }
}
