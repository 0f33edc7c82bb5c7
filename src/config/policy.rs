//! What the domain takes from the configuration: its [`Policy`], mapped here and nowhere
//! else (units converted: hours and milliseconds to the domain's milliseconds; the role
//! overrides applied to the built-in role table).

use crate::domain::ext_authz::{ExtAuthzPolicy, normalize_subject};
use crate::domain::guess_throttle::GuessThrottlePolicy;
use crate::domain::leaks::LeakReportPolicy;
use crate::domain::rate_limit::RateLimit;
use crate::domain::rotation::RotationPolicy;
use crate::domain::{
    Policy, cache::CacheSettings, jobs::JobsPolicy, permissions::RoleTable,
    webhooks::WebhookPolicy, webrtc::WebrtcPolicy,
};

use super::Config;

impl TryFrom<&Config> for Policy {
    /// The role overrides are refused (unknown permission, bad role name); `validate`
    /// reports the same message.
    type Error = String;

    fn try_from(config: &Config) -> Result<Self, String> {
        Ok(Policy {
            enable_user_access_tokens: config.enable_user_access_tokens,
            maximum_personal_access_token_lifetime_days: config
                .maximum_personal_access_token_lifetime_days,
            roles: RoleTable::with_overrides(&config.roles)?,
            session_length_ms: i64::from(config.session_length_hours) * 3_600_000,
            extend_session_length_with_activity: config.extend_session_length_with_activity,
            session_activity_interval_ms: i64::try_from(config.session_activity_interval_ms)
                .unwrap_or(i64::MAX),
            enable_commands: config.enable_commands,
            webrtc: config.webrtc_policy(),
            strict_csrf: config.strict_csrf,
            show_email_address: config.show_email_address,
            cache: CacheSettings {
                enable: config.cache.enable,
                capacity: config.cache.capacity,
                ttl_ms: i64::try_from(config.cache.ttl_ms).unwrap_or(i64::MAX),
            },
            stale_if_unavailable_ms: millis(config.cache.stale_if_unavailable),
            revocation_poll_interval_ms: config.revocation_poll_interval_ms,
            log_retention_ms: i64::try_from(config.audit.retention.0)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
            webhooks: WebhookPolicy {
                allow_private_addresses: config.webhooks.allow_private_addresses,
                timeout_ms: config.webhooks.timeout.millis(),
                lease_ms: i64::try_from(config.webhooks.lease.millis()).unwrap_or(i64::MAX),
                disable_after_ms: i64::try_from(config.webhooks.disable_after.millis())
                    .unwrap_or(i64::MAX),
                poll_interval_ms: config.webhooks.poll_interval.millis(),
            },
            rotation: RotationPolicy {
                revoke_family_on_reuse: config.access_tokens.revoke_family_on_reuse,
                max_grace_period_ms: i64::try_from(
                    config.access_tokens.max_rotation_grace_period.millis(),
                )
                .unwrap_or(i64::MAX),
            },
            jobs: JobsPolicy {
                enable: config.jobs.enable,
                cleanup_interval_ms: millis(config.jobs.cleanup_expired_access_tokens_interval),
                notify_interval_ms: millis(config.jobs.notify_expiring_access_tokens_interval),
                batch_size: config.jobs.batch_size,
                lease_ms: millis(config.jobs.lease),
                poll_interval_ms: config.jobs.poll_interval.millis(),
                revoke_time_budget_ms: (config.request_timeout_ms > 0)
                    .then(|| config.request_timeout_ms * 2 / 3),
            },
            token_format: config.token_format.format()?,
            leak_reports: LeakReportPolicy {
                enable: config.leak_reports.enable,
                limit: RateLimit {
                    per_minute: config.leak_reports.requests_per_minute,
                    burst: config.leak_reports.burst,
                },
            },
            max_watch_streams: config.connections.max_watch_streams,
            guess_throttle: GuessThrottlePolicy {
                enable: config.guess_throttle.enable,
                limit: RateLimit {
                    per_minute: config.guess_throttle.failures_per_minute,
                    burst: config.guess_throttle.burst,
                },
                cool_down_ms: millis(config.guess_throttle.cool_down),
            },
            ext_authz: ExtAuthzPolicy {
                allowed_client_subjects: config
                    .ext_authz
                    .allowed_client_subjects
                    .iter()
                    .map(|subject| normalize_subject(subject))
                    .collect(),
            },
        })
    }
}

/// A span in the domain's signed milliseconds.
fn millis(span: super::Span) -> i64 {
    i64::try_from(span.millis()).unwrap_or(i64::MAX)
}

impl Config {
    /// The WebRTC settings as the domain uses them.
    pub fn webrtc_policy(&self) -> WebrtcPolicy {
        WebrtcPolicy {
            enable: self.webrtc.enable,
            gateway_url: self.webrtc.gateway_url.clone(),
            stun_uri: self.webrtc.stun_uri.clone(),
            turn_uri: self.webrtc.turn_uri.clone(),
            turn_shared_secret: self.webrtc.turn_shared_secret.expose().to_owned(),
            credential_ttl_secs: self.webrtc.credential_ttl.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_the_default_configuration_in_the_domains_units() {
        let policy = Policy::try_from(&Config::default()).unwrap();
        assert!(policy.enable_user_access_tokens);
        assert_eq!(policy.maximum_personal_access_token_lifetime_days, 0);
        assert_eq!(policy.session_length_ms, 720 * 3_600_000);
        assert!(policy.extend_session_length_with_activity);
        assert_eq!(policy.session_activity_interval_ms, 300_000);
        assert!(policy.enable_commands);
        assert!(!policy.webrtc.enable);
        assert_eq!(policy.webrtc.credential_ttl_secs, 86_400);
        assert!(!policy.strict_csrf);
        assert_eq!(
            policy.cache,
            CacheSettings {
                enable: true,
                capacity: 100_000,
                ttl_ms: 300_000
            }
        );
        assert_eq!(policy.stale_if_unavailable_ms, 0);
        assert_eq!(policy.revocation_poll_interval_ms, 50);
        assert_eq!(policy.webhooks, WebhookPolicy::default());
        assert_eq!(
            policy.rotation,
            RotationPolicy {
                revoke_family_on_reuse: true,
                max_grace_period_ms: 0
            }
        );
        assert_eq!(policy.jobs, JobsPolicy::default());
        assert_eq!(policy.guess_throttle, GuessThrottlePolicy::default());
    }

    #[test]
    fn role_overrides_the_domain_refuses_are_refused() {
        let mut config = Config::default();
        config
            .roles
            .insert("system_user".to_owned(), vec!["fly".to_owned()]);
        let err = Policy::try_from(&config).unwrap_err();
        assert!(err.contains("fly"), "{err}");
    }
}
