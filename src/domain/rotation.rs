//! Rotating a personal access token, as Mattermost's `RotateUserAccessToken` does (same id,
//! new secret returned once, the old secret and its minted session dead before the call
//! returns), and what token-service adds: rotation families and reuse detection.
//!
//! A rotation keeps the token (its "family") and remembers the digest of the secret it
//! replaced, never the secret. Presenting a replaced secret is refused like any unknown
//! token, and recorded in the lifecycle log as `access_token.reuse_detected` (with the
//! request's address and user agent); with `access_tokens.revoke_family_on_reuse` (the
//! default) the token is revoked too, since someone holds a copy of a credential that was
//! meant to be dead. A rotation may ask for a grace period (at most
//! `access_tokens.max_rotation_grace_period`, default 0 = none, Mattermost's behaviour):
//! the old secret keeps working until it ends, so a fleet can roll the new one out, and
//! its use meanwhile is not reuse.

use std::{collections::HashMap, sync::Mutex};

use serde_json::json;
use tracing::{info, warn};

use super::access_tokens::{
    CreatedUserAccessToken, TokenRef, check_expiry, find_token, require_expiry_after_epoch,
    require_tokens_enabled_for, token_not_found,
};
use super::token_format::SecretKind;
use super::{
    Context,
    caller::Caller,
    error::{Error, Reason, Result},
    lifecycle::{Action, Actor, NewRecord, Origin},
    model::{
        AccessTokenRotation, Revocation, RotationOutcome, SupersededSecret, UnixMillis,
        UserAccessToken,
    },
    permissions::Permission,
    secret::{PlainToken, TokenDigest},
};

/// The rotation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Revoke the token when a secret it replaced is presented after its grace period.
    pub revoke_family_on_reuse: bool,
    /// The longest grace period a rotation may ask for, in milliseconds; 0: none.
    pub max_grace_period_ms: i64,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            revoke_family_on_reuse: true,
            max_grace_period_ms: 0,
        }
    }
}

/// What a caller asks for when rotating a token.
#[derive(Debug, Clone)]
pub struct RotateUserAccessToken {
    /// The token to rotate.
    pub token: TokenRef,
    /// The token's new expiry, Unix milliseconds; `None` means never. The expiry policy
    /// applies to it as to a new token's.
    pub expires_at: Option<UnixMillis>,
    /// How long the old secret keeps working, in milliseconds; `None` or 0: not at all.
    pub grace_period_ms: Option<i64>,
}

/// The `token_id` of a REST rotation: required (Mattermost's rotate handler answers 400 for
/// an empty one, unlike revoke, disable and enable), otherwise any value, since a malformed
/// id is simply not found after the permission check.
pub fn rest_token_ref(raw: &str) -> Result<TokenRef> {
    if raw.is_empty() {
        return Err(Error::invalid(
            "token_id",
            Reason::InvalidBodyParam,
            "is required",
        ));
    }
    Ok(TokenRef::lenient(raw))
}

/// Rotates a token: same id, a new secret (returned once), the new `expires_at`. The old
/// secret and the session minted from it stop working before this returns (with a grace
/// period: when it ends), on this replica at once and on the others through the revocation
/// log. Checks in Mattermost's order; the grace period, token-service's own field, is
/// checked with the body.
pub async fn rotate_user_access_token(
    ctx: &Context,
    caller: &Caller,
    request: RotateUserAccessToken,
) -> Result<CreatedUserAccessToken> {
    let grace_ms = grace_period(ctx, request.grace_period_ms)?;
    ctx.require_permission(caller, Permission::CreateUserAccessToken)?;
    let TokenRef::Id(token_id) = request.token else {
        return Err(token_not_found());
    };
    let token = find_token(ctx, &token_id).await?;
    let owner = ctx.require_user(&token.user_id).await?;
    ctx.require_user_or_bot_access(caller, &owner.id).await?;
    ctx.require_permission_over(caller, &owner)?;
    super::access_tokens::require_no_wider_than_caller(caller, &token)?;
    if !token.is_active {
        return Err(disabled_token());
    }
    require_tokens_enabled_for(ctx, &owner)?;
    // As in Mattermost, whether the token has expired is not asked: an expired token that
    // is still active can be rotated back into use.
    let now = ctx.now();
    check_expiry(ctx, &owner, request.expires_at, now)?;
    require_expiry_after_epoch(request.expires_at)?;

    let secret = ctx.mint_secret(SecretKind::PersonalAccessToken);
    let expires_at = request.expires_at.unwrap_or(0);
    let rotation = AccessTokenRotation {
        new_digest: ctx.hasher().digest(&secret),
        expires_at,
        at: now,
        grace_until: if grace_ms > 0 {
            now.saturating_add(grace_ms)
        } else {
            0
        },
    };
    let revocation = Revocation::AccessToken(token.id.clone());
    let record = NewRecord::by(caller, Action::AccessTokenRotated)
        .user(&token.user_id)
        .token(&token.id)
        .credential(ctx.audit_key(), &secret)
        .detail(json!({
            "expires_at": expires_at,
            "grace_period_ms": grace_ms,
            "grace_until": rotation.grace_until,
        }))
        .revokes(revocation.clone());
    match ctx
        .store()
        .rotate_access_token(&token.id, &rotation, &record)
        .await?
    {
        RotationOutcome::Rotated => {}
        RotationOutcome::Missing => return Err(token_not_found()),
        RotationOutcome::Disabled => return Err(disabled_token()),
    }
    ctx.revoked_here(&revocation);
    info!(target: "audit", action = "rotate_user_access_token", token_id = %token.id,
        user_id = %token.user_id, caller = %caller, grace_period_ms = grace_ms,
        "personal access token rotated");
    Ok(CreatedUserAccessToken {
        token: UserAccessToken {
            expires_at,
            ..token
        },
        secret,
    })
}

/// The requested grace period in milliseconds (0 if none), within the configured cap.
fn grace_period(ctx: &Context, requested: Option<i64>) -> Result<i64> {
    let Some(ms) = requested.filter(|ms| *ms != 0) else {
        return Ok(0);
    };
    if ms < 0 {
        return Err(Error::invalid(
            "grace_period",
            Reason::InvalidBodyParam,
            "must not be negative",
        ));
    }
    let max = ctx.policy().rotation.max_grace_period_ms;
    if ms > max {
        let rule = if max == 0 {
            "is not allowed: this server's access_tokens.max_rotation_grace_period is 0".to_owned()
        } else {
            format!(
                "must be at most {max} ms (this server's access_tokens.max_rotation_grace_period)"
            )
        };
        return Err(Error::invalid(
            "grace_period",
            Reason::InvalidBodyParam,
            rule,
        ));
    }
    Ok(ms)
}

/// Mattermost answers 400; over gRPC the request is well formed and the token's state is
/// what stands in the way, so FAILED_PRECONDITION (enable the token, then retry).
fn disabled_token() -> Error {
    Error::FailedPrecondition {
        rule: "token_id: the token is disabled: enable it before rotating it".into(),
        reason: Reason::RotateDisabledToken,
    }
}

/// Reuse records are written at most once per superseded secret per this many
/// milliseconds on each replica, so replaying an old secret cannot flood the log.
pub const REUSE_RECORD_INTERVAL_MS: i64 = 60_000;

/// Most superseded secrets whose last reuse record is remembered; beyond it the oldest
/// entries are forgotten first.
const REUSE_THROTTLE_CAPACITY: usize = 4096;

/// When each superseded secret's reuse was last recorded on this replica (in memory).
pub type ReuseThrottle = RecordThrottle<TokenDigest>;

/// When a record about each key (a superseded secret, a token used from outside its bound
/// addresses) was last written on this replica, in memory: at most one per key per
/// [`REUSE_RECORD_INTERVAL_MS`], so replaying a refused credential cannot flood the log.
#[derive(Debug)]
pub struct RecordThrottle<K> {
    recorded: Mutex<HashMap<K, UnixMillis>>,
}

impl<K> Default for RecordThrottle<K> {
    fn default() -> Self {
        Self {
            recorded: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> RecordThrottle<K> {
    /// Whether a record about `key` at `now` is written (and, if so, remembers it). The lock
    /// is held for a map probe only, never across an await.
    pub fn admits(&self, key: &K, now: UnixMillis) -> bool {
        let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        if recorded
            .get(key)
            .is_some_and(|at| now - *at < REUSE_RECORD_INTERVAL_MS)
        {
            return false;
        }
        if recorded.len() >= REUSE_THROTTLE_CAPACITY {
            recorded.retain(|_, at| now - *at < REUSE_RECORD_INTERVAL_MS);
            if recorded.len() >= REUSE_THROTTLE_CAPACITY {
                let mut ages: Vec<UnixMillis> = recorded.values().copied().collect();
                ages.sort_unstable();
                let median = ages[ages.len() / 2];
                recorded.retain(|_, at| *at > median);
            }
        }
        recorded.insert(key.clone(), now);
        true
    }
}

impl Context {
    /// The token check's last resort for a digest that is neither a session nor a current
    /// token: a secret a rotation replaced. Within its grace period it stands for its token
    /// (returned with the end of the grace, which bounds the session minted for it);
    /// otherwise, or if it is unknown, it is refused like any unknown token, and a replaced
    /// secret's reuse is recorded (and its token revoked if so configured) off the request
    /// path.
    pub(super) async fn superseded_in_grace(
        &self,
        presented: &PlainToken,
        digest: &TokenDigest,
        now: UnixMillis,
    ) -> Result<(UserAccessToken, UnixMillis)> {
        let Some(superseded) = self.find_superseded(digest).await? else {
            return Err(super::authenticate::refused("unknown token"));
        };
        if !superseded.in_grace(now) {
            self.reuse_detected(presented, digest, &superseded, now);
            return Err(super::authenticate::refused("reuse of a rotated token"));
        }
        let token = self
            .store()
            .find_access_token(&superseded.token_id)
            .await?
            .ok_or_else(|| super::authenticate::refused("access token revoked"))?;
        Ok((token, superseded.grace_until))
    }

    /// The superseded secret stored under `digest`, if any.
    pub(super) async fn find_superseded(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<SupersededSecret>> {
        Ok(self
            .store()
            .find_superseded_secret(digest)
            .await?
            .filter(|(_, stored)| stored.matches(digest))
            .map(|(superseded, _)| superseded))
    }

    /// Records the reuse of a replaced secret (at most once a minute per secret on this
    /// replica) and, with `revoke_family_on_reuse`, revokes its token, in one transaction
    /// run off the request path, so the refusal takes as long as any unknown token's.
    pub(super) fn reuse_detected(
        &self,
        presented: &PlainToken,
        digest: &TokenDigest,
        superseded: &SupersededSecret,
        now: UnixMillis,
    ) {
        if !self.reuse_throttle().admits(digest, now) {
            return;
        }
        let revoke = self.policy().rotation.revoke_family_on_reuse;
        let origin = Origin::current();
        let revocation = Revocation::AccessToken(superseded.token_id.clone());
        let reuse = NewRecord::new_with(
            Action::AccessTokenReuseDetected,
            Actor::Unknown,
            origin.clone(),
        )
        .user(&superseded.user_id)
        .token(&superseded.token_id)
        .credential(self.audit_key(), presented)
        .detail(json!({
            "superseded_at": superseded.superseded_at,
            "grace_until": superseded.grace_until,
            "revoke_family": revoke,
        }));
        let revoke_record = revoke.then(|| {
            NewRecord::new_with(Action::AccessTokenRevoked, Actor::Service, origin)
                .user(&superseded.user_id)
                .token(&superseded.token_id)
                .detail(json!({"reason": "reuse_detected"}))
                .revokes(revocation.clone())
        });
        let ctx = self.clone();
        let token_id = superseded.token_id.clone();
        tokio::spawn(async move {
            match ctx
                .store()
                .record_access_token_reuse(&token_id, &reuse, revoke_record.as_ref(), now)
                .await
            {
                Ok(revoked) => {
                    if revoked {
                        ctx.revoked_here(&revocation);
                    }
                    warn!(target: "audit", action = "access_token_reuse_detected",
                        token_id = %token_id, ip = %reuse.origin.ip, revoked,
                        "a rotated personal access token's old secret was presented");
                }
                Err(e) => {
                    warn!(token_id = %token_id, error = %e,
                        "could not record the reuse of a rotated personal access token");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> TokenDigest {
        TokenDigest::from_stored(format!("{n:064}"))
    }

    #[test]
    fn reuse_of_one_secret_is_recorded_at_most_once_a_minute() {
        let throttle = ReuseThrottle::default();
        assert!(throttle.admits(&digest(1), 1_000));
        assert!(!throttle.admits(&digest(1), 1_000 + REUSE_RECORD_INTERVAL_MS - 1));
        assert!(
            throttle.admits(&digest(2), 1_001),
            "another secret is its own"
        );
        assert!(throttle.admits(&digest(1), 1_000 + REUSE_RECORD_INTERVAL_MS));
    }

    #[test]
    fn the_throttle_stays_bounded() {
        let throttle = ReuseThrottle::default();
        for n in 0..(REUSE_THROTTLE_CAPACITY as i64 * 2) {
            let d = TokenDigest::from_stored(format!("{n:064}"));
            assert!(throttle.admits(&d, n));
        }
        assert!(throttle.recorded.lock().unwrap().len() <= REUSE_THROTTLE_CAPACITY);
    }
}
