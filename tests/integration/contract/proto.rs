//! The proto contract, read from the compiled descriptor set:
//! - a committed summary of every message field, enum value and RPC (`proto_contract.txt`):
//!   removing or renumbering anything fails as a breaking change; additions must be recorded
//!   (run with `UPDATE_PROTO_CONTRACT=1` to rewrite the file after an intended change);
//! - our own rules on top of `buf lint`: every RPC has `<Rpc>Request`/`<Rpc>Response` and a
//!   `google.api.http` rule under `/api/v4/`, and every service, RPC, message, field and enum
//!   value has a comment.

use std::collections::BTreeSet;

use prost::Message;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet,
    field_descriptor_proto::{Label, Type},
};
use token_service::pb::FILE_DESCRIPTOR_SET;

const PACKAGE: &str = "token_service.v1";
const CONTRACT_FILE: &str = "tests/integration/contract/proto_contract.txt";

fn our_files() -> Vec<FileDescriptorProto> {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
        .unwrap()
        .file
        .into_iter()
        .filter(|f| f.package() == PACKAGE)
        .collect()
}

fn field_type(f: &prost_types::FieldDescriptorProto) -> String {
    let label = match f.label() {
        Label::Repeated => "repeated ",
        Label::Optional if f.proto3_optional() => "optional ",
        _ => "",
    };
    let ty = match f.r#type() {
        Type::Message | Type::Enum => f.type_name().to_owned(),
        other => other
            .as_str_name()
            .trim_start_matches("TYPE_")
            .to_lowercase(),
    };
    format!("{label}{ty}")
}

fn summarize_message(prefix: &str, m: &DescriptorProto, out: &mut Vec<String>) {
    let name = format!("{prefix}.{}", m.name());
    out.push(format!("message {name}"));
    for f in &m.field {
        out.push(format!(
            "message {name} field {} {} {}",
            f.number(),
            f.name(),
            field_type(f)
        ));
    }
    for nested in &m.nested_type {
        summarize_message(&name, nested, out);
    }
    for e in &m.enum_type {
        summarize_enum(&name, e, out);
    }
}

fn summarize_enum(prefix: &str, e: &EnumDescriptorProto, out: &mut Vec<String>) {
    let name = format!("{prefix}.{}", e.name());
    for v in &e.value {
        out.push(format!("enum {name} value {} {}", v.number(), v.name()));
    }
}

fn summary() -> Vec<String> {
    let mut out = Vec::new();
    for file in our_files() {
        for m in &file.message_type {
            summarize_message(PACKAGE, m, &mut out);
        }
        for e in &file.enum_type {
            summarize_enum(PACKAGE, e, &mut out);
        }
        for s in &file.service {
            for m in &s.method {
                out.push(format!(
                    "service {PACKAGE}.{} rpc {} {} {}",
                    s.name(),
                    m.name(),
                    m.input_type(),
                    m.output_type()
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn proto_contract_has_no_accidental_breaking_change() {
    let current = summary();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CONTRACT_FILE);
    if std::env::var("UPDATE_PROTO_CONTRACT").as_deref() == Ok("1") {
        std::fs::write(&path, current.join("\n") + "\n").unwrap();
        return;
    }
    let committed: BTreeSet<String> = std::fs::read_to_string(&path)
        .expect("committed proto contract (UPDATE_PROTO_CONTRACT=1 creates it)")
        .lines()
        .map(str::to_owned)
        .collect();
    let current: BTreeSet<String> = current.into_iter().collect();
    let removed: Vec<_> = committed.difference(&current).collect();
    let added: Vec<_> = current.difference(&committed).collect();
    assert!(
        removed.is_empty(),
        "breaking proto change: these fields/values/RPCs changed or disappeared (reserve removed \
         numbers and names instead, or move to v2):\n{removed:#?}"
    );
    assert!(
        added.is_empty(),
        "the proto gained these entries; record them with UPDATE_PROTO_CONTRACT=1 cargo test \
         --test integration contract::proto:\n{added:#?}"
    );
}

/// Every RPC's http bindings, its `additional_bindings` included: (rpc, verb, path), as the
/// service decodes them to build its REST routes. Every RPC must have one.
pub(crate) fn http_rules() -> Vec<(String, &'static str, String)> {
    let bindings = token_service::rest::http_bindings();
    for file in our_files() {
        for method in file.service.iter().flat_map(|s| &s.method) {
            assert!(
                bindings.iter().any(|b| b.rpc == method.name()),
                "{} has no google.api.http rule",
                method.name()
            );
        }
    }
    bindings
        .iter()
        .map(|b| (b.rpc.clone(), b.method.as_str(), b.path.clone()))
        .collect()
}

#[test]
fn every_rpc_mirrors_an_api_v4_path_and_no_two_share_one() {
    let rules = http_rules();
    assert!(rules.len() >= 19, "{rules:?}");
    let mut seen = BTreeSet::new();
    for (rpc, verb, path) in &rules {
        assert!(path.starts_with("/api/v4/"), "{rpc}: {path}");
        assert!(
            seen.insert((*verb, path.clone())),
            "{rpc}: duplicate {verb} {path}"
        );
    }
    let expect = [
        (
            "CreateUserAccessToken",
            "POST",
            "/api/v4/users/{user_id}/tokens",
        ),
        (
            "GetUserAccessTokensForUser",
            "GET",
            "/api/v4/users/{user_id}/tokens",
        ),
        ("GetUserAccessTokens", "GET", "/api/v4/users/tokens"),
        (
            "SearchUserAccessTokens",
            "POST",
            "/api/v4/users/tokens/search",
        ),
        (
            "GetUserAccessToken",
            "GET",
            "/api/v4/users/tokens/{token_id}",
        ),
        (
            "RevokeUserAccessToken",
            "POST",
            "/api/v4/users/tokens/revoke",
        ),
        (
            "DisableUserAccessToken",
            "POST",
            "/api/v4/users/tokens/disable",
        ),
        (
            "EnableUserAccessToken",
            "POST",
            "/api/v4/users/tokens/enable",
        ),
        ("GetSessions", "GET", "/api/v4/users/{user_id}/sessions"),
        (
            "RevokeSession",
            "POST",
            "/api/v4/users/{user_id}/sessions/revoke",
        ),
        (
            "RevokeAllSessions",
            "POST",
            "/api/v4/users/{user_id}/sessions/revoke/all",
        ),
        (
            "RevokeSessionsFromAllUsers",
            "POST",
            "/api/v4/users/sessions/revoke/all",
        ),
        (
            "RegenCommandToken",
            "PUT",
            "/api/v4/commands/{command_id}/regen_token",
        ),
        ("GetWebrtcToken", "GET", "/api/v4/webrtc/token"),
        ("GetMe", "GET", "/api/v4/users/me"),
    ];
    for (rpc, verb, path) in expect {
        assert!(
            rules
                .iter()
                .any(|(r, v, p)| r == rpc && *v == verb && p == path),
            "{rpc} should map to {verb} {path}; rules: {rules:?}"
        );
    }
}

fn comment_at(file: &FileDescriptorProto, path: &[i32]) -> Option<String> {
    file.source_code_info
        .as_ref()?
        .location
        .iter()
        .find_map(|l| {
            (l.path == path)
                .then(|| l.leading_comments().trim().to_owned())
                .filter(|c| !c.is_empty())
        })
}

fn check_message_comments(
    file: &FileDescriptorProto,
    m: &DescriptorProto,
    path: Vec<i32>,
    missing: &mut Vec<String>,
) {
    if m.options.as_ref().is_some_and(|o| o.map_entry()) {
        return;
    }
    if comment_at(file, &path).is_none() {
        missing.push(format!("message {}", m.name()));
    }
    for (i, f) in m.field.iter().enumerate() {
        let mut p = path.clone();
        p.extend([2, i as i32]);
        if comment_at(file, &p).is_none() {
            missing.push(format!("field {}.{}", m.name(), f.name()));
        }
    }
    for (i, nested) in m.nested_type.iter().enumerate() {
        let mut p = path.clone();
        p.extend([3, i as i32]);
        check_message_comments(file, nested, p, missing);
    }
}

#[test]
fn every_service_rpc_message_field_and_enum_value_is_commented() {
    let mut missing = Vec::new();
    for file in our_files() {
        for (i, m) in file.message_type.iter().enumerate() {
            check_message_comments(&file, m, vec![4, i as i32], &mut missing);
        }
        for (i, e) in file.enum_type.iter().enumerate() {
            if comment_at(&file, &[5, i as i32]).is_none() {
                missing.push(format!("enum {}", e.name()));
            }
            for (j, v) in e.value.iter().enumerate() {
                if comment_at(&file, &[5, i as i32, 2, j as i32]).is_none() {
                    missing.push(format!("enum value {}", v.name()));
                }
            }
        }
        for (i, s) in file.service.iter().enumerate() {
            if comment_at(&file, &[6, i as i32]).is_none() {
                missing.push(format!("service {}", s.name()));
            }
            for (j, m) in s.method.iter().enumerate() {
                match comment_at(&file, &[6, i as i32, 2, j as i32]) {
                    None => missing.push(format!("rpc {}", m.name())),
                    Some(c) if !c.contains("Permission") && !c.contains("permission") => {
                        missing.push(format!("rpc {} (no permission named)", m.name()));
                    }
                    Some(c) if !c.contains("Errors") => {
                        missing.push(format!("rpc {} (no errors listed)", m.name()));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "undocumented proto elements: {missing:#?}"
    );
}

#[test]
fn rpcs_have_their_own_request_and_response_and_enums_start_unspecified() {
    for file in our_files() {
        for s in &file.service {
            for m in &s.method {
                assert_eq!(m.input_type(), format!(".{PACKAGE}.{}Request", m.name()));
                assert_eq!(m.output_type(), format!(".{PACKAGE}.{}Response", m.name()));
            }
        }
        for e in &file.enum_type {
            let zero = &e.value[0];
            assert_eq!(zero.number(), 0);
            assert!(zero.name().ends_with("_UNSPECIFIED"), "{}", zero.name());
        }
    }
}

/// UNIMPLEMENTED only ever means "switched off by configuration": an RPC comment that lists
/// it names the setting that switches the RPC off, and never says the RPC is unimplemented
/// regardless (stale wording from before the RPC was built).
#[test]
fn rpc_comments_tie_unimplemented_to_the_setting_that_switches_the_rpc_off() {
    const SWITCHES: [&str; 5] = [
        "leak_reports.enable",
        "EnableUserAccessTokens",
        "enable_user_access_tokens",
        "enable_commands",
        "webrtc.enable",
    ];
    let mut wrong = Vec::new();
    for file in our_files() {
        for (i, s) in file.service.iter().enumerate() {
            for (j, m) in s.method.iter().enumerate() {
                let comment = comment_at(&file, &[6, i as i32, 2, j as i32]).unwrap_or_default();
                let flat = comment.split_whitespace().collect::<Vec<_>>().join(" ");
                if !flat.contains("UNIMPLEMENTED") {
                    continue;
                }
                if !SWITCHES.iter().any(|s| flat.contains(s)) || flat.contains("always") {
                    wrong.push(format!("{}: {flat}", m.name()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "UNIMPLEMENTED without the setting that causes it: {wrong:#?}"
    );
}
