//! IdentifyToken: given a token's value, what it is (kind, id, owner, state) without knowing
//! its id, and the lifecycle records it appears in, as GitLab's token information API answers
//! an admin holding a token found somewhere. The records are found by the audit HMAC of the
//! value (the records that name the secret: its creation, a rotation, a reuse, a leak report)
//! and then by the ids those records and the lookup name (its revocation, say), so a token
//! that was revoked long ago still has its trail.

use std::collections::BTreeMap;

use super::{
    Context,
    audit::{AuditQuery, Order},
    caller::Caller,
    error::{Error, Reason, Result},
    ids::{SessionId, TokenId},
    introspection::CredentialKind,
    lifecycle::StoredRecord,
    model::{Session, UnixMillis, User, UserAccessToken},
    permissions::Permission,
    secret::PlainToken,
    token_format::Shape,
};

/// Most records a trail holds (the newest).
pub const MAX_TRAIL_RECORDS: u64 = 200;

/// Longest value looked at, in bytes (tokens are at most 50 characters).
const MAX_VALUE_BYTES: usize = 1024;

/// Most distinct ids whose records are gathered.
const MAX_IDS: usize = 8;

/// What became of the credential, as far as this service can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailState {
    /// It authenticates.
    Active,
    /// A personal access token that is disabled.
    Disabled,
    /// Past its expiry.
    Expired,
    /// Its owner is deactivated.
    OwnerDeactivated,
    /// A personal access token's secret that a rotation replaced (still within its grace
    /// period if `grace_until` is ahead).
    Superseded,
    /// Not known now: never issued here, or revoked, deleted or logged out (the records say
    /// which).
    NotFound,
}

impl TrailState {
    /// The state's name in answers and documentation.
    pub fn id(self) -> &'static str {
        match self {
            TrailState::Active => "active",
            TrailState::Disabled => "disabled",
            TrailState::Expired => "expired",
            TrailState::OwnerDeactivated => "owner_deactivated",
            TrailState::Superseded => "superseded",
            TrailState::NotFound => "not_found",
        }
    }
}

/// What a token's value is and where it appears.
#[derive(Debug, Clone)]
pub struct TokenTrail {
    /// Its shape (format, checksum).
    pub shape: Shape,
    pub state: TrailState,
    /// The personal access token it is (or whose secret it was).
    pub access_token: Option<UserAccessToken>,
    /// The login session it is.
    pub session: Option<Session>,
    /// The owner, when known.
    pub owner: Option<User>,
    /// For a superseded secret: until when it still authenticates (0 = not at all).
    pub grace_until: UnixMillis,
    /// The audit HMAC of the value (ListAuditRecords' `credential_hmac`).
    pub credential_hmac: String,
    /// The records naming the value or the credential, newest first, at most 200.
    pub records: Vec<StoredRecord>,
}

impl TokenTrail {
    /// What the value is: a personal access token (found, or a secret a rotation replaced),
    /// a login session, or `None` when nothing is found.
    pub fn kind(&self) -> Option<CredentialKind> {
        if self.access_token.is_some() || self.state == TrailState::Superseded {
            Some(CredentialKind::PersonalAccessToken)
        } else if self.session.is_some() {
            Some(CredentialKind::Session)
        } else {
            None
        }
    }
}

/// `IdentifyToken`. Needs `manage_system` or `read_audit`. The value is never logged, stored
/// or repeated in an error.
pub async fn identify_token(ctx: &Context, caller: &Caller, value: &str) -> Result<TokenTrail> {
    ctx.require_any_permission(caller, &[Permission::ManageSystem, Permission::ReadAudit])?;
    let value = value.trim();
    if value.is_empty() || value.len() > MAX_VALUE_BYTES {
        return Err(Error::invalid(
            "token",
            Reason::InvalidBodyParam,
            format!("must be a token's value: 1 to {MAX_VALUE_BYTES} bytes"),
        ));
    }
    let token = PlainToken::from_presented(value);
    let now = ctx.now();
    let mut trail = TokenTrail {
        shape: token.shape(),
        state: TrailState::NotFound,
        access_token: None,
        session: None,
        owner: None,
        grace_until: 0,
        credential_hmac: ctx.audit_key().credential_hmac(value),
        records: Vec::new(),
    };
    if trail.shape.may_authenticate() {
        identify(ctx, &token, now, &mut trail).await?;
    }
    trail.records = records(ctx, &trail).await?;
    Ok(trail)
}

/// Looks the value up: a personal access token (current or superseded secret), else a login
/// session; fills in the state.
async fn identify(
    ctx: &Context,
    token: &PlainToken,
    now: UnixMillis,
    trail: &mut TokenTrail,
) -> Result<()> {
    let store = ctx.store();
    let digest = ctx.hasher().digest(token);
    if let Some((found, stored)) = store.find_access_token_by_digest(&digest).await?
        && stored.matches(&digest)
    {
        trail.state = if !found.is_active {
            TrailState::Disabled
        } else if found.expires_at > 0 && found.expires_at <= now {
            TrailState::Expired
        } else {
            TrailState::Active
        };
        trail.access_token = Some(found);
    } else if let Some((superseded, stored)) = store.find_superseded_secret(&digest).await?
        && stored.matches(&digest)
    {
        trail.state = TrailState::Superseded;
        trail.grace_until = superseded.grace_until;
        trail.access_token = store.find_access_token(&superseded.token_id).await?;
    } else if let Some((session, stored)) = store.find_session_by_digest(&digest).await?
        && stored.matches(&digest)
        && session.user_access_token_id.is_none()
    {
        trail.state = if session.is_expired(now) {
            TrailState::Expired
        } else {
            TrailState::Active
        };
        trail.session = Some(session);
    }
    let owner_id = trail
        .access_token
        .as_ref()
        .map(|t| &t.user_id)
        .or(trail.session.as_ref().map(|s| &s.user_id));
    if let Some(owner_id) = owner_id {
        trail.owner = store.find_user(owner_id).await?.map(|mut owner| {
            // Who holds read_audit need not see e-mail addresses.
            owner.email = String::new();
            owner
        });
        let deactivated = trail.owner.as_ref().is_none_or(|u| !u.is_active());
        if deactivated && trail.state == TrailState::Active {
            trail.state = TrailState::OwnerDeactivated;
        }
    }
    Ok(())
}

/// The records naming the value (by HMAC), then those naming the token or session ids found
/// there or by the lookup; newest first, each once, at most [`MAX_TRAIL_RECORDS`].
async fn records(ctx: &Context, trail: &TokenTrail) -> Result<Vec<StoredRecord>> {
    let query = |q: AuditQuery| AuditQuery {
        order: Order::NewestFirst,
        limit: MAX_TRAIL_RECORDS,
        ..q
    };
    let named = ctx
        .store()
        .list_records(&query(AuditQuery {
            credential_hmac: Some(trail.credential_hmac.clone()),
            ..AuditQuery::default()
        }))
        .await?;
    let mut token_ids: Vec<TokenId> = trail.access_token.iter().map(|t| t.id.clone()).collect();
    let mut session_ids: Vec<SessionId> = trail.session.iter().map(|s| s.id.clone()).collect();
    for record in &named {
        let token_id = &record.subjects.token_id;
        if !token_id.is_empty() && !token_ids.iter().any(|t| t.as_str() == token_id) {
            token_ids.push(TokenId::from_trusted(token_id.clone()));
        }
        let session_id = &record.subjects.session_id;
        if !session_id.is_empty() && !session_ids.iter().any(|s| s.as_str() == session_id) {
            session_ids.push(SessionId::from_trusted(session_id.clone()));
        }
    }
    let mut all: BTreeMap<i64, StoredRecord> = named.into_iter().map(|r| (r.id, r)).collect();
    for id in token_ids.into_iter().take(MAX_IDS) {
        for r in ctx
            .store()
            .list_records(&query(AuditQuery {
                token_id: Some(id),
                ..AuditQuery::default()
            }))
            .await?
        {
            all.insert(r.id, r);
        }
    }
    for id in session_ids.into_iter().take(MAX_IDS) {
        for r in ctx
            .store()
            .list_records(&query(AuditQuery {
                session_id: Some(id),
                ..AuditQuery::default()
            }))
            .await?
        {
            all.insert(r.id, r);
        }
    }
    Ok(all
        .into_values()
        .rev()
        .take(MAX_TRAIL_RECORDS as usize)
        .collect())
}
