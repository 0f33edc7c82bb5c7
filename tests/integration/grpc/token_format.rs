//! The checksummed token format (`[token_format] style = "checksummed"`): every kind of
//! secret is minted with its prefix, tokens of both formats authenticate whatever the setting,
//! and a token whose checksum is wrong is refused before any cache or database lookup.

use token_service::{
    config::{TokenFormatConfig, TokenStyle},
    domain::ids::new_id,
    pb,
};

use crate::common::*;

fn checksummed(prefix: &str) -> TokenFormatConfig {
    TokenFormatConfig {
        style: TokenStyle::Checksummed,
        prefix: prefix.to_owned(),
    }
}

/// `token` has the checksummed shape for `prefix` and kind letter `kind`.
fn assert_checksummed(token: &str, prefix: &str, kind: char) {
    let head = format!("{prefix}{kind}_");
    assert!(token.starts_with(&head), "{head}… expected");
    assert_eq!(
        token.len(),
        head.len() + 36,
        "30 random + 6 checksum characters"
    );
    assert!(
        token[head.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric()),
        "base62 after the prefix"
    );
}

/// The shape-refusal counter for `shape` on `srv`'s `/metrics`.
async fn refused_shapes(srv: &TestServer, shape: &str) -> u64 {
    srv.counter(&format!(
        "token_service_refused_token_shapes_total{{shape=\"{shape}\"}}"
    ))
    .await
}

/// `token` with its last character replaced by another base62 character.
fn with_last_char_changed(token: &str) -> String {
    let (head, last) = token.split_at(token.len() - 1);
    let replacement = if last == "0" { '1' } else { '0' };
    format!("{head}{replacement}")
}

#[tokio::test]
async fn every_kind_of_secret_is_minted_with_its_prefix_and_authenticates() {
    let srv = TestServer::start_with(|c| c.token_format = checksummed("acme")).await;
    let alice = srv.token_user("alice").await;
    assert_checksummed(&alice.token, "acme", 's');
    assert_eq!(srv.as_(&alice).me().await.unwrap().id, alice.id);

    let pat = srv
        .as_(&alice)
        .create_token("me", "checksummed")
        .await
        .unwrap()
        .token;
    assert_checksummed(&pat, "acme", 'p');
    assert_eq!(srv.as_(&pat).me().await.unwrap().id, alice.id);

    let admin = srv.admin("root").await;
    let login = srv.as_(&admin).login(&alice.id).await.token;
    assert_checksummed(&login, "acme", 's');
    assert_eq!(srv.as_(&login).me().await.unwrap().id, alice.id);

    let team_id = new_id();
    let carol = srv.basic_user("carol").await;
    srv.as_(&admin)
        .add_team_member(&team_id, &carol.id, &["team_user", "team_admin"])
        .await
        .unwrap();
    let command = srv
        .as_(&carol)
        .create_command(pb::CreateCommandRequest {
            team_id,
            trigger: "deploy".into(),
            url: "https://hooks.example.com/deploy".into(),
            display_name: "Deploy".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_checksummed(&command.token, "acme", 'c');
    let receiver = srv
        .user("receiver", &["system_user", "system_token_introspector"])
        .await;
    let command_id = command.command.unwrap().id;
    assert!(
        srv.as_(&receiver)
            .verify_command_token(&command_id, &command.token)
            .await
            .unwrap()
            .valid
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_wrong_checksum_is_refused_without_a_lookup_and_counted() {
    let srv = TestServer::start_with(|c| c.token_format = checksummed("mm")).await;
    let alice = srv.token_user("alice").await;
    let pat = srv
        .as_(&alice)
        .create_token("me", "checksummed")
        .await
        .unwrap()
        .token;
    srv.as_(&pat).me().await.unwrap();
    let before = srv.cache_stats();
    let counted = refused_shapes(&srv, "bad_checksum").await;

    let typo = with_last_char_changed(&pat);
    assert_unauthenticated(srv.as_(&typo).me().await);
    // A one-character change anywhere in the random part is caught as well.
    let mut flipped = pat.clone().into_bytes();
    flipped[10] = if flipped[10] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();
    assert_unauthenticated(srv.as_(&flipped).me().await);

    let after = srv.cache_stats();
    assert_eq!(
        (after.hits, after.misses),
        (before.hits, before.misses),
        "neither the cache nor the database was consulted"
    );
    assert_eq!(refused_shapes(&srv, "bad_checksum").await, counted + 2);

    let malformed = refused_shapes(&srv, "malformed").await;
    assert_unauthenticated(srv.as_("not-a-token").me().await);
    assert_eq!(refused_shapes(&srv, "malformed").await, malformed + 1);
    // The real token still works.
    assert_eq!(srv.as_(&pat).me().await.unwrap().id, alice.id);
    srv.stop().await;
}

#[tokio::test]
async fn tokens_of_both_formats_authenticate_whatever_the_setting() {
    // This server mints checksummed tokens; a replica on the same database mints
    // Mattermost's (as before an operator switches).
    let srv = TestServer::start_with(|c| c.token_format = checksummed("mm")).await;
    let alice = srv.token_user("alice").await;
    let replica = srv
        .start_replica(|c| c.token_format = TokenFormatConfig::default())
        .await;
    let legacy_client = client_of(replica.grpc_addr());
    let legacy = legacy_client
        .as_(&alice)
        .create_token("me", "made before the switch")
        .await
        .unwrap()
        .token;
    assert_eq!(legacy.len(), 26, "Mattermost's format");
    assert!(legacy.bytes().all(|b| b.is_ascii_alphanumeric()));
    let checksummed_pat = srv
        .as_(&alice)
        .create_token("me", "made after")
        .await
        .unwrap()
        .token;
    assert_checksummed(&checksummed_pat, "mm", 'p');

    for token in [&legacy, &checksummed_pat, &alice.token] {
        assert_eq!(srv.as_(token).me().await.unwrap().id, alice.id);
        assert_eq!(legacy_client.as_(token).me().await.unwrap().id, alice.id);
    }
    replica.shutdown().await.unwrap();
    srv.stop().await;
}
