//! `dfs`: the command line client of the chunk store (see `docs/dfs-cli.md`). Parses
//! the command line, sets up logging to stderr and runs [`dfs::cli::run`].

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = dfs::cli::Cli::parse();
    // A command line tool stays quiet unless something is wrong; RUST_LOG overrides.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "dfs: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(dfs::cli::run(cli))
}
