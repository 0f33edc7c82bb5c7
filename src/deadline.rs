//! A deadline that costs nothing for calls that never wait: most token checks are answered
//! from the cache within their first poll, and registering a timer for each of them is a
//! measurable share of the hot path. A call that has to wait (for the database, in practice)
//! gets a timer from that moment.

use std::{future::Future, pin::pin, task::Poll, time::Duration};

/// Runs `future` to completion, or gives up (`None`) once it has waited `limit`.
pub(crate) async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    if let Poll::Ready(output) =
        std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
    {
        return Some(output);
    }
    tokio::time::timeout(limit, future).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ready_future_needs_no_timer_and_a_stuck_one_is_cut_off() {
        assert_eq!(within(Duration::ZERO, async { 7 }).await, Some(7));
        let stuck = within(Duration::from_millis(20), std::future::pending::<()>()).await;
        assert_eq!(stuck, None);
        let slow = within(Duration::from_secs(5), async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            3
        })
        .await;
        assert_eq!(slow, Some(3));
    }
}
