//! One function per `/api/v4` route: parse the request as Mattermost does, call the same
//! domain function the gRPC handler calls, and write Mattermost's response. No rule lives here.

use std::collections::HashMap;

use axum::{
    Json,
    body::Bytes,
    extract::{FromRequest, OriginalUri, Path, Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, de::DeserializeOwned};

use super::{
    RestState,
    auth::Authenticated,
    error::ApiError,
    json::{
        CommandJson, IntrospectionJson, NewCommandJson, RevocationEventJson, STATUS_OK,
        SessionJson, TeamMemberJson, UserAccessTokenJson, UserJson, WebrtcJson,
    },
};
use crate::domain::{
    access_tokens::{self, BodyIds, NewUserAccessToken},
    commands::{self, NewCommand},
    error::Reason,
    introspection,
    paging::PageRequest,
    revocations,
    sessions::{self, NewSession},
    users::{self, NewUser},
    webrtc,
};

type ApiResult = Result<Response, ApiError>;

/// The request body, read up to the configured limit (413 above it).
pub(crate) struct Body(Bytes);

impl FromRequest<RestState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &RestState) -> Result<Self, ApiError> {
        axum::body::to_bytes(req.into_body(), state.max_body)
            .await
            .map(Body)
            .map_err(|_| {
                ApiError::new(
                    Reason::BodyTooLarge,
                    "Request body is too large.",
                    format!("the limit is {} bytes", state.max_body),
                )
            })
    }
}

impl Body {
    /// Decodes a JSON object as Mattermost's `json.Decoder` would: `null` and unknown fields
    /// are fine, a wrong type or malformed JSON is 400 naming `param`.
    fn decode<T: DeserializeOwned + Default>(&self, param: &str) -> Result<T, ApiError> {
        match serde_json::from_slice::<Option<T>>(&self.0) {
            Ok(value) => Ok(value.unwrap_or_default()),
            Err(_) => Err(ApiError::invalid_body_param(param)),
        }
    }

    /// Mattermost's `MapFromJSON`: a string-to-string object, anything else an empty map.
    fn string_map(&self) -> HashMap<String, String> {
        serde_json::from_slice(&self.0).unwrap_or_default()
    }
}

/// A path id as Mattermost's router matches it (`[A-Za-z0-9]+`); anything else is the
/// router's 404. Length is checked by the domain (400 `invalid_url_param`).
fn path_id<'a>(raw: &'a str, uri: &OriginalUri) -> Result<&'a str, ApiError> {
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(raw)
    } else {
        Err(ApiError::route_not_found(uri.0.path()))
    }
}

/// JSON followed by a newline, as Mattermost's `json.Encoder` writes single objects.
fn json_line(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let mut body = serde_json::to_vec(value).expect("serializable");
    body.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn ok_json(value: impl serde::Serialize) -> ApiResult {
    Ok(Json(value).into_response())
}

fn status_ok() -> ApiResult {
    ok_json(STATUS_OK)
}

/// `?page=&per_page=` with Mattermost's lenient parsing: Go's `Query().Get` reads the first
/// value of a repeated parameter, and anything unparsable falls back to the default.
#[derive(Debug, Default)]
pub(crate) struct Paging {
    page: Option<String>,
    per_page: Option<String>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Paging {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query();
        Ok(Paging {
            page: first_query_value(query, "page"),
            per_page: first_query_value(query, "per_page"),
        })
    }
}

/// The first value of a query parameter, as Go's `URL.Query().Get` reads it.
fn first_query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

impl Paging {
    fn request(&self) -> PageRequest {
        PageRequest::from_query(self.page.as_deref(), self.per_page.as_deref())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CreateTokenBody {
    description: String,
    expires_at: i64,
}

pub(crate) async fn create_user_access_token(
    State(state): State<RestState>,
    uri: OriginalUri,
    Path(user_id): Path<String>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let user_id = path_id(&user_id, &uri)?;
    let body: CreateTokenBody = body.decode("user_access_token")?;
    let created = access_tokens::create_user_access_token(
        &state.ctx,
        &caller,
        NewUserAccessToken {
            user_id: user_id.to_owned(),
            description: body.description,
            expires_at: (body.expires_at != 0).then_some(body.expires_at),
        },
    )
    .await?;
    let mut json = UserAccessTokenJson::from(created.token);
    json.token = Some(created.secret.expose().to_owned());
    Ok(json_line(StatusCode::OK, &json))
}

pub(crate) async fn get_user_access_tokens_for_user(
    State(state): State<RestState>,
    uri: OriginalUri,
    Path(user_id): Path<String>,
    paging: Paging,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let user_id = path_id(&user_id, &uri)?;
    let list = access_tokens::get_user_access_tokens_for_user(
        &state.ctx,
        &caller,
        user_id,
        paging.request(),
    )
    .await?;
    ok_json(
        list.into_iter()
            .map(UserAccessTokenJson::from)
            .collect::<Vec<_>>(),
    )
}

pub(crate) async fn get_user_access_tokens(
    State(state): State<RestState>,
    paging: Paging,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let list = access_tokens::get_user_access_tokens(&state.ctx, &caller, paging.request()).await?;
    ok_json(
        list.into_iter()
            .map(UserAccessTokenJson::from)
            .collect::<Vec<_>>(),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SearchBody {
    term: String,
}

pub(crate) async fn search_user_access_tokens(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    // A malformed body is an empty term: the domain checks manage_system first, then refuses
    // the term, as Mattermost orders it.
    let term = body
        .decode::<SearchBody>("user_access_token_search")
        .map(|b| b.term)
        .unwrap_or_default();
    let list = access_tokens::search_user_access_tokens(&state.ctx, &caller, &term).await?;
    ok_json(
        list.into_iter()
            .map(UserAccessTokenJson::from)
            .collect::<Vec<_>>(),
    )
}

pub(crate) async fn get_user_access_token(
    State(state): State<RestState>,
    uri: OriginalUri,
    Path(token_id): Path<String>,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let token_id = path_id(&token_id, &uri)?;
    let token = access_tokens::get_user_access_token(&state.ctx, &caller, token_id).await?;
    Ok(json_line(StatusCode::OK, &UserAccessTokenJson::from(token)))
}

pub(crate) async fn revoke_user_access_token(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let token_id = body.string_map().remove("token_id").unwrap_or_default();
    access_tokens::revoke_user_access_token(
        &state.ctx,
        &caller,
        &token_id,
        BodyIds::MattermostLenient,
    )
    .await?;
    status_ok()
}

pub(crate) async fn disable_user_access_token(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let token_id = body.string_map().remove("token_id").unwrap_or_default();
    access_tokens::disable_user_access_token(
        &state.ctx,
        &caller,
        &token_id,
        BodyIds::MattermostLenient,
    )
    .await?;
    status_ok()
}

pub(crate) async fn enable_user_access_token(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let token_id = body.string_map().remove("token_id").unwrap_or_default();
    access_tokens::enable_user_access_token(
        &state.ctx,
        &caller,
        &token_id,
        BodyIds::MattermostLenient,
    )
    .await?;
    status_ok()
}

pub(crate) async fn get_sessions(
    State(state): State<RestState>,
    uri: OriginalUri,
    Path(user_id): Path<String>,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let user_id = path_id(&user_id, &uri)?;
    let (list, members) =
        sessions::get_sessions_with_team_members(&state.ctx, &caller, user_id).await?;
    ok_json(
        list.into_iter()
            .map(|session| SessionJson::with_team_members(session, &members))
            .collect::<Vec<_>>(),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CreateSessionBody {
    /// Milliseconds; absent: the configured session length; 0: never expires.
    lifetime_ms: Option<i64>,
    device_id: String,
    props: std::collections::BTreeMap<String, String>,
}

pub(crate) async fn create_session(
    State(state): State<RestState>,
    uri: OriginalUri,
    Path(user_id): Path<String>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let user_id = path_id(&user_id, &uri)?;
    let body: CreateSessionBody = body.decode("session")?;
    let created = sessions::create_session(
        &state.ctx,
        &caller,
        NewSession {
            user_id: user_id.to_owned(),
            lifetime_ms: body.lifetime_ms,
            device_id: body.device_id,
            props: body.props,
        },
    )
    .await?;
    let mut json = SessionJson::from(created.session);
    json.token = created.token.expose().to_owned();
    Ok(json_line(StatusCode::CREATED, &json))
}

pub(crate) async fn revoke_session(
    State(state): State<RestState>,
    uri: OriginalUri,
    Path(user_id): Path<String>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let user_id = path_id(&user_id, &uri)?;
    let session_id = body.string_map().remove("session_id").unwrap_or_default();
    sessions::revoke_session(&state.ctx, &caller, user_id, &session_id).await?;
    status_ok()
}

pub(crate) async fn revoke_all_sessions(
    State(state): State<RestState>,
    uri: OriginalUri,
    Path(user_id): Path<String>,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let user_id = path_id(&user_id, &uri)?;
    sessions::revoke_all_sessions(&state.ctx, &caller, user_id).await?;
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
    uri: OriginalUri,
    Path(command_id): Path<String>,
    Authenticated(caller): Authenticated,
) -> ApiResult {
    let command_id = path_id(&command_id, &uri)?;
    let token = commands::regen_command_token(&state.ctx, &caller, command_id).await?;
    let mut map = HashMap::new();
    map.insert("token", token.expose().to_owned());
    ok_json(map)
}

pub(crate) async fn create_command(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let c: NewCommandJson = body.decode("command")?;
    let created = commands::create_command(
        &state.ctx,
        &caller,
        NewCommand {
            team_id: c.team_id,
            trigger: c.trigger,
            method: c.method,
            url: c.url,
            display_name: c.display_name,
            description: c.description,
            username: c.username,
            icon_url: c.icon_url,
            auto_complete: c.auto_complete,
            auto_complete_desc: c.auto_complete_desc,
            auto_complete_hint: c.auto_complete_hint,
        },
    )
    .await?;
    let json = CommandJson::with_token(created.command, created.token.expose().to_owned());
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

pub(crate) async fn verify_command_token(
    State(state): State<RestState>,
    uri: OriginalUri,
    Path(command_id): Path<String>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let command_id = path_id(&command_id, &uri)?;
    let token = body.string_map().remove("token").unwrap_or_default();
    let valid = commands::verify_command_token(&state.ctx, &caller, command_id, &token).await?;
    ok_json(serde_json::json!({ "valid": valid }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TeamMemberBody {
    user_id: String,
    roles: String,
}

pub(crate) async fn add_team_member(
    State(state): State<RestState>,
    uri: OriginalUri,
    Path(team_id): Path<String>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let team_id = path_id(&team_id, &uri)?;
    let body: TeamMemberBody = body.decode("team_member")?;
    let roles: Vec<String> = body.roles.split_whitespace().map(str::to_owned).collect();
    let member =
        commands::add_team_member(&state.ctx, &caller, team_id, &body.user_id, &roles).await?;
    Ok((StatusCode::CREATED, Json(TeamMemberJson::from(member))).into_response())
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
    let raw = first_query_value(uri.0.query(), "after_event_id").unwrap_or_default();
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

pub(crate) async fn get_me(Authenticated(caller): Authenticated) -> ApiResult {
    let user = users::get_me(&caller)?;
    ok_json(UserJson::from(user))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IntrospectBody {
    token: String,
}

pub(crate) async fn introspect_token(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let body: IntrospectBody = body.decode("token")?;
    let found = introspection::introspect_token(&state.ctx, &caller, &body.token).await?;
    ok_json(IntrospectionJson::from(found))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CreateUserBody {
    id: String,
    username: String,
    email: String,
    /// Space-separated, as Mattermost writes roles.
    roles: String,
    is_bot: bool,
    bot_owner_id: String,
}

pub(crate) async fn create_user(
    State(state): State<RestState>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let b: CreateUserBody = body.decode("user")?;
    let user = users::create_user(
        &state.ctx,
        &caller,
        NewUser {
            id: b.id,
            username: b.username,
            email: b.email,
            roles: b.roles.split_whitespace().map(str::to_owned).collect(),
            is_bot: b.is_bot,
            bot_owner_id: b.bot_owner_id,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(UserJson::from(user))).into_response())
}

pub(crate) async fn update_user_roles(
    State(state): State<RestState>,
    uri: OriginalUri,
    Path(user_id): Path<String>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let user_id = path_id(&user_id, &uri)?;
    let roles = body.string_map().remove("roles").unwrap_or_default();
    let roles: Vec<String> = roles.split_whitespace().map(str::to_owned).collect();
    users::update_user_roles(&state.ctx, &caller, user_id, &roles).await?;
    status_ok()
}

pub(crate) async fn update_user_active(
    State(state): State<RestState>,
    uri: OriginalUri,
    Path(user_id): Path<String>,
    Authenticated(caller): Authenticated,
    body: Body,
) -> ApiResult {
    let user_id = path_id(&user_id, &uri)?;
    let props: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&body.0).unwrap_or_default();
    let Some(active) = props.get("active").and_then(serde_json::Value::as_bool) else {
        return Err(ApiError::invalid_body_param("active"));
    };
    users::update_user_active(&state.ctx, &caller, user_id, active).await?;
    status_ok()
}
