//! A fresh database per test: a SQLite file in the test's temporary directory, or a
//! database named `ts_test_<time>_<random>` on the server named by `TEST_DATABASE_URL`,
//! dropped when the test stops its server (or, if the test panics first, when its
//! `TestDb` is dropped). Databases left by killed runs (older than an hour) are swept once
//! per test process. Without `TEST_DATABASE_URL` the run says, on the terminal, which
//! backends it skipped.

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use tokio::sync::OnceCell;

/// The environment variable selecting a server backend.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// The database server of a test that only a server backend can run (it is `#[ignore]`d,
/// so a plain `cargo test` reports it as ignored, and `.ci/run` runs it per backend): the
/// URL of `TEST_DATABASE_URL`, or a failure saying what the test needs.
pub fn required_server_url(needs: &str) -> String {
    std::env::var(TEST_DATABASE_URL)
        .ok()
        .filter(|u| u.starts_with("postgres") || u.starts_with("mysql"))
        .unwrap_or_else(|| panic!("this test needs {needs}: set TEST_DATABASE_URL (see .ci/run)"))
}

static SWEPT: OnceCell<()> = OnceCell::const_new();
static SAID_SKIPPED: std::sync::Once = std::sync::Once::new();

/// Tells the terminal (not the captured test output) that only SQLite runs.
fn say_server_backends_skipped() {
    use std::io::Write;
    SAID_SKIPPED.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "note: TEST_DATABASE_URL is not set: the integration tests run on SQLite only; \
             PostgreSQL and MariaDB are skipped (set TEST_DATABASE_URL, or run .ci/run)"
        );
    });
}

/// One test's database.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    server: Option<(String, String)>,
}

impl TestDb {
    /// Creates the database.
    pub async fn create(dir: &Path) -> Self {
        super::secret_scan::install();
        let Some(server_url) = std::env::var(TEST_DATABASE_URL)
            .ok()
            .filter(|u| !u.is_empty())
        else {
            say_server_backends_skipped();
            return Self {
                url: format!("sqlite://{}?mode=rwc", dir.join("test.db").display()),
                server: None,
            };
        };
        SWEPT.get_or_init(|| sweep(server_url.clone())).await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let name = format!(
            "ts_test_{now}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let admin = Database::connect(&server_url)
            .await
            .expect("connect to TEST_DATABASE_URL");
        let quoted = quote(admin.get_database_backend(), &name);
        admin
            .execute_unprepared(&format!("CREATE DATABASE {quoted}"))
            .await
            .expect("create test database");
        admin.close().await.ok();
        Self {
            url: with_database(&server_url, &name),
            server: Some((server_url, name)),
        }
    }

    /// The URL the service connects to.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Drops the database (server backends); SQLite files go with the temp dir.
    pub async fn drop_database(mut self) {
        let Some((server_url, name)) = self.server.take() else {
            return;
        };
        drop_named(&server_url, &name).await;
    }
}

impl Drop for TestDb {
    /// A test that panicked before stopping its server still drops its database, on a
    /// thread of its own that nobody waits for: the panicking test's runtime still holds the
    /// server's connections, and on MariaDB the drop waits until they close, which happens
    /// only once this thread lets the test unwind. If the process ends first, the next run
    /// sweeps the database.
    fn drop(&mut self) {
        let Some((server_url, name)) = self.server.take() else {
            return;
        };
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(drop_named(&server_url, &name));
        });
    }
}

async fn drop_named(server_url: &str, name: &str) {
    let admin = Database::connect(server_url)
        .await
        .expect("connect to drop");
    let backend = admin.get_database_backend();
    let quoted = quote(backend, name);
    let sql = match backend {
        DbBackend::Postgres => format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"),
        _ => format!("DROP DATABASE IF EXISTS {quoted}"),
    };
    admin
        .execute_unprepared(&sql)
        .await
        .unwrap_or_else(|e| panic!("drop test database {name}: {e}"));
    admin.close().await.ok();
}

async fn sweep(server_url: String) {
    let admin = Database::connect(&server_url)
        .await
        .expect("connect to sweep");
    let backend = admin.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT datname AS name FROM pg_database WHERE datname LIKE 'ts\\_test\\_%'"
        }
        _ => {
            "SELECT schema_name AS name FROM information_schema.schemata WHERE schema_name LIKE 'ts\\_test\\_%'"
        }
    };
    let rows = admin
        .query_all_raw(Statement::from_string(backend, sql))
        .await
        .expect("list leftover test databases");
    admin.close().await.ok();
    let cutoff = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    for row in rows {
        let name: String = row.try_get("", "name").expect("name column");
        let created = name
            .strip_prefix("ts_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        if created < cutoff {
            drop_named(&server_url, &name).await;
        }
    }
}

fn quote(backend: DbBackend, name: &str) -> String {
    match backend {
        DbBackend::MySql => format!("`{name}`"),
        _ => format!("\"{name}\""),
    }
}

/// Replaces the database name in a server URL, keeping any query string.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

/// Every (table, column) of the database at `url` whose value, read as text, contains
/// `needle` in some row; and how many columns were read. Reads every column of every table
/// (migration bookkeeping included), on any backend.
pub async fn columns_containing(url: &str, needle: &str) -> (Vec<(String, String)>, usize) {
    let db = Database::connect(url).await.expect("connect to scan");
    let backend = db.get_database_backend();
    let list_columns = match backend {
        DbBackend::Postgres => {
            "SELECT table_name AS t, column_name AS c FROM information_schema.columns \
             WHERE table_schema = current_schema()"
        }
        DbBackend::MySql => {
            "SELECT table_name AS t, column_name AS c FROM information_schema.columns \
             WHERE table_schema = DATABASE()"
        }
        _ => {
            "SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table'"
        }
    };
    let columns = db
        .query_all_raw(Statement::from_string(backend, list_columns))
        .await
        .expect("list columns");
    let mut found = Vec::new();
    for row in &columns {
        let table: String = row.try_get("", "t").expect("table name");
        let column: String = row.try_get("", "c").expect("column name");
        let (t, c) = (quote(backend, &table), quote(backend, &column));
        let as_text = match backend {
            DbBackend::MySql => format!("CAST({c} AS CHAR)"),
            _ => format!("CAST({c} AS TEXT)"),
        };
        let placeholder = match backend {
            DbBackend::Postgres => "$1",
            _ => "?",
        };
        let sql = format!("SELECT COUNT(*) AS n FROM {t} WHERE {as_text} LIKE {placeholder}");
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [format!("%{needle}%").into()],
            ))
            .await
            .unwrap_or_else(|e| panic!("scan {table}.{column}: {e}"))
            .expect("a count");
        let n: i64 = row.try_get("", "n").expect("count");
        if n > 0 {
            found.push((table, column));
        }
    }
    db.close().await.ok();
    (found, columns.len())
}
