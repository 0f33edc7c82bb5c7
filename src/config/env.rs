//! The environment layer: which `TOKEN_SERVICE_*` variables are settings, and how each
//! value (always text) is read as its setting's type, derived from the defaults.

use std::collections::BTreeMap;

use super::Config;

/// Prefix of every environment variable the service reads.
pub const ENV_PREFIX: &str = "TOKEN_SERVICE_";

/// Variables with the prefix that are not settings.
const NON_SETTING_ENV_VARS: [&str; 1] = ["TOKEN_SERVICE_CONFIG"];

/// One `TOKEN_SERVICE_*` variable that is a setting.
#[derive(Debug, Clone)]
pub(super) struct EnvSetting {
    /// The variable's name, for messages (`TOKEN_SERVICE_POOL__MAX_CONNECTIONS`).
    pub name: String,
    /// The key path (`pool.max_connections`).
    pub path: String,
    /// The value, typed for the setting.
    pub value: figment::value::Value,
}

/// Metadata names of the environment providers start with this, followed by the
/// variable's name: a value that does not fit its setting is reported by variable.
pub(super) const ENV_METADATA_PREFIX: &str = "environment variable ";

impl figment::Provider for EnvSetting {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("{ENV_METADATA_PREFIX}{}", self.name))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let figment::value::Value::Dict(_, dict) =
            figment::util::nest(&self.path, self.value.clone())
        else {
            return Err(figment::Error::from(format!(
                "{}: not a settings key",
                self.name
            )));
        };
        Ok(figment::value::Map::from([(
            figment::Profile::Global,
            dict,
        )]))
    }
}

/// The settings among `env`, in the order given, each with its variable name, key path
/// (`pool.max_connections`) and value typed for the setting; and the names of the
/// `TOKEN_SERVICE_*` variables that match no setting.
pub(super) fn settings(
    env: impl IntoIterator<Item = (String, String)>,
) -> (Vec<EnvSetting>, Vec<String>) {
    let known = known_keys();
    let mut values = Vec::new();
    let mut unknown = Vec::new();
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
            Some(kind) => values.push(EnvSetting {
                value: env_value(kind, &value),
                name,
                path,
            }),
            None => unknown.push(name),
        }
    }
    (values, unknown)
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
    /// A list of entries that contain commas and spaces (certificate subjects):
    /// `;`-separated.
    SemicolonList,
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
        EnvKind::SemicolonList => Value::from(
            raw.split(';')
                .map(str::trim)
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
            // Optional settings (null by default) are text (URLs, keys, paths, key ids) but
            // for the numbers named after the walk.
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
    out.insert(
        "ext_authz.allowed_client_subjects".to_owned(),
        EnvKind::SemicolonList,
    );
    for optional in ["database_url", "server_key", "server_key_file"] {
        out.entry(optional.to_owned()).or_insert(EnvKind::Text);
    }
    // The one optional number (null by default: its default depends on the database).
    out.insert("pool.check_batches".to_owned(), EnvKind::Number);
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Overrides, Ttl, tests::env};
    use super::*;

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
    fn webhook_settings_load_from_env_with_units_and_are_checked() {
        let e = env(&[
            ("TOKEN_SERVICE_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES", "true"),
            ("TOKEN_SERVICE_WEBHOOKS__TIMEOUT", "250ms"),
            ("TOKEN_SERVICE_WEBHOOKS__LEASE", "2"),
            ("TOKEN_SERVICE_WEBHOOKS__DISABLE_AFTER", "36h"),
            ("TOKEN_SERVICE_WEBHOOKS__POLL_INTERVAL", "50ms"),
        ]);
        let (c, report) = Config::load_from(None, &Overrides::default(), e).unwrap();
        assert!(report.unknown_env_vars.is_empty(), "{report:?}");
        assert!(c.webhooks.allow_private_addresses);
        assert_eq!(c.webhooks.timeout.millis(), 250);
        assert_eq!(c.webhooks.lease.millis(), 2_000, "a bare number is seconds");
        assert_eq!(c.webhooks.disable_after.millis(), 36 * 3_600_000);
        assert_eq!(c.webhooks.poll_interval.millis(), 50);
        for (name, value, words) in [
            (
                "TOKEN_SERVICE_WEBHOOKS__DISABLE_AFTER",
                "12h",
                "at least 1d",
            ),
            ("TOKEN_SERVICE_WEBHOOKS__TIMEOUT", "0", "webhooks.timeout"),
            ("TOKEN_SERVICE_WEBHOOKS__LEASE", "2w", "webhooks.lease"),
        ] {
            let err =
                Config::load_from(None, &Overrides::default(), env(&[(name, value)])).unwrap_err();
            assert!(err.contains(words), "{name}={value}: {err}");
        }
    }

    #[test]
    fn ext_authz_subjects_load_from_env_separated_by_semicolons() {
        let e = env(&[
            ("TOKEN_SERVICE_TLS__CERT_FILE", "/x/cert.pem"),
            ("TOKEN_SERVICE_TLS__KEY_FILE", "/x/key.pem"),
            ("TOKEN_SERVICE_TLS__CLIENT_CA_FILE", "/x/ca.pem"),
            (
                "TOKEN_SERVICE_EXT_AUTHZ__ALLOWED_CLIENT_SUBJECTS",
                "CN=envoy, O=platform; CN=istio-ingress ;",
            ),
        ]);
        let (c, report) = Config::load_from(None, &Overrides::default(), e).unwrap();
        assert!(report.unknown_env_vars.is_empty(), "{report:?}");
        assert_eq!(
            c.ext_authz.allowed_client_subjects,
            vec!["CN=envoy, O=platform", "CN=istio-ingress"]
        );
        let err = Config::load_from(
            None,
            &Overrides::default(),
            env(&[(
                "TOKEN_SERVICE_EXT_AUTHZ__ALLOWED_CLIENT_SUBJECTS",
                "CN=envoy",
            )]),
        )
        .unwrap_err();
        assert!(err.contains("ext_authz.allowed_client_subjects"), "{err}");
        assert!(err.contains("tls.client_ca_file"), "{err}");
        let err = Config::load_from(
            None,
            &Overrides::default(),
            env(&[
                ("TOKEN_SERVICE_TLS__CLIENT_CA_FILE", "/x/ca.pem"),
                ("TOKEN_SERVICE_EXT_AUTHZ__ALLOWED_CLIENT_SUBJECTS", "envoy"),
            ]),
        )
        .unwrap_err();
        assert!(err.contains("ext_authz.allowed_client_subjects"), "{err}");
        assert!(err.contains("TYPE=value"), "{err}");
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
}
