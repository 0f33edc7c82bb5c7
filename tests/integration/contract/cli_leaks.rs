//! `admin revoke-by-value`: tokens read on standard input (one per line) are reported as
//! leaked by the operator (no rate limit); the live ones are revoked, the answer only counts
//! what was read, and the audit trail says what happened.

use super::cli::{Cli, admin_with_stdin};

#[tokio::test]
async fn admin_revoke_by_value_revokes_the_live_tokens_read_on_standard_input() {
    let cli = Cli::new().await;
    cli.json(&["admin", "create-user", "--username", "ops"]);
    let leaked = cli.json(&["admin", "create-token", "--user", "ops"]);
    let kept = cli.json(&["admin", "create-token", "--user", "ops"]);
    let secret = leaked["token"].as_str().unwrap();
    let stdin = format!("{secret}\n\n  not-a-token  \n{secret}\n");
    let (ok, answer, err) = admin_with_stdin(
        &cli,
        &[
            "admin",
            "revoke-by-value",
            "--url",
            "https://paste.example.com/abc",
        ],
        &stdin,
    );
    assert!(ok, "{err}");
    assert_eq!(answer, serde_json::json!({"received": 3}));
    assert!(!err.contains(secret), "the secret is never printed");

    let tokens = cli.json(&["admin", "list-tokens", "--user", "ops"]);
    let ids: Vec<&str> = tokens
        .as_array()
        .expect("a list")
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [kept["id"].as_str().unwrap()],
        "only the reported token went"
    );

    // Its trail: gone, and why.
    let (ok, trail, err) = admin_with_stdin(&cli, &["admin", "identify-token"], secret);
    assert!(ok, "{err}");
    assert_eq!(trail["state"], "not_found", "{trail}");
    assert_eq!(
        trail["records"][0]["action"], "access_token.leaked",
        "{trail}"
    );
    assert_eq!(
        trail["records"][0]["detail"]["url"],
        "https://paste.example.com/abc"
    );
    let kept_secret = kept["token"].as_str().unwrap();
    let (ok, trail, err) = admin_with_stdin(&cli, &["admin", "identify-token"], kept_secret);
    assert!(ok, "{err}");
    assert_eq!(trail["kind"], "user_access_token", "{trail}");
    assert_eq!(trail["state"], "active", "{trail}");
    assert_eq!(trail["owner"]["username"], "ops");

    let (ok, _, err) = admin_with_stdin(&cli, &["admin", "revoke-by-value"], "\n\n");
    assert!(!ok && err.contains("standard input"), "{err}");
}
