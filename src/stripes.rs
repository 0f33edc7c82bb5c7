//! State that many threads update at once, split so that each thread mostly writes its own
//! cache lines: a counter every core adds to, or a lock every core takes, costs a transfer of
//! its line between cores on each use, and on a hot path that transfer is the cost.

use std::sync::atomic::{AtomicU64, Ordering};

/// The calling thread's number: threads are numbered from 0 in the order they first ask.
/// Index a set of stripes with it modulo their count.
pub fn thread_number() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static NUMBER: usize = NEXT.fetch_add(1, Ordering::Relaxed) as usize;
    }
    NUMBER.with(|number| *number)
}

/// How many copies a [`StripedCounter`] keeps (threads beyond it share, round the stripes).
pub const COUNTER_STRIPES: usize = 32;

/// One value alone on its cache lines (128 bytes: two lines, for the adjacent-line
/// prefetcher).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// A count that threads add to without sharing a cache line; reading it sums the stripes
/// (exact once the adding has stopped, a moment's snapshot while it goes on).
#[derive(Debug)]
pub struct StripedCounter {
    stripes: Box<[Padded<AtomicU64>]>,
}

impl Default for StripedCounter {
    fn default() -> Self {
        Self {
            stripes: (0..COUNTER_STRIPES).map(|_| Padded::default()).collect(),
        }
    }
}

impl StripedCounter {
    /// Adds `n` to the calling thread's stripe.
    pub fn add(&self, n: u64) {
        self.stripes[thread_number() % COUNTER_STRIPES]
            .0
            .fetch_add(n, Ordering::Relaxed);
    }

    /// The sum over the stripes.
    pub fn sum(&self) -> u64 {
        self.stripes
            .iter()
            .map(|stripe| stripe.0.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Barrier, thread};

    use super::*;

    #[test]
    fn threads_get_distinct_numbers_that_stay_theirs() {
        let numbers: Vec<(usize, usize)> = thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (thread_number(), thread_number())))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut firsts: Vec<usize> = numbers.iter().map(|&(first, _)| first).collect();
        assert!(numbers.iter().all(|&(first, again)| first == again));
        firsts.sort_unstable();
        firsts.dedup();
        assert_eq!(firsts.len(), 8, "{numbers:?}");
    }

    #[test]
    fn a_striped_count_adds_up_across_more_threads_than_stripes() {
        let counter = StripedCounter::default();
        let threads = COUNTER_STRIPES + 5;
        let start = Barrier::new(threads);
        thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..1_000 {
                        counter.add(1);
                    }
                });
            }
        });
        assert_eq!(counter.sum(), 1_000 * threads as u64);
    }
}
