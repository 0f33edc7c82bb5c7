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
