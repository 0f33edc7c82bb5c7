//! The audit trail over the REST shim (`/api/v4/tokens/audit_records`, token-service's own
//! paths): a change made over REST is recorded with the request id its answer carries in
//! `X-Request-ID`, the client's address (a proxy's header only when trusted) and user agent;
//! the listing's query parameters, pages and errors; the audit hash and the chain check.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Http, HttpResponse};
use crate::common::*;

const LIST: &str = "/api/v4/tokens/audit_records";

async fn records(http: &Http, token: &str, query: &str) -> Vec<Value> {
    let answer = http.get(&format!("{LIST}?{query}"), token).await;
    answer.assert_ok()["records"].as_array().unwrap().clone()
}

fn request_id(answer: &HttpResponse) -> String {
    answer.headers["x-request-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_rest_change_is_recorded_with_the_answers_request_id_address_and_user_agent() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let http = Http::new(&srv);
    let agent = [("User-Agent", "mattermost-mobile/2.20")];
    let created = http
        .send(
            Method::POST,
            "/api/v4/users/me/tokens",
            Some(&alice.token),
            Some(r#"{"description":"rest"}"#),
            &agent,
        )
        .await;
    let token_id = created.assert_ok()["id"].as_str().unwrap().to_owned();
    let revoked = http
        .send(
            Method::POST,
            "/api/v4/users/tokens/revoke",
            Some(&alice.token),
            Some(&json!({"token_id": token_id}).to_string()),
            &agent,
        )
        .await;
    revoked.assert_ok();

    for (answer, action) in [
        (&created, "access_token.created"),
        (&revoked, "access_token.revoked"),
    ] {
        let id = request_id(answer);
        let found = records(&http, &admin.token, &format!("request_id={id}")).await;
        assert_eq!(found.len(), 1, "{id}: {found:#?}");
        let record = &found[0];
        assert_eq!(record["action"], action);
        assert_eq!(record["request_id"], id.as_str());
        assert_eq!(record["actor"], json!({"type": "user", "id": alice.id}));
        assert_eq!(record["user_id"], alice.id.as_str());
        assert_eq!(record["token_id"], token_id.as_str());
        assert_eq!(record["ip"], "127.0.0.1");
        assert_eq!(record["user_agent"], "mattermost-mobile/2.20");
        assert_eq!(record["hash"].as_str().unwrap().len(), 64);
    }
    // A refused request changes nothing, so it leaves no record.
    let refused = http
        .post(
            "/api/v4/users/me/tokens",
            &alice.token,
            json!({"description": ""}),
        )
        .await;
    assert_eq!(refused.status.as_u16(), 400);
    let none = records(
        &http,
        &admin.token,
        &format!("request_id={}", request_id(&refused)),
    )
    .await;
    assert!(none.is_empty(), "{none:#?}");
    srv.stop().await;
}

#[tokio::test]
async fn x_forwarded_for_names_the_client_only_when_trusted_proxy_ip_header_says_so() {
    for trusted in [false, true] {
        let srv = TestServer::start_with(|c| {
            if trusted {
                c.trusted_proxy_ip_header = vec!["X-Real-IP".into(), "X-Forwarded-For".into()];
            }
        })
        .await;
        let admin = srv.admin("root").await;
        let alice = srv.token_user("alice").await;
        let http = Http::new(&srv);
        let created = http
            .send(
                Method::POST,
                "/api/v4/users/me/tokens",
                Some(&alice.token),
                Some(r#"{"description":"proxied"}"#),
                &[("X-Forwarded-For", "198.51.100.23, 10.1.2.3")],
            )
            .await;
        created.assert_ok();
        let found = records(
            &http,
            &admin.token,
            &format!("request_id={}", request_id(&created)),
        )
        .await;
        let want = if trusted {
            "198.51.100.23"
        } else {
            "127.0.0.1"
        };
        assert_eq!(found[0]["ip"], want, "trusted = {trusted}");
        let by_ip = records(
            &http,
            &admin.token,
            &format!("ip={want}&actions=access_token.created"),
        )
        .await;
        assert_eq!(by_ip.len(), 1);
        srv.stop().await;
    }
}

#[tokio::test]
async fn the_listing_filters_pages_and_names_a_bad_parameter() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let plain = srv.basic_user("plain").await;
    let auditor = srv.user("auditor", &["system_auditor"]).await;
    let http = Http::new(&srv);
    for _ in 0..2 {
        let (id, _) = srv.as_(&alice).new_token("me").await;
        srv.as_(&alice).disable_token(&id).await.unwrap();
    }

    let all = records(&http, &admin.token, "").await;
    let ids: Vec<i64> = all.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let oldest = records(&http, &admin.token, "oldest_first=true").await;
    assert_eq!(oldest.first().unwrap()["id"], *ids.last().unwrap());
    // Actions repeated or comma-separated; subjects; actor type.
    for query in [
        "actions=access_token.created&actions=access_token.disabled",
        "actions=access_token.created,access_token.disabled",
    ] {
        assert_eq!(
            records(&http, &admin.token, query).await.len(),
            4,
            "{query}"
        );
    }
    let by_alice = records(&http, &admin.token, &format!("actor_id={}", alice.id)).await;
    assert_eq!(by_alice.len(), 4);
    let about = records(
        &http,
        &admin.token,
        &format!("user_id={}&actor_type=operator", alice.id),
    )
    .await;
    let actions: Vec<&str> = about
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["session.created", "user.created"]);

    // Pages of two through the cursor, as the auditor.
    let mut walked = Vec::new();
    let mut query = "page_size=2".to_owned();
    loop {
        let page = http.get(&format!("{LIST}?{query}"), &auditor.token).await;
        let page = page.assert_ok().clone();
        walked.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap()),
        );
        let next = page["next_page_token"].as_str().unwrap();
        if next.is_empty() {
            break;
        }
        query = format!("page_size=2&page_token={next}");
    }
    let seen = records(&http, &admin.token, "").await.len();
    assert_eq!(walked.len(), seen, "the auditor's own login is listed too");

    // A plain user may not read it.
    http.get(LIST, &plain.token)
        .await
        .assert_error(403, "api.context.permissions.app_error");
    // Bad parameters: 400 naming the parameter.
    for (query, param) in [
        ("actions=access_token.stolen", "actions"),
        ("since=yesterday", "since"),
        ("until=1.5", "until"),
        ("since=10&until=10", "until"),
        ("page_size=-1", "page_size"),
        ("page_size=many", "page_size"),
        ("oldest_first=maybe", "oldest_first"),
        ("page_token=abc", "page_token"),
        ("user_id=nobody", "user_id"),
        ("actor_type=robot", "actor_type"),
        ("credential_hmac=00", "credential_hmac"),
    ] {
        let answer = http.get(&format!("{LIST}?{query}"), &admin.token).await;
        let body = answer.assert_error(400, "api.context.invalid_url_param.app_error");
        assert_eq!(
            body["message"],
            format!("Invalid or missing {param} parameter in request URL."),
            "{query}"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn the_audit_hash_finds_a_tokens_records_and_the_chain_verifies_over_rest() {
    let srv = TestServer::start_with(|c| c.enable_developer = true).await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let auditor = srv.user("auditor", &["system_auditor"]).await;
    let http = Http::new(&srv);
    let (token_id, secret) = srv.as_(&alice).new_token("me").await;

    let hashed = http
        .post(
            "/api/v4/tokens/audit_records/hash",
            &auditor.token,
            json!({"credential": format!("{secret}\n")}),
        )
        .await;
    let hmac = hashed.assert_ok()["credential_hmac"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!hashed.raw.contains(&secret), "the value is never echoed");
    let found = records(&http, &auditor.token, &format!("credential_hmac={hmac}")).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["token_id"], token_id.as_str());
    let empty = http
        .post(
            "/api/v4/tokens/audit_records/hash",
            &auditor.token,
            json!({"credential": ""}),
        )
        .await;
    let body = empty.assert_error(400, "api.context.invalid_body_param.app_error");
    assert!(
        body["detailed_error"]
            .as_str()
            .unwrap()
            .starts_with("credential:"),
        "{body}"
    );

    let verify = "/api/v4/tokens/audit_records/verify";
    let report = http.post(verify, &admin.token, json!({})).await;
    let report = report.assert_ok();
    assert_eq!(report["ok"], true, "{report}");
    assert!(report.get("broken").is_none() && report.get("resume_after").is_none());
    let newest = report["head_id"].as_i64().unwrap();
    assert_eq!(report["verified"], newest);
    // An empty body asks for the defaults too; a small batch asks to come back.
    let empty_body = http
        .send(Method::POST, verify, Some(&admin.token), None, &[])
        .await;
    assert_eq!(empty_body.assert_ok()["ok"], true);
    let partial = http
        .post(verify, &admin.token, json!({"max_records": 2}))
        .await;
    assert_eq!(partial.assert_ok()["resume_after"], 2);
    let rest = http
        .post(verify, &admin.token, json!({"after_id": 2}))
        .await;
    assert_eq!(rest.assert_ok()["verified"], newest - 2);
    let wrong = http
        .post(verify, &admin.token, json!({"after_id": "two"}))
        .await;
    let body = wrong.assert_error(400, "api.context.invalid_body_param.app_error");
    assert!(
        body["detailed_error"]
            .as_str()
            .unwrap()
            .contains("after_id"),
        "{body}"
    );
    let negative = http
        .post(verify, &admin.token, json!({"max_records": -1}))
        .await;
    let body = negative.assert_error(400, "api.context.invalid_body_param.app_error");
    assert!(
        body["detailed_error"]
            .as_str()
            .unwrap()
            .starts_with("max_records:"),
        "{body}"
    );
    // The auditor reads but does not verify.
    http.post(verify, &auditor.token, json!({}))
        .await
        .assert_error(403, "api.context.permissions.app_error");
    srv.stop().await;
}
