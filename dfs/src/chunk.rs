//! Chunks as a client sees them: a handle, a version, where the chunk sits in its file,
//! and its replicas in the order the master gave them (nearest first for reads, the write
//! pipeline for a new chunk).

use std::fmt;

use proto::gfs;

/// A chunk's 64-bit handle; shown as 16 hex digits, as chunkservers name its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ChunkHandle(pub u64);

impl fmt::Display for ChunkHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A chunkserver holding (or about to hold) a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The chunkserver's stable id.
    pub id: String,
    /// `host:port` of its Chunkserver service.
    pub addr: String,
    /// Its rack, e.g. `/default-rack`.
    pub rack: String,
}

impl From<gfs::ChunkserverInfo> for Replica {
    fn from(i: gfs::ChunkserverInfo) -> Replica {
        Replica { id: i.id, addr: i.addr, rack: i.rack }
    }
}

impl From<&Replica> for gfs::ChunkserverInfo {
    fn from(r: &Replica) -> gfs::ChunkserverInfo {
        gfs::ChunkserverInfo { id: r.id.clone(), addr: r.addr.clone(), rack: r.rack.clone() }
    }
}

/// One chunk of a file with its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedChunk {
    /// The chunk's handle.
    pub handle: ChunkHandle,
    /// The version replicas must have.
    pub version: u64,
    /// Offset of the chunk's first byte within the file.
    pub offset: u64,
    /// Bytes in the chunk.
    pub length: u64,
    /// Replicas, nearest first (or the write pipeline, in order).
    pub replicas: Vec<Replica>,
    /// Replicas the master knows to be corrupt (not in `replicas`).
    pub corrupt_replicas: u32,
    /// The master's chunk access token for it (read for locations, write for a
    /// pipeline), presented to the chunkservers.
    pub token: bytes::Bytes,
}

impl LocatedChunk {
    /// Offset just past the chunk's last byte within the file.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

impl From<gfs::LocatedChunk> for LocatedChunk {
    fn from(c: gfs::LocatedChunk) -> LocatedChunk {
        LocatedChunk {
            handle: ChunkHandle(c.handle),
            version: c.version,
            offset: c.offset,
            length: c.length,
            replicas: c.replicas.into_iter().map(Replica::from).collect(),
            corrupt_replicas: c.corrupt_replicas,
            token: c.token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_show_as_16_hex_digits() {
        assert_eq!(ChunkHandle(0x2a).to_string(), "000000000000002a");
    }

    #[test]
    fn converts_from_proto() {
        let c = LocatedChunk::from(gfs::LocatedChunk {
            handle: 7,
            version: 2,
            offset: 64,
            length: 10,
            replicas: vec![gfs::ChunkserverInfo {
                id: "i".into(),
                addr: "a:1".into(),
                rack: "/r".into(),
            }],
            corrupt_replicas: 1,
            token: vec![1, 2].into(),
        });
        assert_eq!(&c.token[..], &[1, 2]);
        assert_eq!(c.handle, ChunkHandle(7));
        assert_eq!(c.end(), 74);
        assert_eq!(c.replicas[0].addr, "a:1");
        assert_eq!(c.corrupt_replicas, 1);
    }
}
