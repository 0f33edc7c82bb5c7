//! The listeners' accept loops: a failed accept never spins, and each listener holds at most
//! `connections.max_per_listener` open connections.
//!
//! When accepting fails for a reason other than one connection going away (out of file
//! descriptors, `EMFILE`/`ENFILE`; out of memory, `ENOMEM`/`ENOBUFS`), the loop sleeps before
//! the next try, from 5 ms doubling to 1 s, instead of retrying at once (tonic's own loop
//! retries at once and holds a core at 100 % for as long as the descriptors stay used). Each
//! burst of failures (failures less than [`FAILING_WINDOW`], 3 s, apart, successful accepts
//! in between or not: a listener at its descriptor limit alternates) is logged once when it
//! begins and once at the first accept after 3 s without a failure; every failure is
//! counted in `token_service_accept_errors_total{listener,kind}`, and readiness fails (the
//! `listeners` check) while failures keep coming.
//!
//! At the connection limit the listener stops accepting until a connection closes; new
//! clients wait in the kernel's backlog meanwhile (as Go's `netutil.LimitListener` does).
//!
//! On the gRPC port a new connection must send its first bytes (the 24-byte HTTP/2 preface
//! in plaintext; the TLS ClientHello with TLS, after which the handshake must finish within
//! [`crate::tls::HANDSHAKE_TIMEOUT`]) within `connections.grpc_preface_timeout`, or it is
//! closed.
//!
//! A gRPC connection with no call in flight for `connections.grpc_idle_timeout` is closed
//! gracefully: HTTP/2 GOAWAY, then the connection ends once the client has seen it (a call
//! that crossed the GOAWAY is still answered). Calls are counted per connection by
//! [`InFlightLayer`]; a stream (`WatchRevocations`, a health watch) is in flight until it
//! ends, so it is never cut. Keep-alive pings are no calls: a client that only answers pings
//! is idle. tonic's server has no such setting (its `max_connection_age` closes busy
//! connections too), so [`serve_grpc`] serves each connection with hyper directly, and the
//! connection's watch closes it gracefully on the server's shutdown or this idle deadline.
//!
//! On the REST and management ports the same count enforces
//! `connections.http_header_read_timeout`: a connection with no request in flight for that
//! long since its accept or its last answer (silent, trickling a request head, or idle
//! between requests) is closed. hyper's own header read timeout would arm a timer for every
//! request head.

use std::{
    fmt,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};
use tracing::{debug, info, warn};

pub use crate::metrics::{AcceptErrorKind, FAILING_WINDOW, Listener, ListenerStats};

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
    last_failure: Instant,
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
        let now = Instant::now();
        match &mut self.burst {
            Some(burst) if now - burst.last_failure < FAILING_WINDOW => {
                burst.failures += 1;
                burst.last_failure = now;
            }
            // None, or a burst that ended without an accept since (nobody connected).
            _ => {
                warn!(
                    listener = self.listener.label(),
                    error = %e,
                    kind = kind.label(),
                    "cannot accept connections; pausing between tries (up to 1 s) until it \
                     works again; further failures are counted in \
                     token_service_accept_errors_total, not logged"
                );
                self.burst = Some(Burst {
                    started: now,
                    last_failure: now,
                    failures: 1,
                });
            }
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(MAX_BACKOFF);
    }

    /// After an accept: ends a burst (logged) once accepting has gone [`FAILING_WINDOW`]
    /// without a failure; an accept between failures closer together does not.
    pub fn succeeded(&mut self) {
        self.next = FIRST_BACKOFF;
        if let Some(burst) = self
            .burst
            .take_if(|burst| burst.last_failure.elapsed() >= FAILING_WINDOW)
        {
            info!(
                listener = self.listener.label(),
                failures = burst.failures,
                lasted_ms = u64::try_from((burst.last_failure - burst.started).as_millis())
                    .unwrap_or(u64::MAX),
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
    /// TCP keep-alive of each connection (`None`: off).
    pub keepalive: Option<TcpKeepalive>,
}

/// TCP keep-alive: the kernel probes a connection silent for `idle`, [`KEEPALIVE_PROBES`]
/// probes a quarter of `timeout` apart, and closes it when they all go unanswered: about
/// `idle + timeout` after the peer last spoke. Data sent and not acknowledged for as long
/// closes it too (`TCP_USER_TIMEOUT`, set to `idle + timeout`: set shorter than `idle`, the
/// kernel would give up after the first unanswered probe, one lost packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpKeepalive {
    pub idle: Duration,
    pub timeout: Duration,
}

/// Probes sent before a silent connection is given up.
const KEEPALIVE_PROBES: u32 = 4;

impl TcpKeepalive {
    /// Sets the options on `tcp`.
    fn apply(&self, tcp: &TcpStream) -> io::Result<()> {
        let socket = socket2::SockRef::from(tcp);
        let interval = (self.timeout / KEEPALIVE_PROBES).max(Duration::from_secs(1));
        socket.set_tcp_keepalive(
            &socket2::TcpKeepalive::new()
                .with_time(self.idle)
                .with_interval(interval)
                .with_retries(KEEPALIVE_PROBES),
        )?;
        socket.set_tcp_user_timeout(Some(self.idle + self.timeout))
    }
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
    /// algorithm decides; and TCP keep-alive when the limits ask for it) and its peer. Waits while the listener is at its limit; never
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
                    if let Some(keepalive) = &self.limits.keepalive
                        && let Err(e) = keepalive.apply(&tcp)
                    {
                        debug!(%peer, error = %e, "could not set TCP keep-alive");
                    }
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
    activity: Arc<Activity>,
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
            activity: Arc::default(),
            _permit: permit,
            _open: open,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.activity.closed();
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

/// What a connection is doing: its calls (gRPC calls, HTTP requests) in flight, how many
/// have started, and whether it has closed. A call touches one atomic at its start and one
/// at its end and wakes nobody: the idle watch looks at the counts on a timer of its own.
#[derive(Debug, Default)]
pub struct Activity {
    /// Calls in flight in the low 32 bits, calls started (wrapping) in the high 32.
    calls: AtomicU64,
    closed: AtomicBool,
    /// Signalled once, when the connection closes.
    changed: Notify,
}

/// One call in flight, in [`Activity::calls`].
const IN_FLIGHT_ONE: u64 = 1;
/// One call started, in [`Activity::calls`].
const STARTED_ONE: u64 = 1 << 32;

/// How a connection's wait in [`Activity::idle_or_closed`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// No call in flight for the idle timeout.
    Idle,
    /// The connection closed by itself.
    Closed,
}

/// How often, in parts of the idle timeout, the idle watch looks at a connection that had a
/// call in flight: a connection is closed at most an eighth of the timeout after it has been
/// idle for the whole timeout, never before.
const IDLE_LOOKS_PER_TIMEOUT: u32 = 8;

impl Activity {
    fn call_started(&self) {
        self.calls
            .fetch_add(STARTED_ONE + IN_FLIGHT_ONE, Ordering::AcqRel);
    }

    fn call_ended(&self) {
        self.calls.fetch_sub(IN_FLIGHT_ONE, Ordering::AcqRel);
    }

    /// (calls in flight, calls started so far, wrapping).
    fn counts(&self) -> (u64, u64) {
        let calls = self.calls.load(Ordering::Acquire);
        (calls & u64::from(u32::MAX), calls >> 32)
    }

    fn closed(&self) {
        self.closed.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// Waits until the connection has closed, or (with `idle_timeout`) has had no call in
    /// flight for that long; the idle time starts again whenever a call starts.
    ///
    /// Idle from a look that saw no call in flight: if the next look, a timeout later, sees
    /// that no call started in between, nothing was in flight the whole time. A look that
    /// sees a call in flight (or one started since) looks again an eighth of the timeout
    /// later, so a connection is closed between one timeout and one and an eighth after its
    /// last call ended.
    async fn idle_or_closed(&self, idle_timeout: Option<Duration>) -> Ended {
        let mut changed = std::pin::pin!(self.changed.notified());
        // Registered before the state is read: a close in between is not missed.
        changed.as_mut().enable();
        if self.closed.load(Ordering::Acquire) {
            return Ended::Closed;
        }
        let Some(timeout) = idle_timeout else {
            changed.await;
            return Ended::Closed;
        };
        let step = timeout / IDLE_LOOKS_PER_TIMEOUT;
        // The calls started at the look since which nothing was in flight.
        let mut idle_since: Option<(tokio::time::Instant, u64)> = None;
        loop {
            let now = tokio::time::Instant::now();
            let (in_flight, started) = self.counts();
            let next = match idle_since {
                _ if in_flight > 0 => {
                    idle_since = None;
                    now + step
                }
                Some((since, at_look)) if at_look == started => {
                    if now >= since + timeout {
                        return Ended::Idle;
                    }
                    since + timeout
                }
                _ => {
                    idle_since = Some((now, started));
                    now + timeout
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = changed.as_mut() => return Ended::Closed,
            }
        }
    }
}

/// Counts a connection's calls in flight, from the call until its answer's body ends (for a
/// stream: until the stream ends). The innermost layer of each connection's server.
#[derive(Debug, Clone)]
pub struct InFlightLayer {
    activity: Arc<Activity>,
}

impl<S> tower::Layer<S> for InFlightLayer {
    type Service = InFlight<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlight {
            inner,
            activity: self.activity.clone(),
        }
    }
}

/// See [`InFlightLayer`].
#[derive(Debug, Clone)]
pub struct InFlight<S> {
    inner: S,
    activity: Arc<Activity>,
}

/// A call in flight while it lives.
#[derive(Debug)]
struct CallGuard(Arc<Activity>);

impl CallGuard {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.call_started();
        Self(activity.clone())
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.call_ended();
    }
}

impl<S, Req, B> tower::Service<Req> for InFlight<S>
where
    S: tower::Service<Req, Response = http::Response<B>>,
{
    type Response = http::Response<CountedBody<B>>;
    type Error = S::Error;
    type Future = InFlightFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let guard = CallGuard::new(&self.activity);
        InFlightFuture {
            inner: self.inner.call(request),
            guard: Some(guard),
        }
    }
}

pin_project_lite::pin_project! {
    /// See [`InFlightLayer`]: the call's future, then its answer's body, holds the call.
    #[derive(Debug)]
    pub struct InFlightFuture<F> {
        #[pin]
        inner: F,
        guard: Option<CallGuard>,
    }
}

impl<F, B, E> Future for InFlightFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<CountedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(answer.map(|response| {
            response.map(|inner| CountedBody {
                inner,
                _guard: guard,
            })
        }))
    }
}

/// An answer's body that holds its call in flight until it is dropped.
#[derive(Debug)]
pub struct CountedBody<B> {
    inner: B,
    _guard: Option<CallGuard>,
}

impl<B: http_body::Body + Unpin> http_body::Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// HTTP/2 settings of the gRPC listener.
#[derive(Debug, Clone, Copy)]
pub struct Http2Settings {
    /// Calls a client may have open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Ping a connection silent for this long (`None`: no pings).
    pub keepalive_interval: Option<Duration>,
    /// Close a connection whose ping goes unanswered for this long.
    pub keepalive_timeout: Duration,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`.
    pub max_header_list_size: u32,
}

impl Http2Settings {
    fn builder(&self) -> hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor> {
        let mut builder =
            hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
        // No `date` header: gRPC answers do not carry one (the official servers send none),
        // and it cost every answer a header insert and a look at the cached date.
        builder
            .auto_date_header(false)
            .timer(hyper_util::rt::TokioTimer::new())
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_header_list_size(self.max_header_list_size)
            .keep_alive_interval(self.keepalive_interval)
            .keep_alive_timeout(self.keepalive_timeout);
        builder
    }
}

/// What [`serve_grpc`] knows of a connection when it asks for the connection's service.
#[derive(Debug, Clone)]
pub struct GrpcConnection {
    /// The client's address (the socket peer).
    pub peer: SocketAddr,
    /// The layer to add outermost: it counts the connection's calls for its idle timeout.
    pub in_flight: InFlightLayer,
    /// The certificate chain the client presented (mutual TLS), leaf first.
    pub client_certificates: Option<crate::tls::ClientCertificates>,
}

/// Serves gRPC (HTTP/2, over TLS when `tls` is set) on `acceptor` until `shutdown`
/// resolves, then stops accepting, closes every connection gracefully (HTTP/2 GOAWAY) and
/// waits for their calls to finish (the caller bounds that wait with the grace period; the
/// connections end when this future is dropped).
///
/// Each connection is served by hyper directly, with the service `service_for` gives it,
/// whose calls go straight to that service (tonic's own server would add a boxed service
/// clone, a connect-info extension, a boxed body each way and its own error recovery to
/// every call). With `idle_timeout`, a connection that has had no call in flight for that
/// long is told to go away (GOAWAY; a call that crossed it is still answered), counted in
/// `token_service_idle_connections_closed_total`.
///
/// The service must be ready at all times (tonic's routes are): a call is made on a clone
/// of the connection's service without asking it first.
pub async fn serve_grpc<M, S, B>(
    mut acceptor: Acceptor,
    tls: Option<Arc<rustls::ServerConfig>>,
    settings: Http2Settings,
    idle_timeout: Option<Duration>,
    service_for: M,
    shutdown: impl Future<Output = ()>,
) where
    M: Fn(GrpcConnection) -> S + Send + Sync + 'static,
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use hyper_util::rt::TokioIo;

    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let builder = settings.builder();
    let service_for = Arc::new(service_for);
    // Each connection holds a receiver while it lives.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (connection, peer) = tokio::select! {
            accepted = acceptor.accept() => accepted,
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let activity = connection.activity.clone();
        let stats = acceptor.stats.clone();
        let mut stop = stop_rx.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let service_for = Arc::clone(&service_for);
        connections.spawn(async move {
            let in_flight = InFlightLayer {
                activity: activity.clone(),
            };
            // Borrowed, not moved in: the receiver lives as long as the connection.
            let mut shutdown = std::pin::pin!(async {
                let _ = stop.wait_for(|stop| *stop).await;
            });
            let mut idle = std::pin::pin!(async move {
                if activity.idle_or_closed(idle_timeout).await == Ended::Idle {
                    stats.record_idle_closed();
                    debug!(%peer, "closing an idle gRPC connection (GOAWAY)");
                } else {
                    // Closed: the connection has ended by itself, nothing to close.
                    std::future::pending::<()>().await;
                }
            });
            let Some(acceptor) = tls else {
                let service = PerCall(service_for(GrpcConnection {
                    peer,
                    in_flight,
                    client_certificates: None,
                }));
                let served = builder.serve_connection(TokioIo::new(connection), service);
                if let Err(e) = Watched::new(served, shutdown, idle, OnOverdue::GoAway).await {
                    debug!(%peer, error = %e, "gRPC connection ended with an error");
                }
                return;
            };
            let Some(stream) = tls_handshake(
                &acceptor,
                connection,
                peer,
                shutdown.as_mut(),
                idle.as_mut(),
            )
            .await
            else {
                return;
            };
            let client_certificates = crate::tls::ClientCertificates::of(stream.get_ref().1);
            let service = PerCall(service_for(GrpcConnection {
                peer,
                in_flight,
                client_certificates,
            }));
            let served = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = Watched::new(served, shutdown, idle, OnOverdue::GoAway).await {
                debug!(%peer, error = %e, "gRPC (TLS) connection ended with an error");
            }
        });
    }
    drop(acceptor);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// The TLS handshake of a new connection, within [`crate::tls::HANDSHAKE_TIMEOUT`]: `None`
/// (logged at debug level) when it fails or times out, or when one of the connection's
/// watches fires first (a connection not yet serving just ends).
async fn tls_handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    connection: Connection,
    peer: SocketAddr,
    shutdown: Pin<&mut impl Future<Output = ()>>,
    overdue: Pin<&mut impl Future<Output = ()>>,
) -> Option<tokio_rustls::server::TlsStream<Connection>> {
    let handshake =
        tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(connection));
    tokio::select! {
        biased;
        handshake = handshake => match handshake {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                debug!(%peer, "TLS handshake timed out");
                None
            }
        },
        () = shutdown => None,
        () = overdue => None,
    }
}

/// A connection's tower service as hyper calls it: each call on a clone of the service
/// (hyper calls through a shared reference; tower's `call` takes the service mutably),
/// without `poll_ready` (see [`serve_grpc`]).
#[derive(Debug, Clone)]
struct PerCall<S>(S);

impl<S, R> hyper::service::Service<R> for PerCall<S>
where
    S: tower::Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, request: R) -> Self::Future {
        self.0.clone().call(request)
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
    /// Time a client has to send a request's head, counted from the accept (a TLS handshake
    /// included) and from the end of each answer on a kept-alive connection. The connection
    /// is closed between one and one and an eighth timeouts after that, never sooner.
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
    use hyper_util::rt::TokioIo;
    use tower::{Layer as _, ServiceExt as _};

    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    // Each connection holds a receiver: `closed` resolves once every connection has ended.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // No timer for hyper: its header read timeout arms a timer for every request head
    // (an allocation, a clock read and two trips through the timer wheel per request). The
    // connection's own watch enforces it instead, looking at the count of requests in
    // flight on a timer of its own.
    let builder = hyper::server::conn::http1::Builder::new();
    let header_read_timeout = settings.header_read_timeout;
    tokio::pin!(shutdown);
    loop {
        let (connection, peer) = tokio::select! {
            accepted = acceptor.accept() => accepted,
            () = &mut shutdown => break,
        };
        let activity = connection.activity.clone();
        let app = InFlightLayer {
            activity: activity.clone(),
        }
        .layer(
            app.clone()
                .map_request(move |mut request: axum::extract::Request<_>| {
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    request
                }),
        );
        let service = hyper_util::service::TowerToHyperService::new(app);
        let mut stop = stop_rx.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            // What ends a connection early: the server's shutdown (gracefully), or no
            // request head within the timeout of the connection's start or of its last
            // answer (a connection silent, trickling a head, or idle between requests for
            // that long is closed).
            // Borrowed, not moved in: the receiver must live as long as the connection (the
            // server's drain waits for every receiver to be dropped), not end with the wait.
            let mut shutdown = std::pin::pin!(async {
                let _ = stop.wait_for(|stop| *stop).await;
            });
            let mut overdue = std::pin::pin!(async move {
                if activity.idle_or_closed(Some(header_read_timeout)).await == Ended::Idle {
                    debug!(%peer, "no request head in time: closing the HTTP connection");
                }
            });
            let Some(acceptor) = tls else {
                let served = builder.serve_connection(TokioIo::new(connection), service);
                if let Err(e) = Watched::new(served, shutdown, overdue, OnOverdue::Close).await {
                    debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            };
            let Some(stream) = tls_handshake(
                &acceptor,
                connection,
                peer,
                shutdown.as_mut(),
                overdue.as_mut(),
            )
            .await
            else {
                return;
            };
            let served = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = Watched::new(served, shutdown, overdue, OnOverdue::Close).await {
                debug!(%peer, error = %e, "HTTPS connection ended with an error");
            }
        });
    }
    drop(acceptor);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
}

pin_project_lite::pin_project! {
    /// A connection's server and its two watches (`shutdown`: close gracefully; `overdue`:
    /// what [`OnOverdue`] says), polled so that the watches are polled only when something
    /// they wait on woke the task, not on every read and write of the connection (a
    /// `select!` polls every branch on every wake-up).
    struct Watched<C, S, O> {
        #[pin]
        served: C,
        // `None` once it has fired (or once the connection is going away).
        shutdown: Option<S>,
        overdue: Option<O>,
        on_overdue: OnOverdue,
        woken: Arc<WatchWaker>,
        // The watches' waker (wakes this task and notes that the watches are due a poll).
        watch_waker: std::task::Waker,
        // The task waker last handed to `woken`.
        task: Option<std::task::Waker>,
    }
}

/// What a [`Watched`] connection does when its `overdue` watch fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnOverdue {
    /// Ends at once (HTTP/1: a client that sent no request head in time).
    Close,
    /// Closes gracefully, as at shutdown (HTTP/2: GOAWAY to an idle connection).
    GoAway,
}

/// See [`Watched`]: notes that the watch was woken, and wakes the connection's task.
#[derive(Debug, Default)]
struct WatchWaker {
    woken: AtomicBool,
    task: std::sync::Mutex<Option<std::task::Waker>>,
}

impl std::task::Wake for WatchWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl<C, S, O> Watched<C, S, O> {
    fn new(served: C, shutdown: S, overdue: O, on_overdue: OnOverdue) -> Self {
        let woken = Arc::new(WatchWaker {
            // The first poll polls the watches too.
            woken: AtomicBool::new(true),
            task: std::sync::Mutex::new(None),
        });
        Self {
            served,
            shutdown: Some(shutdown),
            overdue: Some(overdue),
            on_overdue,
            watch_waker: std::task::Waker::from(Arc::clone(&woken)),
            woken,
            task: None,
        }
    }
}

impl<C, S, O> Future for Watched<C, S, O>
where
    C: hyper_util::server::graceful::GracefulConnection,
    S: Future<Output = ()> + Unpin,
    O: Future<Output = ()> + Unpin,
{
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // A plain load first: the swap is a locked instruction, and the watches are rarely
        // due.
        let due = this.woken.woken.load(Ordering::Acquire)
            && this.woken.woken.swap(false, Ordering::AcqRel);
        // The task's waker is handed over again after each wake-up (which takes it), or if
        // the task's waker changed.
        if due || !this.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            *this.task = Some(cx.waker().clone());
            *this.woken.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        }
        if due {
            let mut watching = Context::from_waker(this.watch_waker);
            let mut going_away = false;
            if let Some(overdue) = this.overdue.as_mut()
                && Pin::new(overdue).poll(&mut watching).is_ready()
            {
                if *this.on_overdue == OnOverdue::Close {
                    return Poll::Ready(Ok(()));
                }
                going_away = true;
            }
            if let Some(shutdown) = this.shutdown.as_mut()
                && Pin::new(shutdown).poll(&mut watching).is_ready()
            {
                *this.shutdown = None;
                going_away = true;
            }
            if going_away {
                // Once. A connection that closes when overdue stays watched while it
                // finishes (a client that trickles its request is still cut off).
                if *this.on_overdue == OnOverdue::GoAway {
                    *this.shutdown = None;
                    *this.overdue = None;
                }
                this.served.as_mut().graceful_shutdown();
            }
        }
        this.served.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_millis(60);

    #[tokio::test]
    async fn a_connection_is_idle_after_its_last_call_ends_and_never_during_one() {
        let activity = Arc::new(Activity::default());
        // Idle from the start.
        let started = Instant::now();
        assert_eq!(activity.idle_or_closed(Some(IDLE)).await, Ended::Idle);
        assert!(started.elapsed() >= IDLE);
        // A call in flight for three idle periods: idle only once it has ended, and then
        // for the whole period.
        let call = CallGuard::new(&activity);
        let ends = tokio::spawn(async move {
            tokio::time::sleep(IDLE * 3).await;
            drop(call);
            Instant::now()
        });
        assert_eq!(activity.idle_or_closed(Some(IDLE)).await, Ended::Idle);
        let returned = Instant::now();
        let call_ended = ends.await.unwrap();
        assert!(
            returned >= call_ended + IDLE,
            "idle {:?} after the call ended",
            returned - call_ended
        );
        // Without a timeout only the close ends the wait.
        let closing = {
            let activity = activity.clone();
            tokio::spawn(async move {
                tokio::time::sleep(IDLE * 2).await;
                activity.closed();
            })
        };
        assert_eq!(activity.idle_or_closed(None).await, Ended::Closed);
        closing.await.unwrap();
    }
}

#[cfg(test)]
mod keepalive_tests {
    use super::*;

    async fn accepted(keepalive: Option<TcpKeepalive>) -> Connection {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut acceptor = Acceptor::new(
            listener,
            Listener::Grpc,
            Arc::new(ListenerStats::default()),
            Limits {
                max_connections: 4,
                first_bytes_timeout: None,
                keepalive,
            },
        );
        let _client = TcpStream::connect(addr).await.unwrap();
        acceptor.accept().await.0
    }

    #[tokio::test]
    async fn an_accepted_connection_carries_the_keepalive_it_is_configured_with() {
        let connection = accepted(Some(TcpKeepalive {
            idle: Duration::from_secs(45),
            timeout: Duration::from_secs(20),
        }))
        .await;
        let socket = socket2::SockRef::from(&connection.tcp);
        assert!(socket.keepalive().unwrap());
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(45)
        );
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), KEEPALIVE_PROBES);
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(65))
        );
        assert!(socket.tcp_nodelay().unwrap());
    }

    #[tokio::test]
    async fn without_keepalive_an_accepted_connection_is_not_probed() {
        let connection = accepted(None).await;
        let socket = socket2::SockRef::from(&connection.tcp);
        assert!(!socket.keepalive().unwrap());
        assert_eq!(socket.tcp_user_timeout().unwrap(), None);
    }
}
