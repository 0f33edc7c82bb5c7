//! [`TestServer`]: a real server on 127.0.0.1:0 over its own fresh database, with a second
//! context on the same database for fixtures; its endpoints, clients, and a clean stop that
//! drops the database.
//!
//! The server and the fixture context read the time from one [`ManualClock`], set to the
//! wall clock when the server starts and standing still after that: a test that needs time
//! to pass (an expiry, a cache entry's age, an activity interval) moves it with
//! [`TestServer::advance`] instead of sleeping. Polling and timeouts stay real time.

use std::{sync::Arc, time::Duration};

use tempfile::TempDir;
use token_service::{
    config::{Config, Secret},
    domain::{
        Context,
        clock::{Clock, ManualClock, SystemClock},
        model::UnixMillis,
    },
    pb::token_service_client::TokenServiceClient,
    server::{self, RunningServer, StartOptions},
};
use tonic::transport::Channel;

use super::TestDb;

/// The gRPC client type tests use.
pub type Client = TokenServiceClient<Channel>;

/// A fixed server key for tests (any 32 bytes).
pub const TEST_SERVER_KEY: &str =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// A running server on its own database.
#[derive(Debug)]
pub struct TestServer {
    pub config: Config,
    /// A second context on the same database and key, for fixtures (local operator).
    pub ctx: Context,
    /// The time of the server and of `ctx`.
    clock: ManualClock,
    /// One channel, connected on first use, shared by every [`TestServer::as_`] handle.
    channel: Channel,
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
        // The scheduled jobs run where a test asks for them (`c.jobs.enable = true`): a job
        // run landing between a test's clock move and its checks would change what it sees.
        config.jobs.enable = false;
        tweak(&mut config);
        let clock = ManualClock::starting_now();
        let options = StartOptions {
            clock: Arc::new(clock.clone()),
        };
        let running = server::start_with(&config, options.clone())
            .await
            .expect("server starts");
        // Its cache is in use once the revocation feed knows where the log stands (at once,
        // unless the machine is very busy); tests that count cache hits rely on it. Readiness
        // (`/readyz`, TokenService's gRPC health) follows, and is published once gRPC health
        // has been told.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !running.cache_stats().trusted || !running.readiness().is_ready() {
            assert!(
                std::time::Instant::now() < deadline,
                "the revocation feed never caught up"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        config.grpc_addr = running.grpc_addr();
        config.http_addr = running.http_addr();
        config.management_addr = running.management_addr();
        let mut fixture_config = config.clone();
        fixture_config.enable_user_access_tokens = true;
        fixture_config.pool.max_connections = 2;
        let ctx = server::open_context_with(&fixture_config, &options)
            .await
            .expect("fixture context");
        let channel = Channel::from_shared(format!("http://{}", config.grpc_addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        Self {
            config,
            ctx,
            clock,
            channel,
            server: Some(running),
            db: Some(db),
            dir,
        }
    }

    /// The server's current time (Unix milliseconds).
    pub fn now(&self) -> UnixMillis {
        self.clock.now()
    }

    /// Moves the server's clock forward: what an expiry, a TTL or an activity interval
    /// waits for has happened (nothing runs meanwhile; background work still runs on real
    /// time).
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Sets the server's clock to the wall clock again, for a test whose outside peer checks
    /// the real time (a TURN server reading credential expiries).
    pub fn catch_up_with_the_wall_clock(&self) {
        self.clock.set(SystemClock.now());
    }

    /// The options the server was started with (its clock), for another context that must
    /// share its time.
    pub fn start_options(&self) -> StartOptions {
        StartOptions {
            clock: Arc::new(self.clock.clone()),
        }
    }

    /// Another in-process replica: the same database, key and clock, with its own
    /// listeners, cache, pool and background tasks (no local socket: that path is this
    /// server's), after `tweak` adjusts a copy of this server's configuration. Stop it with
    /// `shutdown()` before this server.
    pub async fn start_replica(&self, tweak: impl FnOnce(&mut Config)) -> RunningServer {
        let mut config = self.config.clone();
        config.grpc_addr = "127.0.0.1:0".parse().unwrap();
        config.http_addr = "127.0.0.1:0".parse().unwrap();
        config.management_addr = None;
        config.enable_local_socket = false;
        tweak(&mut config);
        server::start_with(&config, self.start_options())
            .await
            .expect("replica starts")
    }

    /// A counter of this server's `/metrics` (the series name with its labels); panics
    /// when the series is absent.
    pub async fn counter(&self, series: &str) -> u64 {
        super::counter_at(self.config.http_addr, series).await
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.config.grpc_addr)
    }

    /// `http://127.0.0.1:<port>` of the REST shim.
    pub fn http_base(&self) -> String {
        format!("http://{}", self.config.http_addr)
    }

    /// A connected gRPC channel (a connection of its own).
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.endpoint())
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to test server")
    }

    /// A connected TokenService client (a connection of its own).
    pub async fn client(&self) -> Client {
        TokenServiceClient::new(self.channel().await)
    }

    /// A client on the server's shared channel (connected on first use).
    pub fn shared_client(&self) -> Client {
        TokenServiceClient::new(self.channel.clone())
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

    /// Stops the server gracefully, runs `check` on the database the server left (through
    /// a context of the test's own, e.g. `srv.ctx.clone()`), then drops the database.
    pub async fn stop_then(mut self, check: impl std::future::Future<Output = ()>) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("server stops cleanly");
        }
        check.await;
        self.stop().await;
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

/// A TokenService client for a server listening on `addr` (an in-process replica's gRPC
/// address), connecting on first use.
pub fn client_of(addr: std::net::SocketAddr) -> Client {
    Client::new(
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy(),
    )
}
