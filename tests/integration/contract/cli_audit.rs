//! The audit commands of the binary: `admin audit` prints JSON lines through the cursor (on
//! the database, and through a running server's local socket, whose changes are the
//! operator's), `admin audit-hash` and `--credential-stdin` read a suspect token on standard
//! input, and `admin verify-audit` passes on an intact log and exits 1 naming the record an
//! edit in the database broke.

use std::process::{Output, Stdio};

use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;

use super::cli::{Cli, Serving, admin_with_stdin, stderr_of};

/// `admin` with `stdin` on its standard input; the whole output.
fn with_stdin(cli: &Cli, args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = cli
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The JSON lines a successful command printed.
fn lines(args: &[&str], out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "{args:?}: {}", stderr_of(out));
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{args:?}: {line:?}: {e}"))
        })
        .collect()
}

fn audit(cli: &Cli, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["admin", "audit"];
    all.extend_from_slice(args);
    lines(&all, &cli.run(&all))
}

#[tokio::test]
async fn admin_audit_lists_finds_a_suspect_token_and_verify_audit_finds_an_edit() {
    let cli = Cli::new().await;
    let user = cli.json(&["admin", "create-user", "--username", "ops"]);
    let user_id = user["id"].as_str().unwrap().to_owned();
    let token = cli.json(&["admin", "create-token", "--user", "ops"]);
    let secret = token["token"].as_str().unwrap().to_owned();
    let token_id = token["id"].as_str().unwrap().to_owned();

    // No server: the database. Newest first, one record per line, every field.
    let all = audit(&cli, &[]);
    let actions: Vec<&str> = all.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["access_token.created", "user.created"]);
    let created = &all[0];
    assert_eq!(created["actor"], serde_json::json!({"type": "operator"}));
    assert_eq!(created["user_id"], user_id.as_str());
    assert_eq!(created["token_id"], token_id.as_str());
    assert_eq!(created["hash"].as_str().unwrap().len(), 64);
    assert!(created["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        audit(&cli, &["--oldest-first", "--limit", "1"])[0]["action"],
        "user.created"
    );
    assert_eq!(audit(&cli, &["--user", "ops"]).len(), 2);
    assert_eq!(
        audit(&cli, &["--actor", "operator", "--action", "user.created"]).len(),
        1
    );
    assert!(audit(&cli, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    assert_eq!(audit(&cli, &["--until", "2999-01-01T00:00:00Z"]).len(), 2);

    // A suspect token, read on standard input only.
    let (ok, hashed, err) =
        admin_with_stdin(&cli, &["admin", "audit-hash"], &format!("{secret}\n"));
    assert!(ok, "{err}");
    assert_eq!(hashed["credential_hmac"], created["credential_hmac"]);
    let args = ["admin", "audit", "--credential-stdin"];
    let found = lines(&args, &with_stdin(&cli, &args, &secret));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["token_id"], token_id.as_str());
    let (ok, _, err) = admin_with_stdin(&cli, &["admin", "audit-hash"], "");
    assert!(!ok && err.contains("standard input"), "{err}");

    // Bad filters are refused naming the flag or the field.
    let out = cli.run(&["admin", "audit", "--action", "access_token.stolen"]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("actions"), "{}", stderr_of(&out));
    let out = cli.run(&["admin", "audit", "--since", "yesterday"]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("--since"), "{}", stderr_of(&out));

    let verified = cli.json(&["admin", "verify-audit"]);
    assert_eq!(verified["status"], "OK", "{verified}");
    assert_eq!(verified["verified"], 2);

    // With a server running, the commands go through its local socket: the operator's
    // changes there carry a request id, and no address.
    let serving = Serving::start(cli.serve(), &secret);
    let out = cli.run(&["admin", "revoke-token", &token_id]);
    assert!(
        stderr_of(&out).contains("local socket"),
        "{}",
        stderr_of(&out)
    );
    let out = cli.run(&["admin", "audit", "--token", &token_id, "--limit", "1"]);
    assert!(
        stderr_of(&out).contains("local socket"),
        "{}",
        stderr_of(&out)
    );
    let newest = lines(&["admin", "audit"], &out);
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["action"], "access_token.revoked");
    assert_eq!(newest[0]["actor"]["type"], "operator");
    assert!(newest[0].get("ip").is_none(), "{}", newest[0]);
    assert!(!newest[0]["request_id"].as_str().unwrap().is_empty());
    let verified = cli.json(&["admin", "verify-audit"]);
    assert_eq!(
        (verified["status"].as_str(), verified["verified"].as_i64()),
        (Some("OK"), Some(3))
    );

    // Somebody edits a record in the database: the chain names it, exit 1.
    let db = Database::connect(cli.database_url()).await.unwrap();
    let edited = newest[0]["id"].as_i64().unwrap() - 1;
    db.execute_unprepared(&format!(
        "UPDATE lifecycle_log SET ip = '203.0.113.66' WHERE id = {edited}"
    ))
    .await
    .unwrap();
    db.close().await.ok();
    let out = cli.run(&["admin", "verify-audit"]);
    assert!(!out.status.success(), "a broken chain fails the command");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "broken");
    assert_eq!(report["broken"]["record_id"], edited);
    assert_eq!(report["broken"]["kind"], "edited");
    let err = stderr_of(&out);
    assert!(err.contains(&format!("broken at record {edited}")), "{err}");
    assert!(!err.contains(&secret));
    drop(serving);
    cli.drop_database().await;
}
