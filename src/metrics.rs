//! Metrics in the Prometheus text format, served at `GET /metrics` on the HTTP address.
//!
//! Each server owns its registry (no process-global recorder), so several servers in one
//! process (the test suite) keep their own figures. Recording is a read lock and a few atomic
//! additions; rendering reads the token cache's counters and the database pool at scrape time.
//!
//! Also rendered at scrape time: `token_service_build_info` (version and git commit) and, on
//! Linux, the standard `process_*` metrics read from `/proc/self` (CPU seconds, resident and
//! virtual memory, open and maximum file descriptors, threads, start time).
//!
//! This stays hand-written rather than `prometheus-client`: that crate's label families look
//! a series up by an owned label set (an allocation per request on the hot path), where the
//! nested maps here are looked up with borrowed `&str`s.

use std::{
    collections::HashMap,
    fmt::Write as _,
    io,
    sync::{
        Arc, Mutex, OnceLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; BUCKETS] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Upper bounds of the webhook delivery lag buckets, in seconds (a lag includes retries).
const LAG_BUCKETS: [f64; BUCKETS] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3_600.0, 86_400.0,
];

/// How many buckets a histogram has (both bound sets above).
const BUCKETS: usize = 14;

/// How many copies of its counters a histogram keeps: threads that record at the same time
/// mostly write different copies (and cache lines), not one line every core fights over.
const STRIPES: usize = 8;

/// A histogram with fixed buckets; every operation is an atomic addition, to the recording
/// thread's stripe.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64; BUCKETS],
    stripes: Box<[Stripe; STRIPES]>,
}

/// One copy of a histogram's counters, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// The stripe the current thread records to.
fn own_stripe() -> usize {
    crate::stripes::thread_number() % STRIPES
}

impl Default for Histogram {
    fn default() -> Self {
        Self::with_bounds(&LATENCY_BUCKETS)
    }
}

impl Histogram {
    /// A histogram with these bucket upper bounds (seconds, increasing).
    fn with_bounds(bounds: &'static [f64; BUCKETS]) -> Self {
        Self {
            bounds,
            stripes: Box::default(),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let stripe = &self.stripes[own_stripe()];
        let seconds = value.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b) {
            stripe.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        stripe.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        stripe.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// How many observations were recorded.
    pub fn count(&self) -> u64 {
        self.total(|stripe| &stripe.count)
    }

    /// The sum of one counter over the stripes.
    fn total(&self, counter: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
        self.stripes
            .iter()
            .map(|stripe| counter(stripe).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.total(|stripe| &stripe.buckets[i]);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        // Read after the buckets, so it is at least their total (a recording between the
        // reads must not make +Inf smaller than a finite bucket).
        let count = self.count().max(cumulative);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.total(|stripe| &stripe.sum_nanos) as f64 / 1e9;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// Which transport served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// One request series: transport, route (RPC path or REST route template), status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SeriesKey {
    transport: Transport,
    route: String,
    status: String,
}

/// Transport -> route -> status -> histogram; nested so a lookup borrows `&str` and
/// allocates nothing.
type Series = HashMap<Transport, HashMap<String, HashMap<String, Arc<Histogram>>>>;

/// How many status labels one route can have: the 17 gRPC codes, or the HTTP statuses this
/// service answers with and "other"; and "ERROR" (no answer at all).
pub const STATUS_SLOTS: usize = 18;

/// One route's request series of one registry, each status's histogram looked up once and
/// kept: the request layer records a request with no lock and no hashing. A slot always
/// stands for the same status label (the request layer numbers them).
#[derive(Debug)]
pub struct RouteSeries {
    transport: Transport,
    route: Box<str>,
    by_status: [OnceLock<Arc<Histogram>>; STATUS_SLOTS],
}

impl RouteSeries {
    /// The series of `route` served over `transport`.
    pub fn new(transport: Transport, route: &str) -> Self {
        Self {
            transport,
            route: Box::from(route),
            by_status: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The route label.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Records a request of this route answered with `status`, the label of slot `slot`, in
    /// `metrics` (the registry these series belong to).
    pub fn record(&self, metrics: &Metrics, slot: usize, status: &str, elapsed: Duration) {
        match self.by_status.get(slot) {
            Some(cell) => cell
                .get_or_init(|| metrics.request_histogram(self.transport, &self.route, status))
                .observe(elapsed),
            None => metrics.record_request(self.transport, &self.route, status, elapsed),
        }
    }
}

/// Figures the registry reads from elsewhere when it is scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_evictions: u64,
    pub cache_entries: usize,
    pub cache_trusted: bool,
    pub pool_connections: u32,
    pub pool_idle: usize,
    pub pool_max: u32,
    pub check_connections: usize,
    pub watch_streams: usize,
}

/// How a webhook delivery attempt ended (the `outcome` label).
pub const WEBHOOK_OUTCOMES: [&str; 3] = ["delivered", "http_error", "transport_error"];

/// A server's metrics.
#[derive(Debug)]
pub struct Metrics {
    requests: RwLock<Series>,
    revocation_lag: Histogram,
    /// Webhook attempts by [`WEBHOOK_OUTCOMES`].
    webhook_deliveries: [AtomicU64; WEBHOOK_OUTCOMES.len()],
    webhooks_disabled: AtomicU64,
    webhook_lag: Histogram,
    /// Job runs started here, by [`JOBS`].
    job_runs: [AtomicU64; JOBS.len()],
    expired_tokens_deleted: AtomicU64,
    expiry_notices: AtomicU64,
    /// Last-use flush: token rows written, transactions committed, batches failed.
    last_use_token_writes: AtomicU64,
    last_use_batches: AtomicU64,
    last_use_failures: AtomicU64,
    /// Leaked-token reports, by [`LEAK_REPORT_OUTCOMES`].
    leak_reports: [AtomicU64; LEAK_REPORT_OUTCOMES.len()],
    /// Credentials revoked because a report named them.
    leaked_credentials_revoked: AtomicU64,
    /// Failed checks of a caller's own credential; requests refused by the guess throttle;
    /// addresses it started refusing.
    failed_credential_checks: AtomicU64,
    guess_throttled: AtomicU64,
    guess_throttle_blocks: AtomicU64,
    /// Token checks answered from a cache entry kept through a database outage.
    stale_answers: AtomicU64,
    /// Presented tokens refused on their shape alone, by [`REFUSED_SHAPES`].
    refused_token_shapes: [AtomicU64; REFUSED_SHAPES.len()],
    /// ext_authz Checks by [`EXT_AUTHZ_OUTCOMES`].
    ext_authz_checks: [AtomicU64; EXT_AUTHZ_OUTCOMES.len()],
    /// Gateway checks by [`GatewayEndpoint`] and [`GatewayOutcome`].
    gateway_checks: [[AtomicU64; GatewayOutcome::ALL.len()]; GatewayEndpoint::ALL.len()],
    /// The listeners: failed accepts, open connections.
    listeners: Arc<ListenerStats>,
}

/// A gateway endpoint (the `endpoint` label of `token_service_gateway_checks_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayEndpoint {
    /// RFC 7662 token introspection, `POST /oauth2/introspect`.
    Introspect,
    /// nginx `auth_request`, `GET /auth/verify`.
    Verify,
}

impl GatewayEndpoint {
    /// Every endpoint, in label order.
    pub const ALL: [GatewayEndpoint; 2] = [GatewayEndpoint::Introspect, GatewayEndpoint::Verify];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            GatewayEndpoint::Introspect => "introspect",
            GatewayEndpoint::Verify => "verify",
        }
    }
}

/// How a gateway check ended (the `outcome` label of `token_service_gateway_checks_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayOutcome {
    /// The checked credential authenticates (and holds the required roles).
    Active,
    /// The checked credential does not authenticate (a token was presented).
    Inactive,
    /// `auth_request`: the credential authenticates but lacks a required role; RFC 7662: the
    /// caller authenticated but lacks `introspect_token`.
    Denied,
    /// `auth_request`: no credential was presented; RFC 7662: the caller did not
    /// authenticate.
    Unauthorized,
    /// The check could not be made: a malformed request, or the database unavailable.
    Error,
}

impl GatewayOutcome {
    /// Every outcome, in label order.
    pub const ALL: [GatewayOutcome; 5] = [
        GatewayOutcome::Active,
        GatewayOutcome::Inactive,
        GatewayOutcome::Denied,
        GatewayOutcome::Unauthorized,
        GatewayOutcome::Error,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            GatewayOutcome::Active => "active",
            GatewayOutcome::Inactive => "inactive",
            GatewayOutcome::Denied => "denied",
            GatewayOutcome::Unauthorized => "unauthorized",
            GatewayOutcome::Error => "error",
        }
    }
}

/// What became of a leaked-token report (the `outcome` label).
pub const LEAK_REPORT_OUTCOMES: [&str; 2] = ["accepted", "rate_limited"];

/// Why a presented token was refused before any lookup (the `shape` label).
pub const REFUSED_SHAPES: [&str; 2] = ["bad_checksum", "malformed"];

/// How an ext_authz Check ended (the `outcome` label): allowed, denied (401 or 403), not
/// decided (database unavailable), or refused because the gateway may not ask.
pub const EXT_AUTHZ_OUTCOMES: [&str; 5] = [
    "allowed",
    "denied_unauthenticated",
    "denied_forbidden",
    "error",
    "caller_rejected",
];

/// The scheduled jobs (the `job` label).
pub const JOBS: [&str; 2] = [
    "cleanup_expired_access_tokens",
    "notify_expiring_access_tokens",
];

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: RwLock::default(),
            revocation_lag: Histogram::default(),
            webhook_deliveries: std::array::from_fn(|_| AtomicU64::new(0)),
            webhooks_disabled: AtomicU64::new(0),
            webhook_lag: Histogram::with_bounds(&LAG_BUCKETS),
            job_runs: std::array::from_fn(|_| AtomicU64::new(0)),
            expired_tokens_deleted: AtomicU64::new(0),
            expiry_notices: AtomicU64::new(0),
            last_use_token_writes: AtomicU64::new(0),
            last_use_batches: AtomicU64::new(0),
            last_use_failures: AtomicU64::new(0),
            refused_token_shapes: std::array::from_fn(|_| AtomicU64::new(0)),
            failed_credential_checks: AtomicU64::new(0),
            guess_throttled: AtomicU64::new(0),
            guess_throttle_blocks: AtomicU64::new(0),
            stale_answers: AtomicU64::new(0),
            leak_reports: std::array::from_fn(|_| AtomicU64::new(0)),
            leaked_credentials_revoked: AtomicU64::new(0),
            ext_authz_checks: std::array::from_fn(|_| AtomicU64::new(0)),
            gateway_checks: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            listeners: Arc::default(),
        }
    }
}

impl Metrics {
    /// A new, empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records a finished request (or a stream that has started answering).
    pub fn record_request(
        &self,
        transport: Transport,
        route: &str,
        status: &str,
        elapsed: Duration,
    ) {
        self.request_histogram(transport, route, status)
            .observe(elapsed);
    }

    /// The histogram of one request series, registered on first use.
    fn request_histogram(&self, transport: Transport, route: &str, status: &str) -> Arc<Histogram> {
        let found = {
            let series = self.requests.read().unwrap_or_else(|e| e.into_inner());
            series
                .get(&transport)
                .and_then(|routes| routes.get(route))
                .and_then(|statuses| statuses.get(status))
                .map(Arc::clone)
        };
        found.unwrap_or_else(|| {
            let mut series = self.requests.write().unwrap_or_else(|e| e.into_inner());
            Arc::clone(
                series
                    .entry(transport)
                    .or_default()
                    .entry(route.to_owned())
                    .or_default()
                    .entry(status.to_owned())
                    .or_default(),
            )
        })
    }

    /// Records how long a revocation took from its commit to this replica's cache.
    pub fn record_revocation_lag(&self, lag: Duration) {
        self.revocation_lag.observe(lag);
    }

    /// Counts a webhook delivery attempt by its outcome (one of [`WEBHOOK_OUTCOMES`]).
    pub fn record_webhook_delivery(&self, outcome: &str) {
        if let Some(i) = WEBHOOK_OUTCOMES.iter().position(|o| *o == outcome) {
            self.webhook_deliveries[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an endpoint disabled by delivery.
    pub fn record_webhook_disabled(&self) {
        self.webhooks_disabled.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how long a lifecycle record took from its commit to an endpoint's 2xx.
    pub fn record_webhook_lag(&self, lag: Duration) {
        self.webhook_lag.observe(lag);
    }

    /// Counts a run of `job` (one of [`JOBS`]) started on this replica.
    pub fn record_job_run(&self, job: &str) {
        if let Some(i) = JOBS.iter().position(|j| *j == job) {
            self.job_runs[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts expired tokens the cleanup job deleted here.
    pub fn record_expired_tokens_deleted(&self, count: u64) {
        self.expired_tokens_deleted
            .fetch_add(count, Ordering::Relaxed);
    }

    /// Counts expiry notices recorded here.
    pub fn record_expiry_notices(&self, count: u64) {
        self.expiry_notices.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts a committed last-use batch that wrote `tokens` token rows.
    pub fn record_last_use_flush(&self, tokens: usize) {
        self.last_use_batches.fetch_add(1, Ordering::Relaxed);
        self.last_use_token_writes
            .fetch_add(tokens as u64, Ordering::Relaxed);
    }

    /// Counts a last-use batch that failed (its uses wait for the next flush).
    pub fn record_last_use_flush_failure(&self) {
        self.last_use_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a presented token refused on its shape (one of [`REFUSED_SHAPES`]; no cache
    /// or database lookup was made).
    pub fn record_refused_token_shape(&self, shape: &str) {
        if let Some(i) = REFUSED_SHAPES.iter().position(|s| *s == shape) {
            self.refused_token_shapes[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a failed check of a caller's own credential (see `domain::guess_throttle`).
    pub fn record_failed_credential_check(&self) {
        self.failed_credential_checks
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request the guess throttle refused (its address is in its cool-down).
    pub fn record_guess_throttled(&self) {
        self.guess_throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an address the guess throttle started refusing.
    pub fn record_guess_throttle_block(&self) {
        self.guess_throttle_blocks.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a token check answered stale during a database outage (fail static).
    pub fn record_stale_answer(&self) {
        self.stale_answers.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a leaked-token report by its outcome (one of [`LEAK_REPORT_OUTCOMES`]).
    pub fn record_leak_report(&self, outcome: &str) {
        if let Some(i) = LEAK_REPORT_OUTCOMES.iter().position(|o| *o == outcome) {
            self.leak_reports[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts credentials revoked because a report named them.
    pub fn record_leaked_credentials_revoked(&self, count: u64) {
        self.leaked_credentials_revoked
            .fetch_add(count, Ordering::Relaxed);
    }

    /// Counts an ext_authz Check by its outcome (one of [`EXT_AUTHZ_OUTCOMES`]).
    pub fn record_ext_authz_check(&self, outcome: &str) {
        if let Some(i) = EXT_AUTHZ_OUTCOMES.iter().position(|o| *o == outcome) {
            self.ext_authz_checks[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// ext_authz Checks so far with `outcome`.
    pub fn ext_authz_checks(&self, outcome: &str) -> u64 {
        EXT_AUTHZ_OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .map_or(0, |i| self.ext_authz_checks[i].load(Ordering::Relaxed))
    }

    /// Counts a gateway check by its endpoint and outcome.
    pub fn record_gateway_check(&self, endpoint: GatewayEndpoint, outcome: GatewayOutcome) {
        self.gateway_checks[endpoint as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Gateway checks so far at `endpoint` with `outcome`.
    pub fn gateway_checks(&self, endpoint: GatewayEndpoint, outcome: GatewayOutcome) -> u64 {
        self.gateway_checks[endpoint as usize][outcome as usize].load(Ordering::Relaxed)
    }

    /// Token rows the last-use flush has written so far.
    pub fn last_use_token_writes(&self) -> u64 {
        self.last_use_token_writes.load(Ordering::Relaxed)
    }

    /// Webhook attempts so far with `outcome`.
    pub fn webhook_deliveries(&self, outcome: &str) -> u64 {
        WEBHOOK_OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .map_or(0, |i| self.webhook_deliveries[i].load(Ordering::Relaxed))
    }

    /// The listeners' figures (their accept loops write them).
    pub fn listeners(&self) -> &Arc<ListenerStats> {
        &self.listeners
    }

    /// The revocation propagation histogram (for tests and the load generator).
    pub fn revocation_lag(&self) -> &Histogram {
        &self.revocation_lag
    }

    /// The registry in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(8_192);
        let series: Vec<(SeriesKey, Arc<Histogram>)> = {
            let map = self.requests.read().unwrap_or_else(|e| e.into_inner());
            let mut all = Vec::new();
            for (transport, routes) in map.iter() {
                for (route, statuses) in routes {
                    for (status, histogram) in statuses {
                        let key = SeriesKey {
                            transport: *transport,
                            route: route.clone(),
                            status: status.clone(),
                        };
                        all.push((key, Arc::clone(histogram)));
                    }
                }
            }
            all.sort_by(|a, b| a.0.cmp(&b.0));
            all
        };
        out.push_str(
            "# HELP token_service_requests_total Requests answered, by transport, route and status.\n\
             # TYPE token_service_requests_total counter\n",
        );
        for (key, histogram) in &series {
            let _ = writeln!(
                out,
                "token_service_requests_total{{{}}} {}",
                labels(key),
                histogram.count()
            );
        }
        out.push_str(
            "# HELP token_service_request_duration_seconds Time to answer (for streams: to start answering).\n\
             # TYPE token_service_request_duration_seconds histogram\n",
        );
        for (key, histogram) in &series {
            histogram.render(
                &mut out,
                "token_service_request_duration_seconds",
                &labels(key),
            );
        }
        let counters = [
            (
                "token_service_cache_hits_total",
                "Token checks answered from the cache.",
                gauges.cache_hits,
            ),
            (
                "token_service_cache_misses_total",
                "Token checks that read the database.",
                gauges.cache_misses,
            ),
            (
                "token_service_cache_evictions_total",
                "Cached token checks dropped to make room (the cache is full).",
                gauges.cache_evictions,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let gauge_values = [
            (
                "token_service_cache_entries",
                "Credentials held in the token cache.",
                gauges.cache_entries as u64,
            ),
            (
                "token_service_cache_trusted",
                "1 while the revocation feed is caught up (the cache is used), else 0.",
                u64::from(gauges.cache_trusted),
            ),
            (
                "token_service_db_pool_connections",
                "Open connections of the request pool.",
                u64::from(gauges.pool_connections),
            ),
            (
                "token_service_db_pool_idle_connections",
                "Idle connections of the request pool.",
                gauges.pool_idle as u64,
            ),
            (
                "token_service_db_pool_max_connections",
                "Size limit of the request pool.",
                u64::from(gauges.pool_max),
            ),
            (
                "token_service_db_check_connections",
                "Open connections the token check reads through (at most pool.check_connections).",
                gauges.check_connections as u64,
            ),
            (
                "token_service_watch_streams",
                "Open WatchRevocations and WatchEvents streams (at most connections.max_watch_streams).",
                gauges.watch_streams as u64,
            ),
        ];
        for (name, help, value) in gauge_values {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out.push_str(
            "# HELP token_service_revocation_propagation_seconds From a revocation's commit (on any replica) to this replica's cache.\n\
             # TYPE token_service_revocation_propagation_seconds histogram\n",
        );
        self.revocation_lag
            .render(&mut out, "token_service_revocation_propagation_seconds", "");
        out.push_str(
            "# HELP token_service_webhook_deliveries_total Webhook delivery attempts by this replica, by outcome.\n\
             # TYPE token_service_webhook_deliveries_total counter\n",
        );
        for (outcome, count) in WEBHOOK_OUTCOMES.iter().zip(&self.webhook_deliveries) {
            let _ = writeln!(
                out,
                "token_service_webhook_deliveries_total{{outcome=\"{outcome}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP token_service_ext_authz_checks_total Envoy ext_authz Checks, by outcome (denied_*: the request was refused; caller_rejected: the gateway may not ask).\n\
             # TYPE token_service_ext_authz_checks_total counter\n",
        );
        for (outcome, count) in EXT_AUTHZ_OUTCOMES.iter().zip(&self.ext_authz_checks) {
            let _ = writeln!(
                out,
                "token_service_ext_authz_checks_total{{outcome=\"{outcome}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        for (name, help, counter) in [
            (
                "token_service_last_use_token_writes_total",
                "Token rows the last-use flush wrote (at most one per token per flush).",
                &self.last_use_token_writes,
            ),
            (
                "token_service_last_use_flush_batches_total",
                "Last-use transactions committed.",
                &self.last_use_batches,
            ),
            (
                "token_service_last_use_flush_failures_total",
                "Last-use batches that failed (their uses wait for the next flush).",
                &self.last_use_failures,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP token_service_webhooks_disabled_total Webhook endpoints this replica disabled after failing for webhooks.disable_after.\n\
             # TYPE token_service_webhooks_disabled_total counter\n\
             token_service_webhooks_disabled_total {}",
            self.webhooks_disabled.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP token_service_webhook_delivery_lag_seconds From a lifecycle record's commit to its endpoint's 2xx answer (retries included).\n\
             # TYPE token_service_webhook_delivery_lag_seconds histogram\n",
        );
        self.webhook_lag
            .render(&mut out, "token_service_webhook_delivery_lag_seconds", "");
        out.push_str(
            "# HELP token_service_job_runs_total Runs of the scheduled jobs this replica started, by job.\n\
             # TYPE token_service_job_runs_total counter\n",
        );
        for (job, count) in JOBS.iter().zip(&self.job_runs) {
            let _ = writeln!(
                out,
                "token_service_job_runs_total{{job=\"{job}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP token_service_expired_access_tokens_deleted_total Expired personal access tokens this replica's cleanup job deleted.\n\
             # TYPE token_service_expired_access_tokens_deleted_total counter\n\
             token_service_expired_access_tokens_deleted_total {}\n\
             # HELP token_service_access_token_expiry_notices_total Expiry notices (access_token.expiring records) this replica recorded.\n\
             # TYPE token_service_access_token_expiry_notices_total counter\n\
             token_service_access_token_expiry_notices_total {}",
            self.expired_tokens_deleted.load(Ordering::Relaxed),
            self.expiry_notices.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP token_service_refused_token_shapes_total Presented tokens refused before any lookup: a checksummed token whose checksum is wrong, or a token of no format this service mints.\n\
             # TYPE token_service_refused_token_shapes_total counter\n",
        );
        for (shape, count) in REFUSED_SHAPES.iter().zip(&self.refused_token_shapes) {
            let _ = writeln!(
                out,
                "token_service_refused_token_shapes_total{{shape=\"{shape}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP token_service_failed_credential_checks_total Presented credentials of callers (not tokens checked on behalf of others) that did not authenticate.\n\
             # TYPE token_service_failed_credential_checks_total counter\n\
             token_service_failed_credential_checks_total {}\n\
             # HELP token_service_guess_throttled_total Requests refused (429 / RESOURCE_EXHAUSTED) because their client address made too many failed credential checks.\n\
             # TYPE token_service_guess_throttled_total counter\n\
             token_service_guess_throttled_total {}\n\
             # HELP token_service_guess_throttle_blocks_total Times a client address exceeded the failed-check limit and began its cool-down.\n\
             # TYPE token_service_guess_throttle_blocks_total counter\n\
             token_service_guess_throttle_blocks_total {}",
            self.failed_credential_checks.load(Ordering::Relaxed),
            self.guess_throttled.load(Ordering::Relaxed),
            self.guess_throttle_blocks.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP token_service_stale_answers_total Token checks answered from a credential cached before a database outage (cache.stale_if_unavailable).\n\
             # TYPE token_service_stale_answers_total counter\n\
             token_service_stale_answers_total {}",
            self.stale_answers.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP token_service_leak_reports_total Leaked-token reports (ReportLeakedTokens) this replica answered, by outcome.\n\
             # TYPE token_service_leak_reports_total counter\n",
        );
        for (outcome, count) in LEAK_REPORT_OUTCOMES.iter().zip(&self.leak_reports) {
            let _ = writeln!(
                out,
                "token_service_leak_reports_total{{outcome=\"{outcome}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP token_service_leaked_credentials_revoked_total Personal access tokens revoked and sessions ended because a report named them.\n\
             # TYPE token_service_leaked_credentials_revoked_total counter\n\
             token_service_leaked_credentials_revoked_total {}",
            self.leaked_credentials_revoked.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP token_service_gateway_checks_total Token checks by the gateway endpoints (RFC 7662 introspect, auth_request verify), by outcome.\n\
             # TYPE token_service_gateway_checks_total counter\n",
        );
        for endpoint in GatewayEndpoint::ALL {
            for outcome in GatewayOutcome::ALL {
                let _ = writeln!(
                    out,
                    "token_service_gateway_checks_total{{endpoint=\"{}\",outcome=\"{}\"}} {}",
                    endpoint.label(),
                    outcome.label(),
                    self.gateway_checks(endpoint, outcome)
                );
            }
        }
        self.listeners.render(&mut out);
        render_build_info(&mut out);
        if let Some(process) = ProcessStats::read() {
            process.render(&mut out);
        }
        out
    }
}

// The listeners' figures (written by `crate::listener`'s accept loops).

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

/// How long after its last failed accept a listener still counts as failing (readiness):
/// longer than [`MAX_BACKOFF`], so a burst in progress is never reported over between tries.
/// Also how long accepting must go without a failure for the listener's log to call a burst
/// over.
pub const FAILING_WINDOW: Duration = Duration::from_secs(3);

/// The listeners' figures, shared by the accept loops (writers) and `/metrics` and readiness
/// (readers).
#[derive(Debug)]
pub struct ListenerStats {
    accept_errors: [[AtomicU64; AcceptErrorKind::ALL.len()]; Listener::ALL.len()],
    open: [AtomicU64; Listener::ALL.len()],
    limit_reached: [AtomicU64; Listener::ALL.len()],
    idle_closed: AtomicU64,
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
            idle_closed: AtomicU64::new(0),
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

    /// Counts a failed accept; all but [`AcceptErrorKind::Connection`] make the listener
    /// failing for readiness.
    pub fn record_accept_error(&self, listener: Listener, kind: AcceptErrorKind, e: &io::Error) {
        self.accept_errors[listener as usize][kind as usize].fetch_add(1, Ordering::Relaxed);
        if kind != AcceptErrorKind::Connection {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            failures[listener as usize] = Some(Failure {
                at: Instant::now(),
                error: e.to_string(),
            });
        }
    }

    /// Counts a connection opened on `listener`.
    pub fn connection_opened(&self, listener: Listener) {
        self.open[listener as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection of `listener` closed.
    pub fn connection_closed(&self, listener: Listener) {
        self.open[listener as usize].fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a pause of `listener` at its connection limit.
    pub fn record_limit_reached(&self, listener: Listener) {
        self.limit_reached[listener as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a gRPC connection closed after `connections.grpc_idle_timeout` without a call.
    pub fn record_idle_closed(&self) {
        self.idle_closed.fetch_add(1, Ordering::Relaxed);
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
    fn render(&self, out: &mut String) {
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
        let _ = writeln!(
            out,
            "# HELP token_service_idle_connections_closed_total gRPC connections closed (GOAWAY) after connections.grpc_idle_timeout without a call in flight.\n\
             # TYPE token_service_idle_connections_closed_total counter\n\
             token_service_idle_connections_closed_total{{listener=\"grpc\"}} {}",
            self.idle_closed.load(Ordering::Relaxed)
        );
    }
}

/// The version this binary was built from (Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit this binary was built from (`git rev-parse --short=12 HEAD` at build
/// time), or "unknown" when it was built outside a git checkout.
pub const GIT_COMMIT: &str = env!("TOKEN_SERVICE_GIT_COMMIT");

fn render_build_info(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP token_service_build_info The version and git commit of this binary (always 1).\n\
         # TYPE token_service_build_info gauge\n\
         token_service_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        escape(VERSION),
        escape(GIT_COMMIT)
    );
}

/// The process figures Prometheus clients export under the standard `process_*` names, read
/// from `/proc/self` at scrape time (Linux only; elsewhere they are absent).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub threads: u64,
    pub start_time_seconds: f64,
}

/// Clock ticks per second of the times in `/proc/<pid>/stat` (the kernel's `USER_HZ`, 100 on
/// every Linux architecture, as the Go and Java clients also assume).
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    /// Reads `/proc/self`; `None` where there is no such thing.
    #[cfg(target_os = "linux")]
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) may hold spaces and parentheses: count from its end.
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // `after_name` starts at field 3 (state); field n is fields[n - 3].
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let (utime, stime) = (field(14)?, field(15)?);
        let threads = field(20)?;
        let start_ticks = field(22)?;
        let virtual_memory_bytes = field(23)?;
        let rss_pages = field(24)?;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| {
                limits
                    .lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse::<u64>().ok())
            });
        // statm counts pages; VmRSS in status is the same figure in kB, without a page size.
        let resident_memory_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(rss_pages * 4096, |kb| kb * 1024);
        Some(Self {
            cpu_seconds: (utime + stime) as f64 / USER_HZ,
            resident_memory_bytes,
            virtual_memory_bytes,
            open_fds,
            max_fds,
            threads,
            start_time_seconds: boot_time as f64 + start_ticks as f64 / USER_HZ,
        })
    }

    /// Reads `/proc/self`; `None` where there is no such thing.
    #[cfg(not(target_os = "linux"))]
    pub fn read() -> Option<Self> {
        None
    }

    fn render(&self, out: &mut String) {
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            self.cpu_seconds.to_string(),
        );
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            self.resident_memory_bytes.to_string(),
        );
        metric(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            self.virtual_memory_bytes.to_string(),
        );
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            self.open_fds.to_string(),
        );
        if let Some(max) = self.max_fds {
            metric(
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                max.to_string(),
            );
        }
        metric(
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            self.threads.to_string(),
        );
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds.to_string(),
        );
    }
}

fn labels(key: &SeriesKey) -> String {
    format!(
        "transport=\"{}\",route=\"{}\",status=\"{}\"",
        key.transport.label(),
        escape(&key.route),
        escape(&key.status)
    )
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
        assert!(out.contains("x_sum{a=\"b\"} 10.00305\n"), "{out}");
    }

    #[test]
    fn a_histogram_sums_what_every_thread_recorded() {
        let h = Arc::new(Histogram::default());
        let threads: Vec<_> = (0..(STRIPES + 3))
            .map(|_| {
                let h = Arc::clone(&h);
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        h.observe(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let recorded = 1_000 * (STRIPES as u64 + 3);
        assert_eq!(h.count(), recorded);
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(
            out.contains(&format!("x_bucket{{le=\"0.0025\"}} {recorded}\n")),
            "{out}"
        );
        assert!(out.contains(&format!("x_count {recorded}\n")), "{out}");
    }

    #[test]
    fn requests_are_counted_per_series_and_labels_are_escaped() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.record_request(Transport::Grpc, "/a.B/C", "OK", Duration::from_millis(1));
        }
        m.record_request(Transport::Http, "/x\"y", "404", Duration::from_millis(1));
        let text = m.render(Gauges::default());
        assert!(
            text.contains(
                "token_service_requests_total{transport=\"grpc\",route=\"/a.B/C\",status=\"OK\"} 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("route=\"/x\\\"y\",status=\"404\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("token_service_cache_trusted 0\n"));
        assert!(
            text.contains(&format!(
                "token_service_build_info{{version=\"{VERSION}\",commit=\"{GIT_COMMIT}\"}} 1\n"
            )),
            "{text}"
        );
    }

    #[test]
    fn a_route_series_records_into_the_registrys_series() {
        let m = Metrics::new();
        let series = RouteSeries::new(Transport::Grpc, "/a.B/C");
        series.record(&m, 0, "OK", Duration::from_millis(1));
        series.record(&m, 0, "OK", Duration::from_millis(1));
        series.record(&m, 5, "NOT_FOUND", Duration::from_millis(1));
        // The same series through the registry's own path, and a slot out of range.
        m.record_request(Transport::Grpc, "/a.B/C", "OK", Duration::from_millis(1));
        series.record(&m, STATUS_SLOTS, "ERROR", Duration::from_millis(1));
        let text = m.render(Gauges::default());
        for (status, count) in [("OK", 3), ("NOT_FOUND", 1), ("ERROR", 1)] {
            let line = format!(
                "token_service_requests_total{{transport=\"grpc\",route=\"/a.B/C\",status=\"{status}\"}} {count}\n"
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_figures_are_read_from_proc() {
        let before = ProcessStats::read().expect("/proc/self is readable on Linux");
        // Burn a little CPU and hold a file open: both must show.
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = ProcessStats::read().unwrap();
        assert!(after.cpu_seconds >= before.cpu_seconds);
        assert!(after.cpu_seconds > 0.0);
        assert!(after.resident_memory_bytes > 1024 * 1024, "{after:?}");
        assert!(after.virtual_memory_bytes >= after.resident_memory_bytes);
        assert!(after.open_fds >= 4, "{after:?}");
        assert!(after.max_fds.is_some_and(|m| m >= after.open_fds));
        assert!(after.threads >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            after.start_time_seconds <= now + 1.0
                && after.start_time_seconds > now - 86_400.0 * 365.0,
            "{after:?}"
        );
        drop(file);
        let text = Metrics::new().render(Gauges::default());
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(&format!("\n{name}")), "{name}: {text}");
        }
    }
}
