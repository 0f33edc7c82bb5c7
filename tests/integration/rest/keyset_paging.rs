//! Keyset paging on the REST shim, opt-in: with `page_token` (empty for the first page) the
//! token lists answer the next page's token in `X-Next-Page-Token` and the JSON body stays
//! Mattermost's, byte for byte; without it nothing changes (no header). `page` together
//! with `page_token`, or a bad token, is a 400 naming the parameter.

use serde_json::Value;

use super::{Http, HttpResponse, ids};
use crate::common::*;

const HEADER: &str = "x-next-page-token";

fn next_token(response: &HttpResponse) -> String {
    response
        .headers
        .get(HEADER)
        .unwrap_or_else(|| panic!("no {HEADER}: {response:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn page_token_is_opt_in_and_walks_every_token_with_mattermosts_body() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.as_(&alice);
    let mut alice_tokens = Vec::new();
    for _ in 0..5 {
        alice_tokens.push(as_alice.new_token("me").await.0);
    }
    as_alice.disable_token(&alice_tokens[2]).await.unwrap();
    let http = Http::new(&srv);

    // Without page_token: Mattermost's answer, no header.
    let plain = http
        .get("/api/v4/users/tokens?per_page=2", &admin.token)
        .await;
    plain.assert_ok();
    assert!(!plain.headers.contains_key(HEADER), "{plain:?}");
    let everything = ids(http
        .get("/api/v4/users/tokens?per_page=200", &admin.token)
        .await
        .assert_ok());
    assert!(everything.len() >= 5);

    // With it: the same bytes as the page by number, and the header.
    let mut walked = Vec::new();
    let mut path = "/api/v4/users/tokens?per_page=2&page_token=".to_owned();
    let mut page = 0;
    loop {
        let keyset = http.get(&path, &admin.token).await;
        keyset.assert_ok();
        let by_number = http
            .get(
                &format!("/api/v4/users/tokens?per_page=2&page={page}"),
                &admin.token,
            )
            .await;
        assert_eq!(
            keyset.raw, by_number.raw,
            "page {page}: the body is Mattermost's"
        );
        walked.extend(ids(&keyset.json));
        let next = next_token(&keyset);
        if next.is_empty() {
            break;
        }
        path = format!("/api/v4/users/tokens?per_page=2&page_token={next}");
        page += 1;
        assert!(page < 100, "the walk ends");
    }
    assert_eq!(walked, everything);

    // One user's tokens, filtered, with include=last_use.
    let active = ids(http
        .get(
            &format!("/api/v4/users/{}/tokens?state=active", alice.id),
            &alice.token,
        )
        .await
        .assert_ok());
    assert_eq!(active.len(), 4);
    let first = http
        .get(
            &format!(
                "/api/v4/users/{}/tokens?state=active&per_page=3&page_token=&include=last_use",
                alice.id
            ),
            &alice.token,
        )
        .await;
    assert_eq!(ids(first.assert_ok()), active[..3]);
    assert!(first.json[0].get("last_used_at").is_some());
    let next = next_token(&first);
    assert!(!next.is_empty());
    let second = http
        .get(
            &format!(
                "/api/v4/users/{}/tokens?state=active&per_page=3&page_token={next}",
                alice.id
            ),
            &alice.token,
        )
        .await;
    assert_eq!(ids(second.assert_ok()), active[3..]);
    assert_eq!(next_token(&second), "");
    // The same token with other filters is refused.
    let refused = http
        .get(
            &format!(
                "/api/v4/users/{}/tokens?per_page=3&page_token={next}",
                alice.id
            ),
            &alice.token,
        )
        .await;
    refused.assert_error(400, "api.context.invalid_url_param.app_error");
    assert!(
        refused.json["message"]
            .as_str()
            .unwrap()
            .contains("page_token"),
        "{refused:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn page_with_page_token_or_a_bad_token_is_a_400_naming_the_parameter() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let http = Http::new(&srv);
    for (query, field) in [
        ("page=0&page_token=", "page_token"),
        ("page=1&page_token=", "page_token"),
        ("page_token=%25%25%25", "page_token"),
        ("page_token=bjQy", "page_token"),
        ("per_page=0&page_token=", "per_page"),
    ] {
        let response = http
            .get(&format!("/api/v4/users/tokens?{query}"), &admin.token)
            .await;
        response.assert_error(400, "api.context.invalid_url_param.app_error");
        assert!(
            response.json["message"].as_str().unwrap().contains(field),
            "{query}: {response:?}"
        );
        assert!(!response.headers.contains_key(HEADER));
    }
    // Mattermost's lenient page/per_page are untouched: per_page=0 is an empty page.
    let empty = http
        .get("/api/v4/users/tokens?per_page=0", &admin.token)
        .await;
    assert_eq!(empty.assert_ok(), &Value::Array(Vec::new()));
    srv.stop().await;
}
