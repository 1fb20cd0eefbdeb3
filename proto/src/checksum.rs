//! CRC32 framing of chunk data: one CRC32 (IEEE, as crc32fast computes it) per block of
//! [`BLOCK_SIZE`] bytes, the last block of a chunk possibly shorter.
//!
//! The writing client computes the CRCs, each chunkserver verifies them before it stores a
//! packet and keeps them beside the data, and every read verifies the blocks it touches.

use thiserror::Error;

/// Bytes covered by one CRC32.
pub const BLOCK_SIZE: usize = 64 * 1024;

/// A block whose bytes do not match their CRC, or CRCs that do not fit the data.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChecksumError {
    /// The block's computed CRC differs from the expected one.
    #[error(
        "checksum mismatch in block {block} (expected {expected:#010x}, computed {actual:#010x})"
    )]
    Mismatch {
        /// Index of the block, counted from the start of the data checked.
        block: usize,
        /// CRC that came with the data.
        expected: u32,
        /// CRC of the bytes as they are.
        actual: u32,
    },
    /// The number of CRCs does not match the number of blocks in the data.
    #[error("{crcs} checksums for {len} bytes (expected {expected})")]
    CountMismatch {
        /// CRCs supplied.
        crcs: usize,
        /// Bytes of data.
        len: usize,
        /// CRCs the data needs.
        expected: usize,
    },
}

/// Number of blocks (and so CRCs) that `len` bytes span.
pub fn block_count(len: usize) -> usize {
    len.div_ceil(BLOCK_SIZE)
}

/// CRC32 of one block.
pub fn crc(block: &[u8]) -> u32 {
    crc32fast::hash(block)
}

/// CRC32 of every block of `data`, in order.
pub fn block_crcs(data: &[u8]) -> Vec<u32> {
    data.chunks(BLOCK_SIZE).map(crc).collect()
}

/// Checks `data` against one CRC per block.
///
/// # Errors
/// [`ChecksumError::CountMismatch`] if `crcs` does not have one entry per block, and
/// [`ChecksumError::Mismatch`] naming the first block whose bytes do not match.
pub fn verify(data: &[u8], crcs: &[u32]) -> Result<(), ChecksumError> {
    let expected = block_count(data.len());
    if crcs.len() != expected {
        return Err(ChecksumError::CountMismatch { crcs: crcs.len(), len: data.len(), expected });
    }
    for (block, (bytes, &want)) in data.chunks(BLOCK_SIZE).zip(crcs).enumerate() {
        let actual = crc(bytes);
        if actual != want {
            return Err(ChecksumError::Mismatch { block, expected: want, actual });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_count_rounds_up() {
        assert_eq!(block_count(0), 0);
        assert_eq!(block_count(1), 1);
        assert_eq!(block_count(BLOCK_SIZE), 1);
        assert_eq!(block_count(BLOCK_SIZE + 1), 2);
        assert_eq!(block_count(3 * BLOCK_SIZE), 3);
    }

    #[test]
    fn crcs_cover_a_short_tail() {
        let data: Vec<u8> = (0..BLOCK_SIZE * 2 + 10).map(|i| (i % 251) as u8).collect();
        let crcs = block_crcs(&data);
        assert_eq!(crcs.len(), 3);
        assert_eq!(crcs[2], crc32fast::hash(&data[2 * BLOCK_SIZE..]));
        assert_eq!(verify(&data, &crcs), Ok(()));
    }

    #[test]
    fn a_flipped_bit_names_its_block() {
        let mut data = vec![7u8; BLOCK_SIZE * 3];
        let crcs = block_crcs(&data);
        data[BLOCK_SIZE + 5] ^= 0x10;
        match verify(&data, &crcs) {
            Err(ChecksumError::Mismatch { block, .. }) => assert_eq!(block, 1),
            other => panic!("expected a mismatch in block 1, got {other:?}"),
        }
    }

    #[test]
    fn wrong_crc_count_is_refused() {
        let data = vec![0u8; BLOCK_SIZE + 1];
        assert!(matches!(
            verify(&data, &[0]),
            Err(ChecksumError::CountMismatch { crcs: 1, expected: 2, .. })
        ));
        assert_eq!(verify(&[], &[]), Ok(()));
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    /// `len` bytes drawn from `seed` (filling them through proptest is slow at 64 KiB).
    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// A chunkserver trusts packet data only through `verify`: every single flipped
        /// bit is caught, in the block it hit, and any other count of CRCs is refused.
        #[test]
        fn verify_catches_every_flip_and_count(
            len in 0..3 * BLOCK_SIZE + 100,
            seed in any::<u64>(),
            flip in any::<prop::sample::Index>(),
            bit in 0..8u8,
            extra in 1..3usize,
        ) {
            let mut data = bytes(len, seed);
            let crcs = block_crcs(&data);
            prop_assert_eq!(crcs.len(), block_count(len));
            prop_assert_eq!(verify(&data, &crcs), Ok(()));
            let mut more = crcs.clone();
            more.extend(std::iter::repeat_n(0, extra));
            let is_count_mismatch = matches!(verify(&data, &more), Err(ChecksumError::CountMismatch { .. }));
            prop_assert!(is_count_mismatch);
            if !crcs.is_empty() {
                let fewer = &crcs[..crcs.len() - 1];
                let is_count_mismatch = matches!(verify(&data, fewer), Err(ChecksumError::CountMismatch { .. }));
                prop_assert!(is_count_mismatch);
            }
            if len > 0 {
                let at = flip.index(len);
                data[at] ^= 1 << bit;
                match verify(&data, &crcs) {
                    Err(ChecksumError::Mismatch { block, .. }) => prop_assert_eq!(block, at / BLOCK_SIZE),
                    other => prop_assert!(false, "flip at {} not caught: {:?}", at, other),
                }
            }
        }
    }
}
