//! A deadline that costs nothing for calls that never wait: most token checks are answered
//! from the cache within their first poll, and registering a timer for each of them is a
//! measurable share of the hot path. A call that has to wait (for the database, in practice)
//! gets a timer from that moment.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use crate::domain::lifecycle::RequestOrigin;

/// Runs `future` to completion, or gives up (`None`) once it has waited `limit` (never
/// without one).
pub(crate) fn within<F: Future>(limit: impl Into<Option<Duration>>, future: F) -> Within<F> {
    Within {
        future,
        timer: None,
        limit: limit.into(),
    }
}

pin_project_lite::pin_project! {
    /// See [`within`]: the timer is armed on the first poll that finds `future` pending.
    #[derive(Debug)]
    pub(crate) struct Within<F> {
        #[pin]
        future: F,
        #[pin]
        timer: Option<tokio::time::Sleep>,
        limit: Option<Duration>,
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Some(output));
        }
        if this.timer.is_none() {
            let Some(limit) = *this.limit else {
                return Poll::Pending;
            };
            this.timer.set(Some(tokio::time::sleep(limit)));
        }
        match this.timer.as_pin_mut().map(|timer| timer.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}

/// A request body that tells, when a deadline passes, whether the client had sent all of it:
/// a request whose body was still arriving timed out on the client's side (REST 408, gRPC
/// DEADLINE_EXCEEDED), not on the database's.
#[derive(Debug)]
pub(crate) struct TrackedBody<B> {
    inner: B,
    flag: Flag,
}

/// Where a [`TrackedBody`] notes that it arrived in full.
#[derive(Debug, Clone, Default)]
enum Flag {
    /// Nothing to note: an empty body, or a body already noted.
    #[default]
    Nothing,
    /// A flag shared with the [`BodyReceived`] (REST: the deadline is applied outside the
    /// request's origin).
    Shared(Arc<AtomicBool>),
    /// The request's origin ([`RequestOrigin::note_request_received`]): gRPC, where the
    /// deadline and the body are both polled inside the request layer's scope. No
    /// allocation, and nothing asked of the body after each frame.
    Origin,
}

/// Whether a [`TrackedBody`] was received in full. The default is a body with nothing left to
/// receive (a request without one).
#[derive(Debug, Clone, Default)]
pub(crate) struct BodyReceived(Flag);

impl BodyReceived {
    /// Whether the client had sent the whole body (an empty body counts as sent).
    pub(crate) fn is_complete(&self) -> bool {
        match &self.0 {
            Flag::Nothing => true,
            Flag::Shared(flag) => flag.load(Ordering::Relaxed),
            Flag::Origin => RequestOrigin::request_received(),
        }
    }
}

impl<B: http_body::Body> TrackedBody<B> {
    /// Wraps `inner`; an empty body (most GETs) needs no shared flag.
    pub(crate) fn new(inner: B) -> (Self, BodyReceived) {
        let flag = if inner.is_end_stream() {
            Flag::Nothing
        } else {
            Flag::Shared(Arc::new(AtomicBool::new(false)))
        };
        Self::noting_in(inner, flag)
    }

    /// Wraps `inner`, to be read inside the request's origin scope and read to its end (as
    /// tonic reads a unary or server-streaming call's request, trailers included, before its
    /// handler runs): its end is noted in the origin, where the answer's `BodyReceived`
    /// looks, from inside the same scope.
    ///
    /// The body is not asked whether it has already ended (a gRPC request always carries a
    /// message, and asking takes the `h2` connection's lock): an empty one ends at its first
    /// poll, which notes it.
    pub(crate) fn noted_in_origin(inner: B) -> (Self, BodyReceived) {
        Self::noting_in(inner, Flag::Origin)
    }

    /// Wraps `inner` to note its end in `flag`, and what tells whether it was noted.
    fn noting_in(inner: B, flag: Flag) -> (Self, BodyReceived) {
        (
            Self {
                inner,
                flag: flag.clone(),
            },
            BodyReceived(flag),
        )
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &self.flag {
            Flag::Nothing => {}
            Flag::Shared(flag) => {
                if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
                    flag.store(true, Ordering::Relaxed);
                }
            }
            Flag::Origin => {
                let ended = match &polled {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(frame))) => frame.is_trailers(),
                    _ => false,
                };
                if ended {
                    RequestOrigin::note_request_received();
                    self.flag = Flag::Nothing;
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_noted_in_the_origin_is_complete_once_read_to_its_end_in_the_scope() {
        use http_body_util::{BodyExt as _, Empty, Full};
        RequestOrigin::default()
            .scope(async {
                let full = Full::new(bytes::Bytes::from_static(b"abc"));
                let (mut body, received) = TrackedBody::noted_in_origin(full);
                assert!(!received.is_complete(), "nothing read yet");
                assert!(
                    body.frame()
                        .await
                        .is_some_and(|f| f.is_ok_and(|f| f.is_data()))
                );
                assert!(!received.is_complete(), "its end not read yet");
                assert!(body.frame().await.is_none());
                assert!(received.is_complete());
            })
            .await;
        RequestOrigin::default()
            .scope(async {
                // Not asked up front (that takes the h2 connection's lock): its first poll
                // ends it.
                let (mut body, received) =
                    TrackedBody::noted_in_origin(Empty::<bytes::Bytes>::new());
                assert!(body.frame().await.is_none());
                assert!(
                    received.is_complete(),
                    "an empty body ends at its first poll"
                );
            })
            .await;
    }

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
        let unlimited = within(None, async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            4
        })
        .await;
        assert_eq!(unlimited, Some(4));
    }
}
