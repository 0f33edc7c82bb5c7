//! Probes that orchestrators expect: `/livez` (the process serves, whatever the database
//! does), `/readyz` (database reachable, migrations applied, revocation feed caught up; 503
//! naming the failing check otherwise), Mattermost's `GET /api/v4/system/ping`, gRPC health
//! split the same way (the server "" is liveness, TokenService is readiness), and the
//! optional management listener with `/metrics`, `/livez` and `/readyz`.
//!
//! Cutting the database needs a database server (TEST_DATABASE_URL): on SQLite those tests
//! are skipped and say so; the migration checks run everywhere.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::Http;
use crate::common::{
    proxy::{self, ChaosProxy},
    *,
};

const SERVICE: &str = "token_service.v1.TokenService";

/// A response outside Mattermost's envelope, read whole.
#[derive(Debug)]
struct Plain {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Plain {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

async fn get(base: &str, path: &str) -> Plain {
    let response = crate::common::http_client()
        .get(format!("{base}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {base}{path}: {e}"));
    Plain {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

async fn health(srv: &TestServer, service: &str) -> i32 {
    HealthClient::new(srv.channel().await)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// Asks `base`/readyz every 50 ms until `done` accepts the answer (at most `secs` seconds),
/// and returns that answer.
async fn readyz_until(base: &str, secs: u64, what: &str, done: impl Fn(&Plain) -> bool) -> Plain {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let answer = get(base, "/readyz").await;
        if done(&answer) {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {secs} s: {what}; last answer {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_probe_headers(answer: &Plain) {
    assert_eq!(
        answer.headers["content-type"], "application/json",
        "{answer:?}"
    );
    assert_eq!(answer.headers["cache-control"], "no-store", "{answer:?}");
}

#[tokio::test]
async fn livez_and_readyz_answer_200_with_a_small_json_when_ready() {
    let srv = TestServer::start().await;
    let livez = get(&srv.http_base(), "/livez").await;
    assert_eq!(livez.status, 200, "{livez:?}");
    assert_probe_headers(&livez);
    assert_eq!(livez.json(), json!({"status": "ok"}));

    let readyz = get(&srv.http_base(), "/readyz").await;
    assert_eq!(readyz.status, 200, "{readyz:?}");
    assert_probe_headers(&readyz);
    assert_eq!(
        readyz.json(),
        json!({
            "status": "ready",
            "checks": {
                "database": "ok",
                "migrations": "ok",
                "revocation_feed": "ok",
                "listeners": "ok",
                "shutdown": "ok",
            }
        })
    );
    // No authentication is involved: a bad token changes nothing.
    let with_token = crate::common::http_client()
        .get(format!("{}/readyz", srv.http_base()))
        .bearer_auth("not-a-token-at-all-xxxxxxxxxxxx")
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 200);
    srv.stop().await;
}

#[tokio::test]
async fn a_missing_migration_makes_readyz_503_and_the_service_not_serving_while_livez_stays_200() {
    let srv = TestServer::start().await;
    // Another process rolls the schema back: this binary's migrations are no longer all applied.
    let newest = srv.ctx.store().migration_status().await.unwrap();
    let newest = newest.last().unwrap().name.clone();
    srv.ctx.store().migrate_down(1).await.unwrap();

    let base = srv.http_base();
    let answer = readyz_until(&base, 5, "readyz turns 503", |a| a.status == 503).await;
    assert_probe_headers(&answer);
    let body = answer.json();
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["failed"], "migrations", "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("migrations: migrations not applied: {newest}")),
        "{reason}"
    );
    assert!(reason.contains("token-service migrate"), "{reason}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");

    // The same split on gRPC: the server serves, the token service is not ready.
    let get_livez = get(&base, "/livez").await;
    assert_eq!(get_livez.status, 200, "{get_livez:?}");
    assert_eq!(health(&srv, "").await, ServingStatus::Serving as i32);
    assert_eq!(
        health(&srv, SERVICE).await,
        ServingStatus::NotServing as i32
    );

    srv.ctx.store().migrate_up().await.unwrap();
    readyz_until(&base, 5, "readyz 200 again", |a| a.status == 200).await;
    assert_eq!(health(&srv, SERVICE).await, ServingStatus::Serving as i32);
    assert_eq!(health(&srv, "").await, ServingStatus::Serving as i32);
    srv.stop().await;
}

#[tokio::test]
async fn system_ping_answers_mattermosts_shape_without_authentication() {
    let srv = TestServer::start().await;
    let http = Http::new(&srv);
    // Mattermost's JSON, keys in Go's (sorted) order, no auth.
    let ping = http
        .send(Method::GET, "/api/v4/system/ping", None, None, &[])
        .await;
    ping.assert_ok();
    assert_eq!(
        ping.raw,
        r#"{"ActiveSearchBackend":"database","AndroidLatestVersion":"","AndroidMinVersion":"","IosLatestVersion":"","IosMinVersion":"","status":"OK"}"#
    );
    assert!(ping.headers.contains_key("x-version-id"), "{ping:?}");
    assert!(!ping.headers.contains_key("database_status"), "{ping:?}");
    // A garbage token does not turn it into a 401 (Mattermost's ApiHandler needs no session).
    let with_garbage = http
        .get("/api/v4/system/ping", "garbage-token-xxxxxxxxxxxxxxxxxx")
        .await;
    with_garbage.assert_ok();

    // The server-status variant checks the database now and says so in body and headers.
    let status = http
        .send(
            Method::GET,
            "/api/v4/system/ping?get_server_status=true",
            None,
            None,
            &[],
        )
        .await;
    status.assert_ok();
    assert_eq!(status.json["status"], "OK");
    assert_eq!(status.json["database_status"], "OK");
    assert_eq!(status.headers["status"], "OK");
    assert_eq!(status.headers["database_status"], "OK");
    // Only "true" turns it on, as Go's `r.FormValue(...) == "true"`.
    let not_true = http
        .send(
            Method::GET,
            "/api/v4/system/ping?get_server_status=1",
            None,
            None,
            &[],
        )
        .await;
    assert!(
        not_true.json.get("database_status").is_none(),
        "{not_true:?}"
    );

    // Only GET is routed: anything else is the router's 404, as in Mattermost.
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        http.send(method, "/api/v4/system/ping", None, Some("{}"), &[])
            .await
            .assert_error(404, "api.context.404.app_error");
    }
    srv.stop().await;
}

#[tokio::test]
async fn the_management_listener_serves_the_probes_and_metrics_and_nothing_else() {
    let srv =
        TestServer::start_with(|c| c.management_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let management = format!(
        "http://{}",
        srv.config
            .management_addr
            .expect("the bound management address")
    );
    assert_ne!(management, srv.http_base());

    let livez = get(&management, "/livez").await;
    assert_eq!(livez.status, 200, "{livez:?}");
    assert_eq!(livez.json(), json!({"status": "ok"}));
    let readyz = get(&management, "/readyz").await;
    assert_eq!(readyz.status, 200, "{readyz:?}");
    assert_eq!(readyz.json()["status"], "ready");

    let metrics = get(&management, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let version = env!("CARGO_PKG_VERSION");
    let build_info = metrics
        .body
        .lines()
        .find(|l| l.starts_with("token_service_build_info{"))
        .unwrap_or_else(|| panic!("no build_info: {}", metrics.body));
    assert!(
        build_info.starts_with(&format!(
            "token_service_build_info{{version=\"{version}\",commit=\""
        )),
        "{build_info}"
    );
    assert!(build_info.ends_with("\"} 1"), "{build_info}");
    let commit = build_info
        .split("commit=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{build_info}"
    );
    if cfg!(target_os = "linux") {
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_threads",
            "process_start_time_seconds",
        ] {
            let line = metrics
                .body
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name}: {}", metrics.body));
            let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(value > 0.0, "{line}");
        }
    }

    // The API is not served there.
    let api = get(&management, "/api/v4/system/ping").await;
    assert_eq!(api.status, 404, "{api:?}");
    let api = get(&management, "/api/v4/users/me").await;
    assert_eq!(api.status, 404, "{api:?}");

    // By default the public port keeps serving them too.
    for path in ["/livez", "/readyz", "/metrics"] {
        let public = get(&srv.http_base(), path).await;
        assert_eq!(public.status, 200, "{path}: {public:?}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn probes_and_metrics_can_be_kept_off_the_public_port() {
    let srv = TestServer::start_with(|c| {
        c.management_addr = Some("127.0.0.1:0".parse().unwrap());
        c.probes_on_http_addr = false;
    })
    .await;
    let management = format!("http://{}", srv.config.management_addr.unwrap());
    let http = Http::new(&srv);
    for path in ["/livez", "/readyz", "/metrics"] {
        http.send(Method::GET, path, None, None, &[])
            .await
            .assert_error(404, "api.context.404.app_error");
        assert_eq!(get(&management, path).await.status, 200, "{path}");
    }
    // Mattermost's ping is part of the API: it stays on the public port.
    http.send(Method::GET, "/api/v4/system/ping", None, None, &[])
        .await
        .assert_ok();
    srv.stop().await;
}

#[test]
fn management_settings_load_from_the_environment_and_are_checked() {
    use token_service::config::{Config, Overrides};
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let (defaults, _) = Config::load_from(None, &Overrides::default(), env(&[])).unwrap();
    assert_eq!(defaults.management_addr, None, "off by default");
    assert!(defaults.probes_on_http_addr);

    let (c, report) = Config::load_from(
        None,
        &Overrides::default(),
        env(&[
            ("TOKEN_SERVICE_MANAGEMENT_ADDR", "127.0.0.1:9090"),
            ("TOKEN_SERVICE_PROBES_ON_HTTP_ADDR", "false"),
        ]),
    )
    .unwrap();
    assert!(report.unknown_env_vars.is_empty(), "{report:?}");
    assert_eq!(c.management_addr, Some("127.0.0.1:9090".parse().unwrap()));
    assert!(!c.probes_on_http_addr);

    let err = Config::load_from(
        None,
        &Overrides::default(),
        env(&[("TOKEN_SERVICE_PROBES_ON_HTTP_ADDR", "false")]),
    )
    .unwrap_err();
    assert!(err.contains("probes_on_http_addr"), "{err}");
    assert!(err.contains("management_addr"), "{err}");

    let err = Config::load_from(
        None,
        &Overrides::default(),
        env(&[("TOKEN_SERVICE_MANAGEMENT_ADDR", "127.0.0.1:8065")]),
    )
    .unwrap_err();
    assert!(err.starts_with("management_addr:"), "{err}");
}

/// A server behind the fault proxy, with short pool timeouts and a management listener.
async fn server_behind_a_proxy() -> (ChaosProxy, TestServer) {
    proxy::server_behind_a_proxy(|c| {
        c.pool.acquire_timeout_secs = 1;
        c.pool.connect_timeout_secs = 1;
        c.management_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

#[tokio::test]
#[ignore = "needs a database server (TEST_DATABASE_URL, PostgreSQL or MariaDB); .ci/run runs it"]
async fn with_the_database_cut_livez_stays_200_and_readyz_names_the_database_until_it_returns() {
    let (proxy, srv) = server_behind_a_proxy().await;
    let public = srv.http_base();
    let management = format!("http://{}", srv.config.management_addr.unwrap());
    assert_eq!(get(&public, "/readyz").await.status, 200);

    proxy.cut();
    let body = readyz_until(&public, 5, "readyz names the database", |a| {
        a.status == 503 && a.json()["failed"] == "database"
    })
    .await
    .json();
    assert_eq!(body["status"], "not_ready", "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.starts_with("database: the database"), "{body}");
    assert!(
        !reason.contains(
            &srv.config
                .database_url
                .as_ref()
                .unwrap()
                .expose()
                .to_owned()
        ),
        "{body}"
    );
    for base in [&public, &management] {
        let readyz = get(base, "/readyz").await;
        assert_eq!(readyz.status, 503, "{base}: {readyz:?}");
        // Liveness never depends on the database.
        let livez = get(base, "/livez").await;
        assert_eq!(livez.status, 200, "{base}: {livez:?}");
        assert_eq!(livez.json(), json!({"status": "ok"}));
    }
    // gRPC: the server serves, the token service is not ready.
    assert_eq!(health(&srv, "").await, ServingStatus::Serving as i32);
    assert_eq!(
        health(&srv, SERVICE).await,
        ServingStatus::NotServing as i32
    );
    // Mattermost's ping: fine without the server status; with it, UNHEALTHY and 500, or 200
    // with `use_rest_semantics=true`.
    let http = Http::new(&srv);
    http.send(Method::GET, "/api/v4/system/ping", None, None, &[])
        .await
        .assert_ok();
    let unhealthy = http
        .send(
            Method::GET,
            "/api/v4/system/ping?get_server_status=true",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(unhealthy.status.as_u16(), 500, "{unhealthy:?}");
    assert_eq!(unhealthy.json["status"], "UNHEALTHY");
    assert_eq!(unhealthy.json["database_status"], "UNHEALTHY");
    assert_eq!(unhealthy.headers["database_status"], "UNHEALTHY");
    let rest_semantics = http
        .send(
            Method::GET,
            "/api/v4/system/ping?get_server_status=true&use_rest_semantics=true",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(rest_semantics.status.as_u16(), 200, "{rest_semantics:?}");
    assert_eq!(rest_semantics.json["status"], "UNHEALTHY");

    proxy.restore();
    readyz_until(&public, 10, "readyz 200 after the database returns", |a| {
        a.status == 200
    })
    .await;
    assert_eq!(get(&management, "/readyz").await.status, 200);
    assert_eq!(health(&srv, SERVICE).await, ServingStatus::Serving as i32);
    srv.stop().await;
    drop(proxy);
}
