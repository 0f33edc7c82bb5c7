//! `loadgen`: drives token-service over real sockets and compares it with bare tonic and axum
//! baselines run by this same binary, interleaved (target, baseline, target, baseline, ...)
//! so that the ratio survives the drift of a shared machine. Also measures the idle RSS and
//! the start-to-serving time of a spawned `token-service serve` on SQLite.
//!
//! Results go to stdout; progress and the in-process server's logs go to stderr.

mod baseline;
mod bench;
mod cache_bench;
mod cpu;
mod db_baseline;
mod drivers;
mod footprint;
mod h2load;
mod http1;
mod scale;
mod stats;
mod target;
mod webhook_lag;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load generator and benchmarks for token-service.
///
/// `bench` runs each scenario against its target and against a bare baseline served by this
/// binary, alternating for several rounds, and prints requests/s, p50/p99/p99.9 latency, the
/// server's CPU time per request, the target/baseline ratio per round and the median ratio.
/// Without --grpc-target the target is a token-service started in this process on a
/// temporary SQLite database.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenarios against the target interleaved with their baselines.
    Bench(BenchArgs),
    /// Spawn `token-service serve` on a fresh SQLite database, wait until it serves, let it
    /// idle, and print its resident memory (VmRSS, VmHWM).
    IdleRss(IdleRssArgs),
    /// Spawn `token-service serve` on SQLite several times and print the time from spawn to
    /// the first successful gRPC health check, on a fresh and on an existing database file.
    Startup(StartupArgs),
    /// Measure webhook delivery lag: from RevokeUserAccessToken's return (the record is
    /// committed) to a receiver in this process getting the signed message; p50, p99, max.
    WebhookLag(WebhookLagArgs),
    /// Time token-cache lookups in this process (no server) at several sizes and thread
    /// counts, for the service's sharded cache and the designs it was chosen over; also a
    /// revocation of one user and an insert into a full cache.
    CacheBench(CacheBenchArgs),
    /// Fill a token cache in this process and print the resident memory per cached
    /// credential (the principal and the cache's own structures).
    CacheMemory(CacheMemoryArgs),
    /// Top the tokens table up to each size (bulk inserts, not the API) and measure, per
    /// size: IntrospectToken cached and uncached, GetUserAccessTokens' first and last page,
    /// SearchUserAccessTokens, the revocation lag with a full cache, and the cache's memory
    /// per credential at that many entries.
    Scale(ScaleArgs),
    /// The cached scenarios (IntrospectToken, REST GetMe) driven by nghttp2's `h2load`
    /// against the in-process target and the same baselines as `bench`, interleaved.
    H2load(H2loadArgs),
}

#[derive(Debug, Args)]
struct H2loadArgs {
    /// Scenario to run (repeat for several). Default: both.
    #[arg(long = "scenario", value_enum, value_name = "NAME")]
    scenarios: Vec<H2loadScenario>,
    /// Requests in flight at any moment (gRPC: connections x streams; REST: connections).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections of the gRPC scenario (each carries concurrency / connections
    /// streams).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// h2load's worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Measured time of each run.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// h2load's warm-up before each run.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Target/baseline pairs per scenario.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Worker threads of the runtime serving the baselines and the target (default: CPUs).
    #[arg(long)]
    server_threads: Option<usize>,
    /// The h2load binary.
    #[arg(long, default_value = "h2load")]
    h2load: PathBuf,
    /// Where the in-process target writes its log (`-`: stderr). Default: a temporary file.
    #[arg(long, value_name = "PATH")]
    server_log: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum H2loadScenario {
    /// IntrospectToken (cache hit) against grpc-echo.
    IntrospectCached,
    /// GET /api/v4/users/me against axum-json.
    RestGetMe,
}

#[derive(Debug, Args)]
struct ScaleArgs {
    /// Rows in the tokens table to measure at, growing (the table is topped up with filler
    /// tokens that no secret opens; rows already there count).
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 100_000, 1_000_000])]
    sizes: Vec<u64>,
    /// Measured time of each IntrospectToken run.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured load before each IntrospectToken run.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    warmup: Duration,
    /// Requests in flight during the IntrospectToken runs.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Distinct tokens the IntrospectToken runs rotate through.
    #[arg(long, default_value_t = 100)]
    tokens: usize,
    /// Calls of each listing and search measurement (one at a time; the last page of 10^6
    /// tokens takes seconds per call on PostgreSQL).
    #[arg(long, default_value_t = 20)]
    calls: usize,
    /// Cached tokens revoked per size (the revocation lag's sample).
    #[arg(long, default_value_t = 20)]
    revocations: usize,
    /// Database of the in-process servers, e.g. postgres://postgres@127.0.0.1:5432/loadgen
    /// (the database must exist; the filler rows stay in it). Default: SQLite in a temporary
    /// directory per server, each filled.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Where the in-process servers write their log lines: `-` for stderr. Default: a file
    /// in the temporary directory, named at the start of the report.
    #[arg(long, value_name = "PATH")]
    server_log: Option<PathBuf>,
    /// The servers' key file (64 hex digits, e.g. `openssl rand -hex 32`). A database keeps
    /// the fingerprint of the key it was set up with. Default: the load generator's fixed
    /// benchmark key, the same in every run (so a database an earlier run set up works).
    #[arg(long, value_name = "PATH")]
    server_key_file: Option<PathBuf>,
}

/// A token-cache design compared by `cache-bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CacheDesign {
    /// The service's `PrincipalCache`: sharded RwLock maps, id index, CLOCK eviction.
    Sharded,
    /// The previous design: one RwLock over a HashMap<String, _>.
    SingleLock,
    /// papaya's lock-free HashMap (no eviction).
    Papaya,
    /// moka's sync Cache (TinyLFU, time-to-live).
    Moka,
}

impl CacheDesign {
    fn name(self) -> &'static str {
        match self {
            CacheDesign::Sharded => "sharded",
            CacheDesign::SingleLock => "single-lock",
            CacheDesign::Papaya => "papaya",
            CacheDesign::Moka => "moka",
        }
    }
}

#[derive(Debug, Args)]
struct CacheBenchArgs {
    /// Designs to compare (comma-separated or repeated).
    #[arg(long = "design", value_enum, value_delimiter = ',', default_values_t = [CacheDesign::Sharded, CacheDesign::SingleLock, CacheDesign::Papaya, CacheDesign::Moka])]
    designs: Vec<CacheDesign>,
    /// Cached credentials (each size is also the cache's capacity).
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 100_000, 1_000_000])]
    entries: Vec<usize>,
    /// Threads looking up at once.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 8])]
    threads: Vec<usize>,
    /// Measured time of each (design, size, threads) cell.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    duration: Duration,
    /// Users revoked one by one (the time per revocation is reported).
    #[arg(long, default_value_t = 100)]
    revocations: usize,
    /// New digests inserted into the full cache (each evicts one).
    #[arg(long, default_value_t = 100_000)]
    full_inserts: usize,
    /// How many of the cached digests the lookups draw from, at random (default: all of
    /// them). 1: every lookup of every thread is of one digest, as when every request
    /// presents one service's token.
    #[arg(long)]
    lookup_keys: Option<usize>,
}

#[derive(Debug, Args)]
struct CacheMemoryArgs {
    /// Cached credentials.
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    /// Design to fill.
    #[arg(long, value_enum, default_value_t = CacheDesign::Sharded)]
    design: CacheDesign,
}

#[derive(Debug, Args)]
struct WebhookLagArgs {
    /// Revocations to time, one at a time.
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// Pause after each revocation (spreads them over the delivery's wake-ups).
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    interval: Duration,
    /// How long to wait for the last messages.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    wait: Duration,
    /// Where the receiver listens (the target must be allowed to reach it:
    /// webhooks.allow_private_addresses = true for 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1:0")]
    receiver_addr: SocketAddr,
    /// Database of the in-process target (default: SQLite in a temporary directory), e.g.
    /// postgres://postgres@127.0.0.1:5432/loadgen (the database must exist).
    #[arg(long, value_name = "URL", conflicts_with = "grpc_target")]
    database_url: Option<String>,
    /// gRPC address of an already running token-service (instead of an in-process one).
    #[arg(long, value_name = "ADDR", requires = "admin_token")]
    grpc_target: Option<SocketAddr>,
    /// A system_admin token of the running target.
    #[arg(long, env = "LOADGEN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

/// What to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// IntrospectToken answered from the token cache, against the gRPC echo baseline.
    IntrospectCached,
    /// IntrospectToken on a server with the cache off (every check reads the database),
    /// against the gRPC echo baseline.
    IntrospectUncached,
    /// GET /api/v4/users/me with a bearer token, against the bare axum JSON baseline.
    RestGetMe,
    /// CreateUserAccessToken (the write path), against the gRPC echo baseline.
    CreateToken,
    /// GET /auth/verify (nginx auth_request) with a bearer token, against the bare axum
    /// baseline answering the same path with fixed identity headers.
    GatewayVerify,
    /// POST /oauth2/introspect (RFC 7662) of one of the tokens, the caller authenticated by
    /// the admin's bearer token, against the bare axum baseline answering the same path with
    /// a fixed active answer.
    GatewayIntrospect,
    /// Envoy's ext_authz Check (`envoy.service.auth.v3.Authorization/Check`) of a request
    /// carrying one of the tokens, answered from the token cache, against the gRPC echo
    /// baseline (a fixed OkHttpResponse).
    ExtAuthz,
    /// IntrospectToken with the cache off (as introspect-uncached) against the point select
    /// of a session by digest issued directly with sqlx (the service's driver) on the same
    /// database, at the same concurrency. IntrospectToken checks two credentials.
    DbSqlx,
    /// As db-sqlx, on sqlx connections held outside its pool: sqlx's pool pings a connection
    /// when it hands it out and when it takes it back, which this baseline (and the service's
    /// token check) does without.
    DbSqlxHeld,
    /// As db-sqlx, the point select issued with tokio-postgres (PostgreSQL only: pass
    /// --database-url postgres://...).
    DbTokioPostgres,
    /// CreateUserAccessToken (the admin's own, cache on) against one row inserted in a
    /// transaction of its own with sqlx on the same database (its pool set up as the
    /// service's: a connection is pinged only after a second unused).
    WriteCreate,
    /// As write-create, each worker one of the 100 users (worker `w` as user `w mod 100`)
    /// creating a token of its own: many owners, as in a deployment, where write-create's
    /// one owner makes every create lock the same user row (the token's foreign key).
    WriteCreateUsers,
    /// RevokeUserAccessToken of tokens bulk-inserted before the run (one per request) against
    /// the same one-row insert.
    WriteRevoke,
}

impl Scenario {
    const ALL: [Scenario; 13] = [
        Scenario::IntrospectCached,
        Scenario::IntrospectUncached,
        Scenario::RestGetMe,
        Scenario::CreateToken,
        Scenario::GatewayVerify,
        Scenario::GatewayIntrospect,
        Scenario::ExtAuthz,
        Scenario::DbSqlx,
        Scenario::DbSqlxHeld,
        Scenario::DbTokioPostgres,
        Scenario::WriteCreate,
        Scenario::WriteCreateUsers,
        Scenario::WriteRevoke,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::IntrospectCached => "introspect-cached",
            Scenario::IntrospectUncached => "introspect-uncached",
            Scenario::RestGetMe => "rest-get-me",
            Scenario::CreateToken => "create-token",
            Scenario::GatewayVerify => "gateway-verify",
            Scenario::GatewayIntrospect => "gateway-introspect",
            Scenario::ExtAuthz => "ext-authz",
            Scenario::DbSqlx => "db-sqlx",
            Scenario::DbSqlxHeld => "db-sqlx-held",
            Scenario::DbTokioPostgres => "db-tokio-postgres",
            Scenario::WriteCreate => "write-create",
            Scenario::WriteCreateUsers => "write-create-users",
            Scenario::WriteRevoke => "write-revoke",
        }
    }

    /// Whether the scenario writes (against the one-row insert baseline).
    fn writes(self) -> bool {
        matches!(
            self,
            Scenario::WriteCreate | Scenario::WriteCreateUsers | Scenario::WriteRevoke
        )
    }

    /// Whether the scenario drives the server with the cache off.
    fn uncached(self) -> bool {
        matches!(
            self,
            Scenario::IntrospectUncached
                | Scenario::DbSqlx
                | Scenario::DbSqlxHeld
                | Scenario::DbTokioPostgres
        )
    }
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Scenario to run (repeat the flag for several). Default: all of them.
    #[arg(long = "scenario", value_enum, value_name = "NAME")]
    scenarios: Vec<Scenario>,
    /// Requests in flight at any moment (closed loop: each finished request starts the next).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections the gRPC requests are spread over. REST uses one HTTP/1.1
    /// keep-alive connection per request in flight (HTTP/1.1 does not multiplex).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Measured time of each run: 5s, 500ms, 1m, or seconds.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured load before each run (connections warm, caches filled).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Target/baseline pairs per scenario.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Distinct tokens the read scenarios rotate through (one user and PAT each).
    #[arg(long, default_value_t = 100)]
    tokens: usize,
    /// Worker threads of the load generator's own runtime.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Worker threads of the runtime serving the baselines and the in-process target.
    /// Default: the number of CPUs (what `token-service serve` uses).
    #[arg(long)]
    server_threads: Option<usize>,
    /// gRPC address of an already running token-service (instead of an in-process one).
    #[arg(long, value_name = "ADDR", requires = "admin_token")]
    grpc_target: Option<SocketAddr>,
    /// REST address of that running token-service (for rest-get-me and the gateways).
    #[arg(long, value_name = "ADDR", requires = "grpc_target")]
    http_target: Option<SocketAddr>,
    /// gRPC address of a running token-service with `cache.enable = false` on the same
    /// database (for introspect-uncached with --grpc-target).
    #[arg(long, value_name = "ADDR", requires = "grpc_target")]
    uncached_grpc_target: Option<SocketAddr>,
    /// A system_admin token of the running target (`token-service admin create-token`); used
    /// to create the users and tokens the scenarios present.
    #[arg(long, env = "LOADGEN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Process id of the running target, to report its CPU time per request.
    #[arg(long, value_name = "PID", requires = "grpc_target")]
    target_pid: Option<u32>,
    /// Database of the in-process servers (with the cache on and off), which the database
    /// baselines (db-sqlx, db-tokio-postgres, write-create, write-revoke) use too. Default:
    /// SQLite in a temporary directory each. In process, e.g.
    /// postgres://postgres@127.0.0.1:5432/loadgen (the database must exist; the run adds its
    /// users and tokens to it); with --grpc-target, the database those servers use.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// The in-process servers' `pool.check_connections` (the connections their token check
    /// reads through; on PostgreSQL, how many batched lookups run at once). Default: the
    /// service's default.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    check_connections: Option<u32>,
    /// The in-process servers' `pool.check_batches` (on PostgreSQL and SQLite, how many
    /// shared statements of cache misses run at once). Default: the service's default (1 on
    /// SQLite, 2 on PostgreSQL).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    check_batches: Option<u32>,
    /// Where the in-process target writes its log lines (INFO and up, as `token-service
    /// serve` does): `-` for stderr, interleaved with the report. Default: a file in the
    /// temporary directory, named at the start of the report.
    #[arg(long, value_name = "PATH")]
    server_log: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServerBinArgs {
    /// The token-service binary. Default: `token-service` next to this executable.
    #[arg(long, value_name = "PATH")]
    server_bin: Option<PathBuf>,
}

impl ServerBinArgs {
    fn path(&self) -> Result<PathBuf, String> {
        if let Some(path) = &self.server_bin {
            return Ok(path.clone());
        }
        let me = std::env::current_exe().map_err(|e| format!("cannot find loadgen itself: {e}"))?;
        let sibling = me.with_file_name("token-service");
        if sibling.exists() {
            Ok(sibling)
        } else {
            Err(format!(
                "{} does not exist: build it (cargo build --release --bin token-service) or pass --server-bin",
                sibling.display()
            ))
        }
    }
}

#[derive(Debug, Args)]
struct IdleRssArgs {
    #[command(flatten)]
    server: ServerBinArgs,
    /// How long the server idles after it first serves before VmRSS is read.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    idle: Duration,
}

#[derive(Debug, Args)]
struct StartupArgs {
    #[command(flatten)]
    server: ServerBinArgs,
    /// Starts per kind (fresh file, existing file); the median is reported.
    #[arg(long, default_value_t = 7)]
    starts: usize,
}

/// `5s`, `500ms`, `1m`, `1.5` (seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: use 5s, 500ms, 1m or seconds"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        _ => return Err(format!("invalid duration unit in {text:?}: use ms, s or m")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("invalid duration {text:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The service binary's allocator, so the in-process target (and the baselines beside it)
/// run as `token-service serve` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::IdleRss(args) => footprint::idle_rss(&args),
        Command::Startup(args) => footprint::startup(&args),
        Command::WebhookLag(args) => webhook_lag::run(args),
        Command::CacheBench(args) => cache_bench::bench(&args),
        Command::CacheMemory(args) => cache_bench::memory(&args),
        Command::Scale(args) => scale::run(args),
        Command::H2load(args) => h2load::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_take_a_unit_or_seconds() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
