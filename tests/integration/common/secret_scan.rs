//! The trace-level secret scan's half in the test process (`.ci/secret-scan` runs the suite
//! this way and scans afterwards). With `TS_SECRET_SCAN_DIR` set, the first test that
//! creates a database installs, once for the whole process:
//! - a tracing subscriber at `trace` for every target (the service's and its libraries',
//!   `log` records included), writing every event with its span fields to
//!   `<dir>/trace.log`: what an operator running with `RUST_LOG=trace` would see from every
//!   in-process server of the suite;
//! - the recorder of minted secrets (`token_service::domain::secret::minted`, the
//!   `record-minted-secrets` feature of this crate's own tests), writing every token,
//!   webhook signing secret, TURN password and generated key any server or fixture mints to
//!   `<dir>/secrets.txt`, plus the suite's fixed server key.
//!
//! Servers the suite runs as child processes ([`super::Replica`]) log at `trace` too, into
//! `<dir>/children.log` (their own minted secrets are not recorded, but every secret the
//! in-process servers and fixtures minted, which the tests hand to them, is).
//!
//! Without the variable nothing is installed and tests run as usual.

use std::{
    fs::OpenOptions,
    io::Write,
    path::PathBuf,
    sync::{Mutex, Once},
};

use super::TEST_SERVER_KEY;

/// The variable naming the directory for `trace.log` and `secrets.txt`.
pub const SECRET_SCAN_DIR: &str = "TS_SECRET_SCAN_DIR";

static INSTALL: Once = Once::new();

/// Installs the trace log and the secret recorder if `TS_SECRET_SCAN_DIR` is set.
pub fn install() {
    INSTALL.call_once(|| {
        let Some(dir) = std::env::var_os(SECRET_SCAN_DIR).filter(|d| !d.is_empty()) else {
            return;
        };
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("TS_SECRET_SCAN_DIR");
        let open = |name: &str| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
        };
        let mut secrets = open("secrets.txt");
        writeln!(secrets, "{TEST_SERVER_KEY}").unwrap();
        assert!(
            token_service::domain::secret::minted::record_to(Box::new(secrets)),
            "the secret recorder was already installed"
        );
        let log = Mutex::new(open("trace.log"));
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(log)
            .with_ansi(false)
            .with_thread_names(true)
            .try_init()
            .expect("no other tracing subscriber is installed in the test process");
        tracing::info!(target: "secret_scan", "trace log and secret recorder installed");
    });
}

/// With `TS_SECRET_SCAN_DIR` set: `<dir>/children.log`, opened for appending, for a child
/// process server's log lines (run it with `RUST_LOG=trace`).
pub fn child_log() -> Option<std::fs::File> {
    let dir = std::env::var_os(SECRET_SCAN_DIR).filter(|d| !d.is_empty())?;
    let path = PathBuf::from(dir).join("children.log");
    Some(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
}
