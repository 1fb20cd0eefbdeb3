//! Record framing shared by log segments and checkpoints:
//! `[u32 LE payload length][u32 LE CRC32 of payload][payload]`.
//!
//! Reading tells a record apart from the two ways a file can end badly. A *torn* record is
//! what a crash in the middle of an append leaves: a short header, or a header whose
//! length runs past the end of the file. A record that is all there but fails its
//! checksum is *corrupt*, even the last one: its bytes were written and synced (an append
//! is one write of header and payload), so they have changed since, and cutting it would
//! silently drop a change that may have been acknowledged.

/// Bytes before each payload: its length and its CRC32.
pub const HEADER_LEN: usize = 8;

/// Largest payload accepted. A length above it cannot come from a torn append (the header
/// is written whole with the payload behind it), so it is reported as corruption.
pub const MAX_PAYLOAD: u32 = 64 << 20;

/// Appends one framed payload to `out`.
pub fn push(payload: &[u8], out: &mut Vec<u8>) {
    // Payloads are encoded records, far below MAX_PAYLOAD; a larger one is a bug.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends one framed protobuf message to `out`.
pub fn push_message<M: prost::Message>(msg: &M, out: &mut Vec<u8>) {
    push(&msg.encode_to_vec(), out);
}

/// What the next frame of a buffer is.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole record whose checksum matches.
    Record {
        /// Offset of its header in the buffer.
        offset: u64,
        /// The payload.
        payload: &'a [u8],
    },
    /// The buffer ends cleanly here.
    End,
    /// A record cut short by a crash mid-append; nothing follows it.
    Torn {
        /// Offset of its header.
        offset: u64,
        /// What is missing.
        reason: String,
    },
    /// A record that cannot be trusted with data after it (or an impossible length).
    Corrupt {
        /// Offset of its header.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Walks the frames of a buffer in order.
#[derive(Debug)]
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Frames<'a> {
    /// Frames of `buf`, from its start.
    pub fn new(buf: &'a [u8]) -> Frames<'a> {
        Frames { buf, pos: 0 }
    }

    /// The next frame. After `Torn` or `Corrupt` the walk stops where it is.
    pub fn next_frame(&mut self) -> Frame<'a> {
        let rest = &self.buf[self.pos..];
        let offset = self.pos as u64;
        if rest.is_empty() {
            return Frame::End;
        }
        if rest.len() < HEADER_LEN {
            return Frame::Torn {
                offset,
                reason: format!("record header cut short ({} of {HEADER_LEN} bytes)", rest.len()),
            };
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_PAYLOAD {
            return Frame::Corrupt {
                offset,
                reason: format!("record length {len} exceeds the maximum {MAX_PAYLOAD}"),
            };
        }
        let body = &rest[HEADER_LEN..];
        let len = len as usize;
        if body.len() < len {
            return Frame::Torn {
                offset,
                reason: format!("record payload cut short ({} of {len} bytes)", body.len()),
            };
        }
        let payload = &body[..len];
        let actual = crc32fast::hash(payload);
        if actual != crc {
            return Frame::Corrupt {
                offset,
                reason: format!(
                    "record checksum mismatch on a complete record (stored {crc:#010x}, \
                     computed {actual:#010x})"
                ),
            };
        }
        self.pos += HEADER_LEN + len;
        Frame::Record { offset, payload }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            push(p, &mut out);
        }
        out
    }

    fn records(buf: &[u8]) -> (Vec<Vec<u8>>, Frame<'_>) {
        let mut f = Frames::new(buf);
        let mut out = Vec::new();
        loop {
            match f.next_frame() {
                Frame::Record { payload, .. } => out.push(payload.to_vec()),
                other => return (out, other),
            }
        }
    }

    #[test]
    fn round_trip() {
        let buf = framed(&[b"one", b"", b"three"]);
        let (got, end) = records(&buf);
        assert_eq!(got, vec![b"one".to_vec(), vec![], b"three".to_vec()]);
        assert_eq!(end, Frame::End);
    }

    #[test]
    fn torn_tails_are_told_apart() {
        let buf = framed(&[b"one", b"two"]);
        let second = (HEADER_LEN + 3) as u64;
        // Every cut inside the second record is torn at its offset.
        for cut in second as usize + 1..buf.len() {
            let (got, end) = records(&buf[..cut]);
            assert_eq!(got.len(), 1, "cut at {cut}");
            assert!(matches!(end, Frame::Torn { offset, .. } if offset == second), "cut at {cut}");
        }
    }

    #[test]
    fn a_complete_last_record_with_a_bad_checksum_is_corrupt_not_torn() {
        let mut buf = framed(&[b"one", b"two"]);
        let second = (HEADER_LEN + 3) as u64;
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        let (got, end) = records(&buf);
        assert_eq!(got.len(), 1);
        assert!(
            matches!(end, Frame::Corrupt { offset, ref reason } if offset == second && reason.contains("complete record")),
            "{end:?}"
        );
    }

    #[test]
    fn mid_buffer_damage_is_corruption() {
        let mut buf = framed(&[b"one", b"two"]);
        buf[HEADER_LEN] ^= 0x01;
        let (got, end) = records(&buf);
        assert!(got.is_empty());
        assert!(
            matches!(end, Frame::Corrupt { offset: 0, ref reason } if reason.contains("checksum"))
        );
        let mut huge = framed(&[b"one"]);
        huge[3] = 0xff;
        assert!(matches!(records(&huge).1, Frame::Corrupt { offset: 0, .. }));
    }
}

/// Damage generators shared by the property tests of everything framed (log segments,
/// checkpoints).
#[cfg(test)]
pub(crate) mod proptests {
    use proptest::prelude::*;
    use proptest::sample::Index;
    use proto::alloc_probe::largest_allocation;

    use super::*;

    /// One way a framed file can go bad on disk.
    #[derive(Debug, Clone)]
    pub(crate) enum Damage {
        /// One bit of one byte flipped.
        Flip { at: Index, bit: u8 },
        /// The file cut short (a crash, a lost tail).
        Cut(Index),
        /// Bytes after the end (a zero-filled or reused tail).
        Append(Vec<u8>),
        /// A frame's length field replaced.
        Length { frame: Index, len: u32 },
    }

    /// Any [`Damage`], with lengths that run past the end or over [`MAX_PAYLOAD`].
    pub(crate) fn damage() -> impl Strategy<Value = Damage> {
        let len = prop_oneof![0..64u32, any::<u32>(), MAX_PAYLOAD + 1..=u32::MAX, Just(u32::MAX)];
        prop_oneof![
            (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Damage::Flip { at, bit }),
            any::<Index>().prop_map(Damage::Cut),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..40),
                (1..40usize).prop_map(|n| vec![0; n]),
            ]
            .prop_map(Damage::Append),
            (any::<Index>(), len).prop_map(|(frame, len)| Damage::Length { frame, len }),
        ]
    }

    /// Where the frames of `buf` start (a walk up to its end or first bad frame).
    pub(crate) fn starts(buf: &[u8]) -> Vec<usize> {
        let mut f = Frames::new(buf);
        let mut out = Vec::new();
        while let Frame::Record { offset, .. } = f.next_frame() {
            out.push(offset as usize);
        }
        out
    }

    impl Damage {
        /// Damages `buf`, whose frames start at `starts`. Returns the first frame no
        /// longer as written (`starts.len()` when only bytes after the last were added),
        /// or `None` when nothing changed.
        pub(crate) fn apply(&self, buf: &mut Vec<u8>, starts: &[usize]) -> Option<usize> {
            let frame_of = |at: usize| starts.iter().rposition(|&s| s <= at).unwrap_or(0);
            match self {
                Damage::Flip { at, bit } => {
                    if buf.is_empty() {
                        return None;
                    }
                    let at = at.index(buf.len());
                    buf[at] ^= 1 << bit;
                    Some(frame_of(at))
                }
                Damage::Cut(at) => {
                    if buf.is_empty() {
                        return None;
                    }
                    let at = at.index(buf.len());
                    buf.truncate(at);
                    Some(frame_of(at))
                }
                Damage::Append(bytes) => {
                    buf.extend_from_slice(bytes);
                    Some(starts.len())
                }
                Damage::Length { frame, len } => {
                    if starts.is_empty() {
                        return None;
                    }
                    let i = frame.index(starts.len());
                    let field = &mut buf[starts[i]..starts[i] + 4];
                    if field == len.to_le_bytes() {
                        return None;
                    }
                    field.copy_from_slice(&len.to_le_bytes());
                    Some(i)
                }
            }
        }
    }

    fn framed(payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for p in payloads {
            starts.push(out.len());
            push(p, &mut out);
        }
        (out, starts)
    }

    /// Every frame of `buf` up to the first that is not a record.
    fn walk(buf: &[u8]) -> (Vec<(usize, Vec<u8>)>, Frame<'_>) {
        let mut f = Frames::new(buf);
        let mut out = Vec::new();
        loop {
            match f.next_frame() {
                Frame::Record { offset, payload } => out.push((offset as usize, payload.to_vec())),
                other => return (out, other),
            }
        }
    }

    fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn frames_round_trip(payloads in payloads()) {
            let (buf, starts) = framed(&payloads);
            let (got, end) = walk(&buf);
            prop_assert_eq!(end, Frame::End);
            let want: Vec<(usize, Vec<u8>)> = starts.into_iter().zip(payloads).collect();
            prop_assert_eq!(got, want);
        }

        /// Damage is never read as a record: the frames before it come back as written,
        /// the damaged one is torn or corrupt at its own offset (a cut exactly between
        /// frames is a clean end), and nothing is allocated for a length field.
        #[test]
        fn damaged_frames_are_never_records(payloads in payloads(), damage in damage()) {
            let (mut buf, starts) = framed(&payloads);
            let hit = damage.apply(&mut buf, &starts);
            let ((got, end), largest) = largest_allocation(|| walk(&buf));
            prop_assert!(largest <= 1024, "walking {} bytes allocated {}", buf.len(), largest);
            let written: Vec<(usize, Vec<u8>)> = starts.iter().copied().zip(payloads.iter().cloned()).collect();
            let Some(i) = hit else {
                prop_assert_eq!(got, written);
                prop_assert_eq!(end, Frame::End);
                return Ok(());
            };
            // Appended bytes may by chance hold frames (eight zero bytes are an empty one).
            let kept = i.min(got.len());
            prop_assert_eq!(&got[..kept], &written[..kept]);
            if i == payloads.len() {
                prop_assert!(got.len() >= i);
                return Ok(());
            }
            prop_assert_eq!(got.len(), i, "damaged frame {} read as a record", i);
            let at = starts[i] as u64;
            match (&damage, end) {
                (Damage::Cut(_), Frame::End) => prop_assert_eq!(buf.len() as u64, at),
                (_, Frame::Torn { offset, .. } | Frame::Corrupt { offset, .. }) => prop_assert_eq!(offset, at),
                (_, other) => prop_assert!(false, "damage at frame {} gave {:?}", i, other),
            }
        }
    }
}
