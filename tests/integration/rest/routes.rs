//! Mattermost's behaviour per route over HTTP (status codes, JSON shapes, quirks).

use reqwest::Method;
use serde_json::json;

use super::Http;
use crate::common::*;

async fn create_token(http: &Http, owner: &Actor, user: &str) -> serde_json::Value {
    let r = http
        .post(
            &format!("/api/v4/users/{user}/tokens"),
            &owner.token,
            json!({"description": "rest"}),
        )
        .await;
    r.assert_ok().clone()
}

#[tokio::test]
async fn create_returns_200_with_the_secret_once_and_reads_omit_it() {
    let srv = TestServer::start().await;
    let tina = srv.token_user("tina").await;
    let http = Http::new(&srv);
    let r = http
        .post(
            "/api/v4/users/me/tokens",
            &tina.token,
            json!({"description": "ci"}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "create is 200, not 201");
    assert!(r.raw.ends_with('\n'), "json.Encoder framing");
    let created = r.json.clone();
    assert_eq!(created["user_id"], tina.id.as_str());
    assert_eq!(created["description"], "ci");
    assert_eq!(created["is_active"], true);
    assert_eq!(created["expires_at"], 0);
    let secret = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();

    let one = http
        .get(&format!("/api/v4/users/tokens/{id}"), &tina.token)
        .await;
    let one = one.assert_ok();
    assert!(one.get("token").is_none(), "token omitted: {one}");
    assert_eq!(one["id"], id.as_str());
    let list = http.get("/api/v4/users/me/tokens", &tina.token).await;
    let list = list.assert_ok().as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert!(list[0].get("token").is_none());
    assert!(
        !http
            .get("/api/v4/users/me/tokens", &tina.token)
            .await
            .raw
            .ends_with('\n')
    );

    // The secret authenticates as tina over REST.
    let me = http.get("/api/v4/users/me", &secret).await;
    assert_eq!(me.assert_ok()["id"], tina.id.as_str());
    srv.stop().await;
}

#[tokio::test]
async fn create_errors_match_mattermost() {
    let srv = TestServer::start().await;
    let tina = srv.token_user("tina").await;
    let basic = srv.basic_user("basic").await;
    let http = Http::new(&srv);
    http.post(
        "/api/v4/users/notarealuserid/tokens",
        &tina.token,
        json!({"description": "x"}),
    )
    .await
    .assert_error(400, "api.context.invalid_url_param.app_error");
    http.post(
        "/api/v4/users/me/tokens",
        &tina.token,
        json!({"description": ""}),
    )
    .await
    .assert_error(400, "api.context.invalid_body_param.app_error");
    http.send(
        Method::POST,
        "/api/v4/users/me/tokens",
        Some(&tina.token),
        Some("{not json"),
        &[],
    )
    .await
    .assert_error(400, "api.context.invalid_body_param.app_error");
    http.post(
        "/api/v4/users/me/tokens",
        &tina.token,
        json!({"description": 5}),
    )
    .await
    .assert_error(400, "api.context.invalid_body_param.app_error");
    http.post(
        "/api/v4/users/me/tokens",
        &basic.token,
        json!({"description": "x"}),
    )
    .await
    .assert_error(403, "api.context.permissions.app_error");
    let unknown = token_service::domain::ids::new_id();
    http.post(
        &format!("/api/v4/users/{unknown}/tokens"),
        &basic.token,
        json!({"description": "x"}),
    )
    .await
    .assert_error(404, "app.user.missing_account.const");
    http.post(
        "/api/v4/users/me/tokens",
        &tina.token,
        json!({"description": "é".repeat(128)}),
    )
    .await
    .assert_error(
        400,
        "model.user_access_token.is_valid.description.app_error",
    );
    // Nothing was created by any of that.
    let list = http.get("/api/v4/users/me/tokens", &tina.token).await;
    assert_eq!(list.assert_ok(), &json!([]));
    srv.stop().await;
}

#[tokio::test]
async fn switching_tokens_off_is_501_and_stops_existing_ones() {
    let srv = TestServer::start_with(|c| c.enable_user_access_tokens = false).await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let bot = srv.bot("helper", Some(&admin)).await;
    // Tokens made while the switch was on: one already used (its session minted), one not.
    let (used_id, used) = srv.existing_pat(&tina, true).await;
    let (unused_id, unused) = srv.existing_pat(&tina, false).await;
    let (_, bot_pat) = srv.existing_pat(&bot, true).await;
    let http = Http::new(&srv);

    // Only creating answers 501, and not for a bot.
    http.post(
        "/api/v4/users/me/tokens",
        &admin.token,
        json!({"description": "x"}),
    )
    .await
    .assert_error(501, "app.user_access_token.disabled");
    http.post(
        "/api/v4/users/me/tokens",
        &tina.token,
        json!({"description": "x"}),
    )
    .await
    .assert_error(501, "app.user_access_token.disabled");
    let new_bot_pat = create_token(&http, &admin, &bot.id).await;

    // Existing user tokens stop authenticating; the user's login session and bot tokens,
    // old and new, do not.
    for secret in [&used, &unused] {
        http.get("/api/v4/users/me", secret)
            .await
            .assert_error(401, "api.context.session_expired.app_error");
    }
    assert_eq!(
        http.get("/api/v4/users/me", &tina.token).await.assert_ok()["id"],
        tina.id.as_str()
    );
    for secret in [&bot_pat, new_bot_pat["token"].as_str().unwrap()] {
        assert_eq!(
            http.get("/api/v4/users/me", secret).await.assert_ok()["id"],
            bot.id.as_str()
        );
    }

    // Introspection agrees: the user's token is inactive, the bot's active.
    let introspect = async |token: &str| {
        http.post(
            "/api/v4/tokens/introspect",
            &admin.token,
            json!({ "token": token }),
        )
        .await
        .assert_ok()["active"]
            .clone()
    };
    assert_eq!(introspect(&used).await, false);
    assert_eq!(introspect(&unused).await, false);
    assert_eq!(introspect(&bot_pat).await, true);

    // Everything else keeps working for whoever can still authenticate.
    let listed = http.get("/api/v4/users/me/tokens", &tina.token).await;
    assert_eq!(listed.assert_ok().as_array().unwrap().len(), 2);
    http.get(&format!("/api/v4/users/tokens/{used_id}"), &tina.token)
        .await
        .assert_ok();
    for action in ["disable", "enable"] {
        http.post(
            &format!("/api/v4/users/tokens/{action}"),
            &tina.token,
            json!({ "token_id": used_id }),
        )
        .await
        .assert_ok();
    }
    // Enabled again, it is still refused while the switch is off.
    http.get("/api/v4/users/me", &used)
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    http.post(
        "/api/v4/users/tokens/revoke",
        &tina.token,
        json!({ "token_id": unused_id }),
    )
    .await
    .assert_ok();
    let listed = http.get("/api/v4/users/me/tokens", &tina.token).await;
    assert_eq!(listed.assert_ok().as_array().unwrap().len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn revoke_disable_enable_keep_mattermosts_lenient_bodies() {
    let srv = TestServer::start().await;
    let tina = srv.token_user("tina").await;
    let basic = srv.basic_user("basic").await;
    let http = Http::new(&srv);
    let created = create_token(&http, &tina, "me").await;
    let id = created["id"].as_str().unwrap();
    let secret = created["token"].as_str().unwrap();

    // Empty or malformed bodies: 404 for a permitted caller, 403 otherwise; never 400.
    for body in ["", "{}", "[]", "{\"token_id\": 5}", "garbage"] {
        http.send(
            Method::POST,
            "/api/v4/users/tokens/revoke",
            Some(&tina.token),
            Some(body),
            &[],
        )
        .await
        .assert_error(404, "app.user_access_token.get_by_user.app_error");
        http.send(
            Method::POST,
            "/api/v4/users/tokens/disable",
            Some(&basic.token),
            Some(body),
            &[],
        )
        .await
        .assert_error(403, "api.context.permissions.app_error");
    }

    let ok = json!({"status": "OK"});
    let r = http
        .post(
            "/api/v4/users/tokens/disable",
            &tina.token,
            json!({"token_id": id}),
        )
        .await;
    assert_eq!(r.assert_ok(), &ok);
    assert_eq!(r.raw, "{\"status\":\"OK\"}");
    http.get("/api/v4/users/me", secret)
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    http.post(
        "/api/v4/users/tokens/enable",
        &tina.token,
        json!({"token_id": id}),
    )
    .await
    .assert_ok();
    http.get("/api/v4/users/me", secret).await.assert_ok();
    http.post(
        "/api/v4/users/tokens/revoke",
        &tina.token,
        json!({"token_id": id}),
    )
    .await
    .assert_ok();
    http.get("/api/v4/users/me", secret)
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    http.get(&format!("/api/v4/users/tokens/{id}"), &tina.token)
        .await
        .assert_error(404, "app.user_access_token.get_by_user.app_error");
    srv.stop().await;
}

#[tokio::test]
async fn admin_listing_searching_and_paging_follow_mattermost() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let http = Http::new(&srv);
    let first = create_token(&http, &tina, "me").await;
    create_token(&http, &tina, "me").await;
    http.get("/api/v4/users/tokens", &tina.token)
        .await
        .assert_error(403, "api.context.permissions.app_error");
    let page = |q: &str| format!("/api/v4/users/tokens{q}");
    let len = |r: super::HttpResponse| r.assert_ok().as_array().unwrap().len();
    assert_eq!(len(http.get(&page(""), &admin.token).await), 2);
    assert_eq!(
        len(http.get(&page("?page=1&per_page=1"), &admin.token).await),
        1
    );
    assert_eq!(
        len(http.get(&page("?page=0&per_page=2"), &admin.token).await),
        2
    );
    assert_eq!(len(http.get(&page("?per_page=0"), &admin.token).await), 0);
    // Garbage and negatives fall back to the defaults, as Mattermost parses them.
    assert_eq!(
        len(http.get(&page("?page=-1&per_page=abc"), &admin.token).await),
        2
    );

    let search = |term: &str| json!({"term": term});
    let found = http
        .post("/api/v4/users/tokens/search", &admin.token, search("tina"))
        .await;
    assert_eq!(found.assert_ok().as_array().unwrap().len(), 2);
    let by_id = http
        .post(
            "/api/v4/users/tokens/search",
            &admin.token,
            search(first["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(by_id.assert_ok().as_array().unwrap().len(), 1);
    let none = http
        .post(
            "/api/v4/users/tokens/search",
            &admin.token,
            search("not found"),
        )
        .await;
    assert_eq!(none.assert_ok(), &json!([]));
    http.post("/api/v4/users/tokens/search", &admin.token, search(""))
        .await
        .assert_error(400, "api.context.invalid_body_param.app_error");
    http.post("/api/v4/users/tokens/search", &tina.token, search("tina"))
        .await
        .assert_error(403, "api.context.permissions.app_error");
    srv.stop().await;
}

#[tokio::test]
async fn sessions_over_rest() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let http = Http::new(&srv);
    let list = http.get("/api/v4/users/me/sessions", &alice.token).await;
    let sessions = list.assert_ok().as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        sessions[0]["token"], "",
        "sessions keep a blank token field"
    );
    assert_eq!(sessions[0]["roles"], "system_user");
    for key in [
        "create_at",
        "expires_at",
        "last_activity_at",
        "is_oauth",
        "props",
        "team_members",
        "local",
    ] {
        assert!(sessions[0].get(key).is_some(), "{key}");
    }
    http.get("/api/v4/users/junk/sessions", &alice.token)
        .await
        .assert_error(400, "api.context.invalid_url_param.app_error");
    http.get(
        &format!("/api/v4/users/{}/sessions", admin.id),
        &alice.token,
    )
    .await
    .assert_error(403, "api.context.permissions.app_error");
    let random = token_service::domain::ids::new_id();
    http.post(
        "/api/v4/users/me/sessions/revoke",
        &alice.token,
        json!({"session_id": random}),
    )
    .await
    .assert_error(400, "app.session.get.app_error");
    http.post("/api/v4/users/me/sessions/revoke", &alice.token, json!({}))
        .await
        .assert_error(400, "api.context.invalid_body_param.app_error");

    let created = http
        .post(
            &format!("/api/v4/users/{}/sessions", alice.id),
            &admin.token,
            json!({"device_id": "d1"}),
        )
        .await;
    assert_eq!(created.status.as_u16(), 201, "{created:?}");
    let second = created.json["token"].as_str().unwrap().to_owned();
    assert_eq!(second.len(), 26);
    http.get("/api/v4/users/me", &second).await.assert_ok();

    let own = sessions[0]["id"].as_str().unwrap();
    http.post(
        "/api/v4/users/me/sessions/revoke",
        &alice.token,
        json!({"session_id": own}),
    )
    .await
    .assert_ok();
    http.get("/api/v4/users/me", &alice.token)
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    http.post(
        &format!("/api/v4/users/{}/sessions/revoke/all", alice.id),
        &admin.token,
        json!({}),
    )
    .await
    .assert_ok();
    http.get("/api/v4/users/me", &second)
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    http.post("/api/v4/users/sessions/revoke/all", &second, json!({}))
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    http.post("/api/v4/users/sessions/revoke/all", &admin.token, json!({}))
        .await
        .assert_ok();
    http.get("/api/v4/users/me", &admin.token)
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    srv.stop().await;
}

#[tokio::test]
async fn commands_over_rest_hide_existence_with_404() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let basic = srv.basic_user("basic").await;
    let http = Http::new(&srv);
    let team = token_service::domain::ids::new_id();
    let member = http
        .post(
            &format!("/api/v4/teams/{team}/members"),
            &admin.token,
            json!({"user_id": basic.id}),
        )
        .await;
    assert_eq!(member.status.as_u16(), 201, "{member:?}");
    assert_eq!(member.json["roles"], "team_user");
    let created = http
        .post(
            "/api/v4/commands",
            &admin.token,
            json!({"team_id": team, "trigger": "deploy", "url": "https://example.com/hook", "method": "P"}),
        )
        .await;
    assert_eq!(created.status.as_u16(), 201, "{created:?}");
    let id = created.json["id"].as_str().unwrap().to_owned();
    let original = created.json["token"].as_str().unwrap().to_owned();
    let regen = http
        .send(
            Method::PUT,
            &format!("/api/v4/commands/{id}/regen_token"),
            Some(&admin.token),
            None,
            &[],
        )
        .await;
    let body = regen.assert_ok().as_object().unwrap().clone();
    assert_eq!(body.len(), 1, "only the token: {body:?}");
    assert_ne!(body["token"], original.as_str());
    let hidden = http
        .send(
            Method::PUT,
            &format!("/api/v4/commands/{id}/regen_token"),
            Some(&basic.token),
            None,
            &[],
        )
        .await;
    hidden.assert_error(404, "store.sql_command.save.get.app_error");
    assert!(hidden.json.get("token").is_none());
    http.send(
        Method::PUT,
        "/api/v4/commands/123/regen_token",
        Some(&admin.token),
        None,
        &[],
    )
    .await
    .assert_error(400, "api.context.invalid_url_param.app_error");
    srv.stop().await;
}

#[tokio::test]
async fn adding_an_existing_member_over_rest_returns_it_unchanged_with_201() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let carol = srv.basic_user("carol").await;
    let http = Http::new(&srv);
    let team = token_service::domain::ids::new_id();
    let path = format!("/api/v4/teams/{team}/members");
    let promoted = http
        .post(
            &path,
            &admin.token,
            json!({"user_id": carol.id, "roles": "team_user team_admin"}),
        )
        .await;
    assert_eq!(promoted.status.as_u16(), 201, "{promoted:?}");
    assert_eq!(promoted.json["roles"], "team_user team_admin");
    srv.advance(std::time::Duration::from_secs(60));
    // What Mattermost's clients send (model.TeamMember without roles): the membership comes
    // back as it is, still 201 as Mattermost's addTeamMember always answers.
    for body in [
        json!({"team_id": team, "user_id": carol.id}),
        json!({"user_id": carol.id, "roles": ""}),
    ] {
        let again = http.post(&path, &admin.token, body).await;
        assert_eq!(again.status.as_u16(), 201, "{again:?}");
        assert_eq!(again.json, promoted.json);
    }
    srv.stop().await;
}

/// The parts of `X-Version-Id` as Mattermost's clients split it, after checking that our own
/// version is in `X-Token-Service-Version`.
fn version_id(r: &super::HttpResponse) -> Vec<String> {
    assert_eq!(
        r.headers["x-token-service-version"],
        env!("CARGO_PKG_VERSION"),
        "{r:?}"
    );
    let value = r.headers["x-version-id"].to_str().unwrap();
    assert!(
        !value.contains("token-service"),
        "Mattermost's shape, not ours: {value}"
    );
    value.split('.').map(str::to_owned).collect()
}

#[tokio::test]
async fn x_version_id_has_mattermosts_shape_and_our_version_has_its_own_header() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let http = Http::new(&srv);
    let answers = [
        http.get("/api/v4/users/me", &alice.token).await,
        http.get("/api/v4/users/me", "not-a-token").await,
        http.get("/api/v4/nope", &alice.token).await,
    ];
    let first = version_id(&answers[0]);
    for answer in &answers {
        let parts = version_id(answer);
        // <version>.<build number>.<config hash>.<licensed>, the version being the
        // Mattermost API version the shim reproduces (11.2.0).
        assert_eq!(parts.len(), 6, "{parts:?}");
        assert_eq!(parts[..3], ["11", "2", "0"], "{parts:?}");
        assert!(
            !parts[3].is_empty() && parts[3].bytes().all(|b| b.is_ascii_digit()),
            "{parts:?}"
        );
        assert!(
            parts[4].len() == 32
                && parts[4]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{parts:?}"
        );
        assert_eq!(parts[5], "false", "{parts:?}");
        assert_eq!(parts, first, "the same on every answer");
    }
    srv.stop().await;

    // The config hash follows what clients can see: the same configuration gives the same
    // header, switching commands off gives another.
    let same = TestServer::start().await;
    let bob = same.token_user("bob").await;
    let again = Http::new(&same).get("/api/v4/users/me", &bob.token).await;
    assert_eq!(version_id(&again), first);
    same.stop().await;
    let other = TestServer::start_with(|c| c.enable_commands = false).await;
    let carl = other.token_user("carl").await;
    let changed = Http::new(&other).get("/api/v4/users/me", &carl.token).await;
    let changed = version_id(&changed);
    assert_eq!(changed[..4], first[..4]);
    assert_ne!(changed[4], first[4], "config hash");
    other.stop().await;
}

#[tokio::test]
async fn webrtc_me_and_introspection_over_rest() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let http = Http::new(&srv);
    http.get("/api/v4/webrtc/token", &alice.token)
        .await
        .assert_error(501, "api.webrtc.disabled.app_error");
    let me = http.get("/api/v4/users/me", &alice.token).await;
    assert_eq!(me.headers["expires"], "0");
    let me = me.assert_ok();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["roles"], "system_user");
    let answer = http
        .post(
            "/api/v4/tokens/introspect",
            &admin.token,
            json!({"token": alice.token}),
        )
        .await;
    let answer = answer.assert_ok();
    assert_eq!(answer["active"], true);
    assert_eq!(answer["user_id"], alice.id.as_str());
    assert_eq!(answer["kind"], "session");
    let inactive = http
        .post(
            "/api/v4/tokens/introspect",
            &admin.token,
            json!({"token": "nope"}),
        )
        .await;
    assert_eq!(
        inactive.assert_ok(),
        &json!({"active": false, "expires_at": 0})
    );
    srv.stop().await;
}

#[tokio::test]
async fn bad_paths_methods_and_bodies_get_mattermost_errors_never_500() {
    let srv = TestServer::start_with(|c| c.max_request_body_bytes = 1024).await;
    let alice = srv.token_user("alice").await;
    let http = Http::new(&srv);
    let missing = http.get("/api/v4/nope", &alice.token).await;
    let body = missing.assert_error(404, "api.context.404.app_error");
    assert!(
        body["detailed_error"]
            .as_str()
            .unwrap()
            .contains("/api/v4/nope")
    );
    http.send(
        Method::DELETE,
        "/api/v4/users/tokens",
        Some(&alice.token),
        None,
        &[],
    )
    .await
    .assert_error(404, "api.context.404.app_error");
    http.get("/api/v4/users/ab-cd/tokens", &alice.token)
        .await
        .assert_error(404, "api.context.404.app_error");
    http.get("/api/v4/users/tokens/123", &alice.token)
        .await
        .assert_error(400, "api.context.invalid_url_param.app_error");
    let huge = json!({"description": "x".repeat(4096)}).to_string();
    http.send(
        Method::POST,
        "/api/v4/users/me/tokens",
        Some(&alice.token),
        Some(&huge),
        &[],
    )
    .await
    .assert_error(413, "api.context.request_body_too_large.app_error");
    let tokens = http.get("/api/v4/users/me/tokens", &alice.token).await;
    assert_eq!(
        tokens.assert_ok(),
        &json!([]),
        "the oversized create wrote nothing"
    );
    http.put(
        &format!("/api/v4/users/{}/active", alice.id),
        &alice.token,
        json!({"active": "yes"}),
    )
    .await
    .assert_error(400, "api.context.invalid_body_param.app_error");
    // A path segment that is not UTF-8 once decoded is still an AppError, not a text body.
    let undecodable = http.get("/api/v4/users/%FF%FE/tokens", &alice.token).await;
    assert!(undecodable.status.is_client_error(), "{undecodable:?}");
    assert!(undecodable.json["id"].is_string(), "{undecodable:?}");
    assert_eq!(
        undecodable.json["status_code"],
        undecodable.status.as_u16(),
        "{undecodable:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn literal_paths_asked_with_another_method_reach_the_template_that_matches_as_in_mattermost()
{
    let srv = TestServer::start().await;
    let tina = srv.token_user("tina").await;
    let basic = srv.basic_user("basic").await;
    let http = Http::new(&srv);
    let created = create_token(&http, &tina, "me").await;
    for word in ["revoke", "disable", "enable", "search"] {
        let path = format!("/api/v4/users/tokens/{word}");
        // GET /users/tokens/{token_id} catches it: RequireTokenId answers before the
        // permission check, so a caller without read_user_access_token gets 400 too.
        for caller in [&tina, &basic] {
            let body = http
                .get(&path, &caller.token)
                .await
                .assert_error(400, "api.context.invalid_url_param.app_error")
                .clone();
            assert_eq!(
                body["message"], "Invalid or missing token_id parameter in request URL.",
                "{path}"
            );
        }
        // The route requires a session first.
        http.send(Method::GET, &path, None, None, &[])
            .await
            .assert_error(401, "api.context.session_expired.app_error");
        // No route with a parameter takes PUT or DELETE there: the router's 404.
        for method in [Method::PUT, Method::DELETE, Method::OPTIONS] {
            let body = http
                .send(method.clone(), &path, Some(&tina.token), None, &[])
                .await
                .assert_error(404, "api.context.404.app_error")
                .clone();
            assert!(
                body["detailed_error"].as_str().unwrap().contains(&path),
                "{method} {body}"
            );
        }
    }
    // The literal routes still serve their own method.
    http.post(
        "/api/v4/users/tokens/disable",
        &tina.token,
        json!({"token_id": created["id"]}),
    )
    .await
    .assert_ok();
    let listed = http.get("/api/v4/users/me/tokens", &tina.token).await;
    assert_eq!(listed.assert_ok()[0]["is_active"], false);
    // And a real token id on the template is still the token.
    let one = http
        .get(
            &format!("/api/v4/users/tokens/{}", created["id"].as_str().unwrap()),
            &tina.token,
        )
        .await;
    assert_eq!(one.assert_ok()["id"], created["id"]);
    srv.stop().await;
}

#[tokio::test]
async fn repeated_paging_parameters_take_the_first_value_as_go_does() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let http = Http::new(&srv);
    for n in 0..3 {
        http.post(
            "/api/v4/users/me/tokens",
            &alice.token,
            json!({"description": format!("t{n}")}),
        )
        .await
        .assert_ok();
    }
    let page = http
        .get(
            "/api/v4/users/me/tokens?per_page=2&per_page=1&page=0&page=5",
            &alice.token,
        )
        .await;
    assert_eq!(page.assert_ok().as_array().unwrap().len(), 2);
    let lenient = http
        .get(
            "/api/v4/users/me/tokens?per_page=null&per_page=null",
            &alice.token,
        )
        .await;
    assert_eq!(lenient.assert_ok().as_array().unwrap().len(), 3);
    srv.stop().await;
}

#[tokio::test]
async fn listed_sessions_carry_the_users_live_team_memberships() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let http = Http::new(&srv);
    let sessions = http.get("/api/v4/users/me/sessions", &alice.token).await;
    assert_eq!(sessions.assert_ok()[0]["team_members"], json!([]));

    let teams = [
        token_service::domain::ids::new_id(),
        token_service::domain::ids::new_id(),
    ];
    for (team, roles) in teams.iter().zip(["team_user", "team_user team_admin"]) {
        let added = http
            .post(
                &format!("/api/v4/teams/{team}/members"),
                &admin.token,
                json!({"user_id": alice.id, "roles": roles}),
            )
            .await;
        assert_eq!(added.status.as_u16(), 201, "{added:?}");
    }
    // A second session: every listed session carries the memberships.
    http.post(
        &format!("/api/v4/users/{}/sessions", alice.id),
        &admin.token,
        json!({}),
    )
    .await;
    let mut sorted = teams.clone();
    sorted.sort();
    for caller in [&alice.token, &admin.token] {
        let list = http
            .get(&format!("/api/v4/users/{}/sessions", alice.id), caller)
            .await;
        let list = list.assert_ok().as_array().unwrap().clone();
        assert_eq!(list.len(), 2);
        for session in list {
            let members = session["team_members"].as_array().unwrap().clone();
            let listed: Vec<&str> = members
                .iter()
                .map(|m| m["team_id"].as_str().unwrap())
                .collect();
            assert_eq!(listed, [sorted[0].as_str(), sorted[1].as_str()]);
            for member in &members {
                assert_eq!(member["user_id"], alice.id.as_str());
                assert_eq!(member["delete_at"], 0);
                assert_eq!(member["scheme_user"], true);
            }
            let admin_of_second = members
                .iter()
                .find(|m| m["team_id"] == teams[1].as_str())
                .unwrap();
            assert_eq!(admin_of_second["scheme_admin"], true);
        }
    }
    // Someone else's sessions carry their own memberships, not the caller's.
    let own = http.get("/api/v4/users/me/sessions", &admin.token).await;
    assert_eq!(own.assert_ok()[0]["team_members"], json!([]));
    srv.stop().await;
}

/// The `Set-Cookie` values of an answer.
fn set_cookies(r: &super::HttpResponse) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// What Mattermost's `RemoveSessionCookie` writes (Go's `http.SetCookie`, MaxAge -1).
const CLEARED: [&str; 3] = [
    "MMAUTHTOKEN=; Path=/; Max-Age=0; HttpOnly",
    "MMUSERID=; Path=/; Max-Age=0",
    "MMCSRF=; Path=/; Max-Age=0",
];

#[tokio::test]
async fn logout_ends_the_cookie_session_and_clears_the_cookies() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
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
    let cookie = format!("MMAUTHTOKEN={token}; MMUSERID={}; MMCSRF={csrf}", alice.id);
    let logout = |headers: Vec<(&'static str, String)>| {
        let cookie = cookie.clone();
        let http = &http;
        async move {
            let mut all: Vec<(&str, &str)> = vec![("Cookie", cookie.as_str())];
            all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            http.send(Method::POST, "/api/v4/users/logout", None, None, &all)
                .await
        }
    };
    // A cookie-authenticated write: CSRF applies (a forged logout is refused).
    logout(vec![])
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    http.get("/api/v4/users/me", &token).await.assert_ok();

    let r = logout(vec![("X-CSRF-Token", csrf.clone())]).await;
    assert_eq!(r.assert_ok(), &json!({"status": "OK"}));
    assert_eq!(set_cookies(&r), CLEARED);
    http.get("/api/v4/users/me", &token)
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    // The other session (the fixture's login) is untouched.
    http.get("/api/v4/users/me", &alice.token).await.assert_ok();

    // As Mattermost's APIHandler: with the ended session, with garbage, or with nothing,
    // logout still answers 200 and clears the cookies.
    for r in [
        logout(vec![("X-CSRF-Token", csrf.clone())]).await,
        http.send(
            Method::POST,
            "/api/v4/users/logout",
            Some("garbage"),
            None,
            &[],
        )
        .await,
        http.send(Method::POST, "/api/v4/users/logout", None, None, &[])
            .await,
    ] {
        assert_eq!(r.assert_ok(), &json!({"status": "OK"}));
        assert_eq!(set_cookies(&r), CLEARED);
    }
    // A valid token in the query string is still refused, as on every route.
    http.send(
        Method::POST,
        &format!("/api/v4/users/logout?access_token={}", alice.token),
        None,
        None,
        &[],
    )
    .await
    .assert_error(401, "api.context.token_provided.app_error");
    http.get("/api/v4/users/me", &alice.token).await.assert_ok();
    srv.stop().await;
}

#[tokio::test]
async fn logout_with_a_personal_access_token_keeps_the_token() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let http = Http::new(&srv);
    let created = create_token(&http, &alice, "me").await;
    let secret = created["token"].as_str().unwrap().to_owned();
    http.get("/api/v4/users/me", &secret).await.assert_ok();
    let minted = |sessions: &serde_json::Value| -> Vec<String> {
        sessions
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["props"]["type"] == "UserAccessToken")
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let before = minted(
        http.get("/api/v4/users/me/sessions", &alice.token)
            .await
            .assert_ok(),
    );
    assert_eq!(before.len(), 1);
    let r = http
        .send(
            Method::POST,
            "/api/v4/users/logout",
            Some(&secret),
            None,
            &[],
        )
        .await;
    r.assert_ok();
    assert!(
        minted(
            http.get("/api/v4/users/me/sessions", &alice.token)
                .await
                .assert_ok()
        )
        .is_empty()
    );
    http.get("/api/v4/users/me", &secret).await.assert_ok();
    let after = minted(
        http.get("/api/v4/users/me/sessions", &alice.token)
            .await
            .assert_ok(),
    );
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "a new session was minted");
    srv.stop().await;
}

#[tokio::test]
async fn get_user_and_get_user_by_username_share_the_users_paths_as_mattermosts_router_does() {
    let srv = TestServer::start_with(|c| c.show_email_address = false).await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let guest = srv.user("guest", &["system_guest"]).await;
    let http = Http::new(&srv);
    let carol = http
        .post(
            "/api/v4/users",
            &admin.token,
            json!({"username": "carol", "email": "carol@example.com"}),
        )
        .await;
    assert_eq!(carol.status.as_u16(), 201);
    let carol_id = carol.json["id"].as_str().unwrap().to_owned();

    let seen = http
        .get(&format!("/api/v4/users/{carol_id}"), &alice.token)
        .await;
    let seen = seen.assert_ok();
    assert_eq!(seen["id"], carol_id.as_str());
    assert_eq!(seen["username"], "carol");
    assert_eq!(seen["email"], "", "sanitized for another user");
    assert_eq!(seen["roles"], "system_user");
    for secret in ["password", "mfa_secret", "token"] {
        assert!(seen.get(secret).is_none(), "{secret}: {seen}");
    }
    let by_admin = http.get("/api/v4/users/username/carol", &admin.token).await;
    assert_eq!(by_admin.assert_ok()["email"], "carol@example.com");
    let by_name = http.get("/api/v4/users/username/Carol", &alice.token).await;
    assert_eq!(by_name.assert_ok()["id"], carol_id.as_str());

    // Static segments win over {user_id}: /users/me, /users/tokens keep their routes.
    let me = http.get("/api/v4/users/me", &alice.token).await;
    assert_eq!(me.assert_ok()["id"], alice.id.as_str());
    http.get("/api/v4/users/tokens", &alice.token)
        .await
        .assert_error(403, "api.context.permissions.app_error");
    // /users/username/{username} is a route of its own, even for a name such as "tokens".
    http.get("/api/v4/users/username/tokens", &admin.token)
        .await
        .assert_error(404, "app.user.missing_account.const");

    // Errors, in Mattermost's order.
    http.get("/api/v4/users/abc", &alice.token)
        .await
        .assert_error(400, "api.context.invalid_url_param.app_error");
    http.get("/api/v4/users/username/9lives", &alice.token)
        .await
        .assert_error(400, "api.context.invalid_url_param.app_error");
    let unknown = token_service::domain::ids::new_id();
    http.get(&format!("/api/v4/users/{unknown}"), &alice.token)
        .await
        .assert_error(404, "app.user.missing_account.const");
    // A guest (no view_members) cannot tell who exists.
    for path in [
        format!("/api/v4/users/{unknown}"),
        format!("/api/v4/users/{carol_id}"),
        "/api/v4/users/username/carol".to_owned(),
        "/api/v4/users/username/nobody".to_owned(),
    ] {
        http.get(&path, &guest.token)
            .await
            .assert_error(403, "api.context.permissions.app_error");
    }
    // Characters outside the router's patterns never reach a handler: the router's 404,
    // before authentication.
    for path in ["/api/v4/users/a%2Bb", "/api/v4/users/username/a%2Bb"] {
        http.send(Method::GET, path, None, None, &[])
            .await
            .assert_error(404, "api.context.404.app_error");
    }
    http.send(
        Method::GET,
        &format!("/api/v4/users/{carol_id}"),
        None,
        None,
        &[],
    )
    .await
    .assert_error(401, "api.context.session_expired.app_error");
    srv.stop().await;
}
