//! The two transports cannot drift: the shim serves exactly the (verb, path) pairs of the
//! proto's `google.api.http` rules (additional bindings included). The router takes verbs and
//! paths from the compiled descriptor, so what is checked here is that every annotated RPC is
//! served and nothing else, on its routes and over HTTP, where every other verb, HEAD and
//! OPTIONS included, is the router's 404, unless another route with a parameter takes that
//! path and verb (Mattermost's router takes the first route matching both: GET
//! /users/tokens/revoke is GET /users/tokens/{token_id}).
//!
//! The one exception is `rest::OPERATIONAL_ROUTES`, allowed by name: Mattermost's
//! `system/ping`, the OpenAPI document, `/livez`, `/readyz` and `/metrics`. They are no RPC,
//! are listed in the README, and answer GET only.

use std::collections::BTreeSet;

use reqwest::Method;

use super::Http;
use crate::{common::*, contract::proto::http_rules};

#[test]
fn the_route_table_equals_the_proto_http_rules() {
    let annotated: BTreeSet<(String, String)> = http_rules()
        .into_iter()
        .map(|(_, verb, path)| (verb.to_owned(), path))
        .collect();
    let served: BTreeSet<(String, String)> =
        token_service::rest::served_routes().into_iter().collect();
    let missing: Vec<_> = annotated.difference(&served).collect();
    let extra: Vec<_> = served.difference(&annotated).collect();
    assert!(missing.is_empty(), "annotated but not served: {missing:#?}");
    assert!(extra.is_empty(), "served but not annotated: {extra:#?}");
}

/// The operational routes allowed besides the proto's rules, by name.
const ALLOWED_OPERATIONAL: [(&str, &str); 5] = [
    ("GET", "/api/v4/system/ping"),
    ("GET", "/api/v4/openapi.json"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

#[test]
fn the_operational_routes_are_the_allowed_list_and_no_rpc_claims_them() {
    let listed: BTreeSet<(&str, &str)> = token_service::rest::OPERATIONAL_ROUTES
        .into_iter()
        .collect();
    let allowed: BTreeSet<(&str, &str)> = ALLOWED_OPERATIONAL.into_iter().collect();
    assert_eq!(
        listed, allowed,
        "a new operational route must be allowed here by name"
    );
    let annotated: BTreeSet<String> = http_rules().into_iter().map(|(_, _, p)| p).collect();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (_, path) in ALLOWED_OPERATIONAL {
        assert!(!annotated.contains(path), "{path} is an RPC route too");
        assert!(
            token_service::rest::served_routes()
                .iter()
                .all(|(_, p)| p != path),
            "{path} is in the RPC route table"
        );
        assert!(
            readme.contains(&format!("`{path}`")) || readme.contains(&format!("`GET {path}`")),
            "README.md does not document {path}"
        );
    }
}

#[tokio::test]
async fn the_operational_routes_answer_get_and_other_verbs_are_the_router_404() {
    let srv = TestServer::start().await;
    let client = crate::common::http_client();
    for (_, path) in ALLOWED_OPERATIONAL {
        let url = format!("{}{path}", srv.http_base());
        let answer = client.get(&url).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 200, "GET {path}");
        for other in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            let answer = client.request(other.clone(), &url).send().await.unwrap();
            assert_eq!(answer.status().as_u16(), 404, "{other} {path}");
            let body: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(body["id"], "api.context.404.app_error", "{other} {path}");
        }
    }
    srv.stop().await;
}

fn concrete(path: &str) -> String {
    let id = token_service::domain::ids::new_id();
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        out.push_str(&id);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether the route `template` matches the concrete `path` as Mattermost's router matches
/// it (a parameter is one `[A-Za-z0-9]+` segment).
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            t == p
                || (t.starts_with('{')
                    && !p.is_empty()
                    && p.bytes().all(|b| b.is_ascii_alphanumeric()))
        })
}

#[tokio::test]
async fn every_annotated_route_answers_and_other_verbs_are_the_router_404() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let http = Http::new(&srv);
    for (rpc, verb, path) in http_rules() {
        let url = concrete(&path);
        let method = Method::from_bytes(verb.as_bytes()).unwrap();
        let answer = http
            .send(method.clone(), &url, Some(&admin.token), Some("{}"), &[])
            .await;
        assert_ne!(
            answer.json["id"], "api.context.404.app_error",
            "{rpc}: {verb} {url} is not served: {answer:?}"
        );
        for other in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::HEAD,
            Method::OPTIONS,
        ] {
            if other == method
                || http_rules()
                    .iter()
                    .any(|(_, v, p)| *p == path && *v == other.as_str())
            {
                continue;
            }
            let answer = http
                .send(other.clone(), &url, Some(&admin.token), Some("{}"), &[])
                .await;
            let caught_by = http_rules()
                .into_iter()
                .find(|(_, v, p)| *v == other.as_str() && p.contains('{') && matches(p, &url));
            if let Some((by, _, template)) = caught_by {
                assert_ne!(
                    answer.json["id"], "api.context.404.app_error",
                    "{other} {url} is {by} ({template}): {answer:?}"
                );
            } else if other == Method::HEAD {
                // A HEAD answer has no body: the status and headers must still be the 404's.
                assert_eq!(answer.status.as_u16(), 404, "HEAD {url}: {answer:?}");
                assert!(answer.raw.is_empty(), "HEAD {url}: {answer:?}");
            } else {
                answer.assert_error(404, "api.context.404.app_error");
            }
        }
    }
    srv.stop().await;
}
