//! Client library of the chunk store, and the `dfs` command line built on it.
//!
//! A [`Client`] talks to the master for namespace operations and to chunkservers for
//! data: [`Client::create`] returns a [`FileWriter`] that streams packets through each
//! chunk's replica pipeline; [`Client::open`] returns a [`FileReader`] that reads from the
//! nearest replica and fails over to the others. Paths may be given as strings (relative
//! ones resolve against [`ClientConfig::cwd`]) or as [`DfsPath`]s.
//!
//! ```no_run
//! # async fn demo() -> dfs::Result<()> {
//! let client = dfs::Client::connect("127.0.0.1:9000", dfs::ClientConfig::default()).await?;
//! client.put_bytes("/tmp/hello", b"hello", dfs::CreateOptions::default()).await?;
//! assert_eq!(client.read_all("/tmp/hello").await?, b"hello");
//! # Ok(())
//! # }
//! ```
//!
//! Modules: [`client`] (connection, namespace), [`retry`] (riding through a master
//! restart), [`masters`] (finding the leader of a replicated master group), [`writer`]
//! (writes), [`reader`] (reads), [`admin`] (checkpoint, safe mode, metasave, the master
//! group's members), [`status`],
//! [`fsck`] and [`report`] (what the master reports),
//! [`error`], and [`cli`] (the `dfs` command line).
#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod chunk;
pub mod cli;
pub mod client;
pub mod error;
pub mod fsck;
pub mod glob;
pub mod masters;
pub mod mode;
mod packet;
pub mod path;
mod pipeline;
pub mod reader;
pub mod report;
pub mod retry;
pub mod status;
pub mod writer;

pub use admin::{MasterGroup, MasterMember, SafeModeOp, SafeModeStatus};
pub use chunk::{ChunkHandle, LocatedChunk, Replica};
pub use client::{Client, ClientConfig};
pub use error::{Error, ReplicaFailure, Result};
pub use fsck::{ChunkHealth, FsckReport, FsckStatus, FsckSummary, ReplicaState};
pub use path::PathArg;
pub use proto::path::DfsPath;
pub use proto::reason::ErrorReason;
pub use reader::FileReader;
pub use report::{ChunkserverState, ChunkserverStatus, ClusterReport};
pub use retry::{Backoff, CallKind, WaitNotice};
pub use status::{ContentSummary, FileStatus, FileType};
pub use writer::{CreateOptions, FileWriter};
