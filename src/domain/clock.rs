//! The domain's clock: every "now" of a rule (expiry, activity, lifetimes, the time a
//! revocation is recorded, the cache's age limit) is read from the [`Clock`] in the
//! [`Context`](super::Context). Production runs on [`SystemClock`]; tests set or advance a
//! [`ManualClock`] instead of sleeping until an expiry. Reading either costs no lock and no
//! allocation.
//!
//! Timers and intervals that pace work (the revocation feed's polling, deadlines, retries)
//! are real time and do not read this clock.

use std::{
    fmt::Debug,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::model::UnixMillis;

/// Where the domain reads the current time.
pub trait Clock: Send + Sync + Debug {
    /// The current time, in Unix milliseconds.
    fn now(&self) -> UnixMillis;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that stands still until it is set or advanced. Clones share one time, so a test
/// and the servers it starts see the same "now".
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    millis: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: UnixMillis) -> Self {
        Self {
            millis: Arc::new(AtomicI64::new(now)),
        }
    }

    /// A clock standing at the system clock's current time.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }

    /// Moves the clock to `now` (backwards too).
    pub fn set(&self, now: UnixMillis) {
        self.millis.store(now, Ordering::Relaxed);
    }

    /// Moves the clock forward by `by` (whole milliseconds).
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(by, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        self.millis.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_the_wall_clock() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let now = SystemClock.now();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(
            (before..=after).contains(&now),
            "{before} <= {now} <= {after}"
        );
    }

    #[test]
    fn a_manual_clock_stands_still_until_moved() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now(), 1_000);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(clock.now(), 1_000, "real time does not move it");
        clock.advance(Duration::from_secs(61));
        assert_eq!(clock.now(), 62_000);
        clock.advance(Duration::from_micros(1_500));
        assert_eq!(clock.now(), 62_001, "whole milliseconds");
        clock.set(500);
        assert_eq!(clock.now(), 500, "set may go backwards");
    }

    #[test]
    fn clones_share_one_time() {
        let clock = ManualClock::starting_now();
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let start = shared.now();
        assert!(
            (start - SystemClock.now()).abs() < 60_000,
            "starts at the wall clock"
        );
        clock.advance(Duration::from_secs(3_600));
        assert_eq!(shared.now(), start + 3_600_000);
    }
}
