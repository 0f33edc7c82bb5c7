//! Traces and logs as an operator sees them: `token-service serve` exports its spans to an
//! OTLP collector (here an in-process tonic server implementing the OTLP trace service) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, continues the caller's W3C trace, names the caller
//! and never a secret; a collector that is down changes nothing for callers; JSON logs carry
//! the request id on every line of a request.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, any_value},
    trace::v1::Span,
};
use token_service::pb;
use tokio_stream::wrappers::TcpListenerStream;

use super::cli::{Cli, Serving};
use crate::common::authed;

/// An OTLP trace collector that keeps every span it receives.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves on 127.0.0.1:0; returns the collector and its endpoint URL.
    async fn start() -> (Self, String) {
        let collector = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        (collector, endpoint)
    }

    /// Waits until a span matching `pred` has arrived.
    async fn wait_for(&self, what: &str, pred: impl Fn(&Span) -> bool) -> Span {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(span) = self.spans.lock().unwrap().iter().find(|s| pred(s)) {
                return span.clone();
            }
            assert!(Instant::now() < deadline, "no span {what} arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|AnyValue { value }| value.as_ref())
        .map(|value| match value {
            any_value::Value::StringValue(s) => s.clone(),
            any_value::Value::IntValue(i) => i.to_string(),
            any_value::Value::BoolValue(b) => b.to_string(),
            other => format!("{other:?}"),
        })
}

/// Bootstraps an admin with a personal access token; returns (user id, secret).
fn bootstrap(cli: &Cli) -> (String, String) {
    let admin = cli.json(&[
        "admin",
        "create-user",
        "--username",
        "admin",
        "--roles",
        "system_user system_admin",
    ]);
    let token = cli.json(&["admin", "create-token", "--user", "admin"]);
    (
        admin["id"].as_str().unwrap().to_owned(),
        token["token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn spans_reach_the_collector_named_with_the_caller_and_never_a_secret() {
    let (collector, endpoint) = Collector::start().await;
    let cli = Cli::new().await;
    let (admin_id, secret) = bootstrap(&cli);
    let mut serve = cli.serve();
    serve
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_SERVICE_NAME", "token-service-under-test");
    let mut serving = Serving::start(serve, &secret);
    let mut client = serving.client().await;

    // gRPC, continuing the caller's trace.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let mut request = authed(pb::GetMeRequest {}, &secret);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_span}-01").parse().unwrap(),
    );
    client.get_me(request).await.expect("GetMe");
    // A call that returns a new secret: it must not reach the collector.
    let created = client
        .create_user_access_token(authed(
            pb::CreateUserAccessTokenRequest {
                user_id: "me".into(),
                description: "traced".into(),
                expires_at: None,
                ..Default::default()
            },
            &secret,
        ))
        .await
        .expect("create")
        .into_inner();
    // A refusal.
    let refused = client
        .get_me(authed(pb::GetMeRequest {}, "not-a-token-at-all-xxxxxxxxx"))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    // REST, with its own traceparent.
    let rest_trace = "0af7651916cd43dd8448eb211c80319c";
    let response = crate::common::http_client()
        .get(format!("http://{}/api/v4/users/me", serving.http_addr))
        .bearer_auth(&secret)
        .header(
            "traceparent",
            format!("00-{rest_trace}-b7ad6b7169203331-01"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let get_me = collector
        .wait_for("for GetMe in the caller's trace", |s| {
            s.name == "token_service.v1.TokenService/GetMe"
                && hex(&s.trace_id) == trace_id
                && attribute(s, "rpc.grpc.status_code").as_deref() == Some("0")
        })
        .await;
    assert_eq!(hex(&get_me.parent_span_id), parent_span);
    assert_eq!(attribute(&get_me, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attribute(&get_me, "rpc.method").as_deref(),
        Some("GetMe"),
        "{get_me:?}"
    );
    assert_eq!(
        attribute(&get_me, "enduser.id").as_deref(),
        Some(admin_id.as_str())
    );
    assert_eq!(attribute(&get_me, "request_id").map(|r| r.len()), Some(26));
    // Database spans sit beneath the request span.
    collector
        .wait_for("for a database read under GetMe", |s| {
            s.parent_span_id == get_me.span_id
                && matches!(
                    attribute(s, "db.system").as_deref(),
                    Some("sqlite" | "postgres" | "mysql")
                )
        })
        .await;
    collector
        .wait_for("for the refused call", |s| {
            s.name == "token_service.v1.TokenService/GetMe"
                && attribute(s, "rpc.grpc.status_code").as_deref() == Some("16")
        })
        .await;
    collector
        .wait_for("for CreateUserAccessToken", |s| {
            s.name == "token_service.v1.TokenService/CreateUserAccessToken"
        })
        .await;
    let rest = collector
        .wait_for("for the REST request", |s| {
            s.name == "GET /api/v4/users/me" && hex(&s.trace_id) == rest_trace
        })
        .await;
    assert_eq!(
        attribute(&rest, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attribute(&rest, "request_id").as_deref(),
        Some(request_id.as_str()),
        "the span's request id is the X-Request-ID header"
    );

    let everything = format!("{:?}", collector.spans.lock().unwrap());
    for secret in [&secret, &created.token] {
        assert!(
            !everything.contains(secret.as_str()),
            "a secret reached the collector"
        );
    }
    serving.terminate().await;
}

#[tokio::test]
async fn a_collector_that_is_down_changes_nothing_for_callers() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let cli = Cli::new().await;
    let (_, secret) = bootstrap(&cli);
    let mut serve = cli.serve();
    serve
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "50");
    let mut serving = Serving::start(serve, &secret);
    let mut client = serving.client().await;
    let start = Instant::now();
    for _ in 0..200 {
        client
            .get_me(authed(pb::GetMeRequest {}, &secret))
            .await
            .expect("answered while the collector is down");
    }
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "calls were held up: {:?}",
        start.elapsed()
    );
    // And it still stops promptly (the final flush is bounded).
    serving.terminate().await;
}

#[tokio::test]
async fn json_logs_name_the_request_on_every_line_of_it() {
    let cli = Cli::new().await;
    let (_, secret) = bootstrap(&cli);
    let mut serve = cli.serve();
    serve.env("TOKEN_SERVICE_LOG__FORMAT", "json");
    let mut serving = Serving::start(serve, &secret);
    let mut client = serving.client().await;
    let created = client
        .create_user_access_token(authed(
            pb::CreateUserAccessTokenRequest {
                user_id: "me".into(),
                description: "logged".into(),
                expires_at: None,
                ..Default::default()
            },
            &secret,
        ))
        .await
        .unwrap()
        .into_inner();
    client
        .revoke_user_access_token(authed(
            pb::RevokeUserAccessTokenRequest {
                token_id: created.user_access_token.unwrap().id,
            },
            &secret,
        ))
        .await
        .unwrap();
    let lines = serving.terminate().await;
    let audit: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "audit")
        .collect();
    assert!(audit.len() >= 2, "audit lines: {lines:#?}");
    for line in &audit {
        let request_id = line["span"]["request_id"].as_str().unwrap_or_default();
        assert_eq!(request_id.len(), 26, "no request id in {line}");
    }
    assert!(
        lines.iter().all(|l| !l.contains(&created.token)),
        "the new secret was logged"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
