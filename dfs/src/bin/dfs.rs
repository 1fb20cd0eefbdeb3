//! `dfs`: the command line client of the chunk store (see `docs/dfs-cli.md`). Parses
//! the command line, sets up logging to stderr and runs [`dfs::cli::run`].

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = dfs::cli::Cli::parse();
    // A command line tool prints one line per failure and nothing for what it recovered
    // from (a replica that failed over, a pipeline rebuilt); RUST_LOG=warn shows those.
    proto::logging::init("error");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "dfs: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(dfs::cli::run(cli))
}
