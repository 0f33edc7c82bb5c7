//! The domain: every rule of the service (permissions, validation, token format, expiry)
//! lives here. Transports translate requests into calls of these functions and results back;
//! the store runs the queries. This module imports neither tonic, prost, axum nor sea_orm.

pub mod access_tokens;
pub mod audit;
pub mod authenticate;
pub mod bound_tokens;
pub mod cache;
pub mod caller;
pub mod clock;
pub mod commands;
pub mod credentials;
pub mod error;
pub mod events;
pub mod ext_authz;
pub mod fail_static;
#[cfg(test)]
pub(crate) mod fuzz_tests;
pub mod gateway;
pub mod guess_throttle;
pub mod ids;
pub mod introspection;
pub mod jobs;
pub mod leaks;
pub mod lifecycle;
pub mod model;
pub mod non_compliant;
pub mod paging;
pub mod permissions;
pub mod rate_limit;
pub mod revocations;
pub mod rotation;
pub mod secret;
pub mod sessions;
pub mod text;
pub mod token_format;
pub mod token_trail;
pub mod token_usage;
pub mod users;
pub mod webhook_worker;
pub mod webhooks;
pub mod webrtc;

use std::sync::Arc;

use crate::store::Store;
use clock::Clock;
use model::UnixMillis;
use permissions::RoleTable;
use secret::{CommandTokenCipher, TokenHasher};
use webrtc::WebrtcPolicy;

/// Settings the rules depend on.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Mattermost's `EnableUserAccessTokens`. When false, personal access tokens of non-bot
    /// users cannot be created and do not authenticate; bots are exempt.
    pub enable_user_access_tokens: bool,
    /// Mattermost's `MaximumPersonalAccessTokenLifetimeDays`; 0 means no limit.
    pub maximum_personal_access_token_lifetime_days: u32,
    /// Role to permission table.
    pub roles: RoleTable,
    /// Default lifetime of a login session, in milliseconds (Mattermost's
    /// `SessionLengthWebInHours`, 720 hours).
    pub session_length_ms: i64,
    /// Mattermost's `ExtendSessionLengthWithActivity`: use moves a login session's expiry to
    /// now + session length (written at most every few minutes, off the request path).
    pub extend_session_length_with_activity: bool,
    /// Session activity (last_activity_at, extended expiry) is written at most this often per
    /// session, in milliseconds.
    pub session_activity_interval_ms: i64,
    /// Mattermost's `EnableCommands`.
    pub enable_commands: bool,
    /// WebRTC/TURN settings.
    pub webrtc: WebrtcPolicy,
    /// Mattermost's `ExperimentalStrictCSRFEnforcement`: no `X-Requested-With` fallback.
    pub strict_csrf: bool,
    /// Mattermost's `PrivacySettings.ShowEmailAddress`: every caller who may see a user sees
    /// its e-mail address (otherwise only the user and holders of `manage_system`).
    pub show_email_address: bool,
    /// The hot-path token cache.
    pub cache: cache::CacheSettings,
    /// `cache.stale_if_unavailable` in milliseconds (0: fail closed); see [`fail_static`].
    pub stale_if_unavailable_ms: i64,
    /// How often the revocation log is read (the feed and WatchRevocations streams).
    pub revocation_poll_interval_ms: u64,
    /// How long lifecycle records are kept, in milliseconds (at least a day: replicas and
    /// `WatchRevocations` subscribers resume from the log).
    pub log_retention_ms: i64,
    /// Webhook delivery.
    pub webhooks: webhooks::WebhookPolicy,
    /// Rotation of personal access tokens and reuse detection.
    pub rotation: rotation::RotationPolicy,
    /// The background jobs (expired-token cleanup, expiry notices, non-compliant batches).
    pub jobs: jobs::JobsPolicy,
    /// The format new secrets (tokens, sessions, command tokens) are minted in.
    pub token_format: token_format::TokenFormat,
    /// Leaked-token reports (ReportLeakedTokens).
    pub leak_reports: leaks::LeakReportPolicy,
    /// External authorization for gateways (Envoy ext_authz).
    pub ext_authz: ext_authz::ExtAuthzPolicy,
    /// `WatchRevocations` and `WatchEvents` streams this replica serves at once, at most.
    pub max_watch_streams: usize,
    /// Failed credential checks per client address (`[guess_throttle]`).
    pub guess_throttle: guess_throttle::GuessThrottlePolicy,
}

/// Everything a domain operation needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct Context {
    inner: Arc<ContextInner>,
}

#[derive(Debug)]
struct ContextInner {
    store: Store,
    policy: Policy,
    hasher: TokenHasher,
    command_cipher: CommandTokenCipher,
    cache: cache::PrincipalCache,
    /// Passes what the revocation feed reads on to `WatchRevocations` subscribers.
    feed: tokio::sync::broadcast::Sender<revocations::FeedItem>,
    /// The newest lifecycle record id the feed has seen: readers of the whole log wake on it.
    log_advanced: tokio::sync::watch::Sender<i64>,
    /// Chains the lifecycle log and names credentials in it.
    audit_key: lifecycle::AuditKey,
    /// This server's metrics (the transports record requests, the feed revocation lag).
    metrics: Arc<crate::metrics::Metrics>,
    /// Where every rule reads the current time.
    clock: Arc<dyn Clock>,
    /// Sends webhook messages over HTTP (installed by the server; the domain speaks no HTTP).
    webhook_sender: std::sync::OnceLock<Arc<dyn webhooks::WebhookSender>>,
    /// When each rotated-away secret's reuse was last recorded here.
    reuse_throttle: rotation::ReuseThrottle,
    /// When each bound token's use from each refused address was last recorded here.
    bound_address_throttle: rotation::RecordThrottle<(ids::TokenId, Option<std::net::IpAddr>)>,
    /// Personal access token uses noted by the token check, until the next last-use flush.
    usage: token_usage::UsageCollector,
    /// Leaked-token reports per client address.
    leak_report_limiter: rate_limit::RateLimiter,
    /// One permit per open `WatchRevocations` / `WatchEvents` stream.
    watch_streams: Arc<tokio::sync::Semaphore>,
    /// Failed credential checks per client address.
    guess_throttle: guess_throttle::GuessThrottle,
}

impl Context {
    /// Builds a context.
    pub fn new(
        store: Store,
        policy: Policy,
        hasher: TokenHasher,
        command_cipher: CommandTokenCipher,
        audit_key: lifecycle::AuditKey,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let leak_report_limiter = rate_limit::RateLimiter::new(policy.leak_reports.limit);
        let watch_streams = Arc::new(tokio::sync::Semaphore::new(policy.max_watch_streams));
        let guess_throttle = guess_throttle::GuessThrottle::new(policy.guess_throttle);
        Self {
            inner: Arc::new(ContextInner {
                store: store.with_audit_key(audit_key.clone()),
                audit_key,
                log_advanced: tokio::sync::watch::Sender::new(0),
                cache: cache::PrincipalCache::new(policy.cache)
                    .keeping_stale_for(policy.stale_if_unavailable_ms),
                feed: tokio::sync::broadcast::Sender::new(revocations::FEED_CAPACITY),
                metrics: crate::metrics::Metrics::new(),
                policy,
                hasher,
                command_cipher,
                clock,
                webhook_sender: std::sync::OnceLock::new(),
                reuse_throttle: rotation::ReuseThrottle::default(),
                bound_address_throttle: rotation::RecordThrottle::default(),
                usage: token_usage::UsageCollector::default(),
                leak_report_limiter,
                watch_streams,
                guess_throttle,
            }),
        }
    }

    /// The current time, from the context's clock.
    pub fn now(&self) -> UnixMillis {
        self.inner.clock.now()
    }

    /// The context's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// A new random secret of `kind`, in the configured format.
    pub(crate) fn mint_secret(&self, kind: token_format::SecretKind) -> secret::PlainToken {
        secret::PlainToken::mint(&self.inner.policy.token_format, kind)
    }

    pub(crate) fn hasher(&self) -> &TokenHasher {
        &self.inner.hasher
    }

    pub(crate) fn command_cipher(&self) -> &CommandTokenCipher {
        &self.inner.command_cipher
    }

    /// The hot-path cache.
    pub fn cache(&self) -> &cache::PrincipalCache {
        &self.inner.cache
    }

    /// The rate limit of leaked-token reports.
    pub(crate) fn leak_report_limiter(&self) -> &rate_limit::RateLimiter {
        &self.inner.leak_report_limiter
    }

    /// Failed credential checks per client address.
    pub(crate) fn guess_throttle(&self) -> &guess_throttle::GuessThrottle {
        &self.inner.guess_throttle
    }

    /// Token uses waiting for the next last-use flush.
    pub fn usage(&self) -> &token_usage::UsageCollector {
        &self.inner.usage
    }

    /// This server's metrics.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.inner.metrics
    }

    /// The figures metrics read at scrape time: the cache's counters, the pool's usage.
    pub fn metric_gauges(&self) -> crate::metrics::Gauges {
        let cache = self.cache().stats();
        let pool = self.store().pool_stats();
        crate::metrics::Gauges {
            cache_hits: cache.hits,
            cache_misses: cache.misses,
            cache_evictions: cache.evictions,
            cache_entries: cache.entries,
            cache_trusted: cache.trusted,
            pool_connections: pool.connections,
            pool_idle: pool.idle,
            pool_max: pool.max,
            check_connections: pool.check_connections,
            watch_streams: self.watch_streams(),
        }
    }

    /// Installs the sender of webhook messages (once; later calls are ignored).
    pub fn install_webhook_sender(&self, sender: Arc<dyn webhooks::WebhookSender>) {
        let _ = self.inner.webhook_sender.set(sender);
    }

    pub(crate) fn webhook_sender(&self) -> Option<&dyn webhooks::WebhookSender> {
        self.inner.webhook_sender.get().map(|s| s.as_ref())
    }

    /// A place for one more watch stream (held until the stream ends), unless
    /// `max_watch_streams` are open.
    pub(crate) fn watch_stream_permit(&self) -> error::Result<tokio::sync::OwnedSemaphorePermit> {
        self.inner
            .watch_streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| error::Error::ResourceExhausted {
                rule: format!(
                    "this replica serves its maximum of {} watch streams \
                     (connections.max_watch_streams); retry later or on another replica",
                    self.inner.policy.max_watch_streams
                ),
                reason: error::Reason::TooManyStreams,
            })
    }

    /// Watch streams open now.
    pub fn watch_streams(&self) -> usize {
        self.inner.policy.max_watch_streams - self.inner.watch_streams.available_permits()
    }

    pub(crate) fn feed(&self) -> &tokio::sync::broadcast::Sender<revocations::FeedItem> {
        &self.inner.feed
    }

    pub(crate) fn reuse_throttle(&self) -> &rotation::ReuseThrottle {
        &self.inner.reuse_throttle
    }

    pub(crate) fn bound_address_throttle(
        &self,
    ) -> &rotation::RecordThrottle<(ids::TokenId, Option<std::net::IpAddr>)> {
        &self.inner.bound_address_throttle
    }

    /// The audit key (credential HMACs in lifecycle records).
    pub fn audit_key(&self) -> &lifecycle::AuditKey {
        &self.inner.audit_key
    }

    /// The newest lifecycle record id this replica's feed has seen; `changed()` wakes when
    /// the log may have grown (a PostgreSQL notification of any append, or each poll).
    pub fn log_advanced(&self) -> tokio::sync::watch::Receiver<i64> {
        self.inner.log_advanced.subscribe()
    }

    /// Records that the log reached `newest` (the feed calls it after each read).
    pub(crate) fn log_advanced_to(&self, newest: i64) {
        self.inner.log_advanced.send_if_modified(|seen| {
            let grew = newest > *seen;
            if grew {
                *seen = newest;
            }
            grew
        });
    }
}
