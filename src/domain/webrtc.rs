//! WebRTC gateway and TURN credentials (Mattermost's legacy `GET /webrtc/token`), with
//! per-user TURN REST credentials that coturn checks with `use-auth-secret`:
//! username `<unix expiry>:<user id>`, password base64(HMAC-SHA1(secret, username)).

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use super::{
    Context,
    caller::Caller,
    error::{Error, Reason, Result},
};

/// Longest credential lifetime accepted in configuration (seven days).
pub const MAX_CREDENTIAL_TTL_SECS: u64 = 7 * 86_400;

/// WebRTC settings, validated at start-up.
#[derive(Clone)]
pub struct WebrtcPolicy {
    pub enable: bool,
    pub gateway_url: String,
    pub stun_uri: String,
    pub turn_uri: String,
    pub turn_shared_secret: String,
    pub credential_ttl_secs: u64,
}

impl std::fmt::Debug for WebrtcPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebrtcPolicy")
            .field("enable", &self.enable)
            .field("gateway_url", &self.gateway_url)
            .field("stun_uri", &self.stun_uri)
            .field("turn_uri", &self.turn_uri)
            .field("turn_shared_secret", &"<redacted>")
            .field("credential_ttl_secs", &self.credential_ttl_secs)
            .finish()
    }
}

impl WebrtcPolicy {
    /// Refuses settings that could never work, naming the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.enable {
            return Ok(());
        }
        let ws = |url: &str| url.starts_with("ws://") || url.starts_with("wss://");
        if !self.gateway_url.is_empty() && !ws(&self.gateway_url) {
            return Err("webrtc.gateway_url: must start with ws:// or wss://".into());
        }
        if !self.stun_uri.is_empty() && !self.stun_uri.starts_with("stun:") {
            return Err(
                "webrtc.stun_uri: must start with stun: (e.g. stun:turn.example.com:3478)".into(),
            );
        }
        if !self.turn_uri.is_empty() {
            let turn = self.turn_uri.starts_with("turn:") || self.turn_uri.starts_with("turns:");
            if !turn {
                return Err("webrtc.turn_uri: must start with turn: or turns: (e.g. turn:turn.example.com:3478)".into());
            }
            if self.turn_shared_secret.is_empty() {
                return Err("webrtc.turn_shared_secret: required when webrtc.turn_uri is set (coturn's static-auth-secret)".into());
            }
        }
        if self.credential_ttl_secs == 0 || self.credential_ttl_secs > MAX_CREDENTIAL_TTL_SECS {
            return Err(format!(
                "webrtc.credential_ttl: must be between 1 second and 7 days ({MAX_CREDENTIAL_TTL_SECS} s)"
            ));
        }
        Ok(())
    }
}

/// Credentials for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebrtcCredentials {
    /// The gateway token: base64 of the session id, as Mattermost did.
    pub token: String,
    pub gateway_url: String,
    pub stun_uri: String,
    pub turn_uri: String,
    pub turn_username: String,
    pub turn_password: String,
    pub credential_ttl_secs: u64,
}

/// Issues credentials for the caller. Disabled: UNIMPLEMENTED `api.webrtc.disabled.app_error`.
pub fn get_webrtc_token(ctx: &Context, caller: &Caller) -> Result<WebrtcCredentials> {
    let policy = &ctx.policy().webrtc;
    if !policy.enable {
        return Err(Error::Unimplemented {
            reason: Reason::WebrtcDisabled,
        });
    }
    let Caller::User(p) = caller else {
        return Err(Error::Unauthenticated {
            reason: Reason::SessionExpired,
        });
    };
    let now_secs = u64::try_from(ctx.now() / 1000).unwrap_or(0);
    let (turn_username, turn_password) = if policy.turn_uri.is_empty() {
        (String::new(), String::new())
    } else {
        turn_credentials(
            &policy.turn_shared_secret,
            now_secs + policy.credential_ttl_secs,
            p.user.id.as_str(),
        )
    };
    Ok(WebrtcCredentials {
        token: STANDARD.encode(p.session.id.as_str()),
        gateway_url: policy.gateway_url.clone(),
        stun_uri: policy.stun_uri.clone(),
        turn_uri: policy.turn_uri.clone(),
        turn_username,
        turn_password,
        credential_ttl_secs: policy.credential_ttl_secs,
    })
}

/// The TURN REST API credential pair for `user` expiring at `expiry` (Unix seconds).
pub fn turn_credentials(secret: &str, expiry: u64, user: &str) -> (String, String) {
    let username = format!("{expiry}:{user}");
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(username.as_bytes());
    let password = STANDARD.encode(mac.finalize().into_bytes());
    super::secret::minted::note(&password);
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_password_is_base64_hmac_sha1_of_the_username() {
        // Reference value computed with: printf '1700000000:alice' | openssl dgst -sha1 -hmac secret -binary | base64
        let (user, pass) = turn_credentials("secret", 1_700_000_000, "alice");
        assert_eq!(user, "1700000000:alice");
        assert_eq!(pass.len(), 28);
        assert_eq!(pass, "d8soP47RbdIKLDUOpnJPVQyq5Ts=");
    }

    #[test]
    fn invalid_settings_name_the_key() {
        let ok = WebrtcPolicy {
            enable: true,
            gateway_url: "wss://gw".into(),
            stun_uri: "stun:s:3478".into(),
            turn_uri: "turn:t:3478".into(),
            turn_shared_secret: "x".into(),
            credential_ttl_secs: 86_400,
        };
        assert!(ok.validate().is_ok());
        let cases = [
            (
                WebrtcPolicy {
                    stun_uri: "s:3478".into(),
                    ..ok.clone()
                },
                "webrtc.stun_uri",
            ),
            (
                WebrtcPolicy {
                    turn_uri: "http://t".into(),
                    ..ok.clone()
                },
                "webrtc.turn_uri",
            ),
            (
                WebrtcPolicy {
                    turn_shared_secret: String::new(),
                    ..ok.clone()
                },
                "webrtc.turn_shared_secret",
            ),
            (
                WebrtcPolicy {
                    credential_ttl_secs: 8 * 86_400,
                    ..ok.clone()
                },
                "webrtc.credential_ttl",
            ),
            (
                WebrtcPolicy {
                    gateway_url: "http://gw".into(),
                    ..ok.clone()
                },
                "webrtc.gateway_url",
            ),
        ];
        for (policy, key) in cases {
            assert!(policy.validate().unwrap_err().starts_with(key), "{key}");
        }
        assert!(!format!("{ok:?}").contains("\"x\""));
    }
}
