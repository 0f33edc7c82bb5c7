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
    let api = token_service_server(api);
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

fn token_service_server(api: TokenServiceApi) -> TokenServiceServer<TokenServiceApi> {
    TokenServiceServer::new(api).max_decoding_message_size(MAX_REQUEST_BYTES)
}

/// The network listener's routes ([`routes`] with [`Callers::Authenticated`]), with
/// TokenService's calls sent to its server directly.
pub(crate) fn listener_routes(
    ctx: Context,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<ListenerRoutes, tonic_reflection::server::Error> {
    let token_service = token_service_server(TokenServiceApi::new(ctx.clone(), shutdown.clone()));
    Ok(ListenerRoutes {
        token_service,
        others: routes(ctx, health, shutdown, Callers::Authenticated)?.prepare(),
    })
}

/// The paths of TokenService's methods start with this.
const TOKEN_SERVICE_PATHS: &str = "/token_service.v1.TokenService/";

/// The network listener's routes: a TokenService call goes straight to TokenService's
/// server (which finds its method by path), any other through tonic's router (health,
/// reflection, ext_authz, unknown paths). tonic's router is axum's: for each call it looked
/// the path up, added its parameters to the request's extensions (an allocation), cloned a
/// boxed service and boxed the request's body twice more.
#[derive(Clone)]
pub(crate) struct ListenerRoutes {
    token_service: TokenServiceServer<TokenServiceApi>,
    others: Routes,
}

impl std::fmt::Debug for ListenerRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerRoutes").finish_non_exhaustive()
    }
}

/// A call's answer under [`ListenerRoutes`].
pub(crate) type RoutedCall = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<http::Response<tonic::body::Body>, std::convert::Infallible>,
            > + Send,
    >,
>;

impl tower::Service<http::Request<tonic::body::Body>> for ListenerRoutes {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = RoutedCall;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Both are always ready; asked all the same.
        std::task::ready!(
            tower::Service::<http::Request<tonic::body::Body>>::poll_ready(
                &mut self.token_service,
                cx
            )
        )?;
        tower::Service::<http::Request<tonic::body::Body>>::poll_ready(&mut self.others, cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path().starts_with(TOKEN_SERVICE_PATHS) {
            // The generated server's future is boxed already.
            self.token_service.call(request)
        } else {
            Box::pin(self.others.call(request))
        }
    }
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
/// - a call whose client set a deadline (`grpc-timeout`) sooner than that gets
///   DEADLINE_EXCEEDED once it passes (tonic's server answered CANCELLED, "Timeout
///   expired"; the official implementations answer DEADLINE_EXCEEDED), and its work stops;
/// - on a mutual TLS connection, the client's certificate chain is the call's
///   [`crate::tls::ClientCertificates`] extension;
/// - tonic's answers are corrected to the official gRPC implementations' codes
///   ([`official_status_codes`]).
#[derive(Debug, Clone)]
pub(crate) struct GrpcCallLayer {
    request_timeout: Option<std::time::Duration>,
    client_certificates: Option<crate::tls::ClientCertificates>,
}

impl GrpcCallLayer {
    pub(crate) fn new(request_timeout: Option<std::time::Duration>) -> Self {
        Self {
            request_timeout,
            client_certificates: None,
        }
    }

    /// For a connection whose client presented `chain` (mutual TLS): each call carries it
    /// as a request extension.
    pub(crate) fn client_certificates(
        mut self,
        chain: Option<crate::tls::ClientCertificates>,
    ) -> Self {
        self.client_certificates = chain;
        self
    }
}

impl<S> tower::Layer<S> for GrpcCallLayer {
    type Service = GrpcCall<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcCall {
            inner,
            request_timeout: self.request_timeout,
            client_certificates: self.client_certificates.clone(),
        }
    }
}

/// See [`GrpcCallLayer`].
#[derive(Debug, Clone)]
pub(crate) struct GrpcCall<S> {
    inner: S,
    request_timeout: Option<std::time::Duration>,
    client_certificates: Option<crate::tls::ClientCertificates>,
}

/// The deadline a client sets on a call (`grpc-timeout`: at most 8 digits and a unit, `H`
/// hours, `M` minutes, `S` seconds, `m` milliseconds, `u` microseconds, `n` nanoseconds).
/// A value that does not follow that form is ignored, as tonic's and grpc-go's servers do.
fn client_deadline(headers: &http::HeaderMap) -> Option<std::time::Duration> {
    use std::time::Duration;
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount = digits
        .iter()
        .fold(0u64, |sum, digit| sum * 10 + u64::from(digit - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Which deadline a call is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallDeadline {
    /// The client's (`grpc-timeout`), the sooner one.
    Client,
    /// The server's `request_timeout_ms`.
    Server,
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
        let (mut parts, body) = request.into_parts();
        let (limit, deadline) = match (client_deadline(&parts.headers), self.request_timeout) {
            (Some(client), Some(server)) if server < client => (Some(server), CallDeadline::Server),
            (Some(client), _) => (Some(client), CallDeadline::Client),
            (None, server) => (server, CallDeadline::Server),
        };
        if let Some(chain) = &self.client_certificates {
            parts.extensions.insert(chain.clone());
        }
        // Whether the message arrived in full matters only when a deadline can pass. The
        // body is read, and the deadline polled, inside the request layer's origin scope.
        let (body, received) = match limit {
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
            call: crate::deadline::within(limit, call),
            received,
            deadline,
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
            deadline: CallDeadline,
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
        let (call, received, deadline) = match self.project() {
            GrpcCallProjection::Call {
                call,
                received,
                deadline,
            } => (call, received, *deadline),
            GrpcCallProjection::Refused { answer } => {
                return std::task::Poll::Ready(Ok(answer.take().expect("polled after completion")));
            }
        };
        call.poll(cx).map(|answer| match answer {
            Some(answer) => answer.map(official_status_codes),
            // The client gives up on the call at the same moment; the answer tells why.
            None if deadline == CallDeadline::Client => Ok(tonic::Status::deadline_exceeded(
                "the call's deadline (grpc-timeout) passed before it was answered",
            )
            .into_http()),
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

#[cfg(test)]
mod client_deadline_tests {
    use super::client_deadline;
    use std::time::Duration;

    fn of(value: &str) -> Option<Duration> {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", value.parse().unwrap());
        client_deadline(&headers)
    }

    #[test]
    fn a_grpc_timeout_is_read_in_each_unit_and_anything_else_is_no_deadline() {
        assert_eq!(of("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(of("3M"), Some(Duration::from_secs(180)));
        assert_eq!(of("10S"), Some(Duration::from_secs(10)));
        assert_eq!(of("250m"), Some(Duration::from_millis(250)));
        assert_eq!(of("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(of("0n"), Some(Duration::ZERO));
        assert_eq!(
            of("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        for ignored in [
            "",
            "m",
            "100",
            "123456789m",
            "1.5S",
            "-1S",
            "1s",
            " 1S",
            "1 S",
        ] {
            assert_eq!(of(ignored), None, "{ignored:?}");
        }
        assert_eq!(client_deadline(&http::HeaderMap::new()), None);
    }
}

#[cfg(test)]
mod listener_routes_tests {
    #[test]
    fn token_service_paths_are_its_service_names() {
        use tonic::server::NamedService as _;
        assert_eq!(
            super::TOKEN_SERVICE_PATHS,
            format!("/{}/", super::SERVICE_NAME)
        );
        assert_eq!(
            super::SERVICE_NAME,
            <crate::pb::token_service_server::TokenServiceServer<super::TokenServiceApi>>::NAME
        );
    }
}
