//! The mini cluster: a real `master` and real `chunkserver` processes on loopback
//! addresses, for integration tests, fault tests, the `minicluster` command, the demo and
//! the benchmark.
//!
//! Tests go through [`MiniCluster`]: start one per test in a temporary directory (the
//! tests run in parallel, so everything binds port 0 and publishes its address through an
//! address file), drive the `dfs` binary ([`MiniCluster::dfs_cmd`]) or library
//! ([`MiniCluster::client`]), inject faults by name ([`MiniCluster::kill`],
//! [`MiniCluster::stop`], [`MiniCluster::restart`], or by editing a replica found with
//! [`MiniCluster::replica_path`]), and wait for eventually-true conditions with
//! [`wait_until`], never for a fixed time.
//!
//! Modules: [`spec`] (options and `cluster.json`), [`process`] (spawning and signalling
//! one process), [`cluster`] (the harness), [`command`] (running `dfs` and checking its
//! output contract), [`wait`] (polling), [`data`] (deterministic test data and checksums).
#![warn(missing_docs)]

pub mod certs;
pub mod cluster;
pub mod command;
pub mod data;
pub mod error;
pub mod process;
pub mod spec;
pub mod wait;
pub mod workload;

pub use cluster::{Lifetime, MiniCluster};
pub use command::CmdOutput;
pub use error::{Error, Result};
pub use process::ProcessState;
pub use spec::{ClusterOptions, ClusterSpec, ProcessSpec, Role};
pub use wait::{DEFAULT_POLL, DEFAULT_TIMEOUT, wait_for, wait_until};

/// The `main` of a benchmark binary: warnings-only logging, one runtime, `run` on it, and
/// one `NAME: error: ...` line with a failing exit status if anything goes wrong.
pub fn bench_main<F>(name: &str, run: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    proto::logging::init("warn");
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: error: start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
