//! The gRPC transport: `TokenService`, Envoy's external authorization
//! (`envoy.service.auth.v3.Authorization`, network listener only), health and reflection (v1
//! and v1alpha).

mod convert;
mod ext_authz;
pub(crate) mod operator;
mod status;
mod token_service;

pub use status::ERROR_DOMAIN;
use token_service::TokenServiceApi;

use tonic::service::Routes;
use tonic_health::server::HealthReporter;

use crate::domain::Context;
use crate::pb::{
    self, envoy_ext_authz::envoy::service::auth::v3::authorization_server::AuthorizationServer,
    token_service_server::TokenServiceServer,
};

/// The fully qualified service name, as health reports it.
pub const SERVICE_NAME: &str = "token_service.v1.TokenService";

/// Largest request message accepted (bytes). Requests are small; this bounds hostile input.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Who the callers of a set of routes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Callers {
    /// The network listener: each call authenticates with its `authorization` metadata.
    Authenticated,
    /// The local operator socket: every call is `Caller::Local`.
    LocalOperator,
}

/// The fully qualified name of Envoy's external authorization service.
pub const EXT_AUTHZ_SERVICE_NAME: &str = "envoy.service.auth.v3.Authorization";

/// Builds the routes: TokenService, Envoy's Authorization (network listener only), health
/// and reflection. `shutdown` turns true when a
/// graceful shutdown begins.
pub(crate) fn routes(
    ctx: Context,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    shutdown: tokio::sync::watch::Receiver<bool>,
    callers: Callers,
) -> Result<Routes, tonic_reflection::server::Error> {
    let ext_authz = (callers == Callers::Authenticated).then(|| {
        AuthorizationServer::new(ext_authz::ExtAuthzApi::new(ctx.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES)
    });
    let api = match callers {
        Callers::Authenticated => token_service::TokenServiceApi::new(ctx, shutdown),
        Callers::LocalOperator => token_service::TokenServiceApi::local(ctx, shutdown),
    };
    let api = TokenServiceServer::new(api).max_decoding_message_size(MAX_REQUEST_BYTES);
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(pb::envoy_ext_authz::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(pb::envoy_ext_authz::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let mut routes = Routes::new(api)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    if let Some(ext_authz) = ext_authz {
        routes = routes.add_service(ext_authz);
    }
    Ok(routes)
}

/// At shutdown, after health has turned NOT_SERVING: forgets the statuses, which ends every
/// open health Watch stream once it has delivered NOT_SERVING, so watchers do not hold the
/// draining server open. New calls cannot arrive: the listener is closed and connections are
/// told to go away.
pub(crate) async fn end_health_watches(reporter: &mut HealthReporter) {
    reporter.clear_service_status("").await;
    reporter.clear_service_status(SERVICE_NAME).await;
}

/// Sets the health of the overall server ("") and of TokenService together.
pub(crate) async fn set_health(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}

/// The `/package.Service/Method` path of every gRPC method this server serves (TokenService,
/// Envoy's Authorization, health, reflection v1 and v1alpha), read from their descriptors.
pub(crate) fn served_method_paths() -> std::collections::HashSet<String> {
    use prost::Message as _;
    let sets = [
        pb::FILE_DESCRIPTOR_SET,
        pb::envoy_ext_authz::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut paths = std::collections::HashSet::new();
    for bytes in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
            continue;
        };
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    paths
}

/// The `authorization` metadata key, made once: looked up by a string, the name is parsed
/// on every call.
pub(crate) static AUTHORIZATION: std::sync::LazyLock<
    tonic::metadata::MetadataKey<tonic::metadata::Ascii>,
> = std::sync::LazyLock::new(|| tonic::metadata::MetadataKey::from_static("authorization"));

/// What every gRPC call passes through between the request layer (telemetry) and tonic's
/// routes, in one service with one unboxed future (each layer of its own moved the call's
/// future once more and added a poll):
///
/// - a call whose metadata is over [`MAX_METADATA_BYTES`] answers RESOURCE_EXHAUSTED before
///   any other work;
/// - with a `request_timeout_ms`, a call that takes longer to answer gets `UNAVAILABLE` (as
///   for an unreachable database, the only thing that can stall a call), or
///   DEADLINE_EXCEEDED when its request message had not arrived in full (the client's
///   fault); streams are limited only until they start answering;
/// - tonic's answers are corrected to the official gRPC implementations' codes
///   ([`official_status_codes`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrpcCallLayer {
    request_timeout: Option<std::time::Duration>,
}

impl GrpcCallLayer {
    pub(crate) fn new(request_timeout: Option<std::time::Duration>) -> Self {
        Self { request_timeout }
    }
}

impl<S> tower::Layer<S> for GrpcCallLayer {
    type Service = GrpcCall<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcCall {
            inner,
            request_timeout: self.request_timeout,
        }
    }
}

/// See [`GrpcCallLayer`].
#[derive(Debug, Clone)]
pub(crate) struct GrpcCall<S> {
    inner: S,
    request_timeout: Option<std::time::Duration>,
}

/// Largest request metadata a call may carry (bytes, counted as HTTP/2 counts a header
/// list: each header's name and value plus 32, and the path). A call over it answers
/// RESOURCE_EXHAUSTED (the official gRPC implementations' code for metadata over a limit)
/// and its connection keeps serving.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The HTTP/2 header list size the gRPC listener accepts (`SETTINGS_MAX_HEADER_LIST_SIZE`),
/// far above [`MAX_METADATA_BYTES`] on purpose. h2 refuses a header block over it per call
/// (HTTP 431 and REFUSED_STREAM) only while the block stays under two bounds, past which it
/// closes the whole connection (GOAWAY `ENHANCE_YOUR_CALM`, failing every other call on
/// it): four times this decoded, and `max(n + n / 4, 5)` CONTINUATION frames not counting
/// the last, where n is this divided by the frame size (16 KiB, hyper's default). With
/// hyper's 16 KiB that was 112 KiB on the wire (64 KiB decoded); with 1 MiB it is 82 frames,
/// 1,312 KiB on the wire (4 MiB decoded).
pub const HTTP2_MAX_HEADER_LIST_BYTES: u32 = 1024 * 1024;

/// The size of a request's metadata as HTTP/2 counts a header list (RFC 9113 6.5.2).
fn metadata_size<B>(request: &http::Request<B>) -> usize {
    const PER_FIELD: usize = 32;
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + PER_FIELD)
        .sum();
    let path = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    headers + path + PER_FIELD
}

impl<S, B> tower::Service<http::Request<B>> for GrpcCall<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        >,
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = GrpcCallFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let size = metadata_size(&request);
        if size > MAX_METADATA_BYTES {
            return GrpcCallFuture::Refused {
                answer: Some(
                    tonic::Status::resource_exhausted(format!(
                        "the request metadata is too large ({size} bytes; the limit is \
                         {MAX_METADATA_BYTES}, counted as HTTP/2 counts a header list)"
                    ))
                    .into_http(),
                ),
            };
        }
        let (parts, body) = request.into_parts();
        // Whether the message arrived in full matters only when a deadline can pass. The
        // body is read, and the deadline polled, inside the request layer's origin scope.
        let (body, received) = match self.request_timeout {
            Some(_) => {
                let (body, received) = crate::deadline::TrackedBody::noted_in_origin(body);
                (tonic::body::Body::new(body), received)
            }
            None => (
                tonic::body::Body::new(body),
                crate::deadline::BodyReceived::default(),
            ),
        };
        let call = self.inner.call(http::Request::from_parts(parts, body));
        GrpcCallFuture::Call {
            call: crate::deadline::within(self.request_timeout, call),
            received,
        }
    }
}

pin_project_lite::pin_project! {
    /// A call under [`GrpcCall`].
    #[project = GrpcCallProjection]
    #[derive(Debug)]
    pub(crate) enum GrpcCallFuture<F> {
        Call {
            #[pin]
            call: crate::deadline::Within<F>,
            received: crate::deadline::BodyReceived,
        },
        Refused { answer: Option<http::Response<tonic::body::Body>> },
    }
}

impl<F, E> std::future::Future for GrpcCallFuture<F>
where
    F: std::future::Future<Output = Result<http::Response<tonic::body::Body>, E>>,
{
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let (call, received) = match self.project() {
            GrpcCallProjection::Call { call, received } => (call, received),
            GrpcCallProjection::Refused { answer } => {
                return std::task::Poll::Ready(Ok(answer.take().expect("polled after completion")));
            }
        };
        call.poll(cx).map(|answer| match answer {
            Some(answer) => answer.map(official_status_codes),
            // The client had not sent its whole request: its fault, not the database's.
            None if !received.is_complete() => Ok(tonic::Status::deadline_exceeded(
                "the request message did not arrive within request_timeout_ms",
            )
            .into_http()),
            None => Ok(
                tonic::Status::from(crate::domain::error::Error::Unavailable(
                    "the call did not finish within request_timeout_ms".into(),
                ))
                .into_http(),
            ),
        })
    }
}

/// The start of tonic's message for a request message over the decoding limit.
const MESSAGE_TOO_LARGE: &str = "Error, decoded message length too large";

/// Two answers tonic gives with another code than the official gRPC implementations give,
/// corrected (applied by [`GrpcCall`] to every answer tonic's routes give; tonic answers
/// both with its status alone, in the headers, the `Status` in the extensions):
///
/// - a request message over the size limit answers RESOURCE_EXHAUSTED (tonic says
///   OUT_OF_RANGE);
/// - a call whose request stopped arriving because its connection broke (the client closed
///   or lost it mid-request) is CANCELLED, as gRPC servers report a call the client
///   abandoned (tonic says UNKNOWN, "h2 protocol error: error reading a body from
///   connection", which request metrics and traces count as a server error). Nobody
///   receives that answer: its connection is gone. It is counted as what it was.
fn official_status_codes(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let Some(status) = response.extensions().get::<tonic::Status>() else {
        return response;
    };
    let corrected = if status.code() == tonic::Code::OutOfRange
        && status.message().starts_with(MESSAGE_TOO_LARGE)
    {
        tonic::Status::resource_exhausted(format!(
            "the request message is too large ({})",
            status.message().trim_start_matches("Error, ")
        ))
    } else if status.code() == tonic::Code::Unknown && connection_broke(status) {
        tonic::Status::cancelled(format!(
            "the client's connection broke before its request arrived ({})",
            status.message()
        ))
    } else {
        return response;
    };
    let answer = corrected.clone().into_http::<tonic::body::Body>();
    let headers = response.headers_mut();
    for name in [tonic::Status::GRPC_STATUS, tonic::Status::GRPC_MESSAGE] {
        if let Some(value) = answer.headers().get(&name) {
            headers.insert(name, value.clone());
        }
    }
    response.extensions_mut().insert(corrected);
    response
}

/// Whether `status` came from an HTTP/2 I/O error: the connection the request was arriving
/// on closed or failed.
fn connection_broke(status: &tonic::Status) -> bool {
    std::iter::successors(std::error::Error::source(status), |cause| cause.source()).any(|cause| {
        cause
            .downcast_ref::<h2::Error>()
            .is_some_and(h2::Error::is_io)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_measured_as_http2_measures_a_header_list() {
        let request = http::Request::post("/token_service.v1.TokenService/GetMe")
            .header("authorization", "Bearer abc")
            .header("x-a", "")
            .body(())
            .unwrap();
        // The path counts as one entry; each header: name + value + 32.
        let path = "/token_service.v1.TokenService/GetMe".len() + 32;
        let headers = ("authorization".len() + "Bearer abc".len() + 32) + ("x-a".len() + 32);
        assert_eq!(metadata_size(&request), path + headers);
    }
}
