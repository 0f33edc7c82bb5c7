//! Hostile and unusual input over REST: numbers past what a database can take, NUL
//! characters, bodies only Go's JSON decoder accepts, and the order Mattermost checks a
//! request in. Each gets a clear answer, never a crash or a 500, and writes nothing.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Http, ids};
use crate::common::*;

#[tokio::test]
async fn a_page_beyond_what_the_database_can_skip_is_empty_instead_of_a_crash() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let http = Http::new(&srv);
    http.post(
        "/api/v4/users/me/tokens",
        &tina.token,
        json!({"description": "one"}),
    )
    .await
    .assert_ok();
    let max = i64::MAX;
    let last_page_the_database_can_skip_to = i64::MAX / 200;
    for query in [
        format!("page={max}&per_page=200"),
        format!("page={max}"),
        format!(
            "page={}&per_page=200",
            last_page_the_database_can_skip_to + 1
        ),
        format!("page={last_page_the_database_can_skip_to}&per_page=200"),
    ] {
        for path in [
            "/api/v4/users/tokens".to_owned(),
            format!("/api/v4/users/{}/tokens", tina.id),
        ] {
            let page = http.get(&format!("{path}?{query}"), &admin.token).await;
            assert_eq!(page.assert_ok(), &json!([]), "{path}?{query}");
        }
    }
    // The server is still there, and the first page still has the token.
    let first = http.get("/api/v4/users/tokens?page=0", &admin.token).await;
    assert_eq!(first.assert_ok().as_array().unwrap().len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn nul_characters_in_stored_text_are_refused_naming_the_field_and_nothing_is_written() {
    // Developer mode: the assertions below read the rule in `detailed_error`.
    let srv = TestServer::start_with(|c| c.enable_developer = true).await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let http = Http::new(&srv);

    let refused = |r: super::HttpResponse, field: &str| {
        let body = r.assert_error(400, "api.context.invalid_body_param.app_error");
        assert_eq!(
            body["message"],
            format!("Invalid or missing {field} in request body."),
            "{body}"
        );
        assert!(
            body["detailed_error"]
                .as_str()
                .unwrap()
                .contains("NUL character"),
            "{body}"
        );
    };

    // Personal access token description.
    refused(
        http.post(
            "/api/v4/users/me/tokens",
            &tina.token,
            json!({"description": "ci\u{0}"}),
        )
        .await,
        "description",
    );
    let tokens = http.get("/api/v4/users/me/tokens", &tina.token).await;
    assert_eq!(tokens.assert_ok(), &json!([]));

    // Session device id and props.
    let sessions_before = http
        .get(&format!("/api/v4/users/{}/sessions", tina.id), &admin.token)
        .await
        .assert_ok()
        .as_array()
        .unwrap()
        .len();
    let new_session = |body: Value| {
        let path = format!("/api/v4/users/{}/sessions", tina.id);
        let http = &http;
        let token = admin.token.clone();
        async move { http.post(&path, &token, body).await }
    };
    refused(
        new_session(json!({"device_id": "\u{0}"})).await,
        "device_id",
    );
    refused(
        new_session(json!({"props": {"os\u{0}": "x"}})).await,
        "props",
    );
    refused(
        new_session(json!({"props": {"os": "li\u{0}nux"}})).await,
        "props",
    );
    let sessions_after = http
        .get(&format!("/api/v4/users/{}/sessions", tina.id), &admin.token)
        .await
        .assert_ok()
        .as_array()
        .unwrap()
        .len();
    assert_eq!(sessions_after, sessions_before);

    // Every text field of a slash command.
    let team = token_service::domain::ids::new_id();
    let command = |field: &str, value: &str| {
        let mut body = json!({
            "team_id": team,
            "trigger": "deploy",
            "url": "https://example.com/hook",
        });
        body[field] = json!(value);
        body
    };
    for field in [
        "trigger",
        "method",
        "url",
        "display_name",
        "description",
        "username",
        "icon_url",
        "auto_complete_desc",
        "auto_complete_hint",
    ] {
        let value = match field {
            "trigger" => "dep\u{0}loy",
            "method" => "P\u{0}",
            "url" => "https://example.com/\u{0}",
            _ => "x\u{0}",
        };
        refused(
            http.post("/api/v4/commands", &admin.token, command(field, value))
                .await,
            field,
        );
    }
    let created = http
        .post(
            "/api/v4/commands",
            &admin.token,
            command("description", "fine"),
        )
        .await;
    assert_eq!(
        created.status.as_u16(),
        201,
        "the trigger is still free: {created:?}"
    );

    // Users: the e-mail address is refused as text; the username by its own rule.
    refused(
        http.post(
            "/api/v4/users",
            &admin.token,
            json!({"username": "carol", "email": "carol\u{0}@example.com"}),
        )
        .await,
        "email",
    );
    let username = http
        .post(
            "/api/v4/users",
            &admin.token,
            json!({"username": "car\u{0}ol"}),
        )
        .await;
    let body = username.assert_error(400, "model.user.is_valid.username.app_error");
    assert!(
        body["detailed_error"]
            .as_str()
            .unwrap()
            .starts_with("username:")
    );
    let carol = http
        .post(
            "/api/v4/users",
            &admin.token,
            json!({"username": "carol", "email": "carol@example.com"}),
        )
        .await;
    assert_eq!(
        carol.status.as_u16(),
        201,
        "carol was not created: {carol:?}"
    );

    // Roles are names the server knows, so a NUL is an unknown role.
    http.put(
        &format!("/api/v4/users/{}/roles", tina.id),
        &admin.token,
        json!({"roles": "system_user\u{0}"}),
    )
    .await
    .assert_error(400, "model.user.is_valid.roles.app_error");
    http.post(
        &format!("/api/v4/teams/{team}/members"),
        &admin.token,
        json!({"user_id": tina.id, "roles": "team_user\u{0}"}),
    )
    .await
    .assert_error(400, "model.user.is_valid.roles.app_error");

    // Values that are only looked up match nothing.
    let search = http
        .post(
            "/api/v4/users/tokens/search",
            &admin.token,
            json!({"term": "tina\u{0}"}),
        )
        .await;
    assert_eq!(search.assert_ok(), &json!([]));
    http.post(
        "/api/v4/users/me/sessions/revoke",
        &tina.token,
        json!({"session_id": "\u{0}"}),
    )
    .await
    .assert_error(400, "app.session.get.app_error");
    http.post(
        "/api/v4/users/tokens/revoke",
        &tina.token,
        json!({"token_id": "\u{0}"}),
    )
    .await
    .assert_error(404, "app.user_access_token.get_by_user.app_error");
    let introspected = http
        .post(
            "/api/v4/tokens/introspect",
            &admin.token,
            json!({"token": "\u{0}"}),
        )
        .await;
    assert_eq!(introspected.assert_ok()["active"], false);
    srv.stop().await;
}

#[tokio::test]
async fn create_checks_the_path_user_and_loads_it_before_reading_the_body() {
    let srv = TestServer::start().await;
    let tina = srv.token_user("tina").await;
    let basic = srv.basic_user("basic").await;
    let http = Http::new(&srv);
    let garbage = |path: String, token: String| {
        let http = &http;
        async move {
            http.send(Method::POST, &path, Some(&token), Some("{garbage"), &[])
                .await
        }
    };
    let bad_id = garbage(
        "/api/v4/users/notarealuserid/tokens".into(),
        tina.token.clone(),
    )
    .await;
    let body = bad_id.assert_error(400, "api.context.invalid_url_param.app_error");
    assert_eq!(
        body["message"],
        "Invalid or missing user_id parameter in request URL."
    );
    let unknown = token_service::domain::ids::new_id();
    garbage(
        format!("/api/v4/users/{unknown}/tokens"),
        tina.token.clone(),
    )
    .await
    .assert_error(404, "app.user.missing_account.const");
    // The body is decoded before any permission is checked.
    for caller in [&tina, &basic] {
        let body = garbage("/api/v4/users/me/tokens".into(), caller.token.clone()).await;
        let body = body.assert_error(400, "api.context.invalid_body_param.app_error");
        assert_eq!(
            body["message"],
            "Invalid or missing user_access_token in request body."
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn bodies_decode_as_gos_encoding_json_does() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let http = Http::new(&srv);
    let create = |raw: &str| {
        let http = &http;
        let token = tina.token.clone();
        let raw = raw.to_owned();
        async move {
            http.send(
                Method::POST,
                "/api/v4/users/me/tokens",
                Some(&token),
                Some(&raw),
                &[],
            )
            .await
        }
    };
    // Keys match case-insensitively and the last match wins; trailing text is never read.
    let created = create(r#"{"Description":"upper"}"#).await;
    assert_eq!(created.assert_ok()["description"], "upper");
    let created = create(r#"{"DESCRIPTION":"first","description":"last"}"#).await;
    assert_eq!(created.assert_ok()["description"], "last");
    let created = create(r#"{"description":"framed"} and then some text"#).await;
    assert_eq!(created.assert_ok()["description"], "framed");
    let created = create(r#"{"description":"nulls","expires_at":null,"is_active":null}"#).await;
    assert_eq!(created.assert_ok()["expires_at"], 0);
    // A known field of the wrong type fails, even one the server then ignores.
    for raw in [
        r#"{"description":"x","is_active":"no"}"#,
        r#"{"description":"x","Is_Active":"no"}"#,
        r#"{"description":"x","id":5}"#,
        r#"{"description":"x","expires_at":"soon"}"#,
        r#"{"description":"x","expires_at":1.5}"#,
        r#"["description"]"#,
    ] {
        let r = create(raw).await;
        let body = r.assert_error(400, "api.context.invalid_body_param.app_error");
        assert_eq!(
            body["message"], "Invalid or missing user_access_token in request body.",
            "{raw}"
        );
    }
    let list = http.get("/api/v4/users/me/tokens", &tina.token).await;
    let tokens = ids(list.assert_ok());
    assert_eq!(tokens.len(), 4, "only the four good bodies created tokens");

    // Slash commands, team members and users decode the same way.
    let team = token_service::domain::ids::new_id();
    let command = http
        .send(
            Method::POST,
            "/api/v4/commands",
            Some(&admin.token),
            Some(&format!(
                r#"{{"Team_Id":"{team}","TRIGGER":"deploy","Url":"https://example.com/hook"}} junk"#
            )),
            &[],
        )
        .await;
    assert_eq!(command.status.as_u16(), 201, "{command:?}");
    assert_eq!(command.json["trigger"], "deploy");
    for (path, body, param) in [
        (
            "/api/v4/commands".to_owned(),
            json!({"team_id": team, "trigger": "other", "url": "https://example.com/hook", "auto_complete": "yes"}),
            "command",
        ),
        (
            "/api/v4/commands".to_owned(),
            json!({"team_id": team, "trigger": "other", "url": "https://example.com/hook", "create_at": "now"}),
            "command",
        ),
        (
            format!("/api/v4/teams/{team}/members"),
            json!({"user_id": tina.id, "scheme_admin": "x"}),
            "team_member",
        ),
        (
            "/api/v4/users".to_owned(),
            json!({"username": "carol", "email_verified": "yes"}),
            "user",
        ),
        (
            "/api/v4/users".to_owned(),
            json!({"username": "carol", "props": {"a": 1}}),
            "user",
        ),
    ] {
        let r = http.post(&path, &admin.token, body.clone()).await;
        let err = r.assert_error(400, "api.context.invalid_body_param.app_error");
        assert_eq!(
            err["message"],
            format!("Invalid or missing {param} in request body."),
            "{path} {body}"
        );
    }
    let member = http
        .send(
            Method::POST,
            &format!("/api/v4/teams/{team}/members"),
            Some(&admin.token),
            Some(&format!(r#"{{"USER_ID":"{}"}}"#, tina.id)),
            &[],
        )
        .await;
    assert_eq!(member.status.as_u16(), 201, "{member:?}");

    // Mattermost's lenient map helpers: other members and trailing text do not spoil them.
    let revoke = http
        .send(
            Method::POST,
            "/api/v4/users/tokens/disable",
            Some(&tina.token),
            Some(&format!(
                r#"{{"token_id":"{}","note":5}} trailing"#,
                tokens[0]
            )),
            &[],
        )
        .await;
    revoke.assert_ok();
    let one = http
        .get(&format!("/api/v4/users/tokens/{}", tokens[0]), &tina.token)
        .await;
    assert_eq!(one.assert_ok()["is_active"], false);
    let basic = srv.basic_user("basic").await;
    http.send(
        Method::PUT,
        &format!("/api/v4/users/{}/active", basic.id),
        Some(&admin.token),
        Some(r#"{"active":false} trailing"#),
        &[],
    )
    .await
    .assert_ok();
    http.get("/api/v4/users/me", &basic.token)
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    srv.stop().await;
}

#[tokio::test]
async fn a_search_body_that_does_not_decode_names_user_access_token_search() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let http = Http::new(&srv);
    let search = |token: String, raw: &'static str| {
        let http = &http;
        async move {
            http.send(
                Method::POST,
                "/api/v4/users/tokens/search",
                Some(&token),
                Some(raw),
                &[],
            )
            .await
        }
    };
    for raw in ["{not json", r#"{"term":5}"#, "[]", ""] {
        let r = search(admin.token.clone(), raw).await;
        let body = r.assert_error(400, "api.context.invalid_body_param.app_error");
        assert_eq!(
            body["message"], "Invalid or missing user_access_token_search in request body.",
            "{raw:?}"
        );
    }
    // The permission comes first, and an empty term is its own error.
    search(tina.token.clone(), "{not json")
        .await
        .assert_error(403, "api.context.permissions.app_error");
    let empty = search(admin.token.clone(), r#"{"term":""}"#).await;
    let body = empty.assert_error(400, "api.context.invalid_body_param.app_error");
    assert_eq!(body["message"], "Invalid or missing term in request body.");
    let found = search(admin.token.clone(), r#"{"TERM":"tina"} trailing"#).await;
    assert_eq!(found.assert_ok(), &json!([]), "tina has no tokens yet");
    srv.stop().await;
}

#[tokio::test]
async fn a_body_with_malformed_chunked_framing_is_a_400_not_a_413_and_writes_nothing() {
    let srv = TestServer::start().await;
    let tina = srv.token_user("tina").await;
    let addr = srv.config.http_addr;
    // "zz" is no chunk size: the body cannot be read, whatever its length.
    let answer = send_partial_request(
        addr,
        format!(
            "POST /api/v4/users/me/tokens HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n",
            tina.token
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(
        answer.contains("api.context.invalid_body_param.app_error"),
        "{answer}"
    );
    assert!(!answer.contains("too large"), "{answer}");
    let http = Http::new(&srv);
    let tokens = http.get("/api/v4/users/me/tokens", &tina.token).await;
    assert_eq!(tokens.assert_ok(), &json!([]), "nothing was created");
    srv.stop().await;
}
