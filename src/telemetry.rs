//! Logs, traces and the per-request span.
//!
//! Logs go to stderr (stdout is reserved for the admin CLI's JSON), as human-readable text or
//! JSON. `RUST_LOG` overrides the configured filter. Noisy database driver targets are held at
//! `warn` unless named explicitly.
//!
//! Traces are exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the standard `OTEL_*` variables (service
//! name, resource attributes, headers, timeout, batch settings, `OTEL_SDK_DISABLED`,
//! `OTEL_TRACES_EXPORTER=none`) are honoured. Without an endpoint no OpenTelemetry layer is
//! installed at all. Spans are batched on a thread of their own and dropped when the
//! collector cannot keep up, so a collector that is down never blocks a request.
//!
//! Every gRPC call and REST request gets a request id ([`RequestLayer`]), which every log line
//! of the request names (`request{request_id=…}`, or the `span` object of a JSON line). When
//! traces are exported the request runs in one span carrying the request id, the route, the
//! final status and, once authenticated, the caller's user id; database spans sit beneath
//! it, and a W3C `traceparent` in the gRPC metadata or HTTP headers makes the span a child of
//! the caller's. Otherwise no span is created per request: the log format reads the request
//! id from the request's task-local origin when a line is logged.

use std::{
    cell::Cell,
    collections::{HashMap, HashSet},
    future::Future,
    io::IsTerminal,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context as TaskContext, Poll},
    time::{Duration, Instant},
};

use opentelemetry::{KeyValue, propagation::Extractor, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer as _, filter::filter_fn, fmt, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::{
    client_ip::{ClientIpSettings, TrustedProxies},
    config::{LogConfig, LogFormat},
    domain::{caller::Principal, ids::RequestId, lifecycle::RequestOrigin},
    metrics::{Metrics, RouteSeries, STATUS_SLOTS, Transport},
};

/// The response header (REST) and metadata entry (gRPC) telling a caller authenticated with a
/// personal access token that expires when it does (RFC 3339, UTC, milliseconds).
pub const TOKEN_EXPIRATION_HEADER: &str = "token-expiration";

/// Whether spans are exported (set once by [`init`]); propagation is skipped otherwise.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Flushes and stops the span exporter when dropped (at the end of `main`).
#[derive(Debug)]
#[must_use = "dropping the guard stops span export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Bounded: a collector that is down must not hold up the exit.
            if let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(2)) {
                eprintln!("warning: could not flush traces: {e}");
            }
        }
    }
}

/// Checks a tracing filter (`log.filter`, `RUST_LOG`) as [`init`] will parse it; an
/// invalid one is a configuration error (exit code 2), never silently replaced.
pub fn check_filter(filter: &str) -> Result<(), String> {
    EnvFilter::try_new(filter).map(|_| ()).map_err(|e| {
        format!("invalid filter {filter:?}: {e} (e.g. \"info\" or \"warn,token_service=debug\")")
    })
}

/// Checks `RUST_LOG`, which overrides `log.filter` when set.
pub fn check_rust_log() -> Result<(), String> {
    match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => {
            check_filter(&filter).map_err(|e| format!("RUST_LOG: {e}"))
        }
        _ => Ok(()),
    }
}

/// Installs the global subscriber: the log layer (to stderr), and the OTLP layer when
/// configured. Calling it twice is harmless (the second call installs nothing and exports
/// nothing).
pub fn init(config: &LogConfig) -> TelemetryGuard {
    init_with_writer(config, std::io::stderr, std::io::stderr().is_terminal())
}

/// [`init`] with the log lines written to `writer` instead of stderr (the load generator
/// keeps its in-process target's logs out of its report this way); `ansi` colours them.
pub fn init_with_writer<W>(config: &LogConfig, writer: W, ansi: bool) -> TelemetryGuard
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| {
            format!(
                "{},sqlx=warn,sea_orm=warn,h2=warn,hyper=warn",
                config.filter
            )
        });
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("invalid log filter {filter:?} ({e}); using \"info\"");
        EnvFilter::new("info")
    });
    let logs = match config.format {
        LogFormat::Text => fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .event_format(TextWithRequest::default())
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .map_event_format(|json| JsonWithRequest { json })
            .boxed(),
    }
    .with_filter(filter);

    let provider = otlp_provider();
    let traces = provider.as_ref().map(|provider| {
        let tracer = provider.tracer("token-service");
        // Our own spans (request spans at info, database spans at debug); never the
        // exporter's own HTTP/2 and gRPC client internals, which would feed back into it.
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter_fn(|meta| {
                meta.target().starts_with("token_service")
                    && (meta.is_span() || *meta.level() <= tracing::Level::INFO)
            }))
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok();
    if installed && std::env::var("RUST_LOG").map_or(true, |f| f.is_empty()) {
        // Dependencies that log through `log` (sqlx) are bridged into tracing. A `log` level
        // check that reaches the per-layer filters but is not followed by a record leaves
        // their per-thread state stale, and the next span on that thread can be lost (seen:
        // request spans missing from OTLP export on PostgreSQL). Below WARN such checks stop
        // in the `log` crate; `log.filter` holds these targets at WARN anyway, and RUST_LOG
        // (for debugging a dependency) lifts the cap.
        log::set_max_level(log::LevelFilter::Warn);
    }
    if installed && provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        EXPORTING.store(true, Ordering::Release);
    }
    TelemetryGuard {
        provider: provider.filter(|_| installed),
    }
}

/// The request a line is logged in, when it has no span of its own: while no traces are
/// exported the request layer creates no span (a span per request was a twentieth of the
/// cached path's CPU, for lines most requests never log); the request id is read from the
/// request's task-local origin when a line is logged, and written as the span was.
fn request_without_span() -> Option<RequestId> {
    if EXPORTING.load(Ordering::Relaxed) {
        return None;
    }
    RequestOrigin::with_current(|origin| origin.and_then(|o| o.request_id))
}

/// The name a request's lines give it, as its span was named (`request{request_id=…}`).
const REQUEST_SPAN_NAME: &str = "request";

/// Text lines: tracing's full format, with `request{request_id=…}:` before the line's own
/// spans when it is logged while serving a request.
#[derive(Debug)]
struct TextWithRequest {
    /// A line logged outside a request.
    whole: fmt::format::Format,
    /// What follows the timestamp and the level (spans, target, fields).
    after_level: fmt::format::Format<fmt::format::Full, ()>,
}

impl Default for TextWithRequest {
    fn default() -> Self {
        Self {
            whole: fmt::format(),
            after_level: fmt::format().without_time().with_level(false),
        }
    }
}

impl<S, N> fmt::FormatEvent<S, N> for TextWithRequest
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &fmt::FmtContext<'_, S, N>,
        mut writer: fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use fmt::time::FormatTime as _;

        let Some(request_id) = request_without_span() else {
            return self.whole.format_event(ctx, writer, event);
        };
        // The escapes tracing's format uses when writing to a terminal.
        let ansi = writer.has_ansi_escapes();
        let (bold, italic, dimmed, reset) = if ansi {
            ("\x1b[1m", "\x1b[3m", "\x1b[2m", "\x1b[0m")
        } else {
            ("", "", "", "")
        };
        writer.write_str(dimmed)?;
        if fmt::time::SystemTime.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        write!(writer, "{reset} ")?;
        let level = match *event.metadata().level() {
            tracing::Level::TRACE => ("TRACE", "\x1b[35m"),
            tracing::Level::DEBUG => ("DEBUG", "\x1b[34m"),
            tracing::Level::INFO => (" INFO", "\x1b[32m"),
            tracing::Level::WARN => (" WARN", "\x1b[33m"),
            tracing::Level::ERROR => ("ERROR", "\x1b[31m"),
        };
        if ansi {
            write!(writer, "{}{}{reset} ", level.1, level.0)?;
        } else {
            write!(writer, "{} ", level.0)?;
        }
        write!(
            writer,
            "{bold}{REQUEST_SPAN_NAME}{reset}{bold}{{{reset}{italic}request_id{reset}{dimmed}={reset}{request_id}{bold}}}{reset}{dimmed}:{reset}"
        )?;
        // The line's own spans follow without a space, as a span's children do.
        let own_spans = ctx
            .event_scope()
            .is_some_and(|mut scope| scope.next().is_some());
        if !own_spans {
            writer.write_char(' ')?;
        }
        self.after_level.format_event(ctx, writer, event)
    }
}

/// JSON lines: tracing's JSON format, whose `span` object names the request a line is logged
/// in when the line has no span of its own (`{"request_id":"…","name":"request"}`).
#[derive(Debug)]
struct JsonWithRequest {
    json: fmt::format::Format<fmt::format::Json>,
}

impl<S, N> fmt::FormatEvent<S, N> for JsonWithRequest
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &fmt::FmtContext<'_, S, N>,
        mut writer: fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let request_id = request_without_span().filter(|_| {
            // As tracing's JSON format chooses the span it prints.
            event
                .parent()
                .and_then(|id| ctx.span(id))
                .or_else(|| ctx.lookup_current())
                .is_none()
        });
        let Some(request_id) = request_id else {
            return self.json.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.json
            .format_event(ctx, fmt::format::Writer::new(&mut line), event)?;
        // One object and a newline: the span goes last, where tracing puts it.
        let object = line.trim_end().strip_suffix('}').ok_or(std::fmt::Error)?;
        writeln!(
            writer,
            "{object},\"span\":{{\"request_id\":\"{request_id}\",\"name\":\"{REQUEST_SPAN_NAME}\"}}}}"
        )
    }
}

/// The OTLP/gRPC tracer provider, if the environment asks for one.
fn otlp_provider() -> Option<SdkTracerProvider> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let endpoint =
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    if endpoint.is_none() || disabled {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("warning: traces will not be exported: {e}");
            return None;
        }
    };
    let mut resource = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if env("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("token-service");
    }
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    )
}

/// Reads W3C trace context from HTTP headers (gRPC metadata travels as HTTP/2 headers).
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The tower layer that gives every request its span, request id and metrics. Its settings
/// sit behind one `Arc`: the service stack is cloned for every call.
#[derive(Debug, Clone)]
pub struct RequestLayer {
    settings: Arc<LayerSettings>,
    /// The connection's peer, when the layer is applied per connection ([`Self::for_peer`]);
    /// otherwise each request's extensions say.
    peer: Option<std::net::IpAddr>,
}

/// The gRPC methods' places in [`LayerSettings::method_series`] by path.
type MethodIndex = HashMap<Box<str>, usize, PathTailHashing>;

/// Hashes a method path by its length and last 16 bytes (where `/package.Service/Method`
/// paths differ): a path's full 40-odd bytes took foldhash's long-input loop on every call.
/// The table is filled once from the served methods, so no client chooses its keys; a path
/// that shares a tail with a served one costs a string comparison, nothing more.
#[derive(Debug, Clone, Default)]
struct PathTailHashing(foldhash::fast::RandomState);

impl std::hash::BuildHasher for PathTailHashing {
    type Hasher = PathTailHasher;

    fn build_hasher(&self) -> Self::Hasher {
        PathTailHasher(self.0.build_hasher())
    }
}

/// See [`PathTailHashing`].
struct PathTailHasher(foldhash::fast::FoldHasher<'static>);

impl std::hash::Hasher for PathTailHasher {
    fn write(&mut self, bytes: &[u8]) {
        let tail = &bytes[bytes.len().saturating_sub(16)..];
        self.0.write(tail);
        self.0.write_usize(bytes.len());
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

#[derive(Debug, Clone)]
struct LayerSettings {
    transport: Transport,
    metrics: Arc<Metrics>,
    /// gRPC only: where each method path served has its series, so the metrics' route label
    /// stays bounded. Looked up on every call, never added to after startup (a fast hasher).
    methods: MethodIndex,
    /// gRPC only: the methods' series.
    method_series: Arc<[RouteSeries]>,
    /// Headers a trusted proxy sets to the client's address (`trusted_proxy_ip_header`).
    trusted_ip_headers: Vec<http::HeaderName>,
    /// `trusted_proxies`: when set, it decides the client's address instead of
    /// `trusted_ip_headers`.
    trusted_proxies: Arc<TrustedProxies>,
}

impl RequestLayer {
    /// For the gRPC server, which serves the methods at `known_paths`
    /// (`/package.Service/Method`).
    pub fn grpc(metrics: Arc<Metrics>, known_paths: HashSet<String>) -> Self {
        let mut paths: Vec<String> = known_paths.into_iter().collect();
        paths.sort_unstable();
        let method_series = paths
            .iter()
            .map(|path| RouteSeries::new(Transport::Grpc, path))
            .collect();
        let methods = paths
            .into_iter()
            .enumerate()
            .map(|(at, path)| (path.into_boxed_str(), at))
            .collect();
        Self::new(Transport::Grpc, metrics, methods, method_series)
    }

    /// For the HTTP server (applied per route, so the route template is known).
    pub fn http(metrics: Arc<Metrics>) -> Self {
        Self::new(
            Transport::Http,
            metrics,
            MethodIndex::default(),
            Arc::new([]),
        )
    }

    fn new(
        transport: Transport,
        metrics: Arc<Metrics>,
        methods: MethodIndex,
        method_series: Arc<[RouteSeries]>,
    ) -> Self {
        Self {
            settings: Arc::new(LayerSettings {
                transport,
                metrics,
                methods,
                method_series,
                trusted_ip_headers: Vec::new(),
                trusted_proxies: Arc::default(),
            }),
            peer: None,
        }
    }

    /// For the service of one connection, whose peer is `peer`: its requests carry no
    /// connect-info extension (the gRPC listener serves each connection with hyper directly).
    pub fn for_peer(&self, peer: std::net::SocketAddr) -> Self {
        Self {
            settings: Arc::clone(&self.settings),
            peer: Some(peer.ip().to_canonical()),
        }
    }

    /// Reads the client's address from the first of `headers` present (Mattermost's
    /// `TrustedProxyIPHeader`) instead of the peer's; names are checked by the config.
    pub fn trusting(mut self, headers: &[String]) -> Self {
        Arc::make_mut(&mut self.settings).trusted_ip_headers = headers
            .iter()
            .filter_map(|h| http::HeaderName::from_bytes(h.as_bytes()).ok())
            .collect();
        self
    }

    /// Reads the client's address as `settings` say: through `trusted_proxies` (see
    /// [`crate::client_ip`]) when any are configured, else as [`RequestLayer::trusting`].
    pub fn client_ip(self, settings: &ClientIpSettings) -> Self {
        let mut layer = self.trusting(&settings.trusted_proxy_ip_header);
        Arc::make_mut(&mut layer.settings).trusted_proxies = Arc::clone(&settings.trusted_proxies);
        layer
    }
}

/// The name of the response header (REST) and metadata entry (gRPC) carrying the request id.
pub const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The `x-request-id` value of a response. Marked sensitive so that HPACK sends it as a
/// literal never indexed: a value seen once would otherwise be added to the connection's
/// header table on every response, pushing out the entries that repeat (measured on the
/// cached gRPC path: about a tenth of its throughput). HTTP/1.1 ignores the mark.
///
/// The value's bytes are cut from a per-thread block shared by the next hundred or so
/// answers' ids, so a response's id costs no allocation of its own.
pub fn request_id_header(request_id: &RequestId) -> Option<http::HeaderValue> {
    let mut value = http::HeaderValue::from_maybe_shared(id_bytes(request_id.as_str())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Bytes of the per-thread blocks the request id header values are cut from.
const ID_BLOCK_BYTES: usize = 4096;

/// `text` copied into this thread's current block (a new block when it is full).
fn id_bytes(text: &str) -> bytes::Bytes {
    thread_local! {
        static BLOCK: std::cell::RefCell<bytes::BytesMut> =
            std::cell::RefCell::new(bytes::BytesMut::new());
    }
    BLOCK.with(|block| {
        let mut block = block.borrow_mut();
        // Empty after every `split`: its capacity is what is left of the block.
        if block.capacity() < text.len() {
            *block = bytes::BytesMut::with_capacity(ID_BLOCK_BYTES.max(text.len()));
        }
        block.extend_from_slice(text.as_bytes());
        block.split().freeze()
    })
}

/// The client's address. With `trusted_proxies` configured: the peer's, or, when the peer is
/// a trusted proxy, the address its `Forwarded` / `X-Forwarded-For` chain names (see
/// [`crate::client_ip`]). Otherwise the first `trusted_proxy_ip_header` present (its first
/// address, as Mattermost's `GetIPAddress`; a value that is not an IP address counts as
/// absent, so no header text reaches the audit trail), else the peer's address (`peer`,
/// given per connection on the gRPC listener; else the request's extensions: REST, axum's
/// `ConnectInfo`); none over the local socket.
fn client_ip<B>(
    request: &http::Request<B>,
    peer: Option<std::net::IpAddr>,
    trusted: &[http::HeaderName],
    proxies: &TrustedProxies,
) -> Option<std::net::IpAddr> {
    let peer_ip = || peer.or_else(|| peer_ip(request));
    if !proxies.is_empty() {
        return peer_ip().map(|peer| proxies.client_ip(peer, request.headers()));
    }
    for header in trusted {
        if let Some(value) = request.headers().get(header).and_then(|v| v.to_str().ok()) {
            let first = value.split(',').next().unwrap_or("").trim();
            if let Ok(ip) = first.parse::<std::net::IpAddr>() {
                return Some(ip.to_canonical());
            }
        }
    }
    peer_ip()
}

/// The socket peer's address as the request's extensions give it (REST: axum's
/// `ConnectInfo`; the gRPC listener gives it per connection instead).
fn peer_ip<B>(request: &http::Request<B>) -> Option<std::net::IpAddr> {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip().to_canonical())
}

impl<S> tower::Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestService {
            inner,
            shared: Arc::new(ServiceShared {
                settings: Arc::clone(&self.settings),
                peer: self.peer,
                route: OnceLock::new(),
            }),
        }
    }
}

/// See [`RequestLayer`].
/// Cloned for every request (tonic and axum clone the service stack per call), so all it
/// shares is behind one `Arc`: one reference count written per clone, not one per field.
#[derive(Debug, Clone)]
pub struct RequestService<S> {
    inner: S,
    shared: Arc<ServiceShared>,
}

/// What a [`RequestService`] and its requests' futures share.
#[derive(Debug)]
struct ServiceShared {
    settings: Arc<LayerSettings>,
    /// See [`RequestLayer::peer`].
    peer: Option<std::net::IpAddr>,
    /// HTTP: the series of the route this service serves (the layer is applied per route),
    /// set by its first request.
    route: OnceLock<RouteSeries>,
}

/// A boxed, sendable future (what the REST envelope answers with).
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// `agent` as a shared string: the thread's last one when it is the same (clients send one
/// `User-Agent` on every request), so a request's origin costs no allocation for it.
fn shared_user_agent(agent: &str) -> Arc<str> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<Arc<str>>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some(known) if **known == *agent => Arc::clone(known),
            _ => {
                let fresh: Arc<str> = Arc::from(agent);
                *last = Some(Arc::clone(&fresh));
                fresh
            }
        }
    })
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RequestService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RequestFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let request_id = RequestId::generate();
        let shared = Arc::clone(&self.shared);
        let settings = &shared.settings;
        let transport = settings.transport;
        let route = route_of(&shared, &request);
        let exporting = EXPORTING.load(Ordering::Acquire);
        // A span only for export: log lines name the request without one (see
        // `request_without_span`).
        let span = if exporting {
            let span = trace_span(transport, &request, route.label(&shared), &request_id);
            let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
                propagator.extract(&HeaderExtractor(request.headers()))
            });
            let _ = span.set_parent(parent);
            span
        } else {
            Span::none()
        };
        // What the request changes is recorded with where it came from; the caller's
        // credential expiry is noted in it while it is served and read back at the end.
        let origin = RequestOrigin {
            ip: client_ip(
                &request,
                shared.peer,
                &settings.trusted_ip_headers,
                &settings.trusted_proxies,
            ),
            user_agent: request
                .headers()
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(shared_user_agent),
            request_id: Some(request_id),
            credential_expiry: Cell::new(0),
            request_received: Cell::new(false),
        };
        // The REST envelope and the gateway endpoints read the id from the request; gRPC
        // handlers only through the origin (an insert would grow the extension map).
        if transport != Transport::Grpc {
            request.extensions_mut().insert(request_id);
        }
        let call = {
            let _entered = span.enter();
            origin.scoped(self.inner.call(request))
        };
        RequestFuture {
            call,
            span,
            ending: Some(Ending {
                start,
                request_id,
                route,
                shared,
                exporting,
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request under [`RequestService`]: the inner service's call in the request's origin
    /// (and span, when traced), then the answer's headers and metrics. Not boxed: the
    /// transport's own future holds it.
    pub struct RequestFuture<F> {
        #[pin]
        call: tokio::task::futures::TaskLocalFuture<RequestOrigin, F>,
        span: Span,
        ending: Option<Ending>,
    }
}

/// What [`RequestFuture`] needs once the call answers.
struct Ending {
    start: Instant,
    request_id: RequestId,
    route: Route,
    shared: Arc<ServiceShared>,
    exporting: bool,
}

impl<F, B, E> Future for RequestFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let mut result = std::task::ready!(this.call.as_mut().poll(cx));
        let credential_expiry = this
            .call
            .take_value()
            .map_or(0, |origin| origin.credential_expiry.get());
        let ending = this.ending.take().expect("polled after completion");
        ending.answer(&mut result, credential_expiry);
        Poll::Ready(result)
    }
}

impl Ending {
    /// Adds the answer's headers (the caller's credential expiry; gRPC: the request id) and
    /// records the request's metrics.
    fn answer<B, E>(self, result: &mut Result<http::Response<B>, E>, credential_expiry: i64) {
        let shared = &self.shared;
        let transport = shared.settings.transport;
        if credential_expiry > 0
            && let Ok(response) = &mut *result
            && let Ok(value) =
                http::HeaderValue::from_str(&crate::domain::lifecycle::rfc3339(credential_expiry))
        {
            response
                .headers_mut()
                .insert(TOKEN_EXPIRATION_HEADER, value);
        }
        // gRPC callers learn the request id (the one in logs, traces and lifecycle
        // records) from the response metadata; the REST envelope sets the header.
        if transport == Transport::Grpc
            && let Ok(response) = &mut *result
            && let Some(value) = request_id_header(&self.request_id)
        {
            response.headers_mut().insert(X_REQUEST_ID, value);
        }
        let (slot, status) = match &*result {
            Ok(response) => finish(transport, response, self.exporting),
            // The transport could not answer at all (a broken connection).
            Err(_) => (ERROR_SLOT, "ERROR"),
        };
        let elapsed = self.start.elapsed();
        let metrics = &shared.settings.metrics;
        match self.route.series(shared) {
            Some(series) => series.record(metrics, slot, status, elapsed),
            None => metrics.record_request(transport, self.route.label(shared), status, elapsed),
        }
    }
}

/// The route label of `request`: the gRPC method path if it is one we serve, the REST route
/// template if the router matched one; otherwise a fixed word (arbitrary paths never become
/// metric series). Shared, not copied: this runs on every request.
fn route_of<B>(shared: &ServiceShared, request: &http::Request<B>) -> Route {
    let settings = &shared.settings;
    match settings.transport {
        Transport::Grpc => settings
            .methods
            .get(request.uri().path())
            .map_or(Route::Fixed("unknown"), |&at| Route::Method(at)),
        Transport::Http => {
            let Some(matched) = request.extensions().get::<axum::extract::MatchedPath>() else {
                return Route::Fixed("unmatched");
            };
            let matched = matched.as_str();
            let served = shared
                .route
                .get_or_init(|| RouteSeries::new(Transport::Http, matched));
            if served.route() == matched {
                Route::Served
            } else {
                // Not expected (the layer is applied per route), and still counted.
                Route::Other(Arc::new(RouteSeries::new(Transport::Http, matched)))
            }
        }
    }
}

/// A request's route label.
enum Route {
    /// A gRPC method we serve: its place in [`LayerSettings::method_series`].
    Method(usize),
    /// The REST route template this service serves ([`ServiceShared::route`]).
    Served,
    /// Another route template the router matched.
    Other(Arc<RouteSeries>),
    /// Anything else.
    Fixed(&'static str),
}

impl Route {
    /// The series this route records to, if it has one.
    fn series<'a>(&'a self, shared: &'a ServiceShared) -> Option<&'a RouteSeries> {
        match self {
            Route::Method(at) => shared.settings.method_series.get(*at),
            Route::Served => shared.route.get(),
            Route::Other(series) => Some(series),
            Route::Fixed(_) => None,
        }
    }

    /// The route label.
    fn label<'a>(&'a self, shared: &'a ServiceShared) -> &'a str {
        match self {
            Route::Fixed(word) => word,
            _ => self.series(shared).map_or("unknown", RouteSeries::route),
        }
    }
}

/// The span of a request whose trace is exported: OpenTelemetry's conventions for RPC and
/// HTTP servers.
fn trace_span<B>(
    transport: Transport,
    request: &http::Request<B>,
    route: &str,
    request_id: &RequestId,
) -> Span {
    match transport {
        Transport::Grpc => {
            let (service, method) = route
                .trim_start_matches('/')
                .split_once('/')
                .unwrap_or(("", ""));
            tracing::info_span!(
                "grpc",
                otel.name = %route.trim_start_matches('/'),
                otel.kind = "server",
                otel.status_code = Empty,
                request_id = %request_id,
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = Empty,
                enduser.id = Empty,
            )
        }
        Transport::Http => tracing::info_span!(
            "http",
            otel.name = %format_args!("{} {route}", request.method()),
            otel.kind = "server",
            otel.status_code = Empty,
            request_id = %request_id,
            http.request.method = %request.method(),
            http.route = %route,
            http.response.status_code = Empty,
            enduser.id = Empty,
        ),
    }
}

/// Names the authenticated caller on the request's span (traces only), and notes when the
/// caller's personal access token expires, if it does, for the response's
/// [`TOKEN_EXPIRATION_HEADER`].
pub(crate) fn record_caller(principal: &Principal) {
    if EXPORTING.load(Ordering::Relaxed) {
        Span::current().record("enduser.id", principal.user.id.as_str());
    }
    if principal.access_token.is_some() {
        // The token's expiry, or the end of a rotated-away secret's grace period if sooner.
        let expires_at = principal.expires_at();
        if expires_at > 0 {
            RequestOrigin::note_credential_expiry(expires_at);
        }
    }
}

/// The status slot (see [`RouteSeries`]) of a request that got no answer at all.
const ERROR_SLOT: usize = STATUS_SLOTS - 1;

/// Records the response's status on the current span (when traced); returns the metrics'
/// status label and its slot.
fn finish<B>(
    transport: Transport,
    response: &http::Response<B>,
    traced: bool,
) -> (usize, &'static str) {
    let span = if traced {
        Span::current()
    } else {
        Span::none()
    };
    match transport {
        Transport::Grpc => {
            // An error is sent "trailers-only", in the headers; a success ends with
            // grpc-status 0 in the trailers.
            let code = response
                .headers()
                .get(tonic::Status::GRPC_STATUS)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(tonic::Code::Ok, tonic::Code::from_i32);
            span.record("rpc.grpc.status_code", code as i32);
            if matches!(
                code,
                tonic::Code::Unknown
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unimplemented
                    | tonic::Code::Internal
                    | tonic::Code::Unavailable
                    | tonic::Code::DataLoss
            ) {
                span.record("otel.status_code", "error");
            }
            (code as usize, grpc_code_name(code))
        }
        Transport::Http => {
            let status = response.status();
            span.record("http.response.status_code", status.as_u16());
            if status.is_server_error() {
                span.record("otel.status_code", "error");
            }
            let slot = http_status_slot(status);
            (slot, HTTP_STATUS_LABELS[slot])
        }
    }
}

/// The HTTP statuses this service answers with, spelled out as labels, and one label any
/// other shares (a label is never built per request).
const HTTP_STATUS_LABELS: [&str; 17] = [
    "200", "201", "204", "304", "400", "401", "403", "404", "405", "410", "413", "429", "500",
    "501", "503", "504", "other",
];

/// The slot of an HTTP status's label in [`HTTP_STATUS_LABELS`].
fn http_status_slot(status: http::StatusCode) -> usize {
    match status.as_u16() {
        200 => 0,
        201 => 1,
        204 => 2,
        304 => 3,
        400 => 4,
        401 => 5,
        403 => 6,
        404 => 7,
        405 => 8,
        410 => 9,
        413 => 10,
        429 => 11,
        500 => 12,
        501 => 13,
        503 => 14,
        504 => 15,
        _ => 16,
    }
}

/// A gRPC code's canonical name (as in the gRPC status code table).
fn grpc_code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn take(&self) -> Vec<String> {
            let bytes = std::mem::take(&mut *self.0.lock().unwrap());
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// Logs one line outside a request, one inside, and one inside a span of its own within
    /// the request; returns the three lines.
    async fn three_lines(json: bool) -> Vec<String> {
        let lines = Lines::default();
        let writer = {
            let lines = lines.clone();
            move || lines.clone()
        };
        let subscriber = tracing_subscriber::registry().with(if json {
            fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(writer)
                .map_event_format(|json| JsonWithRequest { json })
                .boxed()
        } else {
            fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .event_format(TextWithRequest::default())
                .boxed()
        });
        let _default = tracing::subscriber::set_default(subscriber);
        tracing::info!(target: "audit", action = "outside", "no request");
        let origin = RequestOrigin {
            request_id: Some(RequestId::generate()),
            ..RequestOrigin::default()
        };
        origin
            .scope(async {
                tracing::warn!(target: "audit", action = "inside", "in a request");
                let _db = tracing::info_span!("db", db.system = "sqlite").entered();
                tracing::info!(target: "audit", "in a span of its own");
            })
            .await;
        lines.take()
    }

    #[test]
    fn the_request_id_header_is_never_indexed() {
        let id = RequestId::generate();
        let value = request_id_header(&id).unwrap();
        assert_eq!(value.to_str().unwrap(), id.as_str());
        // h2 sends a sensitive value as a literal never indexed (RFC 7541 6.2.3).
        assert!(value.is_sensitive());
    }

    #[test]
    fn a_user_agent_is_shared_while_it_repeats_and_never_mixed_up() {
        let first = shared_user_agent("curl/8");
        let again = shared_user_agent("curl/8");
        assert!(Arc::ptr_eq(&first, &again), "the same value is shared");
        assert_eq!(&*shared_user_agent("grpc-go/1.70"), "grpc-go/1.70");
        assert_eq!(&*shared_user_agent("curl/8"), "curl/8");
        assert_eq!(&*shared_user_agent(""), "");
    }

    #[test]
    fn method_paths_are_found_by_their_whole_text() {
        let paths = [
            "/a.v1.Service/IntrospectToken",
            "/b.v1.Service/IntrospectToken",
            "/grpc.health.v1.Health/Check",
            "/x",
        ];
        let index: MethodIndex = paths
            .into_iter()
            .enumerate()
            .map(|(at, path)| (Box::from(path), at))
            .collect();
        for (at, path) in paths.into_iter().enumerate() {
            assert_eq!(index.get(path), Some(&at), "{path}");
        }
        for unknown in ["/c.v1.Service/IntrospectToken", "IntrospectToken", "/y", ""] {
            assert_eq!(index.get(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn request_id_values_cut_from_one_block_stay_their_own() {
        // Enough ids to fill several blocks: each value keeps its own text after the block
        // it was cut from is full and replaced.
        let ids: Vec<RequestId> = (0..1000).map(|_| RequestId::generate()).collect();
        let values: Vec<http::HeaderValue> = ids
            .iter()
            .map(|id| request_id_header(id).unwrap())
            .collect();
        for (id, value) in ids.iter().zip(&values) {
            assert_eq!(value.to_str().unwrap(), id.as_str());
        }
        let long = "x".repeat(ID_BLOCK_BYTES + 10);
        assert_eq!(id_bytes(&long).len(), long.len(), "longer than a block");
        assert_eq!(&id_bytes("after")[..], b"after");
    }

    #[tokio::test]
    async fn text_lines_name_the_request_they_are_logged_in() {
        let lines = three_lines(false).await;
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(
            lines[0].ends_with(" INFO audit: no request action=\"outside\""),
            "{}",
            lines[0]
        );
        let (_, inside) = lines[1].split_once(' ').unwrap();
        let id = inside
            .strip_prefix(" WARN request{request_id=")
            .and_then(|rest| rest.split_once("}: audit: in a request action=\"inside\""))
            .map(|(id, end)| (id, end.is_empty()));
        assert!(
            matches!(id, Some((id, true)) if id.len() == 26),
            "{}",
            lines[1]
        );
        let id = id.unwrap().0;
        assert!(
            lines[2].ends_with(&format!(
                " INFO request{{request_id={id}}}:db{{db.system=\"sqlite\"}}: audit: in a span of its own"
            )),
            "{}",
            lines[2]
        );
    }

    #[tokio::test]
    async fn json_lines_name_the_request_they_are_logged_in_as_their_span() {
        let lines: Vec<serde_json::Value> = three_lines(true)
            .await
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[0].get("span").is_none(), "{}", lines[0]);
        assert_eq!(lines[0]["fields"]["action"], "outside");
        let span = &lines[1]["span"];
        assert_eq!(span["name"], "request", "{}", lines[1]);
        assert_eq!(span["request_id"].as_str().map(str::len), Some(26));
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["target"], "audit");
        assert_eq!(lines[1]["fields"]["message"], "in a request");
        // A line with a span of its own names that span, as tracing's format does.
        assert_eq!(lines[2]["span"]["name"], "db", "{}", lines[2]);
    }
}
