//! MapReduce runtime over the chunk store.
//!
//! Users write jobs as Rust traits ([`Mapper`], [`Reducer`], [`Combiner`],
//! [`Partitioner`]), register them in a [`Registry`] and call [`runtime::main`]; the
//! resulting binary submits jobs and, started by a worker, runs their task attempts.
//! The cluster side is the `coordinator` and `worker` binaries of this crate.
//!
//! Modules, from the user's surface inwards:
//! - [`api`]: the traits, [`Context`] (emit, counters, job conf) and [`Input`];
//!   [`job`]: defining and registering jobs; [`key`]: order-preserving key encoding and
//!   value serialization; [`counters`]; [`config`].
//! - [`input`]: the [`InputFormat`] trait (split a file at submit, read a split's records
//!   in a map) and the built-in formats; [`format`]: their byte-level readers, and text
//!   and record output.
//! - [`mapside`]: the map output buffer (sort or hash-combine), spills, merge, index;
//!   [`run`] and [`merge`]: sorted-run framing and k-way merging; [`reduceside`]: grouping
//!   and reducing; [`shuffle`]: serving and fetching map outputs.
//! - [`task`]: one attempt inside the child process; [`spec`]: what it is given and
//!   returns; [`progress`]: its memory-mapped progress file and skipping of bad records.
//! - [`coordinator`] (scheduling core + gRPC service), [`worker`], [`client`] (the
//!   coordinator API for tools), [`runtime`] (a job binary's `main`).
//! - [`acl`]: access lists in Hadoop's shape (the coordinator's `--admins`).
//! - [`error`].
#![warn(missing_docs)]

pub mod acl;
pub mod api;
pub mod attempt;
pub mod client;
pub mod config;
pub mod coordinator;
pub mod counters;
pub mod error;
pub mod format;
pub mod ids;
pub mod input;
pub mod job;
pub mod job_token;
pub mod key;
pub mod mapside;
pub mod merge;
pub mod progress;
pub mod reduceside;
pub mod run;
pub mod runtime;
pub mod shuffle;
pub mod spec;
pub mod task;
pub mod worker;

#[cfg(test)]
#[global_allocator]
static ALLOC: proto::alloc_probe::Probe = proto::alloc_probe::Probe;

pub use api::{
    Combiner, Context, HashPartitioner, Input, Mapper, Partitioner, RangePartitioner, Reducer,
    TaskInfo, Values,
};
pub use config::JobConf;
pub use counters::Counters;
pub use error::{Error, Result};
pub use input::{
    GeneratedInput, InputFile, InputFormat, KeyValueTextInput, RecordInput, SplitReader, TextInput,
    WholeFileInput,
};
pub use job::{Chain, Job, MapOnly, Registry, SubmitContext, WithReducer};
pub use key::{Blob, BlobBuf, DecodeKey, EncodeKey, RawKey, ToText};
pub use spec::{OutputFormat, Split, TaskKind};
