//! Error bodies as Mattermost writes them: AppError keys in its order (checked by
//! `HttpResponse::assert_error` on every error in these tests) and its English messages for
//! the ids it has texts for, with our rule in `detailed_error` in developer mode only.

use reqwest::Method;
use serde_json::json;

use super::Http;
use crate::common::*;

#[tokio::test]
async fn error_messages_are_mattermosts_english_texts() {
    // Developer mode: the assertions below read our rule in `detailed_error`.
    let srv = TestServer::start_with(|c| c.enable_developer = true).await;
    let tina = srv.token_user("tina").await;
    let http = Http::new(&srv);
    let missing = http
        .get(
            &format!(
                "/api/v4/users/tokens/{}",
                token_service::domain::ids::new_id()
            ),
            &tina.token,
        )
        .await;
    let body = missing.assert_error(404, "app.user_access_token.get_by_user.app_error");
    assert_eq!(
        body["message"],
        "Unable to get the personal access tokens by user."
    );
    let too_long = http
        .post(
            "/api/v4/users/me/tokens",
            &tina.token,
            json!({"description": "x".repeat(256)}),
        )
        .await;
    let body = too_long.assert_error(
        400,
        "model.user_access_token.is_valid.description.app_error",
    );
    assert_eq!(
        body["message"],
        "Invalid description, must be 255 or less characters."
    );
    assert!(
        body["detailed_error"]
            .as_str()
            .unwrap()
            .starts_with("description:")
    );
    let past = http
        .post(
            "/api/v4/users/me/tokens",
            &tina.token,
            json!({"description": "x", "expires_at": 1}),
        )
        .await;
    let body = past.assert_error(400, "app.user_access_token.expires_at_in_past.app_error");
    assert_eq!(body["message"], "The provided expires_at is in the past.");
    let query = http
        .send(
            Method::GET,
            &format!("/api/v4/users/me?access_token={}", tina.token),
            None,
            None,
            &[],
        )
        .await;
    let body = query.assert_error(401, "api.context.token_provided.app_error");
    assert_eq!(
        body["message"],
        "Session is not OAuth but token was provided in the query string."
    );
    srv.stop().await;

    let srv = TestServer::start_with(|c| {
        c.enable_user_access_tokens = false;
        c.enable_commands = false;
    })
    .await;
    let admin = srv.admin("root").await;
    let http = Http::new(&srv);
    let off = http
        .post(
            "/api/v4/users/me/tokens",
            &admin.token,
            json!({"description": "x"}),
        )
        .await;
    let body = off.assert_error(501, "app.user_access_token.disabled");
    assert_eq!(
        body["message"],
        "Personal access tokens are disabled on this server. Please contact your system administrator for details."
    );
    let commands_off = http
        .post(
            "/api/v4/commands",
            &admin.token,
            json!({"team_id": token_service::domain::ids::new_id(), "trigger": "x", "url": "https://example.com"}),
        )
        .await;
    let body = commands_off.assert_error(501, "api.command.disabled.app_error");
    assert_eq!(
        body["message"],
        "Commands have been disabled by the system admin."
    );
    srv.stop().await;
}

/// Errors a client can provoke, each with our detail when developer mode is on.
async fn detailed_errors(srv: &TestServer) -> Vec<serde_json::Value> {
    let tina = srv.token_user("tina").await;
    let basic = srv.basic_user("basic").await;
    let http = Http::new(srv);
    let invalid = http
        .post(
            "/api/v4/users/me/tokens",
            &tina.token,
            json!({"description": "x".repeat(256)}),
        )
        .await;
    let denied = http.get("/api/v4/users/tokens", &basic.token).await;
    vec![
        invalid
            .assert_error(
                400,
                "model.user_access_token.is_valid.description.app_error",
            )
            .clone(),
        denied
            .assert_error(403, "api.context.permissions.app_error")
            .clone(),
    ]
}

#[tokio::test]
async fn detailed_error_is_blank_unless_developer_mode_is_on() {
    // Default: blank, as Mattermost leaves it without EnableDeveloper; the id and message
    // still say what happened.
    let srv = TestServer::start().await;
    let bodies = detailed_errors(&srv).await;
    for body in &bodies {
        assert_eq!(body["detailed_error"], "", "{body}");
    }
    assert_eq!(
        bodies[0]["message"],
        "Invalid description, must be 255 or less characters."
    );
    assert_eq!(
        bodies[1]["message"],
        "You do not have the appropriate permissions."
    );
    // The router's 404 explains itself in either mode, as Mattermost's does.
    let http = Http::new(&srv);
    let admin = srv.admin("root").await;
    let missing = http.get("/api/v4/nope", &admin.token).await;
    let body = missing.assert_error(404, "api.context.404.app_error");
    assert!(
        body["detailed_error"]
            .as_str()
            .unwrap()
            .contains("url='/api/v4/nope'"),
        "{body}"
    );
    srv.stop().await;

    // enable_developer: our rule and the missing permission.
    let srv = TestServer::start_with(|c| c.enable_developer = true).await;
    let bodies = detailed_errors(&srv).await;
    assert_eq!(
        bodies[0]["detailed_error"],
        "description: must be at most 255 bytes"
    );
    assert_eq!(bodies[1]["detailed_error"], "permission=manage_system");
    srv.stop().await;
}
