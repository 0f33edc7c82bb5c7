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
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
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

/// Which listener (the `listener` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `grpc_addr`.
    Grpc,
    /// `http_addr`, the REST shim.
    Http,
    /// `management_addr`.
    Management,
    /// The local operator socket.
    Local,
}

impl Listener {
    /// Every listener, in label order.
    pub const ALL: [Listener; 4] = [
        Listener::Grpc,
        Listener::Http,
        Listener::Management,
        Listener::Local,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Listener::Grpc => "grpc",
            Listener::Http => "http",
            Listener::Management => "management",
            Listener::Local => "local",
        }
    }
}

/// Why an accept failed (the `kind` label of `token_service_accept_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptErrorKind {
    /// Out of file descriptors: `EMFILE` (this process) or `ENFILE` (the system).
    FdLimit,
    /// Out of memory or socket buffers: `ENOMEM`, `ENOBUFS`.
    Memory,
    /// One connection went away before it was accepted (`ECONNABORTED`, ...): not a fault of
    /// the listener, retried at once.
    Connection,
    /// Anything else.
    Other,
}

impl AcceptErrorKind {
    /// Every kind, in label order.
    pub const ALL: [AcceptErrorKind; 4] = [
        AcceptErrorKind::FdLimit,
        AcceptErrorKind::Memory,
        AcceptErrorKind::Connection,
        AcceptErrorKind::Other,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            AcceptErrorKind::FdLimit => "fd_limit",
            AcceptErrorKind::Memory => "memory",
            AcceptErrorKind::Connection => "connection",
            AcceptErrorKind::Other => "other",
        }
    }

    /// The kind of an accept error.
    pub fn of(e: &io::Error) -> Self {
        // Linux errno values: the standard library names none of EMFILE, ENFILE, ENOBUFS.
        const ENOMEM: i32 = 12;
        const ENFILE: i32 = 23;
        const EMFILE: i32 = 24;
        const ENOBUFS: i32 = 105;
        match e.raw_os_error() {
            Some(EMFILE | ENFILE) => return AcceptErrorKind::FdLimit,
            Some(ENOMEM | ENOBUFS) => return AcceptErrorKind::Memory,
            _ => {}
        }
        match e.kind() {
            io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock => AcceptErrorKind::Connection,
            io::ErrorKind::OutOfMemory => AcceptErrorKind::Memory,
            _ => AcceptErrorKind::Other,
        }
    }
}

/// First pause after a failed accept; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause between two tries while accepting keeps failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long after its last failed accept a listener still counts as failing (readiness):
/// longer than [`MAX_BACKOFF`], so a burst in progress is never reported over between tries.
const FAILING_WINDOW: Duration = Duration::from_secs(3);

/// The listeners' figures, shared by the accept loops (writers) and `/metrics` and readiness
/// (readers).
#[derive(Debug)]
pub struct ListenerStats {
    accept_errors: [[AtomicU64; AcceptErrorKind::ALL.len()]; Listener::ALL.len()],
    open: [AtomicU64; Listener::ALL.len()],
    limit_reached: [AtomicU64; Listener::ALL.len()],
    failures: Mutex<[Option<Failure>; Listener::ALL.len()]>,
}

/// The latest failed accept of a listener.
#[derive(Debug, Clone)]
struct Failure {
    at: Instant,
    error: String,
}

impl Default for ListenerStats {
    fn default() -> Self {
        Self {
            accept_errors: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            open: std::array::from_fn(|_| AtomicU64::new(0)),
            limit_reached: std::array::from_fn(|_| AtomicU64::new(0)),
            failures: Mutex::new(std::array::from_fn(|_| None)),
        }
    }
}

impl ListenerStats {
    /// Failed accepts so far on `listener` of `kind`.
    pub fn accept_errors(&self, listener: Listener, kind: AcceptErrorKind) -> u64 {
        self.accept_errors[listener as usize][kind as usize].load(Ordering::Relaxed)
    }

    /// Connections `listener` holds open now.
    pub fn open_connections(&self, listener: Listener) -> u64 {
        self.open[listener as usize].load(Ordering::Relaxed)
    }

    fn record_error(&self, listener: Listener, kind: AcceptErrorKind, e: &io::Error) {
        self.accept_errors[listener as usize][kind as usize].fetch_add(1, Ordering::Relaxed);
        if kind != AcceptErrorKind::Connection {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            failures[listener as usize] = Some(Failure {
                at: Instant::now(),
                error: e.to_string(),
            });
        }
    }

    /// Why accepting is failing, for readiness: `None` when no listener failed to accept in
    /// the last few seconds.
    pub fn failing(&self) -> Option<String> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let failing: Vec<String> = Listener::ALL
            .iter()
            .zip(failures.iter())
            .filter_map(|(listener, failure)| {
                let failure = failure.as_ref()?;
                (failure.at.elapsed() < FAILING_WINDOW).then(|| {
                    format!(
                        "the {} listener cannot accept connections: {}",
                        listener.label(),
                        failure.error
                    )
                })
            })
            .collect();
        (!failing.is_empty()).then(|| failing.join("; "))
    }

    /// The figures in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str(
            "# HELP token_service_accept_errors_total Failed accepts, by listener and kind (fd_limit: EMFILE/ENFILE, memory: ENOMEM/ENOBUFS, connection: the client went away first, other); each non-connection failure pauses accepting (5 ms doubling to 1 s).\n\
             # TYPE token_service_accept_errors_total counter\n",
        );
        for listener in Listener::ALL {
            for kind in AcceptErrorKind::ALL {
                let _ = writeln!(
                    out,
                    "token_service_accept_errors_total{{listener=\"{}\",kind=\"{}\"}} {}",
                    listener.label(),
                    kind.label(),
                    self.accept_errors(listener, kind)
                );
            }
        }
        out.push_str(
            "# HELP token_service_open_connections Connections each listener holds open.\n\
             # TYPE token_service_open_connections gauge\n",
        );
        for listener in Listener::ALL {
            let _ = writeln!(
                out,
                "token_service_open_connections{{listener=\"{}\"}} {}",
                listener.label(),
                self.open_connections(listener)
            );
        }
        out.push_str(
            "# HELP token_service_connection_limit_reached_total Times a listener stopped accepting at connections.max_per_listener until a connection closed.\n\
             # TYPE token_service_connection_limit_reached_total counter\n",
        );
        for listener in Listener::ALL {
            let _ = writeln!(
                out,
                "token_service_connection_limit_reached_total{{listener=\"{}\"}} {}",
                listener.label(),
                self.limit_reached[listener as usize].load(Ordering::Relaxed)
            );
        }
    }
}

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
        self.stats.record_error(self.listener, kind, e);
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
                self.stats.limit_reached[self.which as usize].fetch_add(1, Ordering::Relaxed);
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
        stats.open[which as usize].fetch_add(1, Ordering::Relaxed);
        Self { which, stats }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.stats.open[self.which as usize].fetch_sub(1, Ordering::Relaxed);
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
