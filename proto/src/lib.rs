//! The wire protocol: gRPC services generated from `proto/gfs/v1/*.proto`, and the CRC
//! framing that writers, chunkservers and readers share; and, versioned apart from it,
//! the master's on-disk schema ([`disk`]).
//!
//! Generated types stay here; each service translates them to its own domain types at its
//! edge. The small modules beside them are conventions every process must agree on:
//! [`checksum`] (packets carry one CRC32 per 64 KiB block), [`path`] (what a valid path is),
//! [`reason`] (the machine-readable reason an error status carries) and [`size`] (byte sizes
//! on command lines).
#![warn(missing_docs)]

#[cfg(any(test, feature = "alloc-probe"))]
pub mod alloc_probe;
pub mod checksum;
pub mod clock;
pub mod disk;
pub mod logging;
pub mod path;
pub mod process;
pub mod reason;
pub mod size;

#[cfg(test)]
#[global_allocator]
static ALLOC: alloc_probe::Probe = alloc_probe::Probe;

/// Generated code for package `gfs.v1`: the master's three services (`ClientProtocol`,
/// `ChunkserverProtocol`, `AdminProtocol`) and the chunkserver's.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod gfs {
    tonic::include_proto!("gfs.v1");
}

/// Generated code for package `mapred.v1` (coordinator and shuffle services).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod mapred {
    tonic::include_proto!("mapred.v1");
}
