//! The REST shim: every `TokenService` operation on the `/api/v4` path and verb of its
//! `google.api.http` rule (read from the compiled proto, see `routes`), with Mattermost's
//! JSON, status codes, error bodies and authentication, as a thin translation over the same
//! domain functions gRPC calls.
//!
//! Every response carries `X-Request-ID`, Mattermost's `X-Version-Id` (see `version`) and
//! `X-Token-Service-Version`; errors are Mattermost AppError JSON with the same
//! id in `request_id`; `Content-Type` is exactly `application/json`. Unknown paths, and known
//! paths with another method (HEAD and OPTIONS included), answer Mattermost's router 404
//! (`api.context.404.app_error`), unless a route with a parameter matches the path and method
//! (Mattermost's router takes the first route that matches both, see `router`).
//!
//! Besides the RPC routes, the router serves the gateway routes ([`GATEWAY_ROUTES`]: RFC 7662
//! introspection and nginx `auth_request`, see `gateway`) and the [`OPERATIONAL_ROUTES`], a fixed and
//! documented list: Mattermost's `GET /api/v4/system/ping` and the OpenAPI document (inside
//! Mattermost's envelope), and `/livez`, `/readyz` and `/metrics` (outside it: no auth, their
//! own content types). The last three are also served by the management listener
//! ([`management_router`]).

mod auth;
mod envelope;
mod error;
#[cfg(test)]
mod fuzz_tests;
mod gateway;
mod go_compat;
mod handlers;
mod json;
mod openapi;
mod routes;
mod version;

use std::time::Duration;

use axum::{
    Router,
    extract::{OriginalUri, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get},
};

use crate::domain::{Context, ids::RequestId};
use crate::health::Health;
use crate::telemetry::{RequestLayer, X_REQUEST_ID};
use error::ApiError;
pub use gateway::GATEWAY_ROUTES;
pub use routes::{HttpBinding, http_bindings, served_routes};

/// Shared state of the REST handlers.
#[derive(Debug, Clone)]
pub(crate) struct RestState {
    pub(crate) ctx: Context,
    pub(crate) max_body: usize,
}

/// Builds the `/api/v4` router.
///
/// The verbs and paths come from the proto's `google.api.http` rules (decoded once per
/// process); a rule without a handler, or a handler without a rule, panics here, and first
/// in the unit tests of `routes`.
///
/// `enable_developer` (Mattermost's `EnableDeveloper`) keeps `detailed_error` in error bodies.
pub(crate) fn router(
    ctx: Context,
    health: Health,
    probes: bool,
    max_body: usize,
    timeout: Option<Duration>,
    enable_developer: bool,
    client_ip: &crate::client_ip::ClientIpSettings,
) -> Router {
    let table = routes::routes()
        .unwrap_or_else(|e| panic!("the REST route table disagrees with the proto: {e}"));
    let mut by_path: Vec<(String, MethodRouter<RestState>)> = Vec::new();
    let routes = table.into_iter().map(|r| (r.path, r.handler)).chain([
        (openapi::PATH.to_owned(), get(openapi::serve)),
        (
            SYSTEM_PING_PATH.to_owned(),
            get(system_ping).with_state(health.clone()),
        ),
    ]);
    for (path, method_router) in routes {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => {
                let merged = std::mem::take(existing).merge(method_router);
                *existing = merged;
            }
            None => by_path.push((path, method_router)),
        }
    }
    let state = RestState {
        ctx: ctx.clone(),
        max_body,
    };
    // Mattermost's router (gorilla/mux) takes the first route whose path and method both
    // match, so a literal path asked with a method it does not serve reaches a template that
    // matches it: GET /users/tokens/revoke is GET /users/tokens/{token_id} with the token id
    // "revoke" (400 invalid token_id). axum picks the literal path whatever the method, so
    // such requests go on to a router of the templates alone. Whatever matches nothing there
    // either (a known path with another method) is the router's 404, not 405.
    let templates = by_path
        .iter()
        .filter(|(path, _)| is_template(path))
        .fold(Router::new(), |router, (path, method_router)| {
            router.route(path, method_router.clone().fallback(route_not_found))
        })
        .fallback(route_not_found)
        .with_state(state.clone());
    let mut router = Router::new();
    for (path, method_router) in by_path {
        let method_router = if is_template(&path) {
            method_router.fallback(route_not_found)
        } else {
            method_router.fallback_service(templates.clone())
        };
        router = router.route(&path, method_router);
    }
    let request_layer = RequestLayer::http(ctx.metrics().clone()).client_ip(client_ip);
    // Both layers in one: axum boxes each route once per `layer` call, and every request
    // pays for each box (a clone of the service stack).
    let api = router
        .fallback(route_not_found)
        .layer(
            tower::ServiceBuilder::new()
                .layer(request_layer.clone())
                .layer(envelope::EnvelopeLayer::new(envelope::Envelope {
                    timeout,
                    enable_developer,
                    versions: version::VersionHeaders::new(ctx.policy()),
                })),
        )
        .with_state(state);
    // Probes and Prometheus scrapes are answered outside Mattermost's envelope (their own
    // content types, no auth).
    let ctx_for_gateway = ctx.clone();
    let operational = if probes {
        probe_routes(ctx, health, MethodMismatch::MattermostNotFound)
    } else {
        Router::new()
    };
    operational
        .merge(gateway::router(ctx_for_gateway, max_body, timeout))
        .layer(request_layer)
        .merge(api)
}

/// A route path with a parameter (`/users/tokens/{token_id}`).
fn is_template(path: &str) -> bool {
    path.contains('{')
}

/// The management listener's router: `/metrics`, `/livez` and `/readyz`, and the plain 404
/// of [`probe_routes`] for anything else.
pub(crate) fn management_router(ctx: Context, health: Health) -> Router {
    let metrics = ctx.metrics().clone();
    probe_routes(ctx, health, MethodMismatch::PlainNotFound)
        .fallback(plain_not_found)
        .layer(RequestLayer::http(metrics))
}

/// What a probe path answers to a method other than GET (or HEAD).
#[derive(Debug, Clone, Copy)]
enum MethodMismatch {
    /// Mattermost's router 404 (the public port, like every other path there).
    MattermostNotFound,
    /// A plain JSON 404 (the management port).
    PlainNotFound,
}

fn probe_routes(ctx: Context, health: Health, mismatch: MethodMismatch) -> Router {
    let routes: [(&str, MethodRouter); 3] = [
        (METRICS_PATH, get(serve_metrics).with_state(ctx)),
        (LIVEZ_PATH, get(livez)),
        (READYZ_PATH, get(readyz).with_state(health)),
    ];
    let mut router = Router::new();
    for (path, method_router) in routes {
        let method_router = match mismatch {
            MethodMismatch::MattermostNotFound => method_router.fallback(app_error_not_found),
            MethodMismatch::PlainNotFound => method_router.fallback(plain_not_found),
        };
        router = router.route(path, method_router);
    }
    router
}

async fn plain_not_found() -> Response {
    plain_json(http::StatusCode::NOT_FOUND, r#"{"status":"not_found"}"#)
}

/// Mattermost's router 404, complete (the envelope does not wrap the probe routes).
async fn app_error_not_found(uri: OriginalUri) -> Response {
    let err = ApiError::route_not_found(uri.0.path());
    let request_id = RequestId::generate();
    let mut response = (err.status, err.to_json(request_id.as_str(), false)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(value) = crate::telemetry::request_id_header(&request_id) {
        headers.insert(X_REQUEST_ID, value);
    }
    response
}

/// Where the metrics are served.
pub(crate) const METRICS_PATH: &str = "/metrics";
/// Liveness: 200 while the process serves.
pub(crate) const LIVEZ_PATH: &str = "/livez";
/// Readiness: 200 when every readiness check passes, else 503 naming the first failing one.
pub(crate) const READYZ_PATH: &str = "/readyz";
/// Mattermost's `GET /api/v4/system/ping`.
pub(crate) const SYSTEM_PING_PATH: &str = "/api/v4/system/ping";

/// The routes served that no RPC annotates, as (verb, path): the only exceptions to "the
/// shim serves exactly the proto's `google.api.http` rules" (the drift test allows these by
/// name). `/livez`, `/readyz` and `/metrics` are left off `http_addr` when
/// `probes_on_http_addr` is false.
pub const OPERATIONAL_ROUTES: [(&str, &str); 5] = [
    ("GET", SYSTEM_PING_PATH),
    ("GET", openapi::PATH),
    ("GET", LIVEZ_PATH),
    ("GET", READYZ_PATH),
    ("GET", METRICS_PATH),
];

/// A JSON answer outside Mattermost's envelope, never cached.
fn plain_json(status: http::StatusCode, body: impl Into<axum::body::Body>) -> Response {
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

async fn livez() -> Response {
    plain_json(http::StatusCode::OK, r#"{"status":"ok"}"#)
}

async fn readyz(State(health): State<Health>) -> Response {
    let readiness = health.readiness();
    let checks: serde_json::Map<String, serde_json::Value> = readiness
        .checks()
        .into_iter()
        .map(|(name, state)| {
            let value = match state {
                crate::health::CheckState::Ok => "ok".to_owned(),
                crate::health::CheckState::Failing(reason) => reason.clone(),
            };
            (name.to_owned(), serde_json::Value::String(value))
        })
        .collect();
    let (status, body) = match readiness.first_failure() {
        None => match &readiness.degraded {
            None => (
                http::StatusCode::OK,
                serde_json::json!({ "status": "ready", "checks": checks }),
            ),
            Some(reason) => (
                http::StatusCode::OK,
                serde_json::json!({ "status": "degraded", "reason": reason, "checks": checks }),
            ),
        },
        Some((failed, reason)) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({
                "status": "not_ready",
                "failed": failed,
                "reason": format!("{failed}: {reason}"),
                "checks": checks,
            }),
        ),
    };
    plain_json(status, body.to_string())
}

/// Mattermost's `getSystemPing` (`api4/system.go`) for a server with no client requirements,
/// search engine, file store or goroutine threshold: 200 with `status` "OK", the four
/// (empty) client version fields and `ActiveSearchBackend` "database", keys in Go's order.
/// `get_server_status=true` adds `database_status` (checked now) and the `status` and
/// `database_status` headers; a failure makes `status` "UNHEALTHY" and the answer 500,
/// unless `use_rest_semantics=true`, which keeps 200. No authentication.
async fn system_ping(State(health): State<Health>, uri: OriginalUri) -> Response {
    const OK: &str = "OK";
    const UNHEALTHY: &str = "UNHEALTHY";
    let query = uri.0.query().unwrap_or("");
    // Go's `r.FormValue`: the first value of the key.
    let form_value = |key: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    let mut body = std::collections::BTreeMap::<&str, &str>::new();
    body.insert("status", OK);
    for key in [
        "AndroidLatestVersion",
        "AndroidMinVersion",
        "IosLatestVersion",
        "IosMinVersion",
    ] {
        body.insert(key, "");
    }
    body.insert("ActiveSearchBackend", "database");
    let mut headers = Vec::new();
    if form_value("get_server_status").as_deref() == Some("true") {
        let database = if health.database_answers().await {
            OK
        } else {
            UNHEALTHY
        };
        body.insert("database_status", database);
        if database != OK {
            body.insert("status", UNHEALTHY);
        }
        headers.push(("status", body["status"]));
        headers.push(("database_status", database));
    }
    let status =
        if body["status"] != OK && form_value("use_rest_semantics").as_deref() != Some("true") {
            http::StatusCode::INTERNAL_SERVER_ERROR
        } else {
            http::StatusCode::OK
        };
    let json = serde_json::to_string(&body).unwrap_or_default();
    // JSON already, so the envelope passes an unhealthy 500 through as it is.
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
        .into_response();
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn serve_metrics(State(ctx): State<Context>) -> Response {
    let text = ctx.metrics().render(ctx.metric_gauges());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn route_not_found(uri: OriginalUri) -> Response {
    ApiError::route_not_found(uri.0.path()).into_response()
}

/// What Go's `http.SetCookie` writes for Mattermost's `RemoveSessionCookie` (default subpath).
const CLEAR_SESSION_COOKIE: &str = "MMAUTHTOKEN=; Path=/; Max-Age=0; HttpOnly";
