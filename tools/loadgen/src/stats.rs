//! Latency percentiles and medians.

use std::time::Duration;

/// What one measured run produced.
#[derive(Debug, Clone)]
pub(crate) struct RunResult {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) elapsed: Duration,
    /// Sorted latencies of the successful requests, in nanoseconds.
    latencies: Vec<u64>,
    /// CPU time the server side used during the run, when it could be read.
    pub(crate) server_cpu: Option<Duration>,
    /// CPU time the load generator itself used during the run.
    pub(crate) client_cpu: Option<Duration>,
    /// Token-cache hits and misses during the run (in-process target only).
    pub(crate) cache: Option<(u64, u64)>,
}

impl RunResult {
    pub(crate) fn new(
        mut latencies: Vec<u64>,
        errors: u64,
        first_error: Option<String>,
        elapsed: Duration,
    ) -> Self {
        latencies.sort_unstable();
        Self {
            requests: latencies.len() as u64,
            errors,
            first_error,
            elapsed,
            latencies,
            server_cpu: None,
            client_cpu: None,
            cache: None,
        }
    }

    pub(crate) fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency below which `q` (0..1) of the requests finished, in milliseconds.
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = (q * self.latencies.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies.len()) - 1;
        self.latencies[index] as f64 / 1e6
    }

    pub(crate) fn p50(&self) -> f64 {
        self.quantile_ms(0.50)
    }

    pub(crate) fn p99(&self) -> f64 {
        self.quantile_ms(0.99)
    }

    pub(crate) fn p999(&self) -> f64 {
        self.quantile_ms(0.999)
    }

    /// Server CPU microseconds per request.
    pub(crate) fn cpu_us_per_request(&self) -> Option<f64> {
        self.per_request(self.server_cpu?)
    }

    /// Load generator CPU microseconds per request.
    pub(crate) fn client_cpu_us_per_request(&self) -> Option<f64> {
        self.per_request(self.client_cpu?)
    }

    fn per_request(&self, cpu: Duration) -> Option<f64> {
        (self.requests > 0).then(|| cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }
}

/// The median of some values (the mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let r = RunResult::new(
            (1..=1000).rev().map(|ms| ms * 1_000_000).collect(),
            0,
            None,
            Duration::from_secs(2),
        );
        assert_eq!(r.requests, 1000);
        assert_eq!(r.rps(), 500.0);
        assert_eq!(r.p50(), 500.0);
        assert_eq!(r.p99(), 990.0);
        assert_eq!(r.p999(), 999.0);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_middle_mean() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
