//! Fail static, bounded and chosen (`cache.stale_if_unavailable`, 0 by default: fail closed).
//!
//! While the database cannot be reached, a credential this replica cached before the outage
//! keeps authenticating for at most `stale_if_unavailable` from the outage's start (when the
//! revocation feed, or a token check, first found the database unreachable), if its cache
//! entry was fresh when the outage began. Expiry and the owner's state are checked as on
//! every hit; a credential never seen here fails (UNAVAILABLE / 503) as before; every write
//! still needs the database and fails. Readiness says `degraded` meanwhile.
//!
//! Why it is right, and where it is not: during an outage no revocation can commit, so a
//! cache that applied the log up to the moment the database went away is still right,
//! except for what other replicas commit while only this one is cut off (a partition).
//! Those revocations are missed here for at most the window.

use std::sync::Arc;

use super::{
    Context,
    caller::Principal,
    error::{Error, Result},
    model::UnixMillis,
    secret::PlainToken,
};

impl Context {
    /// A stale answer while the feed has found the database unreachable (the cache is not
    /// trusted, the outage is within its window): answered without trying the database,
    /// which would only fail after its timeout. `Ok(None)` when there is none.
    pub(super) fn stale_during_outage(
        &self,
        digest: &[u8; 32],
        presented: &PlainToken,
        now: UnixMillis,
    ) -> Result<Option<Arc<Principal>>> {
        if self.cache().is_trusted() {
            return Ok(None);
        }
        self.stale_answer(digest, presented, now)
    }

    /// What a token check whose database read failed with `err` answers: a stale answer
    /// if the database is unavailable and fail static allows one, else `err`.
    pub(super) fn stale_if_unavailable(
        &self,
        digest: &[u8; 32],
        presented: &PlainToken,
        now: UnixMillis,
        err: Error,
    ) -> Result<Arc<Principal>> {
        if !matches!(err, Error::Unavailable(_)) {
            return Err(err);
        }
        self.cache().outage_began(now);
        self.stale_answer(digest, presented, now)?.ok_or(err)
    }

    /// The cached principal of `digest` if fail static may answer with it now, checked as a
    /// cache hit is (clock, owner, bound address) before its use is noted.
    fn stale_answer(
        &self,
        digest: &[u8; 32],
        presented: &PlainToken,
        now: UnixMillis,
    ) -> Result<Option<Arc<Principal>>> {
        let Some(principal) = self.cache().get_stale(digest, now) else {
            return Ok(None);
        };
        if !self.still_usable(&principal, now) {
            return Ok(None);
        }
        self.require_bound_address(principal.access_token.as_ref(), presented, now)?;
        self.metrics().record_stale_answer();
        if let Some(token) = &principal.access_token {
            self.note_token_use(&token.id, now);
        }
        Ok(Some(principal))
    }
}
