//! Conversions between protobuf messages and domain records: requests into the domain's
//! request types, domain answers back into responses. Malformed input becomes a domain
//! `InvalidArgument` naming the field, so handlers convert with `?`.

use prost_types::Timestamp;

use crate::domain::{
    access_tokens::{
        CreatedUserAccessToken, NewUserAccessToken, TokenFilter, TokenRef, TokenRestrictions,
        TokenState,
    },
    audit::{AuditRequest, ChainReport, VerifyRequest},
    commands::{CreatedCommand, NewCommand},
    error::{Error, Reason, Result},
    introspection::{CredentialKind, Introspection},
    lifecycle::{Actor, LifecycleRecord, Origin, StoredRecord, Subjects},
    model::{
        Command, Revocation, RevocationEvent, Session, TeamMember, UnixMillis, User,
        UserAccessToken,
    },
    paging::ListPaging,
    rotation::RotateUserAccessToken,
    sessions::{CreatedSession, NewSession},
    token_format::Shape,
    token_trail::{TokenTrail, TrailState},
    users::NewUser,
    webhooks::{CreatedWebhook, NewWebhook, TestResult, Webhook, WebhookChange, WebhookFilter},
    webrtc::WebrtcCredentials,
};
use crate::pb;

/// Unix milliseconds to a timestamp; 0 (unset) to `None`.
pub(crate) fn timestamp(millis: UnixMillis) -> Option<Timestamp> {
    (millis != 0).then(|| Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    })
}

/// A timestamp to Unix milliseconds (sub-millisecond precision is dropped).
pub(crate) fn millis(ts: &Timestamp, field: &'static str) -> Result<UnixMillis> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(Error::invalid(
            field,
            Reason::InvalidBodyParam,
            "nanos must be between 0 and 999999999",
        ));
    }
    ts.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(ts.nanos / 1_000_000)))
        .ok_or_else(|| Error::invalid(field, Reason::InvalidBodyParam, "is out of range"))
}

/// A duration to milliseconds; negative durations stay negative for the domain to refuse.
pub(crate) fn duration_millis(d: &prost_types::Duration, field: &'static str) -> Result<i64> {
    if !(-999_999_999..=999_999_999).contains(&d.nanos) {
        return Err(Error::invalid(
            field,
            Reason::InvalidBodyParam,
            "nanos must be between -999999999 and 999999999",
        ));
    }
    d.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(d.nanos / 1_000_000)))
        .ok_or_else(|| Error::invalid(field, Reason::InvalidBodyParam, "is out of range"))
}

/// A list's paging from `page`, `per_page` (absent: the defaults; negative: refused) and
/// `page_token` (see [`ListPaging::new`]).
pub(crate) fn list_paging(
    page: Option<i32>,
    per_page: Option<i32>,
    page_token: &str,
) -> Result<ListPaging> {
    ListPaging::new(page.map(i64::from), per_page.map(i64::from), page_token)
}

impl TryFrom<pb::CreateUserAccessTokenRequest> for NewUserAccessToken {
    type Error = Error;

    fn try_from(r: pb::CreateUserAccessTokenRequest) -> Result<Self> {
        let expires_at = r
            .expires_at
            .as_ref()
            .map(|ts| millis(ts, "expires_at"))
            .transpose()?;
        Ok(NewUserAccessToken {
            user_id: r.user_id,
            description: r.description,
            expires_at,
            restrictions: TokenRestrictions {
                bound_cidrs: r.bound_cidrs,
                scopes: r.scopes,
            },
        })
    }
}

impl TryFrom<pb::RotateUserAccessTokenRequest> for RotateUserAccessToken {
    type Error = Error;

    fn try_from(r: pb::RotateUserAccessTokenRequest) -> Result<Self> {
        let token = TokenRef::parse(&r.token_id)?;
        let expires_at = r
            .expires_at
            .as_ref()
            .map(|ts| millis(ts, "expires_at"))
            .transpose()?;
        let grace_period_ms = r
            .grace_period
            .as_ref()
            .map(|d| duration_millis(d, "grace_period"))
            .transpose()?;
        Ok(RotateUserAccessToken {
            token,
            expires_at,
            grace_period_ms,
        })
    }
}

impl TryFrom<pb::CreateSessionRequest> for NewSession {
    type Error = Error;

    fn try_from(r: pb::CreateSessionRequest) -> Result<Self> {
        let lifetime_ms = r
            .lifetime
            .as_ref()
            .map(|d| duration_millis(d, "lifetime"))
            .transpose()?;
        Ok(NewSession {
            user_id: r.user_id,
            lifetime_ms,
            device_id: r.device_id,
            props: r.props.into_iter().collect(),
        })
    }
}

impl From<pb::CreateCommandRequest> for NewCommand {
    fn from(r: pb::CreateCommandRequest) -> Self {
        NewCommand {
            team_id: r.team_id,
            trigger: r.trigger,
            method: r.method,
            url: r.url,
            display_name: r.display_name,
            description: r.description,
            username: r.username,
            icon_url: r.icon_url,
            auto_complete: r.auto_complete,
            auto_complete_desc: r.auto_complete_desc,
            auto_complete_hint: r.auto_complete_hint,
        }
    }
}

impl From<pb::CreateUserRequest> for NewUser {
    fn from(r: pb::CreateUserRequest) -> Self {
        NewUser {
            id: r.id,
            username: r.username,
            email: r.email,
            roles: r.roles,
            is_bot: r.is_bot,
            bot_owner_id: r.bot_owner_id,
        }
    }
}

impl From<CreatedUserAccessToken> for pb::CreateUserAccessTokenResponse {
    fn from(created: CreatedUserAccessToken) -> Self {
        pb::CreateUserAccessTokenResponse {
            token: created.secret.expose().to_owned(),
            user_access_token: Some(created.token.into()),
        }
    }
}

impl From<CreatedSession> for pb::CreateSessionResponse {
    fn from(created: CreatedSession) -> Self {
        pb::CreateSessionResponse {
            token: created.token.expose().to_owned(),
            session: Some(created.session.into()),
        }
    }
}

impl From<CreatedCommand> for pb::CreateCommandResponse {
    fn from(created: CreatedCommand) -> Self {
        pb::CreateCommandResponse {
            token: created.token.expose().to_owned(),
            command: Some(created.command.into()),
        }
    }
}

impl From<WebrtcCredentials> for pb::GetWebrtcTokenResponse {
    fn from(c: WebrtcCredentials) -> Self {
        pb::GetWebrtcTokenResponse {
            token: c.token,
            gateway_url: c.gateway_url,
            stun_uri: c.stun_uri,
            turn_uri: c.turn_uri,
            turn_username: c.turn_username,
            turn_password: c.turn_password,
            credential_ttl: Some(prost_types::Duration {
                seconds: i64::try_from(c.credential_ttl_secs).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        }
    }
}

/// A list of tokens.
pub(crate) fn tokens(list: Vec<UserAccessToken>) -> Vec<pb::UserAccessToken> {
    list.into_iter().map(Into::into).collect()
}

impl From<User> for pb::User {
    fn from(u: User) -> Self {
        pb::User {
            id: u.id.to_string(),
            username: u.username,
            email: u.email,
            roles: u.roles,
            is_bot: u.is_bot,
            bot_owner_id: u.bot_owner_id.map(|id| id.to_string()).unwrap_or_default(),
            create_at: timestamp(u.create_at),
            update_at: timestamp(u.update_at),
            delete_at: timestamp(u.delete_at),
        }
    }
}

impl From<UserAccessToken> for pb::UserAccessToken {
    fn from(t: UserAccessToken) -> Self {
        pb::UserAccessToken {
            id: t.id.to_string(),
            user_id: t.user_id.to_string(),
            description: t.description,
            is_active: t.is_active,
            expires_at: timestamp(t.expires_at),
            create_at: timestamp(t.create_at),
            last_used_at: timestamp(t.last_use.last_used_at),
            last_user_agent: t.last_use.user_agent,
            recent_addresses: t
                .last_use
                .recent_addresses
                .into_iter()
                .map(|a| pb::TokenAddress {
                    ip: a.ip,
                    last_seen_at: timestamp(a.last_seen_at),
                })
                .collect(),
            bound_cidrs: t.bound_cidrs.texts(),
            scopes: t.scopes.ids(),
        }
    }
}

/// The token list filters of GetUserAccessTokens and GetUserAccessTokensForUser.
pub(crate) fn token_filter(
    last_used_before: Option<&Timestamp>,
    last_used_after: Option<&Timestamp>,
    expires_before: Option<&Timestamp>,
    state: i32,
) -> Result<TokenFilter> {
    let time = |ts: Option<&Timestamp>, field| ts.map(|ts| millis(ts, field)).transpose();
    let state = match pb::TokenState::try_from(state) {
        Ok(pb::TokenState::Unspecified) => None,
        Ok(pb::TokenState::Active) => Some(TokenState::Active),
        Ok(pb::TokenState::Disabled) => Some(TokenState::Disabled),
        Ok(pb::TokenState::Expired) => Some(TokenState::Expired),
        Err(_) => {
            return Err(Error::invalid(
                "state",
                Reason::InvalidUrlParam,
                "must be a TokenState value",
            ));
        }
    };
    Ok(TokenFilter {
        last_used_before: time(last_used_before, "last_used_before")?,
        last_used_after: time(last_used_after, "last_used_after")?,
        expires_before: time(expires_before, "expires_before")?,
        state,
    })
}

impl From<Session> for pb::Session {
    fn from(s: Session) -> Self {
        pb::Session {
            id: s.id.to_string(),
            user_id: s.user_id.to_string(),
            create_at: timestamp(s.create_at),
            expires_at: timestamp(s.expires_at),
            last_activity_at: timestamp(s.last_activity_at),
            device_id: s.device_id,
            roles: s.roles,
            is_oauth: s.is_oauth,
            expired_notify: s.expired_notify,
            props: s.props.into_iter().collect(),
        }
    }
}

impl From<Command> for pb::Command {
    fn from(c: Command) -> Self {
        pb::Command {
            id: c.id.to_string(),
            team_id: c.team_id.to_string(),
            creator_id: c.creator_id.to_string(),
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
            create_at: timestamp(c.create_at),
            update_at: timestamp(c.update_at),
            delete_at: timestamp(c.delete_at),
        }
    }
}

impl From<TeamMember> for pb::TeamMember {
    fn from(m: TeamMember) -> Self {
        pb::TeamMember {
            team_id: m.team_id.to_string(),
            user_id: m.user_id.to_string(),
            roles: m.roles,
        }
    }
}

/// A revocation event.
impl From<pb::CreateWebhookRequest> for NewWebhook {
    fn from(r: pb::CreateWebhookRequest) -> Self {
        let filter = r.filter.unwrap_or_default();
        NewWebhook {
            url: r.url,
            description: r.description,
            actions: filter.actions,
            user_id: filter.user_id,
        }
    }
}

impl From<pb::UpdateWebhookRequest> for WebhookChange {
    fn from(r: pb::UpdateWebhookRequest) -> Self {
        WebhookChange {
            url: r.url,
            description: r.description,
            filter: r.filter.map(|f| (f.actions, f.user_id)),
            enabled: r.enabled,
        }
    }
}

impl From<WebhookFilter> for pb::WebhookFilter {
    fn from(f: WebhookFilter) -> Self {
        pb::WebhookFilter {
            actions: f.actions,
            user_id: f.user_id.map(|u| u.to_string()).unwrap_or_default(),
        }
    }
}

impl From<Webhook> for pb::Webhook {
    fn from(w: Webhook) -> Self {
        let d = w.delivery;
        pb::Webhook {
            id: w.id.to_string(),
            url: w.url,
            description: w.description,
            filter: Some(w.filter.into()),
            enabled: w.enabled,
            disabled_reason: w.disabled_reason,
            previous_secret_expires_at: timestamp(w.previous_secret_expires_at),
            delivery: Some(pb::WebhookDeliveryState {
                delivered_through: d.delivered_through,
                attempts: d.attempts,
                next_attempt_at: timestamp(d.next_attempt_at),
                failing_since: timestamp(d.failing_since),
                last_error: d.last_error,
                last_attempt_at: timestamp(d.last_attempt_at),
                last_success_at: timestamp(d.last_success_at),
            }),
            create_at: timestamp(w.create_at),
            update_at: timestamp(w.update_at),
        }
    }
}

impl From<CreatedWebhook> for pb::CreateWebhookResponse {
    fn from(c: CreatedWebhook) -> Self {
        pb::CreateWebhookResponse {
            webhook: Some(c.webhook.into()),
            secret: c.secret.expose().to_owned(),
        }
    }
}

impl From<TestResult> for pb::TestWebhookResponse {
    fn from(t: TestResult) -> Self {
        use crate::domain::webhooks::SendOutcome;
        let delivered = t.outcome.is_success();
        let (http_status, error) = match t.outcome {
            SendOutcome::Status(s) => (u32::from(s), String::new()),
            SendOutcome::Failed(e) => (0, e),
        };
        pb::TestWebhookResponse {
            delivered,
            http_status,
            error,
            message_id: t.message_id,
            elapsed: prost_types::Duration::try_from(t.elapsed).ok(),
        }
    }
}

pub(crate) fn revocation_event(event: RevocationEvent) -> pb::RevocationEvent {
    let kind = revocation_kind(&event.revocation);
    pb::RevocationEvent {
        id: event.id,
        kind: kind.into(),
        subject_id: event.revocation.subject_id().to_owned(),
        create_at: timestamp(event.create_at),
    }
}

/// The kind a revocation takes away.
fn revocation_kind(revocation: &Revocation) -> pb::RevocationKind {
    match revocation {
        Revocation::Session(_) => pb::RevocationKind::Session,
        Revocation::AccessToken(_) => pb::RevocationKind::AccessToken,
        Revocation::User(_) => pb::RevocationKind::User,
        Revocation::All => pb::RevocationKind::All,
    }
}

/// A lifecycle record, every field (WatchEvents).
pub(crate) fn lifecycle_record(record: LifecycleRecord) -> pb::LifecycleRecord {
    stored_lifecycle_record(record.stored())
}

/// A record as stored, every field (ListAuditRecords: any action, also one this version does
/// not know). An actor type or revocation kind this version does not know is UNSPECIFIED.
pub(crate) fn stored_lifecycle_record(r: StoredRecord) -> pb::LifecycleRecord {
    let actor_type = match Actor::from_stored(&r.actor_type, &r.actor_id) {
        Actor::User(_) => pb::ActorType::User,
        Actor::Operator => pb::ActorType::Operator,
        Actor::Service => pb::ActorType::Service,
        Actor::Unknown => pb::ActorType::Unspecified,
    };
    let revokes_kind = if r.revokes.is_empty() {
        pb::RevocationKind::Unspecified
    } else {
        Revocation::from_stored(&r.revokes, r.revokes_id.clone())
            .map_or(pb::RevocationKind::Unspecified, |rev| revocation_kind(&rev))
    };
    pb::LifecycleRecord {
        id: r.id,
        create_at: timestamp(r.create_at),
        action: r.action,
        actor_type: actor_type.into(),
        actor_id: r.actor_id,
        user_id: r.subjects.user_id,
        token_id: r.subjects.token_id,
        session_id: r.subjects.session_id,
        command_id: r.subjects.command_id,
        team_id: r.subjects.team_id,
        webhook_id: r.subjects.webhook_id,
        ip: r.origin.ip,
        user_agent: r.origin.user_agent,
        request_id: r.origin.request_id,
        detail: r.detail,
        credential_hmac: r.credential_hmac,
        revokes_kind: revokes_kind.into(),
        revokes_id: r.revokes_id,
        hash: r.hash,
    }
}

/// A record back as stored (the admin CLI prints it as the domain's JSON).
pub(crate) fn stored_record(r: pb::LifecycleRecord) -> StoredRecord {
    let actor_type = match pb::ActorType::try_from(r.actor_type) {
        Ok(pb::ActorType::User) => "user",
        Ok(pb::ActorType::Operator) => "operator",
        Ok(pb::ActorType::Service) => "service",
        _ => "unknown",
    };
    let revokes = match pb::RevocationKind::try_from(r.revokes_kind) {
        Ok(pb::RevocationKind::Session) => "session",
        Ok(pb::RevocationKind::AccessToken) => "access_token",
        Ok(pb::RevocationKind::User) => "user",
        Ok(pb::RevocationKind::All) => "all",
        _ => "",
    };
    StoredRecord {
        id: r.id,
        create_at: r
            .create_at
            .as_ref()
            .map_or(0, |t| millis(t, "create_at").unwrap_or(0)),
        action: r.action,
        actor_type: actor_type.to_owned(),
        actor_id: r.actor_id,
        subjects: Subjects {
            user_id: r.user_id,
            token_id: r.token_id,
            session_id: r.session_id,
            command_id: r.command_id,
            team_id: r.team_id,
            webhook_id: r.webhook_id,
        },
        origin: Origin {
            ip: r.ip,
            user_agent: r.user_agent,
            request_id: r.request_id,
        },
        detail: r.detail,
        credential_hmac: r.credential_hmac,
        revokes: revokes.to_owned(),
        revokes_id: r.revokes_id,
        hash: r.hash,
    }
}

impl TryFrom<pb::ListAuditRecordsRequest> for AuditRequest {
    type Error = Error;

    fn try_from(r: pb::ListAuditRecordsRequest) -> Result<Self> {
        Ok(AuditRequest {
            since: r.since.as_ref().map(|t| millis(t, "since")).transpose()?,
            until: r.until.as_ref().map(|t| millis(t, "until")).transpose()?,
            actions: r.actions,
            actor_type: r.actor_type,
            actor_id: r.actor_id,
            user_id: r.user_id,
            token_id: r.token_id,
            session_id: r.session_id,
            command_id: r.command_id,
            ip: r.ip,
            request_id: r.request_id,
            credential_hmac: r.credential_hmac,
            page_size: r.page_size.map(i64::from),
            page_token: r.page_token,
            oldest_first: r.oldest_first,
        })
    }
}

impl From<pb::VerifyAuditLogRequest> for VerifyRequest {
    fn from(r: pb::VerifyAuditLogRequest) -> Self {
        VerifyRequest {
            after_id: r.after_id,
            max_records: r.max_records,
        }
    }
}

/// VerifyAuditLog's answer.
pub(crate) fn chain_report(report: ChainReport) -> pb::VerifyAuditLogResponse {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    pb::VerifyAuditLogResponse {
        ok: report.broken.is_none(),
        verified: count(report.verified),
        first_id: report.first_id,
        last_id: report.last_id,
        chain_start: report.chain_start,
        head_id: report.head_id,
        head_hash: report.head_hash,
        unknown_actions: report
            .unknown_actions
            .into_iter()
            .map(|(action, n)| (action, count(n)))
            .collect(),
        resume_after: report.resume_after,
        broken: report.broken.map(|b| pb::AuditChainBreak {
            description: b.describe(),
            record_id: b.record_id,
            kind: b.kind.as_str().to_owned(),
            expected: b.expected,
            found: b.found,
        }),
    }
}

/// IntrospectToken's answer: every field at its default when the token does not authenticate.
pub(crate) fn introspection(found: Introspection) -> pb::IntrospectTokenResponse {
    let Some(c) = found else {
        return pb::IntrospectTokenResponse::default();
    };
    let kind = match c.kind() {
        CredentialKind::Session => pb::TokenKind::Session,
        CredentialKind::PersonalAccessToken => pb::TokenKind::PersonalAccessToken,
    };
    pb::IntrospectTokenResponse {
        active: true,
        user_id: c.user_id().to_string(),
        token_id: c.token_id().map(ToString::to_string).unwrap_or_default(),
        session_id: c.session_id().to_string(),
        kind: kind.into(),
        roles: c.roles().to_vec(),
        expires_at: timestamp(c.expires_at()),
        username: c.username().to_owned(),
        is_bot: c.is_bot(),
        scopes: c.scopes().ids(),
    }
}

/// IdentifyToken's answer.
pub(crate) fn token_trail(trail: TokenTrail) -> pb::IdentifyTokenResponse {
    let shape = match trail.shape {
        Shape::Mattermost => pb::TokenShape::Mattermost,
        Shape::Checksummed(_) => pb::TokenShape::Checksummed,
        Shape::BadChecksum => pb::TokenShape::BadChecksum,
        Shape::Malformed => pb::TokenShape::Malformed,
    };
    let state = match trail.state {
        TrailState::Active => pb::CredentialState::Active,
        TrailState::Disabled => pb::CredentialState::Disabled,
        TrailState::Expired => pb::CredentialState::Expired,
        TrailState::OwnerDeactivated => pb::CredentialState::OwnerDeactivated,
        TrailState::Superseded => pb::CredentialState::Superseded,
        TrailState::NotFound => pb::CredentialState::NotFound,
    };
    let kind = match trail.kind() {
        Some(CredentialKind::PersonalAccessToken) => pb::TokenKind::PersonalAccessToken,
        Some(CredentialKind::Session) => pb::TokenKind::Session,
        None => pb::TokenKind::Unspecified,
    };
    pb::IdentifyTokenResponse {
        shape: shape.into(),
        kind: kind.into(),
        state: state.into(),
        user_access_token: trail.access_token.map(Into::into),
        session: trail.session.map(Into::into),
        owner: trail.owner.map(Into::into),
        grace_until: (trail.grace_until > 0)
            .then(|| timestamp(trail.grace_until))
            .flatten(),
        credential_hmac: trail.credential_hmac,
        records: trail
            .records
            .into_iter()
            .map(stored_lifecycle_record)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        for ms in [1, 999, 1_700_000_000_123, -1500] {
            let ts = timestamp(ms).unwrap();
            assert_eq!(millis(&ts, "t").unwrap(), ms);
        }
        assert!(timestamp(0).is_none());
        let bad = Timestamp {
            seconds: 1,
            nanos: -1,
        };
        assert!(millis(&bad, "t").is_err());
        let huge = Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert!(millis(&huge, "t").is_err());
    }

    #[test]
    fn malformed_request_fields_are_invalid_arguments_naming_the_field() {
        let bad = Timestamp {
            seconds: 1,
            nanos: -1,
        };
        let err = NewUserAccessToken::try_from(pb::CreateUserAccessTokenRequest {
            expires_at: Some(bad),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidArgument {
                field: "expires_at",
                reason: Reason::InvalidBodyParam,
                ..
            }
        ));
        let err = NewSession::try_from(pb::CreateSessionRequest {
            lifetime: Some(prost_types::Duration {
                seconds: i64::MAX,
                nanos: 0,
            }),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidArgument {
                field: "lifetime",
                ..
            }
        ));
        assert!(list_paging(Some(-1), None, "").is_err());
        assert!(list_paging(Some(0), None, "x").is_err());
    }
}
