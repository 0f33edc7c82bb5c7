//! The binary as an operator uses it: admin bootstrap printing JSON, `migrate status`,
//! `serve` logging its address, answering with the bootstrapped token, and stopping
//! gracefully on SIGTERM. Runs on the backend under test.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Output, Stdio},
    sync::mpsc::Receiver,
    time::Duration,
};

use serde_json::Value;
use token_service::pb::{self, token_service_client::TokenServiceClient};

use crate::common::{TestDb, authed};

const BIN: &str = env!("CARGO_BIN_EXE_token-service");

pub(crate) struct Cli {
    dir: tempfile::TempDir,
    db: TestDb,
}

impl Cli {
    pub(crate) async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::create(dir.path()).await;
        Self { dir, db }
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--database-url")
            .arg(self.db.url())
            .args(args)
            .env_remove("RUST_LOG")
            .env("TOKEN_SERVICE_LOG__FORMAT", "text");
        cmd
    }

    /// `serve` on ephemeral ports for both listeners, so tests never collide with each other
    /// or with anything else on the machine (the defaults are 50051 and 8065).
    pub(crate) fn serve(&self) -> Command {
        self.command(&[
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ])
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run token-service")
    }

    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

/// A running `token-service serve` child, its addresses read from its log. Killed on drop.
pub(crate) struct Serving {
    pub(crate) child: Child,
    pub(crate) log: Receiver<String>,
    pub(crate) grpc_addr: String,
    pub(crate) http_addr: String,
    /// Text that must never appear in the log (a secret).
    never_logged: String,
}

impl Serving {
    /// Spawns `command` and waits until it logs where it listens.
    pub(crate) fn start(mut command: Command, never_logged: &str) -> Self {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        // `name=value` in text logs, `"name":"value"` in JSON logs.
        let field = |line: &str, name: &str| {
            if let Ok(json) = serde_json::from_str::<Value>(line) {
                return json["fields"][name].as_str().map(str::to_owned);
            }
            line.split(&format!("{name}="))
                .nth(1)
                .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        };
        let (grpc_addr, http_addr) = loop {
            let Ok(line) = log.recv_timeout(Duration::from_secs(30)) else {
                // Never leave the child behind.
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve did not log where it listens within 30 s");
            };
            assert!(
                !line.contains(never_logged),
                "the secret must never be logged"
            );
            if let Some(grpc) = field(&line, "grpc_addr") {
                break (grpc, field(&line, "http_addr").expect("the REST address"));
            }
        };
        Self {
            child,
            log,
            grpc_addr,
            http_addr,
            never_logged: never_logged.to_owned(),
        }
    }

    pub(crate) async fn client(&self) -> TokenServiceClient<tonic::transport::Channel> {
        TokenServiceClient::connect(format!("http://{}", self.grpc_addr))
            .await
            .unwrap()
    }

    /// Sends SIGTERM, checks the process exits successfully within 10 s, and returns the rest
    /// of its log.
    pub(crate) async fn terminate(&mut self) -> Vec<String> {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let mut exited = None;
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                exited = Some(status);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = exited.unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("serve did not stop within 10 s of SIGTERM")
        });
        assert!(status.success(), "serve exited with {status}");
        let rest: Vec<String> = self.log.try_iter().collect();
        assert!(
            rest.iter().all(|l| !l.contains(&self.never_logged)),
            "the secret must never be logged"
        );
        rest
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn bootstrap_serve_call_and_stop_like_the_readme() {
    let cli = Cli::new().await;
    let admin = cli.json(&[
        "admin",
        "create-user",
        "--username",
        "admin",
        "--roles",
        "system_user system_admin",
    ]);
    assert_eq!(admin["username"], "admin");
    assert_eq!(admin["roles"], "system_user system_admin");
    let admin_id = admin["id"].as_str().unwrap().to_owned();
    assert_eq!(admin_id.len(), 26);

    let token = cli.json(&[
        "admin",
        "create-token",
        "--user",
        "admin",
        "--description",
        "boot",
    ]);
    assert_eq!(token["user_id"], admin_id.as_str());
    assert_eq!(token["description"], "boot");
    let secret = token["token"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 26);
    let by_id = cli.json(&["admin", "create-token", "--user", &admin_id]);
    assert_eq!(by_id["user_id"], admin_id.as_str());

    let status = cli.json(&["migrate", "status"]);
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["applied"] == true)
    );

    let mut serving = Serving::start(cli.serve(), &secret);
    let http_addr = serving.http_addr.clone();
    assert!(
        !http_addr.ends_with(":8065"),
        "the test asked for an ephemeral REST port, not the default: {http_addr}"
    );
    let rest_me = reqwest::Client::new()
        .get(format!("http://{http_addr}/api/v4/users/me"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(rest_me.status(), 200, "the REST shim answers on its port");
    let mut client = serving.client().await;
    let me = client
        .get_me(authed(pb::GetMeRequest {}, &secret))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(me.id, admin_id);
    drop(client);

    let rest = serving.terminate().await;
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:#?}");
    assert!(rest.iter().all(|l| !l.contains(&secret)));
    cli.db.drop_database().await;
}

#[tokio::test]
async fn admin_errors_go_to_stderr_with_a_failing_exit_code() {
    let cli = Cli::new().await;
    let out = cli.run(&["admin", "create-token", "--user", "nobody"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("user not found"), "{err}");

    let out = cli.run(&["admin", "create-user", "--username", "9bad"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("username"));

    let out = cli.run(&[
        "admin",
        "create-user",
        "--username",
        "ok",
        "--roles",
        "wizard",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wizard"));
    cli.db.drop_database().await;
}

#[tokio::test]
async fn invalid_configuration_is_refused_with_the_key_named() {
    let cli = Cli::new().await;
    let out = cli
        .command(&["migrate", "status"])
        .env("TOKEN_SERVICE_POOL__MAX_CONNECTIONS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pool.max_connections"));

    let out = cli
        .command(&["migrate", "status"])
        .env("TOKEN_SERVICE_SERVER_KEY", "tooshort")
        .output()
        .unwrap();
    // migrate does not need the key; admin does.
    assert!(out.status.success());
    let out = cli
        .command(&["admin", "create-user", "--username", "x"])
        .env("TOKEN_SERVICE_SERVER_KEY", "tooshort")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server_key"));
    cli.db.drop_database().await;
}

#[tokio::test]
async fn a_different_server_key_is_refused_instead_of_rejecting_every_token() {
    let cli = Cli::new().await;
    cli.json(&["admin", "create-user", "--username", "first"]);
    let key = std::fs::read_to_string(cli.dir.path().join("data/server.key")).unwrap();
    assert_eq!(key.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cli.dir.path().join("data/server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let other = "ab".repeat(32);
    let out = cli
        .command(&["admin", "create-user", "--username", "second"])
        .env("TOKEN_SERVICE_SERVER_KEY", &other)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match"));
    cli.db.drop_database().await;
}

#[tokio::test]
async fn add_team_member_prints_the_membership() {
    let cli = Cli::new().await;
    cli.json(&["admin", "create-user", "--username", "carol"]);
    let team = token_service::domain::ids::new_id();
    let member = cli.json(&[
        "admin",
        "add-team-member",
        "--team",
        &team,
        "--user",
        "carol",
        "--roles",
        "team_user team_admin",
    ]);
    assert_eq!(member["team_id"], team.as_str());
    assert_eq!(member["roles"], "team_user team_admin");
    let out = cli.run(&[
        "admin",
        "add-team-member",
        "--team",
        "junk",
        "--user",
        "carol",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("team_id"));
    cli.db.drop_database().await;
}

#[tokio::test]
async fn an_invalid_webrtc_configuration_refuses_to_start_naming_the_key() {
    let cli = Cli::new().await;
    let cases = [
        (
            vec![("TOKEN_SERVICE_WEBRTC__TURN_URI", "turn:127.0.0.1:3478")],
            "webrtc.turn_shared_secret",
        ),
        (
            vec![("TOKEN_SERVICE_WEBRTC__STUN_URI", "127.0.0.1:3478")],
            "webrtc.stun_uri",
        ),
        (
            vec![
                ("TOKEN_SERVICE_WEBRTC__TURN_URI", "http://127.0.0.1"),
                ("TOKEN_SERVICE_WEBRTC__TURN_SHARED_SECRET", "s"),
            ],
            "webrtc.turn_uri",
        ),
        (
            vec![("TOKEN_SERVICE_WEBRTC__CREDENTIAL_TTL", "8d")],
            "webrtc.credential_ttl",
        ),
    ];
    for (vars, key) in cases {
        let mut cmd = cli.serve();
        cmd.env("TOKEN_SERVICE_WEBRTC__ENABLE", "true");
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{key}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{key}: {err}");
    }
    cli.db.drop_database().await;
}

#[tokio::test]
async fn add_team_member_takes_a_user_id_and_defaults_to_team_user() {
    let cli = Cli::new().await;
    let carol = cli.json(&["admin", "create-user", "--username", "carol"]);
    let carol_id = carol["id"].as_str().unwrap().to_owned();
    let team = token_service::domain::ids::new_id();
    // --user as an id, --roles omitted.
    let member = cli.json(&[
        "admin",
        "add-team-member",
        "--team",
        &team,
        "--user",
        &carol_id,
    ]);
    assert_eq!(member["team_id"], team.as_str());
    assert_eq!(member["user_id"], carol_id.as_str());
    assert_eq!(member["roles"], "team_user");
    // The same member by username: the roles are updated.
    let promoted = cli.json(&[
        "admin",
        "add-team-member",
        "--team",
        &team,
        "--user",
        "carol",
        "--roles",
        "team_user team_admin",
    ]);
    assert_eq!(promoted["user_id"], carol_id.as_str());
    assert_eq!(promoted["roles"], "team_user team_admin");
    // An id nobody has is refused, naming the flag.
    let out = cli.run(&[
        "admin",
        "add-team-member",
        "--team",
        &team,
        "--user",
        &token_service::domain::ids::new_id(),
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--user"));
}

#[tokio::test]
async fn a_numeric_turn_secret_from_the_environment_is_text_and_the_service_serves() {
    let cli = Cli::new().await;
    let alice = cli.json(&["admin", "create-user", "--username", "alice"]);
    let token = cli.json(&["admin", "create-token", "--user", "alice"]);
    let secret = token["token"].as_str().unwrap().to_owned();

    let mut serve = cli.serve();
    serve
        .env("TOKEN_SERVICE_WEBRTC__ENABLE", "true")
        .env(
            "TOKEN_SERVICE_WEBRTC__GATEWAY_URL",
            "wss://gw.example.com/janus",
        )
        .env("TOKEN_SERVICE_WEBRTC__STUN_URI", "stun:127.0.0.1:3478")
        .env("TOKEN_SERVICE_WEBRTC__TURN_URI", "turn:127.0.0.1:3478")
        .env("TOKEN_SERVICE_WEBRTC__TURN_SHARED_SECRET", "123456")
        .env("TOKEN_SERVICE_WEBRTC__CREDENTIAL_TTL", "3600");
    let mut serving = Serving::start(serve, &secret);
    let creds = serving
        .client()
        .await
        .get_webrtc_token(authed(pb::GetWebrtcTokenRequest {}, &secret))
        .await
        .expect("WebRTC is served")
        .into_inner();
    assert_eq!(creds.turn_uri, "turn:127.0.0.1:3478");
    assert_eq!(creds.credential_ttl.unwrap().seconds, 3600);
    assert!(
        creds
            .turn_username
            .ends_with(&format!(":{}", alice["id"].as_str().unwrap()))
    );
    // The password is keyed with the text "123456".
    let (_, expected) = token_service::domain::webrtc::turn_credentials(
        "123456",
        creds
            .turn_username
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap(),
        alice["id"].as_str().unwrap(),
    );
    assert_eq!(creds.turn_password, expected);
    serving.terminate().await;
    cli.db.drop_database().await;
}

#[tokio::test]
async fn migrate_up_and_down_move_what_status_reports() {
    let cli = Cli::new().await;
    let applied = |status: &Value| -> Vec<bool> {
        status
            .as_array()
            .expect("status is a JSON array")
            .iter()
            .map(|m| {
                assert!(
                    m["name"].as_str().is_some_and(|n| n.starts_with('m')),
                    "{m}"
                );
                m["applied"].as_bool().expect("applied is a boolean")
            })
            .collect()
    };

    let fresh = applied(&cli.json(&["migrate", "status"]));
    let count = fresh.len();
    assert!(count >= 3, "{fresh:?}");
    assert!(
        fresh.iter().all(|a| !a),
        "a fresh database has nothing applied"
    );

    assert_eq!(cli.json(&["migrate", "up"])["status"], "OK");
    assert_eq!(
        applied(&cli.json(&["migrate", "status"])),
        vec![true; count]
    );

    // One step by default: the newest migration only.
    let down = cli.json(&["migrate", "down"]);
    assert_eq!(down["status"], "OK");
    assert_eq!(down["rolled_back"], 1);
    let mut expected = vec![true; count];
    expected[count - 1] = false;
    assert_eq!(applied(&cli.json(&["migrate", "status"])), expected);

    let steps = (count - 1).to_string();
    cli.json(&["migrate", "down", "--steps", &steps]);
    assert_eq!(
        applied(&cli.json(&["migrate", "status"])),
        vec![false; count]
    );

    // Up again, and up once more changes nothing.
    cli.json(&["migrate", "up"]);
    cli.json(&["migrate", "up"]);
    assert_eq!(
        applied(&cli.json(&["migrate", "status"])),
        vec![true; count]
    );
    // The schema works: the operator bootstrap runs on it.
    cli.json(&["admin", "create-user", "--username", "after"]);
    cli.db.drop_database().await;
}
