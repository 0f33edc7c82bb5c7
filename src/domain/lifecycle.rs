//! The lifecycle log: one record per state change of a credential or its owner (created,
//! changed, revoked, expired), written by the store in the same transaction as the change, so
//! a change never commits without its record and a record never exists without its change.
//!
//! The log is the one source for the audit trail (`ListAuditRecords`), the event stream
//! (`WatchEvents`), webhooks, and (filtered to the records that take something away) the
//! revocation feed every replica reads and `WatchRevocations`. Records hold ids and request
//! metadata, never a secret: where a record must name a credential by value it holds an HMAC
//! of it under the audit key ([`AuditKey::credential_hmac`]). Each record's `hash` chains over
//! the previous record's under the same key, so an edited or deleted row is detected by
//! `admin verify-audit` (and cannot be re-chained without the key).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::{
    caller::Caller,
    ids::{CommandId, RequestId, SessionId, TeamId, TokenId, UserId},
    model::{Revocation, UnixMillis},
    secret::{PlainToken, ServerKey},
};

macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What a record says happened.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $($(#[$doc])* $variant,)*
        }

        impl Action {
            /// Every action, in the order of this table.
            pub const ALL: &[Action] = &[$(Action::$variant,)*];

            /// The stored and public name, e.g. `access_token.created`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }

            /// The action named `name`, if there is one.
            pub fn parse(name: &str) -> Option<Action> {
                match name {
                    $($name => Some(Action::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

actions! {
    /// A user or bot was created.
    UserCreated => "user.created",
    /// A user's roles were changed.
    UserRolesChanged => "user.roles_changed",
    /// A user was deactivated (their sessions revoked).
    UserDeactivated => "user.deactivated",
    /// A user was reactivated.
    UserReactivated => "user.reactivated",
    /// A personal access token was created.
    AccessTokenCreated => "access_token.created",
    /// A personal access token was disabled.
    AccessTokenDisabled => "access_token.disabled",
    /// A personal access token was enabled again.
    AccessTokenEnabled => "access_token.enabled",
    /// A personal access token was revoked (deleted).
    AccessTokenRevoked => "access_token.revoked",
    /// A personal access token's secret was replaced (same id; the old secret's digest is
    /// kept to recognise its reuse).
    AccessTokenRotated => "access_token.rotated",
    /// A secret that a rotation replaced was presented after its grace period: someone holds
    /// a copy of a credential that was meant to be dead.
    AccessTokenReuseDetected => "access_token.reuse_detected",
    /// A personal access token bound to address blocks (`bound_cidrs`) was presented from
    /// an address outside them and refused; the record's `ip` (and `detail.address`) names
    /// the address.
    AccessTokenAddressRefused => "access_token.address_refused",
    /// An expired personal access token was deleted by the cleanup job.
    AccessTokenExpired => "access_token.expired",
    /// A personal access token's owner is warned that it expires within 7, 3 or 1 days.
    AccessTokenExpiring => "access_token.expiring",
    /// A personal access token was used from an address that is not among its recent ones
    /// (recorded by the last-use flush, so up to `last_use.flush_interval` after the use).
    AccessTokenUsedFromNewAddress => "access_token.used_from_new_address",
    /// A personal access token was reported as leaked (ReportLeakedTokens) and revoked.
    AccessTokenLeaked => "access_token.leaked",
    /// A session was created (a login, or the session minted at a token's first use).
    SessionCreated => "session.created",
    /// One session was revoked (or logged out).
    SessionRevoked => "session.revoked",
    /// A login session's token was reported as leaked (ReportLeakedTokens) and the session
    /// ended.
    SessionLeaked => "session.leaked",
    /// Sessions of one user were revoked: all of them, or the least recently active ones
    /// beyond the per-user cap.
    UserSessionsRevoked => "user.sessions_revoked",
    /// Every session of every user was revoked.
    AllSessionsRevoked => "sessions.all_revoked",
    /// A slash command was created.
    CommandCreated => "command.created",
    /// A slash command's token was regenerated.
    CommandTokenRegenerated => "command.token_regenerated",
    /// A user was added to a team.
    TeamMemberAdded => "team_member.added",
    /// A webhook endpoint was created.
    WebhookCreated => "webhook.created",
    /// A webhook endpoint was changed.
    WebhookUpdated => "webhook.updated",
    /// A webhook endpoint was deleted.
    WebhookDeleted => "webhook.deleted",
    /// A webhook endpoint's signing secret was rotated.
    WebhookSecretRotated => "webhook.secret_rotated",
    /// A webhook endpoint kept failing and was disabled.
    WebhookDisabled => "webhook.disabled",
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who caused a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An authenticated user (or bot).
    User(UserId),
    /// The operator on the machine (the `admin` CLI, directly or over the local socket).
    Operator,
    /// The service itself (a background job).
    Service,
    /// Not recorded (records moved from the revocation log of earlier versions), or not
    /// known (whoever presented a secret that a rotation replaced).
    Unknown,
}

impl Actor {
    /// The actor of a change made by `caller`.
    pub fn of(caller: &Caller) -> Self {
        match caller.user_id() {
            Some(id) => Actor::User(id.clone()),
            None => Actor::Operator,
        }
    }

    /// The stored kind: `user`, `operator`, `service` or `unknown`.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::Operator => "operator",
            Actor::Service => "service",
            Actor::Unknown => "unknown",
        }
    }

    /// The user id, or "".
    pub fn id(&self) -> &str {
        match self {
            Actor::User(id) => id.as_str(),
            _ => "",
        }
    }

    /// The actor of a stored kind and id.
    pub fn from_stored(kind: &str, id: &str) -> Self {
        match kind {
            "user" => Actor::User(UserId::from_trusted(id.to_owned())),
            "operator" => Actor::Operator,
            "service" => Actor::Service,
            _ => Actor::Unknown,
        }
    }
}

/// Where the request that caused a change came from, as a record stores it. Records read it
/// with [`Origin::current`] from the [`RequestOrigin`] the transports' request layer sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The client's address (the peer's, or the trusted proxy header's).
    pub ip: String,
    /// The client's `User-Agent`, cut to [`MAX_USER_AGENT_BYTES`].
    pub user_agent: String,
    /// The request id (`X-Request-ID`, the trace's `request_id`).
    pub request_id: String,
}

/// Longest user agent kept, in bytes.
pub const MAX_USER_AGENT_BYTES: usize = 256;

tokio::task_local! {
    static ORIGIN: RequestOrigin;
}

/// What the request layer knows of every request, kept cheap (no formatting, one allocation
/// at most) because most requests change nothing and never read it.
#[derive(Debug, Clone, Default)]
pub struct RequestOrigin {
    /// The client's address.
    pub ip: Option<std::net::IpAddr>,
    /// The `User-Agent` header, as sent (shared: a client sends the same one on every
    /// request, and the transport hands out one copy per thread for it).
    pub user_agent: Option<std::sync::Arc<str>>,
    /// The request's id.
    pub request_id: Option<RequestId>,
    /// When the personal access token the request's caller authenticated with expires (or
    /// the end of a rotated-away secret's grace period, if sooner); 0 when it does not, when
    /// the caller used another credential, or before anyone authenticated. Noted by the
    /// transport once it knows the caller ([`RequestOrigin::note_credential_expiry`]), read
    /// back by the request layer for the response's `token-expiration` header. A copy made
    /// for a nested scope notes its own.
    pub credential_expiry: std::cell::Cell<UnixMillis>,
    /// Whether the request's body had arrived in full (noted by the gRPC deadline's body
    /// wrapper, `deadline::TrackedBody::noted_in_origin`; unused elsewhere).
    pub request_received: std::cell::Cell<bool>,
}

impl RequestOrigin {
    /// Runs `future` with `self` as the current request's origin.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        self.scoped(future).await
    }

    /// `future` with `self` as the current request's origin, as a future the request layer
    /// can hold unboxed; its `take_value` gives the origin back once `future` is done.
    pub fn scoped<F: Future>(self, future: F) -> tokio::task::futures::TaskLocalFuture<Self, F> {
        ORIGIN.scope(self, future)
    }

    /// Notes that the current request's body arrived in full (see
    /// [`RequestOrigin::request_received`]); nothing outside a request.
    pub fn note_request_received() {
        let _ = ORIGIN.try_with(|origin| origin.request_received.set(true));
    }

    /// Whether the current request's body was noted as arrived in full; true outside a
    /// request (nothing is known to be missing).
    pub fn request_received() -> bool {
        ORIGIN
            .try_with(|origin| origin.request_received.get())
            .unwrap_or(true)
    }

    /// Notes, for the current request, when its caller's credential expires (see
    /// [`RequestOrigin::credential_expiry`]); nothing outside a request.
    pub fn note_credential_expiry(expires_at: UnixMillis) {
        let _ = ORIGIN.try_with(|origin| origin.credential_expiry.set(expires_at));
    }

    /// Calls `f` with the current request's origin (borrowed, nothing copied), or with
    /// `None` outside a request.
    pub fn with_current<R>(f: impl FnOnce(Option<&RequestOrigin>) -> R) -> R {
        let mut f = Some(f);
        match ORIGIN.try_with(|o| (f.take().expect("called once"))(Some(o))) {
            Ok(r) => r,
            Err(_) => (f.take().expect("not called"))(None),
        }
    }
}

impl Origin {
    /// An origin, with the user agent cut to its maximum length (at a character boundary)
    /// and the address to 64 bytes.
    pub fn new(ip: &str, user_agent: &str, request_id: &str) -> Self {
        Self {
            ip: cut(ip, 64).to_owned(),
            user_agent: cut(user_agent, MAX_USER_AGENT_BYTES).to_owned(),
            request_id: cut(request_id, 64).to_owned(),
        }
    }

    /// The origin of the request being served, or an empty one outside a request.
    pub fn current() -> Self {
        ORIGIN
            .try_with(|o| {
                Origin::new(
                    &o.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    o.user_agent.as_deref().unwrap_or(""),
                    o.request_id.as_ref().map_or("", RequestId::as_str),
                )
            })
            .unwrap_or_default()
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub(crate) fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The ids a record is about; each may be absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subjects {
    pub user_id: String,
    pub token_id: String,
    pub session_id: String,
    pub command_id: String,
    pub team_id: String,
    pub webhook_id: String,
}

/// A record to append, before the log gives it an id, a time and a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub action: Action,
    pub actor: Actor,
    pub subjects: Subjects,
    pub origin: Origin,
    /// A JSON object, as text.
    pub detail: String,
    /// Hex HMAC of a credential's value under the audit key, or "".
    pub credential_hmac: String,
    /// What the change takes away, if anything: replicas drop it from their caches.
    pub revocation: Option<Revocation>,
}

impl NewRecord {
    /// A record of a change `caller` made, in the current request.
    pub fn by(caller: &Caller, action: Action) -> Self {
        Self::new_with(action, Actor::of(caller), Origin::current())
    }

    /// A record of a change the service made by itself (a job).
    pub fn by_service(action: Action) -> Self {
        Self::new_with(action, Actor::Service, Origin::default())
    }

    /// A record with an explicit actor and origin.
    pub fn new_with(action: Action, actor: Actor, origin: Origin) -> Self {
        Self {
            action,
            actor,
            subjects: Subjects::default(),
            origin,
            detail: "{}".to_owned(),
            credential_hmac: String::new(),
            revocation: None,
        }
    }

    /// About user `id`.
    pub fn user(mut self, id: &UserId) -> Self {
        self.subjects.user_id = id.to_string();
        self
    }

    /// About personal access token `id`.
    pub fn token(mut self, id: &TokenId) -> Self {
        self.subjects.token_id = id.to_string();
        self
    }

    /// About session `id`.
    pub fn session(mut self, id: &SessionId) -> Self {
        self.subjects.session_id = id.to_string();
        self
    }

    /// About slash command `id`.
    pub fn command(mut self, id: &CommandId) -> Self {
        self.subjects.command_id = id.to_string();
        self
    }

    /// About team `id`.
    pub fn team(mut self, id: &TeamId) -> Self {
        self.subjects.team_id = id.to_string();
        self
    }

    /// About webhook endpoint `id`.
    pub fn webhook(mut self, id: &str) -> Self {
        self.subjects.webhook_id = id.to_owned();
        self
    }

    /// With `detail` (a JSON object; anything else is wrapped as `{"value": ...}`).
    pub fn detail(mut self, detail: Value) -> Self {
        let object = match detail {
            Value::Object(map) => map,
            other => Map::from_iter([("value".to_owned(), other)]),
        };
        self.detail = Value::Object(object).to_string();
        self
    }

    /// Naming a credential by value: its HMAC under the audit key.
    pub fn credential(mut self, key: &AuditKey, value: &PlainToken) -> Self {
        self.credential_hmac = key.credential_hmac(value.expose());
        self
    }

    /// Taking `revocation` away.
    pub fn revokes(mut self, revocation: Revocation) -> Self {
        self.revocation = Some(revocation);
        self
    }
}

/// A record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleRecord {
    /// Position in the log, in commit order.
    pub id: i64,
    pub create_at: UnixMillis,
    pub record: NewRecord,
    /// Hex HMAC chained over the previous record's hash; "" for records outside the chain.
    pub hash: String,
}

impl LifecycleRecord {
    /// The hash this record must carry after a record with hash `previous`.
    pub fn chained_hash(&self, key: &AuditKey, previous: &str) -> String {
        self.stored().chained_hash(key, previous)
    }

    /// The public JSON shape (webhook payloads, the audit listing, the admin CLI): empty
    /// subjects and origin fields are left out; `time` is RFC 3339.
    pub fn to_json(&self) -> Value {
        self.stored().to_json()
    }

    /// The record as stored: every field as its text.
    pub fn stored(&self) -> StoredRecord {
        let r = &self.record;
        let (revokes, revokes_id) = r
            .revocation
            .as_ref()
            .map_or(("", ""), |rev| (rev.kind(), rev.subject_id()));
        StoredRecord {
            id: self.id,
            create_at: self.create_at,
            action: r.action.as_str().to_owned(),
            actor_type: r.actor.kind().to_owned(),
            actor_id: r.actor.id().to_owned(),
            subjects: r.subjects.clone(),
            origin: r.origin.clone(),
            detail: r.detail.clone(),
            credential_hmac: r.credential_hmac.clone(),
            revokes: revokes.to_owned(),
            revokes_id: revokes_id.to_owned(),
            hash: self.hash.clone(),
        }
    }
}

/// A record as stored, every field as its text: what the hash chain covers, and what the
/// audit trail shows. Unlike [`LifecycleRecord`] it also holds records this version cannot
/// interpret (an action, actor kind or revocation kind written by a newer version), so they
/// are listed and verified like any other instead of being dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredRecord {
    /// Position in the log, in commit order.
    pub id: i64,
    pub create_at: UnixMillis,
    /// The action's name ([`Action::as_str`], or one this version does not know).
    pub action: String,
    /// `user`, `operator`, `service` or `unknown` ([`Actor::kind`]).
    pub actor_type: String,
    /// The acting user's id, or "".
    pub actor_id: String,
    pub subjects: Subjects,
    pub origin: Origin,
    /// A JSON object, as text.
    pub detail: String,
    /// Hex HMAC of a credential's value under the audit key, or "".
    pub credential_hmac: String,
    /// The kind of what the change takes away ([`Revocation::kind`]), or "".
    pub revokes: String,
    /// The id of what it takes away ("" for every session, or nothing).
    pub revokes_id: String,
    /// Hex HMAC chained over the previous record's hash; "" for records outside the chain.
    pub hash: String,
}

impl StoredRecord {
    /// The action, if this version knows it.
    pub fn known_action(&self) -> Option<Action> {
        Action::parse(&self.action)
    }

    /// The record as this version interprets it; `None` for an action it does not know
    /// (written by a newer one). A revocation kind it does not know revokes everything.
    pub fn into_record(self) -> Option<LifecycleRecord> {
        let action = self.known_action()?;
        let revocation = if self.revokes.is_empty() {
            None
        } else {
            Some(Revocation::from_stored(&self.revokes, self.revokes_id).unwrap_or(Revocation::All))
        };
        Some(LifecycleRecord {
            id: self.id,
            create_at: self.create_at,
            record: NewRecord {
                action,
                actor: Actor::from_stored(&self.actor_type, &self.actor_id),
                subjects: self.subjects,
                origin: self.origin,
                detail: self.detail,
                credential_hmac: self.credential_hmac,
                revocation,
            },
            hash: self.hash,
        })
    }

    /// The hash this record must carry after a record with hash `previous`: an HMAC under
    /// the audit key over the previous hash and every field, as stored.
    pub fn chained_hash(&self, key: &AuditKey, previous: &str) -> String {
        let s = &self.subjects;
        // A JSON array: every field delimited and escaped, in a fixed order.
        let fields = json!([
            previous,
            self.id,
            self.create_at,
            self.action,
            self.actor_type,
            self.actor_id,
            s.user_id,
            s.token_id,
            s.session_id,
            s.command_id,
            s.team_id,
            s.webhook_id,
            self.origin.ip,
            self.origin.user_agent,
            self.origin.request_id,
            self.detail,
            self.credential_hmac,
            self.revokes,
            self.revokes_id,
        ]);
        key.mac_hex(b"chain\0", fields.to_string().as_bytes())
    }

    /// The public JSON shape (see [`LifecycleRecord::to_json`]); without the hash.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id));
        out.insert("time".into(), json!(rfc3339(self.create_at)));
        out.insert("create_at".into(), json!(self.create_at));
        out.insert("action".into(), json!(self.action));
        let mut actor = Map::new();
        actor.insert("type".into(), json!(self.actor_type));
        if !self.actor_id.is_empty() {
            actor.insert("id".into(), json!(self.actor_id));
        }
        out.insert("actor".into(), Value::Object(actor));
        let s = &self.subjects;
        for (name, value) in [
            ("user_id", &s.user_id),
            ("token_id", &s.token_id),
            ("session_id", &s.session_id),
            ("command_id", &s.command_id),
            ("team_id", &s.team_id),
            ("webhook_id", &s.webhook_id),
            ("ip", &self.origin.ip),
            ("user_agent", &self.origin.user_agent),
            ("request_id", &self.origin.request_id),
            ("credential_hmac", &self.credential_hmac),
        ] {
            if !value.is_empty() {
                out.insert(name.into(), json!(value));
            }
        }
        let detail = serde_json::from_str(&self.detail).unwrap_or_else(|_| json!({}));
        out.insert("detail".into(), detail);
        if !self.revokes.is_empty() {
            out.insert(
                "revokes".into(),
                json!({"kind": self.revokes, "id": self.revokes_id}),
            );
        }
        Value::Object(out)
    }
}

/// `ms` as RFC 3339 in UTC with milliseconds.
pub fn rfc3339(ms: UnixMillis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// Which records a reader wants: WatchEvents subscribers and webhook endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    /// Only these actions; empty means all.
    pub actions: Vec<Action>,
    /// Only records about this user.
    pub user_id: Option<UserId>,
}

impl RecordFilter {
    /// Whether `record` passes.
    pub fn matches(&self, record: &LifecycleRecord) -> bool {
        (self.actions.is_empty() || self.actions.contains(&record.record.action))
            && self
                .user_id
                .as_ref()
                .is_none_or(|id| record.record.subjects.user_id == id.as_str())
    }
}

/// The audit key: chains the log's hashes and computes the HMACs that name credentials in
/// records. Derived from the server key unless configured (`audit.key`), so a deployment can
/// hold it apart from the server key.
#[derive(Clone)]
pub struct AuditKey {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

impl AuditKey {
    /// The configured key, or one derived from the server key.
    pub fn new(server_key: &ServerKey, configured: Option<&ServerKey>) -> Self {
        let key = match configured {
            Some(key) => key.bytes().to_vec(),
            None => {
                let mut derive =
                    Hmac::<Sha256>::new_from_slice(server_key.bytes()).expect("any key length");
                derive.update(b"token-service audit key v1");
                derive.finalize().into_bytes().to_vec()
            }
        };
        Self {
            mac: Hmac::<Sha256>::new_from_slice(&key).expect("any key length"),
        }
    }

    /// The HMAC that names a credential (a token's value) in records: an operator holding a
    /// suspect token finds its records by it (`admin audit-hash`, the `credential_hmac`
    /// filter of `ListAuditRecords`).
    pub fn credential_hmac(&self, value: &str) -> String {
        self.mac_hex(b"credential\0", value.as_bytes())
    }

    /// Hex HMAC of `message` under the key, in the separate `domain` of one use.
    pub(super) fn mac_hex(&self, domain: &[u8], message: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(domain);
        mac.update(message);
        super::secret::to_hex(&mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AuditKey {
        AuditKey::new(&ServerKey::from_hex(&"ab".repeat(32)).unwrap(), None)
    }

    #[test]
    fn action_names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(*action));
            assert!(seen.insert(action.as_str()), "{action} twice");
        }
        assert_eq!(Action::parse("access_token.stolen"), None);
    }

    #[test]
    fn every_field_is_in_the_chain() {
        let record = LifecycleRecord {
            id: 7,
            create_at: 1,
            record: NewRecord::by_service(Action::UserCreated).detail(json!({"a": 1})),
            hash: String::new(),
        };
        let base = record.chained_hash(&key(), "prev");
        assert_ne!(base, record.chained_hash(&key(), "other"));
        let mut changed = record.clone();
        changed.record.origin.ip = "10.0.0.1".into();
        assert_ne!(base, changed.chained_hash(&key(), "prev"));
        let mut changed = record.clone();
        changed.id = 8;
        assert_ne!(base, changed.chained_hash(&key(), "prev"));
        let mut changed = record.clone();
        changed.record.revocation = Some(Revocation::All);
        assert_ne!(base, changed.chained_hash(&key(), "prev"));
        let other_key = AuditKey::new(
            &ServerKey::from_hex(&"ab".repeat(32)).unwrap(),
            Some(&ServerKey::from_hex(&"cd".repeat(32)).unwrap()),
        );
        assert_ne!(base, record.chained_hash(&other_key, "prev"));
    }

    #[test]
    fn the_chain_hash_is_pinned_and_covers_records_of_unknown_actions() {
        let record = LifecycleRecord {
            id: 7,
            create_at: 1_700_000_000_000,
            record: NewRecord::by_service(Action::AccessTokenRevoked)
                .detail(json!({"a": 1}))
                .revokes(Revocation::All),
            hash: String::new(),
        };
        // Changing how the hash is computed breaks the check of every stored record.
        assert_eq!(record.chained_hash(&key(), "prev"), PINNED_HASH);
        let mut stored = record.stored();
        assert_eq!(stored.known_action(), Some(Action::AccessTokenRevoked));
        stored.action = "access_token.teleported".into();
        assert_eq!(stored.known_action(), None);
        assert_ne!(stored.chained_hash(&key(), "prev"), PINNED_HASH);
        assert_eq!(stored.to_json()["action"], "access_token.teleported");
    }

    // Computed independently: HMAC-SHA256(audit key, "chain\0" + the compact JSON array).
    const PINNED_HASH: &str = "dbb25d6341305c8c62f1d9a6faf9b292a05e0b4bf52d1971c2423874d7861692";

    #[test]
    fn origin_is_cut_at_character_boundaries() {
        let origin = Origin::new("1.2.3.4", &"é".repeat(200), "rid");
        assert!(origin.user_agent.len() <= MAX_USER_AGENT_BYTES);
        assert!(origin.user_agent.chars().all(|c| c == 'é'));
    }

    #[test]
    fn json_leaves_out_what_is_absent() {
        let record = LifecycleRecord {
            id: 3,
            create_at: 1_700_000_000_123,
            record: NewRecord::by_service(Action::AllSessionsRevoked).revokes(Revocation::All),
            hash: "h".into(),
        };
        let json = record.to_json();
        assert_eq!(json["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(json["actor"], json!({"type": "service"}));
        assert!(json.get("user_id").is_none());
        assert_eq!(json["revokes"], json!({"kind": "all", "id": ""}));
    }
}
