//! [`Receiver`]: a webhook endpoint for tests, a real HTTP server on 127.0.0.1:0 that
//! records every request it gets (headers and body) and answers with the statuses a test
//! scripts (200 once the script is used up). [`verify`] checks a Standard Webhooks signature
//! independently of the service's code (HMAC-SHA256 computed here).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
    /// `content-type`.
    pub content_type: String,
    /// The body as sent.
    pub raw: Vec<u8>,
    /// The body as JSON (Null if it is not JSON).
    pub json: serde_json::Value,
    /// The status the receiver answered.
    pub answered: u16,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// The lifecycle action (`type`).
    pub fn action(&self) -> &str {
        self.json["type"].as_str().unwrap_or("")
    }

    /// The lifecycle record id in `webhook-id` (`msg_<id>`).
    pub fn record_id(&self) -> i64 {
        self.id
            .strip_prefix("msg_")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("webhook-id {:?} is not msg_<record id>", self.id))
    }
}

#[derive(Debug, Default)]
struct Inner {
    received: Vec<Received>,
    script: VecDeque<u16>,
    delay: Option<Duration>,
}

/// A webhook endpoint on 127.0.0.1.
#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver answering 200 to everything.
    pub async fn start() -> Self {
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, inner, task }
    }

    /// Its URL (`http://127.0.0.1:<port>/hook`).
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Its URL with `localhost` as the host name.
    pub fn localhost_url(&self) -> String {
        format!("http://localhost:{}/hook", self.addr.port())
    }

    /// Answers the next requests with these statuses, in order (then 200 again).
    pub fn answer_with(&self, statuses: &[u16]) {
        self.inner.lock().unwrap().script.extend(statuses);
    }

    /// Answers 200 to everything from now on (drops what is left of the script).
    pub fn answer_ok(&self) {
        self.inner.lock().unwrap().script.clear();
    }

    /// Takes this long before answering each request.
    pub fn delay_answers(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = Some(delay);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Waits (polling, at most `within`) until at least `n` requests arrived; all of them.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver got {} of {n} requests within {within:?}: {:#?}",
                got.len(),
                got.iter().map(|r| (&r.id, r.answered)).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops it (connections are refused from now on).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let delay = inner.lock().unwrap().delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut inner = inner.lock().unwrap();
    let status = inner.script.pop_front().unwrap_or(200);
    inner.received.push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        content_type: header("content-type"),
        json: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        raw: body.to_vec(),
        answered: status,
        at: Instant::now(),
    });
    StatusCode::from_u16(status).unwrap()
}

/// Whether one of the space-separated signatures of `received` is `secret`'s, computed here
/// as the Standard Webhooks specification says: base64(HMAC-SHA256(base64-decoded part of
/// the secret after `whsec_`, "{id}.{timestamp}.{body}")), prefixed `v1,`.
pub fn verify_signature(received: &Received, secret: &str) -> bool {
    expected_signature(secret, &received.id, &received.timestamp, &received.raw)
        .is_some_and(|expected| received.signature.split(' ').any(|s| s == expected))
}

/// The `v1,` signature `secret` gives this message.
pub fn expected_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}
