//! Start-up and shutdown: connect and migrate the database, check the server key, bind the
//! gRPC, HTTP and (optional) management listeners, serve, watch readiness, and on shutdown
//! flip health to NOT_SERVING before draining.
//!
//! gRPC health: the overall server (`""`) is SERVING while the process serves (liveness);
//! `token_service.v1.TokenService` is SERVING only while every readiness check of
//! [`crate::health`] passes, exactly when `/readyz` answers 200. Both turn NOT_SERVING when a
//! graceful shutdown begins.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tracing::{info, warn};

use crate::{
    config::{Config, DatabaseLocation, InvalidConfig},
    domain::{
        Context, Policy,
        clock::{Clock, SystemClock},
        lifecycle::AuditKey,
        revocations::FeedSettings,
        secret::{CommandTokenCipher, ServerKey, TokenHasher},
    },
    grpc,
    health::{CheckState, Health, Readiness},
    listener::{Acceptor, Limits, Listener, ListenerStats, TcpKeepalive},
    rest,
    store::{PoolOptions, Store},
    telemetry::RequestLayer,
    tls,
};

/// A start-up or serving failure, as a message for the operator.
pub type ServerError = Box<dyn std::error::Error + Send + Sync>;

/// The `service_meta` row holding the server key fingerprint.
const KEY_CHECK_META: &str = "server_key_check";

/// What a server is started with besides its configuration: choices made in code, never read
/// from a file or the environment.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Where the domain reads the time ([`SystemClock`] unless a test sets its own).
    pub clock: Arc<dyn Clock>,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
        }
    }
}

/// Connects to the configured database, applies migrations, loads the server key and checks
/// it against the database, and returns the domain context. Used by `serve` and by the
/// admin CLI, so both read the same settings.
pub async fn open_context(config: &Config) -> Result<Context, ServerError> {
    open_context_with(config, &StartOptions::default()).await
}

/// [`open_context`] with `options` (a test's clock).
pub async fn open_context_with(
    config: &Config,
    options: &StartOptions,
) -> Result<Context, ServerError> {
    config.validate()?;
    let store = connect_store(config).await?;
    let url = config.effective_database_url();
    store
        .migrate_up()
        .await
        .map_err(|e| format!("cannot migrate the database at {url}: {}", source_text(&e)))?;
    // A key that cannot be read or used is a configuration error (exit code 2), as are the
    // command-token keys and the role overrides below.
    let server_key = config
        .load_server_key(store.backend_name())
        .map_err(InvalidConfig)?;
    let hasher = TokenHasher::new(&server_key);
    let command_keys = config
        .command_tokens
        .keys
        .iter()
        .map(|(id, key)| (id.clone(), key.expose().to_owned()))
        .collect();
    let command_cipher = CommandTokenCipher::new(
        &server_key,
        &command_keys,
        config.command_tokens.current_key.as_deref(),
    )
    .map_err(InvalidConfig)?;
    let check = hasher.key_check();
    let stored = store
        .meta_value_or_insert(KEY_CHECK_META, &check)
        .await
        .map_err(|e| format!("cannot read service metadata: {}", source_text(&e)))?;
    if stored != check {
        return Err(
            "the server key does not match the key this database was set up with; \
                    every stored token would be rejected. Configure the original key \
                    (server_key or server_key_file)"
                .into(),
        );
    }
    let policy = Policy::try_from(config).map_err(InvalidConfig)?;
    let configured_audit_key = match &config.audit.key {
        Some(key) => Some(
            ServerKey::from_hex(key.expose())
                .map_err(|e| InvalidConfig(format!("audit.key: {e}")))?,
        ),
        None => None,
    };
    let audit_key = AuditKey::new(&server_key, configured_audit_key.as_ref());
    let ctx = Context::new(
        store,
        policy,
        hasher,
        command_cipher,
        audit_key,
        options.clock.clone(),
    );
    ctx.install_webhook_sender(Arc::new(crate::webhook_delivery::HttpWebhookSender::new()?));
    Ok(ctx)
}

/// Connects to the configured database (creating the SQLite data directory if needed),
/// without migrating.
pub async fn connect_store(config: &Config) -> Result<Store, ServerError> {
    connect_store_with(
        config,
        config.pool.max_connections,
        config.pool.min_connections,
    )
    .await
}

/// The revocation feed's own connection, so a request pool under load cannot delay it.
async fn connect_feed_store(config: &Config) -> Result<Store, ServerError> {
    connect_store_with(config, 1, 0).await
}

async fn connect_store_with(
    config: &Config,
    max_connections: u32,
    min_connections: u32,
) -> Result<Store, ServerError> {
    let url = config.effective_database_url();
    let location = config.database_location();
    if let DatabaseLocation::SqliteFile { file, create } = &location {
        prepare_sqlite_file(config, file, *create)?;
    }
    let pool = PoolOptions {
        max_connections,
        min_connections,
        connect_timeout: Duration::from_secs(config.pool.connect_timeout_secs),
        acquire_timeout: Duration::from_secs(config.pool.acquire_timeout_secs),
        check_connections: config.pool.check_connections,
        check_batches: config
            .pool
            .check_batches_on(!matches!(location, DatabaseLocation::Server(_))),
    };
    Store::connect(url.expose(), &pool).await.map_err(|e| {
        match &location {
            DatabaseLocation::SqliteFile { file, create } => {
                let dir = file.parent().unwrap_or(Path::new("/"));
                format!(
                    "cannot open the SQLite database {} in the directory {}: {}; the directory \
                     must exist and be writable by this user (SQLite writes -wal and -shm \
                     files beside the database){}",
                    file.display(),
                    dir.display(),
                    source_text(&e),
                    if *create {
                        ""
                    } else {
                        "; add ?mode=rwc to database_url to create a missing file"
                    }
                )
            }
            _ => format!("cannot connect to the database: {}", source_text(&e)),
        }
        .into()
    })
}

/// Before SQLite opens `file`: creates data_dir when the file lies inside it (and may be
/// created), and otherwise says plainly what is missing, naming the file and the directory.
fn prepare_sqlite_file(config: &Config, file: &Path, create: bool) -> Result<(), String> {
    let dir = file.parent().unwrap_or(Path::new("/"));
    if dir.is_dir()
        && config.database_is_in_data_dir()
        && let Ok(Some(mode)) = crate::private_files::open_to_others(dir)
    {
        // Not narrowed: the operator may share it on purpose; the files in it are private.
        warn!(
            path = %dir.display(),
            mode = %format!("{mode:04o}"),
            "group or other users may list the database's directory (earlier versions \
             created data_dir 0755); chmod 700 it"
        );
    }
    if create && !dir.exists() && config.database_is_in_data_dir() {
        crate::private_files::create_private_dir(dir).map_err(|e| {
            format!(
                "cannot create the directory {} for the SQLite database {} (data_dir {}): {e}",
                dir.display(),
                file.display(),
                config.absolute_data_dir().display()
            )
        })?;
    }
    if !dir.is_dir() {
        return Err(format!(
            "cannot open the SQLite database {}: the directory {} does not exist (only \
             data_dir, {}, is created, when the database is inside it); create the directory \
             or correct database_url",
            file.display(),
            dir.display(),
            config.absolute_data_dir().display()
        ));
    }
    if !create && !file.exists() {
        return Err(format!(
            "the SQLite database {} does not exist (in the directory {}); add ?mode=rwc to \
             database_url to create it, or correct the path",
            file.display(),
            dir.display()
        ));
    }
    // The database holds user names, e-mail addresses and digests: created 0600 here rather
    // than by SQLite (0644), and SQLite gives its -wal and -shm files the database's mode.
    let narrowed = crate::private_files::prepare_sqlite_files(file).map_err(|e| {
        format!(
            "cannot create or restrict the SQLite database {} (in the directory {}): {e}",
            file.display(),
            dir.display()
        )
    })?;
    for path in narrowed {
        warn!(
            path,
            "group or other users could read this SQLite file; narrowed it to mode 0600"
        );
    }
    Ok(())
}

fn source_text(e: &crate::domain::error::Error) -> String {
    use std::error::Error as _;
    match e.source() {
        Some(cause) => cause.to_string(),
        None => e.to_string(),
    }
}

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    management_addr: Option<SocketAddr>,
    local_socket: Option<PathBuf>,
    health: Health,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServerError>>,
    ctx: Context,
}

impl RunningServer {
    /// Hit and miss counts of the token-check cache.
    pub fn cache_stats(&self) -> crate::domain::cache::CacheStats {
        self.ctx.cache().stats()
    }

    /// The address gRPC listens on (the real port when configured with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The address the REST shim listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The management listener's address, when `management_addr` is set.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management_addr
    }

    /// The local operator socket's path, unless `enable_local_socket` is off.
    pub fn local_socket(&self) -> Option<&Path> {
        self.local_socket.as_deref()
    }

    /// The readiness last published (what `/readyz` and TokenService's gRPC health report).
    pub fn readiness(&self) -> Readiness {
        self.health.readiness()
    }

    /// Starts a graceful shutdown and waits for it: health turns NOT_SERVING, new
    /// connections are refused, in-flight calls finish (within the grace period).
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Waits until the server stops by itself (a failure) or after a shutdown.
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(format!("server task failed: {join}").into()),
        }
    }

    /// A handle that can trigger shutdown from elsewhere (signal handlers).
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Starts the service: TLS files, database, migrations, key, gRPC listener. Returns once the
/// listener is bound and health reports SERVING.
pub async fn start(config: &Config) -> Result<RunningServer, ServerError> {
    start_with(config, StartOptions::default()).await
}

/// [`start`] with `options` (a test's clock).
pub async fn start_with(
    config: &Config,
    options: StartOptions,
) -> Result<RunningServer, ServerError> {
    let tls = tls::ServerTls::load(&config.tls, config.allow_readable_key_files)
        .map_err(InvalidConfig)?;
    let connections = &config.connections;
    let keepalive = connections.http2_keepalive_interval.millis();
    let grpc_http2 = crate::listener::Http2Settings {
        max_concurrent_streams: connections.http2_max_concurrent_streams,
        keepalive_interval: (keepalive > 0).then(|| Duration::from_millis(keepalive)),
        keepalive_timeout: Duration::from_millis(connections.http2_keepalive_timeout.millis()),
        max_header_list_size: grpc::HTTP2_MAX_HEADER_LIST_BYTES,
    };
    info!(
        database = %config.database_location(),
        server_key = %config.server_key_location(),
        data_dir = %config.absolute_data_dir().display(),
        "token-service starting"
    );
    let ctx = open_context_with(config, &options).await?;
    let feed_store = connect_feed_store(config).await?;
    let listener = TcpListener::bind(config.grpc_addr)
        .await
        .map_err(|e| format!("cannot listen on grpc_addr {}: {e}", config.grpc_addr))?;
    let grpc_addr = listener.local_addr()?;
    let http_listener = TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| format!("cannot listen on http_addr {}: {e}", config.http_addr))?;
    let http_addr = http_listener.local_addr()?;
    let management_listener = match config.management_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on management_addr {addr}: {e}"))?,
        ),
        None => None,
    };
    let management_addr = match &management_listener {
        Some(listener) => Some(listener.local_addr()?),
        None => None,
    };
    let request_timeout =
        (config.request_timeout_ms > 0).then(|| Duration::from_millis(config.request_timeout_ms));
    let check_interval = Duration::from_millis(config.health_check_interval_ms);
    let health = Health::new(ctx.clone(), check_interval.max(Duration::from_secs(1)));
    let client_ip = crate::client_ip::ClientIpSettings::of(config).map_err(InvalidConfig)?;
    let rest_app = rest::router(
        ctx.clone(),
        health.clone(),
        config.probes_on_http_addr,
        config.max_request_body_bytes,
        request_timeout,
        config.enable_developer,
        &client_ip,
    );
    let management_app = rest::management_router(ctx.clone(), health.clone());

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // The server serves from now on; TokenService once the watcher finds it ready (the
    // revocation feed must catch up first).
    grpc::set_health(&health_reporter, false).await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let routes = grpc::listener_routes(ctx.clone(), health_service.clone(), shutdown_rx.clone())?;
    let local_socket = match config.local_socket_path() {
        Some(path) => {
            let listener = bind_local_socket(config, &path)?;
            let routes = grpc::routes(
                ctx.clone(),
                health_service,
                shutdown_rx.clone(),
                grpc::Callers::LocalOperator,
            )?;
            Some((path, listener, routes))
        }
        None => None,
    };
    let local_socket_path = local_socket.as_ref().map(|(path, ..)| path.clone());

    let health_task = tokio::spawn(watch_readiness(
        health.clone(),
        health_reporter.clone(),
        check_interval,
        shutdown_rx.clone(),
    ));
    // Replicas learn of each other's revocations from the log (on SQLite the other writer is
    // the `admin` command on the same file). Nothing is cached until the feed knows where the
    // log stands, or an entry filled first could miss a revocation recorded meanwhile.
    ctx.cache().set_trusted(false);
    let feed_task = tokio::spawn(crate::domain::revocations::run_revocation_feed(
        ctx.clone(),
        feed_store.clone(),
        FeedSettings::for_interval(Duration::from_millis(config.revocation_poll_interval_ms)),
        shutdown_rx.clone(),
    ));
    // Webhooks: delivered from the log by a task of its own, never on a request's path.
    let webhook_task = config.webhooks.enable_delivery.then(|| {
        tokio::spawn(crate::domain::webhook_worker::run_webhook_delivery(
            ctx.clone(),
            Some(ctx.log_advanced()),
            shutdown_rx.clone(),
        ))
    });
    // The background jobs (expired-token cleanup, expiry notices): one replica runs each.
    let jobs_task = config.jobs.enable.then(|| {
        tokio::spawn(crate::domain::jobs::run_scheduler(
            ctx.clone(),
            shutdown_rx.clone(),
        ))
    });
    // Last use of personal access tokens: collected by the token check, written in batches.
    let last_use_task = tokio::spawn(crate::domain::token_usage::run_last_use_flush(
        ctx.clone(),
        Duration::from_millis(config.last_use.flush_interval.millis()),
        shutdown_rx.clone(),
    ));
    // The lifecycle log's sealer (PostgreSQL, MariaDB): seals records left waiting (by a
    // writer that could not wait, or a replica that stopped before its seal), and once
    // more at shutdown. Writers start the seals they wait for themselves.
    let sealer_task = tokio::spawn(ctx.store().clone().run_log_sealer(shutdown_rx.clone()));
    // A started server is a ready one when it can be: the feed catches up within
    // milliseconds, so wait for that (bounded: a database that is down at start leaves it
    // NOT_SERVING, and readiness reports why) before saying that it listens.
    wait_for_first_readiness(&health, STARTUP_READINESS_WAIT).await;
    let grace = Duration::from_secs(config.shutdown_grace_period_secs);
    let (grpc_acceptor, http_acceptor, management_acceptor) = acceptors(
        config,
        ctx.metrics().listeners(),
        listener,
        http_listener,
        management_listener,
    );
    let http1 = crate::listener::Http1Settings {
        header_read_timeout: Duration::from_millis(
            config.connections.http_header_read_timeout.millis(),
        ),
    };
    let http_tls = tls.as_ref().map(tls::ServerTls::http);
    let grpc_tls = tls.as_ref().map(tls::ServerTls::grpc);
    let grpc_idle_timeout = Some(config.connections.grpc_idle_timeout.millis())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis);
    let management = management_addr.map_or_else(|| "off".to_owned(), |a| a.to_string());
    let local = local_socket_path
        .as_ref()
        .map_or_else(|| "off".to_owned(), |p| p.display().to_string());
    info!(%grpc_addr, %http_addr, %management, local_socket = %local, tls = %tls::mode_of(tls.as_ref()),
        database = %config.database_location(),
        backend = ctx.store().backend_name(), "token-service listening (gRPC and REST)");

    let server_ctx = ctx.clone();
    let server_health = health.clone();
    let task_socket_path = local_socket_path.clone();
    let task = tokio::spawn(async move {
        let mut signal = shutdown_rx.clone();
        let mut reporter = health_reporter.clone();
        let shutdown_health = health.clone();
        let shutdown_signal = async move {
            let _ = signal.wait_for(|stop| *stop).await;
            shutdown_health.begin_shutdown();
            grpc::set_health(&reporter, false).await;
            // Streams never end by themselves: health watches end after NOT_SERVING, and
            // revocation streams with UNAVAILABLE (they watch the same signal).
            grpc::end_health_watches(&mut reporter).await;
            info!("shutting down: health is NOT_SERVING, draining in-flight calls");
        };
        let request_layer = RequestLayer::grpc(ctx.metrics().clone(), grpc::served_method_paths())
            .client_ip(&client_ip);
        // Each connection's calls pass through its own stack (see listener::serve_grpc);
        // the call counter is the outermost layer.
        let grpc = crate::listener::serve_grpc(
            grpc_acceptor,
            grpc_tls,
            grpc_http2,
            grpc_idle_timeout,
            move |connection| {
                tower::ServiceBuilder::new()
                    .layer(connection.in_flight)
                    .layer(request_layer.for_peer(connection.peer))
                    .layer(
                        grpc::GrpcCallLayer::new(request_timeout)
                            .client_certificates(connection.client_certificates),
                    )
                    .service(routes.clone())
            },
            shutdown_signal,
        );
        let mut http_stop = shutdown_rx.clone();
        let http_shutdown = async move {
            let _ = http_stop.wait_for(|stop| *stop).await;
        };
        let http =
            crate::listener::serve_http(http_acceptor, rest_app, http_tls, http1, http_shutdown);
        // Plain HTTP whatever `tls` says: orchestrators' probes and scrapers reach it without
        // client certificates; it serves no credentials.
        let mut management_stop = shutdown_rx.clone();
        let management = async move {
            let Some(acceptor) = management_acceptor else {
                return Ok(());
            };
            crate::listener::serve_http(acceptor, management_app, None, http1, async move {
                let _ = management_stop.wait_for(|stop| *stop).await;
            })
            .await
        };
        // The local operator socket: plain gRPC (the file mode guards it), the same layers.
        let mut local_stop = shutdown_rx.clone();
        let local_metrics = ctx.metrics().clone();
        let local_stats = ctx.metrics().listeners().clone();
        let local = async move {
            let Some((path, listener, routes)) = local_socket else {
                return Ok(());
            };
            let served = tonic::transport::Server::builder()
                .layer(RequestLayer::grpc(
                    local_metrics,
                    grpc::served_method_paths(),
                ))
                .layer(grpc::GrpcCallLayer::new(request_timeout))
                .add_routes(routes)
                .serve_with_incoming_shutdown(
                    crate::listener::unix_incoming(listener, local_stats),
                    async move {
                        let _ = local_stop.wait_for(|stop| *stop).await;
                    },
                )
                .await;
            remove_local_socket(&path);
            served
        };
        let server = async {
            let ((), http, management, local) = tokio::join!(grpc, http, management, local);
            local.map_err(|e| -> ServerError {
                format!("local socket server failed: {e}").into()
            })?;
            http.map_err(|e| -> ServerError { format!("HTTP server failed: {e}").into() })?;
            management
                .map_err(|e| -> ServerError { format!("management server failed: {e}").into() })?;
            Ok::<(), ServerError>(())
        };
        tokio::pin!(server);
        let mut stop = shutdown_rx.clone();
        let result = tokio::select! {
            result = &mut server => result,
            _ = async {
                let _ = stop.wait_for(|stop| *stop).await;
                tokio::time::sleep(grace).await;
            } => {
                warn!(grace_secs = grace.as_secs(), "grace period over; dropping unfinished calls");
                Ok(())
            }
        };
        health_task.abort();
        feed_task.abort();
        // Delivery stops after the message in flight (bounded by webhooks.timeout) and
        // gives its leases up.
        if let Some(task) = webhook_task {
            let _ = task.await;
        }
        // A job stops after its batch in flight and hands the rest of its run over.
        if let Some(task) = jobs_task {
            let _ = task.await;
        }
        // The last flush of token uses, once the last calls are answered.
        let _ = last_use_task.await;
        if let Err(e) = ctx.flush_last_use().await {
            warn!(error = %e, "could not flush token last use at shutdown; it is lost");
        }
        // The last seal, once every change is committed.
        let _ = sealer_task.await;
        if let Some(path) = &task_socket_path {
            remove_local_socket(path);
        }
        ctx.store().clone().close().await;
        feed_store.close().await;
        info!("token-service stopped");
        result
    });
    Ok(RunningServer {
        grpc_addr,
        http_addr,
        management_addr,
        local_socket: local_socket_path,
        health: server_health,
        shutdown: shutdown_tx,
        task,
        ctx: server_ctx,
    })
}

/// The TCP listeners with their limits (`connections`), counting into `stats`.
fn acceptors(
    config: &Config,
    stats: &Arc<ListenerStats>,
    grpc: TcpListener,
    http: TcpListener,
    management: Option<TcpListener>,
) -> (Acceptor, Acceptor, Option<Acceptor>) {
    let connections = &config.connections;
    let max_connections = connections.max_per_listener;
    let keepalive = (connections.tcp_keepalive_interval.millis() > 0).then(|| TcpKeepalive {
        idle: Duration::from_millis(connections.tcp_keepalive_interval.millis()),
        timeout: Duration::from_millis(connections.tcp_keepalive_timeout.millis()),
    });
    let http_limits = Limits {
        max_connections,
        // hyper's header read timeout runs from the accept.
        first_bytes_timeout: None,
        keepalive,
    };
    let grpc_limits = Limits {
        max_connections,
        first_bytes_timeout: Some(Duration::from_millis(
            connections.grpc_preface_timeout.millis(),
        )),
        keepalive,
    };
    (
        Acceptor::new(grpc, Listener::Grpc, stats.clone(), grpc_limits),
        Acceptor::new(http, Listener::Http, stats.clone(), http_limits),
        management.map(|l| Acceptor::new(l, Listener::Management, stats.clone(), http_limits)),
    )
}

/// Binds the local operator socket at `path` with mode 0600, so that only this user (and
/// root) may connect. A socket file left by a server that did not stop cleanly is removed
/// first; any other file there is left alone and stops the start. The socket is bound under
/// a temporary name, restricted, then renamed into place, so it is never reachable with a
/// looser mode.
fn bind_local_socket(
    config: &Config,
    path: &Path,
) -> Result<tokio::net::UnixListener, ServerError> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.exists() && dir == config.absolute_data_dir() {
        crate::private_files::create_private_dir(dir).map_err(|e| {
            format!(
                "cannot create data_dir {} for local_socket: {e}",
                dir.display()
            )
        })?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A live server answers on it: two servers on one data directory is a mistake.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(InvalidConfig(format!(
                    "local_socket: {} is in use by another running token-service; stop it, \
                     or give this one another local_socket (or enable_local_socket = false)",
                    path.display()
                ))
                .into());
            }
            fs::remove_file(path).map_err(|e| {
                format!(
                    "cannot remove the stale local socket {}: {e}",
                    path.display()
                )
            })?;
            info!(path = %path.display(), "removed a stale local socket");
        }
        Ok(_) => {
            return Err(InvalidConfig(format!(
                "local_socket: {} exists and is not a socket; remove it or choose another \
                 local_socket",
                path.display()
            ))
            .into());
        }
        Err(_) => {}
    }
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{}.tmp", std::process::id()));
    let staging = PathBuf::from(staging);
    let _ = fs::remove_file(&staging);
    let listener = tokio::net::UnixListener::bind(&staging)
        .map_err(|e| format!("cannot listen on local_socket {}: {e}", path.display()))?;
    let placed = fs::set_permissions(&staging, fs::Permissions::from_mode(0o600))
        .and_then(|()| fs::rename(&staging, path));
    if let Err(e) = placed {
        let _ = fs::remove_file(&staging);
        return Err(format!("cannot set up local_socket {}: {e}", path.display()).into());
    }
    Ok(listener)
}

/// Removes the local socket file at shutdown (only a socket: never anything else).
fn remove_local_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt as _;
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = fs::remove_file(path);
    }
}

/// Longest `start` waits for the first readiness before it returns.
const STARTUP_READINESS_WAIT: Duration = Duration::from_secs(2);

/// Waits until readiness is published as ready, or `limit` passes.
async fn wait_for_first_readiness(health: &Health, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while !health.readiness().is_ready() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// How often the revocation feed's state is read while it is behind (an atomic load), so
/// readiness follows it closely at start-up and after an outage.
const FEED_POLL: Duration = Duration::from_millis(10);

/// Runs the database checks every `interval` (and reads the revocation feed's state every
/// [`FEED_POLL`] while it is behind), tells gRPC health about TokenService and then publishes
/// the readiness that `/readyz` reads, logging each check that changes.
async fn watch_readiness(
    health: Health,
    reporter: tonic_health::server::HealthReporter,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last = health.readiness();
    let mut serving = false;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let feed_behind = !last.revocation_feed.is_ok();
        let full = tokio::select! {
            _ = ticker.tick() => true,
            _ = tokio::time::sleep(FEED_POLL), if feed_behind => false,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let next = if full {
            let checks = health.check_database().await;
            health.evaluate(checks)
        } else {
            health.refresh_feed()
        };
        if *shutdown.borrow() {
            return;
        }
        for ((name, before), (_, after)) in last.checks().into_iter().zip(next.checks()) {
            match (before, after) {
                (CheckState::Ok, CheckState::Failing(reason)) => {
                    warn!(check = name, %reason, "readiness check failing");
                }
                (CheckState::Failing(_), CheckState::Ok) => {
                    info!(check = name, "readiness check passing again");
                }
                _ => {}
            }
        }
        match (&last.degraded, &next.degraded) {
            (None, Some(reason)) => warn!(%reason, "degraded: serving cached credentials"),
            (Some(_), None) => info!("no longer degraded"),
            _ => {}
        }
        let ready = next.is_ready();
        if ready != serving {
            serving = ready;
            let status = if ready {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            reporter
                .set_service_status(grpc::SERVICE_NAME, status)
                .await;
            if ready {
                info!("ready: TokenService health is SERVING");
            } else {
                warn!(
                    failing = next.first_failure().map_or("", |(name, _)| name),
                    "not ready: TokenService health is NOT_SERVING"
                );
            }
        }
        health.publish(next.clone());
        last = next;
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("received SIGINT"),
        () = term => info!("received SIGTERM"),
    }
}
