//! Logging set-up shared by every binary of the project: `tracing` events to stderr,
//! filtered by `RUST_LOG` or a per-binary default, with colours only on a terminal (so
//! logs captured to files and CLI errors piped elsewhere stay plain text).
//!
//! It lives here because every binary links this crate; libraries never call it.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `RUST_LOG` if set, else `default_directive` (such as
/// `"info"` for servers or `"error"` for command line tools). A second call is a no-op.
pub fn init(default_directive: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_directive));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
