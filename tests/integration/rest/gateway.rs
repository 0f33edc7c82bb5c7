//! The token gate over HTTP: RFC 7662 introspection (`POST /oauth2/introspect`) and nginx's
//! `auth_request` (`GET /auth/verify`) against a real server: what an active credential
//! reports, that every inactive one (unknown, revoked, disabled, expired, deactivated) looks
//! the same, who may introspect (and the challenge of a refusal), the REST shim's credential
//! rules (cookie, CSRF by the original method), required roles, the metrics, and that the
//! checks are answered from the cache.

use std::time::Duration;

use base64::Engine as _;
use prost_types::Timestamp;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Http, HttpResponse};
use crate::common::*;

const INTROSPECT: &str = "/oauth2/introspect";
const VERIFY: &str = "/auth/verify";
const FORM: &str = "application/x-www-form-urlencoded";
const DAY_MS: i64 = 86_400_000;

/// `Authorization: Basic` for a client id and secret, form-encoded first (RFC 6749 2.3.1).
fn basic(client_id: &str, secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", enc(client_id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// POST /oauth2/introspect with `authorization` (if any) and a form body.
async fn introspect_with(
    http: &Http,
    authorization: Option<&str>,
    content_type: &str,
    body: &str,
) -> HttpResponse {
    let mut headers = vec![("Content-Type", content_type)];
    if let Some(authorization) = authorization {
        headers.push(("Authorization", authorization));
    }
    let answer = http
        .send(Method::POST, INTROSPECT, None, Some(body), &headers)
        .await;
    assert_eq!(answer.headers["cache-control"], "no-store", "{answer:?}");
    answer
}

/// Introspects `token` as `authorization`, expecting 200; returns the JSON and the raw body.
async fn introspect(http: &Http, authorization: &str, token: &str) -> (Value, String) {
    let answer = introspect_with(http, Some(authorization), FORM, &form(&[("token", token)])).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    (answer.json, answer.raw)
}

/// GET /auth/verify with `headers`.
async fn verify(http: &Http, query: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let answer = http
        .send(
            Method::GET,
            &format!("{VERIFY}{query}"),
            None,
            None,
            headers,
        )
        .await;
    assert_eq!(answer.headers["cache-control"], "no-store", "{answer:?}");
    answer
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn header<'a>(answer: &'a HttpResponse, name: &str) -> Option<&'a str> {
    answer.headers.get(name).map(|v| v.to_str().unwrap())
}

/// An introspector service account: (actor, Basic credential: its username and a personal
/// access token of its own, which outlives the clock moves of the expiry tests).
async fn introspector(srv: &TestServer) -> (Actor, String) {
    let svc = srv
        .user("gateway", &["system_user", "system_token_introspector"])
        .await;
    let (_, secret) = srv.existing_pat(&svc, false).await;
    let credential = basic(&svc.username, &secret);
    (svc, credential)
}

async fn scrape(srv: &TestServer) -> String {
    let answer = http_get(format!("{}/metrics", srv.http_base()))
        .await
        .unwrap();
    answer.text().await.unwrap()
}

fn gateway_checks(metrics: &str, endpoint: &str, outcome: &str) -> u64 {
    let series = format!(
        "token_service_gateway_checks_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\"}} "
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no series {series}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn introspection_describes_an_active_personal_access_token_and_session() {
    let srv = TestServer::start().await;
    let (svc, credential) = introspector(&srv).await;
    let tina = srv.token_user("tina").await;
    let (token_id, secret) = srv.as_(&tina).new_token("me").await;
    let http = Http::new(&srv);

    let (pat, _) = introspect(&http, &credential, &secret).await;
    assert_eq!(pat["active"], true);
    assert_eq!(pat["sub"], tina.id.as_str());
    assert_eq!(pat["username"], "tina");
    assert_eq!(pat["token_type"], "user_access_token");
    assert_eq!(pat["token_id"], token_id.as_str());
    assert_eq!(pat["scope"], "system_user system_user_access_token");
    assert_eq!(pat["session_id"].as_str().unwrap().len(), 26);
    assert!(pat.get("exp").is_none(), "the token never expires: {pat}");
    assert!(pat.get("client_id").is_none(), "{pat}");
    let iat = pat["iat"].as_i64().unwrap();
    assert!(
        (iat - srv.now() / 1000).abs() <= 5,
        "iat {iat} is in seconds"
    );

    // A session, asked with the caller's id as the client id, and with a bearer token.
    for authorization in [basic(&svc.id, &svc.token), bearer(&svc.token)] {
        let (session, _) = introspect(&http, &authorization, &tina.token).await;
        assert_eq!(session["active"], true);
        assert_eq!(session["sub"], tina.id.as_str());
        assert_eq!(session["token_type"], "session");
        assert!(session.get("token_id").is_none(), "{session}");
        let exp = session["exp"].as_i64().unwrap();
        let expected = (srv.now() + 3_600_000) / 1000;
        assert!(
            (exp - expected).abs() <= 5,
            "fixture sessions last an hour: {exp}"
        );
    }
    // token_type_hint is accepted whatever it says; it changes nothing.
    for hint in ["access_token", "session", "refresh_token", "something_else"] {
        let answer = introspect_with(
            &http,
            Some(&credential),
            "application/x-www-form-urlencoded; charset=UTF-8",
            &form(&[("token", &secret), ("token_type_hint", hint)]),
        )
        .await;
        assert_eq!(answer.json["active"], true, "{hint}: {answer:?}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn every_inactive_token_is_exactly_active_false() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let (_, credential) = introspector(&srv).await;
    let tina = srv.token_user("tina").await;
    let leaving = srv.token_user("leaving").await;
    let as_tina = srv.as_(&tina);
    let (revoked_id, revoked) = as_tina.new_token("me").await;
    let (disabled_id, disabled) = as_tina.new_token("me").await;
    let expires_at = srv.now() + DAY_MS;
    let expiring = as_tina
        .create_token_expiring(
            "me",
            "expires",
            Some(Timestamp {
                seconds: expires_at / 1000,
                nanos: 0,
            }),
        )
        .await
        .unwrap()
        .token;
    let (_, deactivated) = srv.as_(&leaving).new_token("me").await;
    let http = Http::new(&srv);

    // Each is active first (and so cached), then taken away.
    for token in [&revoked, &disabled, &expiring, &deactivated] {
        let (answer, _) = introspect(&http, &credential, token).await;
        assert_eq!(answer["active"], true, "{answer}");
        assert_eq!(answer.get("exp").is_some(), token == &expiring, "{answer}");
    }
    as_tina.revoke_token(&revoked_id).await.unwrap();
    as_tina.disable_token(&disabled_id).await.unwrap();
    srv.as_(&admin)
        .update_user_active(&leaving.id, false)
        .await
        .unwrap();
    srv.advance(Duration::from_millis(DAY_MS as u64 + 1_000));
    let unknown = token_service::domain::ids::new_id();
    for token in [
        revoked.as_str(),
        disabled.as_str(),
        expiring.as_str(),
        deactivated.as_str(),
        unknown.as_str(),
        "garbage",
        &"a".repeat(5_000),
    ] {
        let (_, raw) = introspect(&http, &credential, token).await;
        assert_eq!(raw, r#"{"active":false}"#, "token {token:.30}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_inactive_as_soon_as_the_revoke_returns() {
    let srv = TestServer::start().await;
    let (_, credential) = introspector(&srv).await;
    let tina = srv.token_user("tina").await;
    let (token_id, secret) = srv.as_(&tina).new_token("me").await;
    let http = Http::new(&srv);
    for _ in 0..3 {
        assert_eq!(
            introspect(&http, &credential, &secret).await.0["active"],
            true
        );
        assert_eq!(
            verify(&http, "", &[("Authorization", &bearer(&secret))])
                .await
                .status,
            200
        );
    }
    // Revoked over REST, the way an operator would.
    http.post(
        "/api/v4/users/tokens/revoke",
        &tina.token,
        json!({ "token_id": token_id }),
    )
    .await
    .assert_ok();
    assert_eq!(
        introspect(&http, &credential, &secret).await.1,
        r#"{"active":false}"#
    );
    verify(&http, "", &[("Authorization", &bearer(&secret))])
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    srv.stop().await;
}

#[tokio::test]
async fn a_caller_that_may_not_introspect_gets_401_with_the_challenge_of_its_scheme() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let (svc, credential) = introspector(&srv).await;
    let http = Http::new(&srv);
    let body = form(&[("token", &alice.token)]);
    let refused = async |authorization: Option<&str>, error: &str, challenge: &str| {
        let answer = introspect_with(&http, authorization, FORM, &body).await;
        assert_eq!(answer.status, 401, "{answer:?}");
        assert_eq!(answer.json["error"], error, "{answer:?}");
        assert!(answer.json["error_description"].is_string(), "{answer:?}");
        assert!(answer.json.get("active").is_none(), "{answer:?}");
        assert_eq!(header(&answer, "www-authenticate"), Some(challenge));
    };
    let both = r#"Basic realm="token-service", Bearer realm="token-service""#;
    let basic_challenge = r#"Basic realm="token-service""#;
    // No credential, or a scheme we do not take.
    refused(None, "invalid_client", both).await;
    refused(Some("Digest username=x"), "invalid_client", both).await;
    // An ordinary user, authenticated, without introspect_token.
    refused(
        Some(&basic(&alice.username, &alice.token)),
        "invalid_client",
        basic_challenge,
    )
    .await;
    refused(
        Some(&bearer(&alice.token)),
        "insufficient_scope",
        r#"Bearer realm="token-service", error="insufficient_scope""#,
    )
    .await;
    // Credentials that do not authenticate.
    let unknown = token_service::domain::ids::new_id();
    refused(
        Some(&basic(&svc.username, &unknown)),
        "invalid_client",
        basic_challenge,
    )
    .await;
    refused(Some("Basic !!notbase64"), "invalid_client", basic_challenge).await;
    refused(
        Some(&bearer(&unknown)),
        "invalid_token",
        r#"Bearer realm="token-service", error="invalid_token""#,
    )
    .await;
    // The introspector's own secret, under another user's id or name.
    refused(
        Some(&basic(&alice.id, &svc.token)),
        "invalid_client",
        basic_challenge,
    )
    .await;
    refused(
        Some(&basic("alice", &svc.token)),
        "invalid_client",
        basic_challenge,
    )
    .await;
    // And the right one passes.
    assert_eq!(
        introspect(&http, &credential, &alice.token).await.0["active"],
        true
    );
    // A system admin may introspect too (it holds every permission).
    let admin = srv.admin("root").await;
    assert_eq!(
        introspect(&http, &basic("root", &admin.token), &alice.token)
            .await
            .0["active"],
        true
    );
    srv.stop().await;
}

#[tokio::test]
async fn malformed_introspection_requests_are_400_naming_what_is_wrong() {
    let srv = TestServer::start().await;
    let (_, credential) = introspector(&srv).await;
    let alice = srv.basic_user("alice").await;
    let http = Http::new(&srv);
    let bad = async |content_type: &str, body: &str, names: &str| {
        let answer = introspect_with(&http, Some(&credential), content_type, body).await;
        assert_eq!(answer.status, 400, "{answer:?}");
        assert_eq!(answer.json["error"], "invalid_request", "{answer:?}");
        let description = answer.json["error_description"].as_str().unwrap();
        assert!(description.contains(names), "{description}");
    };
    let body = form(&[("token", &alice.token)]);
    bad(
        "application/json",
        &json!({"token": alice.token}).to_string(),
        "Content-Type",
    )
    .await;
    bad("text/plain", &body, "Content-Type").await;
    bad(FORM, "", "token").await;
    bad(FORM, "token=", "token").await;
    bad(FORM, "token_type_hint=session", "token").await;
    bad(FORM, &format!("{body}&{body}"), "token").await;
    bad(
        FORM,
        &format!("{body}&token_type_hint=a&token_type_hint=b"),
        "token_type_hint",
    )
    .await;
    // Another method on the path is 405, naming the one it answers.
    let get = http
        .send(Method::GET, INTROSPECT, Some(&alice.token), None, &[])
        .await;
    assert_eq!(get.status, 405);
    assert_eq!(header(&get, "allow"), Some("POST"));
    srv.stop().await;
}

#[tokio::test]
async fn verify_answers_the_identity_in_headers() {
    let srv = TestServer::start().await;
    let tina = srv.token_user("tina").await;
    let (token_id, secret) = srv.as_(&tina).new_token("me").await;
    let http = Http::new(&srv);

    let session = verify(&http, "", &[("Authorization", &bearer(&tina.token))]).await;
    assert_eq!(session.status, 200, "{session:?}");
    assert_eq!(header(&session, "x-auth-user-id"), Some(tina.id.as_str()));
    assert_eq!(header(&session, "x-auth-username"), Some("tina"));
    assert_eq!(
        header(&session, "x-auth-roles"),
        Some("system_user system_user_access_token")
    );
    assert_eq!(header(&session, "x-auth-token-type"), Some("session"));
    assert_eq!(header(&session, "x-auth-token-id"), None);
    assert_eq!(header(&session, "x-auth-session-id").unwrap().len(), 26);

    // A personal access token, as the cookie and with the `Token` scheme.
    let cookie = format!("MMAUTHTOKEN={secret}");
    for headers in [
        vec![("Cookie", cookie.as_str())],
        vec![("Authorization", &format!("Token {secret}"))],
    ] {
        let pat = verify(&http, "", &headers).await;
        assert_eq!(pat.status, 200, "{pat:?}");
        assert_eq!(header(&pat, "x-auth-user-id"), Some(tina.id.as_str()));
        assert_eq!(header(&pat, "x-auth-token-type"), Some("user_access_token"));
        assert_eq!(header(&pat, "x-auth-token-id"), Some(token_id.as_str()));
    }
    // HEAD answers the same, without a body.
    let head = crate::common::http_client()
        .head(format!("{}{VERIFY}", srv.http_base()))
        .bearer_auth(&tina.token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["x-auth-user-id"], tina.id.as_str());
    srv.stop().await;
}

#[tokio::test]
async fn verify_refuses_every_inactive_credential_alike() {
    let srv = TestServer::start().await;
    let tina = srv.token_user("tina").await;
    let as_tina = srv.as_(&tina);
    let (revoked_id, revoked) = as_tina.new_token("me").await;
    let (disabled_id, disabled) = as_tina.new_token("me").await;
    let expires_at = srv.now() + DAY_MS;
    let expiring = as_tina
        .create_token_expiring(
            "me",
            "expires",
            Some(Timestamp {
                seconds: expires_at / 1000,
                nanos: 0,
            }),
        )
        .await
        .unwrap()
        .token;
    let http = Http::new(&srv);
    for token in [&revoked, &disabled, &expiring] {
        let ok = verify(&http, "", &[("Authorization", &bearer(token))]).await;
        assert_eq!(ok.status, 200, "{ok:?}");
    }
    as_tina.revoke_token(&revoked_id).await.unwrap();
    as_tina.disable_token(&disabled_id).await.unwrap();
    srv.advance(Duration::from_millis(DAY_MS as u64 + 1_000));
    let unknown = token_service::domain::ids::new_id();
    let mut bodies = Vec::new();
    let in_query = format!("?access_token={}", tina.token);
    for (query, headers) in [
        ("", vec![]),
        ("", vec![("Authorization", bearer(&revoked))]),
        ("", vec![("Authorization", bearer(&disabled))]),
        ("", vec![("Authorization", bearer(&expiring))]),
        ("", vec![("Authorization", bearer(&unknown))]),
        ("", vec![("Cookie", format!("MMAUTHTOKEN={unknown}"))]),
        ("", vec![("Authorization", "Bearer ".to_owned())]),
        // A session token in the query string (only OAuth sessions may go there).
        (in_query.as_str(), vec![]),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = verify(&http, query, &headers).await;
        let json = answer.assert_error(401, "api.context.session_expired.app_error");
        assert_eq!(
            header(&answer, "www-authenticate"),
            Some(r#"Bearer realm="token-service""#)
        );
        assert!(answer.headers.get("x-auth-user-id").is_none());
        assert!(answer.headers.get("set-cookie").is_none());
        let mut json = json.clone();
        json["request_id"] = Value::Null;
        bodies.push(json);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "no refusal says why: {bodies:#?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn verify_requires_every_role_asked_for() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let http = Http::new(&srv);
    let as_ = |token: &str| bearer(token);
    let alice_auth = as_(&alice.token);
    let admin_auth = as_(&admin.token);

    let denied = verify(
        &http,
        "?role=system_admin",
        &[("Authorization", &alice_auth)],
    )
    .await;
    denied.assert_error(403, "api.context.permissions.app_error");
    assert!(denied.headers.get("x-auth-user-id").is_none());
    let allowed = verify(
        &http,
        "?role=system_admin",
        &[("Authorization", &admin_auth)],
    )
    .await;
    assert_eq!(allowed.status, 200);
    assert_eq!(
        header(&allowed, "x-auth-roles"),
        Some("system_user system_admin")
    );
    // Every role given is required.
    let both = "?role=system_user&role=system_admin";
    assert_eq!(
        verify(&http, both, &[("Authorization", &admin_auth)])
            .await
            .status,
        200
    );
    verify(&http, both, &[("Authorization", &alice_auth)])
        .await
        .assert_error(403, "api.context.permissions.app_error");
    assert_eq!(
        verify(
            &http,
            "?role=system_user",
            &[("Authorization", &alice_auth)]
        )
        .await
        .status,
        200
    );
    // A credential that does not authenticate is 401 before any role is looked at.
    verify(&http, "?role=system_admin", &[])
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    // A malformed or unknown role, or another parameter, is 400 naming it.
    for (query, names) in [
        ("?role=System_Admin", "role"),
        ("?role=", "role"),
        ("?role=no_such_role", "role"),
        ("?roles=system_admin", "roles"),
        ("?role=system_user&debug=1", "debug"),
    ] {
        let answer = verify(&http, query, &[("Authorization", &admin_auth)]).await;
        let json = answer.assert_error(400, "api.context.invalid_url_param.app_error");
        assert!(
            json["message"].as_str().unwrap().contains(names),
            "{query}: {json}"
        );
    }
    // Another method is 405.
    let post = http
        .send(Method::POST, VERIFY, Some(&admin.token), Some(""), &[])
        .await;
    assert_eq!(post.status, 405);
    assert_eq!(header(&post, "allow"), Some("GET, HEAD"));
    srv.stop().await;
}

#[tokio::test]
async fn a_cookie_on_a_write_needs_csrf_evidence_judged_by_the_original_method() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let http = Http::new(&srv);
    let cookie = format!("MMAUTHTOKEN={}", alice.token);
    let check = async |extra: &[(&str, &str)]| {
        let mut headers = vec![("Cookie", cookie.as_str())];
        headers.extend_from_slice(extra);
        verify(&http, "", &headers).await
    };
    // Reads need no evidence: the subrequest itself, and a GET behind it.
    assert_eq!(check(&[]).await.status, 200);
    assert_eq!(check(&[("X-Original-Method", "GET")]).await.status, 200);
    // A write behind the subrequest without evidence is refused like any bad credential.
    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        check(&[("X-Original-Method", method)])
            .await
            .assert_error(401, "api.context.session_expired.app_error");
    }
    check(&[("X-Original-Method", "POST"), ("X-CSRF-Token", "wrong")])
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    let with_evidence = check(&[
        ("X-Original-Method", "POST"),
        ("X-Requested-With", "XMLHttpRequest"),
    ])
    .await;
    assert_eq!(with_evidence.status, 200, "{with_evidence:?}");
    assert_eq!(
        header(&with_evidence, "x-auth-user-id"),
        Some(alice.id.as_str())
    );
    // A header-authenticated write needs no evidence.
    let header_write = verify(
        &http,
        "",
        &[
            ("Authorization", &bearer(&alice.token)),
            ("X-Original-Method", "POST"),
        ],
    )
    .await;
    assert_eq!(header_write.status, 200);
    srv.stop().await;
}

#[tokio::test]
async fn strict_csrf_holds_for_verify_too() {
    let srv = TestServer::start_with(|c| c.strict_csrf = true).await;
    let alice = srv.basic_user("alice").await;
    let http = Http::new(&srv);
    let cookie = format!("MMAUTHTOKEN={}", alice.token);
    verify(
        &http,
        "",
        &[
            ("Cookie", &cookie),
            ("X-Original-Method", "POST"),
            ("X-Requested-With", "XMLHttpRequest"),
        ],
    )
    .await
    .assert_error(401, "api.context.session_expired.app_error");
    srv.stop().await;
}

#[tokio::test]
async fn gateway_checks_are_counted_by_endpoint_and_outcome() {
    let srv = TestServer::start().await;
    let (_, credential) = introspector(&srv).await;
    let alice = srv.basic_user("alice").await;
    let http = Http::new(&srv);
    let before = scrape(&srv).await;
    let unknown = token_service::domain::ids::new_id();

    introspect(&http, &credential, &alice.token).await;
    introspect(&http, &credential, &alice.token).await;
    introspect(&http, &credential, &unknown).await;
    introspect_with(&http, None, FORM, "token=x").await;
    introspect_with(&http, Some(&bearer(&alice.token)), FORM, "token=x").await;
    introspect_with(&http, Some(&credential), "text/plain", "token=x").await;
    let alice_auth = bearer(&alice.token);
    verify(&http, "", &[("Authorization", &alice_auth)]).await;
    verify(&http, "", &[("Authorization", &bearer(&unknown))]).await;
    verify(&http, "", &[("Authorization", &bearer(&unknown))]).await;
    verify(&http, "", &[]).await;
    verify(
        &http,
        "?role=system_admin",
        &[("Authorization", &alice_auth)],
    )
    .await;
    verify(&http, "?nope=1", &[("Authorization", &alice_auth)]).await;

    let after = scrape(&srv).await;
    let delta = |endpoint: &str, outcome: &str| {
        gateway_checks(&after, endpoint, outcome) - gateway_checks(&before, endpoint, outcome)
    };
    let counted: Vec<(&str, &str, u64)> = [
        ("introspect", "active", 2),
        ("introspect", "inactive", 1),
        ("introspect", "unauthorized", 1),
        ("introspect", "denied", 1),
        ("introspect", "error", 1),
        ("verify", "active", 1),
        ("verify", "inactive", 2),
        ("verify", "unauthorized", 1),
        ("verify", "denied", 1),
        ("verify", "error", 1),
    ]
    .into_iter()
    .map(|(e, o, _)| (e, o, delta(e, o)))
    .collect();
    assert_eq!(
        counted,
        vec![
            ("introspect", "active", 2),
            ("introspect", "inactive", 1),
            ("introspect", "unauthorized", 1),
            ("introspect", "denied", 1),
            ("introspect", "error", 1),
            ("verify", "active", 1),
            ("verify", "inactive", 2),
            ("verify", "unauthorized", 1),
            ("verify", "denied", 1),
            ("verify", "error", 1),
        ]
    );
    assert!(
        !after.contains(&alice.token) && !after.contains(&unknown),
        "no token in the metrics"
    );
    srv.stop().await;
}

/// Both gateways answer repeated checks from the cache: no database read, and so no write.
#[tokio::test]
async fn repeated_gateway_checks_are_answered_from_the_cache() {
    let srv = TestServer::start().await;
    let (_, credential) = introspector(&srv).await;
    let tina = srv.token_user("tina").await;
    let (_, secret) = srv.as_(&tina).new_token("me").await;
    let http = Http::new(&srv);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !srv.cache_stats().trusted {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cache never trusted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The first checks mint the PAT's session and fill the cache.
    introspect(&http, &credential, &secret).await;
    let auth = bearer(&secret);
    assert_eq!(
        verify(&http, "", &[("Authorization", &auth)]).await.status,
        200
    );

    let before = srv.cache_stats();
    for _ in 0..5 {
        assert_eq!(
            introspect(&http, &credential, &secret).await.0["active"],
            true
        );
        assert_eq!(
            verify(&http, "", &[("Authorization", &auth)]).await.status,
            200
        );
    }
    let after = srv.cache_stats();
    // Introspection checks two credentials (the caller's and the token), verify one.
    assert_eq!(after.hits - before.hits, 15, "{before:?} -> {after:?}");
    assert_eq!(after.misses, before.misses, "{before:?} -> {after:?}");
    srv.stop().await;
}

/// The gateway routes are no RPC's and are documented.
#[test]
fn the_gateway_routes_are_documented_and_claimed_by_no_rpc() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let rpc_paths: Vec<String> = token_service::rest::served_routes()
        .into_iter()
        .map(|(_, path)| path)
        .collect();
    assert_eq!(
        token_service::rest::GATEWAY_ROUTES,
        [("POST", INTROSPECT), ("GET", VERIFY)]
    );
    for (verb, path) in token_service::rest::GATEWAY_ROUTES {
        assert!(!rpc_paths.iter().any(|p| p == path), "{path}");
        assert!(
            readme.contains(&format!("`{verb} {path}`")),
            "README.md does not document `{verb} {path}`"
        );
    }
}

/// While the database is out of reach, a check that needs it is 503 (RFC 7662:
/// `temporarily_unavailable`), never an answer about the token: an unknown token is not
/// reported inactive when nobody could look it up. Counted as `error`; both recover.
#[tokio::test]
#[ignore = "needs a database server (TEST_DATABASE_URL, PostgreSQL or MariaDB); .ci/run runs it"]
async fn a_database_cut_is_503_for_the_gateways_never_inactive() {
    let (proxy, srv) = crate::common::proxy::server_behind_a_proxy(|c| {
        c.pool.acquire_timeout_secs = 1;
        c.pool.connect_timeout_secs = 1;
    })
    .await;
    let (_, credential) = introspector(&srv).await;
    let alice = srv.basic_user("alice").await;
    let http = Http::new(&srv);
    let unknown = token_service::domain::ids::new_id();
    assert_eq!(
        introspect(&http, &credential, &alice.token).await.0["active"],
        true
    );
    let before = scrape(&srv).await;

    proxy.cut();
    // The caller's credential is still answered from the cache; the unknown token needs the
    // database.
    let answer = introspect_with(
        &http,
        Some(&credential),
        FORM,
        &form(&[("token", &unknown)]),
    )
    .await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(
        answer.json["error"], "temporarily_unavailable",
        "{answer:?}"
    );
    assert!(answer.json.get("active").is_none(), "{answer:?}");
    let answer = verify(&http, "", &[("Authorization", &bearer(&unknown))]).await;
    answer.assert_error(503, "token_service.database_unavailable");
    let after = scrape(&srv).await;
    for endpoint in ["introspect", "verify"] {
        assert_eq!(
            gateway_checks(&after, endpoint, "error") - gateway_checks(&before, endpoint, "error"),
            1,
            "{endpoint}"
        );
        assert_eq!(
            gateway_checks(&after, endpoint, "inactive"),
            gateway_checks(&before, endpoint, "inactive"),
            "{endpoint}"
        );
    }

    proxy.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = introspect_with(
            &http,
            Some(&credential),
            FORM,
            &form(&[("token", &unknown)]),
        )
        .await;
        if answer.status == 200 {
            assert_eq!(answer.raw, r#"{"active":false}"#);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {answer:?} 15 s after the database returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    srv.stop().await;
}

/// Tokens of both formats pass every gate: a Mattermost-format token minted before the switch
/// (here by a replica still minting that format) and checksummed ones, on the REST shim, RFC
/// 7662, `auth_request` and gRPC IntrospectToken.
#[tokio::test]
async fn tokens_of_both_formats_pass_every_gate() {
    let srv = TestServer::start_with(|c| {
        c.token_format = token_service::config::TokenFormatConfig {
            style: token_service::config::TokenStyle::Checksummed,
            prefix: "mm".to_owned(),
        };
    })
    .await;
    let (svc, credential) = introspector(&srv).await;
    let alice = srv.token_user("alice").await;
    let replica = srv
        .start_replica(|c| c.token_format = Default::default())
        .await;
    let legacy = client_of(replica.grpc_addr())
        .as_(&alice)
        .create_token("me", "before the switch")
        .await
        .unwrap()
        .token;
    replica.shutdown().await.unwrap();
    let checksummed = srv
        .as_(&alice)
        .create_token("me", "after the switch")
        .await
        .unwrap()
        .token;
    assert_eq!(legacy.len(), 26);
    assert!(checksummed.starts_with("mmp_") && alice.token.starts_with("mms_"));

    let http = Http::new(&srv);
    for token in [&legacy, &checksummed, &alice.token] {
        let me = http.get("/api/v4/users/me", token).await;
        assert_eq!(me.status, 200, "{me:?}");
        let (answer, _) = introspect(&http, &credential, token).await;
        assert_eq!(answer["active"], true, "{answer}");
        assert_eq!(answer["sub"], alice.id.as_str());
        let verified = verify(&http, "", &[("Authorization", &bearer(token))]).await;
        assert_eq!(verified.status, 200, "{verified:?}");
        assert_eq!(header(&verified, "x-auth-user-id"), Some(alice.id.as_str()));
        let grpc = srv.as_(&svc).introspect(token).await.unwrap();
        assert!(grpc.active);
        assert_eq!(grpc.user_id, alice.id);
    }
    srv.stop().await;
}

/// A form `POST /oauth2/introspect` written by hand: the head up to its Content-Type, then
/// `framing` (the framing header, the blank line and whatever body bytes are sent); the
/// answer as read until the server closes or 5 s pass.
async fn raw_introspection(srv: &TestServer, credential: &str, framing: &str) -> String {
    let http = srv.config.http_addr;
    send_partial_request(
        http,
        format!(
            "POST /oauth2/introspect HTTP/1.1\r\nHost: {http}\r\nAuthorization: {credential}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n{framing}"
        ),
    )
    .await
}

#[tokio::test]
async fn an_introspection_body_with_malformed_chunked_framing_is_a_400_not_a_413() {
    let srv = TestServer::start().await;
    let (_, credential) = introspector(&srv).await;
    let framing = "Transfer-Encoding: chunked\r\n\r\nzz\r\ntoken=x\r\n0\r\n\r\n";
    let answer = raw_introspection(&srv, &credential, framing).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("\"invalid_request\""), "{answer}");
    assert!(answer.contains("could not be read"), "{answer}");
    srv.stop().await;
}

#[tokio::test]
async fn an_introspection_body_that_does_not_arrive_is_a_408_not_temporarily_unavailable() {
    let srv = TestServer::start_with(|c| c.request_timeout_ms = 500).await;
    let (_, credential) = introspector(&srv).await;
    let answer = raw_introspection(&srv, &credential, "Content-Length: 100\r\n\r\ntok").await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("\"invalid_request\""), "{answer}");
    assert!(!answer.contains("temporarily_unavailable"), "{answer}");
    srv.stop().await;
}
