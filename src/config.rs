//! Configuration: built-in defaults < TOML file (`--config`) < `TOKEN_SERVICE_*` environment
//! variables (nested keys as `TOKEN_SERVICE_<SECTION>__<KEY>`) < command-line flags.
//! Secrets (the server key, passwords in the database URL) are masked in every formatting
//! trait.

use std::{collections::BTreeMap, fmt, net::SocketAddr, path::PathBuf};

use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// Prefix of every environment variable the service reads.
pub const ENV_PREFIX: &str = "TOKEN_SERVICE_";

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// REST shim listen address (reserved for the REST shim).
    pub http_addr: SocketAddr,
    /// Where the embedded defaults live: the SQLite database and the generated server key.
    pub data_dir: PathBuf,
    /// Database URL (`sqlite://…`, `postgres://…`, `mysql://…`). Default: SQLite in data_dir.
    pub database_url: Option<DatabaseUrl>,
    /// The server key as hex (at least 64 hex digits). Every replica needs the same key.
    pub server_key: Option<Secret>,
    /// A file holding the server key as hex. Default: `<data_dir>/server.key`, generated
    /// with mode 0600 on first start.
    pub server_key_file: Option<PathBuf>,
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
    /// Largest REST request body, in bytes (Mattermost's `MaximumPayloadSizeBytes`).
    pub max_request_body_bytes: usize,
    /// Keys that encrypt slash-command tokens at rest.
    pub command_tokens: CommandTokensConfig,
    /// WebRTC gateway and TURN credentials.
    pub webrtc: WebrtcConfig,
    /// The hot-path token cache.
    pub cache: CacheConfig,
    /// How often each replica reads the revocation log written by the others, in
    /// milliseconds (PostgreSQL and MariaDB; a single SQLite process needs no log reads).
    pub revocation_poll_interval_ms: u64,
    /// The longest a gRPC call or REST request may take to answer, in milliseconds (a
    /// database that stops answering without closing its connections cannot hold callers
    /// longer); 0 = no limit. gRPC callers may ask for less with their own deadline.
    pub request_timeout_ms: u64,
    /// TLS for both listeners, and client certificates (mTLS).
    pub tls: TlsConfig,
}

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
}

impl Default for CacheConfig {
    fn default() -> Self {
        let d = crate::domain::cache::CacheSettings::default();
        Self {
            enable: d.enable,
            capacity: d.capacity,
            ttl_ms: d.ttl_ms as u64,
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

/// A duration in seconds, written as a number of seconds or as "30m", "12h", "1d".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Ttl(pub u64);

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Ttl(s)),
            Raw::Text(text) => parse_ttl(&text).map(Ttl).map_err(serde::de::Error::custom),
        }
    }
}

fn parse_ttl(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: use seconds or 30m, 12h, 1d"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "invalid duration unit in {text:?}: use s, m, h or d"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8065)),
            data_dir: PathBuf::from("data"),
            database_url: None,
            server_key: None,
            server_key_file: None,
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
            max_request_body_bytes: 300_000,
            command_tokens: CommandTokensConfig::default(),
            webrtc: WebrtcConfig::default(),
            cache: CacheConfig::default(),
            revocation_poll_interval_ms: 50,
            request_timeout_ms: 15_000,
            tls: TlsConfig::default(),
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
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            min_connections: 1,
            connect_timeout_secs: 5,
            acquire_timeout_secs: 5,
        }
    }
}

/// A secret string: `Debug` prints `<redacted>`, there is no `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A database URL whose password is masked in `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The URL with its password, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn masked(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://") else {
            return url.clone();
        };
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let Some(at) = authority.rfind('@') else {
            return url.clone();
        };
        let userinfo = &authority[..at];
        match userinfo.find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end + 3],
                &userinfo[..colon],
                &rest[at..]
            ),
            None => url.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.masked())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Command-line values that override every other source; `None` leaves a value alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

/// What loading found besides the configuration itself.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// `TOKEN_SERVICE_*` variables that match no setting (probably misspelt).
    pub unknown_env_vars: Vec<String>,
}

/// Variables with the prefix that are not settings.
const NON_SETTING_ENV_VARS: [&str; 1] = ["TOKEN_SERVICE_CONFIG"];

impl Config {
    /// Loads the layered configuration.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &Overrides,
    ) -> Result<(Self, LoadReport), String> {
        Self::load_from(file, overrides, std::env::vars())
    }

    /// Like [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_from(
        file: Option<&std::path::Path>,
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Self, LoadReport), String> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(format!("config file {} does not exist", path.display()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let known = known_keys();
        let mut report = LoadReport::default();
        let mut env_pairs = Vec::new();
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if NON_SETTING_ENV_VARS.contains(&name.as_str()) {
                continue;
            }
            let path = key.to_ascii_lowercase().replace("__", ".");
            let kind = known.get(&path).copied().or_else(|| map_entry_kind(&path));
            match kind {
                Some(kind) => env_pairs.push((path, env_value(kind, &value))),
                None => report.unknown_env_vars.push(name),
            }
        }
        for (path, value) in env_pairs {
            figment = figment.merge(Serialized::global(&path, value));
        }
        figment = figment.merge(Serialized::globals(overrides));
        let config: Config = figment.extract().map_err(|e| {
            e.into_iter()
                .map(|err| err.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        config.validate()?;
        Ok((config, report))
    }

    /// Checks values that deserialization cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.cache.capacity == 0 {
            return Err("cache.capacity: must be at least 1 (use cache.enable = false to turn the cache off)".into());
        }
        if !(1..=60_000).contains(&self.revocation_poll_interval_ms) {
            return Err("revocation_poll_interval_ms: must be between 1 and 60000".into());
        }
        if self.pool.max_connections == 0 {
            return Err("pool.max_connections: must be at least 1".into());
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
        if self.server_key.is_some() && self.server_key_file.is_some() {
            return Err("server_key and server_key_file: set at most one".into());
        }
        crate::domain::permissions::RoleTable::with_overrides(&self.roles)?;
        self.webrtc_policy().validate()?;
        self.tls.validate()?;
        Ok(())
    }

    /// The WebRTC settings as the domain uses them.
    pub fn webrtc_policy(&self) -> crate::domain::webrtc::WebrtcPolicy {
        crate::domain::webrtc::WebrtcPolicy {
            enable: self.webrtc.enable,
            gateway_url: self.webrtc.gateway_url.clone(),
            stun_uri: self.webrtc.stun_uri.clone(),
            turn_uri: self.webrtc.turn_uri.clone(),
            turn_shared_secret: self.webrtc.turn_shared_secret.expose().to_owned(),
            credential_ttl_secs: self.webrtc.credential_ttl.0,
        }
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

/// What a setting holds, which decides how an environment value (always text) is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnvKind {
    /// Text: the value is taken as it is, whatever it looks like ("123456", "true").
    Text,
    /// A number: digits are read as a number; anything else (such as "12h" for a duration)
    /// stays text for the setting's own parser, or for a type error naming the key.
    Number,
    /// true or false.
    Bool,
    /// A list of words (role permissions): comma- or space-separated.
    List,
    /// A section, set key by key; a value for the section itself is a type error.
    Section,
}

/// Entries of the two maps, whose keys are not known in advance: a role's permissions
/// (`roles.<role>`) and a command-token key (`command_tokens.keys.<id>`, hex text).
fn map_entry_kind(path: &str) -> Option<EnvKind> {
    let entry = |prefix: &str| path.strip_prefix(prefix).is_some_and(|k| !k.is_empty());
    if entry("roles.") {
        Some(EnvKind::List)
    } else if entry("command_tokens.keys.") {
        Some(EnvKind::Text)
    } else {
        None
    }
}

/// Reads an environment value as the setting's type. Only numeric and boolean settings are
/// coerced; a text setting keeps the text exactly, so a numeric-looking secret or key id
/// (`TOKEN_SERVICE_WEBRTC__TURN_SHARED_SECRET=123456`) is still text.
fn env_value(kind: EnvKind, raw: &str) -> figment::value::Value {
    use figment::value::Value;
    let text = || Value::from(raw.to_owned());
    match kind {
        EnvKind::Text | EnvKind::Section => text(),
        EnvKind::List => Value::from(
            raw.split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(|s| Value::from(s.to_owned()))
                .collect::<Vec<_>>(),
        ),
        EnvKind::Number => match raw.trim().parse::<Value>() {
            Ok(v @ Value::Num(..)) => v,
            _ => text(),
        },
        EnvKind::Bool => match raw.trim().parse::<Value>() {
            Ok(v @ Value::Bool(..)) => v,
            _ => text(),
        },
    }
}

/// Every settable key path and what it holds, derived from the defaults.
fn known_keys() -> BTreeMap<String, EnvKind> {
    fn kind_of(value: &serde_json::Value) -> EnvKind {
        match value {
            serde_json::Value::Bool(_) => EnvKind::Bool,
            serde_json::Value::Number(_) => EnvKind::Number,
            serde_json::Value::Object(_) => EnvKind::Section,
            serde_json::Value::Array(_) => EnvKind::List,
            // Optional settings (null by default) are all text: URLs, keys, paths, key ids.
            serde_json::Value::String(_) | serde_json::Value::Null => EnvKind::Text,
        }
    }
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, EnvKind>) {
        if let serde_json::Value::Object(map) = value {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone(), kind_of(v));
                if k != "roles" && k != "keys" {
                    walk(&path, v, out);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    let defaults = serde_json::to_value(Config::default()).expect("config serializes");
    walk("", &defaults, &mut out);
    for optional in ["database_url", "server_key", "server_key_file"] {
        out.entry(optional.to_owned()).or_insert(EnvKind::Text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_run_on_embedded_sqlite() {
        let (c, _) = Config::load_from(None, &Overrides::default(), env(&[])).unwrap();
        assert_eq!(c.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8065");
        assert!(
            c.effective_database_url()
                .expose()
                .starts_with("sqlite://data/")
        );
        assert!(c.enable_user_access_tokens);
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "grpc_addr = \"127.0.0.1:1000\"\nhttp_addr = \"127.0.0.1:1001\"\n[pool]\nmax_connections = 3\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        let e = env(&[
            ("TOKEN_SERVICE_HTTP_ADDR", "127.0.0.1:2001"),
            ("TOKEN_SERVICE_POOL__MAX_CONNECTIONS", "7"),
            ("TOKEN_SERVICE_ENABLE_USER_ACCESS_TOKENS", "false"),
            (
                "TOKEN_SERVICE_ROLES__SYSTEM_USER",
                "manage_bots,create_user_access_token",
            ),
            ("TOKEN_SERVICE_GRCP_ADDR", "typo"),
            ("OTHER", "x"),
        ]);
        let overrides = Overrides {
            grpc_addr: Some("127.0.0.1:3000".parse().unwrap()),
            ..Overrides::default()
        };
        let (c, report) = Config::load_from(Some(&file), &overrides, e).unwrap();
        assert_eq!(c.grpc_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:2001");
        assert_eq!(c.pool.max_connections, 7);
        assert_eq!(c.log.format, LogFormat::Json);
        assert!(!c.enable_user_access_tokens);
        assert_eq!(c.roles["system_user"].len(), 2);
        assert_eq!(report.unknown_env_vars, vec!["TOKEN_SERVICE_GRCP_ADDR"]);
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "grpc_adr = \"x\"\n").unwrap();
        let err = Config::load_from(Some(&file), &Overrides::default(), env(&[])).unwrap_err();
        assert!(err.contains("grpc_adr"), "{err}");
        let err = Config::load_from(
            None,
            &Overrides::default(),
            env(&[("TOKEN_SERVICE_ROLES__X", "fly")]),
        )
        .unwrap_err();
        assert!(err.contains("fly"), "{err}");
    }

    #[test]
    fn webrtc_and_command_key_settings_load_from_env() {
        let e = env(&[
            ("TOKEN_SERVICE_WEBRTC__ENABLE", "true"),
            ("TOKEN_SERVICE_WEBRTC__TURN_URI", "turn:127.0.0.1:3478"),
            ("TOKEN_SERVICE_WEBRTC__TURN_SHARED_SECRET", "s3cret"),
            ("TOKEN_SERVICE_WEBRTC__CREDENTIAL_TTL", "12h"),
            ("TOKEN_SERVICE_COMMAND_TOKENS__KEYS__K1", &"ab".repeat(32)),
            ("TOKEN_SERVICE_COMMAND_TOKENS__CURRENT_KEY", "k1"),
        ]);
        let (c, report) = Config::load_from(None, &Overrides::default(), e).unwrap();
        assert!(
            report.unknown_env_vars.is_empty(),
            "{:?}",
            report.unknown_env_vars
        );
        assert!(c.webrtc.enable);
        assert_eq!(c.webrtc.credential_ttl, Ttl(43_200));
        assert_eq!(c.command_tokens.current_key.as_deref(), Some("k1"));
        assert!(!format!("{c:?}").contains("s3cret"));
        let err = Config::load_from(
            None,
            &Overrides::default(),
            env(&[
                ("TOKEN_SERVICE_WEBRTC__ENABLE", "true"),
                ("TOKEN_SERVICE_WEBRTC__TURN_URI", "turn:x"),
            ]),
        )
        .unwrap_err();
        assert!(err.contains("webrtc.turn_shared_secret"), "{err}");
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("2d").unwrap(), 172_800);
        assert!(parse_ttl("3w").is_err());
    }

    #[test]
    fn text_settings_keep_numeric_and_boolean_looking_env_values_as_text() {
        let digits_key = "0123456789".repeat(6) + "0123";
        let e = env(&[
            ("TOKEN_SERVICE_WEBRTC__ENABLE", "true"),
            ("TOKEN_SERVICE_WEBRTC__TURN_URI", "turn:127.0.0.1:3478"),
            ("TOKEN_SERVICE_WEBRTC__TURN_SHARED_SECRET", "123456"),
            ("TOKEN_SERVICE_WEBRTC__GATEWAY_URL", ""),
            ("TOKEN_SERVICE_COMMAND_TOKENS__CURRENT_KEY", "2024"),
            ("TOKEN_SERVICE_COMMAND_TOKENS__KEYS__2024", &digits_key),
            ("TOKEN_SERVICE_ROLES__2024", "manage_bots"),
            ("TOKEN_SERVICE_LOG__FILTER", "1"),
            ("TOKEN_SERVICE_SERVER_KEY", &digits_key),
        ]);
        let (c, report) = Config::load_from(None, &Overrides::default(), e).unwrap();
        assert!(report.unknown_env_vars.is_empty(), "{report:?}");
        assert_eq!(c.webrtc.turn_shared_secret.expose(), "123456");
        assert_eq!(c.command_tokens.current_key.as_deref(), Some("2024"));
        assert_eq!(c.command_tokens.keys["2024"].expose(), digits_key);
        assert_eq!(c.roles["2024"], vec!["manage_bots".to_owned()]);
        assert_eq!(c.log.filter, "1");
        assert_eq!(c.server_key.unwrap().expose(), digits_key);

        for secret in ["true", "1.5", "-7", "0x10"] {
            let e = env(&[("TOKEN_SERVICE_WEBRTC__TURN_SHARED_SECRET", secret)]);
            let (c, _) = Config::load_from(None, &Overrides::default(), e).unwrap();
            assert_eq!(c.webrtc.turn_shared_secret.expose(), secret);
        }
    }

    #[test]
    fn numeric_and_boolean_settings_are_parsed_from_env_text() {
        let e = env(&[
            ("TOKEN_SERVICE_POOL__MAX_CONNECTIONS", "7"),
            ("TOKEN_SERVICE_ENABLE_COMMANDS", "false"),
            ("TOKEN_SERVICE_CACHE__ENABLE", " true "),
            ("TOKEN_SERVICE_WEBRTC__CREDENTIAL_TTL", "90"),
        ]);
        let (c, _) = Config::load_from(None, &Overrides::default(), e).unwrap();
        assert_eq!(c.pool.max_connections, 7);
        assert!(!c.enable_commands);
        assert!(c.cache.enable);
        assert_eq!(c.webrtc.credential_ttl, Ttl(90));
        for (name, value, key) in [
            (
                "TOKEN_SERVICE_POOL__MAX_CONNECTIONS",
                "many",
                "max_connections",
            ),
            ("TOKEN_SERVICE_ENABLE_COMMANDS", "yes", "enable_commands"),
        ] {
            let err =
                Config::load_from(None, &Overrides::default(), env(&[(name, value)])).unwrap_err();
            assert!(err.contains(key), "{name}={value}: {err}");
        }
    }

    #[test]
    fn secrets_are_masked() {
        let url = DatabaseUrl::new("postgres://app:hunter2@db:5432/ts?sslmode=require");
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db:5432/ts?sslmode=require"
        );
        assert!(!format!("{url:?}").contains("hunter2"));
        let plain = DatabaseUrl::new("postgres://postgres@127.0.0.1/x");
        assert_eq!(plain.to_string(), "postgres://postgres@127.0.0.1/x");
        assert_eq!(format!("{:?}", Secret::new("k")), "<redacted>");
        let c = Config {
            server_key: Some(Secret::new("deadbeef")),
            database_url: Some(url),
            ..Config::default()
        };
        let printed = format!("{c:?}");
        assert!(!printed.contains("deadbeef") && !printed.contains("hunter2"));
    }

    #[test]
    fn tls_settings_load_from_file_and_env_and_must_come_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[tls]\ncert_file = \"/etc/ts/server.pem\"\nkey_file = \"/etc/ts/server.key\"\n",
        )
        .unwrap();
        let e = env(&[("TOKEN_SERVICE_TLS__CLIENT_CA_FILE", "/etc/ts/ca.pem")]);
        let (c, report) = Config::load_from(Some(&file), &Overrides::default(), e).unwrap();
        assert!(report.unknown_env_vars.is_empty(), "{report:?}");
        assert!(c.tls.enabled());
        assert_eq!(c.tls.cert_file, Some(PathBuf::from("/etc/ts/server.pem")));
        assert_eq!(c.tls.client_ca_file, Some(PathBuf::from("/etc/ts/ca.pem")));
        let (plain, _) = Config::load_from(None, &Overrides::default(), env(&[])).unwrap();
        assert!(!plain.tls.enabled());

        for (pairs, named) in [
            (
                &[("TOKEN_SERVICE_TLS__CERT_FILE", "a.pem")][..],
                "tls.key_file",
            ),
            (
                &[("TOKEN_SERVICE_TLS__KEY_FILE", "a.key")][..],
                "tls.cert_file",
            ),
            (
                &[("TOKEN_SERVICE_TLS__CLIENT_CA_FILE", "ca.pem")][..],
                "tls.client_ca_file",
            ),
            (
                &[
                    ("TOKEN_SERVICE_TLS__CERT_FILE", ""),
                    ("TOKEN_SERVICE_TLS__KEY_FILE", "a.key"),
                ][..],
                "tls.cert_file",
            ),
        ] {
            let err = Config::load_from(None, &Overrides::default(), env(pairs)).unwrap_err();
            assert!(err.starts_with(named), "{pairs:?}: {err}");
        }
        std::fs::write(&file, "[tls]\ncert = \"x\"\n").unwrap();
        let err = Config::load_from(Some(&file), &Overrides::default(), env(&[])).unwrap_err();
        assert!(err.contains("cert"), "{err}");
    }
}
