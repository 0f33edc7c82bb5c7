//! Mattermost's JSON shapes (field names, millisecond times, space-separated roles), in two
//! halves: the requests (the Go structs Mattermost decodes a body into, with their
//! conversions into domain requests) and the responses (with their conversions from domain
//! records). Secrets appear only where Mattermost returns them.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

use crate::domain::{
    access_tokens::{NewTokenFields, TokenRestrictions},
    audit::{ChainReport, record_json},
    commands::NewCommand,
    introspection::{CredentialKind, Introspection},
    model::roles_from_str,
    model::{Command, RevocationEvent, Session, TeamMember, User, UserAccessToken},
    token_trail::TokenTrail,
    users::NewUser,
    webhooks::{NewWebhook, SendOutcome, TestResult, Webhook, WebhookChange},
    webrtc::WebrtcCredentials,
};

// ---------------------------------------------------------------------------------------
// Requests: the Go structs Mattermost decodes bodies into (see `go_compat::decode_struct`).
// Every field Go type-checks is listed, used or not, so a wrongly typed field fails as it
// does in Mattermost.
// ---------------------------------------------------------------------------------------

/// The body of POST /users/{user_id}/tokens: model.UserAccessToken.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(
    dead_code,
    reason = "Go type-checks every field; see go_compat::decode_struct"
)]
pub(crate) struct NewUserAccessTokenJson {
    id: String,
    token: String,
    user_id: String,
    description: String,
    is_active: bool,
    /// Milliseconds; 0 = never.
    expires_at: i64,
    /// token-service's own: the client address blocks the token may be used from.
    bound_cidrs: Vec<String>,
    /// token-service's own: the scopes that narrow what the token may do.
    scopes: Vec<String>,
}

impl From<NewUserAccessTokenJson> for NewTokenFields {
    fn from(b: NewUserAccessTokenJson) -> Self {
        Self {
            description: b.description,
            expires_at: (b.expires_at != 0).then_some(b.expires_at),
            restrictions: TokenRestrictions {
                bound_cidrs: b.bound_cidrs,
                scopes: b.scopes,
            },
        }
    }
}

/// The body of POST /users/tokens/rotate: Mattermost's `{token_id, expires_at}`, plus
/// token-service's own `grace_period` (milliseconds; Mattermost clients never send it).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RotateUserAccessTokenJson {
    pub(crate) token_id: String,
    /// Milliseconds; 0 = never.
    pub(crate) expires_at: i64,
    /// Milliseconds; 0 = no grace period.
    pub(crate) grace_period: i64,
}

/// The body of POST /users/tokens/search: model.UserAccessTokenSearch.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TokenSearchJson {
    pub(crate) term: String,
}

/// The body of POST /users/{user_id}/sessions (token-service's own).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct NewSessionJson {
    /// Milliseconds; absent: the configured session length; 0: never expires.
    pub(crate) lifetime_ms: Option<i64>,
    pub(crate) device_id: String,
    pub(crate) props: BTreeMap<String, String>,
}

/// The body of POST /commands: model.Command. The fields a client may set are used.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(
    dead_code,
    reason = "Go type-checks every field; see go_compat::decode_struct"
)]
pub(crate) struct NewCommandJson {
    id: String,
    token: String,
    create_at: i64,
    update_at: i64,
    delete_at: i64,
    creator_id: String,
    plugin_id: String,
    autocomplete_data: Option<serde_json::Map<String, serde_json::Value>>,
    autocomplete_icon_data: String,
    team_id: String,
    trigger: String,
    method: String,
    url: String,
    display_name: String,
    description: String,
    username: String,
    icon_url: String,
    auto_complete: bool,
    auto_complete_desc: String,
    auto_complete_hint: String,
}

impl From<NewCommandJson> for NewCommand {
    fn from(c: NewCommandJson) -> Self {
        Self {
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
        }
    }
}

/// The body of POST /teams/{team_id}/members: model.TeamMember.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(
    dead_code,
    reason = "Go type-checks every field; see go_compat::decode_struct"
)]
pub(crate) struct NewTeamMemberJson {
    team_id: String,
    pub(crate) user_id: String,
    /// Space-separated.
    roles: String,
    delete_at: i64,
    scheme_guest: bool,
    scheme_user: bool,
    scheme_admin: bool,
    explicit_roles: String,
    create_at: i64,
}

impl NewTeamMemberJson {
    /// The requested team roles.
    pub(crate) fn roles(&self) -> Vec<String> {
        roles_from_str(&self.roles)
    }
}

/// The body of POST /tokens/introspect (token-service's own).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct IntrospectJson {
    pub(crate) token: String,
}

/// The body of POST /tokens/leaked (token-service's own).
#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct LeakReportJson {
    pub(crate) tokens: Vec<String>,
    pub(crate) url: String,
}

impl std::fmt::Debug for LeakReportJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeakReportJson")
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .field("url", &self.url)
            .finish()
    }
}

/// The body of POST /tokens/identify (token-service's own).
#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct IdentifyTokenJson {
    pub(crate) token: String,
}

impl std::fmt::Debug for IdentifyTokenJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentifyTokenJson { token: <redacted> }")
    }
}

/// IdentifyToken's answer on REST.
#[derive(Debug, Serialize)]
pub(crate) struct TokenTrailJson<'a> {
    pub(crate) shape: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_access_token: Option<UserAccessTokenJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) session: Option<SessionJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) owner: Option<UserJson<'a>>,
    pub(crate) grace_until: i64,
    pub(crate) credential_hmac: &'a str,
    pub(crate) records: Vec<serde_json::Value>,
}

impl<'a> From<&'a TokenTrail> for TokenTrailJson<'a> {
    fn from(trail: &'a TokenTrail) -> Self {
        Self {
            shape: trail.shape.id(),
            kind: trail.kind().map_or("", CredentialKind::id),
            state: trail.state.id(),
            user_access_token: trail.access_token.clone().map(Into::into),
            session: trail.session.clone().map(Into::into),
            owner: trail.owner.as_ref().map(Into::into),
            grace_until: trail.grace_until,
            credential_hmac: &trail.credential_hmac,
            records: trail.records.iter().map(record_json).collect(),
        }
    }
}

/// The body of POST /tokens/audit_records/hash (token-service's own).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AuditHashJson {
    pub(crate) credential: String,
}

/// The body of POST /tokens/audit_records/verify (token-service's own); may be empty.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AuditVerifyJson {
    pub(crate) after_id: Option<i64>,
    pub(crate) max_records: Option<i64>,
}

/// The body of POST /users: the fields of model.User we use, the others Go type-checks, and
/// `bot_owner_id` (ours).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(
    dead_code,
    reason = "Go type-checks every field; see go_compat::decode_struct"
)]
pub(crate) struct NewUserJson {
    id: String,
    username: String,
    email: String,
    /// Space-separated, as Mattermost writes roles.
    roles: String,
    is_bot: bool,
    bot_owner_id: String,
    create_at: i64,
    update_at: i64,
    delete_at: i64,
    password: String,
    auth_data: Option<String>,
    auth_service: String,
    email_verified: bool,
    nickname: String,
    first_name: String,
    last_name: String,
    position: String,
    allow_marketing: bool,
    props: BTreeMap<String, String>,
    notify_props: BTreeMap<String, String>,
    last_password_update: i64,
    last_picture_update: i64,
    failed_attempts: i64,
    locale: String,
    timezone: BTreeMap<String, String>,
    mfa_active: bool,
    mfa_secret: String,
    remote_id: Option<String>,
    last_activity_at: i64,
    bot_description: String,
    bot_last_icon_update: i64,
    terms_of_service_id: String,
    terms_of_service_create_at: i64,
    disable_welcome_email: bool,
    last_login: i64,
}

impl From<NewUserJson> for NewUser {
    fn from(b: NewUserJson) -> Self {
        Self {
            roles: roles_from_str(&b.roles),
            id: b.id,
            username: b.username,
            email: b.email,
            is_bot: b.is_bot,
            bot_owner_id: b.bot_owner_id,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Responses.
// ---------------------------------------------------------------------------------------

/// `{"status":"OK"}`.
#[derive(Debug, Serialize)]
pub(crate) struct StatusOk {
    pub(crate) status: &'static str,
}

pub(crate) const STATUS_OK: StatusOk = StatusOk { status: "OK" };

/// model.UserAccessToken: `token` only on create (omitempty), `expires_at` always.
#[derive(Debug, Serialize)]
pub(crate) struct UserAccessTokenJson {
    pub(crate) id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
    pub(crate) user_id: String,
    pub(crate) description: String,
    pub(crate) is_active: bool,
    pub(crate) expires_at: i64,
    /// Our addition, only with `?include=last_use`: Unix ms, 0 = never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_used_at: Option<i64>,
    /// Our addition, only with `?include=last_use`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_user_agent: Option<String>,
    /// Our addition, only with `?include=last_use`: newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) recent_addresses: Option<Vec<TokenAddressJson>>,
    /// Our addition: the client address blocks the token may be used from; absent when
    /// unbound (so Mattermost clients see Mattermost's body).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) bound_cidrs: Vec<String>,
    /// Our addition: the token's scopes; absent when unscoped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) scopes: Vec<String>,
}

/// One of a token's recent client addresses (our addition).
#[derive(Debug, Serialize)]
pub(crate) struct TokenAddressJson {
    pub(crate) ip: String,
    pub(crate) last_seen_at: i64,
}

impl From<UserAccessToken> for UserAccessTokenJson {
    fn from(t: UserAccessToken) -> Self {
        Self {
            id: t.id.to_string(),
            token: None,
            user_id: t.user_id.to_string(),
            description: t.description,
            is_active: t.is_active,
            expires_at: t.expires_at,
            last_used_at: None,
            last_user_agent: None,
            recent_addresses: None,
            bound_cidrs: t.bound_cidrs.texts(),
            scopes: t.scopes.ids(),
        }
    }
}

impl UserAccessTokenJson {
    /// Mattermost's token object with our last-use keys added.
    pub(crate) fn with_last_use(mut t: UserAccessToken) -> Self {
        let last_use = std::mem::take(&mut t.last_use);
        let mut json = Self::from(t);
        json.last_used_at = Some(last_use.last_used_at);
        json.last_user_agent = Some(last_use.user_agent);
        json.recent_addresses = Some(
            last_use
                .recent_addresses
                .into_iter()
                .map(|a| TokenAddressJson {
                    ip: a.ip,
                    last_seen_at: a.last_seen_at,
                })
                .collect(),
        );
        json
    }
}

/// model.Session (every field serialized; `token` blanked to "").
#[derive(Debug, Serialize)]
pub(crate) struct SessionJson {
    pub(crate) id: String,
    pub(crate) token: String,
    pub(crate) create_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) last_activity_at: i64,
    pub(crate) user_id: String,
    pub(crate) device_id: String,
    pub(crate) roles: String,
    pub(crate) is_oauth: bool,
    pub(crate) expired_notify: bool,
    pub(crate) props: BTreeMap<String, String>,
    pub(crate) team_members: Vec<TeamMemberJson>,
    pub(crate) local: bool,
}

impl SessionJson {
    /// A listed session: Mattermost attaches the user's live team memberships to each.
    pub(crate) fn with_team_members(s: Session, members: &[TeamMember]) -> Self {
        let mut json = Self::from(s);
        json.team_members = members.iter().cloned().map(TeamMemberJson::from).collect();
        json
    }
}

impl From<Session> for SessionJson {
    fn from(s: Session) -> Self {
        Self {
            id: s.id.to_string(),
            token: String::new(),
            create_at: s.create_at,
            expires_at: s.expires_at,
            last_activity_at: s.last_activity_at,
            user_id: s.user_id.to_string(),
            device_id: s.device_id,
            roles: s.roles.join(" "),
            is_oauth: s.is_oauth,
            expired_notify: s.expired_notify,
            props: s.props,
            team_members: Vec::new(),
            local: false,
        }
    }
}

/// model.TeamMember.
#[derive(Debug, Serialize)]
pub(crate) struct TeamMemberJson {
    pub(crate) team_id: String,
    pub(crate) user_id: String,
    pub(crate) roles: String,
    pub(crate) delete_at: i64,
    pub(crate) scheme_guest: bool,
    pub(crate) scheme_user: bool,
    pub(crate) scheme_admin: bool,
    pub(crate) explicit_roles: String,
}

impl From<TeamMember> for TeamMemberJson {
    fn from(m: TeamMember) -> Self {
        let has = |role: &str| m.roles.iter().any(|r| r == role);
        Self {
            team_id: m.team_id.to_string(),
            user_id: m.user_id.to_string(),
            scheme_user: has("team_user"),
            scheme_admin: has("team_admin"),
            scheme_guest: has("team_guest"),
            roles: m.roles.join(" "),
            delete_at: m.delete_at,
            explicit_roles: String::new(),
        }
    }
}

/// The parts of model.User a token service knows, sanitized as for its owner. Borrows the
/// user: `GET /users/me` is a hot path.
#[derive(Debug, Serialize)]
pub(crate) struct UserJson<'a> {
    pub(crate) id: &'a str,
    pub(crate) create_at: i64,
    pub(crate) update_at: i64,
    pub(crate) delete_at: i64,
    pub(crate) username: &'a str,
    pub(crate) auth_data: &'static str,
    pub(crate) auth_service: &'static str,
    pub(crate) email: &'a str,
    pub(crate) nickname: &'static str,
    pub(crate) first_name: &'static str,
    pub(crate) last_name: &'static str,
    pub(crate) position: &'static str,
    pub(crate) roles: SpaceSeparated<'a>,
    pub(crate) locale: &'static str,
    pub(crate) timezone: TimezoneJson,
    pub(crate) props: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) is_bot: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(crate) bot_owner_id: &'a str,
}

impl UserJson<'_> {
    /// Appends this user's JSON to `out`: the bytes `serde_json` writes for the derived
    /// `Serialize` (a test holds them equal), with the field names and the constant fields
    /// written as they are instead of escaped one by one on every request (`GET /users/me`
    /// is the REST shim's hot path). The variable strings are escaped by `serde_json`.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        let mut number = itoa::Buffer::new();
        let mut numbers = |out: &mut Vec<u8>, fields: [(&[u8], i64); 3]| {
            for (name, value) in fields {
                out.extend_from_slice(name);
                out.extend_from_slice(number.format(value).as_bytes());
            }
        };
        let strings = |out: &mut Vec<u8>, fields: &[(&[u8], &str)]| {
            for (name, value) in fields {
                out.extend_from_slice(name);
                write_escaped(out, value);
            }
        };
        strings(out, &[(br#"{"id":"#, self.id)]);
        numbers(
            out,
            [
                (br#","create_at":"#, self.create_at),
                (br#","update_at":"#, self.update_at),
                (br#","delete_at":"#, self.delete_at),
            ],
        );
        strings(
            out,
            &[
                (br#","username":"#, self.username),
                (br#","auth_data":"#, self.auth_data),
                (br#","auth_service":"#, self.auth_service),
                (br#","email":"#, self.email),
                (br#","nickname":"#, self.nickname),
                (br#","first_name":"#, self.first_name),
                (br#","last_name":"#, self.last_name),
                (br#","position":"#, self.position),
            ],
        );
        out.extend_from_slice(br#","roles":"#);
        write_escaped(out, &self.roles);
        let timezone = &self.timezone;
        strings(
            out,
            &[
                (br#","locale":"#, self.locale),
                (
                    br#","timezone":{"automaticTimezone":"#,
                    timezone.automatic_timezone,
                ),
                (br#","manualTimezone":"#, timezone.manual_timezone),
                (
                    br#","useAutomaticTimezone":"#,
                    timezone.use_automatic_timezone,
                ),
            ],
        );
        out.extend_from_slice(br#"},"props":"#);
        write_escaped(out, &self.props);
        if self.is_bot {
            out.extend_from_slice(br#","is_bot":true"#);
        }
        if !self.bot_owner_id.is_empty() {
            strings(out, &[(br#","bot_owner_id":"#, self.bot_owner_id)]);
        }
        out.push(b'}');
    }
}

/// Appends `value` as `serde_json` writes it: for the strings and string maps of
/// [`UserJson::write_json`], which cannot fail to serialize.
fn write_escaped(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    let _ = serde_json::to_writer(out, value);
}

/// Roles as Mattermost writes them, one string of space-separated names, written straight
/// into the answer (no joined copy first).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpaceSeparated<'a>(pub(crate) &'a [String]);

impl fmt::Display for SpaceSeparated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

impl Serialize for SpaceSeparated<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Mattermost's default timezone of a user (its keys in the order Go writes a map's).
#[derive(Debug, Serialize)]
pub(crate) struct TimezoneJson {
    #[serde(rename = "automaticTimezone")]
    automatic_timezone: &'static str,
    #[serde(rename = "manualTimezone")]
    manual_timezone: &'static str,
    #[serde(rename = "useAutomaticTimezone")]
    use_automatic_timezone: &'static str,
}

impl<'a> From<&'a User> for UserJson<'a> {
    fn from(u: &'a User) -> Self {
        Self {
            id: u.id.as_str(),
            create_at: u.create_at,
            update_at: u.update_at,
            delete_at: u.delete_at,
            username: &u.username,
            auth_data: "",
            auth_service: "",
            email: &u.email,
            nickname: "",
            first_name: "",
            last_name: "",
            position: "",
            roles: SpaceSeparated(&u.roles),
            locale: "en",
            timezone: TimezoneJson {
                automatic_timezone: "",
                manual_timezone: "",
                use_automatic_timezone: "true",
            },
            props: BTreeMap::new(),
            is_bot: u.is_bot,
            bot_owner_id: u.bot_owner_id.as_ref().map_or("", |id| id.as_str()),
        }
    }
}

/// model.Command (with `token` where Mattermost returns it).
#[derive(Debug, Serialize)]
pub(crate) struct CommandJson {
    pub(crate) id: String,
    pub(crate) token: String,
    pub(crate) create_at: i64,
    pub(crate) update_at: i64,
    pub(crate) delete_at: i64,
    pub(crate) creator_id: String,
    pub(crate) team_id: String,
    pub(crate) trigger: String,
    pub(crate) method: String,
    pub(crate) username: String,
    pub(crate) icon_url: String,
    pub(crate) auto_complete: bool,
    pub(crate) auto_complete_desc: String,
    pub(crate) auto_complete_hint: String,
    pub(crate) display_name: String,
    pub(crate) description: String,
    pub(crate) url: String,
    pub(crate) plugin_id: String,
}

impl CommandJson {
    pub(crate) fn with_token(c: Command, token: String) -> Self {
        Self {
            id: c.id.to_string(),
            token,
            create_at: c.create_at,
            update_at: c.update_at,
            delete_at: c.delete_at,
            creator_id: c.creator_id.to_string(),
            team_id: c.team_id.to_string(),
            trigger: c.trigger,
            method: c.method,
            username: c.username,
            icon_url: c.icon_url,
            auto_complete: c.auto_complete,
            auto_complete_desc: c.auto_complete_desc,
            auto_complete_hint: c.auto_complete_hint,
            display_name: c.display_name,
            description: c.description,
            url: c.url,
            plugin_id: String::new(),
        }
    }
}

/// model.WebrtcInfoResponse, plus the TURN credential lifetime.
#[derive(Debug, Serialize)]
pub(crate) struct WebrtcJson {
    pub(crate) token: String,
    pub(crate) gateway_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) stun_uri: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) turn_uri: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) turn_username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) turn_password: String,
    pub(crate) credential_ttl: u64,
}

impl From<WebrtcCredentials> for WebrtcJson {
    fn from(c: WebrtcCredentials) -> Self {
        Self {
            token: c.token,
            gateway_url: c.gateway_url,
            stun_uri: c.stun_uri,
            turn_uri: c.turn_uri,
            turn_username: c.turn_username,
            turn_password: c.turn_password,
            credential_ttl: c.credential_ttl_secs,
        }
    }
}

/// The answer of POST /tokens/introspect (token-service's own endpoint).
#[derive(Debug, Default, Serialize)]
pub(crate) struct IntrospectionJson {
    pub(crate) active: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) user_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) token_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) session_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) roles: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) username: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) is_bot: bool,
    /// Milliseconds; 0 = never.
    pub(crate) expires_at: i64,
    /// A scoped personal access token's scopes; absent otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) scopes: Vec<String>,
}

impl From<Introspection> for IntrospectionJson {
    fn from(found: Introspection) -> Self {
        let Some(c) = found else {
            return Self::default();
        };
        Self {
            active: true,
            user_id: c.user_id().to_string(),
            token_id: c.token_id().map(ToString::to_string).unwrap_or_default(),
            session_id: c.session_id().to_string(),
            kind: c.kind().id().to_owned(),
            roles: c.roles().join(" "),
            username: c.username().to_owned(),
            is_bot: c.is_bot(),
            expires_at: c.expires_at(),
            scopes: c.scopes().ids(),
        }
    }
}

/// One revocation log event (token-service's own endpoint).
#[derive(Debug, Serialize)]
pub(crate) struct RevocationEventJson {
    pub(crate) id: i64,
    pub(crate) kind: &'static str,
    pub(crate) subject_id: String,
    pub(crate) create_at: i64,
}

impl From<RevocationEvent> for RevocationEventJson {
    fn from(e: RevocationEvent) -> Self {
        Self {
            id: e.id,
            kind: e.revocation.kind(),
            subject_id: e.revocation.subject_id().to_owned(),
            create_at: e.create_at,
        }
    }
}

/// VerifyAuditLog's answer (token-service's own shape): absent `resume_after` and `broken`
/// mean the walk reached the newest record and found no broken link.
#[derive(Debug, Serialize)]
pub(crate) struct AuditVerificationJson {
    pub(crate) ok: bool,
    pub(crate) verified: u64,
    pub(crate) first_id: i64,
    pub(crate) last_id: i64,
    pub(crate) chain_start: i64,
    pub(crate) head_id: i64,
    pub(crate) head_hash: String,
    pub(crate) unknown_actions: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) resume_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) broken: Option<AuditChainBreakJson>,
}

/// Where the chain breaks.
#[derive(Debug, Serialize)]
pub(crate) struct AuditChainBreakJson {
    pub(crate) record_id: i64,
    pub(crate) kind: &'static str,
    pub(crate) expected: String,
    pub(crate) found: String,
    pub(crate) description: String,
}

impl From<ChainReport> for AuditVerificationJson {
    fn from(r: ChainReport) -> Self {
        Self {
            ok: r.broken.is_none(),
            verified: r.verified,
            first_id: r.first_id,
            last_id: r.last_id,
            chain_start: r.chain_start,
            head_id: r.head_id,
            head_hash: r.head_hash,
            unknown_actions: r.unknown_actions,
            resume_after: r.resume_after,
            broken: r.broken.map(|b| AuditChainBreakJson {
                description: b.describe(),
                record_id: b.record_id,
                kind: b.kind.as_str(),
                expected: b.expected,
                found: b.found,
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Webhooks (token-service's own paths, so its own shapes: snake_case, Unix milliseconds).
// ---------------------------------------------------------------------------------------

/// A webhook filter in a request or an answer.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub(crate) struct WebhookFilterJson {
    pub(crate) actions: Vec<String>,
    pub(crate) user_id: String,
}

/// The body of POST /tokens/webhooks.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct NewWebhookJson {
    url: String,
    description: String,
    filter: Option<WebhookFilterJson>,
}

impl From<NewWebhookJson> for NewWebhook {
    fn from(b: NewWebhookJson) -> Self {
        let filter = b.filter.unwrap_or_default();
        NewWebhook {
            url: b.url,
            description: b.description,
            actions: filter.actions,
            user_id: filter.user_id,
        }
    }
}

/// The body of PUT /tokens/webhooks/{webhook_id}: absent (or null) fields keep their value.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WebhookChangeJson {
    url: Option<String>,
    description: Option<String>,
    filter: Option<WebhookFilterJson>,
    enabled: Option<bool>,
}

impl From<WebhookChangeJson> for WebhookChange {
    fn from(b: WebhookChangeJson) -> Self {
        WebhookChange {
            url: b.url,
            description: b.description,
            filter: b.filter.map(|f| (f.actions, f.user_id)),
            enabled: b.enabled,
        }
    }
}

/// The body of POST /tokens/webhooks/{webhook_id}/rotate_secret.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RotateWebhookSecretJson {
    /// Milliseconds; absent: 24 hours.
    pub(crate) grace_period_ms: Option<i64>,
}

/// Where an endpoint's delivery stands.
#[derive(Debug, Serialize)]
pub(crate) struct WebhookDeliveryJson {
    delivered_through: i64,
    attempts: u32,
    next_attempt_at: i64,
    failing_since: i64,
    last_error: String,
    last_attempt_at: i64,
    last_success_at: i64,
}

/// A webhook endpoint (and its secret, in the answers that show it once).
#[derive(Debug, Serialize)]
pub(crate) struct WebhookJson {
    id: String,
    url: String,
    description: String,
    filter: WebhookFilterJson,
    enabled: bool,
    disabled_reason: String,
    previous_secret_expires_at: i64,
    delivery: WebhookDeliveryJson,
    create_at: i64,
    update_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secret: Option<String>,
}

impl From<Webhook> for WebhookJson {
    fn from(w: Webhook) -> Self {
        let d = w.delivery;
        Self {
            id: w.id.to_string(),
            url: w.url,
            description: w.description,
            filter: WebhookFilterJson {
                actions: w.filter.actions,
                user_id: w.filter.user_id.map(|u| u.to_string()).unwrap_or_default(),
            },
            enabled: w.enabled,
            disabled_reason: w.disabled_reason,
            previous_secret_expires_at: w.previous_secret_expires_at,
            delivery: WebhookDeliveryJson {
                delivered_through: d.delivered_through,
                attempts: d.attempts,
                next_attempt_at: d.next_attempt_at,
                failing_since: d.failing_since,
                last_error: d.last_error,
                last_attempt_at: d.last_attempt_at,
                last_success_at: d.last_success_at,
            },
            create_at: w.create_at,
            update_at: w.update_at,
            secret: None,
        }
    }
}

/// What TestWebhook met.
#[derive(Debug, Serialize)]
pub(crate) struct WebhookTestJson {
    delivered: bool,
    http_status: u16,
    error: String,
    message_id: String,
    elapsed_ms: u64,
}

impl From<TestResult> for WebhookTestJson {
    fn from(t: TestResult) -> Self {
        let delivered = t.outcome.is_success();
        let (http_status, error) = match t.outcome {
            SendOutcome::Status(s) => (s, String::new()),
            SendOutcome::Failed(e) => (0, e),
        };
        Self {
            delivered,
            http_status,
            error,
            message_id: t.message_id,
            elapsed_ms: u64::try_from(t.elapsed.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::UserId;

    fn user(username: &str, email: &str, roles: &[&str], bot_owner: Option<UserId>) -> User {
        User {
            id: UserId::generate(),
            username: username.to_owned(),
            email: email.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            is_bot: bot_owner.is_some(),
            bot_owner_id: bot_owner,
            create_at: 1_795_400_000_123,
            update_at: -1,
            delete_at: i64::MAX,
        }
    }

    #[test]
    fn a_users_written_json_is_what_serde_writes() {
        let users = [
            user("alice", "alice@example.com", &["system_user"], None),
            user(
                "bob",
                "\"quoted\\back\u{1}slash\u{e9}\"@example.com",
                &["system_user", "system_admin"],
                None,
            ),
            user("build-bot", "", &[], Some(UserId::generate())),
        ];
        for user in &users {
            let json = UserJson::from(user);
            let mut written = Vec::new();
            json.write_json(&mut written);
            let serialized = serde_json::to_vec(&json).unwrap();
            assert_eq!(
                String::from_utf8(written).unwrap(),
                String::from_utf8(serialized).unwrap()
            );
        }
    }
}
