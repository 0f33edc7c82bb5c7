//! A real nginx in front of a small upstream, gated by `auth_request` on `GET /auth/verify`:
//! the README's recipe ("Gateways"), run. No token is 401 and never reaches the upstream; a
//! valid one reaches it with the identity headers nginx took from our answer
//! (`auth_request_set`); a client-sent `X-Auth-*` header never gets through; a revoked token
//! is 401 as soon as the revoke has returned; a location requiring `system_admin` is 403 for
//! others; a cookie-authenticated write needs CSRF evidence (nginx passes the original method).
//!
//! Needs nginx (Debian package `nginx`, which `.ci/run` installs), so it is `#[ignore]`d like
//! the client tests; `.ci/run` runs it after each round (`-- --ignored gateway_nginx::`).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, Router, http::HeaderMap};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::common::*;

/// The nginx configuration: the README's recipe inside a minimal main context (one process,
/// every path in the test's directory, so it runs as any user). `{dir}`, `{port}`,
/// `{token_service}` and `{app}` are filled in.
const NGINX_CONF: &str = r#"
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events { worker_connections 64; }

http {
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    upstream token_service { server {token_service}; keepalive 16; }
    upstream app { server {app}; }

    server {
        listen 127.0.0.1:{port};

        # The check: a subrequest to token-service with the client's headers (Authorization,
        # Cookie, X-Requested-With, X-CSRF-Token) and the original method, without the body.
        location = /_token_check {
            internal;
            proxy_pass http://token_service/auth/verify;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
        }
        # The same check, also requiring a role.
        location = /_token_check_admin {
            internal;
            proxy_pass http://token_service/auth/verify?role=system_admin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
        }

        location / {
            auth_request /_token_check;
            include {dir}/identity.conf;
        }
        location /admin/ {
            auth_request /_token_check_admin;
            include {dir}/identity.conf;
        }
    }
}
"#;

/// What every protected location does once the check passed: take the identity from the
/// check's answer and send it upstream, replacing whatever the client sent under those
/// names (`proxy_set_header` drops the client's header of the same name; an empty value
/// sends none).
const IDENTITY_CONF: &str = r#"
auth_request_set $auth_user_id $upstream_http_x_auth_user_id;
auth_request_set $auth_username $upstream_http_x_auth_username;
auth_request_set $auth_roles $upstream_http_x_auth_roles;
auth_request_set $auth_token_type $upstream_http_x_auth_token_type;
auth_request_set $auth_token_id $upstream_http_x_auth_token_id;
auth_request_set $auth_session_id $upstream_http_x_auth_session_id;
proxy_set_header X-Auth-User-Id $auth_user_id;
proxy_set_header X-Auth-Username $auth_username;
proxy_set_header X-Auth-Roles $auth_roles;
proxy_set_header X-Auth-Token-Type $auth_token_type;
proxy_set_header X-Auth-Token-Id $auth_token_id;
proxy_set_header X-Auth-Session-Id $auth_session_id;
proxy_set_header Authorization "";
proxy_set_header Host $host;
proxy_pass http://app;
"#;

/// The identity headers the upstream reports.
const IDENTITY_HEADERS: [&str; 6] = [
    "x-auth-user-id",
    "x-auth-username",
    "x-auth-roles",
    "x-auth-token-type",
    "x-auth-token-id",
    "x-auth-session-id",
];

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The upstream: answers every request with the identity headers it received (each with
/// all its values, so a smuggled second copy would show) and `Authorization`, and counts
/// the requests.
async fn start_upstream() -> (SocketAddr, Arc<Mutex<usize>>) {
    let hits = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&hits);
    let app = Router::new().fallback(move |headers: HeaderMap| {
        let counted = Arc::clone(&counted);
        async move {
            *counted.lock().unwrap() += 1;
            let mut seen = serde_json::Map::new();
            for name in IDENTITY_HEADERS.iter().chain(&["authorization"]) {
                let values: Vec<Value> = headers
                    .get_all(*name)
                    .iter()
                    .map(|v| Value::from(v.to_str().unwrap_or("<not text>")))
                    .collect();
                seen.insert((*name).to_owned(), Value::Array(values));
            }
            Json(Value::Object(seen))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, hits)
}

/// nginx running the recipe, killed on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(binary: &Path, token_service: &str, app: SocketAddr) -> Self {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().display().to_string();
            let conf = NGINX_CONF
                .replace("{dir}", &path)
                .replace("{port}", &port.to_string())
                .replace("{token_service}", token_service)
                .replace("{app}", &app.to_string());
            std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
            std::fs::write(dir.path().join("identity.conf"), IDENTITY_CONF).unwrap();
            let child = Command::new(binary)
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-p")
                .arg(dir.path())
                .args(["-g", "daemon off;"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("start nginx");
            let mut nginx = Self { child, port, dir };
            match nginx.wait_until_listening().await {
                Ok(()) => return nginx,
                Err(why) => failures.push(why),
            }
        }
        panic!("nginx did not start:\n{}", failures.join("\n----\n"));
    }

    async fn wait_until_listening(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
                return Err(format!("nginx exited with {status}:\n{log}"));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("nginx did not listen on {} within 10 s", self.port));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A request through nginx: (status, JSON body the upstream answered, or Null).
async fn through(
    nginx: &Nginx,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = http_client().request(method, nginx.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = request.send().await.expect("request through nginx");
    let status = answer.status().as_u16();
    let body = answer.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test]
#[ignore = "needs nginx (Debian package nginx); .ci/run runs it: cargo test --test integration -- --ignored gateway_nginx::"]
async fn nginx_auth_request_gates_an_upstream_with_the_identity_headers() {
    let Some(binary) = nginx_binary() else {
        panic!(
            "nginx is missing: apt-get install nginx (or run .ci/run, which installs it and runs this test)"
        );
    };
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let (token_id, secret) = srv.as_(&tina).new_token("me").await;
    let (app, hits) = start_upstream().await;
    let token_service = srv.http_base().trim_start_matches("http://").to_owned();
    let nginx = Nginx::start(&binary, &token_service, app).await;
    let hit_count = || *hits.lock().unwrap();

    // No token, or one that does not authenticate: 401, and the upstream is never asked.
    let spoof = ("X-Auth-User-Id", admin.id.as_str());
    let unknown = bearer_header(&token_service::domain::ids::new_id());
    for headers in [
        vec![],
        vec![spoof],
        vec![("Authorization", unknown.as_str()), spoof],
    ] {
        let (status, _) = through(&nginx, Method::GET, "/app/data", &headers).await;
        assert_eq!(status, 401, "{headers:?}");
    }
    assert_eq!(
        hit_count(),
        0,
        "nothing unauthenticated reached the upstream"
    );

    // A session token reaches the upstream with its identity, and nginx kept the credential
    // to itself.
    let tina_session = bearer_header(&tina.token);
    let (status, seen) = through(
        &nginx,
        Method::GET,
        "/app/data",
        &[("Authorization", &tina_session)],
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["x-auth-user-id"], json!([tina.id]));
    assert_eq!(seen["x-auth-username"], json!(["tina"]));
    assert_eq!(
        seen["x-auth-roles"],
        json!(["system_user system_user_access_token"])
    );
    assert_eq!(seen["x-auth-token-type"], json!(["session"]));
    assert_eq!(seen["x-auth-token-id"], json!([]));
    assert_eq!(seen["x-auth-session-id"].as_array().unwrap().len(), 1);
    assert_eq!(seen["authorization"], json!([]));

    // Client-sent identity headers never get through: replaced when the token names
    // someone, dropped where it has no value (a session has no token id).
    let (status, seen) = through(
        &nginx,
        Method::GET,
        "/app/data",
        &[
            ("Authorization", &tina_session),
            ("X-Auth-User-Id", &admin.id),
            ("X-Auth-Roles", "system_admin"),
            ("X-Auth-Token-Id", "forgedforgedforgedforged12"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["x-auth-user-id"], json!([tina.id]));
    assert_eq!(
        seen["x-auth-roles"],
        json!(["system_user system_user_access_token"])
    );
    assert_eq!(seen["x-auth-token-id"], json!([]));

    // A personal access token, then revoked: refused on the very next request.
    let tina_pat = bearer_header(&secret);
    let (status, seen) = through(
        &nginx,
        Method::GET,
        "/app/data",
        &[("Authorization", &tina_pat)],
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["x-auth-token-type"], json!(["user_access_token"]));
    assert_eq!(seen["x-auth-token-id"], json!([token_id]));
    super::Http::new(&srv)
        .post(
            "/api/v4/users/tokens/revoke",
            &tina.token,
            json!({ "token_id": token_id }),
        )
        .await
        .assert_ok();
    let before = hit_count();
    let (status, _) = through(
        &nginx,
        Method::GET,
        "/app/data",
        &[("Authorization", &tina_pat)],
    )
    .await;
    assert_eq!(status, 401, "revoked");
    assert_eq!(hit_count(), before);

    // A location requiring system_admin.
    let (status, _) = through(
        &nginx,
        Method::GET,
        "/admin/panel",
        &[("Authorization", &tina_session)],
    )
    .await;
    assert_eq!(status, 403);
    let admin_session = bearer_header(&admin.token);
    let (status, seen) = through(
        &nginx,
        Method::GET,
        "/admin/panel",
        &[("Authorization", &admin_session)],
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["x-auth-user-id"], json!([admin.id]));

    // The cookie: reads pass; a write needs CSRF evidence (nginx sends the original method).
    let cookie = format!("MMAUTHTOKEN={}", tina.token);
    let (status, seen) = through(&nginx, Method::GET, "/app/data", &[("Cookie", &cookie)]).await;
    assert_eq!(status, 200, "{seen}");
    let (status, _) = through(&nginx, Method::POST, "/app/data", &[("Cookie", &cookie)]).await;
    assert_eq!(status, 401, "a cookie write without CSRF evidence");
    let (status, seen) = through(
        &nginx,
        Method::POST,
        "/app/data",
        &[("Cookie", &cookie), ("X-Requested-With", "XMLHttpRequest")],
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["x-auth-user-id"], json!([tina.id]));

    nginx.stop().await;
    srv.stop().await;
}

fn bearer_header(token: &str) -> String {
    format!("Bearer {token}")
}
