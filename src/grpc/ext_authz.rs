//! Envoy's external authorization service, `envoy.service.auth.v3.Authorization/Check`:
//! reads the forwarded request's credential-carrying headers and the caller (client
//! certificate, `authorization` metadata), asks the domain (`domain::ext_authz`), and spells
//! the decision as Envoy expects it. No rule lives here.
//!
//! - Allow: `OkHttpResponse` setting the identity headers (overwriting any the client sent)
//!   and removing the identity headers that do not apply.
//! - Deny: `DeniedHttpResponse` 401 (or 403 for a missing required role) with Mattermost's
//!   error JSON; the reason a token is inactive is never told.
//! - The gateway may not ask: the call fails `UNAUTHENTICATED` or `PERMISSION_DENIED`.
//! - Undecidable (database unavailable): the call fails `UNAVAILABLE`, so Envoy's
//!   `failure_mode_allow` decides.

use tonic::{Request, Response, Status};

use crate::domain::{
    Context,
    credentials::{PresentedRequest, parse_authorization_header},
    error::Reason,
    ext_authz::{self, Decision, Denial, Gateway},
    gateway::{IDENTITY_HEADERS, identity_headers},
};
use crate::pb::envoy_ext_authz::{
    envoy::{
        config::core::v3::{
            HeaderValue, HeaderValueOption, address, header_value_option::HeaderAppendAction,
        },
        service::auth::v3::{
            AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
            attribute_context::HttpRequest, authorization_server::Authorization,
            check_response::HttpResponse,
        },
        r#type::v3::{HttpStatus, StatusCode},
    },
    google::rpc,
};

/// The `context_extensions` key (set per route in Envoy's filter config) naming the roles a
/// request's user must hold, space- or comma-separated.
const REQUIRED_ROLE_EXTENSION: &str = "required_role";

/// The gRPC face of `domain::ext_authz`.
#[derive(Debug, Clone)]
pub(crate) struct ExtAuthzApi {
    ctx: Context,
}

impl ExtAuthzApi {
    pub(crate) fn new(ctx: Context) -> Self {
        Self { ctx }
    }
}

/// The forwarded request's headers, by lower-case name: Envoy's `headers` map (repeated
/// headers joined), or, when Envoy sends them raw (`encode_raw_headers`), `header_map`.
struct ForwardedHeaders<'a>(Vec<(&'a str, &'a [u8])>);

impl<'a> ForwardedHeaders<'a> {
    fn of(http: &'a HttpRequest) -> Self {
        let mut all: Vec<(&str, &[u8])> = http
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        if let Some(map) = &http.header_map {
            all.extend(map.headers.iter().map(|h| {
                let value = if h.raw_value.is_empty() {
                    h.value.as_bytes()
                } else {
                    h.raw_value.as_slice()
                };
                (h.key.as_str(), value)
            }));
        }
        Self(all)
    }

    fn all(&self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.0
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn first(&self, name: &'a str) -> Option<&'a str> {
        self.all(name).find_map(|v| std::str::from_utf8(v).ok())
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthzApi {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let client_subject = request
            .extensions()
            .get::<crate::tls::ClientCertificates>()
            .and_then(|chain| crate::tls::certificate_subject(chain.leaf()));
        let token = request
            .metadata()
            .get(&*super::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_authorization_header);
        let gateway = Gateway {
            client_subject: client_subject.as_deref(),
            token,
        };
        let mut attributes = request.into_inner().attributes.unwrap_or_default();
        let http = attributes
            .request
            .take()
            .and_then(|r| r.http)
            .unwrap_or_default();
        let headers = ForwardedHeaders::of(&http);
        let presented = PresentedRequest {
            cookie_headers: headers.all("cookie").collect(),
            authorization: headers.first("authorization"),
            // The request target as the client sent it: path and query string.
            query: http.path.split_once('?').map(|(_, query)| query),
            write: !http.method.eq_ignore_ascii_case("GET"),
            csrf_header: headers.first("x-csrf-token"),
            requested_with: headers.first("x-requested-with"),
        };
        let required_roles = required_roles(&attributes);
        let downstream = downstream_address(&attributes);
        let decision =
            ext_authz::check(&self.ctx, gateway, &presented, required_roles, downstream).await?;
        Ok(Response::new(match decision {
            Decision::Allow(credential) => allowed(identity_headers(&credential)),
            Decision::Deny(denial) => denied(denial, &http.id),
        }))
    }
}

/// The downstream client's address as Envoy reports it (`source.address.socket_address`:
/// the connection's peer, or what Envoy's own `use_remote_address` / `xff_num_trusted_hops`
/// settings derived); `None` when absent or not an IP address.
fn downstream_address(attributes: &AttributeContext) -> Option<std::net::IpAddr> {
    match attributes
        .source
        .as_ref()?
        .address
        .as_ref()?
        .address
        .as_ref()?
    {
        address::Address::SocketAddress(socket) => socket.address.parse().ok(),
        _ => None,
    }
}

fn required_roles(attributes: &AttributeContext) -> Option<&str> {
    attributes
        .context_extensions
        .get(REQUIRED_ROLE_EXTENSION)
        .map(String::as_str)
}

/// Sets each identity header (replacing a client-sent one) and removes the others.
fn allowed(identity: Vec<(&'static str, String)>) -> CheckResponse {
    let headers_to_remove = IDENTITY_HEADERS
        .iter()
        .filter(|name| !identity.iter().any(|(set, _)| set == *name))
        .map(|name| (*name).to_owned())
        .collect();
    let headers = identity
        .into_iter()
        .map(|(name, value)| HeaderValueOption {
            header: Some(HeaderValue {
                key: name.to_owned(),
                value,
                raw_value: Vec::new(),
            }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            // An empty value (a user without roles) is still sent, so it replaces a forged one.
            keep_empty_value: true,
            ..Default::default()
        })
        .collect();
    CheckResponse {
        status: Some(rpc::Status {
            code: tonic::Code::Ok as i32,
            message: String::new(),
            details: Vec::new(),
        }),
        dynamic_metadata: None,
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove,
            ..Default::default()
        })),
    }
}

/// Mattermost's AppError JSON, in its field order.
#[derive(serde::Serialize)]
struct AppErrorJson<'a> {
    id: &'a str,
    message: &'a str,
    detailed_error: &'a str,
    request_id: &'a str,
    status_code: u16,
}

/// 401 or 403 with the body the REST shim answers for the same refusal; `request_id` is
/// Envoy's id for the request.
fn denied(denial: Denial, request_id: &str) -> CheckResponse {
    let (status, code, message) = match denial {
        Denial::Unauthenticated => (
            StatusCode::Unauthorized,
            tonic::Code::Unauthenticated,
            "Invalid or expired session, please login again.",
        ),
        Denial::Forbidden => (
            StatusCode::Forbidden,
            tonic::Code::PermissionDenied,
            "You do not have the appropriate permissions.",
        ),
    };
    let reason: Reason = denial.reason();
    let body = serde_json::to_string(&AppErrorJson {
        id: reason.id(),
        message,
        detailed_error: "",
        request_id,
        status_code: status as u16,
    })
    .expect("strings and a number serialize");
    let header = |key: &str, value: &str| HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            raw_value: Vec::new(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    };
    CheckResponse {
        status: Some(rpc::Status {
            code: code as i32,
            message: String::new(),
            details: Vec::new(),
        }),
        dynamic_metadata: None,
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: status as i32,
            }),
            headers: vec![header("content-type", "application/json")],
            body,
        })),
    }
}
