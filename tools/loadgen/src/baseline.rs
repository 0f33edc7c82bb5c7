//! The baselines: what tonic and axum cost with no service behind them.
//!
//! - `grpc-echo`: a bare tonic server implementing the generated `TokenService` whose
//!   IntrospectToken returns a fixed, realistic answer (same messages, same method path, same
//!   generated routing as the real service; every other RPC is UNIMPLEMENTED). Its listener
//!   is set up as `Server::builder().serve(addr)` would (TCP_NODELAY on).
//!   It also serves Envoy's `Authorization/Check` with a fixed allow (six identity headers),
//!   the baseline of the `ext-authz` scenario.
//! - `axum-json`: a bare axum `GET /api/v4/users/me` serializing a user with the same fields
//!   as token-service's Mattermost user JSON, served by `axum::serve` with its defaults; on
//!   the same server, `GET /auth/verify` (fixed identity headers) and `POST
//!   /oauth2/introspect` (reads the form, a fixed active answer), the gateways' twins.

use std::{net::SocketAddr, pin::Pin};

use axum::{Json, Router, routing::get};
use serde::Serialize;
use token_service::pb::{
    self,
    envoy_ext_authz::envoy::{
        config::core::v3::{HeaderValue, HeaderValueOption},
        service::auth::v3::{
            CheckRequest, CheckResponse, OkHttpResponse, authorization_server::Authorization,
            check_response::HttpResponse,
        },
    },
    token_service_server::TokenService,
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, transport::server::TcpIncoming};

/// Starts the gRPC echo baseline on 127.0.0.1:0 (call inside the server runtime).
pub(crate) async fn start_grpc_echo() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("grpc-echo bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = pb::token_service_server::TokenServiceServer::new(Echo::new());
    let authorization =
        pb::envoy_ext_authz::envoy::service::auth::v3::authorization_server::AuthorizationServer::new(
            EchoAuthz::new(),
        );
    tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(service)
            .add_service(authorization)
            .serve_with_incoming(incoming)
            .await
        {
            eprintln!("grpc-echo stopped: {e}");
        }
    });
    Ok(addr)
}

/// Starts the axum JSON baseline on 127.0.0.1:0 (call inside the server runtime).
pub(crate) async fn start_axum_json() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("axum-json bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = Router::new()
        .route("/api/v4/users/me", get(get_me))
        .route("/auth/verify", get(verify))
        .route("/oauth2/introspect", axum::routing::post(introspect));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("axum-json stopped: {e}");
        }
    });
    Ok(addr)
}

/// The fields of token-service's Mattermost user JSON.
#[derive(Debug, Serialize)]
struct UserLike {
    id: String,
    create_at: i64,
    update_at: i64,
    delete_at: i64,
    username: String,
    auth_data: String,
    auth_service: String,
    email: String,
    nickname: String,
    first_name: String,
    last_name: String,
    position: String,
    roles: String,
    locale: String,
    timezone: std::collections::BTreeMap<String, String>,
    props: std::collections::BTreeMap<String, String>,
}

async fn get_me() -> Json<UserLike> {
    let mut timezone = std::collections::BTreeMap::new();
    timezone.insert("useAutomaticTimezone".to_owned(), "true".to_owned());
    timezone.insert("automaticTimezone".to_owned(), String::new());
    timezone.insert("manualTimezone".to_owned(), String::new());
    Json(UserLike {
        id: "x9ad4wq3ibdx5rk6d6ew7sgqhc".to_owned(),
        create_at: 1_795_400_000_000,
        update_at: 1_795_400_000_000,
        delete_at: 0,
        username: "lg-user-42".to_owned(),
        auth_data: String::new(),
        auth_service: String::new(),
        email: String::new(),
        nickname: String::new(),
        first_name: String::new(),
        last_name: String::new(),
        position: String::new(),
        roles: "system_user system_user_access_token".to_owned(),
        locale: "en".to_owned(),
        timezone,
        props: std::collections::BTreeMap::new(),
    })
}

/// `GET /auth/verify` as a bare axum handler: 200 with fixed identity headers and token-service's
/// body.
async fn verify() -> impl axum::response::IntoResponse {
    (
        [
            ("x-auth-user-id", "x9ad4wq3ibdx5rk6d6ew7sgqhc"),
            ("x-auth-username", "lg-user-42"),
            ("x-auth-roles", "system_user system_user_access_token"),
            ("x-auth-token-type", "user_access_token"),
            ("x-auth-token-id", "3hc1sj7yxtf8tbmgkqr6m8rqwo"),
            ("x-auth-session-id", "kq5pzdn7ufgz3b8ykqj5yqfz6h"),
            ("cache-control", "no-store"),
        ],
        Json(serde_json::json!({"status": "OK"})),
    )
}

/// The fields of token-service's RFC 7662 answer for an active token.
#[derive(Debug, Serialize)]
struct IntrospectionLike {
    active: bool,
    sub: &'static str,
    username: &'static str,
    token_type: &'static str,
    iat: i64,
    scope: &'static str,
    token_id: &'static str,
    session_id: &'static str,
}

/// `POST /oauth2/introspect` as a bare axum handler: reads the form body, answers a fixed
/// active token (400 without a `token=`).
async fn introspect(body: String) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if !body.split('&').any(|pair| pair.starts_with("token=")) {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    }
    (
        [("cache-control", "no-store")],
        Json(IntrospectionLike {
            active: true,
            sub: "x9ad4wq3ibdx5rk6d6ew7sgqhc",
            username: "lg-user-42",
            token_type: "user_access_token",
            iat: 1_795_400_000,
            scope: "system_user system_user_access_token",
            token_id: "3hc1sj7yxtf8tbmgkqr6m8rqwo",
            session_id: "kq5pzdn7ufgz3b8ykqj5yqfz6h",
        }),
    )
        .into_response()
}

/// The echo service: a fixed IntrospectToken answer.
#[derive(Debug)]
struct Echo {
    answer: pb::IntrospectTokenResponse,
}

impl Echo {
    fn new() -> Self {
        Self {
            answer: pb::IntrospectTokenResponse {
                active: true,
                user_id: "x9ad4wq3ibdx5rk6d6ew7sgqhc".to_owned(),
                token_id: "3hc1sj7yxtf8tbmgkqr6m8rqwo".to_owned(),
                session_id: "kq5pzdn7ufgz3b8ykqj5yqfz6h".to_owned(),
                kind: pb::TokenKind::PersonalAccessToken.into(),
                roles: vec![
                    "system_user".to_owned(),
                    "system_user_access_token".to_owned(),
                ],
                expires_at: None,
                username: "lg-user-42".to_owned(),
                is_bot: false,
                scopes: Vec::new(),
            },
        }
    }
}

/// The echo ext_authz service: a fixed allow with six identity headers, as token-service
/// answers for a personal access token.
#[derive(Debug)]
struct EchoAuthz {
    answer: CheckResponse,
}

impl EchoAuthz {
    fn new() -> Self {
        let header = |key: &str, value: &str| HeaderValueOption {
            header: Some(HeaderValue {
                key: key.to_owned(),
                value: value.to_owned(),
                raw_value: Vec::new(),
            }),
            append_action: 2,
            keep_empty_value: true,
            ..Default::default()
        };
        Self {
            answer: CheckResponse {
                status: Some(pb::envoy_ext_authz::google::rpc::Status::default()),
                dynamic_metadata: None,
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: vec![
                        header("x-auth-user-id", "x9ad4wq3ibdx5rk6d6ew7sgqhc"),
                        header("x-auth-username", "lg-user-42"),
                        header("x-auth-roles", "system_user system_user_access_token"),
                        header("x-auth-token-type", "user_access_token"),
                        header("x-auth-token-id", "3hc1sj7yxtf8tbmgkqr6m8rqwo"),
                        header("x-auth-session-id", "kq5pzdn7ufgz3b8ykqj5yqfz6h"),
                    ],
                    ..Default::default()
                })),
            },
        }
    }
}

#[tonic::async_trait]
impl Authorization for EchoAuthz {
    async fn check(
        &self,
        _request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(self.answer.clone()))
    }
}

type Stream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WatchRevocationsResponse, Status>> + Send>>;

type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send>>;

fn only_introspect() -> Status {
    Status::unimplemented("the echo baseline answers IntrospectToken only")
}

/// Implements `TokenService` for `Echo`: IntrospectToken answers, the listed RPCs do not.
macro_rules! echo_service {
    ($($method:ident($request:ident) -> $response:ident;)*) => {
        #[tonic::async_trait]
        impl TokenService for Echo {
            type WatchRevocationsStream = Stream;
            type WatchEventsStream = EventStream;

            async fn introspect_token(
                &self,
                _request: Request<pb::IntrospectTokenRequest>,
            ) -> Result<Response<pb::IntrospectTokenResponse>, Status> {
                Ok(Response::new(self.answer.clone()))
            }

            async fn watch_revocations(
                &self,
                _request: Request<pb::WatchRevocationsRequest>,
            ) -> Result<Response<Stream>, Status> {
                Err(only_introspect())
            }

            async fn watch_events(
                &self,
                _request: Request<pb::WatchEventsRequest>,
            ) -> Result<Response<EventStream>, Status> {
                Err(only_introspect())
            }

            $(
                async fn $method(
                    &self,
                    _request: Request<pb::$request>,
                ) -> Result<Response<pb::$response>, Status> {
                    Err(only_introspect())
                }
            )*
        }
    };
}

echo_service! {
    create_user_access_token(CreateUserAccessTokenRequest) -> CreateUserAccessTokenResponse;
    get_user_access_tokens_for_user(GetUserAccessTokensForUserRequest)
        -> GetUserAccessTokensForUserResponse;
    get_user_access_tokens(GetUserAccessTokensRequest) -> GetUserAccessTokensResponse;
    search_user_access_tokens(SearchUserAccessTokensRequest) -> SearchUserAccessTokensResponse;
    count_non_compliant_user_access_tokens(CountNonCompliantUserAccessTokensRequest)
        -> CountNonCompliantUserAccessTokensResponse;
    revoke_non_compliant_user_access_tokens(RevokeNonCompliantUserAccessTokensRequest)
        -> RevokeNonCompliantUserAccessTokensResponse;
    get_user_access_token(GetUserAccessTokenRequest) -> GetUserAccessTokenResponse;
    revoke_user_access_token(RevokeUserAccessTokenRequest) -> RevokeUserAccessTokenResponse;
    disable_user_access_token(DisableUserAccessTokenRequest) -> DisableUserAccessTokenResponse;
    enable_user_access_token(EnableUserAccessTokenRequest) -> EnableUserAccessTokenResponse;
    rotate_user_access_token(RotateUserAccessTokenRequest) -> RotateUserAccessTokenResponse;
    report_leaked_tokens(ReportLeakedTokensRequest) -> ReportLeakedTokensResponse;
    get_sessions(GetSessionsRequest) -> GetSessionsResponse;
    revoke_session(RevokeSessionRequest) -> RevokeSessionResponse;
    revoke_all_sessions(RevokeAllSessionsRequest) -> RevokeAllSessionsResponse;
    revoke_sessions_from_all_users(RevokeSessionsFromAllUsersRequest)
        -> RevokeSessionsFromAllUsersResponse;
    regen_command_token(RegenCommandTokenRequest) -> RegenCommandTokenResponse;
    create_command(CreateCommandRequest) -> CreateCommandResponse;
    verify_command_token(VerifyCommandTokenRequest) -> VerifyCommandTokenResponse;
    add_team_member(AddTeamMemberRequest) -> AddTeamMemberResponse;
    get_webrtc_token(GetWebrtcTokenRequest) -> GetWebrtcTokenResponse;
    create_session(CreateSessionRequest) -> CreateSessionResponse;
    get_me(GetMeRequest) -> GetMeResponse;
    get_user(GetUserRequest) -> GetUserResponse;
    get_user_by_username(GetUserByUsernameRequest) -> GetUserByUsernameResponse;
    logout(LogoutRequest) -> LogoutResponse;
    create_user(CreateUserRequest) -> CreateUserResponse;
    update_user_roles(UpdateUserRolesRequest) -> UpdateUserRolesResponse;
    update_user_active(UpdateUserActiveRequest) -> UpdateUserActiveResponse;
    create_webhook(CreateWebhookRequest) -> CreateWebhookResponse;
    list_webhooks(ListWebhooksRequest) -> ListWebhooksResponse;
    get_webhook(GetWebhookRequest) -> GetWebhookResponse;
    update_webhook(UpdateWebhookRequest) -> UpdateWebhookResponse;
    delete_webhook(DeleteWebhookRequest) -> DeleteWebhookResponse;
    rotate_webhook_secret(RotateWebhookSecretRequest) -> RotateWebhookSecretResponse;
    test_webhook(TestWebhookRequest) -> TestWebhookResponse;
    list_audit_records(ListAuditRecordsRequest) -> ListAuditRecordsResponse;
    compute_audit_hash(ComputeAuditHashRequest) -> ComputeAuditHashResponse;
    identify_token(IdentifyTokenRequest) -> IdentifyTokenResponse;
    verify_audit_log(VerifyAuditLogRequest) -> VerifyAuditLogResponse;
}
