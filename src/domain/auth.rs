//! Who is calling: credential parsing, authentication (the hot path), and the permission
//! helpers every operation uses (Mattermost's `SessionHasPermissionTo*`).

use std::{collections::BTreeMap, sync::Arc};

use tracing::debug;

use super::sessions::store_session_within_cap;
use super::{
    Context,
    error::{Error, Reason, Result},
    ids::{SessionId, UserId},
    model::{Revocation, Session, UnixMillis, User, UserAccessToken, now_millis, session_props},
    permissions::Permission,
    secret::{PlainToken, TokenDigest},
};
use crate::store::SessionInsert;

const DAY_MS: i64 = 86_400_000;

/// Mattermost truncates presented tokens to this many characters.
const MAX_PRESENTED_TOKEN_CHARS: usize = 50;

/// A session minted for a personal access token lasts 100 years (Mattermost's
/// `SessionUserAccessTokenExpiryHours`), or until the token expires if that is sooner.
const ACCESS_TOKEN_SESSION_LIFETIME_MS: i64 = 876_000 * 3_600_000;

/// Who performs an operation.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The operator on the machine (the `admin` CLI): unrestricted, like Mattermost's local
    /// mode.
    Local,
    /// An authenticated user.
    User(Arc<Principal>),
}

/// An authenticated credential: the user, the session it is (or was minted as), and for a
/// personal access token the token itself.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub session: Session,
    pub access_token: Option<UserAccessToken>,
}

impl Principal {
    /// Whether `revocation` may take this credential away (or change what it may do).
    pub fn covered_by(&self, revocation: &Revocation) -> bool {
        match revocation {
            Revocation::All => true,
            Revocation::Session(id) => &self.session.id == id,
            Revocation::AccessToken(id) => {
                self.access_token.as_ref().map(|t| &t.id) == Some(id)
                    || self.session.user_access_token_id.as_ref() == Some(id)
            }
            Revocation::User(id) => &self.user.id == id,
        }
    }

    /// When the credential stops authenticating; 0 means never.
    pub fn expires_at(&self) -> UnixMillis {
        match &self.access_token {
            Some(token) => token.expires_at,
            None => self.session.expires_at,
        }
    }
}

impl Caller {
    /// The calling user's id, if a user calls.
    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Caller::Local => None,
            Caller::User(p) => Some(&p.user.id),
        }
    }
}

/// Extracts the token from an `Authorization` header value exactly as Mattermost does:
/// `Bearer` (any case) followed by one separator character, or `Token` (any case) followed
/// by one separator; the token is truncated to 50 characters. `None` when there is no token.
pub fn parse_authorization_header(value: &str) -> Option<PlainToken> {
    authorization_header_token(value).and_then(presented_token)
}

/// The token part of an `Authorization` header value as Mattermost cuts it, before
/// truncation: `None` when the scheme is neither `Bearer` nor `Token`; empty for a bare
/// `Bearer ` (Mattermost then goes on with an empty token, which authenticates nobody,
/// instead of looking further).
pub fn authorization_header_token(value: &str) -> Option<&str> {
    let scheme_is = |len: usize, scheme: &str| {
        value
            .get(..len)
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    };
    if scheme_is(6, "bearer") {
        value.get(7..)
    } else if scheme_is(5, "token") {
        value.get(6..)
    } else {
        None
    }
}

/// A token as presented in a cookie, header or query parameter: truncated to 50 characters
/// as Mattermost does; `None` when empty.
pub fn presented_token(raw: &str) -> Option<PlainToken> {
    let end = raw
        .char_indices()
        .nth(MAX_PRESENTED_TOKEN_CHARS)
        .map_or(raw.len(), |(at, _)| at);
    (end > 0).then(|| PlainToken::from_presented(raw[..end].to_owned()))
}

fn refused(why: &'static str) -> Error {
    debug!(why, "credential refused");
    Error::Unauthenticated {
        reason: Reason::SessionExpired,
    }
}

impl Context {
    /// Authenticates a presented token: a session token, or a personal access token (whose
    /// session is minted on first use and only read afterwards). Every refusal is
    /// `Unauthenticated` with the same reason; the cause is logged at debug level only.
    pub async fn authenticate(&self, token: &PlainToken) -> Result<Arc<Principal>> {
        if !token.is_plausible() {
            return Err(refused("malformed token"));
        }
        let now = now_millis();
        let digest = self.hasher().digest(token);
        // A cached check that the clock has since expired falls through: the database decides
        // (and may know of an extension made by another replica).
        if let Some(principal) = self.cache().get(digest.as_str(), now)
            && self.still_usable(&principal, now)
        {
            if self.activity_due(&principal.session, now).is_none() {
                return Ok(principal);
            }
            // Rare (once per activity interval per session): record it, cache the update.
            let mut updated = (*principal).clone();
            self.record_activity(&mut updated.session, now);
            let updated = Arc::new(updated);
            self.cache().touch(digest.as_str(), &updated);
            return Ok(updated);
        }
        let generation = self.cache().generation();
        let principal = Arc::new(self.authenticate_from_store(&digest, now).await?);
        self.cache()
            .insert(digest.as_str(), &principal, generation, now);
        Ok(principal)
    }

    /// Whether a cached principal still passes the checks that depend on the clock.
    fn still_usable(&self, principal: &Principal, now: UnixMillis) -> bool {
        !principal.session.is_expired(now)
            && principal.user.is_active()
            && principal.access_token.as_ref().is_none_or(|t| {
                self.check_access_token_usable(t, &principal.user, now)
                    .is_ok()
            })
    }

    /// The token check against the database (the cache's miss path).
    async fn authenticate_from_store(
        &self,
        digest: &TokenDigest,
        now: UnixMillis,
    ) -> Result<Principal> {
        let store = self.store();
        // At most two rounds: a concurrent first use may mint the session before us.
        for _ in 0..2 {
            if let Some((session, stored)) = store.find_session_by_digest(digest).await? {
                if !stored.matches(digest) {
                    return Err(refused("digest mismatch"));
                }
                let mut principal = self.principal_of_session(session, now).await?;
                let _ = self.record_activity(&mut principal.session, now);
                return Ok(principal);
            }

            let (token, stored) = store
                .find_access_token_by_digest(digest)
                .await?
                .ok_or_else(|| refused("unknown token"))?;
            if !stored.matches(digest) {
                return Err(refused("digest mismatch"));
            }
            let user = store
                .find_user(&token.user_id)
                .await?
                .ok_or_else(|| refused("token owner missing"))?;
            self.check_access_token_usable(&token, &user, now)?;
            if !user.is_active() {
                return Err(refused("user deactivated"));
            }
            let session = access_token_session(&user, &token, now);
            match store_session_within_cap(self, &session, digest).await? {
                SessionInsert::Inserted => {
                    debug!(user_id = %user.id, token_id = %token.id, session_id = %session.id,
                        "minted session for personal access token");
                    return Ok(Principal {
                        user,
                        session,
                        access_token: Some(token),
                    });
                }
                SessionInsert::DigestTaken => continue,
                SessionInsert::OwnerGone => return Err(refused("access token revoked")),
            }
        }
        Err(refused("session vanished while minting"))
    }

    /// The principal a stored session stands for, if it still authenticates: not expired,
    /// its user active, and for a personal access token's session the token usable.
    async fn principal_of_session(&self, session: Session, now: UnixMillis) -> Result<Principal> {
        if session.is_expired(now) {
            return Err(refused("session expired"));
        }
        let store = self.store();
        let user = store
            .find_user(&session.user_id)
            .await?
            .ok_or_else(|| refused("session user missing"))?;
        if !user.is_active() {
            return Err(refused("user deactivated"));
        }
        let access_token = match &session.user_access_token_id {
            None => None,
            Some(token_id) => {
                let token = store
                    .find_access_token(token_id)
                    .await?
                    .ok_or_else(|| refused("access token revoked"))?;
                self.check_access_token_usable(&token, &user, now)?;
                Some(token)
            }
        };
        Ok(Principal {
            user,
            session,
            access_token,
        })
    }

    /// Checks again, against the database, a caller authenticated earlier (a long-lived
    /// stream's subscriber after a revocation that may cover it): the caller as it stands
    /// now, or `Unauthenticated` if its credential no longer authenticates.
    pub async fn reauthenticate(&self, caller: &Caller) -> Result<Caller> {
        let Caller::User(principal) = caller else {
            return Ok(Caller::Local);
        };
        let session = self
            .store()
            .find_session(&principal.session.id)
            .await?
            .ok_or_else(|| refused("session revoked"))?;
        let principal = self.principal_of_session(session, now_millis()).await?;
        Ok(Caller::User(Arc::new(principal)))
    }

    /// Records use of a session, at most every few minutes and off the request path: moves
    /// `last_activity_at`, and with `extend_session_length_with_activity` also the expiry
    /// (Mattermost's `ExtendSessionExpiryIfNeeded`: once the lesser of 1% of the session length
    /// and a day has passed since the expiry was last set, but at most every
    /// `session_activity_interval_ms`, 5 minutes by default).
    fn record_activity(&self, session: &mut Session, now: UnixMillis) -> bool {
        let Some(new_expiry) = self.activity_due(session, now) else {
            return false;
        };
        session.last_activity_at = now;
        if let Some(expires_at) = new_expiry {
            session.expires_at = expires_at;
        }
        let store = self.store().clone();
        let id = session.id.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_session(&id, now, new_expiry).await {
                debug!(session_id = %id, error = %e, "could not record session activity");
            }
        });
        true
    }

    /// Whether using `session` now must be recorded: `None` if not, else `Some` with the new
    /// expiry if the session is also extended.
    fn activity_due(&self, session: &Session, now: UnixMillis) -> Option<Option<UnixMillis>> {
        let policy = self.policy();
        let new_expiry = (policy.extend_session_length_with_activity
            && session.length_ms > 0
            && session.expires_at > 0
            && !session.is_oauth)
            .then(|| {
                let threshold = (session.length_ms / 100)
                    .min(DAY_MS)
                    .max(policy.session_activity_interval_ms);
                let elapsed = now - (session.expires_at - session.length_ms);
                (elapsed >= threshold).then(|| now.saturating_add(session.length_ms))
            })
            .flatten();
        let stale = now - session.last_activity_at >= policy.session_activity_interval_ms;
        (new_expiry.is_some() || stale).then_some(new_expiry)
    }

    fn check_access_token_usable(
        &self,
        token: &UserAccessToken,
        user: &User,
        now: UnixMillis,
    ) -> Result<()> {
        if !token.is_active {
            return Err(refused("access token disabled"));
        }
        if !self.policy().enable_user_access_tokens && !user.is_bot {
            return Err(refused("access tokens disabled by configuration"));
        }
        if token.is_expired(now) {
            return Err(refused("access token expired"));
        }
        Ok(())
    }

    /// Whether the caller holds `permission` through its system roles.
    pub fn has_permission(&self, caller: &Caller, permission: Permission) -> bool {
        match caller {
            Caller::Local => true,
            Caller::User(p) => self
                .policy()
                .roles
                .grants(p.user.roles.iter().map(String::as_str), permission),
        }
    }

    /// Fails with `PermissionDenied` naming `permission` unless the caller holds it.
    pub fn require_permission(&self, caller: &Caller, permission: Permission) -> Result<()> {
        if self.has_permission(caller, permission) {
            Ok(())
        } else {
            Err(Error::PermissionDenied { permission })
        }
    }

    /// Mattermost's `SessionHasPermissionToUser`: self, or `manage_system`, or
    /// `edit_other_users` on an existing target that is not a system admin.
    pub async fn can_act_on_user(&self, caller: &Caller, target: &UserId) -> Result<bool> {
        let Caller::User(p) = caller else {
            return Ok(true);
        };
        if &p.user.id == target || self.has_permission(caller, Permission::ManageSystem) {
            return Ok(true);
        }
        if !self.has_permission(caller, Permission::EditOtherUsers) {
            return Ok(false);
        }
        Ok(self
            .store()
            .find_user(target)
            .await?
            .is_some_and(|user| !user.is_system_admin()))
    }

    /// Mattermost's `SessionHasPermissionToUserOrBot`: for a bot target, its owner needs
    /// `manage_bots` and anyone else `manage_others_bots` (no fallback to
    /// `edit_other_users`); otherwise as [`Context::can_act_on_user`]. A caller may always act
    /// on itself (in Mattermost a bot reaches the same result through the user fallback).
    pub async fn can_act_on_user_or_bot(&self, caller: &Caller, target: &UserId) -> Result<bool> {
        let Caller::User(p) = caller else {
            return Ok(true);
        };
        if &p.user.id == target {
            return Ok(true);
        }
        match self.store().find_user(target).await? {
            Some(bot) if bot.is_bot => Ok(if bot.bot_owner_id.as_ref() == Some(&p.user.id) {
                self.has_permission(caller, Permission::ManageBots)
            } else {
                self.has_permission(caller, Permission::ManageOthersBots)
            }),
            _ => self.can_act_on_user(caller, target).await,
        }
    }

    /// Fails with `PermissionDenied` (reported as `edit_other_users`, as Mattermost does)
    /// unless the caller may act on `target`'s tokens.
    pub async fn require_user_or_bot(&self, caller: &Caller, target: &UserId) -> Result<()> {
        if self.can_act_on_user_or_bot(caller, target).await? {
            Ok(())
        } else {
            Err(Error::PermissionDenied {
                permission: Permission::EditOtherUsers,
            })
        }
    }

    /// Loads a user that must exist (`NotFound` otherwise).
    pub async fn require_user(&self, id: &UserId) -> Result<User> {
        self.store().find_user(id).await?.ok_or(Error::NotFound {
            reason: Reason::UserNotFound,
        })
    }

    /// Resolves a user id parameter: "me" is the caller.
    pub fn resolve_user_id(&self, caller: &Caller, raw: &str) -> Result<UserId> {
        match (raw, caller.user_id()) {
            ("me", Some(id)) => Ok(id.clone()),
            _ => UserId::parse(raw, "user_id", Reason::InvalidUrlParam),
        }
    }
}

/// Mattermost's CSRF rule for cookie-authenticated writes: the `X-CSRF-Token` header equals
/// the session's `csrf` prop, or (legacy fallback, unless strict) the request carries
/// `X-Requested-With: XMLHttpRequest`.
pub fn csrf_allows(
    session: &Session,
    csrf_header: Option<&str>,
    requested_with: Option<&str>,
    strict: bool,
) -> bool {
    let expected = session.props.get("csrf").map(String::as_str).unwrap_or("");
    let header_matches = match csrf_header {
        // An empty expected value never matches (Mattermost would let "" == "" pass).
        Some(sent) if !expected.is_empty() => {
            subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), expected.as_bytes()).into()
        }
        _ => false,
    };
    header_matches || (!strict && requested_with == Some("XMLHttpRequest"))
}

/// The session Mattermost mints for a personal access token on its first use.
fn access_token_session(user: &User, token: &UserAccessToken, now: UnixMillis) -> Session {
    let mut expires_at = now.saturating_add(ACCESS_TOKEN_SESSION_LIFETIME_MS);
    if token.expires_at > 0 && token.expires_at < expires_at {
        expires_at = token.expires_at;
    }
    let mut props = BTreeMap::new();
    props.insert(
        session_props::TYPE.to_owned(),
        session_props::TYPE_USER_ACCESS_TOKEN.to_owned(),
    );
    props.insert(
        session_props::USER_ACCESS_TOKEN_ID.to_owned(),
        token.id.to_string(),
    );
    if user.is_bot {
        props.insert(session_props::IS_BOT.to_owned(), "true".to_owned());
    }
    props.insert(
        session_props::IS_GUEST.to_owned(),
        user.is_guest().to_string(),
    );
    Session {
        id: SessionId::generate(),
        user_id: user.id.clone(),
        user_access_token_id: Some(token.id.clone()),
        create_at: now,
        expires_at,
        last_activity_at: now,
        length_ms: 0,
        device_id: String::new(),
        roles: user.roles.clone(),
        is_oauth: false,
        expired_notify: false,
        props,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(header: &str) -> Option<String> {
        parse_authorization_header(header).map(|t| t.expose().to_owned())
    }

    #[test]
    fn authorization_header_follows_mattermost() {
        assert_eq!(parsed("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(parsed("BEARER abc").as_deref(), Some("abc"));
        assert_eq!(parsed("bearer abc").as_deref(), Some("abc"));
        assert_eq!(parsed("Token abc").as_deref(), Some("abc"));
        assert_eq!(parsed("TOKEN abc").as_deref(), Some("abc"));
        assert_eq!(parsed("Bearerxyz").as_deref(), Some("yz"));
        assert_eq!(parsed("Bearer  x").as_deref(), Some(" x"));
        assert_eq!(parsed("Bearer "), None);
        assert_eq!(authorization_header_token("Bearer "), Some(""));
        assert_eq!(authorization_header_token("Bearer"), None);
        assert_eq!(authorization_header_token("Basic abc"), None);
        assert_eq!(parsed("Basic abc"), None);
        assert_eq!(parsed(""), None);
        let long = format!("Bearer {}", "a".repeat(80));
        assert_eq!(parsed(&long).unwrap().len(), 50);
        // Multi-byte input never panics.
        assert_eq!(parsed("Beäre x"), None);
        assert_eq!(parsed("Beaäer x"), None);
        assert_eq!(parsed("Bearerä"), None);
    }
}
