//! POST /api/v4/users/tokens/rotate as Mattermost answers it: every check of its handler and
//! app function in their order, with Mattermost's status, id and English text, and the
//! answer framed as create's (JSON and a newline), byte for byte.

use reqwest::Method;
use serde_json::{Value, json};
use token_service::config::Span;

use super::{Http, HttpResponse};
use crate::common::*;

const PATH: &str = "/api/v4/users/tokens/rotate";

async fn rotate(http: &Http, caller: &str, body: &str) -> HttpResponse {
    http.send(Method::POST, PATH, Some(caller), Some(body), &[])
        .await
}

/// Asserts the invalid-body-param error naming `name`, with Mattermost's text.
#[track_caller]
fn assert_invalid_param(r: &HttpResponse, name: &str) {
    let body = r.assert_error(400, "api.context.invalid_body_param.app_error");
    assert_eq!(
        body["message"],
        format!("Invalid or missing {name} in request body."),
        "{r:?}"
    );
}

async fn create(http: &Http, caller: &Actor, user: &str, body: Value) -> HttpResponse {
    let r = http
        .post(&format!("/api/v4/users/{user}/tokens"), &caller.token, body)
        .await;
    r.assert_ok();
    r
}

#[tokio::test]
async fn rotate_answers_like_create_with_the_same_id_and_a_new_secret() {
    // Mattermost's behaviour alone: presenting the old secret (to see it refused) would
    // otherwise revoke the token as reuse (see grpc::rotation).
    let srv = TestServer::start_with(|c| c.access_tokens.revoke_family_on_reuse = false).await;
    let tina = srv.token_user("tina").await;
    let http = Http::new(&srv);
    let created = create(&http, &tina, "me", json!({"description": "ci"})).await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let old = created.json["token"].as_str().unwrap().to_owned();
    http.get("/api/v4/users/me", &old).await.assert_ok();

    // Mattermost's clients send exactly this.
    let r = http
        .post(PATH, &tina.token, json!({"token_id": id, "expires_at": 0}))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");
    assert!(r.raw.ends_with('\n'), "json.Encoder framing");
    let new = r.json["token"].as_str().unwrap().to_owned();
    assert_eq!(new.len(), 26);
    assert_ne!(new, old);
    assert_eq!(
        r.raw,
        created.raw.replace(&old, &new),
        "create's answer, byte for byte, but for the secret"
    );

    // The old secret stopped before the answer; the new one works.
    let refused = http.get("/api/v4/users/me", &old).await;
    refused.assert_error(401, "api.context.session_expired.app_error");
    assert_eq!(
        refused.json["message"],
        "Invalid or expired session, please login again."
    );
    assert_eq!(
        http.get("/api/v4/users/me", &new).await.assert_ok()["id"],
        tina.id.as_str()
    );
    // Reads never show the secret again.
    let one = http
        .get(&format!("/api/v4/users/tokens/{id}"), &tina.token)
        .await;
    assert!(one.assert_ok().get("token").is_none());

    // A new expiry is kept and answered.
    let later = srv.now() + 3_600_000;
    let r = http
        .post(
            PATH,
            &tina.token,
            json!({"token_id": id, "expires_at": later}),
        )
        .await;
    assert_eq!(r.assert_ok()["expires_at"], later);
    assert_eq!(r.json["id"], id.as_str());
    srv.stop().await;
}

#[tokio::test]
async fn rotate_checks_in_mattermosts_order_with_its_ids() {
    let srv = TestServer::start_with(|c| {
        c.maximum_personal_access_token_lifetime_days = 30;
        c.roles.insert(
            "user_manager".into(),
            vec![
                "create_user_access_token".into(),
                "read_user_access_token".into(),
                "revoke_user_access_token".into(),
                "edit_other_users".into(),
            ],
        );
    })
    .await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let bob = srv.token_user("bob").await;
    let basic = srv.basic_user("basic").await;
    let manager = srv.user("manager", &["system_user", "user_manager"]).await;
    let http = Http::new(&srv);
    let soon = srv.now() + 86_400_000;
    let created = create(
        &http,
        &tina,
        "me",
        json!({"description": "ci", "expires_at": soon}),
    )
    .await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let secret = created.json["token"].as_str().unwrap().to_owned();
    let admins = create(
        &http,
        &admin,
        "me",
        json!({"description": "root's", "expires_at": soon}),
    )
    .await;
    let admins_id = admins.json["id"].as_str().unwrap().to_owned();
    let valid = json!({"token_id": id, "expires_at": soon}).to_string();

    // 1. The body, decoded first: not a JSON object, or a known field of the wrong type.
    for body in [
        "",
        "garbage",
        "[]",
        "5",
        "{\"token_id\": 5}",
        "{\"expires_at\": \"x\"}",
    ] {
        assert_invalid_param(
            &rotate(&http, &tina.token, body).await,
            "rotate_user_access_token",
        );
        // Even for a caller without the permission: the body comes first.
        assert_invalid_param(
            &rotate(&http, &basic.token, body).await,
            "rotate_user_access_token",
        );
    }
    // 2. An empty token_id (JSON null is an empty body), before the permission.
    for body in ["null", "{}", "{\"token_id\": \"\"}", "{\"expires_at\": 5}"] {
        assert_invalid_param(&rotate(&http, &basic.token, body).await, "token_id");
    }
    // 5. create_user_access_token, before the token is looked up.
    for token_id in [id.as_str(), "nosuchtoken", "not an id!"] {
        let body = json!({"token_id": token_id}).to_string();
        let r = rotate(&http, &basic.token, &body).await;
        let err = r.assert_error(403, "api.context.permissions.app_error");
        assert_eq!(
            err["message"],
            "You do not have the appropriate permissions."
        );
    }
    // 6. The token: unknown or malformed ids are not found.
    for token_id in [token_service::domain::ids::new_id().as_str(), "not an id!"] {
        let body = json!({"token_id": token_id}).to_string();
        let r = rotate(&http, &tina.token, &body).await;
        let err = r.assert_error(404, "app.user_access_token.get_by_user.app_error");
        assert_eq!(
            err["message"],
            "Unable to get the personal access tokens by user."
        );
    }
    // 8. The right to act on the owner.
    rotate(&http, &bob.token, &valid)
        .await
        .assert_error(403, "api.context.permissions.app_error");
    // 9. A system admin's token needs manage_system, even with edit_other_users.
    let body = json!({"token_id": admins_id, "expires_at": soon}).to_string();
    rotate(&http, &manager.token, &body)
        .await
        .assert_error(403, "api.context.permissions.app_error");
    // 12. The expiry policy on the new expires_at (the manager may act on tina).
    let r = rotate(&http, &manager.token, &json!({"token_id": id}).to_string()).await;
    r.assert_error(400, "app.user_access_token.expires_at_required.app_error");
    let past = json!({"token_id": id, "expires_at": 1}).to_string();
    let r = rotate(&http, &tina.token, &past).await;
    let err = r.assert_error(400, "app.user_access_token.expires_at_in_past.app_error");
    assert_eq!(err["message"], "The provided expires_at is in the past.");
    let far = json!({"token_id": id, "expires_at": srv.now() + 31 * 86_400_000}).to_string();
    rotate(&http, &tina.token, &far)
        .await
        .assert_error(400, "app.user_access_token.expires_at_too_far.app_error");
    // token-service's own grace_period, refused beyond the cap (0 here), naming the field.
    let graced = json!({"token_id": id, "expires_at": soon, "grace_period": 1000}).to_string();
    assert_invalid_param(&rotate(&http, &tina.token, &graced).await, "grace_period");
    // None of that changed the token.
    http.get("/api/v4/users/me", &secret).await.assert_ok();

    // 11. A disabled token: 400, before the expiry is looked at.
    http.post(
        "/api/v4/users/tokens/disable",
        &tina.token,
        json!({"token_id": id}),
    )
    .await
    .assert_ok();
    let r = rotate(&http, &tina.token, &past).await;
    let err = r.assert_error(
        400,
        "api.user.rotate_user_access_token.disabled_token.app_error",
    );
    assert_eq!(err["message"], "Cannot regenerate a disabled access token.");
    // Enabled again, it rotates (for the manager too, on tina's behalf).
    http.post(
        "/api/v4/users/tokens/enable",
        &tina.token,
        json!({"token_id": id}),
    )
    .await
    .assert_ok();
    let r = rotate(&http, &manager.token, &valid).await;
    assert_eq!(r.assert_ok()["user_id"], tina.id.as_str());
    srv.stop().await;
}

#[tokio::test]
async fn with_tokens_switched_off_rotate_is_501_for_users_after_the_disabled_check() {
    let srv = TestServer::start_with(|c| c.enable_user_access_tokens = false).await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let bot = srv.bot("helper", Some(&admin)).await;
    let (tinas_id, _) = srv.existing_pat(&tina, false).await;
    let (disabled_id, _) = srv.existing_pat(&tina, false).await;
    let (bots_id, _) = srv.existing_pat(&bot, false).await;
    let http = Http::new(&srv);
    http.post(
        "/api/v4/users/tokens/disable",
        &tina.token,
        json!({"token_id": disabled_id}),
    )
    .await
    .assert_ok();

    let body = |id: &str| json!({"token_id": id}).to_string();
    let r = rotate(&http, &tina.token, &body(&tinas_id)).await;
    let err = r.assert_error(501, "app.user_access_token.disabled");
    assert_eq!(
        err["message"],
        "Personal access tokens are disabled on this server. Please contact your system administrator for details."
    );
    rotate(&http, &tina.token, &body(&disabled_id))
        .await
        .assert_error(
            400,
            "api.user.rotate_user_access_token.disabled_token.app_error",
        );
    // Bots are exempt.
    let r = rotate(&http, &admin.token, &body(&bots_id)).await;
    let new = r.assert_ok()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        http.get("/api/v4/users/me", &new).await.assert_ok()["id"],
        bot.id.as_str()
    );
    srv.stop().await;
}

#[tokio::test]
async fn an_expired_active_token_rotates_back_into_use_and_a_grace_period_is_in_milliseconds() {
    let srv =
        TestServer::start_with(|c| c.access_tokens.max_rotation_grace_period = Span(60_000)).await;
    let tina = srv.token_user("tina").await;
    let http = Http::new(&srv);
    let created = create(
        &http,
        &tina,
        "me",
        json!({"description": "short", "expires_at": srv.now() + 1_000}),
    )
    .await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let old = created.json["token"].as_str().unwrap().to_owned();
    http.get("/api/v4/users/me", &old).await.assert_ok();
    srv.advance(std::time::Duration::from_secs(2));
    http.get("/api/v4/users/me", &old)
        .await
        .assert_error(401, "api.context.session_expired.app_error");

    // Rotated with a 30 s grace: the new secret works and never expires; the old one is
    // expired anyway (the token's expiry bounds it), so the grace does not revive it.
    let r = http
        .post(
            PATH,
            &tina.token,
            json!({"token_id": id, "grace_period": 30_000}),
        )
        .await;
    assert_eq!(r.assert_ok()["expires_at"], 0);
    let new = r.json["token"].as_str().unwrap().to_owned();
    assert_eq!(
        http.get("/api/v4/users/me", &new).await.assert_ok()["id"],
        tina.id.as_str()
    );
    // Rotated again with a grace: the previous secret works for 30 s more, then stops.
    let r = http
        .post(
            PATH,
            &tina.token,
            json!({"token_id": id, "grace_period": 30_000}),
        )
        .await;
    let newest = r.assert_ok()["token"].as_str().unwrap().to_owned();
    srv.advance(std::time::Duration::from_millis(29_999));
    for secret in [&new, &newest] {
        http.get("/api/v4/users/me", secret).await.assert_ok();
    }
    srv.advance(std::time::Duration::from_millis(1));
    http.get("/api/v4/users/me", &new)
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    srv.stop().await;
}
