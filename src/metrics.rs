//! Metrics in the Prometheus text format, served at `GET /metrics` on the HTTP address.
//!
//! Each server owns its registry (no process-global recorder), so several servers in one
//! process (the test suite) keep their own figures. Recording is a read lock and a few atomic
//! additions; rendering reads the token cache's counters and the database pool at scrape time.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A histogram with fixed buckets; every operation is an atomic addition.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// How many observations were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
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

/// Figures the registry reads from elsewhere when it is scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_entries: usize,
    pub cache_trusted: bool,
    pub pool_connections: u32,
    pub pool_idle: usize,
    pub pool_max: u32,
}

/// A server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: RwLock<Series>,
    revocation_lag: Histogram,
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
        let found = {
            let series = self.requests.read().unwrap_or_else(|e| e.into_inner());
            series
                .get(&transport)
                .and_then(|routes| routes.get(route))
                .and_then(|statuses| statuses.get(status))
                .map(Arc::clone)
        };
        let histogram = found.unwrap_or_else(|| {
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
        });
        histogram.observe(elapsed);
    }

    /// Records how long a revocation took from its commit to this replica's cache.
    pub fn record_revocation_lag(&self, lag: Duration) {
        self.revocation_lag.observe(lag);
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
        out
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
    }
}
