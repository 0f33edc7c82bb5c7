//! Webhooks: endpoints that receive the lifecycle log, signed as the Standard Webhooks
//! specification says (<https://www.standardwebhooks.com>), at least once and in log order
//! per endpoint.
//!
//! This module holds the endpoint rules (validation, the SSRF guard on literal addresses,
//! the secret and its rotation, the signature, the retry schedule) and the management
//! operations (permission `manage_system`). Delivery itself runs in
//! [`super::webhook_worker`]; the HTTP request is sent by a [`WebhookSender`] the server
//! installs (the domain does not speak HTTP).
//!
//! Secrets: `whsec_` + base64 of 32 random bytes, shown once (at creation and on rotation).
//! Each delivery must be signed with it, so it is stored encrypted with the command-token
//! keyring (AES-256-GCM, the endpoint id as associated data), never in plaintext.

use std::{
    fmt,
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    pin::Pin,
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tracing::info;

use super::{
    Context,
    caller::Caller,
    error::{Error, Reason, Result},
    ids::{UserId, WebhookId},
    lifecycle::{Action, NewRecord, RecordFilter, rfc3339},
    model::UnixMillis,
    permissions::Permission,
    secret::PlainToken,
    text::require_no_nul,
};

/// The prefix of a webhook signing secret (Standard Webhooks).
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a signing secret.
pub const SECRET_BYTES: usize = 32;
/// Longest URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 255;
/// Most actions in one filter.
pub const MAX_FILTER_ACTIONS: usize = 64;
/// How long a rotated-out secret keeps signing when the request names no grace period.
pub const DEFAULT_ROTATION_GRACE_MS: i64 = 24 * 3_600_000;
/// The longest grace period a rotation may ask for.
pub const MAX_ROTATION_GRACE_MS: i64 = 7 * 24 * 3_600_000;
/// The first retry waits up to this long; each further failure doubles it...
pub const BACKOFF_BASE_MS: i64 = 5_000;
/// ...up to this cap.
pub const BACKOFF_CAP_MS: i64 = 3_600_000;
/// Every retry waits at least this long (full jitter could otherwise retry at once).
pub const BACKOFF_FLOOR_MS: i64 = 1_000;
/// The lifecycle action of the message TestWebhook sends.
pub const TEST_MESSAGE_TYPE: &str = "webhook.test";
/// Longest stored error text.
pub const MAX_ERROR_BYTES: usize = 500;

/// Webhook settings the rules depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// Accept loopback, private, link-local, unspecified and multicast addresses.
    pub allow_private_addresses: bool,
    /// How long one delivery may take.
    pub timeout_ms: u64,
    /// How long a delivery lease lasts without renewal.
    pub lease_ms: i64,
    /// An endpoint failing continuously this long is disabled.
    pub disable_after_ms: i64,
    /// How often each replica looks for due endpoints (real time).
    pub poll_interval_ms: u64,
}

impl Default for WebhookPolicy {
    fn default() -> Self {
        Self {
            allow_private_addresses: false,
            timeout_ms: 10_000,
            lease_ms: 30_000,
            disable_after_ms: 3 * 86_400_000,
            poll_interval_ms: 1_000,
        }
    }
}

/// Which lifecycle records an endpoint receives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookFilter {
    /// Action names (`access_token.revoked`); empty: every action.
    pub actions: Vec<String>,
    /// Only records whose subject user is this one; `None`: any.
    pub user_id: Option<UserId>,
}

impl WebhookFilter {
    /// The log reader's filter (an action this version does not know selects nothing).
    pub fn record_filter(&self) -> RecordFilter {
        RecordFilter {
            actions: self
                .actions
                .iter()
                .filter_map(|a| Action::parse(a))
                .collect(),
            user_id: self.user_id.clone(),
        }
    }

    /// Whether it selects nothing at all (every action named is unknown to this version).
    pub fn selects_nothing(&self) -> bool {
        !self.actions.is_empty() && self.actions.iter().all(|a| Action::parse(a).is_none())
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "actions": self.actions,
            "user_id": self.user_id.as_ref().map(UserId::as_str).unwrap_or_default(),
        })
    }
}

/// Where an endpoint's delivery stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryState {
    /// The id of the last lifecycle record delivered (or passed over by the filter).
    pub delivered_through: i64,
    /// Failed attempts since the last success.
    pub attempts: u32,
    /// When the next attempt is due (0: as soon as there is something to send).
    pub next_attempt_at: UnixMillis,
    /// When the current run of failures began (0: not failing).
    pub failing_since: UnixMillis,
    /// What the last failed attempt met (a status or a transport error; never a secret).
    pub last_error: String,
    /// When a delivery was last attempted (0: never).
    pub last_attempt_at: UnixMillis,
    /// When a delivery last succeeded (0: never).
    pub last_success_at: UnixMillis,
}

/// A webhook endpoint, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: String,
    pub description: String,
    pub filter: WebhookFilter,
    pub enabled: bool,
    /// Why delivery disabled the endpoint ("" unless it did).
    pub disabled_reason: String,
    /// Until when the secret replaced by the last rotation still signs (0: none).
    pub previous_secret_expires_at: UnixMillis,
    pub delivery: DeliveryState,
    pub create_at: UnixMillis,
    pub update_at: UnixMillis,
}

/// An endpoint as delivery needs it: the endpoint and its encrypted secrets.
#[derive(Debug, Clone)]
pub struct StoredWebhook {
    pub webhook: Webhook,
    /// The current secret, encrypted.
    pub secret_ciphertext: String,
    /// The secret replaced by the last rotation, encrypted ("" if none).
    pub previous_secret_ciphertext: String,
}

/// A signing secret: `whsec_` + base64 of 32 random bytes. Redacted in `Debug`; no
/// `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// A new random secret.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
        let secret = format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes));
        super::secret::minted::note(&secret);
        Ok(Self(secret))
    }

    /// Wraps a secret in its text form (as stored or as a receiver was given it).
    pub fn from_text(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret, to hand to the endpoint's owner exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The HMAC key: the base64-decoded part after `whsec_` (the whole text if it does not
    /// decode, as the reference libraries accept raw secrets too).
    fn key(&self) -> Vec<u8> {
        let encoded = self.0.strip_prefix(SECRET_PREFIX).unwrap_or(&self.0);
        STANDARD
            .decode(encoded)
            .unwrap_or_else(|_| self.0.as_bytes().to_vec())
    }

    /// The Standard Webhooks signature of one message: `v1,` + base64(HMAC-SHA256(key,
    /// "{msg_id}.{timestamp}.{body}")).
    pub fn sign(&self, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key()).expect("any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_secs.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// The `webhook-signature` header value: one signature per secret, space-separated (the
/// current secret first; during a rotation's grace period the previous one too).
pub fn signature_header(
    secrets: &[WebhookSecret],
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| s.sign(msg_id, timestamp_secs, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One signed message, ready to send.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub url: String,
    /// `webhook-id`: `msg_<record id>`, the same on every retry.
    pub id: String,
    /// `webhook-timestamp`: Unix seconds of this attempt.
    pub timestamp_secs: i64,
    /// `webhook-signature`.
    pub signature: String,
    /// The JSON body.
    pub body: Vec<u8>,
    /// Longest the attempt may take.
    pub timeout: Duration,
    /// Whether private addresses may be reached (the sender's resolver checks every
    /// address a host name resolves to).
    pub allow_private_addresses: bool,
}

/// What one attempt met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The endpoint answered with this HTTP status.
    Status(u16),
    /// No answer: the error, in words (never a secret).
    Failed(String),
}

impl SendOutcome {
    /// A 2xx answer.
    pub fn is_success(&self) -> bool {
        matches!(self, SendOutcome::Status(s) if (200..300).contains(s))
    }

    /// How a failure is recorded (`last_error`).
    pub fn describe(&self) -> String {
        match self {
            SendOutcome::Status(s) => format!("HTTP status {s}"),
            SendOutcome::Failed(e) => truncate(e, MAX_ERROR_BYTES),
        }
    }
}

/// A boxed future, so the sender trait stays object safe.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = SendOutcome> + Send + 'a>>;

/// Sends one message over HTTP: the server installs one (`crate::webhook_delivery`); the
/// domain never speaks HTTP itself.
pub trait WebhookSender: Send + Sync + fmt::Debug {
    /// POSTs `message` as JSON with the three Standard Webhooks headers; follows no
    /// redirect; refuses private addresses unless the message allows them.
    fn send(&self, message: OutgoingMessage) -> SendFuture<'_>;
}

/// What CreateWebhook asks for.
#[derive(Debug, Clone, Default)]
pub struct NewWebhook {
    pub url: String,
    pub description: String,
    /// Action names; empty: every action.
    pub actions: Vec<String>,
    /// A subject user id; empty: any.
    pub user_id: String,
}

/// What UpdateWebhook asks for: each `Some` replaces the stored value.
#[derive(Debug, Clone, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub description: Option<String>,
    /// A new filter: (actions, user id); replaces the stored one whole.
    pub filter: Option<(Vec<String>, String)>,
    pub enabled: Option<bool>,
}

/// The columns an update writes (the domain's decision, applied by the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookWrite {
    pub url: String,
    pub description: String,
    pub filter: WebhookFilter,
    pub enabled: bool,
    /// Re-enabling: forget the failures (attempts, schedule, error, disabled reason).
    pub reset_failures: bool,
    pub update_at: UnixMillis,
}

/// What a failed attempt writes (the domain's decision).
#[derive(Debug, Clone)]
pub struct FailureWrite {
    pub attempts: u32,
    pub next_attempt_at: UnixMillis,
    /// Kept if the endpoint is already failing.
    pub failing_since: UnixMillis,
    pub last_error: String,
    pub attempted_at: UnixMillis,
    /// Disable the endpoint, for this reason.
    pub disable: Option<String>,
    /// The `webhook.disabled` record, appended with the disable in one transaction.
    pub disabled_record: Option<NewRecord>,
}

/// A new endpoint and its secret (shown once).
#[derive(Debug)]
pub struct CreatedWebhook {
    pub webhook: Webhook,
    pub secret: WebhookSecret,
}

/// What TestWebhook met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The `webhook-id` sent.
    pub message_id: String,
    pub outcome: SendOutcome,
    pub elapsed: Duration,
}

/// Whether `action` names a lifecycle action.
pub fn is_known_action(action: &str) -> bool {
    Action::parse(action).is_some()
}

/// Checks a webhook URL: an absolute `http` or `https` URL with a host, no user
/// information, at most [`MAX_URL_BYTES`]; a literal IP address must not be loopback,
/// private, link-local, unspecified or multicast unless `allow_private`. (Host names are
/// checked when they are resolved, at every delivery.)
pub fn validate_url(raw: &str, allow_private: bool) -> Result<url::Url> {
    let invalid = |rule: &str| Error::invalid("url", Reason::InvalidWebhookUrl, rule);
    if raw.is_empty() {
        return Err(invalid("is required"));
    }
    if raw.len() > MAX_URL_BYTES {
        return Err(invalid(&format!("must be at most {MAX_URL_BYTES} bytes")));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("must not contain spaces or control characters"));
    }
    let url =
        url::Url::parse(raw).map_err(|e| invalid(&format!("is not an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must be an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "must not contain user information (user:password@); authenticate receivers by the signature",
        ));
    }
    let refused = |ip: IpAddr| {
        Error::invalid(
            "url",
            Reason::WebhookAddressRefused,
            format!(
                "{ip} is a loopback, private, link-local, unspecified or multicast address \
                 (allowed only with webhooks.allow_private_addresses)"
            ),
        )
    };
    match url.host() {
        None => return Err(invalid("must name a host")),
        Some(url::Host::Domain("")) => {
            return Err(invalid("must name a host"));
        }
        Some(url::Host::Ipv4(ip)) if !allow_private && is_non_public(IpAddr::V4(ip)) => {
            return Err(refused(IpAddr::V4(ip)));
        }
        Some(url::Host::Ipv6(ip)) if !allow_private && is_non_public(IpAddr::V6(ip)) => {
            return Err(refused(IpAddr::V6(ip)));
        }
        Some(_) => {}
    }
    Ok(url)
}

/// Whether an address is one a webhook must not reach unless private addresses are allowed:
/// loopback, private (RFC 1918, IPv6 unique local), shared (100.64/10), link-local,
/// unspecified, multicast, broadcast, documentation, benchmarking and reserved ranges, and
/// IPv4 addresses embedded in IPv6 (mapped, compatible, 6to4, NAT64) that are any of these.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_non_public_v4(v4);
            }
            let s = v6.segments();
            // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an
            // IPv4 address that may be local.
            if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let v4 =
                    Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                return v6.is_unspecified() || v6.is_loopback() || is_non_public_v4(v4);
            }
            if s[0] == 0x2002 {
                let v4 =
                    Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
                return is_non_public_v4(v4);
            }
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0)
        }
    }
}

fn is_non_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

/// Checks a description.
fn validate_description(description: &str) -> Result<()> {
    require_no_nul("description", description)?;
    if description.len() > MAX_DESCRIPTION_BYTES {
        return Err(Error::invalid(
            "description",
            Reason::InvalidWebhookDescription,
            format!("must be at most {MAX_DESCRIPTION_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Checks a filter: every action known (duplicates dropped, order kept), the user id a
/// valid id or empty.
fn validate_filter(actions: &[String], user_id: &str) -> Result<WebhookFilter> {
    if actions.len() > MAX_FILTER_ACTIONS {
        return Err(Error::invalid(
            "filter.actions",
            Reason::InvalidWebhookAction,
            format!("must list at most {MAX_FILTER_ACTIONS} actions"),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for action in actions {
        if !is_known_action(action) {
            return Err(Error::invalid(
                "filter.actions",
                Reason::InvalidWebhookAction,
                format!(
                    "unknown action {:?}; the lifecycle actions are named like \"access_token.revoked\"",
                    truncate(action, 64)
                ),
            ));
        }
        if !out.contains(action) {
            out.push(action.clone());
        }
    }
    let user_id = if user_id.is_empty() {
        None
    } else {
        Some(UserId::parse(
            user_id,
            "filter.user_id",
            Reason::InvalidBodyParam,
        )?)
    };
    Ok(WebhookFilter {
        actions: out,
        user_id,
    })
}

/// The host (and port) a URL names, for the log: never its path or query, which may carry
/// a receiver's own credentials.
fn url_host(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => String::new(),
    }
}

/// A webhook id from a request.
fn parse_id(raw: &str) -> Result<WebhookId> {
    WebhookId::parse(raw, "webhook_id", Reason::InvalidUrlParam)
}

fn not_found() -> Error {
    Error::NotFound {
        reason: Reason::WebhookNotFound,
    }
}

/// The associated data a secret of `id` is encrypted with (distinct from command ids).
pub(crate) fn secret_aad(id: &WebhookId) -> String {
    format!("webhook:{id}")
}

/// The retry delay after the `attempts`-th consecutive failure: exponential (5 s, doubling,
/// capped at 1 h) with full jitter (uniform in [floor, ceiling]), at least 1 s. `random` is a
/// uniformly random `u64`.
pub fn backoff_ms(attempts: u32, random: u64) -> i64 {
    let exponent = attempts.saturating_sub(1).min(20);
    let ceiling = BACKOFF_BASE_MS
        .saturating_mul(1i64 << exponent)
        .min(BACKOFF_CAP_MS);
    let span = u64::try_from(ceiling - BACKOFF_FLOOR_MS).unwrap_or(0) + 1;
    BACKOFF_FLOOR_MS + i64::try_from(random % span).unwrap_or(0)
}

/// A random `u64` for jitter.
pub(crate) fn jitter() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl Context {
    /// The installed HTTP sender.
    fn sender(&self) -> Result<&dyn WebhookSender> {
        self.webhook_sender()
            .ok_or_else(|| Error::internal("no webhook sender is installed"))
    }

    /// Decrypts an endpoint's secrets that still sign at `now`: the current one, and the
    /// previous one during its grace period.
    pub(crate) fn signing_secrets(
        &self,
        stored: &StoredWebhook,
        now: UnixMillis,
    ) -> Result<Vec<WebhookSecret>> {
        let aad = secret_aad(&stored.webhook.id);
        let decrypt = |ciphertext: &str| {
            self.command_cipher()
                .decrypt(ciphertext, &aad)
                .map(|plain| WebhookSecret::from_text(plain.expose()))
                .map_err(Error::internal)
        };
        let mut secrets = vec![decrypt(&stored.secret_ciphertext)?];
        if !stored.previous_secret_ciphertext.is_empty()
            && stored.webhook.previous_secret_expires_at > now
        {
            secrets.push(decrypt(&stored.previous_secret_ciphertext)?);
        }
        Ok(secrets)
    }

    fn encrypt_secret(&self, secret: &WebhookSecret, id: &WebhookId) -> Result<String> {
        self.command_cipher()
            .encrypt(
                &PlainToken::from_presented(secret.expose()),
                &secret_aad(id),
            )
            .map_err(Error::internal)
    }

    /// Signs and sends one message to `stored`'s URL.
    pub(crate) async fn send_signed(
        &self,
        stored: &StoredWebhook,
        message_id: String,
        body: Vec<u8>,
    ) -> Result<SendOutcome> {
        let now = self.now();
        let secrets = self.signing_secrets(stored, now)?;
        let timestamp_secs = now.div_euclid(1000);
        let policy = self.policy().webhooks;
        let message = OutgoingMessage {
            url: stored.webhook.url.clone(),
            signature: signature_header(&secrets, &message_id, timestamp_secs, &body),
            id: message_id,
            timestamp_secs,
            body,
            timeout: Duration::from_millis(policy.timeout_ms),
            allow_private_addresses: policy.allow_private_addresses,
        };
        // The URL was checked when it was stored; the setting may have changed since.
        if let Err(e) = validate_url(&message.url, policy.allow_private_addresses) {
            return Ok(SendOutcome::Failed(e.to_string()));
        }
        Ok(self.sender()?.send(message).await)
    }
}

/// Registers an endpoint; returns it with its secret (shown only here and on rotation). It
/// receives the lifecycle records appended after its own `webhook.created` record.
pub async fn create_webhook(
    ctx: &Context,
    caller: &Caller,
    request: NewWebhook,
) -> Result<CreatedWebhook> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    let policy = ctx.policy().webhooks;
    let url = validate_url(&request.url, policy.allow_private_addresses)?;
    validate_description(&request.description)?;
    let filter = validate_filter(&request.actions, &request.user_id)?;
    let now = ctx.now();
    let webhook = Webhook {
        id: WebhookId::generate(),
        url: url.to_string(),
        description: request.description,
        filter,
        enabled: true,
        disabled_reason: String::new(),
        previous_secret_expires_at: 0,
        delivery: DeliveryState::default(),
        create_at: now,
        update_at: now,
    };
    let secret = WebhookSecret::generate()?;
    let ciphertext = ctx.encrypt_secret(&secret, &webhook.id)?;
    let record = NewRecord::by(caller, Action::WebhookCreated)
        .webhook(webhook.id.as_str())
        .credential(
            ctx.audit_key(),
            &PlainToken::from_presented(secret.expose()),
        )
        .detail(json!({"host": url_host(&url), "filter": webhook.filter.to_json()}));
    let webhook = ctx
        .store()
        .insert_webhook(&webhook, &ciphertext, &record)
        .await?;
    info!(target: "audit", action = "create_webhook", webhook_id = %webhook.id,
        caller = %caller, "webhook created");
    Ok(CreatedWebhook { webhook, secret })
}

/// Every endpoint, ordered by id.
pub async fn list_webhooks(ctx: &Context, caller: &Caller) -> Result<Vec<Webhook>> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    ctx.store().list_webhooks().await
}

/// One endpoint.
pub async fn get_webhook(ctx: &Context, caller: &Caller, webhook_id: &str) -> Result<Webhook> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    let id = parse_id(webhook_id)?;
    ctx.store()
        .find_webhook(&id)
        .await?
        .map(|s| s.webhook)
        .ok_or_else(not_found)
}

/// Changes an endpoint's URL, description, filter or enabled state. Enabling a disabled
/// endpoint forgets its failures: delivery resumes at once from where it stopped.
pub async fn update_webhook(
    ctx: &Context,
    caller: &Caller,
    webhook_id: &str,
    change: WebhookChange,
) -> Result<Webhook> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    let id = parse_id(webhook_id)?;
    let policy = ctx.policy().webhooks;
    let url = match &change.url {
        Some(raw) => Some(validate_url(raw, policy.allow_private_addresses)?.to_string()),
        None => None,
    };
    if let Some(description) = &change.description {
        validate_description(description)?;
    }
    let filter = match &change.filter {
        Some((actions, user_id)) => Some(validate_filter(actions, user_id)?),
        None => None,
    };
    let current = ctx
        .store()
        .find_webhook(&id)
        .await?
        .ok_or_else(not_found)?
        .webhook;
    let enabled = change.enabled.unwrap_or(current.enabled);
    let mut changed = Vec::new();
    if url.as_ref().is_some_and(|u| *u != current.url) {
        changed.push("url");
    }
    if change
        .description
        .as_ref()
        .is_some_and(|d| *d != current.description)
    {
        changed.push("description");
    }
    if filter.as_ref().is_some_and(|f| *f != current.filter) {
        changed.push("filter");
    }
    if enabled != current.enabled {
        changed.push("enabled");
    }
    let write = WebhookWrite {
        url: url.unwrap_or(current.url.clone()),
        description: change.description.unwrap_or(current.description.clone()),
        filter: filter.unwrap_or(current.filter.clone()),
        enabled,
        reset_failures: enabled && !current.enabled,
        update_at: ctx.now(),
    };
    let mut detail = json!({"changed": changed, "enabled": write.enabled});
    if changed.contains(&"url") {
        detail["host"] = json!(url_host(
            &url::Url::parse(&write.url).map_err(|e| Error::internal(e.to_string()))?
        ));
    }
    if changed.contains(&"filter") {
        detail["filter"] = write.filter.to_json();
    }
    if write.reset_failures {
        detail["failures_cleared"] = json!(true);
    }
    let record = NewRecord::by(caller, Action::WebhookUpdated)
        .webhook(id.as_str())
        .detail(detail);
    let webhook = ctx
        .store()
        .update_webhook(&id, &write, &record)
        .await?
        .ok_or_else(not_found)?;
    info!(target: "audit", action = "update_webhook", webhook_id = %webhook.id,
        enabled = webhook.enabled, caller = %caller, "webhook updated");
    Ok(webhook)
}

/// Deletes an endpoint; nothing more is sent to it.
pub async fn delete_webhook(ctx: &Context, caller: &Caller, webhook_id: &str) -> Result<()> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    let id = parse_id(webhook_id)?;
    let record = NewRecord::by(caller, Action::WebhookDeleted).webhook(id.as_str());
    if !ctx.store().delete_webhook(&id, &record, ctx.now()).await? {
        return Err(not_found());
    }
    info!(target: "audit", action = "delete_webhook", webhook_id = %id, caller = %caller,
        "webhook deleted");
    Ok(())
}

/// Replaces an endpoint's secret and returns the new one (shown only here). For
/// `grace_ms` (default 24 h, at most 7 days; 0 ends the old secret at once) deliveries carry
/// both signatures, so receivers can switch without losing a message.
pub async fn rotate_webhook_secret(
    ctx: &Context,
    caller: &Caller,
    webhook_id: &str,
    grace_ms: Option<i64>,
) -> Result<CreatedWebhook> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    let id = parse_id(webhook_id)?;
    let grace = grace_ms.unwrap_or(DEFAULT_ROTATION_GRACE_MS);
    if !(0..=MAX_ROTATION_GRACE_MS).contains(&grace) {
        return Err(Error::invalid(
            "grace_period",
            Reason::InvalidBodyParam,
            "must be between 0 and 7 days",
        ));
    }
    let secret = WebhookSecret::generate()?;
    let ciphertext = ctx.encrypt_secret(&secret, &id)?;
    let now = ctx.now();
    let previous_until = if grace == 0 { 0 } else { now + grace };
    let record = NewRecord::by(caller, Action::WebhookSecretRotated)
        .webhook(id.as_str())
        .credential(
            ctx.audit_key(),
            &PlainToken::from_presented(secret.expose()),
        )
        .detail(json!({"previous_secret_until": previous_until}));
    let webhook = ctx
        .store()
        .rotate_webhook_secret(&id, &ciphertext, previous_until, now, &record)
        .await?
        .ok_or_else(not_found)?;
    info!(target: "audit", action = "rotate_webhook_secret", webhook_id = %id,
        caller = %caller, "webhook secret rotated");
    Ok(CreatedWebhook { webhook, secret })
}

/// Sends one signed `webhook.test` message to the endpoint now (enabled or not), outside
/// the log and its order, and says what the endpoint answered. Changes nothing.
pub async fn test_webhook(ctx: &Context, caller: &Caller, webhook_id: &str) -> Result<TestResult> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    let id = parse_id(webhook_id)?;
    let stored = ctx.store().find_webhook(&id).await?.ok_or_else(not_found)?;
    let now = ctx.now();
    let message_id = format!("msg_test_{}", super::ids::new_id());
    let body = serde_json::to_vec(&serde_json::json!({
        "type": TEST_MESSAGE_TYPE,
        "timestamp": rfc3339(now),
        "data": {"webhook_id": id.as_str()},
    }))
    .map_err(|e| Error::internal(e.to_string()))?;
    let started = std::time::Instant::now();
    let outcome = ctx.send_signed(&stored, message_id.clone(), body).await?;
    Ok(TestResult {
        message_id,
        outcome,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_test_vector() {
        // The specification's example (standard-webhooks, spec/standard-webhooks.md).
        let secret = WebhookSecret::from_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_whsec_base64_of_32_bytes_and_redacted() {
        let s = WebhookSecret::generate().unwrap();
        let encoded = s.expose().strip_prefix(SECRET_PREFIX).unwrap();
        assert_eq!(STANDARD.decode(encoded).unwrap().len(), SECRET_BYTES);
        assert!(!format!("{s:?}").contains(encoded));
        let header = signature_header(
            &[s.clone(), WebhookSecret::generate().unwrap()],
            "m",
            1,
            b"{}",
        );
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], s.sign("m", 1, b"{}"));
    }

    #[test]
    fn urls_must_be_http_with_a_public_host_and_no_userinfo() {
        for good in [
            "https://hooks.example.com/x?y=1",
            "http://example.com:8080",
            "https://93.184.216.34/hook",
        ] {
            validate_url(good, false).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, reason) in [
            ("", Reason::InvalidWebhookUrl),
            ("ftp://example.com", Reason::InvalidWebhookUrl),
            ("example.com/hook", Reason::InvalidWebhookUrl),
            ("https://user:pw@example.com", Reason::InvalidWebhookUrl),
            ("https://user@example.com", Reason::InvalidWebhookUrl),
            ("https://exa mple.com", Reason::InvalidWebhookUrl),
            ("http://127.0.0.1:9/", Reason::WebhookAddressRefused),
            ("http://10.1.2.3/", Reason::WebhookAddressRefused),
            (
                "http://169.254.169.254/latest",
                Reason::WebhookAddressRefused,
            ),
            ("http://[::1]/", Reason::WebhookAddressRefused),
            ("http://[::ffff:127.0.0.1]/", Reason::WebhookAddressRefused),
            ("http://[fd00::1]/", Reason::WebhookAddressRefused),
            ("http://0.0.0.0/", Reason::WebhookAddressRefused),
            ("http://224.0.0.1/", Reason::WebhookAddressRefused),
            ("http://2130706433/", Reason::WebhookAddressRefused),
            ("http://0x7f.1/", Reason::WebhookAddressRefused),
        ] {
            let err = validate_url(bad, false).unwrap_err();
            assert_eq!(err.reason(), reason, "{bad}: {err}");
            assert!(err.to_string().starts_with("url: "), "{err}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(validate_url(&long, false).is_err());
        validate_url("http://127.0.0.1:9/", true).unwrap();
    }

    #[test]
    fn public_addresses_are_public() {
        for ip in ["8.8.8.8", "2606:4700::1111", "93.184.216.34"] {
            assert!(!is_non_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "100.64.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "fe80::1",
            "2002:7f00:1::",
            "64:ff9b::a00:1",
        ] {
            assert!(is_non_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn backoff_doubles_from_5s_to_a_1h_cap_with_jitter_and_a_floor() {
        assert_eq!(backoff_ms(1, 0), BACKOFF_FLOOR_MS);
        assert_eq!(
            backoff_ms(1, u64::MAX - (u64::MAX % 4_001)),
            BACKOFF_FLOOR_MS
        );
        assert_eq!(backoff_ms(1, 4_000), 5_000);
        assert_eq!(backoff_ms(2, 9_000), 10_000);
        assert_eq!(backoff_ms(40, 3_599_000), BACKOFF_CAP_MS);
        for attempts in 1..50 {
            for random in [0, 1, 12_345, u64::MAX] {
                let d = backoff_ms(attempts, random);
                assert!(
                    (BACKOFF_FLOOR_MS..=BACKOFF_CAP_MS).contains(&d),
                    "{attempts}: {d}"
                );
            }
        }
    }

    #[test]
    fn filters_know_their_actions() {
        let f = validate_filter(
            &["access_token.revoked".into(), "access_token.revoked".into()],
            "",
        )
        .unwrap();
        assert_eq!(f.actions, ["access_token.revoked"]);
        let err = validate_filter(&["token.eaten".into()], "").unwrap_err();
        assert_eq!(err.reason(), Reason::InvalidWebhookAction);
        assert!(err.to_string().starts_with("filter.actions: "), "{err}");
        let err = validate_filter(&[], "short").unwrap_err();
        assert!(err.to_string().starts_with("filter.user_id: "), "{err}");
    }
}
