//! The HTTP side of webhook delivery: the [`WebhookSender`] the server installs in the
//! domain's context. The rules (what to send, when, to whom) are the domain's
//! (`domain::webhooks`, `domain::webhook_worker`); this only sends one POST.
//!
//! - reqwest over HTTP/1.1, TLS by rustls with the ring provider (never aws-lc-rs), the
//!   system's root certificates; no proxy; no redirect is followed (a 3xx is a failure).
//! - Host names are resolved by [`GuardedResolver`], which refuses a name any of whose
//!   addresses is loopback, private, link-local, unspecified or multicast unless
//!   `webhooks.allow_private_addresses` is set: a name that resolved to a public address
//!   when the endpoint was created cannot later be pointed at the server's own network (DNS
//!   rebinding), since every connection is checked as it is made. Literal addresses never
//!   reach a resolver; the domain checks them before every send.
//! - The whole attempt (connect, send, answer) is bounded by `webhooks.timeout`; the
//!   answer's body is not read.

use std::{net::SocketAddr, sync::Arc};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::webhooks::{
    OutgoingMessage, SendFuture, SendOutcome, WebhookSender, is_non_public,
};

/// The `User-Agent` of every delivery.
const USER_AGENT: &str = concat!("token-service-webhooks/", env!("CARGO_PKG_VERSION"));

/// Resolves with the system resolver, then refuses non-public addresses (see the module
/// documentation).
#[derive(Debug, Clone, Copy)]
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> {
                    format!("cannot resolve {host}: {e}").into()
                })?
                .collect();
            if !allow_private && let Some(bad) = found.iter().find(|a| is_non_public(a.ip())) {
                return Err(format!(
                    "{host} resolves to {}, a loopback, private, link-local, unspecified or \
                     multicast address (allowed only with webhooks.allow_private_addresses)",
                    bad.ip()
                )
                .into());
            }
            if found.is_empty() {
                return Err(format!("{host} resolves to no address").into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// Sends webhook messages with reqwest: two clients, one refusing private addresses, one
/// allowing them; each message says which it may use.
#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    public_only: reqwest::Client,
    any_address: reqwest::Client,
}

impl HttpWebhookSender {
    /// Builds the clients.
    pub fn new() -> Result<Self, String> {
        // Ring, never aws-lc-rs: the process default provider, unless one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = |allow_private: bool| {
            reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .http1_only()
                .dns_resolver(Arc::new(GuardedResolver { allow_private }))
                .build()
                .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))
        };
        Ok(Self {
            public_only: client(false)?,
            any_address: client(true)?,
        })
    }
}

impl WebhookSender for HttpWebhookSender {
    fn send(&self, message: OutgoingMessage) -> SendFuture<'_> {
        let client = if message.allow_private_addresses {
            &self.any_address
        } else {
            &self.public_only
        };
        Box::pin(async move {
            let request = client
                .post(&message.url)
                .timeout(message.timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("webhook-id", &message.id)
                .header("webhook-timestamp", message.timestamp_secs.to_string())
                .header("webhook-signature", &message.signature)
                .body(message.body);
            match request.send().await {
                Ok(response) => SendOutcome::Status(response.status().as_u16()),
                Err(e) => SendOutcome::Failed(describe(&e)),
            }
        })
    }
}

/// A reqwest error in words, with its causes (never the URL's query, which could carry a
/// receiver's own token).
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_request() {
        "request failed"
    } else {
        "failed"
    };
    let mut causes = Vec::new();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = cause.source();
    }
    if causes.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {}", causes.join(": "))
    }
}
