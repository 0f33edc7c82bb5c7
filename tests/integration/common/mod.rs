//! Test harness: a real server on 127.0.0.1:0 with a fresh database per test, the generated
//! tonic client over a real socket, and fixtures that provision users directly through the
//! domain as the local operator (as `token-service admin` does).
//!
//! - [`server`]: [`TestServer`], starting, stopping and reaching a server.
//! - [`fixtures`]: the actors a test acts as ([`Actor`]: users, admins, bots) and tokens that
//!   already exist.
//! - [`actor`]: typed calls per actor, `srv.as_(&alice).revoke_token(&id).await`.
//! - [`assertions`]: what a refused call must look like (`assert_denied`, `assert_invalid`, ..).
//! - [`replica`]: a second replica as its own process, and the revocation stream helpers.
//! - [`db`]: the per-test database; [`proxy`]: a TCP proxy for fault tests.
//! - [`secret_scan`]: with `TS_SECRET_SCAN_DIR`, every server's trace-level log and every
//!   minted secret are written there for `.ci/secret-scan`.
//!
//! Backend: SQLite in a temporary directory by default. Set `TEST_DATABASE_URL` to a
//! PostgreSQL or MariaDB/MySQL server URL (for example
//! `postgres://postgres@127.0.0.1:5432/postgres` or `mysql://root@127.0.0.1:3306/test`) to
//! run every test on a fresh database created on that server and dropped afterwards.

#![allow(
    dead_code,
    reason = "shared helpers; not every test module uses every one"
)]

pub mod actor;
pub mod assertions;
pub mod db;
pub mod fixtures;
pub mod proxy;
pub mod receiver;
pub mod replica;
pub mod secret_scan;
pub mod server;

pub use actor::*;
pub use assertions::*;
pub use db::TestDb;
pub use fixtures::*;
pub use receiver::*;
pub use replica::*;
pub use server::*;

/// A plain reqwest client. The service's webhook sender makes reqwest use rustls without
/// a built-in crypto provider (ring is installed as the process default instead, never
/// aws-lc-rs), so a client built before any server started in this process needs ring
/// installed first: build clients here, or call [`install_crypto_provider`].
pub fn http_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::new()
}

/// `reqwest::get` with [`http_client`].
pub async fn http_get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    http_client().get(url).send().await
}

/// A sample of the `/metrics` served at `http_addr` (the series name with its labels, as
/// exposed); `None` when the series is absent.
pub async fn scrape_metric(http_addr: impl std::fmt::Display, series: &str) -> Option<f64> {
    let text = http_get(format!("http://{http_addr}/metrics"))
        .await
        .unwrap_or_else(|e| panic!("scrape {http_addr}: {e}"))
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{series}: {v} is no number"))
        })
}

/// A counter of the `/metrics` served at `http_addr`; panics when the series is absent.
pub async fn counter_at(http_addr: impl std::fmt::Display, series: &str) -> u64 {
    let value = scrape_metric(&http_addr, series)
        .await
        .unwrap_or_else(|| panic!("{http_addr} reports no {series}"));
    value as u64
}

/// Installs ring as rustls' process-wide provider (idempotent), as the server does.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Sends `request` (a request head and the start of its body) on a new connection to
/// `addr`, sends nothing more, and returns everything the server answers before it closes
/// the connection (or 5 s pass). Blocking socket calls, off the runtime that runs the server.
pub async fn send_partial_request(addr: impl std::fmt::Display, request: String) -> String {
    use std::io::{Read as _, Write as _};
    let addr = addr.to_string();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
        stream.write_all(request.as_bytes()).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap()
}
