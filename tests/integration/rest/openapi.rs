//! `GET /api/v4/openapi.json`: an OpenAPI 3.1 document that lists exactly the served routes,
//! names each operation after its RPC, and whose schemas match what the shim really returns:
//! every route is called and its success answer (and an error answer) validated against the
//! documented schema, undocumented fields included.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};
use token_service::config::Secret;

use super::{Http, HttpResponse};
use crate::{common::*, contract::proto::http_rules};

const DOC_PATH: &str = "/api/v4/openapi.json";

async fn fetch_document(http: &Http) -> Value {
    let answer = http.send(Method::GET, DOC_PATH, None, None, &[]).await;
    assert_eq!(answer.status.as_u16(), 200, "{answer:?}");
    answer.json
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("external $ref {reference}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"));
            resolve(doc, target)
        }
        None => schema,
    }
}

/// Checks `value` against the subset of JSON Schema the document uses. Objects may not carry
/// properties the schema does not list, unless it allows additional properties.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} not in {allowed:?}"));
    }
    let Some(ty) = schema.get("type").and_then(Value::as_str) else {
        return;
    };
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        other => panic!("{at}: unsupported schema type {other}"),
    };
    if !ok {
        errors.push(format!("{at}: expected {ty}, got {value}"));
        return;
    }
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = name.as_str().unwrap();
                if !fields.contains_key(name) {
                    errors.push(format!("{at}: required field {name} missing"));
                }
            }
            let additional = schema.get("additionalProperties");
            for (name, field) in fields {
                match (properties.and_then(|p| p.get(name)), additional) {
                    (Some(sub), _) => validate(doc, sub, field, &format!("{at}.{name}"), errors),
                    (None, Some(sub)) if sub.is_object() => {
                        validate(doc, sub, field, &format!("{at}.{name}"), errors);
                    }
                    (None, _) => errors.push(format!("{at}: undocumented field {name}")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(doc, item_schema, item, &format!("{at}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// Asserts an answer is documented for the operation (status and body schema).
#[track_caller]
fn assert_documented(doc: &Value, method: &Method, template: &str, answer: &HttpResponse) {
    let operation = &doc["paths"][template][method.as_str().to_ascii_lowercase()];
    assert!(operation.is_object(), "{method} {template} not documented");
    let status = answer.status.as_u16().to_string();
    let response = operation["responses"]
        .get(&status)
        .or_else(|| operation["responses"].get("default"))
        .unwrap_or_else(|| panic!("{method} {template}: status {status} not documented"));
    let schema = &response["content"]["application/json"]["schema"];
    let mut errors = Vec::new();
    validate(doc, schema, &answer.json, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "{method} {template} answered {status} off its schema: {errors:#?}\n{answer:?}"
    );
}

#[tokio::test]
async fn the_document_lists_exactly_the_served_routes_named_by_rpc() {
    let srv = TestServer::start().await;
    let http = Http::new(&srv);
    let doc = fetch_document(&http).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (verb, operation) in item.as_object().unwrap() {
            let verb = verb.to_ascii_uppercase();
            documented.insert((verb.clone(), path.clone()));
            if path == DOC_PATH {
                continue;
            }
            // operationId is the RPC whose google.api.http rule is this verb and path.
            let rpc = http_rules()
                .into_iter()
                .find(|(_, v, p)| *v == verb && p == path)
                .map(|(rpc, _, _)| rpc)
                .unwrap_or_else(|| panic!("{verb} {path} has no http rule"));
            assert_eq!(operation["operationId"], rpc.as_str());
            let description = operation["description"].as_str().unwrap();
            assert!(
                description.contains("Permission") || description.contains("Errors"),
                "{rpc}: the proto comment is the description: {description:?}"
            );
            // Every path parameter is declared.
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let in_path: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(declared, in_path, "{verb} {path}");
        }
    }
    let mut served: BTreeSet<(String, String)> =
        token_service::rest::served_routes().into_iter().collect();
    served.insert(("GET".into(), DOC_PATH.into()));
    assert_eq!(documented, served);

    // Every $ref resolves.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                    out.push(r.to_owned());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        assert!(doc.pointer(&r[1..]).is_some(), "dangling {r}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn every_route_answers_as_its_schema_says() {
    let srv = TestServer::start_with(|c| {
        c.webrtc.enable = true;
        c.webrtc.gateway_url = "wss://gateway.example.com/janus".into();
        c.webrtc.stun_uri = "stun:turn.example.com:3478".into();
        c.webrtc.turn_uri = "turn:turn.example.com:3478".into();
        c.webrtc.turn_shared_secret = Secret::new("openapi-test-secret");
        // The webhook below points at a closed port on this machine.
        c.webhooks.allow_private_addresses = true;
    })
    .await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let bot = srv.bot("helper", Some(&admin)).await;
    let http = Http::new(&srv);
    let doc = fetch_document(&http).await;
    let team = token_service::domain::ids::new_id();
    let mut covered = BTreeSet::new();

    // Calls one route as `token`, asserts the expected status and the documented shape.
    macro_rules! call {
        ($method:expr, $template:expr, $path:expr, $token:expr, $body:expr, $status:expr) => {{
            let body: Option<Value> = $body;
            let path: &str = &$path;
            let answer = http
                .send(
                    $method,
                    path,
                    Some($token),
                    body.map(|b| b.to_string()).as_deref(),
                    &[],
                )
                .await;
            assert_eq!(
                answer.status.as_u16(),
                $status,
                "{} {}: {answer:?}",
                $method,
                $path
            );
            assert_documented(&doc, &$method, $template, &answer);
            covered.insert(($method.to_string(), $template.to_owned()));
            answer.json
        }};
    }

    let created = call!(
        Method::POST,
        "/api/v4/users/{user_id}/tokens",
        format!("/api/v4/users/{}/tokens", alice.id),
        &alice.token,
        Some(json!({"description": "openapi"})),
        200
    );
    let token_id = created["id"].as_str().unwrap().to_owned();
    let secret = created["token"].as_str().unwrap().to_owned();
    let hook = call!(
        Method::POST,
        "/api/v4/tokens/webhooks",
        "/api/v4/tokens/webhooks",
        &admin.token,
        Some(
            json!({"url": "http://127.0.0.1:9/hook", "description": "openapi",
            "filter": {"actions": ["access_token.revoked"]}})
        ),
        201
    );
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    call!(
        Method::GET,
        "/api/v4/tokens/webhooks",
        "/api/v4/tokens/webhooks",
        &admin.token,
        None,
        200
    );
    call!(
        Method::GET,
        "/api/v4/tokens/webhooks/{webhook_id}",
        format!("/api/v4/tokens/webhooks/{hook_id}"),
        &admin.token,
        None,
        200
    );
    call!(
        Method::PUT,
        "/api/v4/tokens/webhooks/{webhook_id}",
        format!("/api/v4/tokens/webhooks/{hook_id}"),
        &admin.token,
        Some(json!({"enabled": false, "filter": {"actions": [], "user_id": alice.id}})),
        200
    );
    call!(
        Method::POST,
        "/api/v4/tokens/webhooks/{webhook_id}/rotate_secret",
        format!("/api/v4/tokens/webhooks/{hook_id}/rotate_secret"),
        &admin.token,
        Some(json!({"grace_period_ms": 60_000})),
        200
    );
    call!(
        Method::POST,
        "/api/v4/tokens/webhooks/{webhook_id}/test",
        format!("/api/v4/tokens/webhooks/{hook_id}/test"),
        &admin.token,
        None,
        200
    );
    call!(
        Method::DELETE,
        "/api/v4/tokens/webhooks/{webhook_id}",
        format!("/api/v4/tokens/webhooks/{hook_id}"),
        &admin.token,
        None,
        200
    );
    call!(
        Method::GET,
        "/api/v4/users/{user_id}/tokens",
        "/api/v4/users/me/tokens?per_page=5",
        &alice.token,
        None,
        200
    );
    call!(
        Method::GET,
        "/api/v4/users/tokens",
        "/api/v4/users/tokens",
        &admin.token,
        None,
        200
    );
    call!(
        Method::GET,
        "/api/v4/users/tokens/non_compliant/count",
        "/api/v4/users/tokens/non_compliant/count",
        &admin.token,
        None,
        200
    );
    // No lifetime policy here: Mattermost's 400.
    call!(
        Method::POST,
        "/api/v4/users/tokens/non_compliant/revoke",
        "/api/v4/users/tokens/non_compliant/revoke",
        &admin.token,
        None,
        400
    );
    call!(
        Method::POST,
        "/api/v4/users/tokens/search",
        "/api/v4/users/tokens/search",
        &admin.token,
        Some(json!({"term": "alice"})),
        200
    );
    call!(
        Method::GET,
        "/api/v4/users/tokens/{token_id}",
        format!("/api/v4/users/tokens/{token_id}"),
        &alice.token,
        None,
        200
    );
    // The PAT mints a session with props, which the session list then shows.
    let introspected = call!(
        Method::POST,
        "/api/v4/tokens/introspect",
        "/api/v4/tokens/introspect",
        &admin.token,
        Some(json!({"token": secret})),
        200
    );
    assert_eq!(introspected["kind"], "user_access_token");
    call!(
        Method::POST,
        "/api/v4/users/tokens/disable",
        "/api/v4/users/tokens/disable",
        &alice.token,
        Some(json!({"token_id": token_id})),
        200
    );
    call!(
        Method::POST,
        "/api/v4/users/tokens/enable",
        "/api/v4/users/tokens/enable",
        &alice.token,
        Some(json!({"token_id": token_id})),
        200
    );
    let me = call!(
        Method::GET,
        "/api/v4/users/me",
        "/api/v4/users/me",
        &secret,
        None,
        200
    );
    assert_eq!(me["id"], alice.id.as_str());
    let sessions = call!(
        Method::GET,
        "/api/v4/users/{user_id}/sessions",
        "/api/v4/users/me/sessions",
        &alice.token,
        None,
        200
    );
    assert_eq!(sessions.as_array().unwrap().len(), 2);
    let rotated = call!(
        Method::POST,
        "/api/v4/users/tokens/rotate",
        "/api/v4/users/tokens/rotate",
        &alice.token,
        Some(json!({"token_id": token_id, "expires_at": 0})),
        200
    );
    assert_eq!(rotated["id"], token_id.as_str());
    call!(
        Method::POST,
        "/api/v4/users/tokens/revoke",
        "/api/v4/users/tokens/revoke",
        &alice.token,
        Some(json!({"token_id": token_id})),
        200
    );
    let session = call!(
        Method::POST,
        "/api/v4/users/{user_id}/sessions",
        format!("/api/v4/users/{}/sessions", alice.id),
        &admin.token,
        Some(json!({"device_id": "phone", "props": {"os": "android"}})),
        201
    );
    call!(
        Method::POST,
        "/api/v4/users/{user_id}/sessions/revoke",
        format!("/api/v4/users/{}/sessions/revoke", alice.id),
        &admin.token,
        Some(json!({"session_id": session["id"]})),
        200
    );
    call!(
        Method::POST,
        "/api/v4/teams/{team_id}/members",
        format!("/api/v4/teams/{team}/members"),
        &admin.token,
        Some(json!({"user_id": alice.id})),
        201
    );
    let command = call!(
        Method::POST,
        "/api/v4/commands",
        "/api/v4/commands",
        &admin.token,
        Some(
            json!({"team_id": team, "trigger": "deploy", "method": "P", "url": "https://example.com/hook"})
        ),
        201
    );
    let command_id = command["id"].as_str().unwrap().to_owned();
    let regenerated = call!(
        Method::PUT,
        "/api/v4/commands/{command_id}/regen_token",
        format!("/api/v4/commands/{command_id}/regen_token"),
        &admin.token,
        None,
        200
    );
    call!(
        Method::POST,
        "/api/v4/commands/{command_id}/verify_token",
        format!("/api/v4/commands/{command_id}/verify_token"),
        &admin.token,
        Some(json!({"token": regenerated["token"]})),
        200
    );
    call!(
        Method::GET,
        "/api/v4/webrtc/token",
        "/api/v4/webrtc/token",
        &alice.token,
        None,
        200
    );
    let user = call!(
        Method::POST,
        "/api/v4/users",
        "/api/v4/users",
        &admin.token,
        Some(json!({"username": "carol", "roles": "system_user"})),
        201
    );
    let carol = user["id"].as_str().unwrap().to_owned();
    call!(
        Method::PUT,
        "/api/v4/users/{user_id}/roles",
        format!("/api/v4/users/{carol}/roles"),
        &admin.token,
        Some(json!({"roles": "system_user system_user_access_token"})),
        200
    );
    call!(
        Method::PUT,
        "/api/v4/users/{user_id}/active",
        format!("/api/v4/users/{carol}/active"),
        &admin.token,
        Some(json!({"active": false})),
        200
    );
    let seen = call!(
        Method::GET,
        "/api/v4/users/{user_id}",
        format!("/api/v4/users/{carol}"),
        &alice.token,
        None,
        200
    );
    assert_eq!(seen["username"], "carol");
    call!(
        Method::GET,
        "/api/v4/users/username/{username}",
        "/api/v4/users/username/carol",
        &admin.token,
        None,
        200
    );
    call!(
        Method::GET,
        "/api/v4/users/username/{username}",
        "/api/v4/users/username/nobody",
        &admin.token,
        None,
        404
    );
    // A bot's user document carries its owner.
    let bot_me = http.get("/api/v4/users/me", &bot.token).await;
    assert_documented(&doc, &Method::GET, "/api/v4/users/me", &bot_me);
    assert_eq!(bot_me.json["bot_owner_id"], admin.id.as_str());

    // Error answers are documented AppErrors too.
    call!(
        Method::GET,
        "/api/v4/users/tokens",
        "/api/v4/users/tokens",
        &alice.token,
        None,
        403
    );
    call!(
        Method::POST,
        "/api/v4/users/{user_id}/tokens",
        "/api/v4/users/me/tokens",
        &alice.token,
        Some(json!({"description": ""})),
        400
    );

    let events = call!(
        Method::GET,
        "/api/v4/tokens/revocations",
        "/api/v4/tokens/revocations?after_event_id=0",
        &admin.token,
        None,
        200
    );
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "access_token"),
        "{events}"
    );
    let records = call!(
        Method::GET,
        "/api/v4/tokens/events",
        "/api/v4/tokens/events?after_event_id=0",
        &admin.token,
        None,
        200
    );
    let listed = records.as_array().unwrap();
    // Every kind of record made above, each with the fields it carries.
    for action in [
        "user.created",
        "access_token.created",
        "access_token.revoked",
        "session.created",
        "command.created",
        "team_member.added",
    ] {
        assert!(
            listed.iter().any(|r| r["action"] == action),
            "{action}: {records}"
        );
    }
    call!(
        Method::GET,
        "/api/v4/tokens/events",
        format!(
            "/api/v4/tokens/events?actions=access_token.created&user_id={}",
            alice.id
        ),
        &admin.token,
        None,
        200
    );
    call!(
        Method::GET,
        "/api/v4/tokens/events",
        "/api/v4/tokens/events?actions=nope",
        &admin.token,
        None,
        400
    );
    // The audit trail: a page with a cursor, the hash, a partial and a whole verification.
    let page = call!(
        Method::GET,
        "/api/v4/tokens/audit_records",
        "/api/v4/tokens/audit_records?page_size=1&actions=access_token.created,access_token.revoked",
        &admin.token,
        None,
        200
    );
    assert_eq!(page["records"].as_array().unwrap().len(), 1, "{page}");
    assert!(!page["next_page_token"].as_str().unwrap().is_empty());
    call!(
        Method::GET,
        "/api/v4/tokens/audit_records",
        "/api/v4/tokens/audit_records?actions=nonsense",
        &admin.token,
        None,
        400
    );
    call!(
        Method::POST,
        "/api/v4/tokens/audit_records/hash",
        "/api/v4/tokens/audit_records/hash",
        &admin.token,
        Some(json!({"credential": secret})),
        200
    );
    let partial = call!(
        Method::POST,
        "/api/v4/tokens/audit_records/verify",
        "/api/v4/tokens/audit_records/verify",
        &admin.token,
        Some(json!({"max_records": 3})),
        200
    );
    assert_eq!(partial["resume_after"], 3, "{partial}");
    let whole = call!(
        Method::POST,
        "/api/v4/tokens/audit_records/verify",
        "/api/v4/tokens/audit_records/verify",
        &admin.token,
        Some(json!({})),
        200
    );
    assert_eq!(whole["ok"], true, "{whole}");
    let trail = call!(
        Method::POST,
        "/api/v4/tokens/identify",
        "/api/v4/tokens/identify",
        &admin.token,
        Some(json!({"token": secret})),
        200
    );
    assert_eq!(trail["shape"], "mattermost", "{trail}");
    assert!(!trail["records"].as_array().unwrap().is_empty(), "{trail}");
    call!(
        Method::POST,
        "/api/v4/tokens/identify",
        "/api/v4/tokens/identify",
        &admin.token,
        Some(json!({"token": ""})),
        400
    );
    call!(
        Method::POST,
        "/api/v4/tokens/leaked",
        "/api/v4/tokens/leaked",
        &admin.token,
        Some(json!({"tokens": ["not-a-token"], "url": "https://example.com/x"})),
        202
    );
    call!(
        Method::POST,
        "/api/v4/tokens/leaked",
        "/api/v4/tokens/leaked",
        &admin.token,
        Some(json!({"tokens": []})),
        400
    );
    call!(
        Method::POST,
        "/api/v4/users/logout",
        "/api/v4/users/logout",
        &alice.token,
        None,
        200
    );
    call!(
        Method::POST,
        "/api/v4/users/{user_id}/sessions/revoke/all",
        format!("/api/v4/users/{}/sessions/revoke/all", alice.id),
        &admin.token,
        None,
        200
    );
    call!(
        Method::POST,
        "/api/v4/users/sessions/revoke/all",
        "/api/v4/users/sessions/revoke/all",
        &admin.token,
        None,
        200
    );
    let unauthenticated = http.get("/api/v4/users/me", &admin.token).await;
    assert_eq!(unauthenticated.status.as_u16(), 401);
    assert_documented(&doc, &Method::GET, "/api/v4/users/me", &unauthenticated);

    let all: BTreeSet<(String, String)> =
        token_service::rest::served_routes().into_iter().collect();
    let missed: Vec<_> = all.difference(&covered).collect();
    assert!(missed.is_empty(), "routes not exercised: {missed:#?}");
    srv.stop().await;
}
