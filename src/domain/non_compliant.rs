//! Mattermost's non-compliant token operations (2026): counting and revoking the personal
//! access tokens that break the current maximum-lifetime policy
//! (`maximum_personal_access_token_lifetime_days`), for an administrator who has just set or
//! lowered it. Only new tokens are checked against the policy when they are created;
//! these operations deal with the ones made before.
//!
//! Non-compliant: active, owned by a user who is not a bot, and expiring never or later than
//! now + the maximum. Mattermost's store excludes every bot token while its app layer's
//! comments say user-owned bots' tokens count (the spec calls it unconfirmed); we exclude
//! bots, as the store does: a bot's token is a service's credential, and revoking every bot
//! token of a deployment at once is not what an administrator tidying users' tokens expects.

use serde_json::json;
use tracing::info;

use super::{
    Context,
    caller::Caller,
    error::{Error, Reason, Result},
    jobs::{DAY_MS, MAX_BATCHES},
    lifecycle::{Action, NewRecord},
    model::{Revocation, UnixMillis},
    permissions::Permission,
};

/// What a revoke did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonCompliantRevocation {
    /// Tokens deleted.
    pub count: u64,
    /// False if the batch limit was reached with tokens left (run it again).
    pub complete: bool,
}

/// The latest expiry the policy allows now, if there is a policy.
fn max_expires_at(ctx: &Context) -> Option<UnixMillis> {
    let days = i64::from(ctx.policy().maximum_personal_access_token_lifetime_days);
    (days > 0).then(|| ctx.now().saturating_add(days * DAY_MS))
}

/// Counts the non-compliant tokens; 0 without a policy (without asking the database, as
/// Mattermost does). Permission: `manage_system`.
pub async fn count_non_compliant_user_access_tokens(ctx: &Context, caller: &Caller) -> Result<u64> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    match max_expires_at(ctx) {
        Some(max) => ctx.store().count_non_compliant_access_tokens(max).await,
        None => Ok(0),
    }
}

/// Revokes (deletes, with their minted sessions) the non-compliant tokens, in batches of
/// `jobs.batch_size` (one transaction each, one `access_token.revoked` record per token with
/// `detail.reason = "non_compliant"`), up to [`MAX_BATCHES`] batches and, after the first
/// batch, no longer than `jobs.revoke_time_budget_ms` (two thirds of the request timeout):
/// with tokens left, the answer says it is not complete. Permission:
/// `manage_system`; without a policy it is refused (FAILED_PRECONDITION,
/// `app.user_access_token.revoke_non_compliant.no_policy.app_error`).
pub async fn revoke_non_compliant_user_access_tokens(
    ctx: &Context,
    caller: &Caller,
) -> Result<NonCompliantRevocation> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    if max_expires_at(ctx).is_none() {
        return Err(Error::FailedPrecondition {
            rule: "maximum_personal_access_token_lifetime_days is 0: there is no maximum lifetime for tokens to break".to_owned(),
            reason: Reason::NonCompliantNoPolicy,
        });
    }
    let batch_size = ctx.policy().jobs.batch_size;
    let revoked = NewRecord::by(caller, Action::AccessTokenRevoked)
        .detail(json!({"reason": "non_compliant"}));
    let mut done = NonCompliantRevocation {
        count: 0,
        complete: false,
    };
    let started = std::time::Instant::now();
    let budget = ctx
        .policy()
        .jobs
        .revoke_time_budget_ms
        .map(std::time::Duration::from_millis);
    for batch in 0..MAX_BATCHES {
        if batch > 0 && budget.is_some_and(|budget| started.elapsed() >= budget) {
            break;
        }
        let now = ctx.now();
        let max = max_expires_at(ctx).unwrap_or(now);
        let (picked, deleted) = ctx
            .store()
            .delete_non_compliant_access_tokens(max, now, batch_size, |token| {
                revoked
                    .clone()
                    .user(&token.user_id)
                    .token(&token.id)
                    .revokes(Revocation::AccessToken(token.id.clone()))
            })
            .await?;
        for token in &deleted {
            ctx.revoked_here(&Revocation::AccessToken(token.id.clone()));
            info!(target: "audit", action = "revoke_non_compliant_user_access_token",
                token_id = %token.id, user_id = %token.user_id, caller = %caller,
                "non-compliant personal access token revoked");
        }
        done.count += deleted.len() as u64;
        if (picked as u64) < batch_size {
            done.complete = true;
            break;
        }
    }
    Ok(done)
}
