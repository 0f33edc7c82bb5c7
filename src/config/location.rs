//! Where the service keeps its state, as the operator needs to see it: the database in
//! effect (for SQLite, the absolute file path and its directory), the server key's source
//! (the absolute key file path), and which setting chose each (a flag, a variable, the
//! configuration file or the default), so that a second, silent data directory is never a
//! mystery.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use super::{Config, DatabaseUrl};

/// Which source set a setting, for messages: `--data-dir`, `TOKEN_SERVICE_DATA_DIR`,
/// `data_dir in /etc/token-service/config.toml`, or the default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origins {
    pub data_dir: Origin,
    pub database_url: Origin,
    pub server_key_file: Origin,
    pub server_key: Origin,
}

/// One setting's source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Origin {
    /// Not set anywhere: the built-in default.
    #[default]
    Default,
    /// A command-line flag, e.g. `--data-dir`.
    Flag(&'static str),
    /// An environment variable, e.g. `TOKEN_SERVICE_DATA_DIR`.
    Env(String),
    /// The configuration file.
    File(PathBuf),
}

/// The local socket's file name in data_dir (unless `local_socket` says otherwise).
const LOCAL_SOCKET_FILE: &str = "token-service.sock";

impl Origin {
    /// "set by --data-dir", "set by TOKEN_SERVICE_DATA_DIR", "set in FILE", "not set".
    fn describe(&self) -> String {
        match self {
            Origin::Default => "not set".to_owned(),
            Origin::Flag(flag) => format!("set by {flag}"),
            Origin::Env(name) => format!("set by {name}"),
            Origin::File(path) => format!("set in {}", path.display()),
        }
    }
}

/// The database in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// An SQLite file.
    SqliteFile {
        /// Absolute path of the file.
        file: PathBuf,
        /// The URL lets SQLite create the file (`?mode=rwc`).
        create: bool,
    },
    /// An in-memory SQLite database (tests).
    SqliteMemory,
    /// A PostgreSQL or MariaDB/MySQL server (the URL, password masked when displayed).
    Server(DatabaseUrl),
}

impl fmt::Display for DatabaseLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseLocation::SqliteFile { file, .. } => write!(f, "{}", file.display()),
            DatabaseLocation::SqliteMemory => f.write_str("sqlite::memory:"),
            DatabaseLocation::Server(url) => write!(f, "{url}"),
        }
    }
}

/// Where the server key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// The `server_key` setting itself.
    Inline,
    /// A key file (absolute path); `default` when it is `<data_dir>/server.key`.
    File { path: PathBuf, default: bool },
}

impl fmt::Display for KeyLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyLocation::Inline => f.write_str("(the server_key setting)"),
            KeyLocation::File { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

/// `path` made absolute against the working directory (without touching the file system,
/// so it works for files that do not exist yet).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The SQLite target of a URL, read as the driver reads it: `sqlite::memory:`,
/// `sqlite://PATH?query` or `sqlite:PATH?query`, `mode=rwc` creating a missing file and
/// `mode=memory` meaning no file. `None` for other schemes.
pub fn sqlite_target(url: &str) -> Option<DatabaseLocation> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mode = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "mode")
        .map(|(_, v)| v.into_owned());
    if path == ":memory:" || path.is_empty() || mode.as_deref() == Some("memory") {
        return Some(DatabaseLocation::SqliteMemory);
    }
    Some(DatabaseLocation::SqliteFile {
        file: absolute(Path::new(path)),
        create: mode.as_deref() == Some("rwc"),
    })
}

impl Config {
    /// The database in effect, with absolute paths.
    pub fn database_location(&self) -> DatabaseLocation {
        let url = self.effective_database_url();
        sqlite_target(url.expose()).unwrap_or(DatabaseLocation::Server(url))
    }

    /// The server key's source, with absolute paths.
    pub fn server_key_location(&self) -> KeyLocation {
        if self.server_key.is_some() {
            return KeyLocation::Inline;
        }
        match &self.server_key_file {
            Some(path) => KeyLocation::File {
                path: absolute(path),
                default: false,
            },
            None => KeyLocation::File {
                path: absolute(&self.data_dir.join("server.key")),
                default: true,
            },
        }
    }

    /// The data directory, absolute.
    pub fn absolute_data_dir(&self) -> PathBuf {
        absolute(&self.data_dir)
    }

    /// The local operator socket's absolute path, or `None` when `enable_local_socket` is off.
    pub fn local_socket_path(&self) -> Option<PathBuf> {
        if !self.enable_local_socket {
            return None;
        }
        Some(match &self.local_socket {
            Some(path) => absolute(path),
            None => self.absolute_data_dir().join(LOCAL_SOCKET_FILE),
        })
    }

    /// Whether the SQLite file (if that is the database) lies inside the data directory, in
    /// which case the data directory may be created for it.
    pub fn database_is_in_data_dir(&self) -> bool {
        match self.database_location() {
            DatabaseLocation::SqliteFile { file, .. } => file.starts_with(self.absolute_data_dir()),
            _ => false,
        }
    }

    /// One line for the operator: where the database and the server key are.
    pub fn state_summary(&self) -> String {
        let kind = match self.database_location() {
            DatabaseLocation::SqliteFile { .. } => " (SQLite)",
            _ => "",
        };
        format!(
            "database: {}{kind}; server key: {}",
            self.database_location(),
            self.server_key_location()
        )
    }

    /// How data_dir came to be what it is, in words.
    fn data_dir_origin(&self) -> String {
        match &self.origins.data_dir {
            Origin::Default => format!(
                "the default ./data, relative to the working directory {}",
                absolute(Path::new(".")).display()
            ),
            other => format!("{:?} {}", self.data_dir, other.describe()),
        }
    }

    /// Which setting chose the database, in words, for messages about a missing one.
    pub fn database_chosen_by(&self) -> String {
        if self.database_url.is_some() {
            return format!(
                "database_url {}; choose the database with database_url, \
                 TOKEN_SERVICE_DATABASE_URL or --database-url",
                self.origins.database_url.describe()
            );
        }
        format!(
            "database_url is not set, so the database is token-service.db in data_dir {}, and \
             data_dir is {}; choose it with data_dir, TOKEN_SERVICE_DATA_DIR or --data-dir \
             (or database_url)",
            self.absolute_data_dir().display(),
            self.data_dir_origin(),
        )
    }

    /// Which setting chose the server key file, in words.
    pub fn server_key_chosen_by(&self) -> String {
        if self.server_key_file.is_some() {
            return format!(
                "server_key_file {}; choose the key with server_key_file, \
                 TOKEN_SERVICE_SERVER_KEY_FILE or server_key",
                self.origins.server_key_file.describe()
            );
        }
        format!(
            "neither server_key nor server_key_file is set, so the key file is server.key in \
             data_dir {}, and data_dir is {}; choose it with data_dir, TOKEN_SERVICE_DATA_DIR \
             or --data-dir (or server_key_file, server_key)",
            self.absolute_data_dir().display(),
            self.data_dir_origin(),
        )
    }

    /// For commands that must not create state (`admin`): the database file and the key
    /// file must exist. The error names the absolute paths looked at and the settings that
    /// chose them.
    pub fn require_existing_state(&self) -> Result<(), String> {
        if let DatabaseLocation::SqliteFile { file, .. } = self.database_location()
            && !file.exists()
        {
            return Err(format!(
                "no database at {} ({}). admin commands never create a database or a key: \
                 point them at the server's data (the same data_dir or database_url as \
                 `serve`), or create it here with `token-service admin init`",
                file.display(),
                self.database_chosen_by()
            ));
        }
        if let KeyLocation::File { path, .. } = self.server_key_location()
            && !path.exists()
        {
            return Err(format!(
                "no server key file at {} ({}). admin commands never create a database or a \
                 key: configure the server's key (the same server_key or server_key_file as \
                 `serve`), or create one here with `token-service admin init`",
                path.display(),
                self.server_key_chosen_by()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_are_read_as_the_driver_reads_them() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            sqlite_target("sqlite://data/x.db?mode=rwc"),
            Some(DatabaseLocation::SqliteFile {
                file: cwd.join("data/x.db"),
                create: true
            })
        );
        assert_eq!(
            sqlite_target("sqlite:///var/lib/ts.db"),
            Some(DatabaseLocation::SqliteFile {
                file: PathBuf::from("/var/lib/ts.db"),
                create: false
            })
        );
        assert_eq!(
            sqlite_target("sqlite:x.db"),
            Some(DatabaseLocation::SqliteFile {
                file: cwd.join("x.db"),
                create: false
            })
        );
        assert_eq!(
            sqlite_target("sqlite::memory:"),
            Some(DatabaseLocation::SqliteMemory)
        );
        assert_eq!(
            sqlite_target("sqlite://x.db?mode=memory&cache=shared"),
            Some(DatabaseLocation::SqliteMemory)
        );
        assert_eq!(sqlite_target("postgres://h/db"), None);
    }

    #[test]
    fn the_default_state_is_in_the_data_directory_with_absolute_paths() {
        let config = Config::default();
        let data = std::env::current_dir().unwrap().join("data");
        assert_eq!(
            config.database_location(),
            DatabaseLocation::SqliteFile {
                file: data.join("token-service.db"),
                create: true
            }
        );
        assert!(config.database_is_in_data_dir());
        assert_eq!(
            config.server_key_location(),
            KeyLocation::File {
                path: data.join("server.key"),
                default: true
            }
        );
        let summary = config.state_summary();
        assert!(summary.contains(&data.display().to_string()), "{summary}");
    }
}
