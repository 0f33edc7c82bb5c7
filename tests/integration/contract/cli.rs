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
    /// A fresh database, bootstrapped as an operator does before the first `serve`
    /// (`admin init`: database, migrations, server key).
    pub(crate) async fn new() -> Self {
        let cli = Self::empty().await;
        let init = cli.json(&["admin", "init"]);
        assert_eq!(init["status"], "OK", "{init}");
        cli
    }

    /// A fresh database nothing has touched yet (on SQLite: no file).
    pub(crate) async fn empty() -> Self {
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

    /// The URL of the CLI's database (to look at it, or tamper with it, directly).
    pub(crate) fn database_url(&self) -> String {
        self.db.url()
    }

    /// Drops the CLI's database (the end of a test).
    pub(crate) async fn drop_database(self) {
        self.db.drop_database().await;
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
    /// The lines logged up to and including the one naming the listen addresses.
    pub(crate) startup: Vec<String>,
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
        let mut startup = Vec::new();
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
            startup.push(line.clone());
            if let Some(grpc) = field(&line, "grpc_addr") {
                break (grpc, field(&line, "http_addr").expect("the REST address"));
            }
        };
        Self {
            child,
            log,
            grpc_addr,
            http_addr,
            startup,
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
    assert!(by_id.get("scopes").is_none() && by_id.get("bound_cidrs").is_none());
    let narrowed = cli.json(&[
        "admin",
        "create-token",
        "--user",
        "admin",
        "--scope",
        "introspect",
        "--scope",
        "read",
        "--bound-cidr",
        "10.0.0.0/8",
    ]);
    assert_eq!(
        narrowed["scopes"],
        serde_json::json!(["read", "introspect"])
    );
    assert_eq!(narrowed["bound_cidrs"], serde_json::json!(["10.0.0.0/8"]));
    let refused = cli.run(&["admin", "create-token", "--user", "admin", "--scope", "fly"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--scope: unknown scope"),
        "{refused:?}"
    );

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
    let rest_me = crate::common::http_client()
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
    let cli = Cli::empty().await;
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
    // The schema works: the operator bootstrap runs on it (`admin init` adds the server
    // key, which `migrate` never creates).
    let init = cli.json(&["admin", "init"]);
    assert_eq!(init["created_server_key"], true);
    cli.json(&["admin", "create-user", "--username", "after"]);
    cli.db.drop_database().await;
}

/// The binary run in `dir` as an operator runs it there: no `--data-dir`, no
/// `--database-url`, so the defaults (`./data`) apply.
fn in_dir(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env("TOKEN_SERVICE_LOG__FORMAT", "text");
    cmd
}

pub(crate) fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file and directory under `dir`.
fn tree(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(tree(&path));
        }
        found.push(path);
    }
    found
}

#[tokio::test]
async fn admin_in_an_empty_directory_exits_2_naming_the_absolute_path_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let default_db = root.join("data").join("token-service.db");
    for args in [
        &["admin", "create-user", "--username", "admin"][..],
        &["admin", "create-token", "--user", "admin"][..],
        &[
            "admin",
            "add-team-member",
            "--team",
            "abcdefghijklmnopqrstuvwxyz",
            "--user",
            "admin",
        ][..],
    ] {
        let out = in_dir(&root, args).output().unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            err.contains(&format!("no database at {}", default_db.display())),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("data_dir") && err.contains("TOKEN_SERVICE_DATA_DIR"),
            "{err}"
        );
        assert!(err.contains("admin init"), "the way out is named: {err}");
        assert!(tree(&root).is_empty(), "created {:?}", tree(&root));
    }

    // A data directory chosen by a flag is named as chosen by that flag.
    let out = in_dir(
        &root,
        &[
            "--data-dir",
            "elsewhere",
            "admin",
            "create-user",
            "--username",
            "admin",
        ],
    )
    .output()
    .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            &root
                .join("elsewhere/token-service.db")
                .display()
                .to_string()
        ) && err.contains("set by --data-dir"),
        "{err}"
    );
    assert!(tree(&root).is_empty(), "created {:?}", tree(&root));

    // With the database there but the configured key file missing: refused, naming the
    // key file and its variable, and no key is generated.
    let init = in_dir(&root, &["admin", "init"]).output().unwrap();
    assert!(init.status.success(), "{}", stderr_of(&init));
    let missing_key = root.join("keys/server.key");
    let out = in_dir(&root, &["admin", "create-user", "--username", "admin"])
        .env("TOKEN_SERVICE_SERVER_KEY_FILE", &missing_key)
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("no server key file at {}", missing_key.display()))
            && err.contains("set by TOKEN_SERVICE_SERVER_KEY_FILE"),
        "{err}"
    );
    assert!(!root.join("keys").exists());
}

#[tokio::test]
async fn the_readme_bootstrap_works_verbatim_and_every_command_names_the_absolute_paths() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let db = root.join("data/token-service.db").display().to_string();
    let key = root.join("data/server.key").display().to_string();

    // README "A session with grpcurl": admin init, create-user, create-token, serve.
    let init = in_dir(&root, &["admin", "init"]).output().unwrap();
    assert!(init.status.success(), "{}", stderr_of(&init));
    let init: Value = serde_json::from_slice(&init.stdout).unwrap();
    assert_eq!(init["database"], db.as_str());
    assert_eq!(init["server_key"], key.as_str());
    assert_eq!(init["created_database"], true);
    assert_eq!(init["created_server_key"], true);
    let again = in_dir(&root, &["admin", "init"]).output().unwrap();
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["created_database"], false, "init is idempotent");
    assert_eq!(again["created_server_key"], false);

    let user = in_dir(
        &root,
        &[
            "admin",
            "create-user",
            "--username",
            "admin",
            "--roles",
            "system_user system_admin",
        ],
    )
    .output()
    .unwrap();
    assert!(user.status.success(), "{}", stderr_of(&user));
    let summary = format!("database: {db} (SQLite); server key: {key}");
    assert!(
        stderr_of(&user).contains(&summary),
        "admin says where it works, on stderr: {}",
        stderr_of(&user)
    );
    let token = in_dir(
        &root,
        &[
            "admin",
            "create-token",
            "--user",
            "admin",
            "--description",
            "bootstrap",
        ],
    )
    .output()
    .unwrap();
    assert!(token.status.success(), "{}", stderr_of(&token));
    assert!(stderr_of(&token).contains(&summary));
    let token: Value = serde_json::from_slice(&token.stdout).expect("stdout stays JSON");
    let secret = token["token"].as_str().unwrap().to_owned();

    let serving = Serving::start(
        in_dir(
            &root,
            &[
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ],
        ),
        &secret,
    );
    let starting = serving
        .startup
        .iter()
        .find(|l| l.contains("token-service starting"))
        .unwrap_or_else(|| panic!("no start-up line: {:#?}", serving.startup));
    assert!(
        starting.contains(&format!("database={db}"))
            && starting.contains(&format!("server_key={key}"))
            && starting.contains(" INFO "),
        "{starting}"
    );
    let me = serving
        .client()
        .await
        .get_me(authed(pb::GetMeRequest {}, &secret))
        .await
        .expect("the token minted by admin works on the server")
        .into_inner();
    assert_eq!(me.user.unwrap().username, "admin");
}

/// A configuration whose database is `url`, with a short connect timeout.
fn with_database(dir: &std::path::Path, url: &str, args: &[&str]) -> Command {
    let mut cmd = in_dir(dir, &[&["--database-url", url][..], args].concat());
    cmd.env("TOKEN_SERVICE_POOL__CONNECT_TIMEOUT_SECS", "1");
    cmd
}

#[tokio::test]
async fn unreachable_database_servers_are_reported_by_host_port_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (url, kind) in [
        ("postgres://postgres@127.0.0.1:1/x", "PostgreSQL"),
        ("mysql://root@127.0.0.1:1/x", "MariaDB/MySQL"),
    ] {
        let started = std::time::Instant::now();
        let out = with_database(dir.path(), url, &["migrate", "status"])
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert!(!out.status.success());
        assert!(
            err.contains(&format!("{kind} at 127.0.0.1:1: connection refused")),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "within the 1 s connect timeout (plus start-up): {:?}",
            started.elapsed()
        );
        assert!(!err.contains(".rs:") && !err.contains("sqlx") && !err.contains("line "));
    }
    let out = with_database(
        dir.path(),
        "postgres://postgres@no-such-host.invalid:5432/x",
        &["serve"],
    )
    .output()
    .unwrap();
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("PostgreSQL at no-such-host.invalid:5432")
            && err.contains("name does not resolve"),
        "{err}"
    );
}

#[tokio::test]
#[ignore = "needs a database server (TEST_DATABASE_URL, PostgreSQL or MariaDB); .ci/run runs it"]
async fn a_missing_database_and_a_refused_login_are_named_on_a_real_server() {
    let server = crate::common::db::required_server_url("a PostgreSQL or MariaDB server");
    let (kind, scheme_end) = if server.starts_with("postgres") {
        ("PostgreSQL", server.find("://").unwrap() + 3)
    } else {
        ("MariaDB/MySQL", server.find("://").unwrap() + 3)
    };
    // The server's host and port, with another database, then another user.
    let authority_end = server[scheme_end..]
        .find('/')
        .map_or(server.len(), |i| scheme_end + i);
    let authority = &server[scheme_end..authority_end];
    let host_port = authority.rsplit('@').next().unwrap();
    let scheme = &server[..scheme_end];
    let dir = tempfile::tempdir().unwrap();

    let missing = format!("{scheme}{authority}/ts_no_such_database");
    let out = with_database(dir.path(), &missing, &["migrate", "status"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{kind} at {host_port}"))
            && err.contains("database \"ts_no_such_database\" does not exist"),
        "{err}"
    );
    assert!(!err.contains(" at line "), "no server source lines: {err}");

    let wrong_user = format!("{scheme}ts_no_such_user:wrong@{host_port}/x");
    let out = with_database(dir.path(), &wrong_user, &["migrate", "status"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{kind} at {host_port}"))
            && err.contains("authentication failed for user \"ts_no_such_user\""),
        "{err}"
    );
    assert!(!err.contains("wrong"), "the password is never shown: {err}");
}

#[tokio::test]
async fn sqlite_open_failures_name_the_file_and_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let nowhere = root.join("no/such/dir/ts.db");
    let out = with_database(
        &root,
        &format!("sqlite://{}?mode=rwc", nowhere.display()),
        &["serve"],
    )
    .output()
    .unwrap();
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&nowhere.display().to_string())
            && err.contains(&format!(
                "the directory {} does not exist",
                root.join("no/such/dir").display()
            )),
        "{err}"
    );
    assert!(!root.join("no").exists(), "only data_dir is ever created");

    // Without ?mode=rwc a missing file is not created, and the hint says how.
    let out = with_database(&root, "sqlite://ts.db", &["migrate", "up"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&root.join("ts.db").display().to_string()) && err.contains("?mode=rwc"),
        "{err}"
    );
    assert!(!root.join("ts.db").exists());

    // A database URL inside data_dir: data_dir is created for it.
    let out = in_dir(
        &root,
        &[
            "--data-dir",
            "state",
            "--database-url",
            "sqlite://state/tokens.db?mode=rwc",
            "migrate",
            "up",
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(root.join("state/tokens.db").exists());
}

#[tokio::test]
async fn configuration_errors_name_the_variable_or_the_file_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let out = in_dir(&root, &["serve"])
        .env("TOKEN_SERVICE_POOL__MAX_CONNECTIONS", "many")
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "TOKEN_SERVICE_POOL__MAX_CONNECTIONS (pool.max_connections): expected a whole number"
        ),
        "{err}"
    );
    for internal in ["src/", ".rs:", "figment", "global.", "u32"] {
        assert!(!err.contains(internal), "{internal:?} in {err}");
    }

    let file = root.join("token-service.toml");
    std::fs::write(&file, "[pool]\nmax_connections = \"x\"\n").unwrap();
    let out = in_dir(&root, &["--config", "token-service.toml", "serve"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("pool.max_connections in {}", file.display())),
        "{err}"
    );
    assert!(
        !err.contains("default.") && !err.contains("TOML file"),
        "{err}"
    );
    assert!(tree(&root) == vec![file.clone()], "nothing created");

    // A database URL the service cannot use, and a key file that is not there: exit 2.
    let out = in_dir(&root, &["--database-url", "postgresql:/x:pw@db", "serve"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("database_url: must start with"), "{err}");
    let missing_key = root.join("no-such.key");
    let out = in_dir(
        &root,
        &[
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ],
    )
    .env("TOKEN_SERVICE_SERVER_KEY_FILE", &missing_key)
    .output()
    .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("server_key_file {}", missing_key.display())),
        "{err}"
    );
}

#[tokio::test]
async fn an_invalid_log_filter_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = in_dir(dir.path(), &["serve"])
        .env("TOKEN_SERVICE_LOG__FILTER", "info,token_service=loud")
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("log.filter"), "{err}");
    let out = in_dir(dir.path(), &["serve"])
        .env("RUST_LOG", "[[[")
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("RUST_LOG"), "{err}");
    assert!(tree(dir.path()).is_empty(), "nothing started");
}

#[tokio::test]
async fn listen_addresses_may_name_a_host() {
    let cli = Cli::new().await;
    cli.json(&["admin", "create-user", "--username", "alice"]);
    let secret = cli.json(&["admin", "create-token", "--user", "alice"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut serve = cli.command(&["serve", "--grpc-addr", "localhost:0"]);
    serve.env("TOKEN_SERVICE_HTTP_ADDR", "localhost:0");
    let mut serving = Serving::start(serve, &secret);
    assert!(
        serving.grpc_addr.starts_with("127.0.0.1:") && serving.http_addr.starts_with("127.0.0.1:"),
        "localhost is the IPv4 loopback: {} {}",
        serving.grpc_addr,
        serving.http_addr
    );
    serving
        .client()
        .await
        .get_me(authed(pb::GetMeRequest {}, &secret))
        .await
        .unwrap();
    let me = crate::common::http_client()
        .get(format!("http://{}/api/v4/users/me", serving.http_addr))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    serving.terminate().await;

    let out = cli
        .command(&["serve", "--grpc-addr", "no-such-host.invalid:50051"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--grpc-addr") && err.contains("no-such-host.invalid"),
        "{err}"
    );
    cli.db.drop_database().await;
}

#[tokio::test]
async fn create_token_expires_in_days_and_the_lifetime_policy_names_the_flag() {
    let cli = Cli::new().await;
    cli.json(&["admin", "create-user", "--username", "dora"]);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let token = cli.json(&[
        "admin",
        "create-token",
        "--user",
        "dora",
        "--expires-in-days",
        "10",
    ]);
    let expires = token["expires_at"].as_i64().unwrap();
    let ten_days = 10 * 86_400_000;
    assert!(
        (before + ten_days..before + ten_days + 60_000).contains(&expires),
        "{expires}"
    );
    for (args, expected) in [
        (
            &["--expires-in-days", "40"][..],
            "--expires-in-days: must be at most 30 days from now",
        ),
        (&[][..], "--expires-in-days: is required"),
        (
            &["--expires-in-days", "0"][..],
            "--expires-in-days: must be at least 1",
        ),
    ] {
        let out = cli
            .command(&[&["admin", "create-token", "--user", "dora"][..], args].concat())
            .env(
                "TOKEN_SERVICE_MAXIMUM_PERSONAL_ACCESS_TOKEN_LIFETIME_DAYS",
                "30",
            )
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty());
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    cli.db.drop_database().await;
}

/// `admin` with `stdin` written to its standard input; (exit success, stdout JSON, stderr).
pub(crate) fn admin_with_stdin(cli: &Cli, args: &[&str], stdin: &str) -> (bool, Value, String) {
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
    let out = child.wait_with_output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), json, stderr_of(&out))
}

async fn rest_status(http_addr: &str, token: &str) -> u16 {
    crate::common::http_client()
        .get(format!("http://{http_addr}/api/v4/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A running server hears `admin revoke-token` at once: the command goes through the local
/// socket, so the token is refused before the command returns, even with a cached check and
/// a revocation log read only once a minute (the database path would leave it working).
#[tokio::test]
async fn admin_revoke_token_reaches_the_running_server_through_the_local_socket() {
    let cli = Cli::new().await;
    cli.json(&["admin", "create-user", "--username", "ops"]);
    let token = cli.json(&["admin", "create-token", "--user", "ops"]);
    let secret = token["token"].as_str().unwrap().to_owned();
    let token_id = token["id"].as_str().unwrap().to_owned();
    let mut serve = cli.serve();
    serve.env("TOKEN_SERVICE_REVOCATION_POLL_INTERVAL_MS", "60000");
    let mut serving = Serving::start(serve, &secret);
    let socket = cli.dir.path().join("data").join("token-service.sock");
    {
        use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
        let meta = std::fs::symlink_metadata(&socket).expect("the local socket exists");
        assert!(meta.file_type().is_socket());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "only the owner connects"
        );
    }
    // Used (and cached) before the revocation.
    assert_eq!(rest_status(&serving.http_addr, &secret).await, 200);
    assert_eq!(rest_status(&serving.http_addr, &secret).await, 200);

    let out = cli.run(&["admin", "revoke-token", &token_id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("local socket"),
        "{}",
        stderr_of(&out)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["status"], "OK");
    assert_eq!(rest_status(&serving.http_addr, &secret).await, 401);

    // An unknown token: a failing exit and the reason on stderr.
    let out = cli.run(&["admin", "revoke-token", &token_id]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("NotFound"), "{}", stderr_of(&out));

    // The socket speaks as the operator only there: TCP still needs a token.
    let mut client = serving.client().await;
    let anonymous = client
        .get_user_access_tokens(pb::GetUserAccessTokensRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    drop(client);

    serving.terminate().await;
    assert!(!socket.exists(), "the socket is removed at shutdown");
    cli.db.drop_database().await;
}

/// The day-2 commands through the running server's socket, each printing JSON; and the
/// database path when no server runs (a stale socket file is ignored by admin and removed by
/// the next serve).
/// `admin rotate-token` through the running server's socket: the token keeps its id, the new
/// secret is printed once, the old one is refused before the command returns (and, presented
/// again, is reuse: by default the token is revoked); a grace period beyond the server's cap
/// is refused naming the field.
#[tokio::test]
async fn admin_rotate_token_prints_the_new_secret_and_the_old_one_stops() {
    let cli = Cli::new().await;
    cli.json(&["admin", "create-user", "--username", "ops"]);
    let token = cli.json(&["admin", "create-token", "--user", "ops"]);
    let old = token["token"].as_str().unwrap().to_owned();
    let token_id = token["id"].as_str().unwrap().to_owned();
    let serving = Serving::start(cli.serve(), &old);
    assert_eq!(rest_status(&serving.http_addr, &old).await, 200);

    let refused = cli.run(&["admin", "rotate-token", &token_id, "--grace", "1m"]);
    assert!(!refused.status.success());
    assert!(
        stderr_of(&refused).contains("grace_period"),
        "{}",
        stderr_of(&refused)
    );
    assert_eq!(rest_status(&serving.http_addr, &old).await, 200);

    let out = cli.run(&["admin", "rotate-token", &token_id, "--expires-in-days", "7"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("local socket"),
        "{}",
        stderr_of(&out)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["user_access_token"]["id"], token_id.as_str());
    assert!(printed["user_access_token"]["expires_at"].as_i64().unwrap() > 0);
    let new = printed["token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rest_status(&serving.http_addr, &new).await, 200);
    assert_eq!(rest_status(&serving.http_addr, &old).await, 401);
    let start = std::time::Instant::now();
    while rest_status(&serving.http_addr, &new).await != 401 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "reusing the old secret revokes the token"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(serving);
}

#[tokio::test]
async fn admin_day_two_commands_through_the_socket_and_without_a_server() {
    let cli = Cli::new().await;
    let user = cli.json(&[
        "admin",
        "create-user",
        "--username",
        "dana",
        "--email",
        "d@x.io",
    ]);
    let user_id = user["id"].as_str().unwrap().to_owned();
    let token = cli.json(&[
        "admin",
        "create-token",
        "--user",
        "dana",
        "--description",
        "deploys",
    ]);
    let secret = token["token"].as_str().unwrap().to_owned();
    let token_id = token["id"].as_str().unwrap().to_owned();

    // No server: the database path.
    let listed = cli.json(&["admin", "list-tokens"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], token_id.as_str());
    assert!(listed[0].get("token").is_none(), "secrets are never listed");

    // A stale socket file (a server killed without cleanup): admin uses the database,
    // serve replaces it.
    let socket = cli.dir.path().join("data").join("token-service.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let got = cli.json(&["admin", "get-token", &token_id]);
    assert_eq!(got["description"], "deploys");

    let serving = Serving::start(cli.serve(), &secret);
    let http = serving.http_addr.clone();
    let via = |args: &[&str]| {
        let out = cli.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains("local socket"),
            "{args:?}: {}",
            stderr_of(&out)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };

    let mine = via(&["admin", "list-tokens", "--user", "dana"]);
    assert_eq!(mine[0]["user_id"], user_id.as_str());
    let found = via(&["admin", "search-tokens", "dana"]);
    assert_eq!(found[0]["id"], token_id.as_str());
    assert_eq!(via(&["admin", "get-token", &token_id])["is_active"], true);

    assert_eq!(via(&["admin", "disable-token", &token_id])["status"], "OK");
    assert_eq!(rest_status(&http, &secret).await, 401);
    assert_eq!(via(&["admin", "get-token", &token_id])["is_active"], false);
    assert_eq!(via(&["admin", "enable-token", &token_id])["status"], "OK");
    assert_eq!(rest_status(&http, &secret).await, 200);

    // Introspection reads the token from stdin, never argv.
    let (ok, info, err) = admin_with_stdin(&cli, &["admin", "introspect"], &format!("{secret}\n"));
    assert!(ok, "{err}");
    assert_eq!(info["active"], true);
    assert_eq!(info["user_id"], user_id.as_str());
    assert_eq!(info["token_id"], token_id.as_str());
    let (ok, info, err) = admin_with_stdin(&cli, &["admin", "introspect"], "not-a-token\n");
    assert!(ok, "{err}");
    assert_eq!(info["active"], false);
    let (ok, _, err) = admin_with_stdin(&cli, &["admin", "introspect"], "");
    assert!(!ok);
    assert!(err.contains("standard input"), "{err}");

    // Sessions: using the token minted one.
    let sessions = via(&["admin", "list-sessions", "--user", &user_id]);
    let sessions = sessions.as_array().unwrap().clone();
    assert!(!sessions.is_empty());
    let session_id = sessions[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        via(&[
            "admin",
            "revoke-sessions",
            "--user",
            "dana",
            "--session",
            &session_id
        ])["status"],
        "OK"
    );
    assert_eq!(
        via(&["admin", "revoke-sessions", "--user", "dana", "--all"])["status"],
        "OK"
    );
    assert_eq!(
        via(&["admin", "revoke-all-sessions", "--yes"])["status"],
        "OK"
    );
    let refused = cli.run(&["admin", "revoke-all-sessions"]);
    assert!(
        !refused.status.success(),
        "revoking everyone's sessions needs --yes"
    );
    assert_eq!(
        via(&["admin", "list-sessions", "--user", "dana"]),
        Value::Array(vec![])
    );

    // Users: roles, deactivation and back.
    let promoted = via(&[
        "admin",
        "set-roles",
        "dana",
        "--roles",
        "system_user system_admin",
    ]);
    assert_eq!(promoted["roles"], "system_user system_admin");
    let off = via(&["admin", "deactivate-user", "dana"]);
    assert_ne!(off["delete_at"], 0);
    assert_eq!(rest_status(&http, &secret).await, 401);
    let on = via(&["admin", "reactivate-user", &user_id]);
    assert_eq!(on["delete_at"], 0);
    assert_eq!(rest_status(&http, &secret).await, 200);

    let missing = cli.run(&["admin", "deactivate-user", "nobody"]);
    assert!(!missing.status.success());
    assert!(
        stderr_of(&missing).contains("nobody"),
        "{}",
        stderr_of(&missing)
    );
    drop(serving);
    cli.db.drop_database().await;
}

/// The socket's start-up rules: another file at its path stops `serve` (exit 2, the setting
/// named, the file kept); a second server on the same socket is refused while the first
/// answers; `enable_local_socket = false` creates none.
#[tokio::test]
async fn the_local_socket_never_replaces_a_file_or_a_live_server_and_can_be_turned_off() {
    let cli = Cli::new().await;
    let socket = cli.dir.path().join("data").join("token-service.sock");

    std::fs::write(&socket, "not a socket").unwrap();
    let out = cli
        .serve()
        .output()
        .expect("serve with a regular file at the socket path");
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("local_socket") && stderr_of(&out).contains("not a socket"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "not a socket");
    std::fs::remove_file(&socket).unwrap();

    let first = Serving::start(cli.serve(), "never-logged-secret");
    let out = cli.serve().output().expect("a second serve");
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("in use"), "{}", stderr_of(&out));
    let listed = cli.run(&["admin", "list-tokens"]);
    assert!(
        stderr_of(&listed).contains("local socket"),
        "the first server still answers on its socket: {}",
        stderr_of(&listed)
    );
    drop(first);

    let mut off = cli.serve();
    off.env("TOKEN_SERVICE_ENABLE_LOCAL_SOCKET", "false");
    let serving = Serving::start(off, "never-logged-secret");
    assert!(
        serving
            .startup
            .iter()
            .any(|l| l.contains("local_socket=off")),
        "{:#?}",
        serving.startup
    );
    // The first server was killed: its socket file may remain, but nothing answers there.
    let listed = cli.run(&["admin", "list-tokens"]);
    assert!(listed.status.success(), "{}", stderr_of(&listed));
    assert!(
        !stderr_of(&listed).contains("local socket"),
        "{}",
        stderr_of(&listed)
    );
    drop(serving);
    cli.db.drop_database().await;
}

/// A user who cannot open the 0600 socket of a running server is told so (a non-zero exit),
/// rather than silently writing to the database behind the server's back. Needs root, to run
/// `admin` as `nobody`; skipped (and says so) otherwise.
#[tokio::test]
async fn a_user_who_cannot_open_the_socket_is_refused_naming_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!(
            "note: contract::cli::a_user_who_cannot_open_the_socket_is_refused_naming_it \
             skipped: needs root and setpriv to run admin as another user"
        );
        return;
    }
    let cli = Cli::new().await;
    let data = cli.dir.path().join("data");
    for dir in [cli.dir.path(), data.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let serving = Serving::start(cli.serve(), "never-logged-secret");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .arg("--data-dir")
        .arg(&data)
        .arg("--database-url")
        .arg(cli.db.url())
        .args(["admin", "list-tokens"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("cannot open the local socket") && err.contains("token-service.sock"),
        "{err}"
    );
    drop(serving);
    cli.db.drop_database().await;
}

/// `admin webhooks ...` prints JSON, on the database (no server running) as the local
/// operator; the secret is printed by create and rotate-secret only; test sends a real
/// signed message (to a receiver on this test's runtime: the commands block a thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_webhooks_commands_manage_endpoints_and_print_json() {
    let cli = Cli::new().await;
    let receiver = crate::common::Receiver::start().await;
    let webhooks = |args: &[&str]| {
        let mut all = vec!["admin", "webhooks"];
        all.extend_from_slice(args);
        let out = cli
            .command(&all)
            .env("TOKEN_SERVICE_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES", "true")
            .output()
            .unwrap();
        (
            out.status.success(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null),
            stderr_of(&out),
        )
    };
    let url = receiver.url();
    let (ok, created, err) = webhooks(&[
        "create",
        "--url",
        &url,
        "--action",
        "access_token.revoked",
        "--action",
        "session.revoked",
        "--description",
        "security team",
    ]);
    assert!(ok, "{err}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    let id = created["webhook"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["webhook"]["filter"]["actions"],
        serde_json::json!(["access_token.revoked", "session.revoked"])
    );

    let (ok, listed, _) = webhooks(&["list"]);
    assert!(ok);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["description"], "security team");
    assert!(!listed.to_string().contains(&secret[6..]), "never listed");

    let (ok, updated, err) = webhooks(&["update", &id, "--disable", "--all-actions"]);
    assert!(ok, "{err}");
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["filter"]["actions"], serde_json::json!([]));
    let (ok, got, _) = webhooks(&["get", &id]);
    assert!(ok);
    assert_eq!(got, updated);

    let (ok, rotated, err) = webhooks(&["rotate-secret", &id, "--grace", "1h"]);
    assert!(ok, "{err}");
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert!(
        rotated["webhook"]["previous_secret_expires_at"]
            .as_i64()
            .unwrap()
            > 0
    );

    let (ok, tested, err) = webhooks(&["test", &id]);
    assert!(ok, "{err}");
    assert_eq!(tested["delivered"], true, "{tested}");
    assert_eq!(tested["http_status"], 200);
    let got = receiver
        .wait_for(1, Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(got.id, tested["message_id"].as_str().unwrap());
    assert!(crate::common::verify_signature(&got, new_secret));
    assert!(
        crate::common::verify_signature(&got, &secret),
        "in the grace period"
    );

    // Bad input: the field and the error id, a failing exit code, nothing changed.
    let (ok, _, err) = webhooks(&["create", "--url", "ftp://x.invalid/"]);
    assert!(!ok);
    assert!(
        err.contains("url:") && err.contains("token_service.webhook.invalid_url"),
        "{err}"
    );
    let (ok, _, err) = webhooks(&["rotate-secret", &id, "--grace", "3w"]);
    assert!(!ok);
    assert!(err.contains("--grace"), "{err}");

    let (ok, deleted, _) = webhooks(&["delete", &id]);
    assert!(ok);
    assert_eq!(deleted["status"], "OK");
    let (ok, listed, _) = webhooks(&["list"]);
    assert!(ok);
    assert_eq!(listed, serde_json::json!([]));
    let (ok, _, err) = webhooks(&["get", &id]);
    assert!(!ok);
    assert!(err.contains("token_service.webhook.not_found"), "{err}");
}
