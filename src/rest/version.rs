//! The version headers of every REST response.
//!
//! `X-Version-Id` has Mattermost's shape, `<version>.<build number>.<config hash>.<licensed>`
//! (`web/handlers.go`), so clients that parse it (the web and mobile apps compare its first
//! three numbers with the server version a feature needs) keep working: the version is the
//! Mattermost API version whose behaviour the shim reproduces. Our own version is in
//! `X-Token-Service-Version`.

use std::fmt::Write as _;

use axum::http::{HeaderValue, header::HeaderName};
use sha2::{Digest, Sha256};

use crate::domain::Policy;

/// The Mattermost server version whose `/api/v4` behaviour the shim reproduces: 11.2 renamed
/// `manage_slash_commands` to `manage_own_slash_commands`, the newest change we follow
/// (the 2026 token rotation route is not served).
pub(crate) const MATTERMOST_VERSION: &str = "11.2.0";

/// Mattermost's version header.
pub(crate) const X_VERSION_ID: HeaderName = HeaderName::from_static("x-version-id");

/// token-service's own version.
pub(crate) const X_TOKEN_SERVICE_VERSION: HeaderName =
    HeaderName::from_static("x-token-service-version");

/// Both headers' values, computed once per router.
#[derive(Debug, Clone)]
pub(crate) struct VersionHeaders {
    pub(crate) version_id: HeaderValue,
    pub(crate) own: HeaderValue,
}

impl VersionHeaders {
    pub(crate) fn new(policy: &Policy) -> Self {
        let version_id = format!(
            "{MATTERMOST_VERSION}.{}.{}.false",
            build_number(env!("CARGO_PKG_VERSION")),
            config_hash(policy)
        );
        let version_id = HeaderValue::from_static(interned(version_id));
        Self {
            version_id,
            own: HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
        }
    }
}

/// `value`, kept for the life of the process, once per distinct value (one per
/// configuration a process serves with, in practice one): a header value made from a static
/// string is copied into each response without touching a shared reference count.
fn interned(value: String) -> &'static str {
    static SEEN: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = seen.iter().find(|known| **known == value) {
        return known;
    }
    let kept: &'static str = Box::leak(value.into_boxed_str());
    seen.push(kept);
    kept
}

/// Mattermost's build number is one word of digits (its CI build); ours is our version as
/// one number, major * 1 000 000 + minor * 1 000 + patch (0.1.0 is 1000), so it has no dots
/// and grows with every release.
fn build_number(version: &str) -> u64 {
    let mut parts = version
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    next() * 1_000_000 + next() * 1_000 + next()
}

/// Mattermost's `ClientConfigHash` is the MD5 of the configuration its clients read; ours is
/// the first 128 bits of SHA-256 (32 hex digits, as long as an MD5) over the settings that
/// change what a client sees, so the header changes when they do.
fn config_hash(policy: &Policy) -> String {
    let visible = format!(
        "EnableUserAccessTokens={};MaximumPersonalAccessTokenLifetimeDays={};EnableCommands={};\
         EnableWebrtc={};ExtendSessionLengthWithActivity={};SessionLengthMs={};StrictCsrf={}",
        policy.enable_user_access_tokens,
        policy.maximum_personal_access_token_lifetime_days,
        policy.enable_commands,
        policy.webrtc.enable,
        policy.extend_session_length_with_activity,
        policy.session_length_ms,
        policy.strict_csrf,
    );
    let digest = Sha256::digest(visible.as_bytes());
    digest[..16].iter().fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_are_kept_once() {
        let a = interned("11.2.0.1000.ab.false".to_owned());
        let b = interned("11.2.0.1000.ab.false".to_owned());
        assert!(std::ptr::eq(a, b));
        assert_ne!(interned("11.2.0.1000.cd.false".to_owned()), a);
    }

    #[test]
    fn build_numbers_are_digits_that_grow_with_the_version() {
        assert_eq!(build_number("0.1.0"), 1_000);
        assert_eq!(build_number("1.2.3"), 1_002_003);
        assert_eq!(build_number("2.0.0-rc.1"), 2_000_000);
        assert!(build_number("0.2.0") > build_number("0.1.9"));
    }
}
