//! The audit trail: the lifecycle log read back by people. `ListAuditRecords` filters it and
//! pages through it (keyset pagination behind an opaque cursor the server authenticates),
//! `ComputeAuditHash` names a suspect credential by the HMAC records hold instead of its
//! value (Vault's audit hash), and `VerifyAuditLog` walks the hash chain to show that no
//! record was edited or deleted since it was written.
//!
//! Records of actions this version does not know (written by a newer version during a
//! rolling upgrade) are listed with their stored action name and verified like any other:
//! the hash covers the stored text, not its meaning, so they are never mistaken for
//! tampering; the verification report counts them by action so an operator sees them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{
    Context,
    caller::Caller,
    error::{Error, Reason, Result},
    ids::{CommandId, SessionId, TokenId, UserId},
    lifecycle::{Action, AuditKey, StoredRecord},
    model::UnixMillis,
    paging,
    permissions::Permission,
    text::require_no_nul,
};
use crate::store::ChainLink;

/// Records per page when the request does not say.
pub const DEFAULT_PAGE_SIZE: u64 = 60;
/// Most records per page; larger requests are capped.
pub const MAX_PAGE_SIZE: u64 = 200;
/// Records one `VerifyAuditLog` call checks unless asked otherwise: a call stays well
/// within `request_timeout_ms`; the CLI calls again until the whole chain is checked.
pub const DEFAULT_VERIFY_RECORDS: u64 = 50_000;
/// Most records one `VerifyAuditLog` call checks.
pub const MAX_VERIFY_RECORDS: u64 = 1_000_000;
/// Records read per query while verifying.
const VERIFY_BATCH: u64 = 1_000;
/// Longest accepted credential value for ComputeAuditHash, in bytes.
pub const MAX_CREDENTIAL_BYTES: usize = 1024;
/// The actor kinds a record can name ([`super::lifecycle::Actor::kind`]).
pub const ACTOR_TYPES: [&str; 4] = ["user", "operator", "service", "unknown"];

/// The order of a listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Newest record first (the default).
    #[default]
    NewestFirst,
    /// Oldest record first.
    OldestFirst,
}

impl Order {
    /// How a page token names it.
    fn letter(self) -> char {
        match self {
            Order::NewestFirst => 'n',
            Order::OldestFirst => 'o',
        }
    }
}

/// A listing request as a transport received it: nothing checked yet. Empty text means
/// "no filter".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRequest {
    /// Records made at or after this time (Unix milliseconds).
    pub since: Option<UnixMillis>,
    /// Records made before this time (Unix milliseconds).
    pub until: Option<UnixMillis>,
    /// Only these actions (their names, e.g. `access_token.created`).
    pub actions: Vec<String>,
    /// Only this kind of actor: `user`, `operator`, `service` or `unknown`.
    pub actor_type: String,
    /// Only changes made by this user.
    pub actor_id: String,
    /// Only records about this user.
    pub user_id: String,
    /// Only records about this personal access token.
    pub token_id: String,
    /// Only records about this session.
    pub session_id: String,
    /// Only records about this slash command.
    pub command_id: String,
    /// Only records of requests from this client address (an IP address).
    pub ip: String,
    /// Only records of this request (`X-Request-ID`).
    pub request_id: String,
    /// Only records naming this credential (its HMAC, from ComputeAuditHash).
    pub credential_hmac: String,
    /// Records per page: absent or 0 is the default, at most [`MAX_PAGE_SIZE`].
    pub page_size: Option<i64>,
    /// Where the previous page ended (its `next_page_token`), or "" for the first page.
    pub page_token: String,
    /// Oldest record first instead of newest first.
    pub oldest_first: bool,
}

/// A checked listing: what the store runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Records made at or after this time.
    pub since: Option<UnixMillis>,
    /// Records made before this time.
    pub until: Option<UnixMillis>,
    /// Only these actions (sorted, without repeats); empty means all.
    pub actions: Vec<Action>,
    /// Only this actor kind ([`ACTOR_TYPES`]).
    pub actor_type: Option<&'static str>,
    pub actor_id: Option<UserId>,
    pub user_id: Option<UserId>,
    pub token_id: Option<TokenId>,
    pub session_id: Option<SessionId>,
    pub command_id: Option<CommandId>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// Lower-case hex.
    pub credential_hmac: Option<String>,
    pub order: Order,
    /// Only records past this one in `order` (older ones when newest first).
    pub after_id: Option<i64>,
    /// Most records to return.
    pub limit: u64,
}

/// One page of the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditPage {
    pub records: Vec<StoredRecord>,
    /// Pass it as `page_token` for the next page; "" when no record follows.
    pub next_page_token: String,
}

/// `ListAuditRecords`: one page of the records that pass the request's filters, newest
/// first unless `oldest_first`. Pages are cut by record id (keyset), so records appended
/// between two calls never shift a page: newest first, they sit before the first page;
/// oldest first, they come last. Needs `manage_system` or `read_audit`.
pub async fn list_audit_records(
    ctx: &Context,
    caller: &Caller,
    request: &AuditRequest,
) -> Result<AuditPage> {
    require_read_audit(ctx, caller)?;
    let mut query = AuditQuery::parse(request)?;
    if !request.page_token.is_empty() {
        query.after_id = Some(open_page_token(
            ctx.audit_key(),
            &request.page_token,
            &query,
        )?);
    }
    let page_size = query.limit;
    // One more than asked: whether another page follows.
    query.limit = page_size + 1;
    let mut records = ctx.store().list_records(&query).await?;
    let more = records.len() as u64 > page_size;
    records.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
    let next_page_token = match records.last() {
        Some(last) if more => page_token(ctx.audit_key(), &query, last.id),
        _ => String::new(),
    };
    Ok(AuditPage {
        records,
        next_page_token,
    })
}

/// `ComputeAuditHash`: the HMAC under the audit key that records hold for `credential`
/// (a token's value), to find its records with the `credential_hmac` filter. The value is
/// never logged, stored or repeated in an error. Needs `manage_system` or `read_audit`.
pub fn compute_audit_hash(ctx: &Context, caller: &Caller, credential: &str) -> Result<String> {
    require_read_audit(ctx, caller)?;
    // Tokens never contain white space: a pasted line break is not part of the value.
    let value = credential.trim();
    if value.is_empty() {
        return Err(Error::invalid(
            "credential",
            Reason::InvalidBodyParam,
            "must not be empty: give the credential's value (a token)",
        ));
    }
    if value.len() > MAX_CREDENTIAL_BYTES {
        return Err(Error::invalid(
            "credential",
            Reason::InvalidBodyParam,
            format!("must be at most {MAX_CREDENTIAL_BYTES} bytes"),
        ));
    }
    Ok(ctx.audit_key().credential_hmac(value))
}

/// The public JSON shape of a listed record: [`StoredRecord::to_json`] with its `hash`.
pub fn record_json(record: &StoredRecord) -> Value {
    let mut json = record.to_json();
    json["hash"] = json!(record.hash);
    json
}

fn require_read_audit(ctx: &Context, caller: &Caller) -> Result<()> {
    ctx.require_any_permission(caller, &[Permission::ManageSystem, Permission::ReadAudit])
}

fn invalid(field: &'static str, rule: impl Into<String>) -> Error {
    Error::invalid(field, Reason::InvalidUrlParam, rule)
}

/// An optional id filter: "" is none; anything else must be an id.
fn id_filter<T>(
    value: &str,
    field: &'static str,
    parse: fn(&str, &'static str, Reason) -> Result<T>,
) -> Result<Option<T>> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse(value, field, Reason::InvalidUrlParam).map(Some)
    }
}

/// An optional text filter, at most 64 bytes (as the column).
fn text_filter(value: &str, field: &'static str) -> Result<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    require_no_nul(field, value).map_err(|_| invalid(field, "must not contain NUL (U+0000)"))?;
    if value.len() > 64 {
        return Err(invalid(field, "must be at most 64 bytes"));
    }
    Ok(Some(value.to_owned()))
}

/// An optional address filter: records hold IP addresses in canonical form (an IPv4-mapped
/// IPv6 address as IPv4, IPv6 in lower case), so the filter is read the same way.
fn ip_filter(value: &str) -> Result<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    value
        .trim()
        .parse::<std::net::IpAddr>()
        .map(|ip| Some(ip.to_canonical().to_string()))
        .map_err(|_| invalid("ip", "must be an IP address (IPv4 or IPv6)"))
}

fn time_filter(value: Option<UnixMillis>, field: &'static str) -> Result<Option<UnixMillis>> {
    match value {
        Some(ms) if ms < 0 => Err(invalid(
            field,
            "must be zero or positive (Unix milliseconds)",
        )),
        other => Ok(other),
    }
}

impl AuditQuery {
    /// Checks every filter of `request`, naming the field that breaks a rule. The page
    /// token is not read here.
    pub fn parse(request: &AuditRequest) -> Result<Self> {
        let since = time_filter(request.since, "since")?;
        let until = time_filter(request.until, "until")?;
        if let (Some(since), Some(until)) = (since, until)
            && until <= since
        {
            return Err(invalid("until", "must be after since"));
        }
        let mut actions = Vec::with_capacity(request.actions.len());
        for name in &request.actions {
            let name = name.trim();
            let action = Action::parse(name).ok_or_else(|| {
                let shown: String = name.chars().take(64).collect();
                invalid(
                    "actions",
                    format!(
                        "unknown action {shown:?}; known: {}",
                        Action::ALL
                            .iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            actions.push(action);
        }
        actions.sort_by_key(|a| a.as_str());
        actions.dedup();
        let actor_type = match request.actor_type.as_str() {
            "" => None,
            kind => Some(*ACTOR_TYPES.iter().find(|t| **t == kind).ok_or_else(|| {
                invalid("actor_type", "must be user, operator, service or unknown")
            })?),
        };
        let actor_id = id_filter(&request.actor_id, "actor_id", UserId::parse)?;
        if actor_id.is_some() && actor_type.is_some_and(|t| t != "user") {
            return Err(invalid(
                "actor_id",
                "only user actors have an id: leave actor_type empty or set it to user",
            ));
        }
        let credential_hmac = match request.credential_hmac.as_str() {
            "" => None,
            hex if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(hex.to_ascii_lowercase())
            }
            _ => {
                return Err(invalid(
                    "credential_hmac",
                    "must be 64 hexadecimal characters (as ComputeAuditHash answers)",
                ));
            }
        };
        let limit = match request.page_size {
            None | Some(0) => DEFAULT_PAGE_SIZE,
            Some(n) if n < 0 => return Err(invalid("page_size", "must be zero or positive")),
            Some(n) => u64::try_from(n).unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE),
        };
        Ok(Self {
            since,
            until,
            actions,
            actor_type,
            actor_id,
            user_id: id_filter(&request.user_id, "user_id", UserId::parse)?,
            token_id: id_filter(&request.token_id, "token_id", TokenId::parse)?,
            session_id: id_filter(&request.session_id, "session_id", SessionId::parse)?,
            command_id: id_filter(&request.command_id, "command_id", CommandId::parse)?,
            ip: ip_filter(&request.ip)?,
            request_id: text_filter(&request.request_id, "request_id")?,
            credential_hmac,
            order: if request.oldest_first {
                Order::OldestFirst
            } else {
                Order::NewestFirst
            },
            after_id: None,
            limit,
        })
    }

    /// The filters, in a fixed text form: a page token is only good for the query that
    /// issued it.
    fn fingerprint(&self) -> String {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        json!([
            self.since,
            self.until,
            self.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            self.actor_type.unwrap_or(""),
            self.actor_id.as_ref().map_or("", UserId::as_str),
            self.user_id.as_ref().map_or("", UserId::as_str),
            self.token_id.as_ref().map_or("", TokenId::as_str),
            self.session_id.as_ref().map_or("", SessionId::as_str),
            self.command_id.as_ref().map_or("", CommandId::as_str),
            text(&self.ip),
            text(&self.request_id),
            text(&self.credential_hmac),
        ])
        .to_string()
    }
}

/// Page tokens of the audit trail, apart from other listings' (see [`paging`]).
const PAGE_TOKEN_DOMAIN: &[u8] = b"audit page token\0";

/// The page token for the page after record `last_id` of `query`: the order and the
/// position, authenticated (with the filters) under the audit key.
fn page_token(key: &AuditKey, query: &AuditQuery, last_id: i64) -> String {
    let position = format!("{}{last_id}", query.order.letter());
    paging::seal_page_token(key, PAGE_TOKEN_DOMAIN, &query.fingerprint(), &position)
}

/// The record id a page token continues after; INVALID_ARGUMENT naming `page_token` when it
/// is malformed, altered, or issued for another order or other filters.
fn open_page_token(key: &AuditKey, token: &str, query: &AuditQuery) -> Result<i64> {
    let opened = paging::open_page_token(token)?;
    let (order, id) = match opened.position().split_at_checked(1) {
        Some(("n", id)) => (Order::NewestFirst, id),
        Some(("o", id)) => (Order::OldestFirst, id),
        _ => return Err(paging::malformed_page_token()),
    };
    let id: i64 = id
        .parse()
        .ok()
        .filter(|n: &i64| *n >= 0 && n.to_string() == id)
        .ok_or_else(paging::malformed_page_token)?;
    if order != query.order {
        let issued = match order {
            Order::NewestFirst => "false",
            Order::OldestFirst => "true",
        };
        return Err(invalid(
            "page_token",
            format!("was issued with oldest_first = {issued}: keep the order of the first page"),
        ));
    }
    opened.verify(key, PAGE_TOKEN_DOMAIN, &query.fingerprint())?;
    Ok(id)
}

/// A `VerifyAuditLog` request as a transport received it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyRequest {
    /// Continue after this record (the `resume_after` of the previous call); absent: from
    /// the chain's start.
    pub after_id: Option<i64>,
    /// Most records to check in this call: absent or 0 is [`DEFAULT_VERIFY_RECORDS`], at
    /// most [`MAX_VERIFY_RECORDS`].
    pub max_records: Option<i64>,
}

/// How a link of the chain is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// A record id is skipped: the record was deleted.
    Missing,
    /// A record does not carry the hash its fields and its predecessor give: it was edited
    /// (or its hash was).
    Edited,
    /// The log ends before, or differently from, the newest record its control row names:
    /// the newest records were deleted (or the control row edited).
    HeadMismatch,
}

impl BreakKind {
    /// The name reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::Missing => "missing",
            BreakKind::Edited => "edited",
            BreakKind::HeadMismatch => "head_mismatch",
        }
    }

    /// What it means, in words.
    pub fn meaning(self) -> &'static str {
        match self {
            BreakKind::Missing => "a record is missing (deleted)",
            BreakKind::Edited => "a record was edited (its hash does not match its fields)",
            BreakKind::HeadMismatch => {
                "the newest records do not match the log's control row (deleted at the end)"
            }
        }
    }

    /// The kind of a name from [`BreakKind::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        [
            BreakKind::Missing,
            BreakKind::Edited,
            BreakKind::HeadMismatch,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// The first broken link of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The record where the chain breaks: the missing one, the edited one, or the first of
    /// the newest ones that are gone.
    pub record_id: i64,
    pub kind: BreakKind,
    /// What the chain says should be there (a hash, or a record id).
    pub expected: String,
    /// What is there.
    pub found: String,
}

impl ChainBreak {
    /// One sentence for the operator.
    pub fn describe(&self) -> String {
        format!(
            "the audit log's hash chain is broken at record {}: {} (expected {}, found {})",
            self.record_id,
            self.kind.meaning(),
            self.expected,
            self.found
        )
    }
}

/// What one `VerifyAuditLog` call found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainReport {
    /// The chain starts after this record: the ones up to it were pruned, or were moved
    /// from an earlier version's revocation log without a hash.
    pub chain_start: i64,
    /// The newest record, as the log's control row named it when the walk began.
    pub head_id: i64,
    pub head_hash: String,
    /// Records checked by this call.
    pub verified: u64,
    /// The first and last record checked (0 when none).
    pub first_id: i64,
    pub last_id: i64,
    /// Checked records whose action this version does not know (a newer version wrote
    /// them), by action: verified like any other, not tampering.
    pub unknown_actions: BTreeMap<String, u64>,
    /// More records remain: call again with this as `after_id`.
    pub resume_after: Option<i64>,
    /// The first broken link, if any.
    pub broken: Option<ChainBreak>,
}

/// `VerifyAuditLog`: walks the hash chain from its start (or after `after_id`) in id order,
/// recomputing every record's hash from its fields and its predecessor's hash, up to the
/// newest record the log's control row names, at most `max_records` per call. Reports the
/// first broken link: a missing id, a record whose hash does not match, or a log that ends
/// before (or differently from) its control row. Needs `manage_system`.
pub async fn verify_audit_log(
    ctx: &Context,
    caller: &Caller,
    request: VerifyRequest,
) -> Result<ChainReport> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    let after = match request.after_id {
        Some(id) if id < 0 => {
            return Err(Error::invalid(
                "after_id",
                Reason::InvalidBodyParam,
                "must be zero or positive",
            ));
        }
        other => other,
    };
    let max = match request.max_records {
        None | Some(0) => DEFAULT_VERIFY_RECORDS,
        Some(n) if n < 0 => {
            return Err(Error::invalid(
                "max_records",
                Reason::InvalidBodyParam,
                "must be zero or positive",
            ));
        }
        Some(n) => u64::try_from(n)
            .unwrap_or(MAX_VERIFY_RECORDS)
            .min(MAX_VERIFY_RECORDS),
    };
    let mut retries = 0;
    loop {
        let (start, head) = ctx.store().log_chain_ends().await?;
        let report = walk_chain(ctx, &start, &head, after, max).await?;
        // Pruning (every minute, on any replica) deletes the oldest records and moves the
        // chain's start past them: a walk through the oldest records can meet the gap it
        // leaves. Such a gap is no break: walk again from the new start.
        if report.broken.is_some() && retries < 3 {
            let (start_now, _) = ctx.store().log_chain_ends().await?;
            if start_now != start {
                retries += 1;
                continue;
            }
        }
        return Ok(report);
    }
}

async fn walk_chain(
    ctx: &Context,
    start: &ChainLink,
    head: &ChainLink,
    after: Option<i64>,
    max: u64,
) -> Result<ChainReport> {
    let key = ctx.audit_key();
    let mut report = ChainReport {
        chain_start: start.id,
        head_id: head.id,
        head_hash: head.hash.clone(),
        ..ChainReport::default()
    };
    let (mut prev_id, mut prev_hash) = (start.id, start.hash.clone());
    // A position at or before the start (pruned meanwhile) continues from the start.
    if let Some(after) = after.filter(|id| *id > start.id) {
        if after > head.id {
            return Err(Error::invalid(
                "after_id",
                Reason::InvalidBodyParam,
                format!("is beyond the newest record ({})", head.id),
            ));
        }
        // Checked by the call that returned it as `resume_after`: its stored hash is the
        // next link's input.
        match ctx.store().stored_record(after).await? {
            Some(record) => (prev_id, prev_hash) = (record.id, record.hash),
            None => {
                report.broken = Some(ChainBreak {
                    record_id: after,
                    kind: BreakKind::Missing,
                    expected: format!("record {after}"),
                    found: "no such record".to_owned(),
                });
                return Ok(report);
            }
        }
    }
    while prev_id < head.id && report.verified < max {
        let want = VERIFY_BATCH.min(max - report.verified);
        let batch = ctx
            .store()
            .stored_records_between(prev_id, head.id, want)
            .await?;
        if batch.is_empty() {
            break;
        }
        for record in batch {
            let expected_id = prev_id + 1;
            if record.id != expected_id {
                report.broken = Some(ChainBreak {
                    record_id: expected_id,
                    kind: BreakKind::Missing,
                    expected: format!("record {expected_id}"),
                    found: format!("record {} after record {prev_id}", record.id),
                });
                return Ok(report);
            }
            let expected = record.chained_hash(key, &prev_hash);
            if expected != record.hash {
                report.broken = Some(ChainBreak {
                    record_id: record.id,
                    kind: BreakKind::Edited,
                    expected,
                    found: record.hash,
                });
                return Ok(report);
            }
            if record.known_action().is_none() {
                *report
                    .unknown_actions
                    .entry(record.action.clone())
                    .or_default() += 1;
            }
            if report.first_id == 0 {
                report.first_id = record.id;
            }
            report.last_id = record.id;
            report.verified += 1;
            (prev_id, prev_hash) = (record.id, record.hash);
        }
    }
    if prev_id < head.id {
        if report.verified >= max {
            report.resume_after = Some(prev_id);
        } else {
            report.broken = Some(ChainBreak {
                record_id: prev_id + 1,
                kind: BreakKind::HeadMismatch,
                expected: format!("records up to {} (hash {})", head.id, head.hash),
                found: format!("the log ends at record {prev_id}"),
            });
        }
    } else if prev_hash != head.hash {
        report.broken = Some(ChainBreak {
            record_id: head.id,
            kind: BreakKind::HeadMismatch,
            expected: head.hash.clone(),
            found: prev_hash,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::secret::ServerKey;
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

    fn key() -> AuditKey {
        AuditKey::new(&ServerKey::from_hex(&"ab".repeat(32)).unwrap(), None)
    }

    fn field_of(err: Error) -> &'static str {
        match err {
            Error::InvalidArgument { field, .. } => field,
            other => panic!("not an invalid argument: {other:?}"),
        }
    }

    #[test]
    fn every_filter_is_checked_naming_its_field() {
        let bad = |tweak: fn(&mut AuditRequest)| {
            let mut request = AuditRequest::default();
            tweak(&mut request);
            field_of(AuditQuery::parse(&request).unwrap_err())
        };
        assert_eq!(bad(|r| r.since = Some(-1)), "since");
        assert_eq!(
            bad(|r| {
                r.since = Some(10);
                r.until = Some(10);
            }),
            "until"
        );
        assert_eq!(bad(|r| r.actions = vec!["token.stolen".into()]), "actions");
        assert_eq!(bad(|r| r.actor_type = "robot".into()), "actor_type");
        assert_eq!(bad(|r| r.actor_id = "short".into()), "actor_id");
        assert_eq!(
            bad(|r| {
                r.actor_type = "operator".into();
                r.actor_id = "a".repeat(26);
            }),
            "actor_id"
        );
        assert_eq!(bad(|r| r.user_id = "x".into()), "user_id");
        assert_eq!(bad(|r| r.token_id = "x".into()), "token_id");
        assert_eq!(bad(|r| r.session_id = "x".into()), "session_id");
        assert_eq!(bad(|r| r.command_id = "x".into()), "command_id");
        assert_eq!(bad(|r| r.ip = "1".repeat(65)), "ip");
        assert_eq!(bad(|r| r.ip = "proxy.example.com".into()), "ip");
        assert_eq!(bad(|r| r.request_id = "a\0b".into()), "request_id");
        assert_eq!(bad(|r| r.credential_hmac = "abc".into()), "credential_hmac");
        assert_eq!(bad(|r| r.page_size = Some(-1)), "page_size");
    }

    #[test]
    fn page_sizes_default_and_cap() {
        let size = |page_size| {
            AuditQuery::parse(&AuditRequest {
                page_size,
                ..AuditRequest::default()
            })
            .unwrap()
            .limit
        };
        assert_eq!(size(None), 60);
        assert_eq!(size(Some(0)), 60);
        assert_eq!(size(Some(5)), 5);
        assert_eq!(size(Some(10_000)), 200);
    }

    #[test]
    fn addresses_are_compared_in_canonical_form() {
        let ip = |text: &str| {
            AuditQuery::parse(&AuditRequest {
                ip: text.into(),
                ..AuditRequest::default()
            })
            .unwrap()
            .ip
            .unwrap()
        };
        assert_eq!(ip("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(ip("2001:DB8:0:0::1"), "2001:db8::1");
        assert_eq!(ip(" 192.0.2.7 "), "192.0.2.7");
    }

    #[test]
    fn actions_are_a_set_and_hmacs_lower_case() {
        let query = AuditQuery::parse(&AuditRequest {
            actions: vec![
                "session.created".into(),
                "access_token.created".into(),
                "session.created".into(),
            ],
            credential_hmac: "AB".repeat(32),
            ..AuditRequest::default()
        })
        .unwrap();
        assert_eq!(
            query.actions,
            [Action::AccessTokenCreated, Action::SessionCreated]
        );
        assert_eq!(query.credential_hmac.unwrap(), "ab".repeat(32));
    }

    #[test]
    fn page_tokens_round_trip_and_refuse_tampering_other_orders_and_other_filters() {
        let key = key();
        let query = AuditQuery::parse(&AuditRequest {
            user_id: "u".repeat(26),
            ..AuditRequest::default()
        })
        .unwrap();
        let token = page_token(&key, &query, 42);
        assert_eq!(open_page_token(&key, &token, &query).unwrap(), 42);

        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(&token).unwrap()).unwrap();
        let moved = URL_SAFE_NO_PAD.encode(text.replacen("42", "41", 1));
        let err = open_page_token(&key, &moved, &query).unwrap_err();
        assert!(err.to_string().contains("altered"), "{err}");

        let mut other = query.clone();
        other.user_id = None;
        let err = open_page_token(&key, &token, &other).unwrap_err();
        assert!(err.to_string().contains("filters changed"), "{err}");

        let mut oldest = query.clone();
        oldest.order = Order::OldestFirst;
        let err = open_page_token(&key, &token, &oldest).unwrap_err();
        assert!(err.to_string().contains("oldest_first = false"), "{err}");

        for garbage in [
            "",
            "!!",
            "bjQy",
            &"A".repeat(300),
            &URL_SAFE_NO_PAD.encode("x5.abc"),
        ] {
            let err = open_page_token(&key, garbage, &query).unwrap_err();
            assert!(
                err.to_string().starts_with("page_token: is malformed"),
                "{garbage}: {err}"
            );
        }
        let other_key = AuditKey::new(
            &ServerKey::from_hex(&"ab".repeat(32)).unwrap(),
            Some(&ServerKey::from_hex(&"cd".repeat(32)).unwrap()),
        );
        assert!(open_page_token(&other_key, &token, &query).is_err());
    }

    #[test]
    fn break_kinds_have_names_and_meanings() {
        for kind in [
            BreakKind::Missing,
            BreakKind::Edited,
            BreakKind::HeadMismatch,
        ] {
            assert_eq!(BreakKind::parse(kind.as_str()), Some(kind));
            assert!(!kind.meaning().is_empty());
        }
    }
}
