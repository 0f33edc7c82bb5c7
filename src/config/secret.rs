//! Values that must not be printed, and the server key's sources: [`Secret`] (redacted in
//! `Debug`, no `Display`), [`DatabaseUrl`] (password masked), [`Ttl`] (a duration written
//! with a unit), and the server key read from the configuration or its key file, generated
//! with mode 0600 on first start.

use std::{fmt, fs, io::Write, path::Path};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::Config;
use crate::domain::secret::ServerKey;

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

/// A duration in milliseconds, written as a number of seconds or as "250ms", "10s", "30m",
/// "12h", "3d".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Span(pub u64);

impl Span {
    /// The duration in milliseconds.
    pub fn millis(self) -> u64 {
        self.0
    }
}

impl From<Span> for String {
    /// The shortest exact form: "3d", "30s", "250ms".
    fn from(span: Span) -> String {
        let ms = span.0;
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms != 0 && ms.is_multiple_of(size) {
                return format!("{}{unit}", ms / size);
            }
        }
        format!("{ms}ms")
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => s
                .checked_mul(1_000)
                .map(Span)
                .ok_or_else(|| serde::de::Error::custom("duration is too large")),
            Raw::Text(text) => parse_span(&text)
                .map(Span)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parses a duration ("250ms", "10s", "30m", "12h", "3d"; a bare number is seconds) into
/// milliseconds.
pub fn parse_span(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| {
        format!("invalid duration {text:?}: use seconds or 250ms, 10s, 30m, 12h, 3d")
    })?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "invalid duration unit in {text:?}: use ms, s, m, h or d"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("duration {text:?} is too large"))
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

impl Config {
    /// The server key: configured as hex, or read from a file, or generated on first start
    /// into `<data_dir>/server.key` (mode 0600; data_dir 0700 if it is created). A key file
    /// group or others may read is refused unless `allow_readable_key_files`. `backend` is
    /// the database's kind: a key file beside a shared database gets a warning, as every
    /// replica needs the same key.
    pub(crate) fn load_server_key(&self, backend: &str) -> Result<ServerKey, String> {
        if let Some(key) = &self.server_key {
            return ServerKey::from_hex(key.expose()).map_err(|e| format!("server_key: {e}"));
        }
        let path = match &self.server_key_file {
            Some(path) => path.clone(),
            None => {
                if backend != "sqlite" {
                    warn!(
                        "no server_key configured: using a key file in data_dir; every replica \
                         sharing this database needs the same key"
                    );
                }
                let path = self.data_dir.join("server.key");
                if !path.exists() {
                    generate_key_file(&path)?;
                    info!(path = %super::absolute(&path).display(), "generated a new server key");
                }
                path
            }
        };
        let text = fs::read_to_string(&path)
            .map_err(|e| format!("server_key_file {}: {e}", path.display()))?;
        crate::private_files::check_key_file(
            "server_key_file",
            &path,
            self.allow_readable_key_files,
        )?;
        ServerKey::from_hex(&text).map_err(|e| format!("server_key_file {}: {e}", path.display()))
    }
}

fn generate_key_file(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        crate::private_files::create_private_dir(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let key = ServerKey::generate_hex()?;
    let mut file = crate::private_files::create_private_file(path)
        .map_err(|e| format!("cannot create server key file {}: {e}", path.display()))?;
    file.write_all(key.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write server key file {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn spans_are_seconds_or_a_number_with_a_unit_and_print_back() {
        assert_eq!(parse_span("90").unwrap(), 90_000);
        assert_eq!(parse_span("250ms").unwrap(), 250);
        assert_eq!(parse_span("3d").unwrap(), 259_200_000);
        assert!(parse_span("3w").is_err());
        assert!(parse_span("ms").is_err());
        assert_eq!(String::from(Span(259_200_000)), "3d");
        assert_eq!(String::from(Span(1_500)), "1500ms");
        assert_eq!(String::from(Span(0)), "0ms");
    }

    #[test]
    fn ttls_are_seconds_or_a_number_with_a_unit() {
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("2d").unwrap(), 172_800);
        assert!(parse_ttl("3w").is_err());
    }
}
