//! One function per `/api/v4` route: parse the request as Mattermost does, call the same
//! domain function the gRPC handler calls, and write Mattermost's response. No rule lives here.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, OriginalUri, Path, Request, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::Response,
};
use serde::de::DeserializeOwned;

use super::{
    RestState,
    auth::{Authenticated, MaybeAuthenticated},
    envelope::{self, json_answer, json_line},
    error::ApiError,
    go_compat,
    json::{
        AuditHashJson, AuditVerificationJson, AuditVerifyJson, CommandJson, IdentifyTokenJson,
        IntrospectJson, IntrospectionJson, LeakReportJson, NewCommandJson, NewSessionJson,
        NewTeamMemberJson, NewUserAccessTokenJson, NewUserJson, NewWebhookJson,
        RevocationEventJson, RotateUserAccessTokenJson, RotateWebhookSecretJson, STATUS_OK,
        SessionJson, TeamMemberJson, TokenSearchJson, TokenTrailJson, UserAccessTokenJson,
        UserJson, WebhookChangeJson, WebhookJson, WebhookTestJson, WebrtcJson,
    },
};
use crate::domain::{
    access_tokens::{self, TokenChange, TokenRef},
    audit::{self, AuditRequest, VerifyRequest},
    commands,
    error::{self as domain_error, Reason},
    events::{self, EventQuery},
    introspection, leaks,
    lifecycle::LifecycleRecord,
    model::roles_from_str,
    non_compliant,
    paging::ListPaging,
    revocations,
    rotation::{self, RotateUserAccessToken},
    sessions::{self, NewSession},
    token_trail, users, webhooks, webrtc,
};

type ApiResult = Result<Response, ApiError>;

/// The request body, read up to the configured limit (413 above it; 400 when it cannot be
/// read at all: malformed chunked framing, or a connection that broke mid-body).
pub(crate) struct Body(Bytes);

impl FromRequest<RestState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &RestState) -> Result<Self, ApiError> {
        axum::body::to_bytes(req.into_body(), state.max_body)
            .await
            .map(Body)
            .map_err(|e| {
                if over_the_limit(&e) {
                    ApiError::new(
                        Reason::BodyTooLarge,
                        "Request body is too large.",
                        format!("the limit is {} bytes", state.max_body),
                    )
                } else {
                    ApiError::new(
                        Reason::InvalidBodyParam,
                        "The request body could not be read.",
                        format!("body: {e}"),
                    )
                }
            })
    }
}

/// Whether reading a body failed because it was over the size limit (the limit's own error
/// among the causes), not because its bytes did not arrive or were malformed.
pub(crate) fn over_the_limit(error: &axum::Error) -> bool {
    let error: &(dyn std::error::Error + 'static) = error;
    std::iter::successors(Some(error), |cause| cause.source())
        .any(|cause| cause.is::<http_body_util::LengthLimitError>())
}

impl Body {
    /// Decodes the body into `T` as Go's `json.Decoder` decodes it into the Mattermost struct
    /// `T` mirrors (see [`go_compat::decode_struct`]); failures name `param`. The error is a
    /// domain error so that a handler can hand it to the domain, which reports it at the step
    /// where Mattermost decodes the body.
    fn decode<T: DeserializeOwned + Default>(
        &self,
        param: &'static str,
    ) -> domain_error::Result<T> {
        go_compat::decode_struct(&self.0, param)
    }

    /// Mattermost's `MapFromJSON`.
    fn string_map(&self) -> HashMap<String, String> {
        go_compat::string_map(&self.0)
    }
}

/// A path id as Mattermost's router matches it (`[A-Za-z0-9]+`). Anything else, including a
/// segment that does not decode, is the router's 404, answered before authentication since
/// no route matched. Length is checked by the domain (400 `invalid_url_param`). Must come
/// before [`Authenticated`] among a handler's extractors.
pub(crate) struct PathId(String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = Path::<String>::from_request_parts(parts, state).await.ok();
        match raw {
            Some(Path(id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                Ok(PathId(id))
            }
            _ => {
                let path = parts
                    .extensions
                    .get::<OriginalUri>()
                    .map_or_else(|| parts.uri.path(), |uri| uri.0.path());
                Err(ApiError::route_not_found(path))
            }
        }
    }
}

/// A path username as Mattermost's router matches it (`[A-Za-z0-9_.-]+`); anything else is
/// the router's 404, before authentication. The username rules are the domain's (400).
pub(crate) struct PathUsername(String);

impl<S: Send + Sync> FromRequestParts<S> for PathUsername {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = Path::<String>::from_request_parts(parts, state).await.ok();
        match raw {
            Some(Path(name))
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) =>
            {
                Ok(PathUsername(name))
            }
            _ => {
                let path = parts
                    .extensions
                    .get::<OriginalUri>()
                    .map_or_else(|| parts.uri.path(), |uri| uri.0.path());
                Err(ApiError::route_not_found(path))
            }
        }
    }
}

fn ok_json(value: impl serde::Serialize) -> ApiResult {
    json_answer(StatusCode::OK, &value)
}

fn status_ok() -> ApiResult {
    ok_json(STATUS_OK)
}

/// The response header of a token list carrying the next page token, when the request
/// asked for keyset paging (`page_token`): the JSON body stays Mattermost's.
pub(crate) const NEXT_PAGE_TOKEN: &str = "x-next-page-token";

/// `?page=&per_page=` with Mattermost's lenient parsing: Go's `Query().Get` reads the first
/// value of a repeated parameter, and anything unparsable falls back to the default.
#[derive(Debug, Default)]
pub(crate) struct Paging {
    page: Option<String>,
    per_page: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query();
        Ok(Paging {
            page: go_compat::query_get(query, "page"),
            per_page: go_compat::query_get(query, "per_page"),
        })
    }
}

/// Our own query parameters of the token lists and reads (not Mattermost's): `include=last_use`
/// adds the last-use keys to each token object (without it the body is Mattermost's, byte
/// for byte), and on the lists the filters `last_used_before`, `last_used_after`,
/// `expires_before` (Unix ms) and `state` (`active`, `disabled`, `expired`), and
/// `page_token` (keyset paging; the next one comes back in [`NEXT_PAGE_TOKEN`]). Parsed after
/// authentication: a bad value is a 400 naming the parameter.
#[derive(Debug, Default)]
pub(crate) struct TokenQuery {
    include: Option<String>,
    page_token: Option<String>,
    last_used_before: Option<String>,
    last_used_after: Option<String>,
    expires_before: Option<String>,
    state: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for TokenQuery {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query();
        let get = |name| go_compat::query_get(query, name);
        Ok(TokenQuery {
            include: get("include"),
            page_token: get("page_token"),
            last_used_before: get("last_used_before"),
            last_used_after: get("last_used_after"),
            expires_before: get("expires_before"),
            state: get("state"),
        })
    }
}

impl TokenQuery {
    /// Whether the caller asked for the last-use keys (`include=last_use`).
    fn last_use(&self) -> Result<bool, ApiError> {
        match self.include.as_deref() {
            None => Ok(false),
            Some("last_use") => Ok(true),
            Some(_) => Err(domain_error::Error::invalid(
                "include",
                Reason::InvalidUrlParam,
                "must be last_use",
            )
            .into()),
        }
    }

    /// The list's paging: Mattermost's `page`/`per_page`, or keyset paging when the client
    /// sent `page_token` (empty: the first page).
    fn paging(&self, paging: &Paging) -> Result<ListPaging, ApiError> {
        Ok(ListPaging::from_query(
            paging.page.as_deref(),
            paging.per_page.as_deref(),
            self.page_token.as_deref(),
        )?)
    }

    /// A token list's answer: Mattermost's body, byte for byte; the next page token in
    /// [`NEXT_PAGE_TOKEN`] (empty on the last page) only if the client sent `page_token`.
    fn list(&self, include: bool, page: access_tokens::TokenPage) -> ApiResult {
        let body = page
            .tokens
            .into_iter()
            .map(|t| TokenQuery::json(include, t))
            .collect::<Vec<_>>();
        let mut response = json_answer(StatusCode::OK, &body)?;
        if self.page_token.is_some() {
            let value =
                HeaderValue::from_str(&page.next_page_token).expect("page tokens are base64url");
            response.headers_mut().insert(NEXT_PAGE_TOKEN, value);
        }
        Ok(response)
    }

    /// The list filters.
    fn filter(&self) -> Result<access_tokens::TokenFilter, ApiError> {
        fn time(value: &Option<String>, field: &'static str) -> domain_error::Result<Option<i64>> {
            value
                .as_deref()
                .map(|v| {
                    v.parse::<i64>().map_err(|_| {
                        domain_error::Error::invalid(
                            field,
                            Reason::InvalidUrlParam,
                            "must be a Unix time in milliseconds",
                        )
                    })
                })
                .transpose()
        }
        let state = self
            .state
            .as_deref()
            .map(|s| access_tokens::TokenState::parse(s, "state"))
            .transpose()?;
        let filter = access_tokens::TokenFilter {
            last_used_before: time(&self.last_used_before, "last_used_before")?,
            last_used_after: time(&self.last_used_after, "last_used_after")?,
            expires_before: time(&self.expires_before, "expires_before")?,
            state,
        };
        filter.validate()?;
        Ok(filter)
    }

    /// A token as JSON, with the last-use keys if asked for.
    fn json(include: bool, token: crate::domain::model::UserAccessToken) -> UserAccessTokenJson {
        if include {
            UserAccessTokenJson::with_last_use(token)
        } else {
            UserAccessTokenJson::from(token)
        }
    }
}

pub(crate) async fn create_user_access_token(
    State(state): State<RestState>,
    PathId(user_id): PathId,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    // Mattermost reads the body after checking the user id and loading the user.
    let creation = access_tokens::token_creation(&state.ctx, &caller, &user_id).await?;
    let fields = body.decode::<NewUserAccessTokenJson>("user_access_token")?;
    let created = creation.create(&state.ctx, &caller, fields.into()).await?;
    let mut json = UserAccessTokenJson::from(created.token);
    json.token = Some(created.secret.expose().to_owned());
    json_line(StatusCode::OK, &json)
}

pub(crate) async fn get_user_access_tokens_for_user(
    State(state): State<RestState>,
    PathId(user_id): PathId,
    paging: Paging,
    query: TokenQuery,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let include = query.last_use()?;
    let filter = query.filter()?;
    let paging = query.paging(&paging)?;
    let page = access_tokens::get_user_access_tokens_for_user(
        &state.ctx, &caller, &user_id, &filter, &paging,
    )
    .await?;
    query.list(include, page)
}

pub(crate) async fn get_user_access_tokens(
    State(state): State<RestState>,
    paging: Paging,
    query: TokenQuery,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let include = query.last_use()?;
    let filter = query.filter()?;
    let paging = query.paging(&paging)?;
    let page = access_tokens::get_user_access_tokens(&state.ctx, &caller, &filter, &paging).await?;
    query.list(include, page)
}

pub(crate) async fn count_non_compliant_user_access_tokens(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let count = non_compliant::count_non_compliant_user_access_tokens(&state.ctx, &caller).await?;
    ok_json(serde_json::json!({ "count": count }))
}

pub(crate) async fn revoke_non_compliant_user_access_tokens(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let done = non_compliant::revoke_non_compliant_user_access_tokens(&state.ctx, &caller).await?;
    if !done.complete {
        // Mattermost answers a partial revoke with a 500 (and no count).
        return Err(domain_error::Error::FailedPrecondition {
            rule: format!(
                "{} tokens were revoked and the batch limit was reached; run it again",
                done.count
            ),
            reason: Reason::NonCompliantPartial,
        }
        .into());
    }
    ok_json(serde_json::json!({ "count": done.count }))
}

pub(crate) async fn search_user_access_tokens(
    State(state): State<RestState>,
    query: TokenQuery,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    // Mattermost reads the body after the permission check.
    let search = access_tokens::token_search(&state.ctx, &caller)?;
    let include = query.last_use()?;
    let body = body.decode::<TokenSearchJson>("user_access_token_search")?;
    let list = search.run(&state.ctx, &body.term).await?;
    ok_json(
        list.into_iter()
            .map(|t| TokenQuery::json(include, t))
            .collect::<Vec<_>>(),
    )
}

pub(crate) async fn get_user_access_token(
    State(state): State<RestState>,
    PathId(token_id): PathId,
    query: TokenQuery,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let include = query.last_use()?;
    let token = access_tokens::get_user_access_token(&state.ctx, &caller, &token_id).await?;
    json_line(StatusCode::OK, &TokenQuery::json(include, token))
}

pub(crate) async fn revoke_user_access_token(
    state: State<RestState>,
    caller: Authenticated,
    body: Body,
) -> ApiResult {
    change_user_access_token(state, caller, body, TokenChange::Revoke).await
}

pub(crate) async fn disable_user_access_token(
    state: State<RestState>,
    caller: Authenticated,
    body: Body,
) -> ApiResult {
    change_user_access_token(state, caller, body, TokenChange::Disable).await
}

pub(crate) async fn enable_user_access_token(
    state: State<RestState>,
    caller: Authenticated,
    body: Body,
) -> ApiResult {
    change_user_access_token(state, caller, body, TokenChange::Enable).await
}

/// Rotate: the body decoded first (400 `rotate_user_access_token` if it does not decode), an
/// empty `token_id` is 400, then the domain's checks in Mattermost's order. The answer is the
/// token with its new secret, as create's (JSON and a newline).
pub(crate) async fn rotate_user_access_token(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let body = body.decode::<RotateUserAccessTokenJson>("rotate_user_access_token")?;
    let request = RotateUserAccessToken {
        token: rotation::rest_token_ref(&body.token_id)?,
        expires_at: (body.expires_at != 0).then_some(body.expires_at),
        grace_period_ms: (body.grace_period != 0).then_some(body.grace_period),
    };
    let rotated = rotation::rotate_user_access_token(&state.ctx, &caller, request).await?;
    let mut json = UserAccessTokenJson::from(rotated.token);
    json.token = Some(rotated.secret.expose().to_owned());
    json_line(StatusCode::OK, &json)
}

/// Revoke, disable and enable: `{"token_id": ...}` read as Mattermost's `MapFromJSON` reads
/// it, any value accepted (one that is not an id is simply not found).
async fn change_user_access_token(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
    change: TokenChange,
) -> ApiResult {
    let token_id = body.string_map().remove("token_id").unwrap_or_default();
    let token = TokenRef::lenient(&token_id);
    access_tokens::change_user_access_token(&state.ctx, &caller, token, change).await?;
    status_ok()
}

pub(crate) async fn get_sessions(
    State(state): State<RestState>,
    PathId(user_id): PathId,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let (list, members) =
        sessions::get_sessions_with_team_members(&state.ctx, &caller, &user_id).await?;
    ok_json(
        list.into_iter()
            .map(|session| SessionJson::with_team_members(session, &members))
            .collect::<Vec<_>>(),
    )
}

pub(crate) async fn create_session(
    State(state): State<RestState>,
    PathId(user_id): PathId,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let body: NewSessionJson = body.decode("session")?;
    let created = sessions::create_session(
        &state.ctx,
        &caller,
        NewSession {
            user_id,
            lifetime_ms: body.lifetime_ms,
            device_id: body.device_id,
            props: body.props,
        },
    )
    .await?;
    let mut json = SessionJson::from(created.session);
    json.token = created.token.expose().to_owned();
    json_line(StatusCode::CREATED, &json)
}

pub(crate) async fn revoke_session(
    State(state): State<RestState>,
    PathId(user_id): PathId,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let session_id = body.string_map().remove("session_id").unwrap_or_default();
    sessions::revoke_session(&state.ctx, &caller, &user_id, &session_id).await?;
    status_ok()
}

pub(crate) async fn revoke_all_sessions(
    State(state): State<RestState>,
    PathId(user_id): PathId,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    sessions::revoke_all_sessions(&state.ctx, &caller, &user_id).await?;
    status_ok()
}

pub(crate) async fn revoke_sessions_from_all_users(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    sessions::revoke_sessions_from_all_users(&state.ctx, &caller).await?;
    status_ok()
}

pub(crate) async fn regen_command_token(
    State(state): State<RestState>,
    PathId(command_id): PathId,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let token = commands::regen_command_token(&state.ctx, &caller, &command_id).await?;
    let mut map = HashMap::new();
    map.insert("token", token.expose().to_owned());
    ok_json(map)
}

pub(crate) async fn create_command(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let command: NewCommandJson = body.decode("command")?;
    let created = commands::create_command(&state.ctx, &caller, command.into()).await?;
    let json = CommandJson::with_token(created.command, created.token.expose().to_owned());
    json_answer(StatusCode::CREATED, &json)
}

pub(crate) async fn verify_command_token(
    State(state): State<RestState>,
    PathId(command_id): PathId,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let token = body.string_map().remove("token").unwrap_or_default();
    let valid = commands::verify_command_token(&state.ctx, &caller, &command_id, &token).await?;
    ok_json(serde_json::json!({ "valid": valid }))
}

pub(crate) async fn add_team_member(
    State(state): State<RestState>,
    PathId(team_id): PathId,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let body: NewTeamMemberJson = body.decode("team_member")?;
    let member =
        commands::add_team_member(&state.ctx, &caller, &team_id, &body.user_id, &body.roles())
            .await?;
    json_answer(StatusCode::CREATED, &TeamMemberJson::from(member))
}

pub(crate) async fn get_webrtc_token(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let creds = webrtc::get_webrtc_token(&state.ctx, &caller)?;
    ok_json(WebrtcJson::from(creds))
}

pub(crate) async fn watch_revocations(
    State(state): State<RestState>,
    uri: OriginalUri,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let raw = go_compat::query_get(uri.0.query(), "after_event_id").unwrap_or_default();
    let after = if raw.is_empty() {
        0
    } else {
        raw.parse::<i64>()
            .map_err(|_| ApiError::invalid_url_param("after_event_id"))?
    };
    let events = revocations::revocations_after(&state.ctx, &caller, after).await?;
    ok_json(
        events
            .into_iter()
            .map(RevocationEventJson::from)
            .collect::<Vec<_>>(),
    )
}

pub(crate) async fn watch_events(
    State(state): State<RestState>,
    uri: OriginalUri,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let query = uri.0.query();
    let raw = go_compat::query_get(query, "after_event_id").unwrap_or_default();
    let after_event_id = if raw.is_empty() {
        None
    } else {
        Some(
            raw.parse::<i64>()
                .map_err(|_| ApiError::invalid_url_param("after_event_id"))?,
        )
    };
    // `actions=a&actions=b` and `actions=a,b` alike.
    let actions = go_compat::query_get_all(query, "actions")
        .iter()
        .flat_map(|value| value.split(','))
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    let user_id = go_compat::query_get(query, "user_id").unwrap_or_default();
    let event_query = EventQuery {
        after_event_id,
        actions,
        user_id,
    };
    let records = events::events_after(&state.ctx, &caller, &event_query).await?;
    ok_json(
        records
            .iter()
            .map(LifecycleRecord::to_json)
            .collect::<Vec<_>>(),
    )
}

pub(crate) async fn get_me(Authenticated(caller): Authenticated) -> ApiResult {
    let user = users::get_me(&caller)?;
    Ok(user_answer(StatusCode::OK, user))
}

/// A user's JSON answer, written by [`UserJson::write_json`].
fn user_answer(status: StatusCode, user: &crate::domain::model::User) -> Response {
    let mut body = envelope::answer_buffer();
    UserJson::from(user).write_json(&mut body);
    envelope::json_written(status, body)
}

pub(crate) async fn get_user(
    State(state): State<RestState>,
    PathId(user_id): PathId,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let user = users::get_user(&state.ctx, &caller, &user_id).await?;
    Ok(user_answer(StatusCode::OK, &user))
}

pub(crate) async fn get_user_by_username(
    State(state): State<RestState>,
    PathUsername(username): PathUsername,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let user = users::get_user_by_username(&state.ctx, &caller, &username).await?;
    Ok(user_answer(StatusCode::OK, &user))
}

/// What Go's `http.SetCookie` writes for the other two cookies of Mattermost's
/// `RemoveSessionCookie` (default subpath; only the session cookie is `HttpOnly`).
const CLEAR_USER_ID_COOKIE: &str = "MMUSERID=; Path=/; Max-Age=0";
const CLEAR_CSRF_COOKIE: &str = "MMCSRF=; Path=/; Max-Age=0";

/// Mattermost's logout (an `APIHandler`: a request without a valid credential is served
/// too): clears the session cookies, then ends the caller's session, if there is one.
pub(crate) async fn logout(
    State(state): State<RestState>,
    MaybeAuthenticated(caller): MaybeAuthenticated,
) -> ApiResult {
    let clear = [
        super::CLEAR_SESSION_COOKIE,
        CLEAR_USER_ID_COOKIE,
        CLEAR_CSRF_COOKIE,
    ]
    .map(|cookie| (header::SET_COOKIE, cookie));
    if let Some(caller) = caller {
        // Mattermost clears the cookies before it revokes, so even a failure (the database
        // is unreachable: 503) answers with the session cookie cleared.
        sessions::logout(&state.ctx, &caller)
            .await
            .map_err(|err| ApiError::from(err).clearing_session_cookie())?;
    }
    let mut response = json_answer(StatusCode::OK, &STATUS_OK)?;
    for (name, value) in clear {
        response
            .headers_mut()
            .append(name, axum::http::HeaderValue::from_static(value));
    }
    Ok(response)
}

pub(crate) async fn introspect_token(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let body: IntrospectJson = body.decode("token")?;
    let found = introspection::introspect_token(&state.ctx, &caller, &body.token).await?;
    ok_json(IntrospectionJson::from(found))
}

/// Revoke by value (an `APIHandler`: anyone may call it; a credential that does not
/// authenticate is ignored). 202: the report was taken, whatever the tokens were.
pub(crate) async fn report_leaked_tokens(
    State(state): State<RestState>,
    MaybeAuthenticated(caller): MaybeAuthenticated,
    body: Body,
) -> ApiResult {
    let body: LeakReportJson = body.decode("report")?;
    let receipt = leaks::report_leaked_tokens(
        &state.ctx,
        caller.as_ref(),
        leaks::LeakReport {
            tokens: body.tokens,
            url: body.url,
        },
    )
    .await?;
    json_answer(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "received": receipt.received }),
    )
}

pub(crate) async fn create_user(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let user: NewUserJson = body.decode("user")?;
    let user = users::create_user(&state.ctx, &caller, user.into()).await?;
    Ok(user_answer(StatusCode::CREATED, &user))
}

pub(crate) async fn update_user_roles(
    State(state): State<RestState>,
    PathId(user_id): PathId,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let roles = body.string_map().remove("roles").unwrap_or_default();
    users::update_user_roles(&state.ctx, &caller, &user_id, &roles_from_str(&roles)).await?;
    status_ok()
}

pub(crate) async fn update_user_active(
    State(state): State<RestState>,
    PathId(user_id): PathId,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    // Mattermost's StringInterfaceFromJSON, then `props["active"].(bool)`.
    let props = go_compat::value_map(&body.0);
    let Some(active) = props.get("active").and_then(serde_json::Value::as_bool) else {
        return Err(ApiError::invalid_body_param("active"));
    };
    users::update_user_active(&state.ctx, &caller, &user_id, active).await?;
    status_ok()
}

/// The body of a webhook route, decoded leniently (unknown keys ignored, `null` = absent);
/// an empty body is an empty object.
fn webhook_body<T: DeserializeOwned + Default>(
    body: &Body,
    param: &'static str,
) -> domain_error::Result<T> {
    if body.0.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    body.decode(param)
}

pub(crate) async fn create_webhook(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let request: NewWebhookJson = webhook_body(&body, "webhook")?;
    let created = webhooks::create_webhook(&state.ctx, &caller, request.into()).await?;
    let mut json = WebhookJson::from(created.webhook);
    json.secret = Some(created.secret.expose().to_owned());
    json_line(StatusCode::CREATED, &json)
}

pub(crate) async fn list_webhooks(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let list = webhooks::list_webhooks(&state.ctx, &caller).await?;
    ok_json(list.into_iter().map(WebhookJson::from).collect::<Vec<_>>())
}

pub(crate) async fn get_webhook(
    State(state): State<RestState>,
    PathId(webhook_id): PathId,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let webhook = webhooks::get_webhook(&state.ctx, &caller, &webhook_id).await?;
    ok_json(WebhookJson::from(webhook))
}

pub(crate) async fn update_webhook(
    State(state): State<RestState>,
    PathId(webhook_id): PathId,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let change: WebhookChangeJson = webhook_body(&body, "webhook")?;
    let webhook = webhooks::update_webhook(&state.ctx, &caller, &webhook_id, change.into()).await?;
    ok_json(WebhookJson::from(webhook))
}

pub(crate) async fn delete_webhook(
    State(state): State<RestState>,
    PathId(webhook_id): PathId,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    webhooks::delete_webhook(&state.ctx, &caller, &webhook_id).await?;
    status_ok()
}

pub(crate) async fn rotate_webhook_secret(
    State(state): State<RestState>,
    PathId(webhook_id): PathId,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let request: RotateWebhookSecretJson = webhook_body(&body, "rotation")?;
    let rotated =
        webhooks::rotate_webhook_secret(&state.ctx, &caller, &webhook_id, request.grace_period_ms)
            .await?;
    let mut json = WebhookJson::from(rotated.webhook);
    json.secret = Some(rotated.secret.expose().to_owned());
    ok_json(json)
}

pub(crate) async fn test_webhook(
    State(state): State<RestState>,
    PathId(webhook_id): PathId,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let result = webhooks::test_webhook(&state.ctx, &caller, &webhook_id).await?;
    ok_json(WebhookTestJson::from(result))
}

/// The query of `GET /tokens/audit_records`: every filter of [`AuditRequest`] under its own
/// name (`actions` repeated or comma-separated; times in Unix milliseconds; `oldest_first`
/// as Go's `strconv.ParseBool` reads it). A scalar given twice counts once (the first, as
/// Go's `Query().Get`); unknown parameters are ignored. A value of the wrong type is 400
/// naming the parameter.
fn audit_request(query: Option<&str>) -> domain_error::Result<AuditRequest> {
    let mut request = AuditRequest::default();
    let mut seen = std::collections::HashSet::new();
    let integer = |name: &'static str, value: &str, rule: &str| {
        value
            .parse::<i64>()
            .map_err(|_| domain_error::Error::invalid(name, Reason::InvalidUrlParam, rule))
    };
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name == "actions" {
            request.actions.extend(
                value
                    .split(',')
                    .filter(|a| !a.trim().is_empty())
                    .map(str::to_owned),
            );
            continue;
        }
        if !seen.insert(name.clone().into_owned()) {
            continue;
        }
        let value = value.into_owned();
        match name.as_ref() {
            "since" => {
                request.since = Some(integer(
                    "since",
                    &value,
                    "must be an integer (Unix milliseconds)",
                )?);
            }
            "until" => {
                request.until = Some(integer(
                    "until",
                    &value,
                    "must be an integer (Unix milliseconds)",
                )?);
            }
            "page_size" => {
                request.page_size = Some(integer("page_size", &value, "must be an integer")?)
            }
            "oldest_first" => {
                request.oldest_first = match value.as_str() {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                    _ => {
                        return Err(domain_error::Error::invalid(
                            "oldest_first",
                            Reason::InvalidUrlParam,
                            "must be true or false",
                        ));
                    }
                };
            }
            "actor_type" => request.actor_type = value,
            "actor_id" => request.actor_id = value,
            "user_id" => request.user_id = value,
            "token_id" => request.token_id = value,
            "session_id" => request.session_id = value,
            "command_id" => request.command_id = value,
            "ip" => request.ip = value,
            "request_id" => request.request_id = value,
            "credential_hmac" => request.credential_hmac = value,
            "page_token" => request.page_token = value,
            _ => {}
        }
    }
    Ok(request)
}

pub(crate) async fn list_audit_records(
    State(state): State<RestState>,
    uri: OriginalUri,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let request = audit_request(uri.0.query())?;
    let page = audit::list_audit_records(&state.ctx, &caller, &request).await?;
    ok_json(serde_json::json!({
        "records": page.records.iter().map(audit::record_json).collect::<Vec<_>>(),
        "next_page_token": page.next_page_token,
    }))
}

pub(crate) async fn compute_audit_hash(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let body: AuditHashJson = body.decode("credential")?;
    let credential_hmac = audit::compute_audit_hash(&state.ctx, &caller, &body.credential)?;
    ok_json(serde_json::json!({ "credential_hmac": credential_hmac }))
}

pub(crate) async fn identify_token(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let body: IdentifyTokenJson = body.decode("token")?;
    let trail = token_trail::identify_token(&state.ctx, &caller, &body.token).await?;
    ok_json(TokenTrailJson::from(&trail))
}

pub(crate) async fn verify_audit_log(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    // An empty body asks for the defaults.
    let body: AuditVerifyJson = if body.0.trim_ascii().is_empty() {
        AuditVerifyJson::default()
    } else {
        body.decode("verify_audit_log")?
    };
    let request = VerifyRequest {
        after_id: body.after_id,
        max_records: body.max_records,
    };
    let report = audit::verify_audit_log(&state.ctx, &caller, request).await?;
    ok_json(AuditVerificationJson::from(report))
}
