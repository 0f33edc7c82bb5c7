//! The system under test: a token-service started in this process on a temporary SQLite
//! database (the default), or one already running elsewhere. Either way the scenarios'
//! users and tokens are created through the gRPC API with a system_admin token.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use token_service::{
    admin,
    cli::AdminAction,
    config::{Config, Overrides, Secret},
    pb::{self, token_service_client::TokenServiceClient},
    server::{self, RunningServer},
};
use tonic::{Request, transport::Channel};

/// The server key of every in-process target: one key, so that the targets of a run (and of
/// every run) can share a database given with --database-url (a database remembers the key
/// it was set up with). A benchmark database holds no real secrets.
const BENCH_SERVER_KEY: &str = "6c6f616467656e2062656e63686d61726b20736572766572206b65792076312e";

/// A server to drive, with the credentials the scenarios present.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) grpc: SocketAddr,
    pub(crate) http: Option<SocketAddr>,
    /// A system_admin PAT: the caller of IntrospectToken and CreateUserAccessToken.
    pub(crate) admin_token: String,
    /// One PAT per provisioned user: the tokens introspected and presented to GetMe.
    pub(crate) tokens: Vec<String>,
    /// The database it uses, when known (in process, or given for an external target).
    pub(crate) database_url: Option<String>,
    in_process: Option<InProcess>,
}

#[derive(Debug)]
struct InProcess {
    running: RunningServer,
    dir: PathBuf,
}

impl Target {
    /// Starts token-service in this process (its tasks on `server_rt`) with the default
    /// configuration adjusted by `tweak`: a fresh SQLite database in a temporary directory
    /// unless `tweak` names another database, addresses chosen by the system.
    pub(crate) async fn start_in_process(
        server_rt: &tokio::runtime::Handle,
        tokens: usize,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("loadgen-{}", run_id()));
        // `TOKEN_SERVICE_*` variables apply as they do to the server, so that what a setting
        // costs can be measured (`TOKEN_SERVICE_CONNECTIONS__HTTP2_KEEPALIVE_INTERVAL=0`).
        let (from_env, report) = Config::load(None, &Overrides::default())
            .map_err(|e| format!("the target's configuration: {e}"))?;
        for name in report.unknown_env_vars {
            eprintln!("warning: {name} matches no setting");
        }
        let mut config = Config {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.join("data"),
            server_key: Some(Secret::new(BENCH_SERVER_KEY)),
            ..from_env
        };
        tweak(&mut config);
        let database_url = config.effective_database_url().expose().to_owned();
        // Unique per run: a database server keeps the users of earlier runs.
        let admin_name = format!("loadgen-admin-{}", run_id());
        // The administrator is bootstrapped as an operator does it: `token-service admin init`,
        // then `token-service admin create-user` and `create-token`.
        admin::admin(&config, &AdminAction::Init)
            .await
            .map_err(|e| format!("initialise the database: {e}"))?;
        admin::admin(
            &config,
            &AdminAction::CreateUser {
                username: admin_name.clone(),
                email: String::new(),
                roles: "system_user system_admin".to_owned(),
                bot: false,
                owner: None,
                id: None,
            },
        )
        .await
        .map_err(|e| format!("create the admin user: {e}"))?;
        let created = admin::admin(
            &config,
            &AdminAction::CreateToken {
                user: admin_name,
                description: "loadgen".to_owned(),
                expires_in_days: None,
                bound_cidrs: Vec::new(),
                scopes: Vec::new(),
            },
        )
        .await
        .map_err(|e| format!("create the admin token: {e}"))?;
        let admin_token = created["token"]
            .as_str()
            .ok_or("create-token printed no token")?
            .to_owned();
        let running = server_rt
            .spawn(async move { server::start(&config).await.map_err(|e| e.to_string()) })
            .await
            .map_err(|e| format!("server task: {e}"))?
            .map_err(|e| format!("start token-service: {e}"))?;
        let mut target = Self {
            grpc: running.grpc_addr(),
            http: Some(running.http_addr()),
            admin_token,
            tokens: Vec::new(),
            database_url: Some(database_url),
            in_process: Some(InProcess { running, dir }),
        };
        match target.provision(tokens).await {
            Ok(()) => Ok(target),
            Err(e) => {
                target.stop().await;
                Err(e)
            }
        }
    }

    /// A token-service running elsewhere.
    pub(crate) async fn external(
        grpc: SocketAddr,
        http: Option<SocketAddr>,
        admin_token: String,
        tokens: usize,
    ) -> Result<Self, String> {
        let mut target = Self {
            grpc,
            http,
            admin_token,
            tokens: Vec::new(),
            database_url: None,
            in_process: None,
        };
        target.provision(tokens).await?;
        Ok(target)
    }

    /// The same running server's database seen through another gRPC address (a second
    /// replica configured differently), reusing the provisioned tokens.
    pub(crate) fn sibling(&self, grpc: SocketAddr) -> Self {
        Self {
            grpc,
            http: None,
            admin_token: self.admin_token.clone(),
            tokens: self.tokens.clone(),
            database_url: None,
            in_process: None,
        }
    }

    /// The admin's user id.
    pub(crate) async fn admin_user_id(&self) -> Result<String, String> {
        let mut client = connect(self.grpc, 1).await?.remove(0);
        let me = client
            .get_user(authed(
                pb::GetUserRequest {
                    user_id: "me".to_owned(),
                },
                &self.admin_token,
            ))
            .await
            .map_err(|s| format!("GetUser me: {s:?}"))?
            .into_inner();
        Ok(me.user.ok_or("GetUser returned no user")?.id)
    }

    /// Token-cache hits and misses so far (in-process only).
    pub(crate) fn cache_counts(&self) -> Option<(u64, u64)> {
        let stats = self.in_process.as_ref()?.running.cache_stats();
        Some((stats.hits, stats.misses))
    }

    /// Creates `n` users, each with a personal access token.
    async fn provision(&mut self, n: usize) -> Result<(), String> {
        let mut client = connect(self.grpc, 1).await?.remove(0);
        let run = run_id();
        for i in 0..n {
            let user = client
                .create_user(authed(
                    pb::CreateUserRequest {
                        username: format!("lg-{run}-{i}"),
                        roles: vec![
                            "system_user".to_owned(),
                            "system_user_access_token".to_owned(),
                        ],
                        ..Default::default()
                    },
                    &self.admin_token,
                ))
                .await
                .map_err(|s| format!("CreateUser: {s:?}"))?
                .into_inner()
                .user
                .ok_or("CreateUser returned no user")?;
            let created = client
                .create_user_access_token(authed(
                    pb::CreateUserAccessTokenRequest {
                        user_id: user.id,
                        description: "loadgen".to_owned(),
                        expires_at: None,
                        ..Default::default()
                    },
                    &self.admin_token,
                ))
                .await
                .map_err(|s| format!("CreateUserAccessToken: {s:?}"))?
                .into_inner();
            self.tokens.push(created.token);
        }
        Ok(())
    }

    /// Stops an in-process server and deletes its directory.
    pub(crate) async fn stop(self) {
        if let Some(p) = self.in_process {
            if let Err(e) = p.running.shutdown().await {
                eprintln!("token-service stopped with an error: {e}");
            }
            let _ = std::fs::remove_dir_all(&p.dir);
        }
    }
}

/// `n` gRPC clients, each on its own HTTP/2 connection.
pub(crate) async fn connect(
    addr: SocketAddr,
    n: usize,
) -> Result<Vec<TokenServiceClient<Channel>>, String> {
    Ok(channels(addr, n)
        .await?
        .into_iter()
        .map(TokenServiceClient::new)
        .collect())
}

/// `n` HTTP/2 connections to `addr` (at least one).
pub(crate) async fn channels(addr: SocketAddr, n: usize) -> Result<Vec<Channel>, String> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// A request carrying `authorization: Bearer <token>`.
pub(crate) fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

/// A short unique suffix for names (base 36 of the clock's nanoseconds).
fn run_id() -> String {
    let mut n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        ^ u128::from(std::process::id());
    let mut out = String::new();
    while n > 0 && out.len() < 10 {
        let digit = (n % 36) as u32;
        out.push(char::from_digit(digit, 36).expect("base 36"));
        n /= 36;
    }
    out
}
