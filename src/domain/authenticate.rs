//! Authenticating a presented credential: the token check every request passes through (the
//! hot path). A cache hit touches no database; a miss reads the session (or the personal
//! access token, minting its session on first use, as Mattermost does) and caches the
//! answer. Session activity is recorded off the request path.

use std::{collections::BTreeMap, sync::Arc};

use serde_json::json;
use tracing::debug;

use super::lifecycle::{Action, Actor, NewRecord, Origin};
use super::model::SessionInsert;
use super::sessions::store_session_within_cap;
use super::{
    Context,
    caller::{Caller, Principal},
    error::{Error, Reason, Result},
    ids::SessionId,
    model::{Session, StoredSession, UnixMillis, User, UserAccessToken, session_props},
    secret::{PlainToken, TokenDigest},
    token_format::Shape,
};

const DAY_MS: i64 = 86_400_000;

/// A session minted for a personal access token lasts 100 years (Mattermost's
/// `SessionUserAccessTokenExpiryHours`), or until the token expires if that is sooner.
pub(crate) const ACCESS_TOKEN_SESSION_LIFETIME_MS: i64 = 876_000 * 3_600_000;

pub(super) fn refused(why: &'static str) -> Error {
    debug!(why, "credential refused");
    Error::Unauthenticated {
        reason: Reason::SessionExpired,
    }
}

impl Context {
    /// Authenticates a presented token: a session token, or a personal access token (whose
    /// session is minted on first use and only read afterwards). Every refusal is
    /// `Unauthenticated` with the same reason; the cause is logged at debug level only. A
    /// token bound to address blocks is checked against the current request's client address
    /// (see `bound_tokens`), on a cache hit too.
    pub async fn authenticate(&self, token: &PlainToken) -> Result<Arc<Principal>> {
        let refused_shape = match token.shape() {
            Shape::Mattermost | Shape::Checksummed(_) => None,
            Shape::BadChecksum => Some("bad_checksum"),
            Shape::Malformed => Some("malformed"),
        };
        if let Some(shape) = refused_shape {
            self.metrics().record_refused_token_shape(shape);
            return Err(refused("malformed token"));
        }
        let now = self.now();
        // This thread's copy is found by the token's quick key; the MAC (the shards' and the
        // database's key) is computed only when the copy does not answer.
        let quick = self.hasher().quick_key(token);
        let mut mac = None;
        let mut mac_of = || *mac.get_or_insert_with(|| self.hasher().mac(token));
        let cached = self
            .cache()
            .copy(quick, now)
            .or_else(|| self.cache().get_from_shard(&mac_of(), quick, now));
        // A cached check that the clock has since expired falls through: the database decides
        // (and may know of an extension made by another replica).
        if let Some(principal) = cached {
            if self.still_usable(&principal, now) {
                self.require_bound_address(principal.access_token.as_ref(), token, now)?;
                self.note_access_token_use(&principal, now);
                if self.activity_due(&principal.session, now).is_none() {
                    return Ok(principal);
                }
                // Rare (once per activity interval per session): record it, cache the update.
                let mut updated = (*principal).clone();
                self.record_activity(&mut updated.session, now);
                let updated = Arc::new(updated);
                self.cache().touch(&mac_of(), &updated);
                return Ok(updated);
            }
            // This thread's copy must not answer again before the database has.
            self.cache().forget_copy(&mac_of());
        }
        let mac = mac_of();
        if let Some(principal) = self.stale_during_outage(&mac, token, now)? {
            return Ok(principal);
        }
        let digest = TokenDigest::from_mac(&mac);
        let generation = self.cache().generation();
        // Boxed: the miss path's state (the store's query futures) is tens of times larger
        // than the hit path's, and an unboxed await would make every caller's future that
        // large, copied on each move (measured: most of the RFC 7662 handler's instructions
        // were memcpy of futures). One allocation per miss, none per hit.
        let from_store = Box::pin(self.authenticate_from_store(token, &digest, now));
        let principal = match from_store.await {
            Ok(principal) => Arc::new(principal),
            Err(err) => return self.stale_if_unavailable(&mac, token, now, err),
        };
        self.cache().insert(&mac, &principal, generation, now);
        self.require_bound_address(principal.access_token.as_ref(), token, now)?;
        self.note_access_token_use(&principal, now);
        Ok(principal)
    }

    /// A personal access token that authenticated is noted for its last use (written later,
    /// in batches, by the last-use flush); sessions are not.
    fn note_access_token_use(&self, principal: &Principal, now: UnixMillis) {
        if let Some(token) = &principal.access_token {
            self.note_token_use(&token.id, now);
        }
    }

    /// Whether a cached principal still passes the checks that depend on the clock.
    pub(super) fn still_usable(&self, principal: &Principal, now: UnixMillis) -> bool {
        !principal.session.is_expired(now)
            && principal.user.is_active()
            && principal.access_token.as_ref().is_none_or(|t| {
                self.check_access_token_usable(t, &principal.user, now)
                    .is_ok()
            })
    }

    /// The token check against the database (the cache's miss path): one query reads the
    /// session stored under the digest with its user and token, and the personal access
    /// token whose secret has this digest with its owner. Only a PAT's first use writes (its
    /// session, once); only a digest nothing names reads further (a rotated-away secret).
    /// Those rarer steps are boxed, so this future (moved into its box on every miss) is the
    /// size of the common path's, not of the ORM's write futures.
    async fn authenticate_from_store(
        &self,
        presented: &PlainToken,
        digest: &TokenDigest,
        now: UnixMillis,
    ) -> Result<Principal> {
        let store = self.store();
        // At most two rounds: a concurrent first use may mint the session before us.
        for _ in 0..2 {
            let found = store.find_credential_by_digest(digest).await?;
            if let Some(row) = found.session {
                if !row.stored_digest.matches(digest) {
                    return Err(refused("digest mismatch"));
                }
                // The session a rotated-away secret minted during its grace period outlives
                // the grace (expired): using it after is reuse, not an expired session.
                if row.session.is_expired(now)
                    && row.session.user_access_token_id.is_some()
                    && !found.digest_names_a_token
                    && let Some(superseded) = Box::pin(self.find_superseded(digest)).await?
                    && !superseded.in_grace(now)
                {
                    self.reuse_detected(presented, digest, &superseded, now);
                    return Err(refused("reuse of a rotated token"));
                }
                let mut principal = self.principal_of(row, now)?;
                let _ = self.record_activity(&mut principal.session, now);
                return Ok(principal);
            }

            // A current secret; else one a rotation replaced, while its grace period lasts
            // (its session ends with the grace).
            let (token, user, grace_until) = match found.access_token {
                Some((token, user, stored)) => {
                    if !stored.matches(digest) {
                        return Err(refused("digest mismatch"));
                    }
                    (token, user, None)
                }
                None => {
                    let (token, grace_until) =
                        Box::pin(self.superseded_in_grace(presented, digest, now)).await?;
                    let user = Box::pin(store.find_user(&token.user_id))
                        .await?
                        .ok_or_else(|| refused("token owner missing"))?;
                    (token, user, Some(grace_until))
                }
            };
            self.check_access_token_usable(&token, &user, now)?;
            if !user.is_active() {
                return Err(refused("user deactivated"));
            }
            // A use from outside a bound token's blocks mints nothing.
            self.require_bound_address(Some(&token), presented, now)?;
            let mut session = access_token_session(&user, &token, now);
            let mut detail = json!({"minted_for_access_token": true});
            if let Some(grace_until) = grace_until {
                session.expires_at = session.expires_at.min(grace_until);
                detail["rotated_secret_in_grace"] = json!(true);
            }
            detail["expires_at"] = json!(session.expires_at);
            let record = NewRecord::new_with(
                Action::SessionCreated,
                Actor::User(user.id.clone()),
                Origin::current(),
            )
            .user(&user.id)
            .token(&token.id)
            .session(&session.id)
            .detail(detail);
            match Box::pin(store_session_within_cap(self, &session, digest, record)).await? {
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
    fn principal_of(&self, row: StoredSession, now: UnixMillis) -> Result<Principal> {
        let StoredSession {
            session,
            user,
            access_token,
            ..
        } = row;
        if session.is_expired(now) {
            return Err(refused("session expired"));
        }
        let user = user.ok_or_else(|| refused("session user missing"))?;
        if !user.is_active() {
            return Err(refused("user deactivated"));
        }
        let access_token = match &session.user_access_token_id {
            None => None,
            Some(_) => {
                let token = access_token.ok_or_else(|| refused("access token revoked"))?;
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
        let row = self
            .store()
            .find_session_with_owner(&principal.session.id)
            .await?
            .ok_or_else(|| refused("session revoked"))?;
        let principal = self.principal_of(row, self.now())?;
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
