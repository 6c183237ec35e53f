//! The HTTP accept loop: hyper's HTTP/1 connections serving an axum router, with the limits
//! `axum::serve` does not have.
//!
//! - At most `[http] max_connections` connections per listener (a semaphore taken before a
//!   connection is served; one beyond is closed at once and counted).
//! - A request's head must arrive within `header_timeout_secs` of its first byte (of the
//!   accept, for a connection's first request); a keep-alive connection idle for
//!   `idle_timeout_secs` between requests is closed. Both are watched per connection from
//!   what its socket reads and what its service is doing ([`Activity`]); hyper's own header
//!   timer is off, because it also runs while a keep-alive connection is idle.
//! - A request's handling is bounded by `request_timeout_secs` (the router's middleware).
//! - Shutdown (the one cancellation token): `/ready` answers 503 at once; the listener keeps
//!   accepting (one request per new connection) while requests are in flight, for at most
//!   `grace_secs`; idle connections close, and the connections still busy at the end of the
//!   grace are dropped.

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tower_service::Service as _;
use tracing::{debug, warn};

use crate::config::HttpConfig;
use crate::metrics;

/// The peer's address, in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// How long the accept loop waits after an accept error (out of file descriptors) before
/// accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The connection limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to send a request's head.
    pub header_timeout: Duration,
    /// Keep-alive idle time.
    pub idle_timeout: Duration,
    /// The requests in flight's time at shutdown.
    pub grace: Duration,
    /// Connections at once.
    pub max_connections: usize,
}

impl Limits {
    /// The limits `[http]` sets.
    pub fn from_config(http: &HttpConfig) -> Limits {
        Limits {
            header_timeout: http.header_timeout(),
            idle_timeout: http.idle_timeout(),
            grace: http.grace(),
            max_connections: http.max_connections as usize,
        }
    }
}

/// What one connection is doing, as its socket and its service see it: the times are
/// milliseconds since the accept, plus one (0: none).
struct Activity {
    accepted: Instant,
    /// Requests being handled.
    in_flight: AtomicU32,
    /// When the first byte of the request head now coming arrived.
    head_started: AtomicU64,
    /// When the last request's handling ended.
    last_done: AtomicU64,
}

/// What a connection's watch found.
#[derive(Debug, PartialEq, Eq)]
enum Watch {
    /// Look again then.
    Until(Instant),
    /// The head took too long.
    HeadTimeout,
    /// Idle too long.
    Idle,
}

impl Activity {
    fn new(accepted: Instant) -> Activity {
        Activity {
            accepted,
            in_flight: AtomicU32::new(0),
            // A connection's first request is timed from the accept.
            head_started: AtomicU64::new(1),
            last_done: AtomicU64::new(0),
        }
    }

    fn stamp(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.accepted).as_millis() as u64 + 1
    }

    fn at(&self, stamp: u64) -> Instant {
        self.accepted + Duration::from_millis(stamp.saturating_sub(1))
    }

    /// The socket read something.
    fn read(&self, now: Instant) {
        if self.in_flight.load(Relaxed) == 0 && self.head_started.load(Relaxed) == 0 {
            self.head_started.store(self.stamp(now), Relaxed);
        }
    }

    /// A request's head was read: its handling begins.
    fn begin(&self) {
        self.in_flight.fetch_add(1, Relaxed);
        self.head_started.store(0, Relaxed);
    }

    /// A request's handling ended.
    fn end(&self, now: Instant) {
        self.last_done.store(self.stamp(now), Relaxed);
        self.in_flight.fetch_sub(1, Relaxed);
    }

    fn watch(&self, now: Instant, limits: &Limits) -> Watch {
        if self.in_flight.load(Relaxed) > 0 {
            // The request's own deadline is the router's; look again later.
            return Watch::Until(now + limits.header_timeout);
        }
        let head = self.head_started.load(Relaxed);
        let (deadline, expired) = if head != 0 {
            (self.at(head) + limits.header_timeout, Watch::HeadTimeout)
        } else {
            (self.at(self.last_done.load(Relaxed)) + limits.idle_timeout, Watch::Idle)
        };
        if now >= deadline { expired } else { Watch::Until(deadline) }
    }
}

/// A request being handled: counted in its connection and in the listener's requests in
/// flight until dropped.
struct InFlight {
    activity: Arc<Activity>,
    _token: TaskTrackerToken,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.end(Instant::now());
    }
}

/// The socket, telling its connection's [`Activity`] when it reads.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read(Instant::now());
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves `router` on `listener` until shutdown and the drain that follows; `requests`
/// counts the requests in flight (shared by the listeners of one daemon, so that each keeps
/// accepting while any request is in flight during the drain).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    requests: TaskTracker,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut drain: Option<Instant> = None;
    let mut paused_until: Option<Instant> = None;
    loop {
        let grace_end = drain.map(|d| d + limits.grace);
        tokio::select! {
            accepted = listener.accept(), if paused_until.is_none() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        metrics::http_connection_refused();
                        debug!(%peer, "HTTP connection refused: at max_connections");
                        drop(stream);
                        continue;
                    };
                    // Accepted once shutdown has begun (maybe before this loop's branch for
                    // it ran): served as a drain connection, one request then closed. A
                    // graceful shutdown of it before its first byte would close it unanswered.
                    let drain = drain.or_else(|| shutdown.is_cancelled().then(Instant::now));
                    let conn = Connection {
                        router: router.clone(),
                        limits,
                        requests: requests.clone(),
                        shutdown: shutdown.clone(),
                        drain,
                    };
                    connections.spawn(async move {
                        conn.run(stream, peer).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    warn!(error = %e, "HTTP accept failed");
                    paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                }
            },
            () = tokio::time::sleep_until(paused_until.unwrap_or_else(Instant::now)), if paused_until.is_some() => {
                paused_until = None;
            }
            () = shutdown.cancelled(), if drain.is_none() => {
                drain = Some(Instant::now());
                requests.close();
            }
            () = requests.wait(), if drain.is_some() => break,
            () = tokio::time::sleep_until(grace_end.unwrap_or_else(Instant::now)), if grace_end.is_some() => break,
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// One connection's settings.
struct Connection {
    router: Router,
    limits: Limits,
    requests: TaskTracker,
    shutdown: CancellationToken,
    /// When the drain began, if it had when the connection was accepted.
    drain: Option<Instant>,
}

impl Connection {
    async fn run(self, stream: TcpStream, peer: SocketAddr) {
        let Connection { router, limits, requests, shutdown, mut drain } = self;
        let activity = Arc::new(Activity::new(Instant::now()));
        let io = Watched { stream, activity: activity.clone() };
        let service_activity = activity.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ClientAddr(peer));
            service_activity.begin();
            let guard = InFlight { activity: service_activity.clone(), _token: requests.token() };
            let mut router = router.clone();
            async move {
                let response = router.call(req).await;
                drop(guard);
                response
            }
        });
        let mut builder = http1::Builder::new();
        // Our own watch times heads (hyper's timer would also cut idle keep-alives).
        builder.header_read_timeout(None);
        // Accepted during the drain: one request, then the connection closes.
        builder.keep_alive(drain.is_none());
        let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
        let mut check_at = Instant::now() + limits.header_timeout;
        loop {
            let grace_end = drain.map(|d| d + limits.grace);
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                    break;
                }
                () = tokio::time::sleep_until(check_at) => match activity.watch(Instant::now(), &limits) {
                    Watch::Until(next) => check_at = next,
                    Watch::HeadTimeout => {
                        metrics::http_connection_timed_out();
                        debug!(%peer, "HTTP connection closed: request head not received in time");
                        break;
                    }
                    Watch::Idle => {
                        debug!(%peer, "HTTP keep-alive connection closed: idle");
                        break;
                    }
                },
                () = shutdown.cancelled(), if drain.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    drain = Some(Instant::now());
                }
                () = tokio::time::sleep_until(grace_end.unwrap_or_else(Instant::now)), if grace_end.is_some() => {
                    debug!(%peer, "HTTP connection dropped at the end of the shutdown grace");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            grace: Duration::from_secs(10),
            max_connections: 1,
        }
    }

    #[test]
    fn a_connection_should_be_timed_by_its_head_then_by_its_idleness() {
        let t0 = Instant::now();
        let l = limits();
        let a = Activity::new(t0);
        let s = Duration::from_secs;
        // The first head is timed from the accept.
        assert_eq!(a.watch(t0 + s(5), &l), Watch::Until(t0 + s(10)));
        assert_eq!(a.watch(t0 + s(10), &l), Watch::HeadTimeout);
        // A request handled for a long time is not the connection's to cut.
        a.begin();
        assert!(matches!(a.watch(t0 + s(100), &l), Watch::Until(_)));
        // Reads while in flight are the body's, not a new head.
        a.read(t0 + s(101));
        a.end(t0 + s(102));
        // Idle: 60 s from the end of the request.
        assert_eq!(a.watch(t0 + s(130), &l), Watch::Until(t0 + s(162)));
        assert_eq!(a.watch(t0 + s(162), &l), Watch::Idle);
        // A new head's first byte starts the head timer.
        a.read(t0 + s(140));
        assert_eq!(a.watch(t0 + s(145), &l), Watch::Until(t0 + s(150)));
        assert_eq!(a.watch(t0 + s(150), &l), Watch::HeadTimeout);
    }
}
