//! Mattermost's envelope around every `/api/v4` response: the request id, AppError JSON
//! bodies, Mattermost's headers, and the request deadline.
//!
//! A hand-written tower layer rather than axum's `from_fn`: that one clones the route and
//! boxes a `Next` on every request; this one boxes one future.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use http_body::Body as _;

use super::{CLEAR_SESSION_COOKIE, error::ApiError, version};
use crate::deadline::{BodyReceived, TrackedBody, within};
use crate::domain::ids::RequestId;
use crate::telemetry::{BoxFuture, X_REQUEST_ID};

/// What the envelope needs from the configuration.
#[derive(Debug, Clone)]
pub(super) struct Envelope {
    /// A request that takes longer is answered 503 (408 while its body is still arriving).
    pub(super) timeout: Option<Duration>,
    /// Keep `detailed_error` in error bodies.
    pub(super) enable_developer: bool,
    /// `X-Version-Id` (Mattermost's shape) and `X-Token-Service-Version`.
    pub(super) versions: version::VersionHeaders,
}

/// Wraps each `/api/v4` route in [`EnvelopeService`].
#[derive(Debug, Clone)]
pub(super) struct EnvelopeLayer(Arc<Envelope>);

impl EnvelopeLayer {
    pub(super) fn new(envelope: Envelope) -> Self {
        Self(Arc::new(envelope))
    }
}

impl<S> tower::Layer<S> for EnvelopeLayer {
    type Service = EnvelopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EnvelopeService {
            inner,
            envelope: Arc::clone(&self.0),
        }
    }
}

/// Request id, AppError JSON bodies and Mattermost's headers on every response.
///
/// A request that takes longer than `timeout` is answered 408 when the client had not sent
/// its whole body by then, else 503 (as for an unreachable database, the only other thing
/// that can stall a request).
#[derive(Debug, Clone)]
pub(super) struct EnvelopeService<S> {
    inner: S,
    envelope: Arc<Envelope>,
}

impl<S> tower::Service<Request> for EnvelopeService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .copied()
            .unwrap_or_else(RequestId::generate);
        let is_get = request.method() == Method::GET;
        let envelope = Arc::clone(&self.envelope);
        if request.method() == Method::HEAD {
            // axum answers HEAD on every GET route; Mattermost's router matches only the
            // methods a route declares (no route declares HEAD), so HEAD falls to its
            // catch-all 404.
            let response = ApiError::route_not_found(request.uri().path()).into_response();
            let sealed = seal(&envelope, response, &request_id, is_get, false);
            return Box::pin(std::future::ready(Ok(sealed)));
        }
        // Only a body still to come under a deadline needs watching (most GETs have none).
        let (request, received) = if envelope.timeout.is_none() || request.body().is_end_stream() {
            (request, BodyReceived::default())
        } else {
            let (parts, body) = request.into_parts();
            let (body, received) = TrackedBody::new(body);
            (Request::from_parts(parts, Body::new(body)), received)
        };
        let answered = self.inner.call(request);
        Box::pin(async move {
            let answer = match envelope.timeout {
                None => Some(answered.await),
                Some(limit) => within(limit, answered).await,
            };
            let body_timed_out = answer.is_none() && !received.is_complete();
            let response = match answer {
                Some(Ok(response)) => response,
                None if body_timed_out => body_timeout(),
                None => ApiError::from(crate::domain::error::Error::Unavailable(
                    "the request did not finish within request_timeout_ms".into(),
                ))
                .into_response(),
            };
            Ok(seal(
                &envelope,
                response,
                &request_id,
                is_get,
                body_timed_out,
            ))
        })
    }
}

/// Room in an answer's header table for what [`seal`] adds (content type, request id, the
/// two versions, `Expires`, `Connection`), the length axum adds and one header of the
/// handler's own: the table is allocated once and never regrown.
const ANSWER_HEADERS: usize = 8;

/// A JSON answer, serialized into one buffer (the body's only allocation, handed to hyper
/// without a copy) with a header table sized for everything [`seal`] adds. axum's `Json`
/// grows its buffer from 128 bytes, wraps it in a shared allocation and leaves the table to
/// grow as the envelope fills it: three to five allocations more per answer.
pub(crate) fn json_answer(
    status: StatusCode,
    value: &impl serde::Serialize,
) -> Result<Response, ApiError> {
    json_ending(status, value, b"")
}

/// [`json_answer`] followed by a newline, as Mattermost's `json.Encoder` writes single
/// objects.
pub(crate) fn json_line(
    status: StatusCode,
    value: &impl serde::Serialize,
) -> Result<Response, ApiError> {
    json_ending(status, value, b"\n")
}

fn json_ending(
    status: StatusCode,
    value: &impl serde::Serialize,
    end: &[u8],
) -> Result<Response, ApiError> {
    let mut body = answer_buffer();
    if serde_json::to_writer(&mut body, value).is_err() {
        return Err(ApiError::from_status(StatusCode::INTERNAL_SERVER_ERROR));
    }
    body.extend_from_slice(end);
    Ok(json_written(status, body))
}

/// The buffer a JSON answer is written into (for [`json_written`]).
pub(crate) fn answer_buffer() -> Vec<u8> {
    Vec::with_capacity(1024)
}

/// A JSON answer already written into `body` (see [`answer_buffer`]), as [`json_answer`]
/// makes it.
pub(crate) fn json_written(status: StatusCode, mut body: Vec<u8>) -> Response {
    // Length equals capacity: the bytes become the body as they are (the allocator
    // shrinks a block in place when the answer fills at least half of it).
    body.shrink_to_fit();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    *headers = http::HeaderMap::with_capacity(ANSWER_HEADERS);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The answer as Mattermost writes it: an AppError body for every failure, and its headers.
fn seal(
    envelope: &Envelope,
    mut response: Response,
    request_id: &RequestId,
    is_get: bool,
    body_timed_out: bool,
) -> Response {
    let unexplained_failure = (response.status().is_client_error()
        || response.status().is_server_error())
        && response.extensions().get::<ApiError>().is_none()
        && response.headers().get(header::CONTENT_TYPE)
            != Some(&HeaderValue::from_static("application/json"));
    if unexplained_failure {
        // A rejection from the HTTP stack itself (an undecodable path, say): still answer
        // with an AppError, never a bare text body.
        let err = ApiError::from_status(response.status());
        response.extensions_mut().insert(err);
    }
    if let Some(err) = response.extensions_mut().remove::<ApiError>() {
        response = (
            err.status,
            err.to_json(request_id.as_str(), envelope.enable_developer),
        )
            .into_response();
        if err.clear_session_cookie {
            response.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_static(CLEAR_SESSION_COOKIE),
            );
        }
        if let Some(secs) = err.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
    }
    let headers = response.headers_mut();
    // Room for what follows at once, not a regrowth of the table halfway.
    headers.reserve(6);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(value) = crate::telemetry::request_id_header(request_id) {
        headers.insert(X_REQUEST_ID, value);
    }
    headers.insert(version::X_VERSION_ID, envelope.versions.version_id.clone());
    headers.insert(
        version::X_TOKEN_SERVICE_VERSION,
        envelope.versions.own.clone(),
    );
    if is_get {
        headers.insert(header::EXPIRES, HeaderValue::from_static("0"));
    }
    if body_timed_out {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// 408 for a request whose body was still arriving at the deadline; the connection is
/// closed after it (the rest of the body is not waited for).
fn body_timeout() -> Response {
    let err = ApiError::new(
        crate::domain::error::Reason::BodyTimeout,
        "The request body was not received in time.",
        "the client had not sent the whole request body within request_timeout_ms",
    );
    err.into_response()
}
