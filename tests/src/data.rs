//! Test data: deterministic pseudo-random bytes (the same seed gives the same file on every
//! machine, so a failure can be reproduced) and a cheap checksum to print beside sizes.
//!
//! The generator is SplitMix64: fast enough to produce a gigabyte for the benchmark in a
//! second or two, and its output does not compress, so no layer can cheat by compressing.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Size of the buffers used to write and hash files.
const BUF: usize = 1 << 20;

/// A deterministic stream of pseudo-random bytes.
#[derive(Debug, Clone)]
pub struct DataGen {
    state: u64,
}

impl DataGen {
    /// A generator whose output depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        DataGen { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        // SplitMix64 (Steele, Lea, Flood 2014).
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let word = self.next_u64().to_le_bytes();
            tail.copy_from_slice(&word[..tail.len()]);
        }
    }

    /// The next `len` bytes of the stream.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.fill(&mut v);
        v
    }
}

/// `len` deterministic pseudo-random bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    DataGen::new(seed).bytes(len)
}

/// `n` deterministic text lines, each of 1 to 10 words `w0`..`w{vocabulary-1}` separated
/// by single spaces (no newline): input whose word counts are easy to check.
pub fn word_lines(seed: u64, n: usize, vocabulary: u16) -> Vec<Vec<u8>> {
    let mut g = DataGen::new(seed);
    let mut b = [0u8; 8];
    (0..n)
        .map(|_| {
            g.fill(&mut b);
            let words = 1 + b[0] % 10;
            let mut line = Vec::new();
            for i in 0..words {
                g.fill(&mut b);
                let w = u16::from_le_bytes([b[1], b[2]]) % vocabulary.max(1);
                if i > 0 {
                    line.push(b' ');
                }
                line.extend_from_slice(format!("w{w}").as_bytes());
            }
            line
        })
        .collect()
}

/// The lines joined into one text, each ended by a newline.
pub fn join_lines(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

/// Writes `len` deterministic pseudo-random bytes from `seed` to `path`, and returns
/// their CRC32.
///
/// # Errors
/// [`Error::Io`] if the file cannot be written.
pub fn write_random_file(path: &Path, seed: u64, len: u64) -> Result<u32> {
    let what = || format!("cannot write {}", path.display());
    let mut out = BufWriter::with_capacity(BUF, File::create(path).map_err(Error::io(what()))?);
    let mut rng = DataGen::new(seed);
    let mut buf = vec![0; BUF];
    let mut crc = crc32fast::Hasher::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(BUF as u64) as usize;
        rng.fill(&mut buf[..n]);
        crc.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(Error::io(what()))?;
        left -= n as u64;
    }
    out.flush().map_err(Error::io(what()))?;
    Ok(crc.finalize())
}

/// Size and CRC32 of a file's contents.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read.
pub fn file_checksum(path: &Path) -> Result<(u64, u32)> {
    let what = || format!("cannot read {}", path.display());
    let mut file = File::open(path).map_err(Error::io(what()))?;
    let mut buf = vec![0; BUF];
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(Error::io(what()))?;
        if n == 0 {
            return Ok((len, crc.finalize()));
        }
        crc.update(&buf[..n]);
        len += n as u64;
    }
}

/// Offset of the first byte where two files differ (`None` if they are equal, including
/// in length; a length difference counts as a difference at the shorter length).
///
/// # Errors
/// [`Error::Io`] if either file cannot be read.
pub fn first_difference(a: &Path, b: &Path) -> Result<Option<u64>> {
    let open = |p: &Path| File::open(p).map_err(Error::io(format!("cannot read {}", p.display())));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0; BUF], vec![0; BUF]);
    let mut offset = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba)
            .map_err(Error::io(format!("cannot read {}", a.display())))?;
        let nb = read_full(&mut fb, &mut bb)
            .map_err(Error::io(format!("cannot read {}", b.display())))?;
        if let Some(i) = ba[..na.min(nb)].iter().zip(&bb[..na.min(nb)]).position(|(x, y)| x != y) {
            return Ok(Some(offset + i as u64));
        }
        if na != nb {
            return Ok(Some(offset + na.min(nb) as u64));
        }
        if na == 0 {
            return Ok(None);
        }
        offset += na as u64;
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// `../shared/peers` beside the repository: the benchmark data generator and Spark jobs
/// (`gen_data.py`, `spark_jobs.py`), as CI and the developers' machines lay it out.
///
/// # Errors
/// If no `gen_data.py` is found there or beside the current directory.
pub fn peers_dir() -> std::io::Result<std::path::PathBuf> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for cand in [repo.join("../shared/peers"), std::path::PathBuf::from("../shared/peers")] {
        if cand.join("gen_data.py").is_file() {
            return cand.canonicalize();
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "cannot find ../shared/peers/gen_data.py next to the repository",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        assert_eq!(random_bytes(7, 1000), random_bytes(7, 1000));
        assert_ne!(random_bytes(7, 1000), random_bytes(8, 1000));
        // A prefix of a longer stream is the shorter stream, whatever the tail length.
        assert_eq!(random_bytes(7, 13)[..], random_bytes(7, 21)[..13]);
    }

    #[test]
    fn files_hash_and_compare() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let crc = write_random_file(&a, 1, 3 * BUF as u64 + 5).unwrap();
        assert_eq!(file_checksum(&a).unwrap(), (3 * BUF as u64 + 5, crc));
        std::fs::copy(&a, &b).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap(), None);
        let mut bytes = std::fs::read(&b).unwrap();
        bytes[BUF + 17] ^= 1;
        std::fs::write(&b, &bytes).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap(), Some(BUF as u64 + 17));
        bytes.truncate(10);
        std::fs::write(&b, &bytes).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap(), Some(10));
    }
}
