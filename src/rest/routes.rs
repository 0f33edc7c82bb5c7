//! Which RPC the shim serves on which verb and path. The proto is the one source of verbs and
//! paths: the `google.api.http` rules (with their `additional_bindings`) are decoded from the
//! compiled descriptor set, once per process. [`route_table`] names, per RPC, the handler and
//! the OpenAPI description; [`routes`] joins the two and refuses any mismatch (an annotated
//! RPC without a handler, a handler for an RPC without a rule, two RPCs on one verb and path).
//!
//! Adding an RPC to the shim: its rule in the proto, its handler in `handlers.rs`, one entry
//! in [`route_table`]. The unit tests below fail if the table and the proto disagree.

use std::sync::OnceLock;

use axum::{
    handler::Handler,
    http::Method,
    routing::{MethodFilter, MethodRouter, on},
};
use prost::Message;

use super::{
    RestState, handlers as h,
    openapi::{OperationDoc, QueryValue, Reply},
};
use crate::pb::{
    FILE_DESCRIPTOR_SET,
    google_api::{HttpRule, http_rule::Pattern},
};

/// The proto package whose services the shim mirrors.
const PACKAGE: &str = "token_service.v1";

/// One verb and path of an RPC, from its `google.api.http` rule or one of the rule's
/// `additional_bindings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpBinding {
    /// The RPC's name, e.g. `GetMe`.
    pub rpc: String,
    pub method: Method,
    /// The path template, e.g. `/api/v4/users/{user_id}/tokens`.
    pub path: String,
}

/// Every http binding of the proto's RPCs, in the order of the proto, each rule followed by
/// its additional bindings. Decoded from the descriptor on first use, then shared.
pub fn http_bindings() -> &'static [HttpBinding] {
    static BINDINGS: OnceLock<Vec<HttpBinding>> = OnceLock::new();
    BINDINGS.get_or_init(|| {
        decode_http_bindings(FILE_DESCRIPTOR_SET)
            .unwrap_or_else(|e| panic!("the compiled descriptor set: {e}"))
    })
}

// Just enough of descriptor.proto to read the `google.api.http` method option, which
// prost_types does not keep (it drops extensions).
#[derive(Clone, PartialEq, Message)]
struct RawFileSet {
    #[prost(message, repeated, tag = "1")]
    file: Vec<RawFile>,
}

#[derive(Clone, PartialEq, Message)]
struct RawFile {
    #[prost(string, optional, tag = "2")]
    package: Option<String>,
    #[prost(message, repeated, tag = "6")]
    service: Vec<RawService>,
}

#[derive(Clone, PartialEq, Message)]
struct RawService {
    #[prost(message, repeated, tag = "2")]
    method: Vec<RawMethod>,
}

#[derive(Clone, PartialEq, Message)]
struct RawMethod {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, optional, tag = "4")]
    options: Option<RawMethodOptions>,
}

#[derive(Clone, PartialEq, Message)]
struct RawMethodOptions {
    /// The `google.api.http` extension of `MethodOptions`.
    #[prost(message, optional, tag = "72295728")]
    http: Option<HttpRule>,
}

/// The http bindings of the RPCs of [`PACKAGE`] in an encoded `FileDescriptorSet`. RPCs
/// without a rule have none.
fn decode_http_bindings(descriptor_set: &[u8]) -> Result<Vec<HttpBinding>, String> {
    fn push(rpc: &str, rule: &HttpRule, out: &mut Vec<HttpBinding>) -> Result<(), String> {
        let (method, path) = match &rule.pattern {
            Some(Pattern::Get(path)) => (Method::GET, path),
            Some(Pattern::Post(path)) => (Method::POST, path),
            Some(Pattern::Put(path)) => (Method::PUT, path),
            Some(Pattern::Delete(path)) => (Method::DELETE, path),
            Some(Pattern::Patch(path)) => (Method::PATCH, path),
            Some(Pattern::Custom(custom)) => (
                Method::from_bytes(custom.kind.to_ascii_uppercase().as_bytes())
                    .map_err(|e| format!("{rpc}: custom verb {:?}: {e}", custom.kind))?,
                &custom.path,
            ),
            None => return Err(format!("{rpc}: an http rule without a pattern")),
        };
        out.push(HttpBinding {
            rpc: rpc.to_owned(),
            method,
            path: path.clone(),
        });
        for more in &rule.additional_bindings {
            push(rpc, more, out)?;
        }
        Ok(())
    }
    let set = RawFileSet::decode(descriptor_set).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == PACKAGE) {
        for method in file.service.iter().flat_map(|s| &s.method) {
            if let Some(rule) = method.options.as_ref().and_then(|o| o.http.as_ref()) {
                push(method.name(), rule, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// The query parameters of `GET /tokens/audit_records` (see `handlers::audit_request`).
const AUDIT_QUERY: &[(&str, QueryValue, &str)] = &[
    (
        "since",
        QueryValue::Integer,
        "Records made at or after this time (Unix milliseconds).",
    ),
    (
        "until",
        QueryValue::Integer,
        "Records made before this time (Unix milliseconds); after since.",
    ),
    (
        "actions",
        QueryValue::List,
        "Only these actions (any of them), e.g. access_token.revoked (`actions=a&actions=b` or \
         `actions=a,b`). An unknown name is 400.",
    ),
    (
        "actor_type",
        QueryValue::Choice(&["user", "operator", "service", "unknown"]),
        "Only records whose actor is of this type.",
    ),
    (
        "actor_id",
        QueryValue::Id,
        "Only changes made by this user.",
    ),
    ("user_id", QueryValue::Id, "Only records about this user."),
    (
        "token_id",
        QueryValue::Id,
        "Only records about this personal access token.",
    ),
    (
        "session_id",
        QueryValue::Id,
        "Only records about this session.",
    ),
    (
        "command_id",
        QueryValue::Id,
        "Only records about this slash command.",
    ),
    (
        "ip",
        QueryValue::Text,
        "Only records of requests from this client address (IPv4 or IPv6; compared in \
         canonical form).",
    ),
    (
        "request_id",
        QueryValue::Text,
        "Only records of this request (its X-Request-ID).",
    ),
    (
        "credential_hmac",
        QueryValue::Text,
        "Only records naming this credential: ComputeAuditHash's answer (64 hex characters).",
    ),
    (
        "page_size",
        QueryValue::Integer,
        "Records per page: absent or 0 is 60, capped at 200.",
    ),
    (
        "page_token",
        QueryValue::Text,
        "The previous page's next_page_token, with the same filters and order.",
    ),
    (
        "oldest_first",
        QueryValue::Boolean,
        "Oldest record first (default: newest first).",
    ),
];

/// What serves one RPC over REST: its handler (on whatever verb the proto gives) and what
/// the OpenAPI document says of it.
pub(crate) struct RpcHandler {
    rpc: &'static str,
    handler: Box<dyn Fn(MethodFilter) -> MethodRouter<RestState> + Send + Sync>,
    doc: OperationDoc,
}

fn serve<H, T>(rpc: &'static str, handler: H, doc: OperationDoc) -> RpcHandler
where
    H: Handler<T, RestState>,
    T: 'static,
{
    RpcHandler {
        rpc,
        handler: Box::new(move |verb| on(verb, handler.clone())),
        doc,
    }
}

/// Our own query parameters of the token reads (`include`, the first, on all four; the
/// filters on the two lists). Not Mattermost's: without them the answer is Mattermost's.
const TOKEN_LIST_QUERY: &[(&str, QueryValue, &str)] = &[
    (
        "include",
        QueryValue::Choice(&["last_use"]),
        "token-service addition: `last_use` adds `last_used_at`, `last_user_agent` and \
         `recent_addresses` to each token object. Without it the body is Mattermost's, byte \
         for byte.",
    ),
    (
        "last_used_before",
        QueryValue::Integer,
        "token-service addition: only tokens last used before this Unix time in milliseconds \
         (never-used tokens do not match).",
    ),
    (
        "last_used_after",
        QueryValue::Integer,
        "token-service addition: only tokens last used at or after this Unix time in \
         milliseconds (never-used tokens do not match).",
    ),
    (
        "expires_before",
        QueryValue::Integer,
        "token-service addition: only tokens expiring before this Unix time in milliseconds \
         (tokens that never expire do not match).",
    ),
    (
        "state",
        QueryValue::Choice(&["active", "disabled", "expired"]),
        "token-service addition: only tokens in this state: active (enabled, not expired), \
         disabled, or expired (0 < expires_at <= now).",
    ),
    (
        "page_token",
        QueryValue::Text,
        "token-service addition: keyset paging. Present (empty for the first page): the page \
         after this position, `per_page` tokens (at least 1), and the next page's token in \
         the `X-Next-Page-Token` header (empty on the last page). Pass it unchanged, with the \
         same filters; not together with `page` (400). Its cost does not grow with the depth, \
         unlike `page`'s.",
    ),
];

/// Every RPC the shim serves, by name: its handler and its OpenAPI description. The order
/// is the OpenAPI document's.
pub(crate) fn route_table() -> Vec<RpcHandler> {
    use Reply::{List, One};
    let doc = OperationDoc::new;
    vec![
        serve(
            "CreateUserAccessToken",
            h::create_user_access_token,
            doc(200, Some("NewUserAccessToken"), One("CreatedUserAccessToken")),
        ),
        serve(
            "GetUserAccessTokensForUser",
            h::get_user_access_tokens_for_user,
            doc(200, None, List("UserAccessToken"))
                .paged()
                .keyset()
                .with_text_query(TOKEN_LIST_QUERY),
        ),
        serve(
            "GetUserAccessTokens",
            h::get_user_access_tokens,
            doc(200, None, List("UserAccessToken"))
                .paged()
                .keyset()
                .with_text_query(TOKEN_LIST_QUERY),
        ),
        serve(
            "SearchUserAccessTokens",
            h::search_user_access_tokens,
            doc(200, Some("SearchTerm"), List("UserAccessToken"))
                .with_text_query(&TOKEN_LIST_QUERY[..1]),
        ),
        serve(
            "GetUserAccessToken",
            h::get_user_access_token,
            doc(200, None, One("UserAccessToken")).with_text_query(&TOKEN_LIST_QUERY[..1]),
        ),
        serve(
            "RevokeUserAccessToken",
            h::revoke_user_access_token,
            doc(200, Some("TokenIdBody"), One("StatusOK")),
        ),
        serve(
            "DisableUserAccessToken",
            h::disable_user_access_token,
            doc(200, Some("TokenIdBody"), One("StatusOK")),
        ),
        serve(
            "EnableUserAccessToken",
            h::enable_user_access_token,
            doc(200, Some("TokenIdBody"), One("StatusOK")),
        ),
        serve(
            "RotateUserAccessToken",
            h::rotate_user_access_token,
            doc(200, Some("RotateUserAccessToken"), One("CreatedUserAccessToken")),
        ),
        serve(
            "CountNonCompliantUserAccessTokens",
            h::count_non_compliant_user_access_tokens,
            doc(200, None, One("NonCompliantCount")),
        ),
        serve(
            "RevokeNonCompliantUserAccessTokens",
            h::revoke_non_compliant_user_access_tokens,
            doc(200, None, One("NonCompliantCount")),
        ),
        serve(
            "GetSessions",
            h::get_sessions,
            doc(200, None, List("Session")),
        ),
        serve(
            "CreateSession",
            h::create_session,
            doc(201, Some("NewSession"), One("Session")),
        ),
        serve(
            "RevokeSession",
            h::revoke_session,
            doc(200, Some("SessionIdBody"), One("StatusOK")),
        ),
        serve(
            "RevokeAllSessions",
            h::revoke_all_sessions,
            doc(200, None, One("StatusOK")),
        ),
        serve(
            "RevokeSessionsFromAllUsers",
            h::revoke_sessions_from_all_users,
            doc(200, None, One("StatusOK")),
        ),
        serve(
            "RegenCommandToken",
            h::regen_command_token,
            doc(200, None, One("CommandToken")),
        ),
        serve(
            "CreateCommand",
            h::create_command,
            doc(201, Some("NewCommand"), One("Command")),
        ),
        serve(
            "VerifyCommandToken",
            h::verify_command_token,
            doc(200, Some("CommandToken"), One("CommandTokenCheck")),
        ),
        serve(
            "AddTeamMember",
            h::add_team_member,
            doc(201, Some("NewTeamMember"), One("TeamMember")),
        ),
        serve(
            "GetWebrtcToken",
            h::get_webrtc_token,
            doc(200, None, One("WebrtcToken")),
        ),
        serve("GetMe", h::get_me, doc(200, None, One("User"))),
        serve("GetUser", h::get_user, doc(200, None, One("User"))),
        serve(
            "GetUserByUsername",
            h::get_user_by_username,
            doc(200, None, One("User")),
        ),
        serve(
            "Logout",
            h::logout,
            doc(200, None, One("StatusOK")).anonymous(),
        ),
        serve(
            "ReportLeakedTokens",
            h::report_leaked_tokens,
            doc(202, Some("LeakReport"), One("LeakReceipt")).anonymous(),
        ),
        serve(
            "IntrospectToken",
            h::introspect_token,
            doc(200, Some("IntrospectionRequest"), One("Introspection")),
        ),
        serve(
            "WatchRevocations",
            h::watch_revocations,
            doc(200, None, List("RevocationEvent")).with_query(&[(
                "after_event_id",
                "Return the events after this id (at most 1000); 0 or absent: from the oldest kept.",
            )]),
        ),
        serve(
            "WatchEvents",
            h::watch_events,
            doc(200, None, List("LifecycleRecord"))
                .with_query(&[(
                    "after_event_id",
                    "Return the records after this id (at most 1000); 0 or absent: from the oldest kept.",
                )])
                .with_text_query(&[
                    (
                        "actions",
                        QueryValue::List,
                        "Only records of these actions (`actions=a&actions=b` or `actions=a,b`), \
                         e.g. access_token.created; absent: every action.",
                    ),
                    (
                        "user_id",
                        QueryValue::Id,
                        "Only records about this user (the subject, not the actor).",
                    ),
                ]),
        ),
        serve(
            "CreateUser",
            h::create_user,
            doc(201, Some("NewUser"), One("User")),
        ),
        serve(
            "UpdateUserRoles",
            h::update_user_roles,
            doc(200, Some("RolesBody"), One("StatusOK")),
        ),
        serve(
            "UpdateUserActive",
            h::update_user_active,
            doc(200, Some("ActiveBody"), One("StatusOK")),
        ),
        serve(
            "CreateWebhook",
            h::create_webhook,
            doc(201, Some("NewWebhook"), One("CreatedWebhook")),
        ),
        serve(
            "ListWebhooks",
            h::list_webhooks,
            doc(200, None, List("Webhook")),
        ),
        serve("GetWebhook", h::get_webhook, doc(200, None, One("Webhook"))),
        serve(
            "UpdateWebhook",
            h::update_webhook,
            doc(200, Some("WebhookChange"), One("Webhook")),
        ),
        serve(
            "DeleteWebhook",
            h::delete_webhook,
            doc(200, None, One("StatusOK")),
        ),
        serve(
            "RotateWebhookSecret",
            h::rotate_webhook_secret,
            doc(200, Some("WebhookRotation"), One("CreatedWebhook")),
        ),
        serve(
            "TestWebhook",
            h::test_webhook,
            doc(200, None, One("WebhookTest")),
        ),
        serve(
            "ListAuditRecords",
            h::list_audit_records,
            doc(200, None, One("AuditRecordPage")).with_text_query(AUDIT_QUERY),
        ),
        serve(
            "IdentifyToken",
            h::identify_token,
            doc(200, Some("IdentifyTokenRequest"), One("TokenTrail")),
        ),
        serve(
            "ComputeAuditHash",
            h::compute_audit_hash,
            doc(200, Some("AuditHashRequest"), One("AuditHash")),
        ),
        serve(
            "VerifyAuditLog",
            h::verify_audit_log,
            doc(200, Some("AuditVerifyRequest"), One("AuditVerification")),
        ),
    ]
}

/// One served route: an RPC's handler on one of its bindings.
pub(crate) struct Route {
    pub(crate) rpc: &'static str,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) handler: MethodRouter<RestState>,
    pub(crate) doc: OperationDoc,
}

/// The served routes: [`route_table`] on the proto's bindings, in the table's order (each
/// RPC's bindings in the proto's order).
pub(crate) fn routes() -> Result<Vec<Route>, String> {
    join(route_table(), http_bindings())
}

/// Puts each handler on its RPC's bindings; every binding must find its handler and every
/// handler at least one binding.
fn join(table: Vec<RpcHandler>, bindings: &[HttpBinding]) -> Result<Vec<Route>, String> {
    let mut problems = Vec::new();
    for binding in bindings {
        if !table.iter().any(|h| h.rpc == binding.rpc) {
            problems.push(format!(
                "{}: its google.api.http rule ({} {}) has no handler in rest::routes::route_table",
                binding.rpc, binding.method, binding.path
            ));
        }
        let same = bindings
            .iter()
            .filter(|b| b.method == binding.method && b.path == binding.path);
        if same.count() > 1 {
            problems.push(format!(
                "{}: {} {} is bound to more than one RPC",
                binding.rpc, binding.method, binding.path
            ));
        }
    }
    let mut routes = Vec::new();
    for (i, entry) in table.iter().enumerate() {
        if table[..i].iter().any(|earlier| earlier.rpc == entry.rpc) {
            problems.push(format!("{}: listed twice in route_table", entry.rpc));
        }
        let mut bound = false;
        for binding in bindings.iter().filter(|b| b.rpc == entry.rpc) {
            bound = true;
            match MethodFilter::try_from(binding.method.clone()) {
                Ok(verb) => routes.push(Route {
                    rpc: entry.rpc,
                    method: binding.method.clone(),
                    path: binding.path.clone(),
                    handler: (entry.handler)(verb),
                    doc: entry.doc,
                }),
                Err(e) => problems.push(format!("{}: {e}", entry.rpc)),
            }
        }
        if !bound {
            problems.push(format!(
                "{}: has a handler in route_table but no google.api.http rule in the proto",
                entry.rpc
            ));
        }
    }
    if problems.is_empty() {
        Ok(routes)
    } else {
        Err(problems.join("; "))
    }
}

/// The (verb, path) pairs the shim serves, for the tests. The OpenAPI document's own route
/// is not a `TokenService` operation and is not listed.
pub fn served_routes() -> Vec<(String, String)> {
    routes()
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|r| (r.method.to_string(), r.path))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::google_api::CustomHttpPattern;

    #[test]
    fn every_http_rule_of_the_proto_has_a_handler_and_every_handler_a_rule() {
        let routes = routes().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(routes.len(), http_bindings().len());
        assert!(routes.len() >= 24, "{}", routes.len());
    }

    #[test]
    fn the_proto_binds_every_rpc_under_api_v4() {
        for b in http_bindings() {
            assert!(b.path.starts_with("/api/v4/"), "{b:?}");
        }
        let get_me = http_bindings().iter().find(|b| b.rpc == "GetMe").unwrap();
        assert_eq!(
            (&get_me.method, get_me.path.as_str()),
            (&Method::GET, "/api/v4/users/me")
        );
    }

    fn rule(pattern: Pattern, additional: Vec<HttpRule>) -> HttpRule {
        HttpRule {
            pattern: Some(pattern),
            additional_bindings: additional,
            ..HttpRule::default()
        }
    }

    fn descriptor(methods: Vec<(&str, Option<HttpRule>)>) -> Vec<u8> {
        RawFileSet {
            file: vec![RawFile {
                package: Some(PACKAGE.to_owned()),
                service: vec![RawService {
                    method: methods
                        .into_iter()
                        .map(|(name, http)| RawMethod {
                            name: Some(name.to_owned()),
                            options: Some(RawMethodOptions { http }),
                        })
                        .collect(),
                }],
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn additional_bindings_and_custom_verbs_are_bindings_too() {
        let set = descriptor(vec![
            (
                "A",
                Some(rule(
                    Pattern::Get("/api/v4/a".into()),
                    vec![
                        rule(Pattern::Post("/api/v4/a/search".into()), vec![]),
                        rule(
                            Pattern::Custom(CustomHttpPattern {
                                kind: "purge".into(),
                                path: "/api/v4/a".into(),
                            }),
                            vec![],
                        ),
                    ],
                )),
            ),
            ("NotServed", None),
        ]);
        let found: Vec<(String, String, String)> = decode_http_bindings(&set)
            .unwrap()
            .into_iter()
            .map(|b| (b.rpc, b.method.to_string(), b.path))
            .collect();
        let expected = [
            ("A", "GET", "/api/v4/a"),
            ("A", "POST", "/api/v4/a/search"),
            ("A", "PURGE", "/api/v4/a"),
        ]
        .map(|(r, m, p)| (r.to_owned(), m.to_owned(), p.to_owned()));
        assert_eq!(found, expected);
    }

    fn binding(rpc: &str, method: Method, path: &str) -> HttpBinding {
        HttpBinding {
            rpc: rpc.to_owned(),
            method,
            path: path.to_owned(),
        }
    }

    async fn answer() {}

    fn handler(rpc: &'static str) -> RpcHandler {
        serve(
            rpc,
            answer,
            OperationDoc::new(200, None, Reply::One("StatusOK")),
        )
    }

    fn join_error(table: Vec<RpcHandler>, bindings: &[HttpBinding]) -> String {
        match join(table, bindings) {
            Ok(routes) => panic!("joined into {} routes", routes.len()),
            Err(e) => e,
        }
    }

    #[test]
    fn a_rule_without_a_handler_or_a_handler_without_a_rule_is_refused() {
        let bindings = [
            binding("A", Method::GET, "/api/v4/a"),
            binding("A", Method::POST, "/api/v4/a"),
            binding("B", Method::GET, "/api/v4/b"),
        ];
        let routes = join(vec![handler("A"), handler("B")], &bindings).unwrap();
        let served: Vec<_> = routes
            .iter()
            .map(|r| (r.rpc, r.method.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(
            served,
            [
                ("A", "GET", "/api/v4/a"),
                ("A", "POST", "/api/v4/a"),
                ("B", "GET", "/api/v4/b")
            ]
        );

        let err = join_error(vec![handler("A")], &bindings);
        assert!(
            err.contains("B: its google.api.http rule (GET /api/v4/b) has no handler"),
            "{err}"
        );
        let err = join_error(vec![handler("A"), handler("B"), handler("C")], &bindings);
        assert!(
            err.contains("C: has a handler in route_table but no google.api.http rule"),
            "{err}"
        );
        let err = join_error(vec![handler("A"), handler("A"), handler("B")], &bindings);
        assert!(err.contains("A: listed twice"), "{err}");
        let clash = [
            binding("A", Method::GET, "/api/v4/a"),
            binding("B", Method::GET, "/api/v4/a"),
        ];
        let err = join_error(vec![handler("A"), handler("B")], &clash);
        assert!(
            err.contains("GET /api/v4/a is bound to more than one RPC"),
            "{err}"
        );
        let odd = [binding(
            "A",
            Method::from_bytes(b"PURGE").unwrap(),
            "/api/v4/a",
        )];
        let err = join_error(vec![handler("A")], &odd);
        assert!(err.contains("A: no `MethodFilter` for `PURGE`"), "{err}");
    }
}
