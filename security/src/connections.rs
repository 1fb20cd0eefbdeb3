//! Bounded connections for every server: a cap on open connections and an idle timeout,
//! so idle sockets from any peer can't exhaust a server's file descriptors (as HDFS's
//! RPC server caps connections and closes idle ones).
//!
//! [`guard`] accepts on a listener and yields [`Guarded`] streams for tonic's
//! `serve_with_incoming_shutdown`. Each remembers when it last moved a byte. A sweeper
//! closes connections idle past the timeout; at the cap, a new connection evicts the
//! one idle longest (if it has been idle at least [`Limits::min_idle_to_evict`]),
//! otherwise the new one is closed at once: busy peers keep their connections, idle
//! ones make room. A closed connection reads as end-of-file, which hyper takes as the
//! peer leaving. Accept errors (out of descriptors) are logged once per burst and
//! retried after a pause, never spun on. Dropping the stream stops accepting and closes
//! the listening socket.
//!
//! "Idle" is at the byte level: a call waiting a long time for its answer moves no
//! bytes, so the idle timeout must exceed the longest call a server makes a client wait
//! for (the defaults are minutes; servers with long polls set it above theirs).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::{debug, warn};

/// A server's connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once (0: from the process's descriptor limit, see
    /// [`Limits::effective_max`]).
    pub max_connections: usize,
    /// A connection that moves no byte for this long is closed.
    pub idle_timeout: Duration,
    /// At the cap, only a connection idle at least this long is evicted for a new one.
    pub min_idle_to_evict: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 0,
            idle_timeout: Duration::from_secs(600),
            min_idle_to_evict: Duration::from_secs(1),
        }
    }
}

/// The limits as every server's command line takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct LimitArgs {
    /// Most client connections open at once (0: the descriptor limit less 256). At the
    /// cap a new connection evicts the one idle longest, or is refused if all are busy.
    #[arg(long, default_value_t = 0)]
    pub max_connections: usize,
    /// Close a connection that moved no byte for this many seconds.
    #[arg(long, default_value_t = 600)]
    pub idle_timeout_secs: u64,
}

impl LimitArgs {
    /// The limits these flags give.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
            ..Limits::default()
        }
    }
}

/// Descriptors kept for everything else a server opens (files, logs, outgoing calls).
const RESERVED_FDS: u64 = 256;

impl Limits {
    /// The cap in force: `max_connections`, or if 0, the descriptor limit less a reserve
    /// for files and outgoing calls (at least 64).
    pub fn effective_max(&self) -> usize {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct it is given and reads nothing else.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
        let soft = if ok { lim.rlim_cur } else { 1024 };
        usize::try_from(soft.saturating_sub(RESERVED_FDS).clamp(64, 1 << 20)).unwrap_or(64)
    }
}

/// One connection's shared state.
#[derive(Debug)]
struct Conn {
    /// Milliseconds since the registry's epoch when a byte last moved.
    active_ms: AtomicU64,
    closed: AtomicBool,
    /// Whoever waits to read, woken when the connection is closed under it.
    waker: Mutex<Option<Waker>>,
}

impl Conn {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut w) = self.waker.lock()
            && let Some(w) = w.take()
        {
            w.wake();
        }
    }
}

#[derive(Debug)]
struct Registry {
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    evicted: AtomicU64,
    refused: AtomicU64,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Makes room for one more connection; false if every open one is busy.
    fn admit(&self, limits: &Limits, max: usize) -> bool {
        let Ok(conns) = self.conns.lock() else { return false };
        if conns.len() < max {
            return true;
        }
        let now = self.now_ms();
        let min = u64::try_from(limits.min_idle_to_evict.as_millis()).unwrap_or(u64::MAX);
        let oldest = conns
            .values()
            .filter(|c| !c.closed.load(Ordering::Acquire))
            .min_by_key(|c| c.active_ms.load(Ordering::Relaxed));
        match oldest {
            Some(c) if now.saturating_sub(c.active_ms.load(Ordering::Relaxed)) >= min => {
                c.close();
                self.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            // Every connection is busy, or already closing: no room.
            _ => false,
        }
    }

    fn sweep(&self, idle: Duration) {
        let now = self.now_ms();
        let idle = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        if let Ok(conns) = self.conns.lock() {
            for c in conns.values() {
                if now.saturating_sub(c.active_ms.load(Ordering::Relaxed)) >= idle {
                    c.close();
                }
            }
        }
    }
}

/// An accepted connection under the limits.
#[derive(Debug)]
pub struct Guarded {
    inner: TcpStream,
    id: u64,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl Guarded {
    fn touch(&self) {
        self.conn.active_ms.store(self.registry.now_ms(), Ordering::Relaxed);
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Ok(mut conns) = self.registry.conns.lock() {
            conns.remove(&self.id);
        }
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.conn.closed.load(Ordering::Acquire) {
            return Poll::Ready(Ok(())); // end of file: hyper closes the connection
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {
                if let Ok(mut w) = this.conn.waker.lock() {
                    *w = Some(cx.waker().clone());
                }
                // Closed between the check and storing the waker: don't sleep on it.
                if this.conn.closed.load(Ordering::Acquire) {
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(r)
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.conn.closed.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.conn.closed.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts connections on `listener` under `limits` (with TCP_NODELAY set, as gRPC
/// answers are small frames) and yields them; `name` names the server in log lines.
/// Must be called inside a tokio runtime: the accept loop runs as a task, which ends
/// (closing the listener) when the returned stream is dropped.
pub fn guard(
    listener: TcpListener,
    limits: Limits,
    name: &'static str,
) -> ReceiverStream<io::Result<Guarded>> {
    let (tx, rx) = mpsc::channel(16);
    let max = limits.effective_max();
    let registry = Arc::new(Registry {
        epoch: Instant::now(),
        next_id: AtomicU64::new(0),
        conns: Mutex::new(HashMap::new()),
        evicted: AtomicU64::new(0),
        refused: AtomicU64::new(0),
    });
    tokio::spawn(accept_loop(listener, limits, max, name, registry, tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    limits: Limits,
    max: usize,
    name: &'static str,
    registry: Arc<Registry>,
    tx: mpsc::Sender<io::Result<Guarded>>,
) {
    let mut sweep = tokio::time::interval((limits.idle_timeout / 4).max(Duration::from_millis(10)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            _ = sweep.tick() => {
                registry.sweep(limits.idle_timeout);
                continue;
            }
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                failing = false;
                stream
            }
            Err(e) => {
                // Out of descriptors (or a peer gone before accept): pause instead of
                // spinning; say so once per burst.
                if !failing {
                    warn!(server = name, error = %e, "cannot accept connections; retrying");
                    failing = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !registry.admit(&limits, max) {
            let refused = registry.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if refused.is_power_of_two() {
                warn!(
                    server = name,
                    max,
                    refused,
                    "connection limit reached and every connection busy: refusing new ones"
                );
            }
            drop(stream);
            continue;
        }
        if let Err(e) = stream.set_nodelay(true) {
            debug!(server = name, error = %e, "cannot set TCP_NODELAY");
        }
        let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            active_ms: AtomicU64::new(registry.now_ms()),
            closed: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        if let Ok(mut conns) = registry.conns.lock() {
            conns.insert(id, conn.clone());
        }
        let guarded = Guarded { inner: stream, id, conn, registry: registry.clone() };
        if tx.send(Ok(guarded)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;

    use super::*;

    /// Serves echo on guarded connections; returns the address.
    async fn echo(limits: Limits) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut incoming = guard(listener, limits, "test");
        tokio::spawn(async move {
            while let Some(Ok(mut conn)) = incoming.next().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn ping(s: &mut TcpStream) -> bool {
        if s.write_all(b"x").await.is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        matches!(tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await, Ok(Ok(1)))
    }

    async fn closed_by_server(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_makes_room() {
        let limits = Limits {
            max_connections: 4,
            idle_timeout: Duration::from_secs(600),
            min_idle_to_evict: Duration::from_millis(100),
        };
        let addr = echo(limits).await;
        let mut conns = Vec::new();
        for _ in 0..4 {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            assert!(ping(&mut s).await);
            conns.push(s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The last three stay busy; the first is the longest idle.
        for s in &mut conns[1..] {
            assert!(ping(s).await);
        }
        let mut fifth = TcpStream::connect(addr).await.expect("connect");
        assert!(ping(&mut fifth).await, "the new connection is served");
        assert!(closed_by_server(&mut conns[0]).await, "the idle one was evicted");
        for s in &mut conns[1..] {
            assert!(ping(s).await, "busy connections are kept");
        }
    }

    #[tokio::test]
    async fn at_the_cap_with_every_connection_busy_the_new_one_is_refused() {
        let limits = Limits {
            max_connections: 2,
            idle_timeout: Duration::from_secs(600),
            min_idle_to_evict: Duration::from_secs(60),
        };
        let addr = echo(limits).await;
        let mut a = TcpStream::connect(addr).await.expect("connect");
        let mut b = TcpStream::connect(addr).await.expect("connect");
        assert!(ping(&mut a).await && ping(&mut b).await);
        let mut c = TcpStream::connect(addr).await.expect("connect");
        assert!(closed_by_server(&mut c).await, "no room: closed at once");
        assert!(ping(&mut a).await && ping(&mut b).await);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_and_active_ones_kept() {
        let limits = Limits {
            max_connections: 16,
            idle_timeout: Duration::from_millis(300),
            min_idle_to_evict: Duration::from_secs(1),
        };
        let addr = echo(limits).await;
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        let mut busy = TcpStream::connect(addr).await.expect("connect");
        assert!(ping(&mut idle).await);
        for _ in 0..10 {
            assert!(ping(&mut busy).await, "an active connection is kept");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(closed_by_server(&mut idle).await, "the idle one was closed");
    }

    #[tokio::test]
    async fn dropping_the_stream_closes_the_listening_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(guard(listener, Limits::default(), "test"));
        // The accept task notices and ends; the port can be bound again.
        let mut bound = None;
        for _ in 0..100 {
            if let Ok(l) = TcpListener::bind(addr).await {
                bound = Some(l);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(bound.is_some(), "the port stayed bound");
    }
}
