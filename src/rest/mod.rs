//! The REST shim: every `TokenService` operation on the `/api/v4` path and verb of its
//! `google.api.http` rule, with Mattermost's JSON, status codes, error bodies and
//! authentication, as a thin translation over the same domain functions gRPC calls.
//!
//! Every response carries `X-Request-ID`; errors are Mattermost AppError JSON with the same
//! id in `request_id`; `Content-Type` is exactly `application/json`. Unknown paths, and known
//! paths with another method (HEAD and OPTIONS included), answer Mattermost's router 404
//! (`api.context.404.app_error`).

mod auth;
mod error;
mod go_compat;
mod handlers;
mod json;
mod openapi;

use std::time::Duration;

use axum::{
    Router,
    extract::{OriginalUri, Request, State},
    http::{HeaderValue, Method, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get, post, put},
};

use crate::domain::{Context, ids::RequestId};
use crate::telemetry::RequestLayer;
use error::ApiError;
use openapi::{OperationDoc, Reply};

/// Shared state of the REST handlers.
#[derive(Debug, Clone)]
pub(crate) struct RestState {
    pub(crate) ctx: Context,
    pub(crate) max_body: usize,
}

/// One served route: verb, path, handler, and what the OpenAPI document says of it.
pub(crate) struct Route {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    handler: MethodRouter<RestState>,
    pub(crate) doc: OperationDoc,
}

fn route(
    method: Method,
    path: &'static str,
    handler: MethodRouter<RestState>,
    doc: OperationDoc,
) -> Route {
    Route {
        method,
        path,
        handler,
        doc,
    }
}

/// Every route the shim serves. This table is the single source: the router and the OpenAPI
/// document are built from it, and the contract test compares it with the proto's http rules.
pub(crate) fn route_table() -> Vec<Route> {
    use Method as M;
    use Reply::{List, One};
    use handlers as h;
    let doc = OperationDoc::new;
    vec![
        route(
            M::POST,
            "/api/v4/users/{user_id}/tokens",
            post(h::create_user_access_token),
            doc(
                "CreateUserAccessToken",
                200,
                Some("NewUserAccessToken"),
                One("CreatedUserAccessToken"),
            ),
        ),
        route(
            M::GET,
            "/api/v4/users/{user_id}/tokens",
            get(h::get_user_access_tokens_for_user),
            doc(
                "GetUserAccessTokensForUser",
                200,
                None,
                List("UserAccessToken"),
            )
            .paged(),
        ),
        route(
            M::GET,
            "/api/v4/users/tokens",
            get(h::get_user_access_tokens),
            doc("GetUserAccessTokens", 200, None, List("UserAccessToken")).paged(),
        ),
        route(
            M::POST,
            "/api/v4/users/tokens/search",
            post(h::search_user_access_tokens),
            doc(
                "SearchUserAccessTokens",
                200,
                Some("SearchTerm"),
                List("UserAccessToken"),
            ),
        ),
        route(
            M::GET,
            "/api/v4/users/tokens/{token_id}",
            get(h::get_user_access_token),
            doc("GetUserAccessToken", 200, None, One("UserAccessToken")),
        ),
        route(
            M::POST,
            "/api/v4/users/tokens/revoke",
            post(h::revoke_user_access_token),
            doc(
                "RevokeUserAccessToken",
                200,
                Some("TokenIdBody"),
                One("StatusOK"),
            ),
        ),
        route(
            M::POST,
            "/api/v4/users/tokens/disable",
            post(h::disable_user_access_token),
            doc(
                "DisableUserAccessToken",
                200,
                Some("TokenIdBody"),
                One("StatusOK"),
            ),
        ),
        route(
            M::POST,
            "/api/v4/users/tokens/enable",
            post(h::enable_user_access_token),
            doc(
                "EnableUserAccessToken",
                200,
                Some("TokenIdBody"),
                One("StatusOK"),
            ),
        ),
        route(
            M::GET,
            "/api/v4/users/{user_id}/sessions",
            get(h::get_sessions),
            doc("GetSessions", 200, None, List("Session")),
        ),
        route(
            M::POST,
            "/api/v4/users/{user_id}/sessions",
            post(h::create_session),
            doc("CreateSession", 201, Some("NewSession"), One("Session")),
        ),
        route(
            M::POST,
            "/api/v4/users/{user_id}/sessions/revoke",
            post(h::revoke_session),
            doc("RevokeSession", 200, Some("SessionIdBody"), One("StatusOK")),
        ),
        route(
            M::POST,
            "/api/v4/users/{user_id}/sessions/revoke/all",
            post(h::revoke_all_sessions),
            doc("RevokeAllSessions", 200, None, One("StatusOK")),
        ),
        route(
            M::POST,
            "/api/v4/users/sessions/revoke/all",
            post(h::revoke_sessions_from_all_users),
            doc("RevokeSessionsFromAllUsers", 200, None, One("StatusOK")),
        ),
        route(
            M::PUT,
            "/api/v4/commands/{command_id}/regen_token",
            put(h::regen_command_token),
            doc("RegenCommandToken", 200, None, One("CommandToken")),
        ),
        route(
            M::POST,
            "/api/v4/commands",
            post(h::create_command),
            doc("CreateCommand", 201, Some("NewCommand"), One("Command")),
        ),
        route(
            M::POST,
            "/api/v4/commands/{command_id}/verify_token",
            post(h::verify_command_token),
            doc(
                "VerifyCommandToken",
                200,
                Some("CommandToken"),
                One("CommandTokenCheck"),
            ),
        ),
        route(
            M::POST,
            "/api/v4/teams/{team_id}/members",
            post(h::add_team_member),
            doc(
                "AddTeamMember",
                201,
                Some("NewTeamMember"),
                One("TeamMember"),
            ),
        ),
        route(
            M::GET,
            "/api/v4/webrtc/token",
            get(h::get_webrtc_token),
            doc("GetWebrtcToken", 200, None, One("WebrtcToken")),
        ),
        route(
            M::GET,
            "/api/v4/users/me",
            get(h::get_me),
            doc("GetMe", 200, None, One("User")),
        ),
        route(
            M::POST,
            "/api/v4/tokens/introspect",
            post(h::introspect_token),
            doc(
                "IntrospectToken",
                200,
                Some("IntrospectionRequest"),
                One("Introspection"),
            ),
        ),
        route(
            M::GET,
            "/api/v4/tokens/revocations",
            get(h::watch_revocations),
            doc("WatchRevocations", 200, None, List("RevocationEvent")).with_query(&[(
                "after_event_id",
                "Return the events after this id (at most 1000); 0 or absent: from the oldest kept.",
            )]),
        ),
        route(
            M::POST,
            "/api/v4/users",
            post(h::create_user),
            doc("CreateUser", 201, Some("NewUser"), One("User")),
        ),
        route(
            M::PUT,
            "/api/v4/users/{user_id}/roles",
            put(h::update_user_roles),
            doc("UpdateUserRoles", 200, Some("RolesBody"), One("StatusOK")),
        ),
        route(
            M::PUT,
            "/api/v4/users/{user_id}/active",
            put(h::update_user_active),
            doc("UpdateUserActive", 200, Some("ActiveBody"), One("StatusOK")),
        ),
    ]
}

/// The (verb, path) pairs the shim serves, for the drift test against the proto. The OpenAPI
/// document's own route is not a `TokenService` operation and is not listed.
pub fn served_routes() -> Vec<(String, String)> {
    route_table()
        .into_iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect()
}

/// Builds the `/api/v4` router.
pub(crate) fn router(ctx: Context, max_body: usize, timeout: Option<Duration>) -> Router {
    let mut by_path: Vec<(&'static str, MethodRouter<RestState>)> = Vec::new();
    let routes = route_table()
        .into_iter()
        .map(|r| (r.path, r.handler))
        .chain([(openapi::PATH, get(openapi::serve))]);
    for (path, method_router) in routes {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => {
                let merged = std::mem::take(existing).merge(method_router);
                *existing = merged;
            }
            None => by_path.push((path, method_router)),
        }
    }
    let mut router = Router::new();
    for (path, method_router) in by_path {
        // A known path with another method falls through to the router's 404, as gorilla/mux
        // does in Mattermost, not 405.
        router = router.route(path, method_router.fallback(route_not_found));
    }
    let metrics = ctx.metrics().clone();
    let api = router
        .fallback(route_not_found)
        .layer(middleware::from_fn_with_state(timeout, mattermost_envelope))
        .with_state(RestState {
            ctx: ctx.clone(),
            max_body,
        });
    // Prometheus scrapes outside Mattermost's envelope (its own content type, no auth).
    Router::new()
        .route(METRICS_PATH, get(serve_metrics).with_state(ctx))
        .merge(api)
        .layer(RequestLayer::http(metrics))
}

const X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");
const X_VERSION_ID: header::HeaderName = header::HeaderName::from_static("x-version-id");

/// Where the metrics are served.
pub(crate) const METRICS_PATH: &str = "/metrics";

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

/// Request id, AppError JSON bodies and Mattermost's headers on every response.
///
/// A request that takes longer than `timeout` is answered 503 (as for an unreachable
/// database, the only thing that can stall a request).
async fn mattermost_envelope(
    State(timeout): State<Option<Duration>>,
    request: Request,
    next: Next,
) -> Response {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(RequestId::generate);
    let is_get = request.method() == Method::GET;
    let mut response = if request.method() == Method::HEAD {
        // axum answers HEAD on every GET route; Mattermost's router matches only the methods a
        // route declares (no route declares HEAD), so HEAD falls to its catch-all 404.
        ApiError::route_not_found(request.uri().path()).into_response()
    } else {
        match timeout {
            None => next.run(request).await,
            Some(timeout) => match crate::deadline::within(timeout, next.run(request)).await {
                Some(response) => response,
                None => ApiError::from(crate::domain::error::Error::Unavailable(
                    "the request did not finish within request_timeout_ms".into(),
                ))
                .into_response(),
            },
        }
    };
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
        response = (err.status, err.to_json(request_id.as_str())).into_response();
        if err.clear_session_cookie {
            response.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_static(CLEAR_SESSION_COOKIE),
            );
        }
    }
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
        headers.insert(X_REQUEST_ID, value);
    }
    headers.insert(
        X_VERSION_ID,
        HeaderValue::from_static(concat!("token-service.", env!("CARGO_PKG_VERSION"))),
    );
    if is_get {
        headers.insert(header::EXPIRES, HeaderValue::from_static("0"));
    }
    response
}
