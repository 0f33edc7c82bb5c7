//! The `admin` day-2 commands as a gRPC client of the local operator socket: when a server
//! answers on it, the commands reach that server (its cache and revocation feed hear them at
//! once); otherwise the same TokenService runs in this process on the database, as the same
//! local operator. Either way every rule is the domain's; this only converts to JSON.

use std::path::Path;

use serde_json::{Value, json};
use tonic::transport::Channel;

use super::{TokenServiceApi, convert};
use crate::{
    admin::{NotSetUp, Output},
    cli::{AdminAction, AuditArgs, NonCompliantAction, WebhookAction},
    config::Config,
    domain::Context,
    pb::{self, token_service_client::TokenServiceClient},
    server::{ServerError, open_context},
};

/// Where an operator call goes: the running server's local socket, or TokenService in this
/// process on the database (as the same local operator) when no server answers.
enum Operator {
    Socket(TokenServiceClient<Channel>),
    InProcess {
        api: Box<TokenServiceApi>,
        ctx: Context,
        _shutdown: tokio::sync::watch::Sender<bool>,
    },
}

/// Calls `$method` on whichever [`Operator`] there is; the answer's message or the status.
macro_rules! call {
    ($op:expr, $method:ident, $request:expr) => {
        match $op {
            Operator::Socket(client) => client
                .clone()
                .$method(tonic::Request::new($request))
                .await
                .map(tonic::Response::into_inner),
            Operator::InProcess { api, .. } => {
                use crate::pb::token_service_server::TokenService as _;
                api.$method(tonic::Request::new($request))
                    .await
                    .map(tonic::Response::into_inner)
            }
        }
    };
}

/// How long `admin` waits for the local socket to accept before using the database.
const SOCKET_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Connects to the running server's local socket at `path`; `None` when nothing answers.
/// Connects to the running server's local socket at `path`: `Ok(None)` when no server
/// answers there (no socket, or a stale one), an error when one may run but this user cannot
/// open its socket (the database would not hear the command at once either).
async fn connect_local_socket(path: &Path) -> Result<Option<TokenServiceClient<Channel>>, String> {
    if !path.exists() {
        return Ok(None);
    }
    match tokio::net::UnixStream::connect(path).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(format!(
                "cannot open the local socket {}: {e}; run admin as the service's user (or \
                 root)",
                path.display()
            ));
        }
        Err(_) => return Ok(None),
    }
    let target = path.to_owned();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_timeout(SOCKET_CONNECT_TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let target = target.clone();
            async move {
                tokio::net::UnixStream::connect(target)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await
        .map_err(|e| {
            format!(
                "cannot talk gRPC on the local socket {}: {e}",
                path.display()
            )
        })?;
    Ok(Some(TokenServiceClient::new(channel)))
}

async fn operator(config: &Config) -> Result<Operator, ServerError> {
    if let Some(path) = config.local_socket_path()
        && let Some(client) = connect_local_socket(&path).await?
    {
        eprintln!(
            "token-service: via the running server's local socket {}",
            path.display()
        );
        return Ok(Operator::Socket(client));
    }
    config.require_existing_state().map_err(NotSetUp)?;
    let ctx = open_context(config).await?;
    let (shutdown, watch) = tokio::sync::watch::channel(false);
    Ok(Operator::InProcess {
        api: Box::new(TokenServiceApi::local(ctx.clone(), watch)),
        ctx,
        _shutdown: shutdown,
    })
}

/// A failed call, for the operator: the status message and its stable reason.
fn status_text(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    let reason = status
        .get_error_details()
        .error_info()
        .map(|info| format!(" [{}]", info.reason))
        .unwrap_or_default();
    format!("{:?}: {}{reason}", status.code(), status.message())
}

fn millis(t: Option<prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

fn webhook_json(w: Option<pb::Webhook>) -> Value {
    let Some(w) = w else { return Value::Null };
    let filter = w.filter.unwrap_or_default();
    let d = w.delivery.unwrap_or_default();
    json!({
        "id": w.id,
        "url": w.url,
        "description": w.description,
        "filter": {"actions": filter.actions, "user_id": filter.user_id},
        "enabled": w.enabled,
        "disabled_reason": w.disabled_reason,
        "previous_secret_expires_at": millis(w.previous_secret_expires_at),
        "delivery": {
            "delivered_through": d.delivered_through,
            "attempts": d.attempts,
            "next_attempt_at": millis(d.next_attempt_at),
            "failing_since": millis(d.failing_since),
            "last_error": d.last_error,
            "last_attempt_at": millis(d.last_attempt_at),
            "last_success_at": millis(d.last_success_at),
        },
        "create_at": millis(w.create_at),
        "update_at": millis(w.update_at),
    })
}

async fn run_webhook_call(op: &Operator, action: &WebhookAction) -> Result<Value, String> {
    let failed = |status: tonic::Status| status_text(&status);
    Ok(match action {
        WebhookAction::List => {
            let r = call!(op, list_webhooks, pb::ListWebhooksRequest {}).map_err(failed)?;
            Value::Array(
                r.webhooks
                    .into_iter()
                    .map(|w| webhook_json(Some(w)))
                    .collect(),
            )
        }
        WebhookAction::Get { webhook_id } => webhook_json(
            call!(
                op,
                get_webhook,
                pb::GetWebhookRequest {
                    webhook_id: webhook_id.clone()
                }
            )
            .map_err(failed)?
            .webhook,
        ),
        WebhookAction::Create {
            url,
            description,
            actions,
            user_id,
        } => {
            let r = call!(
                op,
                create_webhook,
                pb::CreateWebhookRequest {
                    url: url.clone(),
                    description: description.clone(),
                    filter: Some(pb::WebhookFilter {
                        actions: actions.clone(),
                        user_id: user_id.clone(),
                    }),
                }
            )
            .map_err(failed)?;
            json!({"webhook": webhook_json(r.webhook), "secret": r.secret})
        }
        WebhookAction::Update {
            webhook_id,
            url,
            description,
            actions,
            all_actions,
            user_id,
            enable,
            disable,
        } => {
            let filter = (!actions.is_empty() || *all_actions).then(|| pb::WebhookFilter {
                actions: actions.clone(),
                user_id: user_id.clone().unwrap_or_default(),
            });
            if filter.is_none() && user_id.is_some() {
                return Err(
                    "--user-id: give it with --action or --all-actions (it replaces the filter)"
                        .into(),
                );
            }
            let enabled = if *enable {
                Some(true)
            } else if *disable {
                Some(false)
            } else {
                None
            };
            webhook_json(
                call!(
                    op,
                    update_webhook,
                    pb::UpdateWebhookRequest {
                        webhook_id: webhook_id.clone(),
                        url: url.clone(),
                        description: description.clone(),
                        filter,
                        enabled,
                    }
                )
                .map_err(failed)?
                .webhook,
            )
        }
        WebhookAction::Delete { webhook_id } => {
            call!(
                op,
                delete_webhook,
                pb::DeleteWebhookRequest {
                    webhook_id: webhook_id.clone()
                }
            )
            .map_err(failed)?;
            json!({"status": "OK"})
        }
        WebhookAction::RotateSecret { webhook_id, grace } => {
            let r = call!(
                op,
                rotate_webhook_secret,
                pb::RotateWebhookSecretRequest {
                    webhook_id: webhook_id.clone(),
                    grace_period: Some(prost_types::Duration {
                        seconds: i64::try_from(grace / 1000).unwrap_or(i64::MAX),
                        nanos: i32::try_from(grace % 1000).unwrap_or(0) * 1_000_000,
                    }),
                }
            )
            .map_err(failed)?;
            json!({"webhook": webhook_json(r.webhook), "secret": r.secret})
        }
        WebhookAction::Test { webhook_id } => {
            let r = call!(
                op,
                test_webhook,
                pb::TestWebhookRequest {
                    webhook_id: webhook_id.clone()
                }
            )
            .map_err(failed)?;
            let elapsed = r
                .elapsed
                .map_or(0, |d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000);
            json!({
                "delivered": r.delivered,
                "http_status": r.http_status,
                "error": r.error,
                "message_id": r.message_id,
                "elapsed_ms": elapsed,
            })
        }
    })
}

fn token_json(t: pb::UserAccessToken) -> Value {
    json!({
        "id": t.id,
        "user_id": t.user_id,
        "description": t.description,
        "is_active": t.is_active,
        "expires_at": millis(t.expires_at),
        "create_at": millis(t.create_at),
    })
}

fn session_json(s: pb::Session) -> Value {
    json!({
        "id": s.id,
        "user_id": s.user_id,
        "create_at": millis(s.create_at),
        "expires_at": millis(s.expires_at),
        "last_activity_at": millis(s.last_activity_at),
        "device_id": s.device_id,
        "roles": s.roles.join(" "),
        "is_oauth": s.is_oauth,
        "props": s.props,
    })
}

fn user_json(u: Option<pb::User>) -> Value {
    let u = u.unwrap_or_default();
    json!({
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "roles": u.roles.join(" "),
        "is_bot": u.is_bot,
        "bot_owner_id": u.bot_owner_id,
        "create_at": millis(u.create_at),
        "update_at": millis(u.update_at),
        "delete_at": millis(u.delete_at),
    })
}

/// Resolves `--user NAME_OR_ID` through the same operator: an id first, then a username.
async fn user_id_of(op: &Operator, user: &str) -> Result<String, String> {
    let is_id = user.len() == 26 && user.bytes().all(|b| b.is_ascii_alphanumeric());
    if is_id {
        match call!(
            op,
            get_user,
            pb::GetUserRequest {
                user_id: user.to_owned()
            }
        ) {
            Ok(found) => return Ok(found.user.unwrap_or_default().id),
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => return Err(format!("{user}: {}", status_text(&status))),
        }
    }
    call!(
        op,
        get_user_by_username,
        pb::GetUserByUsernameRequest {
            username: user.to_owned()
        }
    )
    .map(|found| found.user.unwrap_or_default().id)
    .map_err(|status| format!("{user}: {}", status_text(&status)))
}

const OK: fn() -> Value = || json!({"status": "OK"});

/// Runs a day-2 `admin` command through the running server's local socket, or on the
/// database when no server answers there.
pub(crate) async fn run(config: &Config, action: &AdminAction) -> Result<Output, ServerError> {
    let op = operator(config).await?;
    let result = run_operator_call(&op, action).await;
    if let Operator::InProcess { ctx, .. } = &op {
        ctx.store().clone().close().await;
    }
    result.map_err(Into::into)
}

async fn run_operator_call(op: &Operator, action: &AdminAction) -> Result<Output, String> {
    let failed = |status: tonic::Status| status_text(&status);
    Ok(Output::Json(match action {
        AdminAction::ListTokens {
            user,
            page,
            per_page,
        } => {
            let tokens = match user {
                Some(user) => {
                    let user_id = user_id_of(op, user)
                        .await
                        .map_err(|e| format!("--user {e}"))?;
                    call!(
                        op,
                        get_user_access_tokens_for_user,
                        pb::GetUserAccessTokensForUserRequest {
                            user_id,
                            page: Some(*page),
                            per_page: Some(*per_page),
                            ..Default::default()
                        }
                    )
                    .map_err(failed)?
                    .user_access_tokens
                }
                None => {
                    call!(
                        op,
                        get_user_access_tokens,
                        pb::GetUserAccessTokensRequest {
                            page: Some(*page),
                            per_page: Some(*per_page),
                            ..Default::default()
                        }
                    )
                    .map_err(failed)?
                    .user_access_tokens
                }
            };
            Value::Array(tokens.into_iter().map(token_json).collect())
        }
        AdminAction::GetToken { token_id } => token_json(
            call!(
                op,
                get_user_access_token,
                pb::GetUserAccessTokenRequest {
                    token_id: token_id.clone()
                }
            )
            .map_err(failed)?
            .user_access_token
            .unwrap_or_default(),
        ),
        AdminAction::SearchTokens { term } => Value::Array(
            call!(
                op,
                search_user_access_tokens,
                pb::SearchUserAccessTokensRequest { term: term.clone() }
            )
            .map_err(failed)?
            .user_access_tokens
            .into_iter()
            .map(token_json)
            .collect(),
        ),
        AdminAction::RevokeToken { token_id } => {
            call!(
                op,
                revoke_user_access_token,
                pb::RevokeUserAccessTokenRequest {
                    token_id: token_id.clone()
                }
            )
            .map_err(failed)?;
            OK()
        }
        AdminAction::RotateToken {
            token_id,
            expires_in_days,
            grace,
        } => {
            let expires_at = expires_in_days.map(|days| {
                let ms = chrono::Utc::now().timestamp_millis() + i64::from(days) * 86_400_000;
                prost_types::Timestamp {
                    seconds: ms.div_euclid(1000),
                    nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
                }
            });
            let r = call!(
                op,
                rotate_user_access_token,
                pb::RotateUserAccessTokenRequest {
                    token_id: token_id.clone(),
                    expires_at,
                    grace_period: Some(prost_types::Duration {
                        seconds: i64::try_from(grace / 1000).unwrap_or(i64::MAX),
                        nanos: i32::try_from(grace % 1000).unwrap_or(0) * 1_000_000,
                    }),
                }
            )
            .map_err(failed)?;
            json!({
                "user_access_token": r.user_access_token.map(token_json),
                "token": r.token,
            })
        }
        AdminAction::DisableToken { token_id } => {
            call!(
                op,
                disable_user_access_token,
                pb::DisableUserAccessTokenRequest {
                    token_id: token_id.clone()
                }
            )
            .map_err(failed)?;
            OK()
        }
        AdminAction::EnableToken { token_id } => {
            call!(
                op,
                enable_user_access_token,
                pb::EnableUserAccessTokenRequest {
                    token_id: token_id.clone()
                }
            )
            .map_err(failed)?;
            OK()
        }
        AdminAction::ListSessions { user } => {
            let user_id = user_id_of(op, user)
                .await
                .map_err(|e| format!("--user {e}"))?;
            Value::Array(
                call!(op, get_sessions, pb::GetSessionsRequest { user_id })
                    .map_err(failed)?
                    .sessions
                    .into_iter()
                    .map(session_json)
                    .collect(),
            )
        }
        AdminAction::RevokeSessions { user, session, .. } => {
            let user_id = user_id_of(op, user)
                .await
                .map_err(|e| format!("--user {e}"))?;
            match session {
                Some(session_id) => {
                    call!(
                        op,
                        revoke_session,
                        pb::RevokeSessionRequest {
                            user_id,
                            session_id: session_id.clone(),
                        }
                    )
                    .map_err(failed)?;
                }
                None => {
                    call!(
                        op,
                        revoke_all_sessions,
                        pb::RevokeAllSessionsRequest { user_id }
                    )
                    .map_err(failed)?;
                }
            }
            OK()
        }
        AdminAction::RevokeAllSessions { .. } => {
            call!(
                op,
                revoke_sessions_from_all_users,
                pb::RevokeSessionsFromAllUsersRequest {}
            )
            .map_err(failed)?;
            OK()
        }
        AdminAction::DeactivateUser { user } | AdminAction::ReactivateUser { user } => {
            let active = matches!(action, AdminAction::ReactivateUser { .. });
            let user_id = user_id_of(op, user).await?;
            user_json(
                call!(
                    op,
                    update_user_active,
                    pb::UpdateUserActiveRequest { user_id, active }
                )
                .map_err(failed)?
                .user,
            )
        }
        AdminAction::SetRoles { user, roles } => {
            let user_id = user_id_of(op, user).await?;
            user_json(
                call!(
                    op,
                    update_user_roles,
                    pb::UpdateUserRolesRequest {
                        user_id,
                        roles: roles.split_whitespace().map(str::to_owned).collect(),
                    }
                )
                .map_err(failed)?
                .user,
            )
        }
        AdminAction::Webhooks { action } => run_webhook_call(op, action).await?,
        AdminAction::NonCompliantTokens { action } => match action {
            NonCompliantAction::Count => {
                let r = call!(
                    op,
                    count_non_compliant_user_access_tokens,
                    pb::CountNonCompliantUserAccessTokensRequest {}
                )
                .map_err(failed)?;
                json!({"count": r.count})
            }
            NonCompliantAction::Revoke { .. } => {
                let r = call!(
                    op,
                    revoke_non_compliant_user_access_tokens,
                    pb::RevokeNonCompliantUserAccessTokensRequest {}
                )
                .map_err(failed)?;
                json!({"count": r.count, "complete": r.complete})
            }
        },
        AdminAction::Introspect => {
            let token = read_stdin("the token")?;
            if token.is_empty() {
                return Err("introspect: write the token on standard input".into());
            }
            let r = call!(op, introspect_token, pb::IntrospectTokenRequest { token })
                .map_err(failed)?;
            json!({
                "active": r.active,
                "user_id": r.user_id,
                "token_id": r.token_id,
                "session_id": r.session_id,
                "kind": pb::TokenKind::try_from(r.kind).map_or("", |k| k.as_str_name()),
                "roles": r.roles.join(" "),
                "expires_at": millis(r.expires_at),
                "username": r.username,
                "is_bot": r.is_bot,
            })
        }
        AdminAction::Audit(args) => return audit(op, args).await,
        AdminAction::AuditHash => {
            let credential = read_stdin("the credential")?;
            if credential.is_empty() {
                return Err("audit-hash: write the credential's value on standard input".into());
            }
            let r = call!(
                op,
                compute_audit_hash,
                pb::ComputeAuditHashRequest { credential }
            )
            .map_err(failed)?;
            json!({"credential_hmac": r.credential_hmac})
        }
        AdminAction::RevokeByValue { url } => {
            let text = read_stdin("the tokens")?;
            let tokens: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            if tokens.is_empty() {
                return Err(
                    "revoke-by-value: write the tokens on standard input, one per line".into(),
                );
            }
            let mut received = 0;
            for chunk in tokens.chunks(crate::domain::leaks::MAX_REPORTED_TOKENS) {
                let r = call!(
                    op,
                    report_leaked_tokens,
                    pb::ReportLeakedTokensRequest {
                        tokens: chunk.to_vec(),
                        url: url.clone().unwrap_or_default(),
                    }
                )
                .map_err(failed)?;
                received += r.received;
            }
            json!({"received": received})
        }
        AdminAction::IdentifyToken => {
            let token = read_stdin("the token")?;
            if token.is_empty() {
                return Err("identify-token: write the token's value on standard input".into());
            }
            let r =
                call!(op, identify_token, pb::IdentifyTokenRequest { token }).map_err(failed)?;
            let name = |s: &str, prefix: &str| s.trim_start_matches(prefix).to_ascii_lowercase();
            json!({
                "shape": name(r.shape().as_str_name(), "TOKEN_SHAPE_"),
                "kind": match r.kind() {
                    pb::TokenKind::PersonalAccessToken => "user_access_token",
                    pb::TokenKind::Session => "session",
                    pb::TokenKind::Unspecified => "",
                },
                "state": name(r.state().as_str_name(), "CREDENTIAL_STATE_"),
                "user_access_token": r.user_access_token.map(token_json),
                "session": r.session.map(session_json),
                "owner": user_json(r.owner),
                "credential_hmac": r.credential_hmac,
                "records": r
                    .records
                    .into_iter()
                    .map(|record| crate::domain::audit::record_json(&convert::stored_record(record)))
                    .collect::<Vec<_>>(),
            })
        }
        AdminAction::VerifyAudit => return verify_audit(op).await,
        AdminAction::Init
        | AdminAction::CreateUser { .. }
        | AdminAction::AddTeamMember { .. }
        | AdminAction::CreateToken { .. } => {
            return Err("not an operator call".into());
        }
    }))
}

/// Standard input, trimmed (a secret is read there, never from the command line).
fn read_stdin(what: &str) -> Result<String, String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|e| format!("cannot read {what} from standard input: {e}"))?;
    Ok(text.trim().to_owned())
}

/// A time given as Unix milliseconds or RFC 3339.
fn timestamp_arg(flag: &str, value: &str) -> Result<prost_types::Timestamp, String> {
    let ms = match value.parse::<i64>() {
        Ok(ms) => ms,
        Err(_) => chrono::DateTime::parse_from_rfc3339(value)
            .map_err(|_| {
                format!(
                    "{flag} {value:?}: expected Unix milliseconds or an RFC 3339 time \
                     (2026-12-01T00:00:00Z)"
                )
            })?
            .timestamp_millis(),
    };
    Ok(prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    })
}

/// `--user` and `--actor`: an id as it is (records outlive nothing: users are never
/// deleted, but an id needs no lookup), a username through the operator.
async fn id_or_username(op: &Operator, value: &str) -> Result<String, String> {
    if value.len() == 26 && value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(value.to_owned())
    } else {
        user_id_of(op, value).await
    }
}

/// Records per ListAuditRecords call of `admin audit`.
const AUDIT_PAGE_SIZE: i32 = 200;

/// `admin audit`: every record that passes the filters, as JSON lines written page by page
/// (`audit::record_json`, the REST listing's shape), up to `--limit`.
async fn audit(op: &Operator, args: &AuditArgs) -> Result<Output, String> {
    use std::io::Write as _;
    let failed = |status: tonic::Status| status_text(&status);
    let (actor_type, actor_id) = match args.actor.as_deref() {
        None => (String::new(), String::new()),
        Some(kind @ ("operator" | "service" | "unknown")) => (kind.to_owned(), String::new()),
        Some(user) => (
            "user".to_owned(),
            id_or_username(op, user)
                .await
                .map_err(|e| format!("--actor {e}"))?,
        ),
    };
    let user_id = match &args.user {
        Some(user) => id_or_username(op, user)
            .await
            .map_err(|e| format!("--user {e}"))?,
        None => String::new(),
    };
    let credential_hmac = if args.credential_stdin {
        let credential = read_stdin("the credential")?;
        if credential.is_empty() {
            return Err(
                "--credential-stdin: write the credential's value on standard input".into(),
            );
        }
        call!(
            op,
            compute_audit_hash,
            pb::ComputeAuditHashRequest { credential }
        )
        .map_err(failed)?
        .credential_hmac
    } else {
        args.credential_hmac.clone().unwrap_or_default()
    };
    let mut request = pb::ListAuditRecordsRequest {
        since: args
            .since
            .as_deref()
            .map(|v| timestamp_arg("--since", v))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|v| timestamp_arg("--until", v))
            .transpose()?,
        actions: args
            .actions
            .iter()
            .flat_map(|a| a.split(','))
            .filter(|a| !a.trim().is_empty())
            .map(|a| a.trim().to_owned())
            .collect(),
        actor_type,
        actor_id,
        user_id,
        token_id: args.token.clone().unwrap_or_default(),
        session_id: args.session.clone().unwrap_or_default(),
        command_id: args.command.clone().unwrap_or_default(),
        ip: args.ip.clone().unwrap_or_default(),
        request_id: args.request_id.clone().unwrap_or_default(),
        credential_hmac,
        page_size: Some(AUDIT_PAGE_SIZE),
        page_token: String::new(),
        oldest_first: args.oldest_first,
    };
    let mut left = args.limit.unwrap_or(u64::MAX);
    let mut out = std::io::stdout().lock();
    while left > 0 {
        let page = call!(op, list_audit_records, request.clone()).map_err(failed)?;
        for record in page.records {
            if left == 0 {
                break;
            }
            let line = crate::domain::audit::record_json(&convert::stored_record(record));
            // A closed pipe (`| head`) ends the listing quietly.
            if writeln!(out, "{line}").is_err() {
                return Ok(Output::Printed);
            }
            left -= 1;
        }
        let _ = out.flush();
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    Ok(Output::Printed)
}

/// `admin verify-audit`: VerifyAuditLog until the walk reaches the newest record; one JSON
/// summary, and an error (exit 1) naming the first broken link.
async fn verify_audit(op: &Operator) -> Result<Output, String> {
    let mut request = pb::VerifyAuditLogRequest::default();
    let mut verified = 0;
    let mut first_id = 0;
    let mut unknown: std::collections::BTreeMap<String, i64> = Default::default();
    loop {
        let r = call!(op, verify_audit_log, request).map_err(|s| status_text(&s))?;
        verified += r.verified;
        if first_id == 0 {
            first_id = r.first_id;
        }
        for (action, n) in &r.unknown_actions {
            *unknown.entry(action.clone()).or_default() += n;
        }
        if let Some(after) = r.resume_after.filter(|_| r.broken.is_none()) {
            request = pb::VerifyAuditLogRequest {
                after_id: Some(after),
                max_records: None,
            };
            continue;
        }
        let mut summary = json!({
            "status": if r.ok { "OK" } else { "broken" },
            "verified": verified,
            "first_id": first_id,
            "last_id": r.last_id,
            "chain_start": r.chain_start,
            "head_id": r.head_id,
            "head_hash": r.head_hash,
            "unknown_actions": unknown,
        });
        if !unknown.is_empty() {
            eprintln!(
                "token-service: verified records of actions this version does not know \
                 (written by a newer version; not tampering): {}",
                unknown
                    .iter()
                    .map(|(action, n)| format!("{action} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        return match r.broken {
            None => Ok(Output::Json(summary)),
            Some(broken) => {
                summary["broken"] = json!({
                    "record_id": broken.record_id,
                    "kind": broken.kind,
                    "expected": broken.expected,
                    "found": broken.found,
                    "description": broken.description,
                });
                println!("{summary}");
                Err(broken.description)
            }
        };
    }
}
