//! The master's identifiers, in one place so that the modules using them (the namespace,
//! the chunk map, the cluster table) depend on this module and not on each other. Each
//! is parsed from the wire once, at the gRPC edge.

/// Names a chunk for the lifetime of the cluster; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkHandle(pub u64);

/// Index of a chunkserver in the master's table; stable while the master runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerIdx(pub u32);

/// Identifies an inode while it exists: its slot in the inode table (low 32 bits) and
/// the slot's generation (high 32 bits), so an id kept past its inode's deletion never
/// names the inode that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InodeId(pub u64);

impl InodeId {
    pub(crate) fn new(slot: u32, generation: u32) -> InodeId {
        InodeId(u64::from(generation) << 32 | u64::from(slot))
    }

    pub(crate) fn slot(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}
