//! The OpenAPI 3.1 description of the shim, served at `GET /api/v4/openapi.json`.
//!
//! It is built from the same routes as the router (the route table on the proto's http
//! rules), so it cannot list a route the shim does not serve (or miss one it does). Each operation's `operationId` is its `TokenService`
//! RPC and its description is that RPC's comment in the proto, read from the compiled
//! descriptor; the JSON schemas below describe the Mattermost shapes of `json.rs`.

use std::sync::OnceLock;

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use prost::Message;
use serde_json::{Map, Value, json};

use crate::domain::permissions::Scope;
use crate::pb::FILE_DESCRIPTOR_SET;

/// Where the document is served.
pub(crate) const PATH: &str = "/api/v4/openapi.json";

/// What one RPC's request and success response look like (its route names the RPC, the
/// operationId).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OperationDoc {
    /// The success status.
    pub(crate) status: u16,
    /// The component schema of the JSON request body, if the route reads one.
    pub(crate) body: Option<&'static str>,
    /// The success response.
    pub(crate) reply: Reply,
    /// Takes Mattermost's `page` / `per_page` query parameters.
    pub(crate) paged: bool,
    /// Answers the next page token in `X-Next-Page-Token` when asked (`page_token`).
    pub(crate) keyset: bool,
    /// Other integer query parameters: (name, description).
    pub(crate) query: &'static [(&'static str, &'static str)],
    /// Query parameters other than the integer positions above: (name, what they hold,
    /// description).
    pub(crate) text_query: &'static [(&'static str, QueryValue, &'static str)],
    /// Also served without a credential (Mattermost's `APIHandler`, as for logout).
    pub(crate) anonymous: bool,
}

/// What a query parameter holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum QueryValue {
    /// A 26-character id.
    Id,
    /// Names, the parameter repeated or its values comma-separated.
    List,
    /// An integer.
    Integer,
    /// Text (an address, a request id, an opaque token, a hex digest).
    Text,
    /// true or false.
    Boolean,
    /// One of these words.
    Choice(&'static [&'static str]),
}

/// A success response body: one object, or a JSON array of them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reply {
    One(&'static str),
    List(&'static str),
}

impl OperationDoc {
    pub(crate) const fn new(status: u16, body: Option<&'static str>, reply: Reply) -> Self {
        Self {
            status,
            body,
            reply,
            paged: false,
            keyset: false,
            query: &[],
            text_query: &[],
            anonymous: false,
        }
    }

    pub(crate) const fn with_query(
        mut self,
        query: &'static [(&'static str, &'static str)],
    ) -> Self {
        self.query = query;
        self
    }

    pub(crate) const fn with_text_query(
        mut self,
        query: &'static [(&'static str, QueryValue, &'static str)],
    ) -> Self {
        self.text_query = query;
        self
    }

    pub(crate) const fn anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }

    pub(crate) const fn paged(mut self) -> Self {
        self.paged = true;
        self
    }

    pub(crate) const fn keyset(mut self) -> Self {
        self.keyset = true;
        self
    }
}

/// `GET /api/v4/openapi.json` (no authentication: it describes, it does not reveal).
pub(crate) async fn serve() -> Response {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| document().to_string());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.clone(),
    )
        .into_response()
}

/// The whole document.
pub(crate) fn document() -> Value {
    let comments = rpc_comments();
    let mut paths = Map::new();
    let routes = super::routes::routes()
        .unwrap_or_else(|e| panic!("the REST route table disagrees with the proto: {e}"));
    for route in routes {
        let doc = route.doc;
        let description = comments
            .iter()
            .find(|(rpc, _)| rpc == route.rpc)
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        let summary = description
            .split_terminator(['\n'])
            .next()
            .unwrap_or(route.rpc)
            .trim_end_matches('.')
            .to_owned();
        let mut operation = json!({
            "operationId": route.rpc,
            "summary": summary,
            "description": description,
            "tags": [tag(&route.path)],
            "parameters": parameters(&route.path, &doc),
            "responses": responses(&doc),
        });
        if doc.anonymous {
            operation["security"] = json!([{}, {"bearerAuth": []}, {"tokenCookie": []}]);
        }
        if let Some(schema) = doc.body {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": schema_ref(schema)}},
            });
        }
        let entry = paths.entry(route.path).or_insert_with(|| json!({}));
        entry[route.method.as_str().to_ascii_lowercase()] = operation;
    }
    paths.insert(
        PATH.to_owned(),
        json!({"get": {
            "operationId": "GetOpenApiDocument",
            "summary": "This document",
            "tags": ["meta"],
            "security": [],
            "responses": {"200": {
                "description": "The OpenAPI 3.1 description of the /api/v4 shim.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }},
        }}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "token-service /api/v4 shim",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Mattermost's /api/v4 personal access token, session, slash-command \
                token and WebRTC operations, with Mattermost's JSON shapes and AppError bodies. \
                Each operation mirrors the TokenService RPC named by its operationId \
                (proto/token_service/v1/token_service.proto). Times are Unix milliseconds; \
                roles are space-separated. \
                Leniencies kept on purpose, as Mattermost's Go server has them (the schemas \
                say so, so a schema-driven fuzzer expects them): `page` and `per_page` take \
                any text, and one that is not a non-negative integer (`null`, `abc`, `-1`) \
                means the default; a search `term` has no length limit (a term longer than \
                any id or username matches nothing); JSON bodies ignore unknown keys and \
                `null` values, match keys case-insensitively and stop reading after the \
                first JSON value. A request whose body has not fully arrived within \
                request_timeout_ms is answered 408 and the connection closed.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"tokenCookie": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A session token or a personal access token. \
                        `Authorization: Token <token>` works as well. Responses to a request \
                        authenticated with a personal access token that expires carry \
                        `Token-Expiration` (RFC 3339, UTC, milliseconds).",
                },
                "tokenCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "MMAUTHTOKEN",
                    "description": "Session cookie; writes then need X-CSRF-Token.",
                },
            },
            "schemas": schemas(),
        },
    })
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn tag(path: &str) -> &'static str {
    if path.contains("/tokens/webhooks") {
        "webhooks"
    } else if path.contains("/audit_records") {
        "audit"
    } else if path.contains("/tokens") {
        "user access tokens"
    } else if path.contains("/sessions") {
        "sessions"
    } else if path.contains("/commands") || path.contains("/teams") {
        "commands"
    } else if path.contains("/webrtc") {
        "webrtc"
    } else {
        "users"
    }
}

fn parameters(path: &str, doc: &OperationDoc) -> Value {
    let mut out = Vec::new();
    for segment in path.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let (description, pattern) = if name == "user_id" {
                (
                    "A 26-character Mattermost id, or `me` for the caller.",
                    "^([A-Za-z0-9]{26}|me)$",
                )
            } else if name == "username" {
                (
                    "A username (matched case-insensitively): 1 to 64 letters, digits, \
                     '.', '-' or '_', starting with a letter.",
                    "^[A-Za-z][A-Za-z0-9._-]{0,63}$",
                )
            } else {
                ("A 26-character Mattermost id.", ID_PATTERN)
            };
            out.push(json!({
                "name": name,
                "in": "path",
                "required": true,
                "description": description,
                "schema": {"type": "string", "pattern": pattern},
            }));
        }
    }
    for (name, description) in doc.query {
        out.push(json!({
            "name": name, "in": "query", "required": false,
            "description": description,
            "schema": {"type": "integer", "format": "int64", "minimum": 0},
        }));
    }
    for (name, value, description) in doc.text_query {
        let parameter = match value {
            QueryValue::Id => json!({
                "name": name, "in": "query", "required": false,
                "description": description,
                "schema": {"type": "string", "pattern": ID_PATTERN},
            }),
            QueryValue::List => json!({
                "name": name, "in": "query", "required": false,
                "description": description,
                "style": "form", "explode": true,
                "schema": {"type": "array", "items": {"type": "string"}},
            }),
            QueryValue::Integer => json!({
                "name": name, "in": "query", "required": false,
                "description": description,
                "schema": {"type": "integer", "format": "int64"},
            }),
            QueryValue::Text => json!({
                "name": name, "in": "query", "required": false,
                "description": description,
                "schema": {"type": "string"},
            }),
            QueryValue::Boolean => json!({
                "name": name, "in": "query", "required": false,
                "description": description,
                "schema": {"type": "boolean"},
            }),
            QueryValue::Choice(words) => json!({
                "name": name, "in": "query", "required": false,
                "description": description,
                "schema": {"type": "string", "enum": words},
            }),
        };
        out.push(parameter);
    }
    if doc.paged {
        out.push(json!({
            "name": "page", "in": "query", "required": false,
            "description": "Zero-based page number; unparsable or negative values (`null`, \
                `abc`, `-1`) mean 0, as in Mattermost.",
            "schema": {"anyOf": [{"type": "integer"}, {"type": "string"}], "default": 0},
        }));
        out.push(json!({
            "name": "per_page", "in": "query", "required": false,
            "description": "Page size, capped at 200; unparsable or negative values \
                (`null`, `abc`, `-1`) mean 60, as in Mattermost.",
            "schema": {"anyOf": [{"type": "integer"}, {"type": "string"}], "default": 60},
        }));
    }
    Value::Array(out)
}

fn responses(doc: &OperationDoc) -> Value {
    let success = match doc.reply {
        Reply::One(name) => schema_ref(name),
        Reply::List(name) => json!({"type": "array", "items": schema_ref(name)}),
    };
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": schema_ref("AppError")}},
        })
    };
    let mut out = json!({
        doc.status.to_string(): {
            "description": "Success.",
            "content": {"application/json": {"schema": success}},
        },
        "400": error("Invalid parameter or body; `id` names the rule."),
        "401": error("Missing, unknown, expired or revoked token (api.context.session_expired.app_error)."),
        "403": error("The caller lacks a permission; the message names it."),
        "404": error("Not found (or hidden, as Mattermost does), or an unknown route."),
        "429": {
            "description": "Too many requests from the caller's address \
                (token_service.rate_limited): failed credential checks past \
                `[guess_throttle]`, which then refuses every credential it presents for the \
                cool-down (and, for leaked-token reports, reports past `[leak_reports]`).",
            "headers": {"Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 1},
            }},
            "content": {"application/json": {"schema": schema_ref("AppError")}},
        },
        "503": error("The database is unreachable."),
        "default": error("Any other failure, as a Mattermost AppError."),
    });
    if doc.body.is_some() {
        out["413"] = error("The body exceeds max_request_body_bytes.");
        out["408"] = error(
            "The body had not fully arrived within request_timeout_ms \
             (token_service.request.body_timeout); the connection is closed.",
        );
    }
    if doc.keyset {
        out[doc.status.to_string()]["headers"] = json!({"X-Next-Page-Token": {
            "description": "token-service addition, only when the request had `page_token`: \
                the next page's `page_token`; empty on the last page. The body is \
                Mattermost's either way.",
            "schema": {"type": "string"},
        }});
    }
    out
}

/// The leading comment of every `TokenService` RPC, from the descriptor's source info.
fn rpc_comments() -> Vec<(String, String)> {
    let Ok(set) = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for file in set
        .file
        .iter()
        .filter(|f| f.package() == "token_service.v1")
    {
        let locations = file
            .source_code_info
            .as_ref()
            .map(|info| info.location.as_slice())
            .unwrap_or_default();
        for (s, service) in file.service.iter().enumerate() {
            for (m, method) in service.method.iter().enumerate() {
                // Path: FileDescriptorProto.service (6) [s], ServiceDescriptorProto.method (2) [m].
                let path = [6, s as i32, 2, m as i32];
                let comment = locations
                    .iter()
                    .find(|l| l.path == path)
                    .map(|l| clean_comment(l.leading_comments()))
                    .unwrap_or_default();
                out.push((method.name().to_owned(), comment));
            }
        }
    }
    out
}

/// Removes the one space protoc keeps after `//` on each line.
fn clean_comment(raw: &str) -> String {
    raw.lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// Ids as the service accepts them (Mattermost's ids are 26 lower-case base32 characters).
const ID_PATTERN: &str = "^[A-Za-z0-9]{26}$";

fn id_field(description: &str) -> Value {
    json!({"type": "string", "pattern": ID_PATTERN, "description": description})
}

fn text(min: usize, max: usize, description: &str) -> Value {
    json!({"type": "string", "minLength": min, "maxLength": max, "description": description})
}

/// A request body whose `required` fields must be present.
fn body_requiring(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn id(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn millis(description: &str) -> Value {
    json!({"type": "integer", "format": "int64", "description": description})
}

fn boolean() -> Value {
    json!({"type": "boolean"})
}

fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}

/// A lifecycle record: `LifecycleRecord::to_json` (absent subjects and origin left out).
fn lifecycle_record() -> Value {
    object(
        json!({
            "id": {"type": "integer", "format": "int64", "description": "Position in the log, in commit order; pass the last one seen as after_event_id."},
            "time": {"type": "string", "format": "date-time", "description": "When the change was made (RFC 3339, UTC, milliseconds)."},
            "create_at": millis("The same time in Unix milliseconds."),
            "action": {"type": "string", "description": "What happened, e.g. access_token.created (the README's lifecycle log table lists every action)."},
            "actor": object(json!({
                "type": {"type": "string", "enum": ["user", "operator", "service", "unknown"], "description": "A user, the operator (admin CLI, local socket), the service's own jobs; unknown for records moved from earlier versions."},
                "id": id_field("The acting user (type user only)."),
            }), &["id"]),
            "user_id": id_field("The user the record is about."),
            "token_id": id_field("The personal access token the record is about."),
            "session_id": id_field("The session the record is about."),
            "command_id": id_field("The slash command the record is about."),
            "team_id": id_field("The team the record is about."),
            "webhook_id": {"type": "string", "description": "The webhook endpoint the record is about."},
            "ip": {"type": "string", "description": "The client's address, when a request caused the change."},
            "user_agent": {"type": "string", "maxLength": 256, "description": "The client's User-Agent, when a request caused the change."},
            "request_id": {"type": "string", "description": "The request's X-Request-ID."},
            "detail": {"type": "object", "additionalProperties": {}, "description": "A small JSON object with details of the change; never a secret."},
            "credential_hmac": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "HMAC-SHA256 of the credential the record names, under the audit key."},
            "revokes": object(json!({
                "kind": {"type": "string", "enum": ["session", "access_token", "user", "all"]},
                "id": {"type": "string", "description": "Session, token or user id; empty for all."},
            }), &[]),
        }),
        &[
            "user_id",
            "token_id",
            "session_id",
            "command_id",
            "team_id",
            "webhook_id",
            "ip",
            "user_agent",
            "request_id",
            "credential_hmac",
            "revokes",
        ],
    )
}

/// An object schema whose listed properties are all required unless named in `optional`.
fn object(properties: Value, optional: &[&str]) -> Value {
    let required: Vec<&String> = properties
        .as_object()
        .map(|p| {
            p.keys()
                .filter(|k| !optional.contains(&k.as_str()))
                .collect()
        })
        .unwrap_or_default();
    json!({"type": "object", "properties": properties, "required": required})
}

/// A request body: every field optional, as Mattermost's decoder treats them.
fn body(properties: Value) -> Value {
    json!({"type": "object", "properties": properties})
}

/// A list of token scopes (the domain's vocabulary), described.
fn scopes_schema(description: &str) -> Value {
    let ids: Vec<&str> = Scope::ALL.iter().map(|s| s.id()).collect();
    json!({
        "type": "array",
        "uniqueItems": true,
        "description": description,
        "items": {"type": "string", "enum": ids},
    })
}

fn schemas() -> Value {
    let token_fields = json!({
        "id": id("Token id (not the secret)."),
        "user_id": id("Owner."),
        "description": string(),
        "is_active": json!({"type": "boolean", "description": "False while disabled."}),
        "expires_at": millis("Unix milliseconds; 0 = never."),
        "bound_cidrs": {
            "type": "array",
            "description": "token-service addition: the client address blocks the token may \
                be used from, canonical (10.0.0.0/8, ::1/128). Absent when the token is \
                unbound (usable from anywhere, as in Mattermost).",
            "items": {"type": "string"},
        },
        "scopes": scopes_schema(
            "token-service addition: the scopes that narrow what the token may do (read, \
             tokens, introspect, commands). Absent when the token is unscoped (it may do all \
             its owner may, as in Mattermost).",
        ),
    });
    let mut created_fields = token_fields.clone();
    created_fields["token"] = json!({
        "type": "string",
        "description": "The secret. Returned by create only, never again."
    });
    // Ours, only with `?include=last_use`.
    let mut token_fields = token_fields;
    token_fields["last_used_at"] = millis(
        "token-service addition (with ?include=last_use): last use, Unix milliseconds; \
         0 = never. Written in batches, up to last_use.flush_interval behind.",
    );
    token_fields["last_user_agent"] = json!({
        "type": "string",
        "description": "token-service addition (with ?include=last_use): the User-Agent of \
            the last use, at most 255 bytes.",
    });
    token_fields["recent_addresses"] = json!({
        "type": "array",
        "description": "token-service addition (with ?include=last_use): the most recent \
            distinct client addresses (at most 5), newest first.",
        "items": object(json!({
            "ip": string(),
            "last_seen_at": millis("Unix milliseconds."),
        }), &[]),
    });
    let mut all = json!({
        "AppError": object(json!({
            "id": id("Mattermost's error id, e.g. api.context.permissions.app_error."),
            "message": string(),
            "detailed_error": string(),
            "request_id": id("Equals the X-Request-ID response header."),
            "status_code": {"type": "integer"},
        }), &[]),
        "StatusOK": object(json!({"status": {"type": "string", "enum": ["OK"]}}), &[]),
        "UserAccessToken": object(
            token_fields,
            &["last_used_at", "last_user_agent", "recent_addresses", "bound_cidrs", "scopes"],
        ),
        "NonCompliantCount": object(json!({
            "count": {"type": "integer", "format": "int64", "minimum": 0, "description": "Tokens breaking the maximum-lifetime policy (count), or revoked (revoke)."},
        }), &["count"]),
        "CreatedUserAccessToken": object(created_fields, &["bound_cidrs", "scopes"]),
        "NewUserAccessToken": body_requiring(json!({
            "description": text(1, 255, "Required, at most 255 bytes."),
            "expires_at": {
                "type": "integer", "format": "int64", "minimum": 0,
                "description": "Unix milliseconds in the future; absent or 0 = never (subject \
                    to maximum_personal_access_token_lifetime_days).",
            },
            "bound_cidrs": {
                "type": "array", "maxItems": 16,
                "description": "token-service's own (Vault's token_bound_cidrs): the client \
                    address blocks the token may be used from, each an IPv4 or IPv6 CIDR \
                    block (10.0.0.0/8, ::1/128) or single address with no bits set beyond the \
                    prefix. From any other address the token answers 401 like any bad token. \
                    Absent, null or empty: usable from anywhere.",
                "items": {"type": "string", "maxLength": 64},
            },
            "scopes": scopes_schema(
                "token-service's own: scopes that narrow what the token may do; it may then \
                 use a permission only if its owner holds it and one of its scopes lists it: \
                 read (read-only operations), tokens (the token and session operations), \
                 introspect (only token checks), commands (slash commands). A token created \
                 by a scoped token gets the creator's scopes when none are given and may not \
                 have wider ones. Absent, null or empty: unscoped, as in Mattermost.",
            ),
        }), &["description"]),
        "SearchTerm": body_requiring(json!({
            "term": {
                "type": "string", "minLength": 1,
                "description": "A token id, user id or username, matched exactly. Any length \
                    is accepted, as in Mattermost; a term longer than any id or username \
                    matches nothing.",
            },
        }), &["term"]),
        "TokenIdBody": body_requiring(json!({"token_id": id_field("The token to change.")}), &["token_id"]),
        "RotateUserAccessToken": body_requiring(json!({
            "token_id": id_field("The token to rotate."),
            "expires_at": {
                "type": "integer", "format": "int64", "minimum": 0,
                "description": "The new expiry, Unix milliseconds in the future; absent or 0 = \
                    never (subject to maximum_personal_access_token_lifetime_days).",
            },
            "grace_period": {
                "type": "integer", "format": "int64", "minimum": 0,
                "description": "token-service's own: milliseconds the old secret keeps \
                    working; absent or 0 = none (Mattermost's behaviour); at most \
                    access_tokens.max_rotation_grace_period.",
            },
        }), &["token_id"]),
        "Session": object(json!({
            "id": id("Session id."),
            "token": json!({"type": "string", "description": "Empty, except in the answer to CreateSession."}),
            "create_at": millis("Unix milliseconds."),
            "expires_at": millis("Unix milliseconds; 0 = never."),
            "last_activity_at": millis("Unix milliseconds."),
            "user_id": id("Owner."),
            "device_id": string(),
            "roles": json!({"type": "string", "description": "Space-separated."}),
            "is_oauth": boolean(),
            "expired_notify": boolean(),
            "props": string_map(),
            "team_members": {"type": "array", "items": schema_ref("TeamMember")},
            "local": boolean(),
        }), &[]),
        "NewSession": body(json!({
            "lifetime_ms": {
                "type": "integer", "format": "int64", "minimum": 0,
                "description": "Absent: the configured session length; 0: never expires.",
            },
            "device_id": text(0, 512, "Device id, as Mattermost's mobile apps send it."),
            "props": {
                "type": "object",
                "maxProperties": 50,
                "propertyNames": {"minLength": 1, "maxLength": 64, "not": {"enum": ["type", "user_access_token_id"]}},
                "additionalProperties": {"type": "string", "maxLength": 1024},
            },
        })),
        "SessionIdBody": body_requiring(json!({"session_id": id_field("The session to revoke.")}), &["session_id"]),
        "TeamMember": object(json!({
            "team_id": id("Team."),
            "user_id": id("Member."),
            "roles": json!({"type": "string", "description": "Space-separated team roles."}),
            "delete_at": millis("0 while a member."),
            "scheme_guest": boolean(),
            "scheme_user": boolean(),
            "scheme_admin": boolean(),
            "explicit_roles": string(),
        }), &[]),
        "NewTeamMember": body_requiring(json!({
            "user_id": id_field("The user to add."),
            "roles": {
                "type": "string",
                "enum": ["", "team_user", "team_admin", "team_user team_admin"],
                "description": "Space-separated team roles (any configured non-system role); default team_user.",
            },
        }), &["user_id"]),
        "User": object(json!({
            "id": id("User id."),
            "create_at": millis("Unix milliseconds."),
            "update_at": millis("Unix milliseconds."),
            "delete_at": millis("Non-zero while deactivated."),
            "username": string(),
            "auth_data": string(),
            "auth_service": string(),
            "email": string(),
            "nickname": string(),
            "first_name": string(),
            "last_name": string(),
            "position": string(),
            "roles": json!({"type": "string", "description": "Space-separated system roles."}),
            "locale": string(),
            "timezone": string_map(),
            "props": string_map(),
            "is_bot": boolean(),
            "bot_owner_id": id("The bot's owner (bots only)."),
        }), &["is_bot", "bot_owner_id"]),
        "NewUser": body_requiring(json!({
            "id": id_field("Optional: mirror an existing Mattermost id."),
            "username": {
                "type": "string", "pattern": "^[a-z][a-z0-9._-]{0,63}$",
                "description": "Lower-case; unique.",
            },
            "email": {"type": "string", "maxLength": 128, "pattern": "^([^@]+@[^@]+)?$"},
            "roles": {
                "type": "string",
                "enum": ["", "system_user", "system_user system_admin", "system_user system_user_access_token"],
                "description": "Space-separated system roles (any configured role); default system_user.",
            },
            "is_bot": boolean(),
            "bot_owner_id": id_field("Owner of a bot (an existing user)."),
        }), &["username"]),
        "RolesBody": body_requiring(json!({"roles": {
            "type": "string",
            "enum": ["system_user", "system_user system_admin", "system_user system_user_access_token", "system_user system_token_introspector"],
            "description": "Space-separated system roles (any configured role).",
        }}), &["roles"]),
        "ActiveBody": {
            "type": "object",
            "properties": {"active": boolean()},
            "required": ["active"],
        },
        "Command": object(json!({
            "id": id("Command id."),
            "token": json!({"type": "string", "description": "The token sent with every request of this command."}),
            "create_at": millis("Unix milliseconds."),
            "update_at": millis("Unix milliseconds."),
            "delete_at": millis("0 unless deleted."),
            "creator_id": id("Creator."),
            "team_id": id("Team."),
            "trigger": string(),
            "method": json!({"type": "string", "enum": ["P", "G"]}),
            "username": string(),
            "icon_url": string(),
            "auto_complete": boolean(),
            "auto_complete_desc": string(),
            "auto_complete_hint": string(),
            "display_name": string(),
            "description": string(),
            "url": string(),
            "plugin_id": string(),
        }), &[]),
        "NewCommand": body_requiring(json!({
            "team_id": id_field("Team."),
            "trigger": {
                "type": "string", "pattern": "^[^/\\s][^\\s]{0,127}$",
                "description": "Without the leading '/', no spaces; stored lower-case.",
            },
            "method": {"type": "string", "enum": ["P", "G", "p", "g", ""], "description": "P (POST, the default) or G (GET)."},
            "url": {"type": "string", "maxLength": 1024, "pattern": "^https?://[^\\s/?#]+[^\\s]*$"},
            "display_name": text(0, 64, "Shown in autocomplete."),
            "description": text(0, 128, "Shown in autocomplete."),
            "username": text(0, 64, "Overrides the poster's name."),
            "icon_url": text(0, 1024, "Overrides the poster's icon."),
            "auto_complete": boolean(),
            "auto_complete_desc": text(0, 1024, "Autocomplete description."),
            "auto_complete_hint": text(0, 1024, "Autocomplete hint."),
        }), &["team_id", "trigger", "url"]),
        "CommandToken": object(json!({"token": text(1, 64, "A slash-command token.")}), &[]),
        "CommandTokenCheck": object(json!({"valid": boolean()}), &[]),
        "WebrtcToken": object(json!({
            "token": json!({"type": "string", "description": "Gateway token."}),
            "gateway_url": string(),
            "stun_uri": string(),
            "turn_uri": string(),
            "turn_username": json!({"type": "string", "description": "<unix expiry>:<user id>."}),
            "turn_password": json!({"type": "string", "description": "base64(HMAC-SHA1(secret, username))."}),
            "credential_ttl": json!({"type": "integer", "description": "Seconds."}),
        }), &["stun_uri", "turn_uri", "turn_username", "turn_password"]),
        "RevocationEvent": object(json!({
            "id": {"type": "integer", "format": "int64", "description": "Position in the log; pass the last one seen as after_event_id."},
            "kind": {"type": "string", "enum": ["session", "access_token", "user", "all"]},
            "subject_id": {"type": "string", "description": "Session, token or user id; empty for all."},
            "create_at": millis("Unix milliseconds."),
        }), &[]),
        "LifecycleRecord": lifecycle_record(),
        "LeakReport": body_requiring(json!({
            "tokens": {
                "type": "array", "minItems": 1, "maxItems": 1000,
                "items": {"type": "string"},
                "description": "The strings found (1 to 1000); duplicates and strings of no token format are skipped.",
            },
            "url": {
                "type": "string", "maxLength": 2048,
                "description": "Where they were found: an http(s) URL, optional. Recorded for the owner.",
            },
        }), &["tokens"]),
        "LeakReceipt": object(json!({
            "received": {"type": "integer", "format": "int64", "minimum": 0, "description": "How many strings the report carried; the same answer whatever they were."},
        }), &["received"]),
        "IntrospectionRequest": body_requiring(json!({"token": text(1, 64, "Any token: a session token or a PAT secret.")}), &["token"]),
        "Introspection": object(json!({
            "active": boolean(),
            "user_id": id("Owner (active tokens only)."),
            "token_id": id("The PAT id (personal access tokens only)."),
            "session_id": id("The session the token authenticates as."),
            "kind": json!({"type": "string", "enum": ["session", "user_access_token"]}),
            "roles": json!({"type": "string", "description": "Space-separated."}),
            "username": string(),
            "is_bot": boolean(),
            "expires_at": millis("Unix milliseconds; 0 = never."),
            "scopes": scopes_schema(
                "A scoped personal access token's scopes; absent for a session or an \
                 unscoped token.",
            ),
        }), &["user_id", "token_id", "session_id", "kind", "roles", "username", "is_bot", "scopes"]),
    });
    if let (Some(all), Value::Object(more)) = (all.as_object_mut(), webhook_schemas()) {
        all.extend(more);
    }
    if let (Some(all), Value::Object(more)) = (all.as_object_mut(), audit_schemas()) {
        all.extend(more);
    }
    all
}

/// The schemas of the webhook routes (token-service's own shapes).
fn webhook_schemas() -> Value {
    let filter = object(
        json!({
            "actions": {
                "type": "array",
                "maxItems": 64,
                "items": {"type": "string", "pattern": "^[a-z_]+\\.[a-z_]+$"},
                "description": "Lifecycle actions (e.g. access_token.revoked); empty: every action.",
            },
            "user_id": {"type": "string", "pattern": "^([A-Za-z0-9]{26})?$", "description": "Only records about this user; empty: any."},
        }),
        &[],
    );
    let webhook_fields = json!({
        "id": id("Webhook id."),
        "url": string(),
        "description": string(),
        "filter": filter.clone(),
        "enabled": boolean(),
        "disabled_reason": json!({"type": "string", "description": "Why delivery disabled it; empty otherwise."}),
        "previous_secret_expires_at": millis("Until when the rotated-out secret still signs; 0 = none."),
        "delivery": object(json!({
            "delivered_through": {"type": "integer", "format": "int64", "description": "Last lifecycle record id delivered."},
            "attempts": {"type": "integer", "minimum": 0, "description": "Failures since the last success."},
            "next_attempt_at": millis("Unix milliseconds; 0 = when there is something to send."),
            "failing_since": millis("Unix milliseconds; 0 = not failing."),
            "last_error": string(),
            "last_attempt_at": millis("Unix milliseconds; 0 = never."),
            "last_success_at": millis("Unix milliseconds; 0 = never."),
        }), &[]),
        "create_at": millis("Unix milliseconds."),
        "update_at": millis("Unix milliseconds."),
    });
    let mut created_webhook = webhook_fields.clone();
    created_webhook["secret"] = json!({
        "type": "string",
        "pattern": "^whsec_[A-Za-z0-9+/]{43}=$",
        "description": "The signing secret. Returned by create and rotate only, never again.",
    });
    let webhook_url = json!({
        "type": "string", "maxLength": 2048, "pattern": "^https?://[^\\s]+$",
        "description": "Absolute http(s) URL with a host, no user information; private addresses only with webhooks.allow_private_addresses.",
    });
    json!({
        "Webhook": object(webhook_fields, &[]),
        "CreatedWebhook": object(created_webhook, &[]),
        "NewWebhook": body_requiring(json!({
            "url": webhook_url.clone(),
            "description": text(0, 255, "What the endpoint is for (bytes)."),
            "filter": filter.clone(),
        }), &["url"]),
        "WebhookChange": body(json!({
            "url": webhook_url,
            "description": text(0, 255, "What the endpoint is for (bytes)."),
            "filter": filter,
            "enabled": {"type": "boolean", "description": "true re-enables and clears the failure state."},
        })),
        "WebhookRotation": body(json!({
            "grace_period_ms": {
                "type": "integer", "format": "int64", "minimum": 0, "maximum": 604_800_000_i64,
                "description": "How long the old secret keeps signing; absent: 24 hours; 0: not at all.",
            },
        })),
        "WebhookTest": object(json!({
            "delivered": {"type": "boolean", "description": "The endpoint answered 2xx."},
            "http_status": {"type": "integer", "description": "0 if it did not answer."},
            "error": {"type": "string", "description": "Why there was no answer; empty if it answered."},
            "message_id": {"type": "string", "description": "The webhook-id sent."},
            "elapsed_ms": {"type": "integer", "minimum": 0},
        }), &[]),
    })
}

/// The shapes of the audit trail's routes (token-service's own).
fn audit_schemas() -> Value {
    json!({
        "AuditRecord": object(json!({
            "id": {"type": "integer", "format": "int64", "description": "Position in the log, in commit order."},
            "time": {"type": "string", "format": "date-time", "description": "RFC 3339, UTC, milliseconds."},
            "create_at": millis("The same time in Unix milliseconds."),
            "action": {"type": "string", "description": "e.g. access_token.created; passed through as stored."},
            "actor": object(json!({
                "type": {"type": "string", "description": "user, operator, service or unknown."},
                "id": id("The acting user (type user only)."),
            }), &["id"]),
            "user_id": id("The user the change is about."),
            "token_id": id("The personal access token it is about."),
            "session_id": id("The session it is about."),
            "command_id": id("The slash command it is about."),
            "team_id": id("The team it is about."),
            "webhook_id": id("The webhook endpoint it is about."),
            "ip": id("The client's address."),
            "user_agent": string(),
            "request_id": id("The request's X-Request-ID."),
            "credential_hmac": id("HMAC of a credential's value under the audit key."),
            "detail": {"type": "object", "additionalProperties": {}, "description": "What else the change carries."},
            "revokes": object(json!({
                "kind": {"type": "string", "description": "session, access_token, user or all."},
                "id": id("The session, token or user id; empty for all."),
            }), &[]),
            "hash": id("Chained over the previous record's hash; empty for records moved from the revocation log."),
        }), &["user_id", "token_id", "session_id", "command_id", "team_id", "webhook_id", "ip",
              "user_agent", "request_id", "credential_hmac", "revokes"]),
        "AuditRecordPage": object(json!({
            "records": {"type": "array", "items": schema_ref("AuditRecord")},
            "next_page_token": json!({"type": "string", "description": "Pass as page_token for the next page; empty when no record follows."}),
        }), &[]),
        "IdentifyTokenRequest": body_requiring(json!({
            "token": text(1, 1024, "The token's value; never logged or echoed."),
        }), &["token"]),
        "TokenTrail": object(json!({
            "shape": {"type": "string", "enum": ["mattermost", "checksummed", "bad_checksum", "malformed"]},
            "kind": {"type": "string", "enum": ["user_access_token", "session", ""], "description": "Empty when nothing is found."},
            "state": {"type": "string", "enum": ["active", "disabled", "expired", "owner_deactivated", "superseded", "not_found"]},
            "user_access_token": schema_ref("UserAccessToken"),
            "session": schema_ref("Session"),
            "owner": schema_ref("User"),
            "grace_until": {"type": "integer", "format": "int64", "description": "For a superseded secret: until when it still authenticates (Unix ms); 0 otherwise."},
            "credential_hmac": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "records": {"type": "array", "items": schema_ref("AuditRecord"), "description": "Newest first, at most 200."},
        }), &["user_access_token", "session", "owner"]),
        "AuditHashRequest": body_requiring(json!({
            "credential": text(1, 1024, "The credential's value (a token); never logged or echoed."),
        }), &["credential"]),
        "AuditHash": object(json!({
            "credential_hmac": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "ListAuditRecords' credential_hmac filter."},
        }), &[]),
        "AuditVerifyRequest": body(json!({
            "after_id": {"type": "integer", "format": "int64", "minimum": 0, "description": "The previous answer's resume_after; absent: from the chain's start."},
            "max_records": {"type": "integer", "format": "int64", "minimum": 0, "description": "Most records to check (absent or 0: 50000; at most 1000000)."},
        })),
        "AuditVerification": object(json!({
            "ok": boolean(),
            "verified": {"type": "integer", "description": "Records checked by this call."},
            "first_id": {"type": "integer", "format": "int64"},
            "last_id": {"type": "integer", "format": "int64"},
            "chain_start": {"type": "integer", "format": "int64", "description": "The chain starts after this record."},
            "head_id": {"type": "integer", "format": "int64", "description": "The newest record, per the log's control row."},
            "head_hash": string(),
            "unknown_actions": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "Checked records of actions this version does not know, by action."},
            "resume_after": {"type": "integer", "format": "int64", "description": "Present while records remain: call again with after_id = this."},
            "broken": schema_ref("AuditChainBreak"),
        }), &["resume_after", "broken"]),
        "AuditChainBreak": object(json!({
            "record_id": {"type": "integer", "format": "int64"},
            "kind": {"type": "string", "enum": ["missing", "edited", "head_mismatch"]},
            "expected": string(),
            "found": string(),
            "description": string(),
        }), &[]),
    })
}
