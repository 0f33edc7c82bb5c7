//! The listeners' accept loops: a failed accept never spins, and each listener holds at most
//! `connections.max_per_listener` open connections.
//!
//! When accepting fails for a reason other than one connection going away (out of file
//! descriptors, `EMFILE`/`ENFILE`; out of memory, `ENOMEM`/`ENOBUFS`), the loop sleeps before
//! the next try, from 5 ms doubling to 1 s, instead of retrying at once (tonic's own loop
//! retries at once and holds a core at 100 % for as long as the descriptors stay used). Each
//! burst of failures is logged once when it begins and once when accepting works again;
//! every failure is counted in `token_service_accept_errors_total{listener,kind}`, and
//! readiness fails (the `listeners` check) while failures keep coming.
//!
//! At the connection limit the listener stops accepting until a connection closes; new
//! clients wait in the kernel's backlog meanwhile (as Go's `netutil.LimitListener` does).
//!
//! On the gRPC port a new connection must send its first bytes (the 24-byte HTTP/2 preface
//! in plaintext; the TLS ClientHello with TLS, after which tonic's TLS handshake timeout
//! applies) within `connections.grpc_preface_timeout`, or it is closed.

use std::{
    fmt,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};
use tracing::{debug, info, warn};

pub use crate::metrics::{AcceptErrorKind, Listener, ListenerStats};

/// First pause after a failed accept; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause between two tries while accepting keeps failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The pause after failed accepts, and the one log line per burst.
#[derive(Debug)]
pub struct Backoff {
    listener: Listener,
    stats: Arc<ListenerStats>,
    next: Duration,
    burst: Option<Burst>,
}

#[derive(Debug)]
struct Burst {
    started: Instant,
    failures: u64,
}

impl Backoff {
    /// No failure yet.
    pub fn new(listener: Listener, stats: Arc<ListenerStats>) -> Self {
        Self {
            listener,
            stats,
            next: FIRST_BACKOFF,
            burst: None,
        }
    }

    /// After a failed accept: counts it, logs the start of a burst, and sleeps (except for
    /// a connection that went away by itself, retried at once).
    pub async fn failed(&mut self, e: &io::Error) {
        let kind = AcceptErrorKind::of(e);
        self.stats.record_accept_error(self.listener, kind, e);
        if kind == AcceptErrorKind::Connection {
            debug!(listener = self.listener.label(), error = %e, "a connection went away before it was accepted");
            return;
        }
        match &mut self.burst {
            Some(burst) => burst.failures += 1,
            None => {
                warn!(
                    listener = self.listener.label(),
                    error = %e,
                    kind = kind.label(),
                    "cannot accept connections; pausing between tries (up to 1 s) until it \
                     works again; further failures are counted in \
                     token_service_accept_errors_total, not logged"
                );
                self.burst = Some(Burst {
                    started: Instant::now(),
                    failures: 1,
                });
            }
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(MAX_BACKOFF);
    }

    /// After an accept: ends a burst (logged).
    pub fn succeeded(&mut self) {
        self.next = FIRST_BACKOFF;
        if let Some(burst) = self.burst.take() {
            info!(
                listener = self.listener.label(),
                failures = burst.failures,
                after_ms = u64::try_from(burst.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "accepting connections again"
            );
        }
    }
}

/// Limits applied to a TCP listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Time a new connection has to send its first bytes (`None`: no limit here).
    pub first_bytes_timeout: Option<Duration>,
}

/// Bytes that end the first-bytes deadline: the HTTP/2 connection preface.
const FIRST_BYTES: usize = 24;

/// A TCP listener that backs off on failed accepts and holds at most
/// [`Limits::max_connections`] connections.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    which: Listener,
    stats: Arc<ListenerStats>,
    permits: Arc<Semaphore>,
    backoff: Backoff,
    limits: Limits,
}

impl Acceptor {
    /// Wraps a bound listener.
    pub fn new(
        listener: TcpListener,
        which: Listener,
        stats: Arc<ListenerStats>,
        limits: Limits,
    ) -> Self {
        Self {
            listener,
            which,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            backoff: Backoff::new(which, stats.clone()),
            stats,
            limits,
        }
    }

    /// The next connection (with `TCP_NODELAY`: answers go out at once, not when Nagle's
    /// algorithm decides) and its peer. Waits while the listener is at its limit; never
    /// fails.
    pub async fn accept(&mut self) -> (Connection, SocketAddr) {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.stats.record_limit_reached(self.which);
                debug!(
                    listener = self.which.label(),
                    max = self.limits.max_connections,
                    "connection limit reached; accepting again once a connection closes"
                );
                match self.permits.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    // The semaphore is never closed.
                    Err(_) => std::future::pending().await,
                }
            }
        };
        loop {
            match self.listener.accept().await {
                Ok((tcp, peer)) => {
                    self.backoff.succeeded();
                    let _ = tcp.set_nodelay(true);
                    let connection = Connection::new(
                        tcp,
                        permit,
                        OpenGuard::new(self.which, self.stats.clone()),
                        self.limits.first_bytes_timeout,
                    );
                    return (connection, peer);
                }
                Err(e) => self.backoff.failed(&e).await,
            }
        }
    }

    /// The connections as a stream, for tonic (which then never sees an accept error).
    pub fn into_incoming(self) -> Incoming {
        Incoming {
            next: Box::pin(self.accept_owned()),
        }
    }

    async fn accept_owned(mut self) -> (Self, Connection) {
        let (connection, _) = self.accept().await;
        (self, connection)
    }
}

type NextConnection = Pin<Box<dyn Future<Output = (Acceptor, Connection)> + Send>>;

/// An [`Acceptor`]'s connections as a stream (never ends, never yields an error).
pub struct Incoming {
    next: NextConnection,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming").finish_non_exhaustive()
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<Connection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let (acceptor, connection) = ready!(self.next.as_mut().poll(cx));
        self.next = Box::pin(acceptor.accept_owned());
        Poll::Ready(Some(Ok(connection)))
    }
}

/// Counts a connection open while it lives.
#[derive(Debug)]
struct OpenGuard {
    which: Listener,
    stats: Arc<ListenerStats>,
}

impl OpenGuard {
    fn new(which: Listener, stats: Arc<ListenerStats>) -> Self {
        stats.connection_opened(which);
        Self { which, stats }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.stats.connection_closed(self.which);
    }
}

/// An accepted connection: holds its place under the listener's limit until dropped, and
/// fails its reads once the first-bytes deadline passes without them.
pub struct Connection {
    tcp: TcpStream,
    first_bytes: Option<FirstBytes>,
    _permit: OwnedSemaphorePermit,
    _open: OpenGuard,
}

struct FirstBytes {
    deadline: Pin<Box<Sleep>>,
    missing: usize,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("tcp", &self.tcp)
            .field("awaiting_first_bytes", &self.first_bytes.is_some())
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn new(
        tcp: TcpStream,
        permit: OwnedSemaphorePermit,
        open: OpenGuard,
        first_bytes_timeout: Option<Duration>,
    ) -> Self {
        Self {
            tcp,
            first_bytes: first_bytes_timeout.map(|timeout| FirstBytes {
                deadline: Box::pin(tokio::time::sleep(timeout)),
                missing: FIRST_BYTES,
            }),
            _permit: permit,
            _open: open,
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Some(first) = &mut this.first_bytes {
                    let read = buf.filled().len() - before;
                    if read >= first.missing {
                        this.first_bytes = None;
                    } else {
                        first.missing -= read;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if let Some(first) = &mut this.first_bytes
                    && first.deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent no request in time (connections.grpc_preface_timeout)",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp.connect_info()
    }
}

/// The local operator socket's connections as a stream, with the same pause after a failed
/// accept (no connection limit: only this user may connect). The accept loop ends when the
/// stream is dropped, closing the socket.
pub fn unix_incoming(
    listener: tokio::net::UnixListener,
    stats: Arc<ListenerStats>,
) -> impl tokio_stream::Stream<Item = io::Result<tokio::net::UnixStream>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Listener::Local, stats);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    backoff.succeeded();
                    if tx.send(Ok(stream)).await.is_err() {
                        return;
                    }
                }
                Err(e) => backoff.failed(&e).await,
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// HTTP/1 settings of the REST and management listeners.
#[derive(Debug, Clone, Copy)]
pub struct Http1Settings {
    /// Time a client has to send a request's head, counted from when the server starts
    /// waiting for it (after accepting, and after each answer on a kept-alive connection).
    pub header_read_timeout: Duration,
}

/// Serves `app` over HTTP/1.1 (over TLS when `tls` is set) on `acceptor` until `shutdown`
/// resolves, then stops accepting and waits for open connections to finish their in-flight
/// requests (the caller bounds that wait with the grace period). Each request carries the
/// peer's address as axum's `ConnectInfo<SocketAddr>`.
pub async fn serve_http(
    mut acceptor: Acceptor,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    settings: Http1Settings,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    use hyper_util::{
        rt::{TokioIo, TokioTimer},
        server::graceful::GracefulShutdown,
        service::TowerToHyperService,
    };
    use tower::ServiceExt as _;

    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (connection, peer) = tokio::select! {
            accepted = acceptor.accept() => accepted,
            () = &mut shutdown => break,
        };
        let app = app
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            });
        let service = TowerToHyperService::new(app);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        match &tls {
            None => {
                let served = builder.serve_connection(TokioIo::new(connection), service);
                tokio::spawn(async move {
                    if let Err(e) = watcher.watch(served).await {
                        debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(
                        crate::tls::HANDSHAKE_TIMEOUT,
                        acceptor.accept(connection),
                    );
                    let stream = match handshake.await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let served = builder.serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(served).await {
                        debug!(%peer, error = %e, "HTTPS connection ended with an error");
                    }
                });
            }
        }
    }
    drop(acceptor);
    graceful.shutdown().await;
    Ok(())
}
