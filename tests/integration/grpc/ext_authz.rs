//! Envoy's external authorization, `envoy.service.auth.v3.Authorization/Check`, called with
//! the client generated from Envoy's own (vendored) protos: who may ask (a token with
//! `introspect_token`, or a listed client certificate), what an allowed request carries
//! upstream, and what a refused one answers.

use std::collections::HashMap;

use token_service::pb::envoy_ext_authz::envoy::{
    config::core::v3::{
        Address, SocketAddress, address, header_value_option::HeaderAppendAction, socket_address,
    },
    service::auth::v3::{
        AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
        attribute_context::{HttpRequest, Peer, Request as AttributeRequest},
        authorization_client::AuthorizationClient,
        check_response::HttpResponse,
    },
};
use tonic::{Code, Request, transport::Channel};

use crate::common::*;
use crate::contract::tls::{Pki, tls_channel};

/// A request as Envoy forwards it for a decision.
struct Forwarded {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    required_role: Option<&'static str>,
    /// The downstream client's address (`source.address`), if Envoy reports one.
    source: Option<&'static str>,
}

impl Forwarded {
    fn get(path: &str) -> Self {
        Self {
            method: "GET",
            path: path.to_owned(),
            headers: Vec::new(),
            required_role: None,
            source: None,
        }
    }

    fn source_address(mut self, ip: &'static str) -> Self {
        self.source = Some(ip);
        self
    }

    fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    fn requiring(mut self, roles: &'static str) -> Self {
        self.required_role = Some(roles);
        self
    }

    fn message(&self) -> CheckRequest {
        let mut context_extensions = HashMap::new();
        if let Some(roles) = self.required_role {
            context_extensions.insert("required_role".to_owned(), roles.to_owned());
        }
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(AttributeRequest {
                    time: None,
                    http: Some(HttpRequest {
                        id: "envoy-request-7".to_owned(),
                        method: self.method.to_owned(),
                        headers: self
                            .headers
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), v.clone()))
                            .collect(),
                        path: self.path.clone(),
                        host: "chat.example.com".to_owned(),
                        scheme: "https".to_owned(),
                        protocol: "HTTP/1.1".to_owned(),
                        ..Default::default()
                    }),
                }),
                context_extensions,
                source: self.source.map(|ip| Peer {
                    address: Some(Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: ip.to_owned(),
                            port_specifier: Some(socket_address::PortSpecifier::PortValue(50_123)),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
}

/// Calls Check on `channel`, as the gateway presenting `gateway_token` (if any).
async fn check_on(
    channel: Channel,
    gateway_token: Option<&str>,
    forwarded: &Forwarded,
) -> Result<CheckResponse, tonic::Status> {
    let mut request = Request::new(forwarded.message());
    if let Some(token) = gateway_token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    AuthorizationClient::new(channel)
        .check(request)
        .await
        .map(tonic::Response::into_inner)
}

/// A gateway: a user with the introspector role.
async fn gateway(srv: &TestServer) -> Actor {
    srv.user("envoy", &["system_user", "system_token_introspector"])
        .await
}

fn ok_response(response: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(response.status.as_ref().unwrap().code, Code::Ok as i32);
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("expected an OkHttpResponse, got {other:?}"),
    }
}

fn denied_response(response: &CheckResponse) -> &DeniedHttpResponse {
    match &response.http_response {
        Some(HttpResponse::DeniedResponse(denied)) => denied,
        other => panic!("expected a DeniedHttpResponse, got {other:?}"),
    }
}

/// The headers an allowed request gets, by name; each must overwrite a client-sent copy.
fn identity(ok: &OkHttpResponse) -> HashMap<String, String> {
    ok.headers
        .iter()
        .map(|option| {
            assert_eq!(
                option.append_action,
                HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                "{option:?}"
            );
            let header = option.header.as_ref().unwrap();
            (header.key.clone(), header.value.clone())
        })
        .collect()
}

/// Asserts a 401 with Mattermost's session-expired body; returns the body.
fn assert_unauthenticated(response: &CheckResponse) -> String {
    assert_eq!(
        response.status.as_ref().unwrap().code,
        Code::Unauthenticated as i32
    );
    let denied = denied_response(response);
    assert_eq!(denied.status.as_ref().unwrap().code, 401);
    assert_eq!(
        denied.body,
        r#"{"id":"api.context.session_expired.app_error","message":"Invalid or expired session, please login again.","detailed_error":"","request_id":"envoy-request-7","status_code":401}"#
    );
    let content_type: Vec<_> = denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .filter(|h| h.key == "content-type")
        .map(|h| h.value.as_str())
        .collect();
    assert_eq!(content_type, ["application/json"]);
    denied.body.clone()
}

async fn metric(srv: &TestServer, outcome: &str) -> u64 {
    let text = http_get(format!("{}/metrics", srv.http_base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("token_service_ext_authz_checks_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_personal_access_token_is_allowed_with_its_identity_and_no_database_read_when_cached() {
    let srv = TestServer::start().await;
    let envoy = gateway(&srv).await;
    let tina = srv.token_user("tina").await;
    let (token_id, pat) = srv.as_(&tina).new_token("me").await;
    // A client-sent identity header must not survive: Check sets every one it knows.
    let forwarded = Forwarded::get("/api/orders?page=2")
        .bearer(&pat)
        .header("x-auth-user-id", "forged-admin-id")
        .header("x-auth-roles", "system_admin");

    let first = check_on(srv.channel().await, Some(&envoy.token), &forwarded)
        .await
        .unwrap();
    let ok = ok_response(&first);
    let headers = identity(ok);
    assert_eq!(headers["x-auth-user-id"], tina.id);
    assert_eq!(headers["x-auth-username"], "tina");
    assert_eq!(
        headers["x-auth-roles"],
        "system_user system_user_access_token"
    );
    assert_eq!(headers["x-auth-token-type"], "user_access_token");
    assert_eq!(headers["x-auth-token-id"], token_id);
    assert_eq!(headers["x-auth-session-id"].len(), 26);
    assert_eq!(headers.len(), 6, "{headers:?}");
    assert!(
        ok.headers_to_remove.is_empty(),
        "{:?}",
        ok.headers_to_remove
    );

    // Again: answered from the cache, the same identity.
    let before = srv.cache_stats();
    let second = check_on(srv.channel().await, Some(&envoy.token), &forwarded)
        .await
        .unwrap();
    assert_eq!(identity(ok_response(&second)), headers);
    let after = srv.cache_stats();
    assert_eq!(after.misses, before.misses, "a cached check reads nothing");
    assert!(after.hits > before.hits);
    assert_eq!(metric(&srv, "allowed").await, 2);
    srv.stop().await;
}

#[tokio::test]
async fn a_session_is_allowed_and_the_identity_headers_it_lacks_are_removed() {
    let srv = TestServer::start().await;
    let envoy = gateway(&srv).await;
    let alice = srv.basic_user("alice").await;
    let forwarded = Forwarded::get("/")
        .header("authorization", format!("Token {}", alice.token))
        .header("x-auth-token-id", "forged");
    let response = check_on(srv.channel().await, Some(&envoy.token), &forwarded)
        .await
        .unwrap();
    let ok = ok_response(&response);
    let headers = identity(ok);
    assert_eq!(headers["x-auth-user-id"], alice.id);
    assert_eq!(headers["x-auth-token-type"], "session");
    assert!(!headers.contains_key("x-auth-token-id"));
    assert_eq!(ok.headers_to_remove, ["x-auth-token-id"]);
    srv.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_denied_as_soon_as_the_revoke_returns() {
    let srv = TestServer::start().await;
    let envoy = gateway(&srv).await;
    let tina = srv.token_user("tina").await;
    let (token_id, pat) = srv.as_(&tina).new_token("me").await;
    let forwarded = Forwarded::get("/api/orders").bearer(&pat);
    let channel = srv.channel().await;
    ok_response(
        &check_on(channel.clone(), Some(&envoy.token), &forwarded)
            .await
            .unwrap(),
    );
    srv.as_(&tina).revoke_token(&token_id).await.unwrap();
    assert_unauthenticated(
        &check_on(channel, Some(&envoy.token), &forwarded)
            .await
            .unwrap(),
    );
    srv.stop().await;
}

#[tokio::test]
async fn unknown_missing_and_malformed_tokens_get_the_same_401_as_the_rest_shim() {
    let srv = TestServer::start().await;
    let envoy = gateway(&srv).await;
    let channel = srv.channel().await;
    let unknown = "a".repeat(26);
    let mut bodies = Vec::new();
    for forwarded in [
        Forwarded::get("/").bearer(&unknown),
        Forwarded::get("/"),
        Forwarded::get("/").bearer("not a token"),
        Forwarded::get("/").header("authorization", "Basic dXNlcjpwYXNz"),
    ] {
        let response = check_on(channel.clone(), Some(&envoy.token), &forwarded)
            .await
            .unwrap();
        bodies.push(assert_unauthenticated(&response));
    }
    // The REST shim refuses the same token with the same body (but its own request id).
    let rest = http_client()
        .get(format!("{}/api/v4/users/me", srv.http_base()))
        .bearer_auth(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 401);
    let mut rest: serde_json::Value = rest.json().await.unwrap();
    rest["request_id"] = "envoy-request-7".into();
    let ours: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(rest, ours);
    assert_eq!(metric(&srv, "denied_unauthenticated").await, 4);
    srv.stop().await;
}

#[tokio::test]
async fn a_required_role_the_user_lacks_is_403() {
    let srv = TestServer::start().await;
    let envoy = gateway(&srv).await;
    let alice = srv.basic_user("alice").await;
    let root = srv.admin("root").await;
    let channel = srv.channel().await;
    let ask = |who: &Actor, roles: &'static str| {
        let forwarded = Forwarded::get("/admin").bearer(&who.token).requiring(roles);
        let channel = channel.clone();
        let token = envoy.token.clone();
        async move { check_on(channel, Some(&token), &forwarded).await }
    };

    let response = ask(&alice, "system_admin").await.unwrap();
    assert_eq!(
        response.status.as_ref().unwrap().code,
        Code::PermissionDenied as i32
    );
    let denied = denied_response(&response);
    assert_eq!(denied.status.as_ref().unwrap().code, 403);
    assert_eq!(
        denied.body,
        r#"{"id":"api.context.permissions.app_error","message":"You do not have the appropriate permissions.","detailed_error":"","request_id":"envoy-request-7","status_code":403}"#
    );
    ok_response(&ask(&root, "system_admin").await.unwrap());
    ok_response(&ask(&root, "system_user, system_admin").await.unwrap());
    ok_response(&ask(&alice, "system_user").await.unwrap());
    ok_response(&ask(&alice, "").await.unwrap());
    let response = ask(&alice, "system_user system_admin").await.unwrap();
    denied_response(&response);
    assert_eq!(metric(&srv, "denied_forbidden").await, 2);
    srv.stop().await;
}

#[tokio::test]
async fn the_session_cookie_follows_the_rest_shims_csrf_rules_and_the_query_token_its_oauth_rule() {
    let srv = TestServer::start().await;
    let envoy = gateway(&srv).await;
    let alice = srv.basic_user("alice").await;
    let channel = srv.channel().await;
    let cookie = format!("theme=dark; MMAUTHTOKEN={}", alice.token);
    let check = |forwarded: Forwarded| {
        let channel = channel.clone();
        let token = envoy.token.clone();
        async move { check_on(channel, Some(&token), &forwarded).await.unwrap() }
    };

    let read = check(Forwarded::get("/api/v4/posts").header("cookie", cookie.clone())).await;
    assert_eq!(identity(ok_response(&read))["x-auth-user-id"], alice.id);
    // A cookie-authenticated write without CSRF evidence is refused, like the REST shim.
    assert_unauthenticated(
        &check(
            Forwarded::get("/api/v4/posts")
                .method("POST")
                .header("cookie", cookie.clone()),
        )
        .await,
    );
    ok_response(
        &check(
            Forwarded::get("/api/v4/posts")
                .method("POST")
                .header("cookie", cookie.clone())
                .header("x-requested-with", "XMLHttpRequest"),
        )
        .await,
    );
    // A bearer header needs no CSRF evidence.
    ok_response(
        &check(
            Forwarded::get("/api/v4/posts")
                .method("DELETE")
                .bearer(&alice.token),
        )
        .await,
    );
    // The cookie wins over the header, as in Mattermost: an empty cookie authenticates nobody.
    assert_unauthenticated(
        &check(
            Forwarded::get("/")
                .header("cookie", "MMAUTHTOKEN=")
                .bearer(&alice.token),
        )
        .await,
    );
    // Only OAuth sessions may use the query string.
    assert_unauthenticated(
        &check(Forwarded::get(&format!(
            "/api/v4/users/me?access_token={}",
            alice.token
        )))
        .await,
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_gateway_without_the_introspection_permission_is_refused_the_call() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let channel = srv.channel().await;
    let forwarded = Forwarded::get("/").bearer(&alice.token);

    let status = check_on(channel.clone(), Some(&alice.token), &forwarded)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = check_on(channel.clone(), None, &forwarded)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = check_on(channel, Some("garbage-token-garbage-token"), &forwarded)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(metric(&srv, "caller_rejected").await, 3);
    assert_eq!(metric(&srv, "allowed").await, 0);
    srv.stop().await;
}

#[tokio::test]
async fn a_listed_client_certificate_may_ask_without_a_token_and_an_unlisted_one_may_not() {
    let pki = Pki::generate();
    let srv = TestServer::start_with(|c| {
        pki.configure(c, true);
        // OpenSSL's spelling of the subject; compared in one normal form.
        c.ext_authz.allowed_client_subjects = vec!["CN = internal-caller".to_owned()];
    })
    .await;
    let envoy = gateway(&srv).await;
    let alice = srv.basic_user("alice").await;
    let addr = srv.config.grpc_addr;
    let forwarded = Forwarded::get("/").bearer(&alice.token);

    let listed = tls_channel(addr, &pki.ca, Some(&pki.client)).await.unwrap();
    let response = check_on(listed, None, &forwarded).await.unwrap();
    assert_eq!(identity(ok_response(&response))["x-auth-user-id"], alice.id);

    let unlisted = tls_channel(addr, &pki.ca, Some(&pki.other_client))
        .await
        .unwrap();
    let status = check_on(unlisted.clone(), None, &forwarded)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // An unlisted certificate's caller may still present an introspector's token.
    let response = check_on(unlisted, Some(&envoy.token), &forwarded)
        .await
        .unwrap();
    ok_response(&response);
    srv.stop().await;
}

#[tokio::test]
#[ignore = "needs a database server (TEST_DATABASE_URL, PostgreSQL or MariaDB); .ci/run runs it"]
async fn an_unreachable_database_fails_the_check_unavailable_instead_of_denying() {
    let (proxy, srv) = crate::common::proxy::server_behind_a_proxy(|c| {
        c.pool.acquire_timeout_secs = 1;
        c.pool.connect_timeout_secs = 1;
    })
    .await;
    let envoy = gateway(&srv).await;
    let alice = srv.basic_user("alice").await;
    let channel = srv.channel().await;
    let known = Forwarded::get("/").bearer(&alice.token);
    ok_response(
        &check_on(channel.clone(), Some(&envoy.token), &known)
            .await
            .unwrap(),
    );

    proxy.cut();
    // A token the cache does not know needs the database: no decision, so Envoy's
    // failure_mode_allow decides, and the request is not reported as a bad token.
    let unknown = Forwarded::get("/").bearer(&"b".repeat(26));
    let status = check_on(channel.clone(), Some(&envoy.token), &unknown)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(metric(&srv, "error").await >= 1);
    assert_eq!(metric(&srv, "denied_unauthenticated").await, 0);

    proxy.restore();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match check_on(channel.clone(), Some(&envoy.token), &known).await {
            Ok(response) => {
                ok_response(&response);
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "Check did not recover within 10 s of the database's return"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn forwarded_dead_tokens_never_throttle_the_gateway_but_its_own_failures_do() {
    let srv = TestServer::start_with(|c| {
        c.guess_throttle.burst = 2;
        c.guess_throttle.failures_per_minute = 1;
    })
    .await;
    let envoy = gateway(&srv).await;
    // The end users' dead tokens are the gateway's everyday traffic: not counted against it.
    for i in 0..10 {
        let forwarded = Forwarded::get("/api").bearer(&format!("abcdefghijklmnopqrstuvwx{i:02}"));
        let answer = check_on(srv.channel().await, Some(&envoy.token), &forwarded)
            .await
            .unwrap();
        denied_response(&answer);
    }
    assert_eq!(
        srv.counter("token_service_guess_throttle_blocks_total")
            .await,
        0
    );
    // The gateway's own credential failing is guessing: refused once past the limit, even
    // with its valid token.
    let alice = srv.token_user("alice").await;
    let forwarded = Forwarded::get("/api").bearer(&alice.token);
    for _ in 0..3 {
        let status = check_on(
            srv.channel().await,
            Some("abcdefghijklmnopqrstuvwxyz"),
            &forwarded,
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let status = check_on(srv.channel().await, Some(&envoy.token), &forwarded)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_id(&status), "token_service.rate_limited");
    srv.stop().await;
}

#[tokio::test]
async fn a_bound_token_is_checked_against_the_downstream_address_envoy_reports() {
    let srv = TestServer::start().await;
    let envoy = gateway(&srv).await;
    let tina = srv.token_user("tina").await;
    let (id, secret, _) =
        crate::grpc::bound_tokens::bound_token(&srv, &tina, &["192.0.2.0/24", "2001:db8::/32"])
            .await;
    // The gateway itself calls from 127.0.0.1, outside the blocks: what counts is the end
    // user's address in the CheckRequest.
    for inside in ["192.0.2.10", "2001:db8::7"] {
        let forwarded = Forwarded::get("/api/orders")
            .bearer(&secret)
            .source_address(inside);
        let answer = check_on(srv.channel().await, Some(&envoy.token), &forwarded)
            .await
            .unwrap();
        assert_eq!(identity(ok_response(&answer))["x-auth-token-id"], id);
    }
    for outside in [Some("198.51.100.1"), Some("2001:db9::1"), None] {
        let mut forwarded = Forwarded::get("/api/orders").bearer(&secret);
        forwarded.source = outside;
        let answer = check_on(srv.channel().await, Some(&envoy.token), &forwarded)
            .await
            .unwrap();
        assert_unauthenticated(&answer);
    }
    let records = crate::grpc::bound_tokens::address_refusals(&srv, &id, "198.51.100.1").await;
    assert!(
        records.iter().any(|r| r.record.origin.ip == "198.51.100.1"),
        "{records:?}"
    );
    // An unbound token needs no source address.
    let (_, plain) = srv.as_(&tina).new_token("me").await;
    let answer = check_on(
        srv.channel().await,
        Some(&envoy.token),
        &Forwarded::get("/").bearer(&plain),
    )
    .await
    .unwrap();
    ok_response(&answer);
    srv.stop().await;
}

#[tokio::test]
async fn a_gateway_token_needs_a_scope_that_allows_introspection() {
    let srv = TestServer::start().await;
    let envoy = srv
        .user(
            "envoy",
            &[
                "system_user",
                "system_user_access_token",
                "system_token_introspector",
            ],
        )
        .await;
    let tina = srv.token_user("tina").await;
    let introspect = crate::grpc::caller_kinds::scoped_pat(&srv, &envoy, &["introspect"]).await;
    let read = crate::grpc::caller_kinds::scoped_pat(&srv, &envoy, &["read"]).await;
    let forwarded = Forwarded::get("/").bearer(&tina.token);
    let answer = check_on(srv.channel().await, Some(&introspect), &forwarded)
        .await
        .unwrap();
    assert_eq!(identity(ok_response(&answer))["x-auth-user-id"], tina.id);
    let refused = check_on(srv.channel().await, Some(&read), &forwarded)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    srv.stop().await;
}
