//! Test harness: a real server on 127.0.0.1:0 with a fresh database per test, the generated
//! tonic client over a real socket, and fixtures that provision users directly through the
//! domain as the local operator (as `token-service admin` does).
//!
//! Backend: SQLite in a temporary directory by default. Set `TEST_DATABASE_URL` to a
//! PostgreSQL or MariaDB/MySQL server URL (for example
//! `postgres://postgres@127.0.0.1:5432/postgres` or `mysql://root@127.0.0.1:3306/test`) to
//! run every test on a fresh database created on that server and dropped afterwards.

#![allow(
    dead_code,
    reason = "shared helpers; not every test module uses every one"
)]

pub mod db;
pub mod proxy;

use std::time::Duration;

use tempfile::TempDir;
use token_service::{
    config::{Config, Secret},
    domain::{
        Context,
        caller::Caller,
        sessions::{self, NewSession},
        users::{self, NewUser},
    },
    pb::token_service_client::TokenServiceClient,
    server::{self, RunningServer},
};
use tonic::{Request, Status, transport::Channel};
use tonic_types::StatusExt;

pub use db::TestDb;

/// The gRPC client type tests use.
pub type Client = TokenServiceClient<Channel>;

/// A fixed server key for tests (any 32 bytes).
pub const TEST_SERVER_KEY: &str =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// A user with a login session token.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub username: String,
    /// A session token for this user (like a Mattermost login).
    pub token: String,
}

/// A running server on its own database.
#[derive(Debug)]
pub struct TestServer {
    pub config: Config,
    /// A second context on the same database and key, for fixtures (local operator).
    pub ctx: Context,
    server: Option<RunningServer>,
    db: Option<TestDb>,
    dir: TempDir,
}

impl TestServer {
    /// Starts a server with the test defaults.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusts the configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = TestDb::create(dir.path()).await;
        let mut config = Config {
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("data"),
            database_url: Some(token_service::config::DatabaseUrl::new(db.url())),
            server_key: Some(Secret::new(TEST_SERVER_KEY)),
            health_check_interval_ms: 100,
            shutdown_grace_period_secs: 5,
            ..Config::default()
        };
        config.pool.max_connections = 5;
        tweak(&mut config);
        let running = server::start(&config).await.expect("server starts");
        // Its cache is in use once the revocation feed knows where the log stands (at once,
        // unless the machine is very busy); tests that count cache hits rely on it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !running.cache_stats().trusted {
            assert!(
                std::time::Instant::now() < deadline,
                "the revocation feed never caught up"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        config.grpc_addr = running.grpc_addr();
        config.http_addr = running.http_addr();
        let mut fixture_config = config.clone();
        fixture_config.enable_user_access_tokens = true;
        fixture_config.pool.max_connections = 2;
        let ctx = server::open_context(&fixture_config)
            .await
            .expect("fixture context");
        Self {
            config,
            ctx,
            server: Some(running),
            db: Some(db),
            dir,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.config.grpc_addr)
    }

    /// `http://127.0.0.1:<port>` of the REST shim.
    pub fn http_base(&self) -> String {
        format!("http://{}", self.config.http_addr)
    }

    /// A connected gRPC channel.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.endpoint())
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to test server")
    }

    /// A connected TokenService client.
    pub async fn client(&self) -> Client {
        TokenServiceClient::new(self.channel().await)
    }

    /// Starts a graceful shutdown without waiting for it (see [`TestServer::stop`]).
    pub fn trigger_shutdown(&self) {
        let trigger = self.server.as_ref().expect("running").shutdown_trigger();
        let _ = trigger.send(true);
    }

    /// The running server's token-check cache counters.
    pub fn cache_stats(&self) -> token_service::domain::cache::CacheStats {
        self.server.as_ref().expect("running").cache_stats()
    }

    /// The temporary directory (data dir, SQLite file).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The backend under test: "sqlite", "postgres" or "mysql".
    pub fn backend(&self) -> &'static str {
        self.ctx.store().backend_name()
    }

    /// Creates a user with `roles` and a login session.
    pub async fn user(&self, username: &str, roles: &[&str]) -> Actor {
        self.create_actor(username, roles, false, None).await
    }

    /// A plain user (`system_user`).
    pub async fn basic_user(&self, username: &str) -> Actor {
        self.user(username, &["system_user"]).await
    }

    /// A user allowed to manage their own tokens (`system_user system_user_access_token`).
    pub async fn token_user(&self, username: &str) -> Actor {
        self.user(username, &["system_user", "system_user_access_token"])
            .await
    }

    /// A system admin.
    pub async fn admin(&self, username: &str) -> Actor {
        self.user(username, &["system_user", "system_admin"]).await
    }

    /// A bot owned by `owner` (or by nobody), with a session.
    pub async fn bot(&self, username: &str, owner: Option<&Actor>) -> Actor {
        self.create_actor(
            username,
            &["system_user"],
            true,
            owner.map(|o| o.id.as_str()),
        )
        .await
    }

    async fn create_actor(
        &self,
        username: &str,
        roles: &[&str],
        is_bot: bool,
        owner: Option<&str>,
    ) -> Actor {
        let user = users::create_user(
            &self.ctx,
            &Caller::Local,
            NewUser {
                username: username.to_owned(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                is_bot,
                bot_owner_id: owner.unwrap_or_default().to_owned(),
                ..NewUser::default()
            },
        )
        .await
        .expect("create fixture user");
        let created = sessions::create_session(
            &self.ctx,
            &Caller::Local,
            NewSession {
                user_id: user.id.to_string(),
                lifetime_ms: Some(3_600_000),
                ..NewSession::default()
            },
        )
        .await
        .expect("create fixture session");
        Actor {
            id: user.id.to_string(),
            username: user.username,
            token: created.token.expose().to_owned(),
        }
    }

    /// A personal access token for `owner` made by the local operator (as `token-service admin
    /// create-token` does), whatever the running server's settings: a token that already
    /// existed, for example before `enable_user_access_tokens` was switched off. With `used`,
    /// it has also authenticated once, so its session is minted. Returns (token id, secret).
    pub async fn existing_pat(&self, owner: &Actor, used: bool) -> (String, String) {
        use token_service::domain::{
            access_tokens::{self, NewUserAccessToken},
            secret::PlainToken,
        };
        let created = access_tokens::create_user_access_token(
            &self.ctx,
            &Caller::Local,
            NewUserAccessToken {
                user_id: owner.id.clone(),
                description: "made earlier".into(),
                expires_at: None,
            },
        )
        .await
        .expect("create fixture token");
        let secret = created.secret.expose().to_owned();
        if used {
            self.ctx
                .authenticate(&PlainToken::from_presented(secret.clone()))
                .await
                .expect("the fixture token authenticates where tokens are on");
        }
        (created.token.id.to_string(), secret)
    }

    /// Stops the server gracefully (failing the test if it errored) and drops the database.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("server stops cleanly");
        }
        self.ctx.store().clone().close().await;
        if let Some(db) = self.db.take() {
            db.drop_database().await;
        }
    }
}

/// Wraps a message in a request carrying `authorization: Bearer <token>`.
pub fn authed<T>(message: T, token: &str) -> Request<T> {
    with_header(message, &format!("Bearer {token}"))
}

/// Wraps a message in a request carrying the given `authorization` header value.
pub fn with_header<T>(message: T, authorization: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        authorization.parse().expect("ascii header"),
    );
    request
}

/// The `google.rpc.ErrorInfo` reason (the Mattermost error id) of a status.
pub fn error_id(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_else(|| panic!("status without ErrorInfo: {status:?}"))
}

/// Asserts a call failed with `code` and error id `id`.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    code: tonic::Code,
    id: &str,
) -> Status {
    let status = result.expect_err("call should fail");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    assert_eq!(error_id(&status), id, "unexpected error id: {status:?}");
    status
}

/// Asserts a call failed with PERMISSION_DENIED naming `permission`.
#[track_caller]
pub fn assert_denied<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    permission: &str,
) {
    let status = assert_error(
        result,
        tonic::Code::PermissionDenied,
        "api.context.permissions.app_error",
    );
    let info = status.get_details_error_info().unwrap();
    assert_eq!(
        info.metadata.get("permission").map(String::as_str),
        Some(permission),
        "{status:?}"
    );
    assert!(status.message().contains(permission), "{status:?}");
}

/// Asserts a call failed as unauthenticated.
#[track_caller]
pub fn assert_unauthenticated<T: std::fmt::Debug>(result: Result<tonic::Response<T>, Status>) {
    assert_error(
        result,
        tonic::Code::Unauthenticated,
        "api.context.session_expired.app_error",
    );
}

/// Asserts INVALID_ARGUMENT naming `field` in a BadRequest violation.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    field: &str,
    id: &str,
) {
    let status = assert_error(result, tonic::Code::InvalidArgument, id);
    let bad = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest detail: {status:?}"));
    assert!(
        bad.field_violations.iter().any(|v| v.field == field),
        "field {field} not named: {status:?}"
    );
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "{status:?}"
    );
}

/// Asserts that `token` no longer authenticates (GetMe is UNAUTHENTICATED).
pub async fn assert_token_refused(client: &mut Client, token: &str) {
    let answer = client
        .get_me(authed(token_service::pb::GetMeRequest {}, token))
        .await;
    assert_unauthenticated(answer);
}

/// Deactivates (or reactivates) a user as `admin`.
pub async fn set_user_active(client: &mut Client, admin: &Actor, user_id: &str, active: bool) {
    client
        .update_user_active(authed(
            token_service::pb::UpdateUserActiveRequest {
                user_id: user_id.to_owned(),
                active,
            },
            &admin.token,
        ))
        .await
        .expect("update user active");
}

/// Another replica as a separate OS process: the real `token-service serve` binary on this
/// server's database and key, with its own cache, pool and revocation feed. Killed on drop.
#[derive(Debug)]
pub struct ReplicaProcess {
    child: std::process::Child,
    pub grpc_addr: String,
    pub http_addr: String,
    _dir: TempDir,
}

impl ReplicaProcess {
    /// Starts `token-service serve` for `srv`'s database and waits until it listens.
    pub fn start(srv: &TestServer) -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("temp dir");
        let url = srv
            .config
            .database_url
            .as_ref()
            .expect("database url")
            .expose()
            .to_owned();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_token-service"))
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--database-url")
            .arg(&url)
            .env_remove("RUST_LOG")
            .env("TOKEN_SERVICE_SERVER_KEY", TEST_SERVER_KEY)
            .env("TOKEN_SERVICE_LOG__FORMAT", "text")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn token-service serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Keep draining so the child never blocks on a full pipe.
                    continue;
                }
            }
        });
        let field = |line: &str, name: &str| {
            line.split(&format!("{name}="))
                .nth(1)
                .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        };
        let (grpc_addr, http_addr) = loop {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
                // Never leave the child behind.
                let _ = child.kill();
                let _ = child.wait();
                panic!("the replica did not log where it listens within 30 s");
            };
            if let (Some(grpc), Some(http)) = (field(&line, "grpc_addr"), field(&line, "http_addr"))
            {
                break (grpc, http);
            }
        };
        Self {
            child,
            grpc_addr,
            http_addr,
            _dir: dir,
        }
    }

    /// A sample of this replica's `/metrics`.
    async fn metric(&self, name: &str) -> u64 {
        let text = reqwest::get(format!("http://{}/metrics", self.http_addr))
            .await
            .expect("scrape the replica")
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("the replica reports {name}"))
    }

    /// How many token checks this replica answered from its cache.
    pub async fn cache_hits(&self) -> u64 {
        self.metric("token_service_cache_hits_total").await
    }

    /// Waits until the replica's revocation feed has caught up (its cache is in use).
    pub async fn wait_until_caught_up(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.metric("token_service_cache_trusted").await != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the replica's revocation feed never caught up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A client of this replica.
    pub async fn client(&self) -> Client {
        let channel = Channel::from_shared(format!("http://{}", self.grpc_addr))
            .unwrap()
            .connect()
            .await
            .expect("connect to replica process");
        TokenServiceClient::new(channel)
    }
}

impl Drop for ReplicaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a personal access token for `owner` (as `owner`); returns (token id, secret).
pub async fn create_own_pat(client: &mut Client, owner: &Actor) -> (String, String) {
    let created = client
        .create_user_access_token(authed(
            token_service::pb::CreateUserAccessTokenRequest {
                user_id: "me".into(),
                description: "test token".into(),
                expires_at: None,
            },
            &owner.token,
        ))
        .await
        .expect("create token")
        .into_inner();
    let token = created.user_access_token.expect("token metadata");
    (token.id, created.token)
}

/// The next item of a revocation stream (an event, or the status that ended the stream),
/// within 5 s.
pub async fn next_revocation(
    stream: &mut tonic::Streaming<token_service::pb::WatchRevocationsResponse>,
) -> Result<token_service::pb::RevocationEvent, tonic::Status> {
    let message = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a stream item within 5 s")?;
    Ok(message.expect("stream open").event.expect("event set"))
}

/// Subscribes to WatchRevocations from now on.
pub async fn watch_revocations(
    client: &mut Client,
    token: &str,
) -> tonic::Streaming<token_service::pb::WatchRevocationsResponse> {
    client
        .watch_revocations(authed(
            token_service::pb::WatchRevocationsRequest::default(),
            token,
        ))
        .await
        .expect("subscribe")
        .into_inner()
}
