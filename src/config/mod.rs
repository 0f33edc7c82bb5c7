//! Configuration: built-in defaults < TOML file (`--config`) < `TOKEN_SERVICE_*` environment
//! variables (nested keys as `TOKEN_SERVICE_<SECTION>__<KEY>`) < command-line flags.
//! Secrets (the server key, passwords in the database URL) are masked in every formatting
//! trait.
//!
//! This file holds the top-level settings, their defaults, the layering and the checks that
//! deserialization cannot make. The sections (`[tls]`, `[cache]`, ...) are in `sections`,
//! the masked value types and the server key file in `secret`, the reading of
//! `TOKEN_SERVICE_*` values in `env`, and what the domain takes from all of it (its
//! [`Policy`](crate::domain::Policy)) in `policy`.

mod env;
mod location;
mod policy;
mod secret;
mod sections;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, fmt, net::SocketAddr, path::PathBuf};

use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

use crate::domain::secret::ServerKey;
pub use env::ENV_PREFIX;
pub use location::{DatabaseLocation, KeyLocation, Origin, Origins, absolute, sqlite_target};
pub use secret::{DatabaseUrl, Secret, Span, Ttl, parse_span};
pub use sections::{
    AccessTokensConfig, GuessThrottleConfig, LeakReportsConfig, TokenFormatConfig, TokenStyle,
};
pub use sections::{
    AuditConfig, CacheConfig, CommandTokensConfig, ConnectionsConfig, ExtAuthzConfig, JobsConfig,
    LastUseConfig, LogConfig, LogFormat, PoolConfig, TlsConfig, WebhooksConfig, WebrtcConfig,
};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address: an IP address or a host name (resolved at start-up, IPv4
    /// preferred, as Mattermost's Go listener does) and a port.
    #[serde(deserialize_with = "listen_addr")]
    pub grpc_addr: SocketAddr,
    /// REST shim listen address (same form).
    #[serde(deserialize_with = "listen_addr")]
    pub http_addr: SocketAddr,
    /// Optional management listener (plain HTTP): `/metrics`, `/livez` and `/readyz` only,
    /// so operators can keep them off the public port. Off by default.
    pub management_addr: Option<SocketAddr>,
    /// Serve `/metrics`, `/livez` and `/readyz` on `http_addr` as well (the default, for
    /// compatibility). `false` keeps them on `management_addr` only (which must then be set).
    pub probes_on_http_addr: bool,
    /// Where the embedded defaults live: the SQLite database and the generated server key.
    pub data_dir: PathBuf,
    /// Serve TokenService on a Unix socket (mode 0600) as the local operator, for
    /// `token-service admin` while the server runs (Mattermost's local mode).
    pub enable_local_socket: bool,
    /// The local socket's path. Default: `<data_dir>/token-service.sock`.
    pub local_socket: Option<PathBuf>,
    /// Database URL (`sqlite://…`, `postgres://…`, `mysql://…`). Default: SQLite in data_dir.
    pub database_url: Option<DatabaseUrl>,
    /// The server key as hex (at least 64 hex digits). Every replica needs the same key.
    pub server_key: Option<Secret>,
    /// A file holding the server key as hex. Default: `<data_dir>/server.key`, generated
    /// with mode 0600 on first start.
    pub server_key_file: Option<PathBuf>,
    /// Start even when a key file the service reads (`server_key_file`, `tls.key_file`)
    /// may be read by group or other users (a warning is logged instead). Off: such a key
    /// file stops the start with an error naming it.
    pub allow_readable_key_files: bool,
    /// Mattermost's `EnableUserAccessTokens`.
    pub enable_user_access_tokens: bool,
    /// Mattermost's `MaximumPersonalAccessTokenLifetimeDays`; 0 = no limit.
    pub maximum_personal_access_token_lifetime_days: u32,
    /// Default lifetime of a login session created by CreateSession, in hours (Mattermost's
    /// `SessionLengthWebInHours`).
    pub session_length_hours: u32,
    /// Mattermost's `ExtendSessionLengthWithActivity`.
    pub extend_session_length_with_activity: bool,
    /// Session activity is written to the database at most this often per session, in
    /// milliseconds (default five minutes).
    pub session_activity_interval_ms: u64,
    /// How often the database is pinged for the health service, in milliseconds.
    pub health_check_interval_ms: u64,
    /// How long in-flight calls may take to finish after a shutdown signal, in seconds.
    pub shutdown_grace_period_secs: u64,
    /// Logging.
    pub log: LogConfig,
    /// Database pool.
    pub pool: PoolConfig,
    /// Role overrides: role name to the complete list of its permissions.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Mattermost's `EnableCommands`.
    pub enable_commands: bool,
    /// Mattermost's `ExperimentalStrictCSRFEnforcement`: cookie-authenticated writes must send
    /// `X-CSRF-Token` (no `X-Requested-With: XMLHttpRequest` fallback).
    pub strict_csrf: bool,
    /// Mattermost's `PrivacySettings.ShowEmailAddress`: GetUser and GetUserByUsername show
    /// the e-mail address to every caller who may see the user (off: only to the user and
    /// to holders of `manage_system`).
    pub show_email_address: bool,
    /// Largest REST request body, in bytes (Mattermost's `MaximumPayloadSizeBytes`).
    pub max_request_body_bytes: usize,
    /// Mattermost's `EnableDeveloper`: REST error bodies keep `detailed_error` (our rule or
    /// the missing permission). Off: it is blank, as in Mattermost.
    pub enable_developer: bool,
    /// Keys that encrypt slash-command tokens at rest.
    pub command_tokens: CommandTokensConfig,
    /// WebRTC gateway and TURN credentials.
    pub webrtc: WebrtcConfig,
    /// The hot-path token cache.
    pub cache: CacheConfig,
    /// Webhook delivery.
    pub webhooks: WebhooksConfig,
    /// The background jobs: expired-token cleanup and expiry notices.
    pub jobs: JobsConfig,
    /// How often each replica reads the revocation log written by the others, in
    /// milliseconds (PostgreSQL and MariaDB; a single SQLite process needs no log reads).
    pub revocation_poll_interval_ms: u64,
    /// The longest a gRPC call or REST request may take to answer, in milliseconds (a
    /// database that stops answering without closing its connections cannot hold callers
    /// longer); 0 = no limit. gRPC callers may ask for less with their own deadline.
    pub request_timeout_ms: u64,
    /// TLS for both listeners, and client certificates (mTLS).
    pub tls: TlsConfig,
    /// Limits on the listeners' connections.
    pub connections: ConnectionsConfig,
    /// The lifecycle log as an audit trail: retention and key.
    pub audit: AuditConfig,
    /// Mattermost's `TrustedProxyIPHeader`: headers (e.g. `X-Forwarded-For`, `X-Real-IP`)
    /// that carry the client's address when a trusted proxy sits in front; the first one
    /// present wins (its first address). Empty: the peer's address is the client's.
    pub trusted_proxy_ip_header: Vec<String>,
    /// Rotation of personal access tokens: grace periods and reuse detection.
    pub access_tokens: AccessTokensConfig,
    /// Addresses and CIDR blocks of the proxies in front of the service (e.g.
    /// `["10.0.0.0/8", "::1"]`). When set, it decides the client's address and
    /// `trusted_proxy_ip_header` is not read: a request from a listed proxy is attributed to
    /// the right-most untrusted address of its `Forwarded` (else `X-Forwarded-For`) chain;
    /// from anyone else, to the peer, whatever its headers say.
    pub trusted_proxies: Vec<String>,
    /// Last use of personal access tokens.
    pub last_use: LastUseConfig,
    /// The format new secrets are minted in.
    pub token_format: TokenFormatConfig,
    /// Leaked-token reports.
    pub leak_reports: LeakReportsConfig,
    /// Failed credential checks per client address.
    pub guess_throttle: GuessThrottleConfig,
    /// Envoy external authorization: which client certificates may ask.
    pub ext_authz: ExtAuthzConfig,
    /// Which source set the settings that locate the state (for messages); not a setting.
    #[serde(skip)]
    pub origins: Origins,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8065)),
            management_addr: None,
            probes_on_http_addr: true,
            data_dir: PathBuf::from("data"),
            enable_local_socket: true,
            local_socket: None,
            database_url: None,
            server_key: None,
            server_key_file: None,
            allow_readable_key_files: false,
            enable_user_access_tokens: true,
            maximum_personal_access_token_lifetime_days: 0,
            session_length_hours: 720,
            extend_session_length_with_activity: true,
            session_activity_interval_ms: 300_000,
            health_check_interval_ms: 1000,
            shutdown_grace_period_secs: 30,
            log: LogConfig::default(),
            pool: PoolConfig::default(),
            roles: BTreeMap::new(),
            enable_commands: true,
            strict_csrf: false,
            show_email_address: true,
            max_request_body_bytes: 300_000,
            enable_developer: false,
            command_tokens: CommandTokensConfig::default(),
            webrtc: WebrtcConfig::default(),
            cache: CacheConfig::default(),
            webhooks: WebhooksConfig::default(),
            jobs: JobsConfig::default(),
            revocation_poll_interval_ms: 50,
            request_timeout_ms: 15_000,
            tls: TlsConfig::default(),
            connections: ConnectionsConfig::default(),
            audit: AuditConfig::default(),
            trusted_proxy_ip_header: Vec::new(),
            access_tokens: AccessTokensConfig::default(),
            trusted_proxies: Vec::new(),
            last_use: LastUseConfig::default(),
            token_format: TokenFormatConfig::default(),
            leak_reports: LeakReportsConfig::default(),
            guess_throttle: GuessThrottleConfig::default(),
            ext_authz: ExtAuthzConfig::default(),
            origins: Origins::default(),
        }
    }
}

/// A configuration error found after loading (for example an unreadable TLS file): the
/// binary reports it like a loading error (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig(pub String);

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidConfig {}

/// Command-line values that override every other source; `None` leaves a value alone.
/// Listen addresses are text here (`localhost:50051` is resolved like the other sources).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

impl Overrides {
    /// The flag that sets the setting at `path`, if it was given.
    fn flag_for(&self, path: &str) -> Option<&'static str> {
        match path {
            "grpc_addr" if self.grpc_addr.is_some() => Some("--grpc-addr"),
            "http_addr" if self.http_addr.is_some() => Some("--http-addr"),
            "data_dir" if self.data_dir.is_some() => Some("--data-dir"),
            "database_url" if self.database_url.is_some() => Some("--database-url"),
            _ => None,
        }
    }
}

/// What loading found besides the configuration itself.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// `TOKEN_SERVICE_*` variables that match no setting (probably misspelt).
    pub unknown_env_vars: Vec<String>,
}

impl Config {
    /// Loads the layered configuration.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &Overrides,
    ) -> Result<(Self, LoadReport), String> {
        Self::load_from(file, overrides, std::env::vars())
    }

    /// Like [`Config::load`], with the environment given explicitly (for tests).
    ///
    /// Errors name where the bad value came from: the variable and its key
    /// (`TOKEN_SERVICE_POOL__MAX_CONNECTIONS (pool.max_connections): ...`), the key and the file
    /// (`pool.max_connections in /etc/token-service/config.toml: ...`), the flag, or the key.
    pub fn load_from(
        file: Option<&std::path::Path>,
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Self, LoadReport), String> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(format!(
                    "config file {} does not exist",
                    absolute(path).display()
                ));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let (env_values, unknown_env_vars) = env::settings(env);
        for setting in &env_values {
            figment = figment.merge(setting.clone());
        }
        figment = figment.merge(Serialized::globals(overrides));
        let mut config: Config = figment.extract().map_err(|e| {
            e.into_iter()
                .map(|err| describe_load_error(&err, overrides))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let origin = |path: &str| -> Origin {
            if let Some(flag) = overrides.flag_for(path) {
                return Origin::Flag(flag);
            }
            if let Some(setting) = env_values.iter().rev().find(|s| s.path == path) {
                return Origin::Env(setting.name.clone());
            }
            match figment
                .find_metadata(path)
                .and_then(|m| m.source.as_ref())
                .and_then(|s| s.file_path())
            {
                Some(file) => Origin::File(absolute(file)),
                None => Origin::Default,
            }
        };
        config.origins = Origins {
            data_dir: origin("data_dir"),
            database_url: origin("database_url"),
            server_key_file: origin("server_key_file"),
            server_key: origin("server_key"),
        };
        config.validate()?;
        Ok((config, LoadReport { unknown_env_vars }))
    }

    /// Checks values that deserialization cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.cache.capacity == 0 {
            return Err("cache.capacity: must be at least 1 (use cache.enable = false to turn the cache off)".into());
        }
        if self.audit.retention.0 < 86_400 {
            return Err(
                "audit.retention: must be at least 1d (replicas resume from the log)".into(),
            );
        }
        if let Some(key) = &self.audit.key {
            ServerKey::from_hex(key.expose()).map_err(|e| format!("audit.key: {e}"))?;
        }
        for header in &self.trusted_proxy_ip_header {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(format!(
                    "trusted_proxy_ip_header: {header:?} is not a header name"
                ));
            }
        }
        crate::client_ip::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| format!("trusted_proxies: {e}"))?;
        self.last_use.validate()?;
        self.connections.validate()?;
        self.ext_authz.validate_with(&self.tls)?;
        if !(1..=60_000).contains(&self.revocation_poll_interval_ms) {
            return Err("revocation_poll_interval_ms: must be between 1 and 60000".into());
        }
        if self.pool.max_connections == 0 {
            return Err("pool.max_connections: must be at least 1".into());
        }
        if self.pool.check_connections == 0 {
            return Err("pool.check_connections: must be at least 1".into());
        }
        if self.pool.check_batches == Some(0) {
            return Err("pool.check_batches: must be at least 1".into());
        }
        if self.pool.min_connections > self.pool.max_connections {
            return Err("pool.min_connections: must not exceed pool.max_connections".into());
        }
        if self.session_length_hours == 0 {
            return Err("session_length_hours: must be at least 1".into());
        }
        if self.health_check_interval_ms == 0 {
            return Err("health_check_interval_ms: must be at least 1".into());
        }
        if !self.probes_on_http_addr && self.management_addr.is_none() {
            return Err("probes_on_http_addr: false needs management_addr (the probes and metrics would be served nowhere)".into());
        }
        if let Some(addr) = self.management_addr
            && (addr == self.http_addr || addr == self.grpc_addr)
            && addr.port() != 0
        {
            return Err(format!(
                "management_addr: {addr} is already http_addr or grpc_addr; choose another port"
            ));
        }
        if self.server_key.is_some() && self.server_key_file.is_some() {
            return Err("server_key and server_key_file: set at most one".into());
        }
        crate::store::check_database_url(self.effective_database_url().expose())
            .map_err(|e| format!("database_url: {e}"))?;
        crate::telemetry::check_filter(&self.log.filter).map_err(|e| format!("log.filter: {e}"))?;
        crate::domain::permissions::RoleTable::with_overrides(&self.roles)?;
        self.webrtc_policy().validate()?;
        self.tls.validate()?;
        self.webhooks.validate()?;
        self.access_tokens.validate()?;
        self.jobs.validate()?;
        self.token_format.format()?;
        self.leak_reports.validate()?;
        self.guess_throttle.validate()?;
        self.cache.validate()?;
        Ok(())
    }

    /// The database URL in effect: the configured one, or SQLite in the data directory.
    pub fn effective_database_url(&self) -> DatabaseUrl {
        match &self.database_url {
            Some(url) => url.clone(),
            None => DatabaseUrl::new(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("token-service.db").display()
            )),
        }
    }
}

/// A loading error as the operator should read it: where the value came from (variable,
/// file and key, flag, or key), and what was wrong, in words rather than type names.
fn describe_load_error(err: &figment::Error, overrides: &Overrides) -> String {
    let key = err.path.join(".");
    let what = describe_kind(&err.kind);
    let metadata = err.metadata.as_ref();
    if let Some(name) = metadata.and_then(|m| m.name.strip_prefix(env::ENV_METADATA_PREFIX)) {
        return if key.is_empty() {
            format!("{name}: {what}")
        } else {
            format!("{name} ({key}): {what}")
        };
    }
    if let Some(file) = metadata
        .and_then(|m| m.source.as_ref())
        .and_then(|s| s.file_path())
    {
        let file = absolute(file);
        return if key.is_empty() {
            format!("{}: {what}", file.display())
        } else {
            format!("{key} in {}: {what}", file.display())
        };
    }
    if let Some(flag) = overrides.flag_for(&key) {
        return format!("{flag}: {what}");
    }
    if key.is_empty() {
        what
    } else {
        format!("{key}: {what}")
    }
}

/// The error kind in words: the expected type named for people (`a whole number`, `a
/// section`), never a Rust or library type.
fn describe_kind(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    fn expected(what: &str) -> String {
        match what {
            "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".to_owned(),
            "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
            "f32" | "f64" => "a number".to_owned(),
            "a boolean" | "bool" => "true or false".to_owned(),
            other if other.starts_with("struct ") || other.starts_with("a map") => {
                "a section (a table of keys)".to_owned()
            }
            other if other.starts_with("enum ") => "one of the allowed words".to_owned(),
            other => other.to_owned(),
        }
    }
    match kind {
        Kind::InvalidType(actual, want) | Kind::InvalidValue(actual, want) => {
            format!("expected {}, found {actual}", expected(want))
        }
        Kind::UnknownVariant(found, allowed) => format!(
            "unknown value `{found}`; expected one of: {}",
            allowed.join(", ")
        ),
        Kind::UnknownField(found, allowed) => {
            format!("unknown key `{found}`; known keys: {}", allowed.join(", "))
        }
        Kind::MissingField(name) => format!("missing key `{name}`"),
        other => other.to_string(),
    }
}

/// Deserializes a listen address: `IP:PORT`, or `HOST:PORT` with the host name resolved
/// (an IPv4 address preferred, as Go's listener does, so `localhost` means 127.0.0.1).
fn listen_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    resolve_listen_addr(&text).map_err(serde::de::Error::custom)
}

/// See [`listen_addr`].
pub fn resolve_listen_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("{text:?} is not HOST:PORT (e.g. 127.0.0.1:50051)"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!(
            "{text:?} is not HOST:PORT with a port from 0 to 65535 (e.g. 127.0.0.1:50051)"
        ));
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the host name {host:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("the host name {host:?} resolves to no address"))
}
