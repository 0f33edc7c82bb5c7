//! The token gate over HTTP, for infrastructure that already knows how to ask "is this token
//! valid, and whose is it?": RFC 7662 token introspection (`POST /oauth2/introspect`, for
//! OAuth 2.0 resource server libraries) and nginx's `auth_request` (`GET /auth/verify`).
//! A thin translation: the rules are in `domain::gateway` (and `domain::introspection`), the
//! credential of `/auth/verify` is read by the REST shim's own reader
//! (`auth::presented_credential`).
//!
//! These are not `/api/v4` routes and are served outside Mattermost's envelope: RFC 7662
//! answers are OAuth JSON (`{"active":...}`, `{"error":...}`), `/auth/verify` refusals are
//! Mattermost AppError JSON. Every answer is `application/json`, `Cache-Control: no-store`,
//! with `X-Request-ID`. Every check is counted in `token_service_gateway_checks_total`.

use std::time::Duration;

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine as _;
use serde::Serialize;

use super::{
    auth::presented_credential,
    error::{ApiError, retry_after_secs},
};
use crate::domain::{
    Context,
    caller::Caller,
    credentials::parse_authorization_header,
    error::{Error, Reason},
    gateway::{self, ClientCredential, RequiredRoles, Verdict},
    ids::RequestId,
    introspection::{self, ActiveCredential},
    secret::PlainToken,
};
use crate::metrics::{GatewayEndpoint, GatewayOutcome};
use crate::telemetry::X_REQUEST_ID;

/// RFC 7662 token introspection.
pub(crate) const INTROSPECT_PATH: &str = "/oauth2/introspect";
/// nginx `auth_request` (and any proxy that asks with a subrequest).
pub(crate) const VERIFY_PATH: &str = "/auth/verify";

/// The gateway routes, as (verb, path): served on the REST listener besides the `/api/v4`
/// routes and the operational routes, documented in the README ("Gateways").
pub const GATEWAY_ROUTES: [(&str, &str); 2] = [("POST", INTROSPECT_PATH), ("GET", VERIFY_PATH)];

/// The realm of every challenge.
const REALM: &str = "token-service";

/// The method of the request a proxy's subrequest checks (nginx:
/// `proxy_set_header X-Original-Method $request_method;`).
const X_ORIGINAL_METHOD: &str = "x-original-method";

/// What the gateway handlers need.
#[derive(Debug, Clone)]
struct GatewayState {
    ctx: Context,
    max_body: usize,
    timeout: Option<Duration>,
}

/// The gateway routes. Another method on their paths is 405 with `Allow`.
pub(super) fn router(ctx: Context, max_body: usize, timeout: Option<Duration>) -> Router {
    let state = GatewayState {
        ctx,
        max_body,
        timeout,
    };
    Router::new()
        .route(
            INTROSPECT_PATH,
            post(introspect).fallback(|request: Request| async move {
                method_not_allowed(request_id(&request), "POST")
            }),
        )
        .route(
            VERIFY_PATH,
            get(verify).fallback(|request: Request| async move {
                method_not_allowed(request_id(&request), "GET, HEAD")
            }),
        )
        .with_state(state)
}

/// The request's id (set by the request layer), for `X-Request-ID`.
fn request_id(request: &Request) -> Option<RequestId> {
    request.extensions().get::<RequestId>().copied()
}

/// `X-Request-ID` on a gateway answer (the id in the logs and traces of the request).
fn with_request_id(mut response: Response, request_id: Option<RequestId>) -> Response {
    if let Some(value) = request_id
        .as_ref()
        .and_then(crate::telemetry::request_id_header)
    {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

fn method_not_allowed(request_id: Option<RequestId>, allow: &'static str) -> Response {
    let mut response = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        serde_json::json!({
            "error": "invalid_request",
            "error_description": format!("this path answers {allow} only"),
        })
        .to_string(),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    with_request_id(response, request_id)
}

/// A JSON answer that is never cached.
fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body.into(),
    )
        .into_response()
}

/// Runs `answer` within the request deadline (503 from `on_timeout` past it), counts its
/// outcome and adds the request id.
async fn gated(
    state: &GatewayState,
    endpoint: GatewayEndpoint,
    request_id: Option<RequestId>,
    answer: impl Future<Output = (GatewayOutcome, Response)>,
    on_timeout: impl FnOnce() -> Response,
) -> Response {
    let answered = match state.timeout {
        None => Some(answer.await),
        Some(limit) => crate::deadline::within(limit, answer).await,
    };
    let (outcome, response) = answered.unwrap_or_else(|| {
        tracing::warn!("a gateway check did not finish within request_timeout_ms");
        (GatewayOutcome::Error, on_timeout())
    });
    state.ctx.metrics().record_gateway_check(endpoint, outcome);
    with_request_id(response, request_id)
}

// ---------------------------------------------------------------------------------------
// RFC 7662
// ---------------------------------------------------------------------------------------

/// An RFC 7662 answer for an active token. `token_type` is the credential kind
/// (`user_access_token` or `session`); `exp` is omitted for a credential that never
/// expires; `client_id` is omitted (no OAuth clients here); `token_id` and `session_id` are
/// ours.
#[derive(Debug, Serialize)]
struct ActiveTokenJson<'a> {
    active: bool,
    sub: &'a str,
    username: &'a str,
    token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    iat: i64,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_id: Option<&'a str>,
    session_id: &'a str,
}

impl<'a> From<&'a ActiveCredential> for ActiveTokenJson<'a> {
    fn from(c: &'a ActiveCredential) -> Self {
        let expires_at = c.expires_at();
        Self {
            active: true,
            sub: c.user_id().as_str(),
            username: c.username(),
            token_type: c.kind().id(),
            exp: (expires_at > 0).then(|| expires_at.div_euclid(1000)),
            iat: c.issued_at().div_euclid(1000),
            scope: rfc7662_scope(c),
            token_id: c.token_id().map(|id| id.as_str()),
            session_id: c.session_id().as_str(),
        }
    }
}

/// RFC 7662's `scope`: the owner's roles, space-separated, then, for a scoped token, each
/// of its scopes as `scope:<id>` (role names cannot contain ':', so the two never mix).
fn rfc7662_scope(c: &ActiveCredential) -> String {
    let mut scope = c.roles().join(" ");
    for s in c.scopes().iter() {
        if !scope.is_empty() {
            scope.push(' ');
        }
        scope.push_str("scope:");
        scope.push_str(s.id());
    }
    scope
}

/// Exactly what an inactive token gets: nothing that says why.
const INACTIVE: &str = r#"{"active":false}"#;

/// An OAuth error answer (RFC 6749 section 5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        serde_json::json!({ "error": error, "error_description": description }).to_string(),
    )
}

/// How the introspection caller presented itself, for the challenge of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientScheme {
    None,
    Basic,
    Bearer,
}

/// 401 for a caller that is not allowed to introspect, with the RFC 7617 / RFC 6750
/// challenge of the scheme it used (both when it used none). `permission` says it
/// authenticated but lacks `introspect_token`.
fn client_refused(scheme: ClientScheme, permission: bool) -> (GatewayOutcome, Response) {
    let (error, challenge, description) = match (scheme, permission) {
        (ClientScheme::Basic, false) => (
            "invalid_client",
            format!(r#"Basic realm="{REALM}""#),
            "client authentication failed",
        ),
        (ClientScheme::Basic, true) => (
            "invalid_client",
            format!(r#"Basic realm="{REALM}""#),
            "the client lacks the introspect_token permission",
        ),
        (ClientScheme::Bearer, false) => (
            "invalid_token",
            format!(r#"Bearer realm="{REALM}", error="invalid_token""#),
            "the bearer token does not authenticate",
        ),
        (ClientScheme::Bearer, true) => (
            "insufficient_scope",
            format!(r#"Bearer realm="{REALM}", error="insufficient_scope""#),
            "the caller lacks the introspect_token permission",
        ),
        (ClientScheme::None, _) => (
            "invalid_client",
            format!(r#"Basic realm="{REALM}", Bearer realm="{REALM}""#),
            "client authentication is required (HTTP Basic or a bearer token)",
        ),
    };
    let mut response = oauth_error(StatusCode::UNAUTHORIZED, error, description);
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    let outcome = if permission {
        GatewayOutcome::Denied
    } else {
        GatewayOutcome::Unauthorized
    };
    (outcome, response)
}

/// The answer for an error that decided nothing (the database unavailable, a bug).
fn introspection_failed(err: Error) -> (GatewayOutcome, Response) {
    if let Error::RateLimited { retry_after_ms } = err {
        // The caller's address made too many failed credential checks (guess_throttle).
        let mut response = oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "too many failed credential checks from this address; retry later",
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs(retry_after_ms)),
        );
        return (GatewayOutcome::Error, response);
    }
    let (status, error) = match &err {
        Error::Unavailable(cause) => {
            tracing::warn!(cause = %cause, "database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        Error::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
        other => {
            tracing::error!(error = %other, "introspection failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
        }
    };
    (
        GatewayOutcome::Error,
        oauth_error(status, error, "the token could not be checked; retry later"),
    )
}

/// `POST /oauth2/introspect` (RFC 7662).
async fn introspect(State(state): State<GatewayState>, request: Request) -> Response {
    // A body still arriving at the deadline is the client's fault (408), not an outage.
    let (parts, body) = request.into_parts();
    let (body, received) = crate::deadline::TrackedBody::new(body);
    let request = Request::from_parts(parts, Body::new(body));
    gated(
        &state,
        GatewayEndpoint::Introspect,
        request_id(&request),
        answer_introspection(&state, request),
        move || {
            if received.is_complete() {
                introspection_failed(Error::Unavailable("request_timeout_ms passed".into())).1
            } else {
                let mut response = oauth_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "invalid_request",
                    "the request body did not arrive within request_timeout_ms",
                );
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            }
        },
    )
    .await
}

async fn answer_introspection(
    state: &GatewayState,
    request: Request,
) -> (GatewayOutcome, Response) {
    let ctx = &state.ctx;
    let (parts, body) = request.into_parts();
    let (scheme, credential) = client_credential(&parts.headers);
    let Some(credential) = credential else {
        return client_refused(scheme, false);
    };
    let caller = match gateway::authenticate_introspection_client(ctx, &credential).await {
        Ok(caller) => caller,
        Err(Error::Unauthenticated { .. }) => return client_refused(scheme, false),
        Err(Error::PermissionDenied { .. }) => return client_refused(scheme, true),
        Err(other) => return introspection_failed(other),
    };
    if let Caller::User(principal) = &caller {
        crate::telemetry::record_caller(principal);
    }
    let invalid = |description: &str| {
        (
            GatewayOutcome::Error,
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description),
        )
    };
    if !is_form_urlencoded(&parts.headers) {
        return invalid("the Content-Type must be application/x-www-form-urlencoded");
    }
    let body = match axum::body::to_bytes(body, state.max_body).await {
        Ok(body) => body,
        Err(e) if super::handlers::over_the_limit(&e) => {
            return (
                GatewayOutcome::Error,
                oauth_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request",
                    &format!(
                        "the request body is larger than max_request_body_bytes ({})",
                        state.max_body
                    ),
                ),
            );
        }
        Err(_) => return invalid("the request body could not be read"),
    };
    let mut token: Option<String> = None;
    let mut hints = 0;
    for (key, value) in form_urlencoded::parse(&body) {
        match key.as_ref() {
            // RFC 6749 section 3.1: parameters must not be repeated.
            "token" if token.is_some() => return invalid("token: given more than once"),
            "token" => token = Some(value.into_owned()),
            // Any hint is accepted (RFC 7662 section 2.1: the server may ignore it, and
            // looks the token up in every kind anyway).
            "token_type_hint" => hints += 1,
            _ => {}
        }
    }
    if hints > 1 {
        return invalid("token_type_hint: given more than once");
    }
    let token = match token {
        Some(token) if !token.is_empty() => token,
        _ => return invalid("token: required, the token to introspect"),
    };
    match introspection::introspect_token(ctx, &caller, &token).await {
        Ok(Some(credential)) => {
            let body = serde_json::to_string(&ActiveTokenJson::from(&credential))
                .expect("strings and numbers serialize");
            (GatewayOutcome::Active, json_response(StatusCode::OK, body))
        }
        Ok(None) => (
            GatewayOutcome::Inactive,
            json_response(StatusCode::OK, INACTIVE),
        ),
        Err(Error::PermissionDenied { .. }) => client_refused(scheme, true),
        Err(other) => introspection_failed(other),
    }
}

/// `Content-Type: application/x-www-form-urlencoded`, parameters (a charset) allowed.
fn is_form_urlencoded(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The caller's credential from the `Authorization` header: `Basic` (RFC 7617, client id and
/// secret form-urlencoded as RFC 6749 section 2.3.1 says) or a bearer token (`Bearer` or
/// `Token`, cut as the REST shim cuts it). `None` when there is none or it is malformed.
fn client_credential(headers: &HeaderMap) -> (ClientScheme, Option<ClientCredential>) {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return (ClientScheme::None, None);
    };
    let is_basic = value
        .get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic "));
    if is_basic {
        return (ClientScheme::Basic, basic_credential(value[6..].trim()));
    }
    match parse_authorization_header(value) {
        Some(token) => (ClientScheme::Bearer, Some(ClientCredential::Bearer(token))),
        None if value.len() >= 6 && value[..6].eq_ignore_ascii_case("bearer") => {
            (ClientScheme::Bearer, None)
        }
        None => (ClientScheme::None, None),
    }
}

fn basic_credential(encoded: &str) -> Option<ClientCredential> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let (client_id, client_secret) = (form_decode(id)?, form_decode(secret)?);
    if client_id.is_empty() || client_secret.is_empty() {
        return None;
    }
    Some(ClientCredential::Basic {
        client_id,
        client_secret: PlainToken::from_presented(client_secret),
    })
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space, `%XX` a byte.
/// `None` for a malformed escape or text that is not UTF-8.
fn form_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------------------
// nginx auth_request
// ---------------------------------------------------------------------------------------

/// A refusal of `/auth/verify`: Mattermost's AppError JSON, as the REST shim writes it.
fn verify_refusal(err: &ApiError, request_id: Option<&RequestId>) -> Response {
    let body = err.to_json(request_id.map_or("", RequestId::as_str), false);
    let mut response = json_response(err.status, body);
    if let Some(secs) = err.retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if err.status == StatusCode::UNAUTHORIZED
        && let Ok(value) = HeaderValue::from_str(&format!(r#"Bearer realm="{REALM}""#))
    {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// `GET /auth/verify` (nginx `auth_request`).
async fn verify(State(state): State<GatewayState>, request: Request) -> Response {
    let request_id = request_id(&request);
    let (parts, _) = request.into_parts();
    gated(
        &state,
        GatewayEndpoint::Verify,
        request_id,
        answer_verify(&state, &parts, request_id.as_ref()),
        move || {
            let err = ApiError::from(Error::Unavailable(
                "the request did not finish within request_timeout_ms".into(),
            ));
            verify_refusal(&err, request_id.as_ref())
        },
    )
    .await
}

async fn answer_verify(
    state: &GatewayState,
    parts: &Parts,
    request_id: Option<&RequestId>,
) -> (GatewayOutcome, Response) {
    let ctx = &state.ctx;
    let refuse = |outcome, err: ApiError| (outcome, verify_refusal(&err, request_id));
    let required = match required_roles(ctx, parts.uri.query()) {
        Ok(required) => required,
        Err(err) => return refuse(GatewayOutcome::Error, err),
    };
    let Some((token, presentation)) = presented_credential(parts, is_write(parts)) else {
        return refuse(GatewayOutcome::Unauthorized, ApiError::session_expired());
    };
    match gateway::check_presented(ctx, &token, presentation, &required).await {
        Ok(Verdict::Allowed(credential)) => {
            crate::telemetry::record_caller(credential.principal());
            let mut response = json_response(StatusCode::OK, r#"{"status":"OK"}"#);
            match put_identity(response.headers_mut(), &credential) {
                Some(()) => (GatewayOutcome::Active, response),
                None => refuse(
                    GatewayOutcome::Error,
                    ApiError::from(Error::internal("an identity is not a valid header value")),
                ),
            }
        }
        Ok(Verdict::MissingRole { credential, role }) => {
            crate::telemetry::record_caller(credential.principal());
            let mut err = ApiError::from_reason(Reason::PermissionDenied);
            err.detailed_error = format!("role={role}");
            refuse(GatewayOutcome::Denied, err)
        }
        Ok(Verdict::Inactive) => refuse(GatewayOutcome::Inactive, ApiError::session_expired()),
        Err(err) => refuse(GatewayOutcome::Error, ApiError::from(err)),
    }
}

/// Whether the checked request is a write, for the CSRF rule of the cookie: its method is
/// `X-Original-Method` when the proxy sends it (an `auth_request` subrequest is always a
/// GET), else this request's own. As in Mattermost, anything but GET is a write.
fn is_write(parts: &Parts) -> bool {
    match parts.headers.get(X_ORIGINAL_METHOD) {
        Some(method) => method.as_bytes() != b"GET",
        None => parts.method != Method::GET,
    }
}

/// The `role` query parameters (repeatable, all required). `access_token` is the credential
/// (read by the credential reader); any other parameter is 400 naming it.
fn required_roles(ctx: &Context, query: Option<&str>) -> Result<RequiredRoles, ApiError> {
    let Some(query) = query else {
        return Ok(RequiredRoles::none());
    };
    let mut roles = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "role" => roles.push(value),
            "access_token" => {}
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(ApiError::new(
                    Reason::InvalidUrlParam,
                    format!(
                        "Invalid parameter {shown} in request URL: only role (and access_token) are accepted."
                    ),
                    "",
                ));
            }
        }
    }
    RequiredRoles::parse(ctx, roles.iter().map(AsRef::as_ref)).map_err(ApiError::from)
}

/// Puts the identity headers of an allowed check ([`gateway::identity_headers`]) into
/// `headers`; `None` if a value cannot be a header value (never for the ids, roles and
/// usernames this service accepts).
fn put_identity(headers: &mut HeaderMap, c: &ActiveCredential) -> Option<()> {
    for (name, value) in gateway::identity_headers(c) {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::try_from(value).ok()?,
        );
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_follows_rfc_6749() {
        assert_eq!(form_decode("a+b%3Ac").as_deref(), Some("a b:c"));
        assert_eq!(form_decode("plain").as_deref(), Some("plain"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
        assert_eq!(form_decode("%ff"), None, "not UTF-8");
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {}", encode("svc%2Dgate:secret"))).unwrap(),
        );
        match client_credential(&headers) {
            (
                ClientScheme::Basic,
                Some(ClientCredential::Basic {
                    client_id,
                    client_secret,
                }),
            ) => {
                assert_eq!(client_id, "svc-gate");
                assert_eq!(client_secret.expose(), "secret");
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            encode("no-colon"),
            encode(":secret"),
            encode("id:"),
            "%%%".into(),
        ] {
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("basic {bad}")).unwrap(),
            );
            assert!(matches!(
                client_credential(&headers),
                (ClientScheme::Basic, None)
            ));
        }
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(matches!(
            client_credential(&headers),
            (ClientScheme::Bearer, None)
        ));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Digest x"));
        assert!(matches!(
            client_credential(&headers),
            (ClientScheme::None, None)
        ));
    }
}
