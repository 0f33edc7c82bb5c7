//! The sections of the configuration file (`[tls]`, `[cache]`, `[command_tokens]`,
//! `[webrtc]`, `[webhooks]`, `[jobs]`, `[log]`, `[pool]`, `[access_tokens]`, `[last_use]`,
//! `[token_format]`, `[leak_reports]`, `[guess_throttle]`,
//! `[ext_authz]`) and
//! their defaults.

use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::{Secret, Span, Ttl};

/// TLS for the gRPC and the HTTP listener (one certificate for both), and optional
/// client-certificate verification (mTLS). Files are read at start-up; a restart picks up
/// new ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. With `key_file`, both listeners speak TLS only.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    pub key_file: Option<PathBuf>,
    /// PEM bundle of CA certificates. When set, every client must present a certificate
    /// signed by one of them (mutual TLS) on both listeners.
    pub client_ca_file: Option<PathBuf>,
}

impl TlsConfig {
    /// TLS is on (both files are set; `validate` refuses one without the other).
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }

    /// Checks which keys are set together; the files themselves are read by `crate::tls`.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                return Err("tls.key_file: required when tls.cert_file is set".into());
            }
            (None, Some(_)) => {
                return Err("tls.cert_file: required when tls.key_file is set".into());
            }
            _ => {}
        }
        if self.client_ca_file.is_some() && !self.enabled() {
            return Err("tls.client_ca_file: client certificates need TLS: set tls.cert_file and tls.key_file too".into());
        }
        for (key, path) in [
            ("tls.cert_file", &self.cert_file),
            ("tls.key_file", &self.key_file),
            ("tls.client_ca_file", &self.client_ca_file),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(format!(
                    "{key}: must not be empty (leave it unset for no TLS)"
                ));
            }
        }
        Ok(())
    }
}

/// The in-process cache of token checks (digest to principal).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Off: every token check reads the database.
    pub enable: bool,
    /// Most cached tokens.
    pub capacity: usize,
    /// Longest time a cached check is reused, in milliseconds: the bound on staleness if a
    /// revocation were ever missed.
    pub ttl_ms: u64,
    /// Fail static: how long, from the start of a database outage, credentials cached before
    /// it keep authenticating (0: fail closed). At most 1d.
    pub stale_if_unavailable: Span,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enable: true,
            capacity: 100_000,
            ttl_ms: 300_000,
            stale_if_unavailable: Span(0),
        }
    }
}

impl CacheConfig {
    /// Checks the values deserialization cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.stale_if_unavailable.millis() > 86_400_000 {
            return Err("cache.stale_if_unavailable: must be 0 (fail closed) to 1d".into());
        }
        Ok(())
    }
}

/// The lifecycle log as an audit trail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// How long lifecycle records are kept: seconds, or a number with s, m, h or d. Default
    /// 365d; at least 1d (replicas and WatchRevocations subscribers resume from the log).
    pub retention: Ttl,
    /// The audit key (hex, at least 32 bytes): chains the records' hashes and computes the
    /// HMACs that name credentials in records. Unset: derived from the server key. Changing
    /// it breaks the chain check of the records written before.
    pub key: Option<Secret>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention: Ttl(365 * 86_400),
            key: None,
        }
    }
}

/// Slash-command token encryption keys. Without configuration, a key derived from the server
/// key (id "server") is used; configured keys add to it, so rotation is: add a key, make it
/// current, restart every replica. Old tokens keep decrypting with the key they name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommandTokensConfig {
    /// The key id new tokens are encrypted with.
    pub current_key: Option<String>,
    /// Key id to 32-byte AES key as hex.
    pub keys: BTreeMap<String, Secret>,
}

/// WebRTC settings (Mattermost's legacy `WebrtcSettings`, with per-user TURN credentials).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebrtcConfig {
    /// Serve GetWebrtcToken; off answers UNIMPLEMENTED `api.webrtc.disabled.app_error`.
    pub enable: bool,
    /// The gateway WebSocket URL (`ws://` or `wss://`).
    pub gateway_url: String,
    /// STUN URI (`stun:host:port`).
    pub stun_uri: String,
    /// TURN URI (`turn:host:port` or `turns:`).
    pub turn_uri: String,
    /// coturn's `static-auth-secret`.
    pub turn_shared_secret: Secret,
    /// TURN credential lifetime: seconds, or a number with s, m, h or d. Default 1d, at most 7d.
    pub credential_ttl: Ttl,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        Self {
            enable: false,
            gateway_url: String::new(),
            stun_uri: String::new(),
            turn_uri: String::new(),
            turn_shared_secret: Secret::new(""),
            credential_ttl: Ttl(86_400),
        }
    }
}

/// Log settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// "text" (human-readable) or "json".
    pub format: LogFormat,
    /// A tracing filter, e.g. "info" or "token_service=debug". `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Database pool settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    pub max_connections: u32,
    pub min_connections: u32,
    pub connect_timeout_secs: u64,
    pub acquire_timeout_secs: u64,
    /// Connections held for the token check's reads, outside the pool (opened when first
    /// needed; see `store::held_connections`).
    pub check_connections: u32,
    /// On PostgreSQL and SQLite, how many shared statements of cache misses run at once, each on one of
    /// the check connections (at most `check_connections`; see
    /// `store::credentials::CredentialLookups`). Unset: [`PoolConfig::check_batches_on`].
    pub check_batches: Option<u32>,
}

impl PoolConfig {
    /// The shared statements of cache misses at once on the configured database:
    /// `check_batches` if set, else 1 on SQLite (its engine runs in this process, so a second
    /// statement only adds hand-offs between threads: measured about 13 % fewer checks a
    /// second at 2) and 2 on a database server (a second statement keeps misses moving while
    /// one waits on the network).
    pub fn check_batches_on(&self, sqlite: bool) -> u32 {
        self.check_batches.unwrap_or(if sqlite { 1 } else { 2 })
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            min_connections: 1,
            connect_timeout_secs: 5,
            acquire_timeout_secs: 5,
            check_connections: 8,
            check_batches: None,
        }
    }
}

/// Webhook delivery (the lifecycle log, signed, to the endpoints CreateWebhook registers).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Run delivery on this replica (off: it manages endpoints but leaves delivery to the
    /// replicas where it is on).
    pub enable_delivery: bool,
    /// Accept endpoints on loopback, private, link-local, unspecified or multicast
    /// addresses (literal in the URL, or resolved from its host name at delivery). Off:
    /// refused, so an endpoint cannot reach services on the server's own network.
    pub allow_private_addresses: bool,
    /// How long one delivery may take (connect, send, answer) before it counts as failed.
    pub timeout: Span,
    /// How long a replica holds an endpoint's delivery lease without renewing it; another
    /// replica takes the endpoint over after it lapses.
    pub lease: Span,
    /// An endpoint failing without a single success for this long is disabled (at least 1d).
    pub disable_after: Span,
    /// How often each replica looks for endpoints that are due, besides being woken when
    /// the lifecycle log grows.
    pub poll_interval: Span,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            enable_delivery: true,
            allow_private_addresses: false,
            timeout: Span(10_000),
            lease: Span(30_000),
            disable_after: Span(3 * 86_400_000),
            poll_interval: Span(1_000),
        }
    }
}

impl WebhooksConfig {
    /// Checks the values deserialization cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=300_000).contains(&self.timeout.0) {
            return Err("webhooks.timeout: must be between 1ms and 5m".into());
        }
        if !(100..=3_600_000).contains(&self.lease.0) {
            return Err("webhooks.lease: must be between 100ms and 1h".into());
        }
        if self.disable_after.0 < 86_400_000 {
            return Err("webhooks.disable_after: must be at least 1d".into());
        }
        if !(10..=60_000).contains(&self.poll_interval.0) {
            return Err("webhooks.poll_interval: must be between 10ms and 60s".into());
        }
        Ok(())
    }
}

/// Personal access token rotation (`RotateUserAccessToken`) and the detection of a rotated
/// secret's reuse.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessTokensConfig {
    /// When a secret that a rotation replaced is presented after its grace period, also
    /// revoke the token (its current secret): someone holds a copy of a credential that was
    /// meant to be dead.
    pub revoke_family_on_reuse: bool,
    /// The longest `grace_period` a rotation may ask for (the old secret keeps working that
    /// long); 0 = rotations take no grace period (Mattermost's behaviour). At most 1d.
    pub max_rotation_grace_period: Span,
}

impl Default for AccessTokensConfig {
    fn default() -> Self {
        Self {
            revoke_family_on_reuse: true,
            max_rotation_grace_period: Span(0),
        }
    }
}

/// Envoy external authorization (`envoy.service.auth.v3.Authorization/Check` on the gRPC
/// listener).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtAuthzConfig {
    /// Client certificate subjects (mutual TLS: `tls.client_ca_file` set) that may call Check
    /// without a token, as a service identity holding the introspection permission; e.g.
    /// `"CN=envoy-gateway, O=platform"` (`openssl x509 -noout -subject` spells it; spaces
    /// around `=` and `,` and the case of attribute names do not matter). In the environment,
    /// separated by `;`.
    pub allowed_client_subjects: Vec<String>,
}

impl ExtAuthzConfig {
    fn validate(&self) -> Result<(), String> {
        for subject in &self.allowed_client_subjects {
            crate::domain::ext_authz::validate_subject(subject)
                .map_err(|e| format!("ext_authz.allowed_client_subjects: {e}"))?;
        }
        Ok(())
    }

    /// Checks the settings against the TLS settings: subjects need client certificates.
    pub(super) fn validate_with(&self, tls: &TlsConfig) -> Result<(), String> {
        self.validate()?;
        if !self.allowed_client_subjects.is_empty() && tls.client_ca_file.is_none() {
            return Err(
                "ext_authz.allowed_client_subjects: needs tls.client_ca_file (client \
                        certificates are only verified with mutual TLS)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Last use of personal access tokens: uses are collected in memory and written in batches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LastUseConfig {
    /// How often each replica writes the token uses it collected (at most one write per
    /// token per interval). A crash loses at most this much last-use data. 10ms to 1d.
    pub flush_interval: Span,
}

impl Default for LastUseConfig {
    fn default() -> Self {
        Self {
            flush_interval: Span(60_000),
        }
    }
}

/// The background jobs (expired-token cleanup, expiry notices), run by one replica at a
/// time under a database lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Run the scheduler on this replica (off: the other replicas run the jobs).
    pub enable: bool,
    /// How often expired personal access tokens are deleted (Mattermost: hourly).
    pub cleanup_expired_access_tokens_interval: Span,
    /// How often owners are warned of tokens expiring within 7, 3 and 1 days (hourly).
    pub notify_expiring_access_tokens_interval: Span,
    /// Tokens per batch (one transaction) of the jobs and of the non-compliant revoke.
    pub batch_size: u64,
    /// How long a replica holds a job's lease without renewing it; another replica takes an
    /// unfinished run over after it lapses.
    pub lease: Span,
    /// How often each replica looks for a job that is due (real time).
    pub poll_interval: Span,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            enable: true,
            cleanup_expired_access_tokens_interval: Span(3_600_000),
            notify_expiring_access_tokens_interval: Span(3_600_000),
            batch_size: 1000,
            lease: Span(300_000),
            poll_interval: Span(10_000),
        }
    }
}

impl AccessTokensConfig {
    /// Checks the values deserialization cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_rotation_grace_period.0 > 86_400_000 {
            return Err("access_tokens.max_rotation_grace_period: must be at most 1d".into());
        }
        Ok(())
    }
}

impl JobsConfig {
    /// Checks the values deserialization cannot.
    pub fn validate(&self) -> Result<(), String> {
        for (key, span) in [
            (
                "jobs.cleanup_expired_access_tokens_interval",
                self.cleanup_expired_access_tokens_interval,
            ),
            (
                "jobs.notify_expiring_access_tokens_interval",
                self.notify_expiring_access_tokens_interval,
            ),
        ] {
            if !(1_000..=30 * 86_400_000).contains(&span.0) {
                return Err(format!("{key}: must be between 1s and 30d"));
            }
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return Err("jobs.batch_size: must be between 1 and 10000".into());
        }
        if !(1_000..=3_600_000).contains(&self.lease.0) {
            return Err("jobs.lease: must be between 1s and 1h".into());
        }
        if !(10..=3_600_000).contains(&self.poll_interval.0) {
            return Err("jobs.poll_interval: must be between 10ms and 1h".into());
        }
        Ok(())
    }
}

impl LastUseConfig {
    /// Checks the interval's range.
    pub fn validate(&self) -> Result<(), String> {
        if !(10..=86_400_000).contains(&self.flush_interval.millis()) {
            return Err("last_use.flush_interval: must be between 10ms and 1d".into());
        }
        Ok(())
    }
}

/// The format new secrets are minted in (`[token_format]`). Whatever it says, tokens of both
/// formats authenticate: switching never invalidates a token already issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenFormatConfig {
    /// `mattermost` (26-character ids, exactly as Mattermost mints them; the default) or
    /// `checksummed` (`<prefix>p_…` for personal access tokens, `<prefix>s_…` for sessions,
    /// `<prefix>c_…` for slash-command tokens, with a CRC32 that scanners check offline).
    pub style: TokenStyle,
    /// The deployment's prefix of checksummed tokens: 1 to 12 lower-case letters and digits,
    /// starting with a letter. Default `mm`.
    pub prefix: String,
}

/// The formats a `[token_format] style` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStyle {
    Mattermost,
    Checksummed,
}

impl Default for TokenFormatConfig {
    fn default() -> Self {
        Self {
            style: TokenStyle::Mattermost,
            prefix: "mm".to_owned(),
        }
    }
}

impl TokenFormatConfig {
    /// The format as the domain uses it; the prefix checked.
    pub fn format(&self) -> Result<crate::domain::token_format::TokenFormat, String> {
        use crate::domain::token_format::{TokenFormat, check_prefix};
        check_prefix(&self.prefix).map_err(|e| format!("token_format.prefix: {e}"))?;
        Ok(match self.style {
            TokenStyle::Mattermost => TokenFormat::Mattermost,
            TokenStyle::Checksummed => TokenFormat::Checksummed {
                prefix: self.prefix.clone(),
            },
        })
    }
}

/// Leaked-token reports (`ReportLeakedTokens`, anyone may call it): on or off, and the rate
/// limit per client address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeakReportsConfig {
    /// Serve ReportLeakedTokens (off: UNIMPLEMENTED / 501).
    pub enable: bool,
    /// Reports per minute per client address, sustained (the local operator is not limited).
    pub requests_per_minute: u32,
    /// Reports an address may make at once before the rate applies.
    pub burst: u32,
}

impl Default for LeakReportsConfig {
    fn default() -> Self {
        Self {
            enable: true,
            requests_per_minute: 10,
            burst: 10,
        }
    }
}

impl LeakReportsConfig {
    /// Checks the values deserialization cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.requests_per_minute == 0 || self.requests_per_minute > 100_000 {
            return Err("leak_reports.requests_per_minute: must be 1 to 100000".into());
        }
        if self.burst == 0 || self.burst > 100_000 {
            return Err("leak_reports.burst: must be 1 to 100000".into());
        }
        Ok(())
    }
}

/// Limits on the listeners' connections (gRPC, REST, management), against clients that hold
/// connections open without using them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Open connections each listener holds at most; at the limit it stops accepting until
    /// one closes (new clients wait in the kernel's backlog). Keep the three listeners'
    /// total under the process's file descriptor limit (`ulimit -n`, `LimitNOFILE`).
    pub max_per_listener: usize,
    /// REST and management (HTTP/1): time a client has to send a request's head, from when
    /// the server starts waiting for it: after accepting, and after each answer on a
    /// kept-alive connection, so it is also how long an idle kept-alive connection stays
    /// open.
    pub http_header_read_timeout: Span,
    /// gRPC: time a new connection has to send its first bytes (the HTTP/2 preface; with
    /// TLS the ClientHello, after which the 10 s TLS handshake timeout applies).
    pub grpc_preface_timeout: Span,
    /// Every TCP listener: a connection silent this long is probed by the kernel (TCP
    /// keep-alive, 0: never), and one whose probes go unanswered for
    /// `tcp_keepalive_timeout` is closed, so a vanished client (a watch stream's included)
    /// does not hold its connection. Costs nothing per request, unlike HTTP/2 pings.
    pub tcp_keepalive_interval: Span,
    /// Every TCP listener: how long keep-alive probes may go unanswered (four probes, a
    /// quarter of it apart) before the connection is closed; data sent and not
    /// acknowledged for the interval and this together closes it too (`TCP_USER_TIMEOUT`).
    pub tcp_keepalive_timeout: Span,
    /// gRPC: how often the server pings an HTTP/2 connection (0: never, the default). A
    /// peer that does not answer within `http2_keepalive_timeout` is disconnected. Pings
    /// also catch a peer whose kernel still answers TCP probes; while on, every frame
    /// received costs a lock and a clock read (about 3 % of a cached call's throughput).
    pub http2_keepalive_interval: Span,
    /// gRPC: how long the server waits for a ping's answer.
    pub http2_keepalive_timeout: Span,
    /// gRPC: a connection with no call in flight for this long is closed gracefully
    /// (HTTP/2 GOAWAY; the client reconnects when it next calls). Open streams
    /// (`WatchRevocations`, health watches) are calls in flight: never cut. 0: never.
    pub grpc_idle_timeout: Span,
    /// gRPC: concurrent calls (HTTP/2 streams) per connection.
    pub http2_max_concurrent_streams: u32,
    /// `WatchRevocations` and `WatchEvents` streams this replica serves at once; more are
    /// refused with RESOURCE_EXHAUSTED (`token_service.too_many_streams`).
    pub max_watch_streams: usize,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            max_per_listener: 4096,
            http_header_read_timeout: Span(10_000),
            grpc_preface_timeout: Span(10_000),
            tcp_keepalive_interval: Span(60_000),
            tcp_keepalive_timeout: Span(20_000),
            http2_keepalive_interval: Span(0),
            http2_keepalive_timeout: Span(20_000),
            grpc_idle_timeout: Span(300_000),
            http2_max_concurrent_streams: 1000,
            max_watch_streams: 10_000,
        }
    }
}

impl ConnectionsConfig {
    /// Checks the values deserialization cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1_000_000).contains(&self.max_per_listener) {
            return Err("connections.max_per_listener: must be between 1 and 1000000".into());
        }
        if !(100..=600_000).contains(&self.http_header_read_timeout.0) {
            return Err(
                "connections.http_header_read_timeout: must be between 100ms and 10m".into(),
            );
        }
        if !(100..=600_000).contains(&self.grpc_preface_timeout.0) {
            return Err("connections.grpc_preface_timeout: must be between 100ms and 10m".into());
        }
        if self.tcp_keepalive_interval.0 != 0
            && !(1_000..=86_400_000).contains(&self.tcp_keepalive_interval.0)
        {
            return Err(
                "connections.tcp_keepalive_interval: must be 0 (off) or between 1s and 1d".into(),
            );
        }
        if !(1_000..=600_000).contains(&self.tcp_keepalive_timeout.0) {
            return Err("connections.tcp_keepalive_timeout: must be between 1s and 10m".into());
        }
        if self.http2_keepalive_interval.0 != 0
            && !(1_000..=86_400_000).contains(&self.http2_keepalive_interval.0)
        {
            return Err(
                "connections.http2_keepalive_interval: must be 0 (off) or between 1s and 1d".into(),
            );
        }
        if !(100..=600_000).contains(&self.http2_keepalive_timeout.0) {
            return Err(
                "connections.http2_keepalive_timeout: must be between 100ms and 10m".into(),
            );
        }
        if self.grpc_idle_timeout.0 != 0 && !(100..=604_800_000).contains(&self.grpc_idle_timeout.0)
        {
            return Err(
                "connections.grpc_idle_timeout: must be 0 (off) or between 100ms and 7d".into(),
            );
        }
        if !(1..=1_000_000).contains(&self.max_watch_streams) {
            return Err("connections.max_watch_streams: must be between 1 and 1000000".into());
        }
        if self.http2_max_concurrent_streams == 0 {
            return Err("connections.http2_max_concurrent_streams: must be at least 1".into());
        }
        Ok(())
    }
}

/// The throttle of failed credential checks per client address (see
/// `domain::guess_throttle`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuessThrottleConfig {
    /// Refuse addresses past the limit (off: failures are still counted in metrics).
    pub enable: bool,
    /// Failed checks an address may make at once before the rate applies.
    pub burst: u32,
    /// Failed checks per minute per address, sustained.
    pub failures_per_minute: u32,
    /// How long an address past the limit is refused: seconds, or a number with ms, s, m, h
    /// or d.
    pub cool_down: Span,
}

impl Default for GuessThrottleConfig {
    fn default() -> Self {
        Self {
            enable: true,
            burst: 100,
            failures_per_minute: 60,
            cool_down: Span(60_000),
        }
    }
}

impl GuessThrottleConfig {
    /// Checks the values deserialization cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.burst == 0 || self.burst > 1_000_000 {
            return Err("guess_throttle.burst: must be 1 to 1000000".into());
        }
        if self.failures_per_minute == 0 || self.failures_per_minute > 1_000_000 {
            return Err("guess_throttle.failures_per_minute: must be 1 to 1000000".into());
        }
        if self.cool_down.millis() == 0 || self.cool_down.millis() > 86_400_000 {
            return Err("guess_throttle.cool_down: must be 1ms to 1d".into());
        }
        Ok(())
    }
}
