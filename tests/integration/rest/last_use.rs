//! Last use on the REST shim: Mattermost's token JSON stays byte for byte what it was unless
//! the caller asks for `?include=last_use`; the list filters as query parameters of our own.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::Http;
use crate::common::*;

/// Waits (real time) until the token `id`, read with `?include=last_use`, has been used.
async fn wait_until_used(http: &Http, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = http
            .get(
                &format!("/api/v4/users/tokens/{id}?include=last_use"),
                token,
            )
            .await;
        let json = got.assert_ok().clone();
        if json["last_used_at"].as_i64().unwrap_or(0) > 0 {
            return json;
        }
        assert!(Instant::now() < deadline, "never flushed: {json}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Mattermost's token object, exactly as its Go JSON encoder writes it.
fn mattermost_token(id: &str, user_id: &str, description: &str, active: bool) -> String {
    format!(
        r#"{{"id":"{id}","user_id":"{user_id}","description":"{description}","is_active":{active},"expires_at":0}}"#
    )
}

#[tokio::test]
async fn mattermost_bodies_stay_byte_identical_unless_last_use_is_asked_for() {
    let srv = TestServer::start_with(|c| {
        c.last_use.flush_interval = token_service::config::Span(50);
    })
    .await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let http = Http::new(&srv);
    let created = http
        .post(
            &format!("/api/v4/users/{}/tokens", alice.id),
            &alice.token,
            json!({"description": "ci"}),
        )
        .await;
    let id = created.assert_ok()["id"].as_str().unwrap().to_owned();
    let secret = created.json["token"].as_str().unwrap().to_owned();
    let one = mattermost_token(&id, &alice.id, "ci", true);
    let reads = [
        (
            Method::GET,
            format!("/api/v4/users/{}/tokens", alice.id),
            None,
            format!("[{one}]"),
        ),
        (
            Method::GET,
            "/api/v4/users/tokens".to_owned(),
            None,
            format!("[{one}]"),
        ),
        (
            Method::POST,
            "/api/v4/users/tokens/search".to_owned(),
            Some(json!({"term": alice.id}).to_string()),
            format!("[{one}]"),
        ),
        (
            Method::GET,
            format!("/api/v4/users/tokens/{id}"),
            None,
            format!("{one}\n"),
        ),
    ];
    let read_all = || async {
        let mut bodies = Vec::new();
        for (method, path, body, _) in &reads {
            let got = http
                .send(
                    method.clone(),
                    path,
                    Some(&admin.token),
                    body.as_deref(),
                    &[],
                )
                .await;
            got.assert_ok();
            bodies.push(got.raw);
        }
        bodies
    };
    let before = read_all().await;
    for (body, (_, path, _, want)) in before.iter().zip(&reads) {
        assert_eq!(body, want, "{path}: Mattermost's bytes");
    }

    // Used (from a client with its own agent), flushed: the default bodies do not change.
    http.send(
        Method::GET,
        "/api/v4/users/me",
        Some(&secret),
        None,
        &[("User-Agent", "mmctl/9.11.0")],
    )
    .await
    .assert_ok();
    let shown = wait_until_used(&http, &admin.token, &id).await;
    assert_eq!(read_all().await, before, "byte-identical after use");

    // Asked for: Mattermost's keys in Mattermost's order, then ours.
    assert_eq!(shown["last_used_at"], srv.now());
    assert_eq!(shown["last_user_agent"], "mmctl/9.11.0");
    assert_eq!(
        shown["recent_addresses"],
        json!([{"ip": "127.0.0.1", "last_seen_at": srv.now()}])
    );
    for (method, path, body, _) in &reads {
        let sep = if path.contains('?') { '&' } else { '?' };
        let got = http
            .send(
                method.clone(),
                &format!("{path}{sep}include=last_use"),
                Some(&admin.token),
                body.as_deref(),
                &[],
            )
            .await;
        got.assert_ok();
        let prefix = one.trim_end_matches('}');
        assert!(
            got.raw.contains(&format!(
                r#"{prefix},"last_used_at":{},"last_user_agent":"mmctl/9.11.0","recent_addresses":[{{"ip":"127.0.0.1","last_seen_at":{}}}]}}"#,
                srv.now(),
                srv.now()
            )),
            "{path}: {}",
            got.raw
        );
    }
    // A token never used shows 0 and no addresses when asked.
    let (unused, _) = srv.as_(&alice).new_token("me").await;
    let got = http
        .get(
            &format!("/api/v4/users/tokens/{unused}?include=last_use"),
            &alice.token,
        )
        .await;
    assert_eq!(got.assert_ok()["last_used_at"], 0);
    assert_eq!(got.json["last_user_agent"], "");
    assert_eq!(got.json["recent_addresses"], json!([]));
    srv.stop().await;
}

#[tokio::test]
async fn the_rest_filters_select_and_a_bad_value_is_a_400_naming_the_parameter() {
    let srv = TestServer::start_with(|c| {
        c.last_use.flush_interval = token_service::config::Span(50);
    })
    .await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let http = Http::new(&srv);
    let (used, secret) = srv.as_(&alice).new_token("me").await;
    let (idle, _) = srv.as_(&alice).new_token("me").await;
    let (off, _) = srv.as_(&alice).new_token("me").await;
    srv.as_(&alice).disable_token(&off).await.unwrap();
    srv.advance(Duration::from_secs(60));
    http.get("/api/v4/users/me", &secret).await.assert_ok();
    wait_until_used(&http, &alice.token, &used).await;
    let now = srv.now();
    let ids = |got: &super::HttpResponse| {
        let mut ids: Vec<String> = got
            .assert_ok()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let mut all = vec![used.clone(), idle.clone(), off.clone()];
    all.sort();
    for base in [
        format!("/api/v4/users/{}/tokens", alice.id),
        "/api/v4/users/tokens".to_owned(),
    ] {
        let token = if base.contains(&alice.id) {
            &alice.token
        } else {
            &admin.token
        };
        let list = |query: String| {
            let path = format!("{base}?{query}");
            let http = &http;
            async move { http.get(&path, token).await }
        };
        assert_eq!(
            ids(&list(format!("last_used_after={now}")).await),
            vec![used.clone()]
        );
        assert_eq!(
            ids(&list(format!("last_used_before={}", now + 1)).await),
            vec![used.clone()]
        );
        assert!(ids(&list(format!("last_used_before={now}")).await).is_empty());
        assert_eq!(ids(&list("state=disabled".into()).await), vec![off.clone()]);
        let mut active = vec![used.clone(), idle.clone()];
        active.sort();
        assert_eq!(ids(&list("state=active".into()).await), active);
        assert!(ids(&list("state=expired".into()).await).is_empty());
        assert!(ids(&list(format!("expires_before={now}")).await).is_empty());
        assert_eq!(ids(&list(String::new()).await), all);
        assert_eq!(
            ids(&list("state=active&per_page=1&page=1".into()).await).len(),
            1
        );
        for (query, name) in [
            ("state=gone", "state"),
            ("last_used_before=yesterday", "last_used_before"),
            ("last_used_after=1.5", "last_used_after"),
            ("expires_before=-1", "expires_before"),
            ("include=everything", "include"),
        ] {
            let got = list(query.into()).await;
            got.assert_error(400, "api.context.invalid_url_param.app_error");
            assert!(
                got.json["message"].as_str().unwrap().contains(name)
                    || got.json["detailed_error"].as_str().unwrap().contains(name),
                "{query}: {}",
                got.raw
            );
        }
    }
    srv.stop().await;
}
