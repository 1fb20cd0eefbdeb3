//! How a writer cuts a byte stream into chunks and packets, as the write protocol needs:
//! packets start on a 64 KiB block boundary of their chunk, every packet but a chunk's
//! last holds whole blocks, and each carries one CRC32 per block.
//!
//! This is pure arithmetic, kept apart from [`writer`](crate::writer) so it can be tested
//! exhaustively on the awkward sizes (0, 1, one block, one block + 1, chunk boundaries).

use bytes::Bytes;
use proto::checksum::block_crcs;
use proto::gfs;

/// The next packet to send: how many buffered bytes it takes, and whether it ends the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NextPacket {
    /// Bytes of data in the packet.
    pub len: usize,
    /// True when the packet completes its chunk (`last` on the wire).
    pub last: bool,
}

/// Decides the next packet given `buffered` bytes waiting, `in_chunk` bytes of the current
/// chunk already sent, and whether the stream is ending (`flush`).
///
/// `packet_size` must be a whole number of blocks, so packet offsets stay block aligned.
/// Returns `None` when more data should be buffered first (or there is nothing to send).
pub(crate) fn next_packet(
    buffered: usize,
    in_chunk: u64,
    chunk_size: u64,
    packet_size: usize,
    flush: bool,
) -> Option<NextPacket> {
    let remaining = chunk_size.saturating_sub(in_chunk);
    if buffered == 0 || remaining == 0 {
        return None;
    }
    if buffered as u64 >= remaining {
        // Enough to finish the chunk: fill it, in packet-size steps.
        return Some(if remaining <= packet_size as u64 {
            NextPacket { len: remaining as usize, last: true }
        } else {
            NextPacket { len: packet_size, last: false }
        });
    }
    if buffered >= packet_size {
        return Some(NextPacket { len: packet_size, last: false });
    }
    flush.then_some(NextPacket { len: buffered, last: true })
}

/// A wire packet for `data` at `offset` in its chunk, with one CRC per 64 KiB block.
pub(crate) fn make_packet(seqno: u64, offset: u64, data: Bytes, last: bool) -> gfs::Packet {
    let crcs = block_crcs(&data);
    gfs::Packet { seqno, offset, data, crcs, last }
}

#[cfg(test)]
mod tests {
    use proto::checksum::{BLOCK_SIZE, block_count};

    use super::*;

    /// A packet as planned for a whole file: (chunk index, offset in chunk, len, crcs, last).
    type Planned = (usize, u64, usize, usize, bool);

    /// Plans a whole file of `len` bytes written in one go, as the writer would.
    fn plan(len: usize, chunk_size: u64, packet_size: usize) -> Vec<Planned> {
        let mut out = Vec::new();
        let mut buffered = len;
        let (mut chunk, mut in_chunk) = (0, 0u64);
        while let Some(p) = next_packet(buffered, in_chunk, chunk_size, packet_size, true) {
            out.push((chunk, in_chunk, p.len, block_count(p.len), p.last));
            buffered -= p.len;
            in_chunk += p.len as u64;
            if p.last {
                chunk += 1;
                in_chunk = 0;
            }
        }
        out
    }

    const MIB: usize = 1 << 20;

    #[test]
    fn empty_file_has_no_packets() {
        assert!(plan(0, 64 << 20, MIB).is_empty());
    }

    #[test]
    fn small_files_are_one_last_packet() {
        assert_eq!(plan(1, 64 << 20, MIB), vec![(0, 0, 1, 1, true)]);
        assert_eq!(plan(BLOCK_SIZE, 64 << 20, MIB), vec![(0, 0, BLOCK_SIZE, 1, true)]);
        assert_eq!(plan(BLOCK_SIZE + 1, 64 << 20, MIB), vec![(0, 0, BLOCK_SIZE + 1, 2, true)]);
    }

    #[test]
    fn a_packet_and_a_byte() {
        assert_eq!(
            plan(MIB + 1, 64 << 20, MIB),
            vec![(0, 0, MIB, 16, false), (0, MIB as u64, 1, 1, true)]
        );
    }

    #[test]
    fn chunk_boundaries_end_chunks() {
        let chunk = 2 * MIB as u64;
        // Exactly one chunk: its second packet is last, no empty trailing packet.
        assert_eq!(
            plan(2 * MIB, chunk, MIB),
            vec![(0, 0, MIB, 16, false), (0, MIB as u64, MIB, 16, true)]
        );
        // One byte more starts a second chunk at offset 0.
        assert_eq!(
            plan(2 * MIB + 1, chunk, MIB),
            vec![(0, 0, MIB, 16, false), (0, MIB as u64, MIB, 16, true), (1, 0, 1, 1, true)]
        );
    }

    #[test]
    fn chunk_sizes_off_the_block_grid_end_with_a_short_last_packet() {
        let chunk = (BLOCK_SIZE * 3 + 100) as u64;
        let p = plan(BLOCK_SIZE * 4, chunk, 2 * BLOCK_SIZE);
        assert_eq!(
            p,
            vec![
                (0, 0, 2 * BLOCK_SIZE, 2, false),
                (0, 2 * BLOCK_SIZE as u64, BLOCK_SIZE + 100, 2, true),
                (1, 0, BLOCK_SIZE - 100, 1, true),
            ]
        );
    }

    #[test]
    fn every_packet_but_the_last_is_whole_blocks_and_aligned() {
        for len in [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, 3 * MIB + 7, 5 * MIB] {
            for (_, off, plen, _, last) in plan(len, 2 * MIB as u64, MIB) {
                assert_eq!(off % BLOCK_SIZE as u64, 0, "len {len}");
                if !last {
                    assert_eq!(plen % BLOCK_SIZE, 0, "len {len}");
                }
            }
            let total: usize = plan(len, 2 * MIB as u64, MIB).iter().map(|p| p.2).sum();
            assert_eq!(total, len);
        }
    }

    #[test]
    fn without_flush_small_tails_wait() {
        assert_eq!(next_packet(10, 0, 64 << 20, MIB, false), None);
        assert_eq!(
            next_packet(MIB, 0, 64 << 20, MIB, false),
            Some(NextPacket { len: MIB, last: false })
        );
        // A chunk's end is sent as soon as the bytes are there, even without flush.
        assert_eq!(
            next_packet(10, (2 * MIB - 10) as u64, 2 * MIB as u64, MIB, false),
            Some(NextPacket { len: 10, last: true })
        );
    }

    #[test]
    fn packets_carry_one_crc_per_block() {
        let data = Bytes::from(vec![1u8; BLOCK_SIZE * 2 + 5]);
        let p = make_packet(3, 0, data, true);
        assert_eq!(p.crcs.len(), 3);
        assert_eq!(p.seqno, 3);
        assert!(p.last);
    }
}
