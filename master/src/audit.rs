//! The audit log (HDFS's `hdfs-audit.log`): one line per namespace call, allowed or
//! denied, in its own file:
//!
//! ```text
//! 2026-11-29T04:08:37.123Z allowed=true ugi=alice ip=127.0.0.1 cmd=create src=/alice/f dst=null perm=alice:staff:rw-r--r--
//! ```
//!
//! Calls refused for another reason than permissions (no such file, ...) are not logged,
//! as in HDFS. Every value a caller controls (user, paths) is percent-encoded: a space, an
//! `=`, a `%`, a control character or a non-ASCII byte becomes `%XX`, so no name can
//! forge a field or a line.
//!
//! Lines are formatted at the gRPC edge, after the state lock is released, and handed to
//! a writer thread over a bounded channel that never blocks: when the writer falls behind
//! (or the disk fails), lines are dropped and counted, and the failure is logged at error
//! level, never hidden.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::error;

use crate::error::{Error, Result};

/// Lines waiting for the writer at most.
const QUEUE: usize = 65_536;

/// One audited call.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Whether it was allowed (false: refused by a permission check).
    pub allowed: bool,
    /// The caller's user.
    pub user: &'a str,
    /// The caller's address.
    pub ip: Option<IpAddr>,
    /// HDFS's name of the call (`create`, `mkdirs`, `open`, `listStatus`, ...).
    pub cmd: &'static str,
    /// The path.
    pub src: &'a str,
    /// The second path (rename's destination).
    pub dst: Option<&'a str>,
    /// `owner:group:mode` of what the call made or changed.
    pub perm: Option<&'a str>,
}

/// Where audit lines go: a writer thread, or nowhere. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    /// Lines; `None` tells the writer to stop.
    tx: Option<SyncSender<Option<String>>>,
    dropped: Arc<AtomicU64>,
}

/// The writer thread of an [`AuditLog`].
#[derive(Debug)]
pub struct AuditWriter {
    thread: JoinHandle<()>,
    tx: SyncSender<Option<String>>,
}

impl AuditWriter {
    /// Has the writer write what is queued and end; later lines are dropped.
    pub fn join(self) {
        // Waits for room: the writer drains the queue.
        let _ = self.tx.send(None);
        if self.thread.join().is_err() {
            error!("the audit log writer panicked");
        }
    }
}

impl AuditLog {
    /// A log that writes nothing (`--audit-log none`).
    pub fn disabled() -> AuditLog {
        AuditLog::default()
    }

    /// A log appending to `path` (created if missing) from a writer thread.
    ///
    /// # Errors
    /// [`Error::Io`] if the file can't be opened or the thread started.
    pub fn open(path: &Path) -> Result<(AuditLog, AuditWriter)> {
        let io = |what: &str, source| Error::Io {
            what: format!("{what} the audit log {}", path.display()),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io("opening", e))?;
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let at = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_lines(&rx, BufWriter::new(file), &at, &counter))
            .map_err(|e| io("starting the writer of", e))?;
        Ok((AuditLog { tx: Some(tx.clone()), dropped }, AuditWriter { thread, tx }))
    }

    /// Lines dropped so far (writer behind or failing).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues the line of `e`, stamped now; never blocks.
    pub fn log(&self, e: &Event<'_>) {
        let Some(tx) = &self.tx else { return };
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        match tx.try_send(Some(line(ms, e))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    error!("the audit log writer is behind: dropping lines (counted)");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn write_lines(
    rx: &Receiver<Option<String>>,
    mut out: BufWriter<File>,
    path: &Path,
    dropped: &AtomicU64,
) {
    let mut failing = false;
    let mut stop = false;
    while !stop && let Ok(first) = rx.recv() {
        let mut batch = Vec::new();
        for msg in std::iter::once(first).chain(rx.try_iter()) {
            match msg {
                Some(l) => batch.push(l),
                None => {
                    stop = true;
                    break;
                }
            }
        }
        let n = batch.len() as u64;
        let res =
            batch.iter().try_for_each(|l| out.write_all(l.as_bytes())).and_then(|()| out.flush());
        match res {
            Ok(()) => failing = false,
            Err(e) => {
                let total = dropped.fetch_add(n, Ordering::Relaxed) + n;
                if !failing {
                    error!(path = %path.display(), error = %e, dropped = total, "cannot write the audit log: lines are dropped");
                }
                failing = true;
            }
        }
    }
}

/// The line of `e` at `ms` milliseconds since the Unix epoch, newline included.
pub fn line(ms: i64, e: &Event<'_>) -> String {
    let mut s = String::with_capacity(128);
    timestamp(&mut s, ms);
    let _ = write!(s, " allowed={} ugi=", e.allowed);
    escape(&mut s, e.user);
    s.push_str(" ip=");
    match e.ip {
        Some(ip) => {
            let _ = write!(s, "{ip}");
        }
        None => s.push_str("null"),
    }
    let _ = write!(s, " cmd={} src=", e.cmd);
    escape(&mut s, e.src);
    s.push_str(" dst=");
    escape(&mut s, e.dst.unwrap_or("null"));
    s.push_str(" perm=");
    escape(&mut s, e.perm.unwrap_or("null"));
    s.push('\n');
    s
}

/// Appends `v` with every byte that is not printable ASCII, and ` `, `=` and `%`,
/// percent-encoded.
fn escape(out: &mut String, v: &str) {
    for b in v.bytes() {
        if b.is_ascii_graphic() && b != b'=' && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `2026-11-29T04:08:37.123Z`.
fn timestamp(out: &mut String, ms: i64) {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, sec, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{sec:02}.{milli:03}Z");
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_every_field_and_escapes_what_callers_control() {
        let e = Event {
            allowed: false,
            user: "bob",
            ip: Some("127.0.0.1".parse().expect("ip")),
            cmd: "rename",
            src: "/a b\nINFO forged=1",
            dst: Some("/x%y"),
            perm: None,
        };
        assert_eq!(
            line(1_764_389_317_123, &e),
            "2025-11-29T04:08:37.123Z allowed=false ugi=bob ip=127.0.0.1 cmd=rename src=/a%20b%0AINFO%20forged%3D1 dst=/x%25y perm=null\n"
        );
        let e = Event {
            allowed: true,
            ip: None,
            dst: None,
            perm: Some("bob:staff:rwx------"),
            src: "/é",
            ..e
        };
        assert_eq!(
            line(0, &e),
            "1970-01-01T00:00:00.000Z allowed=true ugi=bob ip=null cmd=rename src=/%C3%A9 dst=null perm=bob:staff:rwx------\n"
        );
    }

    #[test]
    fn lines_reach_the_file_and_the_writer_ends_with_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let (log, writer) = AuditLog::open(&path).expect("open");
        let e = Event {
            allowed: true,
            user: "a",
            ip: None,
            cmd: "mkdirs",
            src: "/d",
            dst: None,
            perm: None,
        };
        log.log(&e);
        log.log(&Event { cmd: "delete", ..e });
        writer.join();
        log.log(&e);
        let text = std::fs::read_to_string(&path).expect("read");
        let cmds: Vec<&str> =
            text.lines().map(|l| l.split(' ').nth(4).expect("cmd field")).collect();
        assert_eq!(cmds, ["cmd=mkdirs", "cmd=delete"]);
        assert_eq!(AuditLog::disabled().dropped(), 0);
    }
}
