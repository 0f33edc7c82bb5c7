//! Conversions between protobuf messages and domain records. Malformed input becomes a
//! domain `InvalidArgument` naming the field.

use prost_types::Timestamp;

use crate::domain::{
    error::{Error, Reason, Result},
    introspection::{CredentialKind, Introspection},
    model::{
        Command, Revocation, RevocationEvent, Session, TeamMember, UnixMillis, User,
        UserAccessToken,
    },
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

/// Converts a page parameter.
pub(crate) fn page_param(value: Option<i32>) -> Option<i64> {
    value.map(i64::from)
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
        }
    }
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
pub(crate) fn revocation_event(event: RevocationEvent) -> pb::RevocationEvent {
    let kind = match &event.revocation {
        Revocation::Session(_) => pb::RevocationKind::Session,
        Revocation::AccessToken(_) => pb::RevocationKind::AccessToken,
        Revocation::User(_) => pb::RevocationKind::User,
        Revocation::All => pb::RevocationKind::All,
    };
    pb::RevocationEvent {
        id: event.id,
        kind: kind.into(),
        subject_id: event.revocation.subject_id().to_owned(),
        create_at: timestamp(event.create_at),
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
}
