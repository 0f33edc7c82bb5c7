//! `loadgen bench`: each scenario against its target and its baseline, interleaved.
//!
//! Every run is closed-loop: `concurrency` workers each send a request, wait for the answer,
//! and send the next. A run is a warm-up (unmeasured) followed by the measured window; only
//! requests that both start and finish inside the window count, and their latency is the
//! time from sending to a checked answer. Target and baseline runs alternate, round after
//! round, and each round's ratio compares two runs minutes apart at most.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::runtime::{Builder, Handle, Runtime};

use crate::{
    BenchArgs, Scenario, baseline,
    cpu::{CLIENT_THREAD_PREFIX, CpuProbe},
    db_baseline::{DbClient, DriverKind, HeldConnections, IdSource},
    drivers::{Driver, RestCall},
    http1::Http1Conn,
    stats::{RunResult, median},
    target::{self, Target},
};

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// How long workers may take to finish their last request after a run ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn run(args: BenchArgs) -> Result<(), String> {
    if args.concurrency == 0 || args.connections == 0 || args.rounds == 0 || args.tokens == 0 {
        return Err(
            "--concurrency, --connections, --rounds and --tokens must be at least 1".into(),
        );
    }
    if args.duration.is_zero() {
        return Err("--duration must be more than 0".into());
    }
    let (server_rt, client_rt, server_threads) =
        runtimes(args.server_threads, args.client_threads)?;
    // The in-process server logs and traces as `token-service serve` does with the default
    // configuration, into a file unless told otherwise (the report stays readable); the
    // guard lives until the end of the run.
    let _telemetry = match args.grpc_target {
        Some(_) => None,
        None => Some(server_log(args.server_log.as_deref())?),
    };
    let outcome = client_rt.block_on(bench(&args, server_rt.handle().clone(), server_threads));
    server_rt.shutdown_timeout(Duration::from_secs(1));
    client_rt.shutdown_timeout(Duration::from_secs(1));
    outcome
}

/// The servers' runtime (`server_threads`, default: the number of CPUs) and the load
/// generator's (`client_threads`, its threads named so the CPU probe leaves them out), with
/// the servers' thread count.
pub(crate) fn runtimes(
    server_threads: Option<usize>,
    client_threads: usize,
) -> Result<(Runtime, Runtime, usize), String> {
    let server_threads = server_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let server_rt = Builder::new_multi_thread()
        .worker_threads(server_threads.max(1))
        .thread_name("srv-worker")
        .enable_all()
        .build()
        .map_err(|e| format!("server runtime: {e}"))?;
    let client_rt = Builder::new_multi_thread()
        .worker_threads(client_threads.max(1))
        .thread_name(format!("{CLIENT_THREAD_PREFIX}-client"))
        .enable_all()
        .build()
        .map_err(|e| format!("client runtime: {e}"))?;
    Ok((server_rt, client_rt, server_threads))
}

/// Installs the in-process target's log: to stderr for `-`, else appended to `path` (by
/// default a file in the temporary directory), whose name the report starts with.
pub(crate) fn server_log(
    path: Option<&Path>,
) -> Result<token_service::telemetry::TelemetryGuard, String> {
    let config = token_service::config::LogConfig::default();
    if path == Some(Path::new("-")) {
        return Ok(token_service::telemetry::init(&config));
    }
    let path = path.map_or_else(
        || std::env::temp_dir().join(format!("loadgen-server-{}.log", std::process::id())),
        Path::to_path_buf,
    );
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("--server-log {}: {e}", path.display()))?;
    println!("in-process target's log: {}", path.display());
    Ok(token_service::telemetry::init_with_writer(
        &config,
        std::sync::Mutex::new(file),
        false,
    ))
}

/// One side of a pair.
pub(crate) struct Side<'a> {
    pub(crate) name: &'static str,
    pub(crate) drivers: Vec<Driver>,
    pub(crate) probe: CpuProbe,
    pub(crate) target: Option<&'a Target>,
}

/// The medians of one scenario, for the closing table.
struct PairSummary {
    scenario: &'static str,
    baseline: &'static str,
    target: Vec<RunResult>,
    base: Vec<RunResult>,
    rps_ratios: Vec<f64>,
    p99_ratios: Vec<f64>,
    cpu_ratios: Vec<f64>,
}

async fn bench(args: &BenchArgs, server_rt: Handle, server_threads: usize) -> Result<(), String> {
    let scenarios: Vec<Scenario> = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        let mut list = Vec::new();
        for s in &args.scenarios {
            if !list.contains(s) {
                list.push(*s);
            }
        }
        list
    };
    let machine = crate::footprint::machine();
    println!("machine: {machine}");
    println!(
        "load: concurrency {}, {} gRPC connection(s) (REST: one HTTP/1.1 connection per request in flight), \
         {} round(s) of {:?} after {:?} warm-up, {} token(s); runtimes: {} client thread(s), {} server thread(s)",
        args.concurrency,
        args.connections,
        args.rounds,
        args.duration,
        args.warmup,
        args.tokens,
        args.client_threads,
        server_threads
    );

    let needs_cached = scenarios.iter().any(|s| !s.uncached());
    let needs_uncached = scenarios.iter().any(|s| s.uncached());
    let spawn_err = |e: tokio::task::JoinError| format!("server task: {e}");
    let echo = server_rt
        .spawn(baseline::start_grpc_echo())
        .await
        .map_err(spawn_err)??;
    let axum = server_rt
        .spawn(baseline::start_axum_json())
        .await
        .map_err(spawn_err)??;

    let (cached, uncached, target_probe) = match args.grpc_target {
        None => {
            println!(
                "target: token-service in this process, default configuration, on {}",
                if args.database_url.is_some() {
                    "--database-url"
                } else {
                    "SQLite in a temporary directory"
                }
            );
            let on_database = |c: &mut token_service::config::Config| {
                if let Some(url) = &args.database_url {
                    c.database_url = Some(token_service::config::DatabaseUrl::new(url.clone()));
                }
                if let Some(n) = args.check_connections {
                    c.pool.check_connections = n;
                }
                if let Some(n) = args.check_batches {
                    c.pool.check_batches = Some(n);
                }
            };
            let cached = if needs_cached {
                Some(Target::start_in_process(&server_rt, args.tokens, on_database).await?)
            } else {
                None
            };
            let uncached = if needs_uncached {
                let started = Target::start_in_process(&server_rt, args.tokens, |c| {
                    c.cache.enable = false;
                    on_database(c);
                })
                .await;
                match started {
                    Ok(t) => Some(t),
                    Err(e) => {
                        if let Some(t) = cached {
                            t.stop().await;
                        }
                        return Err(e);
                    }
                }
            } else {
                None
            };
            (cached, uncached, CpuProbe::InProcess)
        }
        Some(grpc) => {
            println!("target: token-service at {grpc} (external)");
            let admin = args.admin_token.clone().unwrap_or_default();
            let mut cached = Target::external(grpc, args.http_target, admin, args.tokens).await?;
            cached.database_url = args.database_url.clone();
            let uncached = args.uncached_grpc_target.map(|a| {
                let mut sibling = cached.sibling(a);
                sibling.database_url = args.database_url.clone();
                sibling
            });
            let probe = args.target_pid.map_or(CpuProbe::None, CpuProbe::Process);
            (Some(cached), uncached, probe)
        }
    };
    eprintln!("loadgen: targets ready");

    let outcome = run_scenarios(
        args,
        &scenarios,
        cached.as_ref(),
        uncached.as_ref(),
        (echo, axum),
        target_probe,
    )
    .await;
    for t in [cached, uncached].into_iter().flatten() {
        t.stop().await;
    }
    let summaries = outcome?;
    let failed: u64 = summaries
        .iter()
        .flat_map(|s| s.target.iter().chain(&s.base))
        .map(|r| r.errors)
        .sum();
    print_table(&summaries);
    compare_gateways(&summaries);
    println!(
        "load average after the run: {}",
        crate::footprint::loadavg()
    );
    if failed > 0 {
        return Err(format!(
            "{failed} request(s) failed; see the first error of each run above"
        ));
    }
    Ok(())
}

/// Every scenario against its target and baseline, in order.
async fn run_scenarios(
    args: &BenchArgs,
    scenarios: &[Scenario],
    cached: Option<&Target>,
    uncached: Option<&Target>,
    (echo, axum): (SocketAddr, SocketAddr),
    target_probe: CpuProbe,
) -> Result<Vec<PairSummary>, String> {
    let writes = match cached {
        Some(tgt) if scenarios.iter().any(|s| s.writes()) => Writes::prepare(tgt).await?,
        _ => None,
    };
    let mut summaries = Vec::new();
    let outcome: Result<(), String> = async {
    for &scenario in scenarios {
        let chosen = if scenario.uncached() {
            uncached
        } else {
            cached
        };
        let Some(tgt) = chosen else {
            println!(
                "\n== {}: skipped (with --grpc-target, pass --uncached-grpc-target)",
                scenario.name()
            );
            continue;
        };
        let (target_drivers, baseline_name, base_drivers) = match scenario {
            Scenario::RestGetMe | Scenario::GatewayVerify | Scenario::GatewayIntrospect => {
                let Some(http) = tgt.http else {
                    println!("\n== {}: skipped (pass --http-target)", scenario.name());
                    continue;
                };
                let rest = match scenario {
                    Scenario::GatewayVerify => RestCall::Verify,
                    Scenario::GatewayIntrospect => RestCall::Introspect,
                    _ => RestCall::GetMe,
                };
                (
                    rest_drivers(http, tgt, rest, args.concurrency),
                    "axum-json",
                    rest_drivers(axum, tgt, rest, args.concurrency),
                )
            }
            Scenario::CreateToken => (
                grpc_drivers(tgt.grpc, tgt, args, true).await?,
                "grpc-echo",
                grpc_drivers(echo, tgt, args, false).await?,
            ),
            Scenario::IntrospectCached | Scenario::IntrospectUncached => (
                grpc_drivers(tgt.grpc, tgt, args, false).await?,
                "grpc-echo",
                grpc_drivers(echo, tgt, args, false).await?,
            ),
            Scenario::ExtAuthz => (
                ext_authz_drivers(tgt.grpc, tgt, args).await?,
                "grpc-echo",
                ext_authz_drivers(echo, tgt, args).await?,
            ),
            Scenario::WriteCreate | Scenario::WriteCreateUsers | Scenario::WriteRevoke => {
                let Some(w) = &writes else {
                    println!(
                        "\n== {}: skipped (the write baseline needs the target's database: pass --database-url)",
                        scenario.name()
                    );
                    continue;
                };
                let target_drivers = match scenario {
                    Scenario::WriteCreate => grpc_drivers(tgt.grpc, tgt, args, true).await?,
                    Scenario::WriteCreateUsers => create_as_users_drivers(tgt, args).await?,
                    _ => revoke_drivers(tgt, args, w).await?,
                };
                (target_drivers, "sqlx-insert", w.insert_drivers(args))
            }
            Scenario::DbSqlx | Scenario::DbSqlxHeld | Scenario::DbTokioPostgres => {
                let (kind, baseline) = match scenario {
                    Scenario::DbSqlx => (DriverKind::Sqlx, "sqlx-select"),
                    Scenario::DbSqlxHeld => (DriverKind::SqlxHeld, "sqlx-held-select"),
                    _ => (DriverKind::TokioPostgres, "tokio-postgres-select"),
                };
                let Some(base) = db_drivers(tgt, args, kind).await? else {
                    println!(
                        "\n== {}: skipped (PostgreSQL only: pass --database-url postgres://...)",
                        scenario.name()
                    );
                    continue;
                };
                (
                    grpc_drivers(tgt.grpc, tgt, args, false).await?,
                    baseline,
                    base,
                )
            }
        };
        let summary = run_pair(
            args,
            scenario,
            Side {
                name: scenario.name(),
                drivers: target_drivers,
                probe: target_probe,
                target: Some(tgt),
            },
            Side {
                name: baseline_name,
                drivers: base_drivers,
                probe: CpuProbe::InProcess,
                target: None,
            },
        )
        .await?;
        summaries.push(summary);
    }
    Ok(())
    }
    .await;
    if let Some(w) = &writes {
        w.db.drop_table(&w.table).await;
    }
    outcome?;
    compare_gateway_with_introspection(&summaries);
    compare_database_path(&summaries);
    Ok(summaries)
}

/// What the write scenarios share: sqlx on the target's database, the scratch table of the
/// one-row insert baseline, and the ids of the rows the load generator writes itself.
struct Writes {
    db: DbClient,
    table: Arc<str>,
    ids: Arc<IdSource>,
    next_row: Arc<AtomicU64>,
}

impl Writes {
    /// Connects to `tgt`'s database and creates the baseline's table; `None` when the
    /// database is not known (an external target without --database-url).
    async fn prepare(tgt: &Target) -> Result<Option<Self>, String> {
        let Some(url) = tgt.database_url.as_deref() else {
            return Ok(None);
        };
        let Some(db) = DbClient::connect(DriverKind::SqlxAsService, url).await? else {
            return Ok(None);
        };
        let ids = IdSource::new(tgt.admin_user_id().await?);
        let table: Arc<str> = format!("loadgen_insert_{}", ids.tag()).into();
        db.create_write_table(&table).await?;
        Ok(Some(Self {
            db,
            table,
            ids: Arc::new(ids),
            next_row: Arc::new(AtomicU64::new(0)),
        }))
    }

    /// The baseline's workers: one row inserted in a transaction per request.
    fn insert_drivers(&self, args: &BenchArgs) -> Vec<Driver> {
        (0..args.concurrency)
            .map(|_| Driver::DbInsert {
                db: self.db.clone(),
                table: self.table.clone(),
                ids: self.ids.clone(),
                next: self.next_row.clone(),
            })
            .collect()
    }
}

/// Tokens a write-revoke run may revoke per second of load at most: every run inserts
/// enough for this rate (a run that revokes them all reports errors, never a wrong rate).
const REVOKES_PER_SECOND_ROOM: f64 = 5_000.0;

/// RevokeUserAccessToken workers sharing tokens bulk-inserted (not through the API) for the
/// admin, enough for every round, each revoked once.
async fn revoke_drivers(tgt: &Target, args: &BenchArgs, w: &Writes) -> Result<Vec<Driver>, String> {
    let seconds = (args.warmup + args.duration).as_secs_f64() * args.rounds as f64;
    let n = (seconds * REVOKES_PER_SECOND_ROOM).ceil().max(1_000.0) as u64;
    let started = Instant::now();
    // Row numbers from the top of the range: the insert baseline counts up from 0.
    let filler = IdSource::new(w.ids.user_id.clone());
    let ids: Arc<[String]> = w.db.insert_filler_tokens(&filler, n).await?.into();
    println!(
        "write-revoke: {n} tokens bulk-inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let clients = target::connect(tgt.grpc, args.connections).await?;
    let next = Arc::new(AtomicU64::new(0));
    Ok((0..args.concurrency)
        .map(|w| {
            Driver::revoke_token(
                clients[w % clients.len()].clone(),
                &tgt.admin_token,
                ids.clone(),
                next.clone(),
            )
        })
        .collect())
}

/// The database baseline's workers: the driver connected to the uncached target's database,
/// the digests of the sessions its tokens minted (each token is introspected once first, so
/// every session exists). `None` when the driver does not serve that database.
async fn db_drivers(
    tgt: &Target,
    args: &BenchArgs,
    kind: DriverKind,
) -> Result<Option<Vec<Driver>>, String> {
    let Some(url) = tgt.database_url.as_deref() else {
        return Err("the database baselines need --database-url (the target's database)".into());
    };
    let Some(db) = DbClient::connect(kind, url).await? else {
        return Ok(None);
    };
    let mut warm = grpc_drivers(tgt.grpc, tgt, args, false).await?;
    for i in 0..tgt.tokens.len() {
        warm[0].call(i).await?;
    }
    let digests: Arc<[String]> = db.session_digests().await?.into();
    if digests.is_empty() {
        return Err("no session was minted for the scenario's tokens".into());
    }
    if kind == DriverKind::SqlxHeld {
        let conns = Arc::new(HeldConnections::connect(url).await?);
        return Ok(Some(
            (0..args.concurrency)
                .map(|worker| Driver::DbSelectHeld {
                    conns: conns.clone(),
                    worker,
                    digests: digests.clone(),
                })
                .collect(),
        ));
    }
    Ok(Some(
        (0..args.concurrency)
            .map(|worker| Driver::DbSelect {
                db: db.clone(),
                worker,
                digests: digests.clone(),
            })
            .collect(),
    ))
}

/// Issue 16's goals for the database path: per credential checked (IntrospectToken checks
/// two, the caller's and the presented one) at least half the driver's point selects, and
/// token-service CPU per uncached check at most 3x a cached one.
fn compare_database_path(summaries: &[PairSummary]) {
    let find = |name: &str| summaries.iter().find(|s| s.scenario == name);
    for scenario in [
        Scenario::DbSqlx,
        Scenario::DbSqlxHeld,
        Scenario::DbTokioPostgres,
    ] {
        if let Some(s) = find(scenario.name()) {
            let per_credential = 2.0 * median(&s.rps_ratios);
            println!(
                "{}: credentials checked per second / driver point selects per second = {per_credential:.3} \
                 (target: at least 0.5): {}",
                scenario.name(),
                verdict(per_credential >= 0.5)
            );
        }
    }
    let cpu_per_check = |s: &PairSummary| {
        let per_request = median(
            &s.target
                .iter()
                .filter_map(RunResult::cpu_us_per_request)
                .collect::<Vec<_>>(),
        );
        per_request / 2.0
    };
    let uncached = [
        Scenario::IntrospectUncached,
        Scenario::DbSqlx,
        Scenario::DbSqlxHeld,
        Scenario::DbTokioPostgres,
    ]
    .into_iter()
    .find_map(|s| find(s.name()));
    if let (Some(cached), Some(uncached)) = (find(Scenario::IntrospectCached.name()), uncached) {
        let (hit, miss) = (cpu_per_check(cached), cpu_per_check(uncached));
        if hit.is_finite() && miss.is_finite() && hit > 0.0 {
            println!(
                "server CPU per credential check: uncached {miss:.1} µs, cached {hit:.1} µs, \
                 {:.2}x (target: at most 3x): {}",
                miss / hit,
                verdict(miss <= 3.0 * hit)
            );
        }
    }
}

/// Issue 14's target for ext_authz: its req/s ratio (against the gRPC echo) at least the one
/// IntrospectToken reaches in the same run.
fn compare_gateway_with_introspection(summaries: &[PairSummary]) {
    let ratio = |name: &str| {
        summaries
            .iter()
            .find(|s| s.scenario == name)
            .map(|s| median(&s.rps_ratios))
    };
    if let (Some(gateway), Some(introspect)) = (ratio("ext-authz"), ratio("introspect-cached")) {
        println!(
            "
ext-authz req/s ratio {gateway:.3} vs introspect-cached {introspect:.3} \
             (target: at least as high): {}",
            verdict(gateway >= introspect)
        );
    }
}

/// gRPC workers spread over `connections` HTTP/2 connections to `addr`.
pub(crate) async fn grpc_drivers(
    addr: SocketAddr,
    tgt: &Target,
    args: &BenchArgs,
    write: bool,
) -> Result<Vec<Driver>, String> {
    let clients = target::connect(addr, args.connections).await?;
    let tokens: Arc<[String]> = tgt.tokens.clone().into();
    Ok((0..args.concurrency)
        .map(|w| {
            let client = clients[w % clients.len()].clone();
            if write {
                Driver::create_token(client, &tgt.admin_token)
            } else {
                Driver::introspect(client, &tgt.admin_token, tokens.clone())
            }
        })
        .collect())
}

/// CreateUserAccessToken workers spread over `connections` HTTP/2 connections, worker `w`
/// calling as the user of token `w mod tokens` and creating a token of its own.
async fn create_as_users_drivers(tgt: &Target, args: &BenchArgs) -> Result<Vec<Driver>, String> {
    if tgt.tokens.is_empty() {
        return Err("write-create-users needs the users' tokens (--tokens at least 1)".into());
    }
    let clients = target::connect(tgt.grpc, args.connections).await?;
    Ok((0..args.concurrency)
        .map(|w| {
            Driver::create_token(
                clients[w % clients.len()].clone(),
                &tgt.tokens[w % tgt.tokens.len()],
            )
        })
        .collect())
}

/// ext_authz Check workers spread over `connections` HTTP/2 connections to `addr`, the
/// admin calling as the gateway.
async fn ext_authz_drivers(
    addr: SocketAddr,
    tgt: &Target,
    args: &BenchArgs,
) -> Result<Vec<Driver>, String> {
    let channels = target::channels(addr, args.connections).await?;
    let requests = Driver::check_requests(&tgt.tokens);
    Ok((0..args.concurrency)
        .map(|w| {
            Driver::ext_authz(
                channels[w % channels.len()].clone(),
                &tgt.admin_token,
                requests.clone(),
            )
        })
        .collect())
}

/// REST workers making `rest` requests, each with its own keep-alive connection to `addr`.
fn rest_drivers(addr: SocketAddr, tgt: &Target, rest: RestCall, concurrency: usize) -> Vec<Driver> {
    let requests = rest.requests(addr, &tgt.tokens, &tgt.admin_token);
    (0..concurrency)
        .map(|_| Driver::Rest {
            conn: Http1Conn::new(addr),
            rest,
            requests: requests.clone(),
        })
        .collect()
}

async fn run_pair(
    args: &BenchArgs,
    scenario: Scenario,
    mut a: Side<'_>,
    mut b: Side<'_>,
) -> Result<PairSummary, String> {
    println!(
        "\n== {} vs {} (baseline)\n{:<6}{:<22}{:>11}{:>10}{:>10}{:>10}{:>8}{:>12}{:>11}{:>15}",
        a.name,
        b.name,
        "round",
        "run",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "cpu µs/req",
        "cache hit",
        "client µs/req"
    );
    let mut summary = PairSummary {
        scenario: a.name,
        baseline: b.name,
        target: Vec::new(),
        base: Vec::new(),
        rps_ratios: Vec::new(),
        p99_ratios: Vec::new(),
        cpu_ratios: Vec::new(),
    };
    for round in 1..=args.rounds {
        let ra = run_side(&mut a, args).await?;
        print_run(round, a.name, &ra);
        let rb = run_side(&mut b, args).await?;
        print_run(round, b.name, &rb);
        let rps_ratio = ra.rps() / rb.rps();
        let p99_ratio = ra.p99() / rb.p99();
        let cpu_ratio = match (ra.cpu_us_per_request(), rb.cpu_us_per_request()) {
            (Some(x), Some(y)) => {
                summary.cpu_ratios.push(x / y);
                format!("{:.2}x", x / y)
            }
            _ => "-".to_owned(),
        };
        println!(
            "{:<6}{:<22}{:>11.3}{:>10}{:>9.2}x{:>10}{:>8}{:>12}",
            round, "ratio", rps_ratio, "", p99_ratio, "", "", cpu_ratio
        );
        summary.rps_ratios.push(rps_ratio);
        summary.p99_ratios.push(p99_ratio);
        summary.target.push(ra);
        summary.base.push(rb);
    }
    let rps_ratio = median(&summary.rps_ratios);
    let p99_ratio = median(&summary.p99_ratios);
    let cpu_ratio = median(&summary.cpu_ratios);
    println!(
        "median ratio {}/{}: req/s {:.3}, p99 {:.2}x, server CPU per request {}",
        a.name,
        b.name,
        rps_ratio,
        p99_ratio,
        if cpu_ratio.is_finite() {
            format!("{cpu_ratio:.2}x")
        } else {
            "-".to_owned()
        }
    );
    let at = if args.concurrency == 64 {
        ""
    } else {
        " (the target is stated at concurrency 64)"
    };
    match scenario {
        Scenario::IntrospectCached => {
            println!(
                "target: req/s >= 0.80 x {}: {}; p99 <= 1.5 x {}: {}{at}",
                b.name,
                verdict(rps_ratio >= 0.80),
                b.name,
                verdict(p99_ratio <= 1.5)
            );
        }
        Scenario::RestGetMe => {
            println!(
                "target: req/s >= 0.70 x {}: {}{at}",
                b.name,
                verdict(rps_ratio >= 0.70)
            );
        }
        Scenario::GatewayVerify | Scenario::GatewayIntrospect => {
            println!(
                "target: req/s ratio >= rest-get-me's ratio in the same run (compared after the last scenario){at}"
            );
        }
        Scenario::ExtAuthz => {
            println!(
                "target: req/s >= the introspect-cached ratio (issue 14: the gateways reach \
                 what IntrospectToken reaches){at}"
            );
        }
        Scenario::DbSqlx | Scenario::DbSqlxHeld | Scenario::DbTokioPostgres => {
            println!(
                "target: credentials checked per second (2 per request) >= 0.5 x {}'s point selects{at}",
                b.name
            );
        }
        Scenario::WriteCreate | Scenario::WriteCreateUsers | Scenario::WriteRevoke => {
            println!(
                "target: req/s >= 0.5 x {}: {}{at}",
                b.name,
                verdict(rps_ratio >= 0.5)
            );
        }
        Scenario::IntrospectUncached | Scenario::CreateToken => {}
    }
    let errors: u64 = summary
        .target
        .iter()
        .chain(&summary.base)
        .map(|r| r.errors)
        .sum();
    println!(
        "summary scenario={} baseline={} rps={:.1} baseline_rps={:.1} rps_ratio={:.3} p99_ratio={:.3} errors={}",
        a.name,
        b.name,
        median(
            &summary
                .target
                .iter()
                .map(RunResult::rps)
                .collect::<Vec<_>>()
        ),
        median(&summary.base.iter().map(RunResult::rps).collect::<Vec<_>>()),
        rps_ratio,
        p99_ratio,
        errors
    );
    Ok(summary)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn print_run(round: usize, name: &str, r: &RunResult) {
    let cpu = r
        .cpu_us_per_request()
        .map_or_else(|| "-".to_owned(), |c| format!("{c:.1}"));
    let cache = r.cache.map_or_else(
        || "-".to_owned(),
        |(hits, misses)| {
            let total = hits + misses;
            if total == 0 {
                "-".to_owned()
            } else {
                format!("{:.1}%", hits as f64 * 100.0 / total as f64)
            }
        },
    );
    let client = r
        .client_cpu_us_per_request()
        .map_or_else(|| "-".to_owned(), |c| format!("{c:.1}"));
    println!(
        "{:<6}{:<22}{:>11.1}{:>10.3}{:>10.3}{:>10.3}{:>8}{:>12}{:>11}{:>15}",
        round,
        name,
        r.rps(),
        r.p50(),
        r.p99(),
        r.p999(),
        r.errors,
        cpu,
        cache,
        client
    );
    if let Some(e) = &r.first_error {
        println!("      first error: {e}");
    }
}

/// One measured run of a side: warm-up, then the window.
pub(crate) async fn run_side(side: &mut Side<'_>, args: &BenchArgs) -> Result<RunResult, String> {
    let drivers = std::mem::take(&mut side.drivers);
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let workers: Vec<_> = drivers
        .into_iter()
        .enumerate()
        .map(|(w, driver)| tokio::spawn(worker(w, driver, phase.clone())))
        .collect();
    tokio::time::sleep(args.warmup).await;
    let cpu0 = side.probe.read();
    let client0 = crate::cpu::client();
    let cache0 = side.target.and_then(Target::cache_counts);
    let t0 = Instant::now();
    phase.store(MEASURE, Ordering::Release);
    tokio::time::sleep(args.duration).await;
    phase.store(STOP, Ordering::Release);
    let elapsed = t0.elapsed();
    let cpu1 = side.probe.read();
    let client1 = crate::cpu::client();
    let cache1 = side.target.and_then(Target::cache_counts);

    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for handle in workers {
        let done = tokio::time::timeout(DRAIN_TIMEOUT, handle)
            .await
            .map_err(|_| {
                format!(
                    "{}: a request was still unanswered {DRAIN_TIMEOUT:?} after the run",
                    side.name
                )
            })?
            .map_err(|e| format!("worker: {e}"))?;
        side.drivers.push(done.driver);
        latencies.extend(done.latencies);
        errors += done.errors;
        if first_error.is_none() {
            first_error = done.first_error;
        }
    }
    let mut result = RunResult::new(latencies, errors, first_error, elapsed);
    result.server_cpu = cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a));
    result.client_cpu = client0.zip(client1).map(|(a, b)| b.saturating_sub(a));
    result.cache = cache0
        .zip(cache1)
        .map(|((h0, m0), (h1, m1))| (h1 - h0, m1 - m0));
    Ok(result)
}

struct WorkerResult {
    driver: Driver,
    latencies: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

async fn worker(w: usize, mut driver: Driver, phase: Arc<AtomicU8>) -> WorkerResult {
    let mut latencies = Vec::with_capacity(16 * 1024);
    let mut errors = 0;
    let mut first_error = None;
    // Workers start at different tokens so they do not move through them in step.
    let mut i = w.wrapping_mul(7919);
    loop {
        let started_in = phase.load(Ordering::Acquire);
        if started_in == STOP {
            break;
        }
        let start = Instant::now();
        let outcome = driver.call(i).await;
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        i = i.wrapping_add(1);
        if started_in == MEASURE && phase.load(Ordering::Acquire) == MEASURE {
            match outcome {
                Ok(()) => latencies.push(nanos),
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    WorkerResult {
        driver,
        latencies,
        errors,
        first_error,
    }
}

/// The gateways' target: each reaches at least the req/s ratio REST GetMe reaches against
/// the same baseline in the same run.
fn compare_gateways(summaries: &[PairSummary]) {
    let ratio = |name: &str| {
        summaries
            .iter()
            .find(|s| s.scenario == name)
            .map(|s| median(&s.rps_ratios))
    };
    let Some(get_me) = ratio(Scenario::RestGetMe.name()) else {
        return;
    };
    for gateway in [Scenario::GatewayVerify, Scenario::GatewayIntrospect] {
        if let Some(r) = ratio(gateway.name()) {
            println!(
                "target: {} req/s ratio {r:.3} >= rest-get-me's {get_me:.3}: {}",
                gateway.name(),
                verdict(r >= get_me)
            );
        }
    }
}

/// The medians of every run, as a Markdown table (for the README).
fn print_table(summaries: &[PairSummary]) {
    if summaries.is_empty() {
        return;
    }
    println!(
        "\nmedians over the rounds:\n\n| run | req/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/req | loadgen CPU µs/req | req/s ratio | p99 ratio | server CPU ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in summaries {
        row(s.scenario, &s.target, Some(s));
        row(&format!("{} (baseline)", s.baseline), &s.base, None);
    }
    println!();
}

fn row(name: &str, runs: &[RunResult], ratios: Option<&PairSummary>) {
    let m = |f: fn(&RunResult) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let cpu_column = |f: fn(&RunResult) -> Option<f64>| {
        let v = median(&runs.iter().filter_map(f).collect::<Vec<_>>());
        if v.is_finite() {
            format!("{v:.1}")
        } else {
            "-".to_owned()
        }
    };
    let cpu = cpu_column(RunResult::cpu_us_per_request);
    let client = cpu_column(RunResult::client_cpu_us_per_request);
    let (rps_ratio, p99_ratio, cpu_ratio) = match ratios {
        Some(s) => (
            format!("{:.3}", median(&s.rps_ratios)),
            format!("{:.2}x", median(&s.p99_ratios)),
            if s.cpu_ratios.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.2}x", median(&s.cpu_ratios))
            },
        ),
        None => (String::new(), String::new(), String::new()),
    };
    println!(
        "| {name} | {:.0} | {:.3} | {:.3} | {:.3} | {cpu} | {client} | {rps_ratio} | {p99_ratio} | {cpu_ratio} |",
        m(RunResult::rps),
        m(RunResult::p50),
        m(RunResult::p99),
        m(RunResult::p999),
    );
}
