//! The `.meta` file beside every replica's `.data` file: a fixed header followed by one
//! CRC32 per 64 KiB block of the data.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | field |
//! | ------ | ---- | ----- |
//! | 0      | 4    | magic `b"GFSM"` |
//! | 4      | 4    | format version (`1`) |
//! | 8      | 8    | chunk handle |
//! | 16     | 8    | chunk version |
//! | 24     | 8    | data length in bytes (`0` while the replica is being written) |
//! | 32     | 4    | block size (`65536`) |
//! | 36     | 4    | CRC32 of bytes 0..36 (protects the header itself) |
//! | 40     | 4 * n | CRC32 of block `i` of the data, `i = 0..n`; the last may cover a short tail |
//!
//! A replica being written (`rbw/`) carries length 0 in its header: its length is the
//! longest prefix of blocks whose CRCs verify, so a crash mid-write loses at most the
//! unacknowledged tail (see [`crate::store`] recovery). Finalizing rewrites the header
//! with the real length before the fsync.

use std::fs::File;
use std::os::unix::fs::FileExt;

use proto::checksum::BLOCK_SIZE;

use crate::error::{Error, Result};

/// Bytes before the first block CRC.
pub const HEADER_LEN: u64 = 40;
const MAGIC: [u8; 4] = *b"GFSM";
const FORMAT_VERSION: u32 = 1;

/// The decoded header of a `.meta` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Chunk handle the replica belongs to.
    pub handle: u64,
    /// Chunk version the replica was written at.
    pub version: u64,
    /// Data length in bytes (0 for a replica still being written).
    pub length: u64,
}

impl Header {
    /// The header's on-disk bytes, CRC included.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut buf = [0u8; HEADER_LEN as usize];
        buf[0..4].copy_from_slice(&MAGIC);
        buf[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf[8..16].copy_from_slice(&self.handle.to_le_bytes());
        buf[16..24].copy_from_slice(&self.version.to_le_bytes());
        buf[24..32].copy_from_slice(&self.length.to_le_bytes());
        buf[32..36].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        let crc = crc32fast::hash(&buf[0..36]);
        buf[36..40].copy_from_slice(&crc.to_le_bytes());
        buf
    }

    /// Parses and checks a header; `what` names the file in errors.
    ///
    /// # Errors
    /// [`Error::BadMeta`] if the bytes are short, the magic, format version or block size
    /// is unknown, or the header CRC does not match.
    pub fn decode(buf: &[u8], what: &str) -> Result<Header> {
        let bad = |reason: String| Error::BadMeta { path: what.to_owned(), reason };
        if buf.len() < HEADER_LEN as usize {
            return Err(bad(format!("header is {} bytes, expected {HEADER_LEN}", buf.len())));
        }
        let u32_at = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[i..i + 8]);
            u64::from_le_bytes(b)
        };
        if buf[0..4] != MAGIC {
            return Err(bad("bad magic".to_owned()));
        }
        let stored_crc = u32_at(36);
        let crc = crc32fast::hash(&buf[0..36]);
        if stored_crc != crc {
            return Err(bad(format!(
                "header checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"
            )));
        }
        let format = u32_at(4);
        if format != FORMAT_VERSION {
            return Err(bad(format!("unknown format version {format}")));
        }
        let block = u32_at(32);
        if block as usize != BLOCK_SIZE {
            return Err(bad(format!("block size {block}, expected {BLOCK_SIZE}")));
        }
        Ok(Header { handle: u64_at(8), version: u64_at(16), length: u64_at(24) })
    }
}

/// File offset of block `block`'s CRC.
pub fn crc_offset(block: u64) -> u64 {
    HEADER_LEN + 4 * block
}

/// Reads the CRCs of blocks `first..first + count` from an open `.meta` file.
///
/// # Errors
/// [`Error::Io`] if the file is shorter than that (or unreadable).
pub fn read_crcs(meta: &File, first: u64, count: usize, what: &str) -> Result<Vec<u32>> {
    let mut raw = vec![0u8; count * 4];
    meta.read_exact_at(&mut raw, crc_offset(first))
        .map_err(|e| Error::io(format!("read checksums of {what}"), e))?;
    Ok(raw.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// Encodes CRCs as the little-endian bytes stored after the header.
pub fn encode_crcs(crcs: &[u32]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(crcs.len() * 4);
    for c in crcs {
        raw.extend_from_slice(&c.to_le_bytes());
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header { handle: 0xdead_beef, version: 7, length: 123_456 };
        assert_eq!(Header::decode(&h.encode(), "x").ok(), Some(h));
    }

    #[test]
    fn any_flipped_header_byte_is_detected() {
        let h = Header { handle: 1, version: 2, length: 3 };
        let good = h.encode();
        for i in 0..good.len() {
            let mut buf = good;
            buf[i] ^= 0x01;
            assert!(Header::decode(&buf, "x").is_err(), "flip at byte {i} went unnoticed");
        }
        assert!(Header::decode(&good[..10], "x").is_err());
    }

    #[test]
    fn crcs_encode_little_endian() {
        assert_eq!(encode_crcs(&[0x0403_0201]), vec![1, 2, 3, 4]);
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn headers_round_trip(handle in any::<u64>(), version in any::<u64>(), length in any::<u64>()) {
            let h = Header { handle, version, length };
            prop_assert_eq!(Header::decode(&h.encode(), "x").ok(), Some(h));
        }

        /// The header CRC covers every field: a header decodes only from exactly the bytes
        /// its encoding gives, whatever follows them, and one flipped bit is always caught.
        #[test]
        fn only_a_true_header_decodes(
            bytes in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                (any::<(u64, u64, u64)>(), any::<prop::sample::Index>(), 0..8u8, prop::collection::vec(any::<u8>(), 0..8))
                    .prop_map(|((handle, version, length), at, bit, tail)| {
                        let mut b = Header { handle, version, length }.encode().to_vec();
                        let i = at.index(b.len());
                        b[i] ^= 1 << bit;
                        b.extend(tail);
                        b
                    }),
            ],
        ) {
            if let Ok(h) = Header::decode(&bytes, "x") {
                prop_assert_eq!(&h.encode()[..], &bytes[..HEADER_LEN as usize]);
            }
        }
    }
}
