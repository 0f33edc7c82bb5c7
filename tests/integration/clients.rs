//! Real clients in other languages against a real server: Mattermost's official JavaScript
//! client (Client4, `@mattermost/client`) on the REST shim, and stubs generated from `proto/`
//! by `@grpc/proto-loader` (Node) and `grpcio-tools` (Python) on gRPC. The scripts live in
//! `tests/clients/`; each prints `ALL OK` when every check passed.
//!
//! Their dependencies are installed by `.ci/run` (`npm ci` in `tests/clients/js`, a virtualenv
//! with `tests/clients/python/requirements.txt` in `target/ci-tools/venv`). A test cannot
//! skip itself at run time and say so in libtest's summary, so these tests are `#[ignore]`d:
//! a plain `cargo test` counts them as "ignored" in its `test result` line instead of passing
//! them without their toolchains. `.ci/run` runs them explicitly once the toolchains are
//! installed (`cargo test --test integration -- --ignored clients::`); run that way, a
//! missing toolchain is a failure that says what to install.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::Command;

use crate::common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails a test that was asked to run without its client toolchain.
fn missing(what: &str, install: &str) -> ! {
    panic!("{what} is missing: {install} (or run .ci/run, which installs it and runs this test)")
}

const INSTALL_NODE: &str = "install node and npm, then run `npm ci` in tests/clients/js";
const INSTALL_PYTHON: &str = "run `python3 -m venv target/ci-tools/venv && \
     target/ci-tools/venv/bin/python -m pip install -r tests/clients/python/requirements.txt`, \
     or point TS_PYTHON at a Python with those packages";

/// `node`, if it and the npm packages of `tests/clients/js` are installed.
async fn node() -> Option<PathBuf> {
    let modules = repo().join("tests/clients/js/node_modules/@mattermost/client");
    let works = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    (works && modules.exists()).then(|| PathBuf::from("node"))
}

/// A Python with grpcio-tools: `TS_PYTHON`, else the CI virtualenv, else `python3`.
async fn python() -> Option<PathBuf> {
    python_with("grpc, grpc_tools").await
}

/// The first of `candidates` that runs `args` successfully.
async fn first_that_runs(
    candidates: impl IntoIterator<Item = PathBuf>,
    args: &[&str],
) -> Option<PathBuf> {
    for candidate in candidates {
        let ok = Command::new(&candidate)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if ok {
            return Some(candidate);
        }
    }
    None
}

/// Runs a client script to completion (60 s at most) and asserts it printed `ALL OK`.
async fn run_script(program: &Path, script: &str, env: &[(&str, String)]) {
    let mut command = Command::new(program);
    command
        .arg(repo().join("tests/clients").join(script))
        .current_dir(repo().join("tests/clients"))
        .env("TS_PROTO_DIR", repo().join("proto"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 60 s"))
        .unwrap_or_else(|e| panic!("{script} could not start: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().any(|l| l == "ALL OK"),
        "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
}

#[tokio::test]
#[ignore = "needs node and `npm ci` in tests/clients/js; .ci/run runs it: cargo test --test integration -- --ignored clients::"]
async fn mattermosts_javascript_client_works_against_the_rest_shim() {
    run_mattermost_client(None).await;
}

#[tokio::test]
#[ignore = "needs node and `npm ci` in tests/clients/js; .ci/run runs it: cargo test --test integration -- --ignored clients::"]
async fn mattermosts_javascript_client_works_with_checksummed_tokens() {
    run_mattermost_client(Some("mmx")).await;
}

/// Mattermost's JavaScript client through its flows, against a server minting Mattermost's
/// format (`None`) or checksummed tokens with `prefix`.
async fn run_mattermost_client(prefix: Option<&str>) {
    let Some(node) = node().await else {
        missing("node with tests/clients/js/node_modules", INSTALL_NODE);
    };
    let srv = TestServer::start_with(|c| {
        if let Some(prefix) = prefix {
            c.token_format = token_service::config::TokenFormatConfig {
                style: token_service::config::TokenStyle::Checksummed,
                prefix: prefix.to_owned(),
            };
        }
    })
    .await;
    let admin = srv.admin("root").await;
    let user = srv.token_user("alice").await;
    let team = token_service::domain::ids::new_id();
    let mut env = vec![
        ("TS_URL", srv.http_base()),
        ("TS_ADMIN_TOKEN", admin.token.clone()),
        ("TS_USER_TOKEN", user.token.clone()),
        ("TS_USER_ID", user.id.clone()),
        ("TS_TEAM_ID", team),
    ];
    if let Some(prefix) = prefix {
        env.push(("TS_TOKEN_PREFIX", prefix.to_owned()));
    }
    run_script(&node, "js/mattermost_client.js", &env).await;
    srv.stop().await;
}

/// The environment both gRPC scripts take.
async fn grpc_env(srv: &TestServer) -> Vec<(&'static str, String)> {
    let admin = srv.admin("root").await;
    let user = srv.token_user("alice").await;
    vec![
        ("TS_GRPC", srv.config.grpc_addr.to_string()),
        ("TS_ADMIN_TOKEN", admin.token),
        ("TS_USER_ID", user.id),
    ]
}

#[tokio::test]
#[ignore = "needs node and `npm ci` in tests/clients/js; .ci/run runs it: cargo test --test integration -- --ignored clients::"]
async fn node_stubs_loaded_from_the_proto_work() {
    let Some(node) = node().await else {
        missing("node with tests/clients/js/node_modules", INSTALL_NODE);
    };
    let srv = TestServer::start().await;
    let env = grpc_env(&srv).await;
    run_script(&node, "js/grpc_client.js", &env).await;
    srv.stop().await;
}

#[tokio::test]
#[ignore = "needs python with grpcio-tools (tests/clients/python/requirements.txt); .ci/run runs it: cargo test --test integration -- --ignored clients::"]
async fn python_stubs_generated_from_the_proto_work() {
    let Some(python) = python().await else {
        missing(
            "python with grpcio-tools (tests/clients/python/requirements.txt)",
            INSTALL_PYTHON,
        );
    };
    let srv = TestServer::start().await;
    let env = grpc_env(&srv).await;
    run_script(&python, "python/grpc_client.py", &env).await;
    srv.stop().await;
}

/// A Python that can import `module`: `TS_PYTHON`, else the CI virtualenv, else `python3`.
async fn python_with(module: &str) -> Option<PathBuf> {
    let candidates = std::env::var_os("TS_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            repo().join("target/ci-tools/venv/bin/python"),
            PathBuf::from("python3"),
        ]);
    first_that_runs(candidates, &["-c", &format!("import {module}")]).await
}

/// Every delivery verifies with the Standard Webhooks reference library (PyPI
/// `standardwebhooks`), which also rejects each message with a tampered body or under a
/// stranger's secret; after a rotation, messages verify under the new secret and, during the
/// grace period, under the old one too.
#[tokio::test]
#[ignore = "needs python with standardwebhooks (tests/clients/python/requirements.txt); .ci/run runs it: cargo test --test integration -- --ignored clients::"]
async fn webhook_deliveries_verify_with_the_standard_webhooks_reference_library() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
    let Some(python) = python_with("standardwebhooks").await else {
        missing(
            "python with standardwebhooks (tests/clients/python/requirements.txt)",
            INSTALL_PYTHON,
        );
    };
    let srv = TestServer::start_with(|c| {
        c.webhooks.allow_private_addresses = true;
        c.webhooks.poll_interval = token_service::config::Span(20);
    })
    .await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let mut child = Command::new(&python)
        .arg(repo().join("tests/clients/python/webhook_receiver.py"))
        .env("TS_EXPECT", "6")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python receiver");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut next_line = async |prefix: &str| -> String {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {prefix:?} line within 20 s; got {seen:#?}"))
                .unwrap()
                .unwrap_or_else(|| panic!("the receiver exited; got {seen:#?}"));
            seen.push(line.clone());
            assert!(!line.starts_with("FAILED"), "{line}");
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    };
    let port = next_line("LISTENING").await;
    let created = srv
        .as_(&admin)
        .create_webhook(
            &format!("http://127.0.0.1:{port}/hook"),
            &["access_token.revoked"],
        )
        .await
        .unwrap();
    let hook_id = created.webhook.unwrap().id;
    stdin
        .write_all(format!("SECRET {}\n", created.secret).as_bytes())
        .await
        .unwrap();
    assert_eq!(next_line("SECRETS").await, "1");

    let mut revoked = Vec::new();
    let mut received = Vec::new();
    for _ in 0..3 {
        let (token_id, _) = srv.existing_pat(&alice, false).await;
        srv.as_(&alice).revoke_token(&token_id).await.unwrap();
        revoked.push(token_id);
    }
    for _ in 0..3 {
        received.push(next_line("RECEIVED").await);
    }
    let rotated = srv
        .as_(&admin)
        .rotate_webhook_secret(&hook_id, Some(Duration::from_secs(3_600)))
        .await
        .unwrap();
    stdin
        .write_all(format!("SECRET {}\n", rotated.secret).as_bytes())
        .await
        .unwrap();
    assert_eq!(next_line("SECRETS").await, "2");
    for _ in 0..3 {
        let (token_id, _) = srv.existing_pat(&alice, false).await;
        srv.as_(&alice).revoke_token(&token_id).await.unwrap();
        revoked.push(token_id);
    }
    for _ in 0..3 {
        received.push(next_line("RECEIVED").await);
    }
    next_line("ALL OK").await;
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());

    let received: Vec<serde_json::Value> = received
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tokens: Vec<&str> = received
        .iter()
        .map(|r| r["data"]["token_id"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, revoked, "every record once, in order");
    let ids: Vec<i64> = received
        .iter()
        .map(|r| {
            r["id"].as_str().unwrap()["msg_".len()..]
                .parse::<i64>()
                .unwrap()
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for (i, r) in received.iter().enumerate() {
        assert_eq!(r["type"], "access_token.revoked");
        assert_eq!(r["data"]["action"], "access_token.revoked");
        if i < 3 {
            assert_eq!(r["secret_index"], 0, "{r}");
        } else {
            assert_eq!(r["secret_index"], 1, "{r}");
            assert_eq!(
                r["also_verified_by"],
                serde_json::json!([0]),
                "the old secret still signs during the grace period: {r}"
            );
        }
    }
    srv.stop().await;
}

/// The secret-scanner rules in `scanners/` find a live checksummed token the server minted:
/// detect-secrets (PyPI) with our plugin reports exactly that token in a repository that also
/// holds the same token with a typo and look-alikes (the plugin checks the CRC32), the gitleaks
/// rule's expression matches its shape, and `scanners/check_token.py` tells it from the typo.
#[tokio::test]
#[ignore = "needs python with detect-secrets (tests/clients/python/requirements.txt) and git; .ci/run runs it: cargo test --test integration -- --ignored clients::"]
async fn secret_scanners_find_exactly_the_live_checksummed_token() {
    let Some(python) = python_with("detect_secrets").await else {
        missing(
            "python with detect-secrets (tests/clients/python/requirements.txt)",
            INSTALL_PYTHON,
        );
    };
    let srv = TestServer::start_with(|c| {
        c.token_format = token_service::config::TokenFormatConfig {
            style: token_service::config::TokenStyle::Checksummed,
            prefix: "mm".to_owned(),
        };
    })
    .await;
    let alice = srv.token_user("alice").await;
    let token = srv
        .as_(&alice)
        .create_token("me", "leaks into a repository")
        .await
        .unwrap()
        .token;
    run_script(
        &python,
        "python/scan_for_tokens.py",
        &[
            ("TS_VALID_TOKEN", token),
            ("TS_REPO", repo().display().to_string()),
        ],
    )
    .await;
    srv.stop().await;
}

/// Envoy's external authorization as Envoy's own messages spell it: the CheckRequest and
/// CheckResponse of PyPI `xds-protos` (generated from Envoy's data-plane-api), not our reading
/// of them: an allowed request's identity headers, 401 and 403 with Mattermost's body, the
/// raw `header_map` form, and a gateway without a credential refused.
#[tokio::test]
#[ignore = "needs python with xds-protos (tests/clients/python/requirements.txt); .ci/run runs it: cargo test --test integration -- --ignored clients::"]
async fn envoys_ext_authz_messages_from_xds_protos_work_against_check() {
    let Some(python) = python_with("envoy.service.auth.v3.external_auth_pb2_grpc").await else {
        missing(
            "python with xds-protos (tests/clients/python/requirements.txt)",
            INSTALL_PYTHON,
        );
    };
    let srv = TestServer::start().await;
    let gateway = srv
        .user("envoy", &["system_user", "system_token_introspector"])
        .await;
    let tina = srv.token_user("tina").await;
    let (token_id, pat) = srv.as_(&tina).new_token("me").await;
    run_script(
        &python,
        "python/ext_authz_client.py",
        &[
            ("TS_GRPC", srv.config.grpc_addr.to_string()),
            ("TS_GATEWAY_TOKEN", gateway.token.clone()),
            ("TS_PAT", pat),
            ("TS_PAT_ID", token_id),
            ("TS_USER_ID", tina.id.clone()),
            ("TS_USERNAME", tina.username.clone()),
        ],
    )
    .await;
    srv.stop().await;
}

/// The Python resource server of `tests/clients/python/introspect_resource_server.py`, which
/// asks token-service through authlib's RFC 7662 support; killed on drop.
struct ResourceServer {
    _child: tokio::process::Child,
    base: String,
}

impl ResourceServer {
    async fn start(python: &Path, srv: &TestServer, client_id: &str, secret: &str) -> Self {
        use tokio::io::{AsyncBufReadExt as _, BufReader};
        let mut child = Command::new(python)
            .arg(repo().join("tests/clients/python/introspect_resource_server.py"))
            .env(
                "TS_INTROSPECT_URL",
                format!("{}/oauth2/introspect", srv.http_base()),
            )
            .env("TS_CLIENT_ID", client_id)
            .env("TS_CLIENT_SECRET", secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the Python resource server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the resource server said nothing within 20 s")
            .unwrap()
            .expect("the resource server exited before listening");
        let port = line
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Self {
            _child: child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// GET `path` with `token` as the bearer token: (status, JSON body).
    async fn get(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let answer = http_client()
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or_default())
    }
}

/// A resource server protected by authlib (PyPI `authlib`), the RFC 7662 client and validator
/// many Python services use, with token-service as its introspection endpoint: valid tokens
/// are accepted (with the owner and scope as authlib read them), unknown and revoked ones
/// rejected, a scope the roles do not grant refused, and a resource server whose own
/// credential may not introspect fails closed.
#[tokio::test]
#[ignore = "needs python with authlib (tests/clients/python/requirements.txt); .ci/run runs it: cargo test --test integration -- --ignored clients::"]
async fn authlib_introspection_accepts_and_rejects_through_rfc_7662() {
    let Some(python) = python_with("authlib, requests").await else {
        missing(
            "python with authlib and requests (tests/clients/python/requirements.txt)",
            INSTALL_PYTHON,
        );
    };
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let svc = srv
        .user(
            "resource-server",
            &["system_user", "system_token_introspector"],
        )
        .await;
    let (_, svc_secret) = srv.existing_pat(&svc, false).await;
    let tina = srv.token_user("tina").await;
    let (token_id, pat) = srv.as_(&tina).new_token("me").await;
    let resource = ResourceServer::start(&python, &srv, &svc.username, &svc_secret).await;

    for token in [&tina.token, &pat] {
        let (status, body) = resource.get("/resource", token).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["sub"], tina.id.as_str());
        assert_eq!(body["username"], "tina");
        assert_eq!(body["scope"], "system_user system_user_access_token");
    }
    assert_eq!(
        resource.get("/resource", &pat).await.1["token_type"],
        "user_access_token"
    );
    // Scopes are the roles: authlib refuses what they do not grant.
    let (status, body) = resource.get("/admin", &tina.token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (status, body) = resource.get("/admin", &admin.token).await;
    assert_eq!(status, 200, "{body}");
    // Unknown, garbage and revoked tokens: authlib's invalid_token.
    let unknown = token_service::domain::ids::new_id();
    srv.as_(&tina).revoke_token(&token_id).await.unwrap();
    for token in [unknown.as_str(), "garbage", pat.as_str()] {
        let (status, body) = resource.get("/resource", token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token")),
            "{token:.30}: {body}"
        );
    }
    // A resource server whose credential may not introspect (an ordinary user's) gets our
    // 401 and lets nothing through.
    let ordinary = ResourceServer::start(&python, &srv, &tina.id, &tina.token).await;
    let (status, body) = ordinary.get("/resource", &admin.token).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"].as_str().unwrap().starts_with("401"),
        "{body}"
    );
    srv.stop().await;
}

/// The `schemathesis` command of the CI virtualenv (beside `TS_PYTHON` if set, else in
/// `target/ci-tools/venv`, else on `PATH`).
async fn schemathesis() -> Option<PathBuf> {
    let candidates = std::env::var_os("TS_PYTHON")
        .map(|python| PathBuf::from(python).with_file_name("schemathesis"))
        .into_iter()
        .chain([
            repo().join("target/ci-tools/venv/bin/schemathesis"),
            PathBuf::from("schemathesis"),
        ]);
    first_that_runs(candidates, &["--version"]).await
}

/// One bounded schemathesis run against `schema` as the admin holding `token`: a fixed
/// seed, at most 20 examples per operation, and only the check that no answer is a server
/// error (5xx). Where the OpenAPI document and the server knowingly differ (Go's
/// leniencies), the other checks would report those; they are not this run's business.
/// Returns how many test cases were generated; fails with the report on any 5xx.
async fn run_schemathesis(program: &Path, schema: &str, token: &str, select: &[&str]) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(program);
    command
        .args(["run", schema, "--no-color", "--seed", "20261203"])
        // One worker: with two, Python 3.11's `ast` module (which hypothesis uses to describe
        // its strategies) once failed with "AST constructor recursion depth mismatch", a
        // CPython thread-safety bug, not a finding.
        .args(["--max-examples", "20", "--workers", "1"])
        .args(["--checks", "not_a_server_error"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--generation-database", "none", "--request-timeout", "10"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(select)
        .current_dir(dir.path())
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(240), command.output())
        .await
        .expect("schemathesis did not finish within 240 s")
        .expect("schemathesis starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found a server error or failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    // "Test cases:\n  2284 generated, ..." : the run cannot pass by testing nothing.
    stdout
        .lines()
        .skip_while(|l| l.trim() != "Test cases:")
        .nth(1)
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no test case count in the report:\n{stdout}"))
}

/// schemathesis (PyPI) generates requests from the server's own OpenAPI document
/// (`/api/v4/openapi.json`), valid and invalid, with a fixed seed and a bounded number of
/// examples per operation, as an admin with a personal access token: no answer may be a
/// 5xx. Two passes: first every operation but the two that can lock the admin out
/// (`UpdateUserActive`, `UpdateUserRoles`, which would turn the rest into 401s), then those
/// two. Not run: `TestWebhook` (it sends to whatever URL was registered: never traffic off
/// this machine), and the two long-lived streams `WatchEvents` and `WatchRevocations`. WebRTC
/// is enabled (TURN credentials are computed, nothing is contacted) so its route answers 200
/// rather than Mattermost's 501 for a disabled feature; webhook delivery is off.
#[tokio::test]
#[ignore = "needs schemathesis (tests/clients/python/requirements.txt); .ci/run runs it: cargo test --test integration -- --ignored clients::"]
async fn schemathesis_finds_no_server_error_in_the_openapi_operations() {
    let Some(program) = schemathesis().await else {
        missing(
            "schemathesis (tests/clients/python/requirements.txt)",
            INSTALL_PYTHON,
        );
    };
    let srv = TestServer::start_with(|c| {
        c.webhooks.enable_delivery = false;
        // A fuzzer sending generated credentials from one address is a guesser: the guess
        // throttle would answer most of the pass 429 before it reached the handlers (the
        // throttle has tests of its own; the 429 is in the OpenAPI document).
        c.guess_throttle.enable = false;
        c.webrtc.enable = true;
        c.webrtc.turn_uri = "turn:127.0.0.1:3478".to_owned();
        c.webrtc.turn_shared_secret = token_service::config::Secret::new("schemathesis-turn");
    })
    .await;
    let admin = srv.admin("root").await;
    let (_, token) = srv.existing_pat(&admin, false).await;
    let schema = format!("{}/api/v4/openapi.json", srv.http_base());
    let mut skip = Vec::new();
    for id in [
        "TestWebhook",
        "WatchEvents",
        "WatchRevocations",
        "UpdateUserActive",
        "UpdateUserRoles",
    ] {
        skip.extend(["--exclude-operation-id", id]);
    }
    let generated = run_schemathesis(&program, &schema, &token, &skip).await;
    assert!(generated >= 500, "only {generated} test cases");
    // The admin was not locked out along the way: the pass reached past authentication.
    let me = http_client()
        .get(format!("{}/api/v4/users/me", srv.http_base()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let lockers = [
        "--include-operation-id",
        "UpdateUserActive",
        "--include-operation-id",
        "UpdateUserRoles",
    ];
    let generated = run_schemathesis(&program, &schema, &token, &lockers).await;
    assert!(generated >= 20, "only {generated} test cases");
    srv.stop().await;
}
