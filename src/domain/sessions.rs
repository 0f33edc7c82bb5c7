//! Sessions: created by a trusted login service (and minted for personal access tokens in
//! `auth`), listed, and revoked one, per user, or all at once, with Mattermost's permission
//! rules and its cap of 500 sessions per user.

use std::collections::BTreeMap;

use serde_json::json;
use tracing::info;

use super::model::SessionInsert;
use super::token_format::SecretKind;
use super::{
    Context,
    caller::Caller,
    error::{Error, Reason, Result},
    ids::SessionId,
    lifecycle::{Action, NewRecord},
    model::{Revocation, Session, TeamMember, UnixMillis, session_props},
    permissions::{Permission, SelfAccess, require_session_owner},
    secret::{PlainToken, TokenDigest},
    text::require_no_nul,
};

/// Mattermost's `maxSessionsLimit`: the least recently active sessions beyond it are revoked.
pub const MAX_SESSIONS_PER_USER: u64 = 500;
/// Longest device id.
pub const MAX_DEVICE_ID_CHARS: usize = 512;
/// Most props on one session.
pub const MAX_PROPS: usize = 50;
/// Longest prop key and value.
pub const MAX_PROP_KEY_CHARS: usize = 64;
pub const MAX_PROP_VALUE_CHARS: usize = 1024;

/// What a login service asks for.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    /// The user, or "me".
    pub user_id: String,
    /// Lifetime in milliseconds: `None` uses the configured session length, `Some(0)` never
    /// expires.
    pub lifetime_ms: Option<i64>,
    pub device_id: String,
    pub props: BTreeMap<String, String>,
}

/// A new session and its token, which is not stored and never shown again.
#[derive(Debug)]
pub struct CreatedSession {
    pub session: Session,
    pub token: PlainToken,
}

/// Creates a login session for a user. Requires `manage_system`.
pub async fn create_session(
    ctx: &Context,
    caller: &Caller,
    request: NewSession,
) -> Result<CreatedSession> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    let user_id = caller.resolve_user_id(&request.user_id)?;
    let lifetime_ms = request
        .lifetime_ms
        .unwrap_or(ctx.policy().session_length_ms);
    if lifetime_ms < 0 {
        return Err(Error::invalid(
            "lifetime",
            Reason::InvalidBodyParam,
            "must not be negative",
        ));
    }
    require_no_nul("device_id", &request.device_id)?;
    if request.device_id.chars().count() > MAX_DEVICE_ID_CHARS {
        return Err(Error::invalid(
            "device_id",
            Reason::InvalidBodyParam,
            format!("must be at most {MAX_DEVICE_ID_CHARS} characters"),
        ));
    }
    validate_props(&request.props)?;
    let user = ctx.require_user(&user_id).await?;
    if !user.is_active() {
        return Err(Error::invalid(
            "user_id",
            Reason::UserDeactivated,
            "the user is deactivated",
        ));
    }
    let now: UnixMillis = ctx.now();
    let token = ctx.mint_secret(SecretKind::Session);
    let mut props = request.props;
    // Like a Mattermost login: a CSRF token for cookie-authenticated writes.
    props
        .entry(session_props::CSRF.to_owned())
        .or_insert_with(super::ids::new_id);
    let session = Session {
        id: SessionId::generate(),
        user_id: user.id.clone(),
        user_access_token_id: None,
        create_at: now,
        expires_at: if lifetime_ms == 0 {
            0
        } else {
            now.saturating_add(lifetime_ms)
        },
        last_activity_at: now,
        length_ms: lifetime_ms,
        device_id: request.device_id,
        roles: user.roles.clone(),
        is_oauth: false,
        expired_notify: false,
        props,
    };
    let record = NewRecord::by(caller, Action::SessionCreated)
        .user(&session.user_id)
        .session(&session.id)
        .credential(ctx.audit_key(), &token)
        .detail(json!({
            "expires_at": session.expires_at,
            "device_id": session.device_id,
        }));
    let digest = ctx.hasher().digest(&token);
    match store_session_within_cap(ctx, &session, &digest, record).await? {
        SessionInsert::Inserted => {}
        SessionInsert::DigestTaken => return Err(Error::internal("session token collision")),
        SessionInsert::OwnerGone => {
            return Err(Error::NotFound {
                reason: Reason::UserNotFound,
            });
        }
    }
    info!(target: "audit", action = "create_session", user_id = %user.id, session_id = %session.id,
        "session created");
    Ok(CreatedSession { session, token })
}

/// Stores `session`, revoking the owner's least recently active sessions beyond
/// `MAX_SESSIONS_PER_USER - 1` in the same transaction (Mattermost's session cap), and
/// appending `created` (and, if sessions were revoked, a record of that by the same actor).
pub(crate) async fn store_session_within_cap(
    ctx: &Context,
    session: &Session,
    digest: &TokenDigest,
    created: NewRecord,
) -> Result<SessionInsert> {
    let on_trim = Revocation::User(session.user_id.clone());
    let trim_record = NewRecord {
        action: Action::UserSessionsRevoked,
        subjects: Default::default(),
        detail: String::new(),
        credential_hmac: String::new(),
        revocation: None,
        ..created.clone()
    }
    .user(&session.user_id)
    .detail(json!({"reason": "session_limit", "kept": MAX_SESSIONS_PER_USER - 1}))
    .revokes(on_trim.clone());
    let (outcome, revoked) = ctx
        .store()
        .insert_session_within_cap(
            session,
            digest,
            MAX_SESSIONS_PER_USER - 1,
            &trim_record,
            &created,
        )
        .await?;
    if revoked > 0 {
        ctx.revoked_here(&on_trim);
        info!(target: "audit", action = "revoke_session", user_id = %session.user_id, revoked,
            "session limit reached: least recently active sessions revoked");
    }
    Ok(outcome)
}

fn validate_props(props: &BTreeMap<String, String>) -> Result<()> {
    let invalid = |rule: String| Err(Error::invalid("props", Reason::InvalidBodyParam, rule));
    if props.len() > MAX_PROPS {
        return invalid(format!("must have at most {MAX_PROPS} entries"));
    }
    for (key, value) in props {
        require_no_nul("props", key)?;
        require_no_nul("props", value)?;
        if key.is_empty() || key.chars().count() > MAX_PROP_KEY_CHARS {
            return invalid(format!("keys must be 1 to {MAX_PROP_KEY_CHARS} characters"));
        }
        if value.chars().count() > MAX_PROP_VALUE_CHARS {
            return invalid(format!(
                "values must be at most {MAX_PROP_VALUE_CHARS} characters"
            ));
        }
        if key == session_props::TYPE || key == session_props::USER_ACCESS_TOKEN_ID {
            return invalid(format!(
                "key {key:?} is reserved for personal access token sessions"
            ));
        }
    }
    Ok(())
}

/// A user's sessions, most recently active first. Mattermost's plain "to user" rule: self,
/// or `edit_other_users` on a non-admin (no bot branch).
pub async fn get_sessions(ctx: &Context, caller: &Caller, user_id: &str) -> Result<Vec<Session>> {
    let user_id = caller.resolve_user_id(user_id)?;
    ctx.require_user_access(caller, &user_id, SelfAccess::Read)
        .await?;
    ctx.store().list_sessions_for_user(&user_id).await
}

/// A user's sessions, as [`get_sessions`], with the user's live team memberships, which
/// Mattermost attaches to every session it lists (`team_members`).
pub async fn get_sessions_with_team_members(
    ctx: &Context,
    caller: &Caller,
    user_id: &str,
) -> Result<(Vec<Session>, Vec<TeamMember>)> {
    let user_id = caller.resolve_user_id(user_id)?;
    ctx.require_user_access(caller, &user_id, SelfAccess::Read)
        .await?;
    let sessions = ctx.store().list_sessions_for_user(&user_id).await?;
    let members = ctx.store().list_team_members_for_user(&user_id).await?;
    Ok((sessions, members))
}

/// Revokes one session of a user. `session_id` may be the session's id or its token.
pub async fn revoke_session(
    ctx: &Context,
    caller: &Caller,
    user_id: &str,
    session_id: &str,
) -> Result<()> {
    let user_id = caller.resolve_user_id(user_id)?;
    ctx.require_user_access(caller, &user_id, SelfAccess::Write)
        .await?;
    if session_id.is_empty() {
        return Err(Error::invalid(
            "session_id",
            Reason::InvalidBodyParam,
            "is required",
        ));
    }
    // No session id contains NUL (and PostgreSQL cannot even compare text with one).
    if session_id.contains('\0') {
        return Err(Error::NotFound {
            reason: Reason::SessionNotFound,
        });
    }
    let digest = ctx.hasher().digest(&PlainToken::from_presented(session_id));
    let session = ctx
        .store()
        .find_session_by_id_or_digest(session_id, &digest)
        .await?
        .ok_or(Error::NotFound {
            reason: Reason::SessionNotFound,
        })?;
    require_session_owner(&session, &user_id)?;
    let revocation = Revocation::Session(session.id.clone());
    let record = NewRecord::by(caller, Action::SessionRevoked)
        .user(&user_id)
        .session(&session.id)
        .revokes(revocation.clone());
    ctx.store()
        .delete_session(&session.id, ctx.now(), &record)
        .await?;
    ctx.revoked_here(&revocation);
    info!(target: "audit", action = "revoke_session", user_id = %user_id, session_id = %session.id,
        caller = %caller, "session revoked");
    Ok(())
}

/// Ends the caller's own session (Mattermost's logout): deletes it and records a session
/// revocation in one transaction, so every replica refuses it at once. For a personal access
/// token this ends the session minted for it; the token stays valid and its next use mints
/// a new session, as in Mattermost. The local operator has no session to end.
pub async fn logout(ctx: &Context, caller: &Caller) -> Result<()> {
    let Caller::User(principal) = caller else {
        return Err(Error::Unauthenticated {
            reason: Reason::SessionExpired,
        });
    };
    let session = &principal.session;
    let revocation = Revocation::Session(session.id.clone());
    let mut record = NewRecord::by(caller, Action::SessionRevoked)
        .user(&session.user_id)
        .session(&session.id)
        .detail(json!({"reason": "logout"}))
        .revokes(revocation.clone());
    if let Some(token_id) = &session.user_access_token_id {
        record = record.token(token_id);
    }
    ctx.store()
        .delete_session(&session.id, ctx.now(), &record)
        .await?;
    ctx.revoked_here(&revocation);
    info!(target: "audit", action = "logout", user_id = %session.user_id, session_id = %session.id,
        access_token = session.user_access_token_id.is_some(), "session ended by logout");
    Ok(())
}

/// Revokes every session of one user. Personal access tokens stay valid.
pub async fn revoke_all_sessions(ctx: &Context, caller: &Caller, user_id: &str) -> Result<()> {
    let user_id = caller.resolve_user_id(user_id)?;
    ctx.require_user_access(caller, &user_id, SelfAccess::Write)
        .await?;
    let revocation = Revocation::User(user_id.clone());
    let record = NewRecord::by(caller, Action::UserSessionsRevoked)
        .user(&user_id)
        .detail(json!({"reason": "revoke_all"}))
        .revokes(revocation.clone());
    let revoked = ctx
        .store()
        .delete_sessions_for_user(&user_id, ctx.now(), &record)
        .await?;
    ctx.revoked_here(&revocation);
    info!(target: "audit", action = "revoke_all_sessions", user_id = %user_id, revoked,
        caller = %caller, "sessions of user revoked");
    Ok(())
}

/// Revokes every session of every user. Requires `manage_system`.
pub async fn revoke_sessions_from_all_users(ctx: &Context, caller: &Caller) -> Result<()> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    let record = NewRecord::by(caller, Action::AllSessionsRevoked).revokes(Revocation::All);
    let revoked = ctx.store().delete_all_sessions(ctx.now(), &record).await?;
    ctx.revoked_here(&Revocation::All);
    info!(target: "audit", action = "revoke_sessions_from_all_users", revoked,
        caller = %caller, "all sessions revoked");
    Ok(())
}
