//! Process plumbing every server binary shares (master, chunkserver, coordinator,
//! worker): publishing the address it bound, and turning SIGINT/SIGTERM into a graceful
//! shutdown future. Beside [`crate::logging`] for the same reason: every binary links
//! this crate.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::signal::unix::{SignalKind, signal};

/// Writes `addr` to `path` through a temporary file and a rename, so a process waiting
/// for the file (a test harness, `minicluster`) never reads a partial address.
///
/// # Errors
/// The write or rename error, with the path in its message.
pub fn write_addr_file(path: &Path, addr: SocketAddr) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let named = |e: io::Error, p: &Path| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
    std::fs::write(&tmp, addr.to_string()).map_err(|e| named(e, &tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| named(e, path))
}

/// A future that completes on the first SIGINT or SIGTERM. The handlers are installed
/// when this is called, not when the future is first polled, so a signal that arrives
/// during start-up is not lost.
///
/// # Errors
/// If a signal handler cannot be installed.
pub fn shutdown_signal() -> io::Result<impl Future<Output = ()> + Send> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    })
}
