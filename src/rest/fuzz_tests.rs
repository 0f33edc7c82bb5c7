//! Fuzzing of the REST request bodies under plain `cargo test` (see `domain::fuzz_tests` for
//! the corpus, the mutations and `PROPTEST_CASES`): the Go-compatible JSON decoder
//! (`decode_struct`, `MapFromJSON`, `StringInterfaceFromJSON`) and every body type a handler
//! decodes, with the conversion the handler applies next, from random and mutated bytes and
//! from random JSON. Whatever arrives, decoding ends in a value or in INVALID_ARGUMENT
//! naming the body and never echoing what was sent; it never panics.

use proptest::prelude::*;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};

use super::{
    go_compat::{decode_struct, string_map, value_map},
    json::{
        AuditHashJson, AuditVerifyJson, IdentifyTokenJson, IntrospectJson, LeakReportJson,
        NewCommandJson, NewSessionJson, NewTeamMemberJson, NewUserAccessTokenJson, NewUserJson,
        NewWebhookJson, RotateUserAccessTokenJson, TokenSearchJson, WebhookChangeJson,
    },
};
use crate::domain::{
    access_tokens::NewTokenFields,
    commands::NewCommand,
    error::{Error, Reason},
    fuzz_tests::{corpus, fuzz_input},
    users::NewUser,
    webhooks::{NewWebhook, WebhookChange},
};

/// A text that is long and odd enough not to appear in an error by chance.
const MARKER: &str = "zq9Marker7x";

/// Decodes `body` as `T` with `param`, and checks the outcome: a value, or INVALID_ARGUMENT
/// with `InvalidBodyParam` naming `param`, never quoting a string value that was sent.
fn decodes_or_names<T: DeserializeOwned + Default>(body: &[u8], param: &'static str) -> Option<T> {
    match decode_struct::<T>(body, param) {
        Ok(value) => Some(value),
        Err(e) => {
            let text = e.to_string();
            match &e {
                Error::InvalidArgument { field, reason, .. } => {
                    assert_eq!(*field, param, "{text}");
                    assert_eq!(*reason, Reason::InvalidBodyParam, "{text}");
                }
                other => panic!("{param}: not INVALID_ARGUMENT: {other:?}"),
            }
            assert!(!text.contains(MARKER), "the error echoes the body: {text}");
            None
        }
    }
}

/// Every body a REST handler decodes, as the handler decodes it, followed by the
/// conversion it applies.
fn every_body(body: &[u8]) {
    if let Some(b) = decodes_or_names::<NewUserAccessTokenJson>(body, "user_access_token") {
        let _ = NewTokenFields::from(b);
    }
    decodes_or_names::<TokenSearchJson>(body, "user_access_token_search");
    decodes_or_names::<RotateUserAccessTokenJson>(body, "rotate_user_access_token");
    decodes_or_names::<NewSessionJson>(body, "session");
    if let Some(b) = decodes_or_names::<NewCommandJson>(body, "command") {
        let _ = NewCommand::from(b);
    }
    decodes_or_names::<NewTeamMemberJson>(body, "team_member");
    decodes_or_names::<IntrospectJson>(body, "token");
    decodes_or_names::<LeakReportJson>(body, "report");
    if let Some(b) = decodes_or_names::<NewUserJson>(body, "user") {
        let _ = NewUser::from(b);
    }
    decodes_or_names::<AuditHashJson>(body, "credential");
    decodes_or_names::<IdentifyTokenJson>(body, "token");
    decodes_or_names::<AuditVerifyJson>(body, "verify_audit_log");
    if let Some(b) = decodes_or_names::<NewWebhookJson>(body, "webhook") {
        let _ = NewWebhook::from(b);
    }
    if let Some(b) = decodes_or_names::<WebhookChangeJson>(body, "webhook") {
        let _ = WebhookChange::from(b);
    }
    let strings = string_map(body);
    let values = value_map(body);
    // MapFromJSON keeps the keys StringInterfaceFromJSON sees.
    for key in strings.keys() {
        assert!(values.contains_key(key), "{key:?}");
    }
}

/// Any JSON value, nested up to a few levels, with keys that are field names in odd cases.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("description".to_owned()),
        Just("DESCRIPTION".to_owned()),
        Just("expires_at".to_owned()),
        Just("user_id".to_owned()),
        Just("token".to_owned()),
        Just("Token".to_owned()),
        Just("url".to_owned()),
        Just("events".to_owned()),
        Just("roles".to_owned()),
        Just("username".to_owned()),
        Just("team_id".to_owned()),
        Just("trigger".to_owned()),
        Just("ſcheme".to_owned()),
        "[a-zA-Z_]{1,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,20}".prop_map(Value::String),
        Just(Value::String(MARKER.to_owned())),
    ];
    leaf.prop_recursive(4, 40, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

#[test]
fn the_json_body_corpus_replays() {
    for input in corpus("json-body") {
        every_body(&input);
    }
}

/// Nesting far deeper than serde_json's recursion limit is refused, not a stack overflow.
#[test]
fn deep_nesting_is_refused_without_overflowing() {
    for open in ["[", "{\"a\":"] {
        let body = open.repeat(100_000);
        every_body(body.as_bytes());
        let wrapped = format!("{{\"description\":{}", open.repeat(100_000));
        every_body(wrapped.as_bytes());
    }
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
struct Probe {
    description: String,
    expires_at: i64,
    is_active: bool,
}

proptest! {
    #[test]
    fn every_body_decodes_or_is_refused_naming_it(body in fuzz_input("json-body")) {
        every_body(&body);
    }

    #[test]
    fn every_body_holds_for_any_json(value in json_value(), trailing in "\\PC{0,8}") {
        let body = format!("{value}{trailing}");
        every_body(body.as_bytes());
        every_body(json!({ "description": value }).to_string().as_bytes());
    }

    /// Go's rules for a struct: keys match case-insensitively, the last match wins,
    /// unknown keys and trailing text are ignored, `null` leaves the default.
    #[test]
    fn decoding_follows_go_for_any_casing(
        description in "\\PC{0,30}",
        expires_at in any::<i64>(),
        upper in proptest::collection::vec(any::<bool>(), 11),
        unknown in proptest::collection::vec(("[a-z]{13,20}", any::<i32>()), 0..4),
        trailing in "[^\\s]\\PC{0,10}",
        null_first in any::<bool>(),
    ) {
        let key: String = "description"
            .chars()
            .zip(upper)
            .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
            .collect();
        let mut members = Vec::new();
        if null_first {
            members.push(format!("{}:null", json!(key)));
        }
        members.push(format!("\"expires_at\":{expires_at}"));
        for (name, value) in &unknown {
            members.push(format!("{}:{value}", json!(name)));
        }
        members.push(format!("{}:{}", json!(key), json!(description)));
        let body = format!(" {{{}}}{trailing}", members.join(","));
        let decoded = decode_struct::<Probe>(body.as_bytes(), "t").unwrap();
        prop_assert_eq!(decoded, Probe { description, expires_at, is_active: false });
    }
}
