//! The REST shim over real HTTP: Mattermost's paths, JSON, status codes, error bodies and
//! authentication.

mod audit;
mod auth;
mod bound_tokens;
mod drift;
mod errors;
mod gateway;
mod gateway_nginx;
mod guess_throttle;
mod input;
mod keyset_paging;
mod last_use;
mod leaks;
mod non_compliant;
mod openapi;
mod probes;
mod rotate;
mod routes;
mod scoped_tokens;
mod token_expiration;
mod webhooks;

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;

use crate::common::TestServer;

/// The `id` of each object of a JSON array (a token list's body).
pub fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A response, read whole.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub raw: String,
    pub json: Value,
}

impl HttpResponse {
    /// Asserts a Mattermost AppError with this status and id, and returns it.
    #[track_caller]
    pub fn assert_error(&self, status: u16, id: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.json["id"], id, "{self:?}");
        assert_eq!(self.json["status_code"], status, "{self:?}");
        assert!(self.json["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(self.json["detailed_error"].is_string());
        let request_id = self.headers["x-request-id"].to_str().unwrap();
        assert_eq!(
            self.json["request_id"], request_id,
            "request_id echoes X-Request-ID"
        );
        let keys: Vec<&str> = self
            .json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut positions: Vec<(usize, &str)> = keys
            .iter()
            .map(|k| (self.raw.find(&format!("\"{k}\":")).unwrap(), *k))
            .collect();
        positions.sort();
        let order: Vec<&str> = positions.into_iter().map(|(_, k)| k).collect();
        assert_eq!(
            order,
            [
                "id",
                "message",
                "detailed_error",
                "request_id",
                "status_code"
            ],
            "AppError keys in Mattermost's order: {}",
            self.raw
        );
        &self.json
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        &self.json
    }
}

/// A small HTTP client for the shim.
pub struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    pub fn new(srv: &TestServer) -> Self {
        Self {
            base: srv.http_base(),
            client: crate::common::http_client(),
        }
    }

    /// A client of the shim at `base` (`http://127.0.0.1:<port>`), another replica's say.
    pub fn at(base: String) -> Self {
        Self {
            base,
            client: crate::common::http_client(),
        }
    }

    /// A client of the shim at `base` whose sockets are bound to `local` (a loopback alias
    /// such as 127.0.0.2, to be another client address).
    pub fn from_address(base: String, local: &str) -> Self {
        crate::common::install_crypto_provider();
        Self {
            base,
            client: reqwest::Client::builder()
                .local_address(local.parse::<std::net::IpAddr>().unwrap())
                .build()
                .unwrap(),
        }
    }

    /// Sends a request with optional bearer token and raw body; extra headers as pairs.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> HttpResponse {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response.text().await.unwrap();
        let json = serde_json::from_str(&raw).unwrap_or(Value::Null);
        assert!(
            headers.contains_key("x-request-id"),
            "every response has X-Request-ID"
        );
        assert_eq!(
            headers.get("content-type").map(|v| v.to_str().unwrap()),
            Some("application/json"),
            "{path}"
        );
        HttpResponse {
            status,
            headers,
            raw,
            json,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> HttpResponse {
        self.send(Method::GET, path, Some(token), None, &[]).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> HttpResponse {
        self.send(
            Method::POST,
            path,
            Some(token),
            Some(&body.to_string()),
            &[],
        )
        .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> HttpResponse {
        self.send(Method::PUT, path, Some(token), Some(&body.to_string()), &[])
            .await
    }
}
