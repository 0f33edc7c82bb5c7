//! Authentication as Mattermost parses it: cookie first, then header, then the
//! `access_token` query parameter (OAuth only), CSRF on cookie-authenticated writes, and
//! every failure a 401 `api.context.session_expired.app_error`.

use reqwest::Method;
use serde_json::json;

use super::Http;
use crate::common::*;

#[tokio::test]
async fn every_authentication_failure_is_401_session_expired() {
    let srv = TestServer::start().await;
    let http = Http::new(&srv);
    http.send(Method::GET, "/api/v4/users/me", None, None, &[])
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    http.get("/api/v4/users/me", "garbage")
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    http.get("/api/v4/users/me", &token_service::domain::ids::new_id())
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    srv.stop().await;
}

#[tokio::test]
async fn the_cookie_wins_over_the_header_and_schemes_are_case_insensitive() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let bob = srv.basic_user("bob").await;
    let http = Http::new(&srv);
    let cookie = format!("MMAUTHTOKEN={}", alice.token);
    let me = http
        .send(
            Method::GET,
            "/api/v4/users/me",
            Some(&bob.token),
            None,
            &[("Cookie", &cookie)],
        )
        .await;
    assert_eq!(me.assert_ok()["id"], alice.id.as_str());
    for header in [
        format!("token {}", bob.token),
        format!("BEARER {}", bob.token),
    ] {
        let me = http
            .send(
                Method::GET,
                "/api/v4/users/me",
                None,
                None,
                &[("Authorization", &header)],
            )
            .await;
        assert_eq!(me.assert_ok()["id"], bob.id.as_str());
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_session_token_in_the_query_string_is_refused() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let http = Http::new(&srv);
    http.send(
        Method::GET,
        &format!("/api/v4/users/me?access_token={}", alice.token),
        None,
        None,
        &[],
    )
    .await
    .assert_error(401, "api.context.token_provided.app_error");
    http.send(
        Method::GET,
        "/api/v4/users/me?access_token=garbage",
        None,
        None,
        &[],
    )
    .await
    .assert_error(401, "api.context.session_expired.app_error");
    srv.stop().await;
}

#[tokio::test]
async fn cookie_authenticated_writes_need_the_csrf_token() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let http = Http::new(&srv);
    let login = http
        .post(
            &format!("/api/v4/users/{}/sessions", alice.id),
            &admin.token,
            json!({}),
        )
        .await;
    let token = login.json["token"].as_str().unwrap().to_owned();
    let csrf = login.json["props"]["csrf"].as_str().unwrap().to_owned();
    assert_eq!(csrf.len(), 26, "a login session carries a CSRF token");
    let cookie = format!("MMAUTHTOKEN={token}");
    let body = json!({"description": "from the web app"}).to_string();
    let create = |headers: Vec<(&'static str, String)>| {
        let cookie = cookie.clone();
        let body = body.clone();
        let http = &http;
        async move {
            let mut all: Vec<(&str, &str)> = vec![("Cookie", cookie.as_str())];
            all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            http.send(
                Method::POST,
                "/api/v4/users/me/tokens",
                None,
                Some(&body),
                &all,
            )
            .await
        }
    };
    create(vec![])
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    create(vec![("X-CSRF-Token", "wrong".into())])
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    create(vec![("X-CSRF-Token", csrf.clone())])
        .await
        .assert_ok();
    create(vec![("X-Requested-With", "XMLHttpRequest".into())])
        .await
        .assert_ok();
    // GETs and header-authenticated writes need no CSRF token.
    http.send(
        Method::GET,
        "/api/v4/users/me",
        None,
        None,
        &[("Cookie", &cookie)],
    )
    .await
    .assert_ok();
    srv.stop().await;
}

#[tokio::test]
async fn strict_csrf_drops_the_requested_with_fallback() {
    let srv = TestServer::start_with(|c| c.strict_csrf = true).await;
    let alice = srv.token_user("alice").await;
    let http = Http::new(&srv);
    let cookie = format!("MMAUTHTOKEN={}", alice.token);
    http.send(
        Method::POST,
        "/api/v4/users/me/tokens",
        None,
        Some("{\"description\":\"x\"}"),
        &[("Cookie", &cookie), ("X-Requested-With", "XMLHttpRequest")],
    )
    .await
    .assert_error(401, "api.context.session_expired.app_error");
    srv.stop().await;
}

#[tokio::test]
async fn an_empty_session_cookie_is_used_as_mattermost_uses_it_and_authenticates_nobody() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let http = Http::new(&srv);
    for cookie in ["MMAUTHTOKEN=", "MMAUTHTOKEN", "other=1; MMAUTHTOKEN="] {
        let me = http
            .send(
                Method::GET,
                "/api/v4/users/me",
                Some(&alice.token),
                None,
                &[("Cookie", cookie)],
            )
            .await;
        me.assert_error(401, "api.context.session_expired.app_error");
        assert!(
            me.headers.get("set-cookie").is_none(),
            "no token was looked up, so no cookie is cleared: {me:?}"
        );
    }
    // A quoted cookie value is unquoted, as Go reads it; a malformed one is no cookie.
    let quoted = format!("MMAUTHTOKEN=\"{}\"", alice.token);
    let me = http
        .send(
            Method::GET,
            "/api/v4/users/me",
            None,
            None,
            &[("Cookie", &quoted)],
        )
        .await;
    assert_eq!(me.assert_ok()["id"], alice.id.as_str());
    let me = http
        .send(
            Method::GET,
            "/api/v4/users/me",
            Some(&alice.token),
            None,
            &[("Cookie", "MMAUTHTOKEN=a\\b")],
        )
        .await;
    assert_eq!(me.assert_ok()["id"], alice.id.as_str());
    // "Bearerx" is a Bearer header with an empty token (Mattermost cuts at byte 7), and an
    // empty token is still a token: Mattermost does not go on to the query parameter. (A
    // trailing space, as in "Bearer ", never arrives: HTTP parsers trim it.)
    http.send(
        Method::GET,
        &format!("/api/v4/users/me?access_token={}", alice.token),
        None,
        None,
        &[("Authorization", "Bearerx")],
    )
    .await
    .assert_error(401, "api.context.session_expired.app_error");
    srv.stop().await;
}

#[tokio::test]
async fn the_access_token_query_parameter_is_percent_decoded() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let http = Http::new(&srv);
    // Every character escaped: the session is found (and refused for not being OAuth).
    let escaped: String = alice.token.bytes().map(|b| format!("%{b:02X}")).collect();
    http.send(
        Method::GET,
        &format!("/api/v4/users/me?x=1&access_token={escaped}"),
        None,
        None,
        &[],
    )
    .await
    .assert_error(401, "api.context.token_provided.app_error");
    srv.stop().await;
}

#[tokio::test]
async fn a_token_that_does_not_authenticate_clears_the_session_cookie() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let http = Http::new(&srv);
    let cleared = "MMAUTHTOKEN=; Path=/; Max-Age=0; HttpOnly";
    let bad_cookie = http
        .send(
            Method::GET,
            "/api/v4/users/me",
            None,
            None,
            &[("Cookie", "MMAUTHTOKEN=nosuchtokennosuchtokennosuc")],
        )
        .await;
    bad_cookie.assert_error(401, "api.context.session_expired.app_error");
    assert_eq!(bad_cookie.headers["set-cookie"], cleared);
    let bad_header = http.get("/api/v4/users/me", "garbage").await;
    bad_header.assert_error(401, "api.context.session_expired.app_error");
    assert_eq!(bad_header.headers["set-cookie"], cleared);
    // No token at all, a refused query token, or a failed CSRF check: nothing to clear.
    let none = http
        .send(Method::GET, "/api/v4/users/me", None, None, &[])
        .await;
    none.assert_error(401, "api.context.session_expired.app_error");
    assert!(none.headers.get("set-cookie").is_none());
    let query = http
        .send(
            Method::GET,
            &format!("/api/v4/users/me?access_token={}", alice.token),
            None,
            None,
            &[],
        )
        .await;
    query.assert_error(401, "api.context.token_provided.app_error");
    assert!(query.headers.get("set-cookie").is_none());
    let cookie = format!("MMAUTHTOKEN={}", alice.token);
    let csrf = http
        .send(
            Method::POST,
            "/api/v4/users/me/sessions/revoke/all",
            None,
            Some("{}"),
            &[("Cookie", &cookie)],
        )
        .await;
    csrf.assert_error(401, "api.context.session_expired.app_error");
    assert!(csrf.headers.get("set-cookie").is_none());
    srv.stop().await;
}

#[tokio::test]
async fn a_path_id_the_router_cannot_match_is_404_even_without_credentials() {
    let srv = TestServer::start().await;
    let http = Http::new(&srv);
    for (method, path) in [
        (Method::GET, "/api/v4/users/a-b/tokens"),
        (Method::POST, "/api/v4/users/a-b/tokens"),
        (Method::GET, "/api/v4/users/tokens/a.b"),
        (Method::GET, "/api/v4/users/%FF%FE/tokens"),
        (Method::PUT, "/api/v4/commands/a_b/regen_token"),
    ] {
        http.send(method, path, None, Some("{}"), &[])
            .await
            .assert_error(404, "api.context.404.app_error");
    }
    // A well-formed id still needs credentials first.
    http.send(Method::GET, "/api/v4/users/abc/tokens", None, None, &[])
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    srv.stop().await;
}
