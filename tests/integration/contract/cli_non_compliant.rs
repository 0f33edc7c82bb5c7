//! `admin non-compliant-tokens count|revoke`: the non-compliant token operations from the
//! command line (on the database, as the local operator), with and without a lifetime
//! policy.

use super::cli::{Cli, stderr_of};

const POLICY: &str = "TOKEN_SERVICE_MAXIMUM_PERSONAL_ACCESS_TOKEN_LIFETIME_DAYS";

#[tokio::test]
async fn admin_counts_and_revokes_the_tokens_breaking_the_policy() {
    let cli = Cli::new().await;
    cli.json(&["admin", "create-user", "--username", "ops"]);
    let kept = cli.json(&["admin", "create-token", "--user", "ops"]);
    cli.json(&["admin", "create-token", "--user", "ops"]);

    // No policy: nothing to count, nothing to revoke.
    let count = cli.json(&["admin", "non-compliant-tokens", "count"]);
    assert_eq!(count, serde_json::json!({"count": 0}));
    let out = cli.run(&["admin", "non-compliant-tokens", "revoke", "--yes"]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("maximum_personal_access_token_lifetime_days"),
        "{}",
        stderr_of(&out)
    );

    // With a policy of 30 days, both never-expiring tokens break it.
    let with_policy = |args: &[&str]| {
        let out = cli.command(args).env(POLICY, "30").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(
        with_policy(&["admin", "non-compliant-tokens", "count"]),
        serde_json::json!({"count": 2})
    );
    let out = cli
        .command(&["admin", "non-compliant-tokens", "revoke"])
        .env(POLICY, "30")
        .output()
        .unwrap();
    assert!(!out.status.success(), "revoke needs --yes");
    assert_eq!(
        with_policy(&["admin", "non-compliant-tokens", "revoke", "--yes"]),
        serde_json::json!({"count": 2, "complete": true})
    );
    assert_eq!(
        with_policy(&["admin", "non-compliant-tokens", "count"]),
        serde_json::json!({"count": 0})
    );
    let records = cli.run(&["admin", "audit", "--action", "access_token.revoked"]);
    let text = String::from_utf8(records.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains(kept["id"].as_str().unwrap()));
    assert!(text.contains(r#""reason":"non_compliant""#), "{text}");
    cli.drop_database().await;
}
