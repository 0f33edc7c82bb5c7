//! `loadgen scale`: how the costs grow with the number of tokens in the database (issue 16
//! point 5). For each size, the `user_access_tokens` table is topped up to that many rows
//! with filler tokens (bulk multi-row inserts, not the API; rows no secret opens, owned by a
//! user of their own), then measured on the same in-process servers:
//!
//! - IntrospectToken answered from the cache and with the cache off (req/s, p50, p99; the
//!   closed-loop runs of `bench`);
//! - GetUserAccessTokens (every token, ordered by id, `page`/`per_page`) for the first and
//!   the last page, the last page again by keyset (`page_token`: the next page token of the
//!   page before it, fetched once, untimed; it must end on the same token), and
//!   SearchUserAccessTokens for the first and the last token id, one call at a time (p50,
//!   p99);
//! - the revocation lag on the replica that revokes, with its cache full: the cache's
//!   capacity is the number of credentials the run checks, and all are cached; a cached
//!   token is revoked and checked every millisecond from the revoke's return until a check
//!   answers inactive (the lag includes that check's round trip);
//! - the token cache's memory per cached credential with as many entries as the size:
//!   `loadgen cache-memory --entries <size>` in a process of its own (the credentials the
//!   server can cache are those presented with a secret; filler rows have none, so the
//!   server's own cache cannot be filled with them).

use std::time::{Duration, Instant};

use token_service::pb::{self, token_service_client::TokenServiceClient};
use tokio::runtime::{Builder, Handle};
use tonic::transport::Channel;

use crate::{
    BenchArgs, ScaleArgs,
    bench::{Side, grpc_drivers, run_side, server_log},
    cpu::{CLIENT_THREAD_PREFIX, CpuProbe},
    db_baseline::{DbClient, DriverKind, IdSource},
    stats::RunResult,
    target::{self, Target, authed},
};

/// Page size of the listing calls (the gRPC default is 60, the maximum 200).
const PER_PAGE: i64 = 100;

pub(crate) fn run(args: ScaleArgs) -> Result<(), String> {
    if args.sizes.is_empty() || args.sizes.contains(&0) {
        return Err("--sizes must name at least one size, each at least 1".into());
    }
    if args.concurrency == 0 || args.tokens == 0 || args.calls == 0 || args.revocations == 0 {
        return Err("--concurrency, --tokens, --calls and --revocations must be at least 1".into());
    }
    if args.sizes.windows(2).any(|w| w[0] >= w[1]) {
        return Err("--sizes must grow (the table is only topped up)".into());
    }
    let server_threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server_rt = Builder::new_multi_thread()
        .worker_threads(server_threads)
        .thread_name("srv-worker")
        .enable_all()
        .build()
        .map_err(|e| format!("server runtime: {e}"))?;
    let client_rt = Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("{CLIENT_THREAD_PREFIX}-client"))
        .enable_all()
        .build()
        .map_err(|e| format!("client runtime: {e}"))?;
    let _telemetry = server_log(args.server_log.as_deref())?;
    let outcome = client_rt.block_on(scale(&args, server_rt.handle().clone()));
    server_rt.shutdown_timeout(Duration::from_secs(1));
    client_rt.shutdown_timeout(Duration::from_secs(1));
    outcome
}

/// The closed-loop runs' settings, as `bench` takes them.
fn bench_args(args: &ScaleArgs) -> BenchArgs {
    BenchArgs {
        scenarios: Vec::new(),
        concurrency: args.concurrency,
        connections: 4,
        duration: args.duration,
        warmup: args.warmup,
        rounds: 1,
        tokens: args.tokens,
        client_threads: 2,
        server_threads: None,
        grpc_target: None,
        http_target: None,
        uncached_grpc_target: None,
        admin_token: None,
        target_pid: None,
        database_url: args.database_url.clone(),
        check_connections: None,
        check_batches: None,
        server_log: args.server_log.clone(),
    }
}

/// One size's figures.
struct Row {
    size: u64,
    cached: RunResult,
    uncached: RunResult,
    list_first: RunResult,
    list_last: RunResult,
    keyset_last: RunResult,
    search_first: RunResult,
    search_last: RunResult,
    revoke_call: RunResult,
    revoke_lag: RunResult,
    cache_bytes: f64,
}

async fn scale(args: &ScaleArgs, server_rt: Handle) -> Result<(), String> {
    println!("machine: {}", crate::footprint::machine());
    println!(
        "sizes {:?}; per size: IntrospectToken cached and uncached, concurrency {}, {:?} after {:?} warm-up, {} token(s); \
         listing and search: {} call(s) each, one at a time, {PER_PAGE} per page; {} revocation(s)",
        args.sizes,
        args.concurrency,
        args.duration,
        args.warmup,
        args.tokens,
        args.calls,
        args.revocations
    );
    let checked = args.tokens + args.revocations * args.sizes.len();
    let on_database = |c: &mut token_service::config::Config| {
        if let Some(url) = &args.database_url {
            c.database_url = Some(token_service::config::DatabaseUrl::new(url.clone()));
        }
        if let Some(key) = &args.server_key_file {
            c.server_key = None;
            c.server_key_file = Some(key.clone());
        }
    };
    // The cache holds exactly the credentials the run checks (the admin's and the scenario's):
    // full once they are all checked, so the revocations run against a full cache.
    let mut cached = Target::start_in_process(&server_rt, checked, |c| {
        c.cache.capacity = checked + 1;
        on_database(c);
    })
    .await?;
    let uncached = match Target::start_in_process(&server_rt, args.tokens, |c| {
        c.cache.enable = false;
        on_database(c);
    })
    .await
    {
        Ok(t) => t,
        Err(e) => {
            cached.stop().await;
            return Err(e);
        }
    };
    eprintln!("loadgen: targets ready");
    // The scenario's tokens first, then those revoked, `revocations` per size.
    let to_revoke = cached.tokens.split_off(args.tokens);
    let outcome = measure(args, &cached, &uncached, &to_revoke).await;
    cached.stop().await;
    uncached.stop().await;
    let rows = outcome?;
    print_table(&rows);
    println!(
        "load average after the run: {}",
        crate::footprint::loadavg()
    );
    let failed: u64 = rows
        .iter()
        .map(|r| r.cached.errors + r.uncached.errors)
        .sum();
    if failed > 0 {
        return Err(format!(
            "{failed} request(s) failed; see the first error of each run above"
        ));
    }
    Ok(())
}

/// A database the targets use, with the user owning its filler tokens.
struct Filled {
    db: DbClient,
    ids: IdSource,
    next_row: u64,
}

async fn measure(
    args: &ScaleArgs,
    cached: &Target,
    uncached: &Target,
    to_revoke: &[String],
) -> Result<Vec<Row>, String> {
    let bench = bench_args(args);
    // Each target's database (one when they share --database-url, two SQLite files if not).
    let mut databases: Vec<(Option<String>, Filled)> = Vec::new();
    for tgt in [cached, uncached] {
        if databases.iter().any(|(url, _)| *url == tgt.database_url) {
            continue;
        }
        let url = tgt
            .database_url
            .as_deref()
            .ok_or("the target's database is not known")?;
        let db = DbClient::connect(DriverKind::Sqlx, url)
            .await?
            .ok_or("sqlx serves every database")?;
        let owner = filler_owner(tgt).await?;
        databases.push((
            tgt.database_url.clone(),
            Filled {
                db,
                ids: IdSource::new(owner),
                next_row: 0,
            },
        ));
    }
    let mut client = target::connect(cached.grpc, 1).await?.remove(0);
    // Every credential the run checks in the cache: the scenario's tokens are checked by
    // the warm-up of each cached run, the ones to revoke here.
    for token in to_revoke {
        introspect(&mut client, cached, token).await?;
    }
    let mut to_revoke = to_revoke.iter();
    let mut rows = Vec::new();
    for &size in &args.sizes {
        println!("\n== {size} tokens");
        for (_, filled) in &mut databases {
            let have = filled.db.count_tokens().await?;
            let add = size.saturating_sub(have);
            let started = Instant::now();
            filled
                .db
                .insert_filler_range(&filled.ids, filled.next_row..filled.next_row + add)
                .await?;
            filled.next_row += add;
            filled.db.analyze_tokens().await?;
            println!(
                "table topped up from {have} to {} rows ({add} inserted and the table analysed in {:.1} s)",
                have + add,
                started.elapsed().as_secs_f64()
            );
        }
        let total = databases[0].1.db.count_tokens().await?;
        let cached_run = closed_loop(&bench, "introspect-cached", cached).await?;
        let uncached_run = closed_loop(&bench, "introspect-uncached", uncached).await?;

        let last_page = (total.div_ceil(PER_PAGE as u64)).saturating_sub(1);
        let last_page = i32::try_from(last_page)
            .map_err(|_| format!("page {last_page} does not fit gRPC's int32"))?;
        let (list_first, first_id, _) =
            list(&mut client, cached, by_number(0), Edge::First, args.calls).await?;
        report("list first page", &list_first);
        let (list_last, last_id, _) = list(
            &mut client,
            cached,
            by_number(last_page),
            Edge::Last,
            args.calls,
        )
        .await?;
        report(&format!("list last page ({last_page})"), &list_last);
        // The cursor of the last page: the page before it's next page token.
        let cursor = if last_page == 0 {
            String::new()
        } else {
            list(&mut client, cached, by_number(last_page - 1), Edge::Last, 1)
                .await?
                .2
        };
        let (keyset_last, keyset_last_id, _) = list(
            &mut client,
            cached,
            pb::GetUserAccessTokensRequest {
                per_page: Some(PER_PAGE as i32),
                page_token: cursor,
                ..Default::default()
            },
            Edge::Last,
            args.calls,
        )
        .await?;
        if keyset_last_id != last_id {
            return Err(format!(
                "the keyset walk's last page ends on {keyset_last_id}, page {last_page} on {last_id}"
            ));
        }
        report("list last page by keyset", &keyset_last);
        let search_first = search(&mut client, cached, &first_id, args.calls).await?;
        report("search first id", &search_first);
        let search_last = search(&mut client, cached, &last_id, args.calls).await?;
        report("search last id", &search_last);

        let batch: Vec<&String> = to_revoke.by_ref().take(args.revocations).collect();
        let (revoke_call, revoke_lag) = revocations(&mut client, cached, &batch).await?;
        report("revoke call", &revoke_call);
        report("revocation lag", &revoke_lag);

        let cache_bytes = cache_memory(size)?;
        println!("cache memory: {cache_bytes:.0} B per cached credential at {size} entries");
        rows.push(Row {
            size: total,
            cached: cached_run,
            uncached: uncached_run,
            list_first,
            list_last,
            keyset_last,
            search_first,
            search_last,
            revoke_call,
            revoke_lag,
            cache_bytes,
        });
    }
    Ok(rows)
}

/// One closed-loop IntrospectToken run (as `bench`'s) against `tgt`.
async fn closed_loop(
    bench: &BenchArgs,
    name: &'static str,
    tgt: &Target,
) -> Result<RunResult, String> {
    let mut side = Side {
        name,
        drivers: grpc_drivers(tgt.grpc, tgt, bench, false).await?,
        probe: CpuProbe::InProcess,
        target: Some(tgt),
    };
    let r = run_side(&mut side, bench).await?;
    report(name, &r);
    if let Some(e) = &r.first_error {
        println!("  first error: {e}");
    }
    Ok(r)
}

/// Creates the user owning the filler tokens (the admin's own listing stays small).
async fn filler_owner(tgt: &Target) -> Result<String, String> {
    let mut client = target::connect(tgt.grpc, 1).await?.remove(0);
    let suffix = IdSource::new(String::new()).tag();
    let user = client
        .create_user(authed(
            pb::CreateUserRequest {
                username: format!("lg-filler-{suffix}"),
                roles: vec!["system_user".to_owned()],
                ..Default::default()
            },
            &tgt.admin_token,
        ))
        .await
        .map_err(|s| format!("CreateUser: {s:?}"))?
        .into_inner()
        .user
        .ok_or("CreateUser returned no user")?;
    Ok(user.id)
}

async fn introspect(
    client: &mut TokenServiceClient<Channel>,
    tgt: &Target,
    token: &str,
) -> Result<pb::IntrospectTokenResponse, String> {
    client
        .introspect_token(authed(
            pb::IntrospectTokenRequest {
                token: token.to_owned(),
            },
            &tgt.admin_token,
        ))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| format!("IntrospectToken: {:?} {}", s.code(), s.message()))
}

/// Times `calls` of `call`, one at a time; each must succeed.
async fn timed<F, Fut>(calls: usize, mut call: F) -> Result<RunResult, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut latencies = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let t0 = Instant::now();
        call().await?;
        latencies.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    Ok(RunResult::new(latencies, 0, None, started.elapsed()))
}

/// Which token of a page [`list`] answers.
#[derive(Clone, Copy)]
enum Edge {
    First,
    Last,
}

/// Page `page` of every token, [`PER_PAGE`] per page.
fn by_number(page: i32) -> pb::GetUserAccessTokensRequest {
    pb::GetUserAccessTokensRequest {
        page: Some(page),
        per_page: Some(PER_PAGE as i32),
        ..Default::default()
    }
}

/// GetUserAccessTokens with `request`, `calls` times, one at a time; the timings, the id of
/// the page's first or last token (`edge`) and the next page token.
async fn list(
    client: &mut TokenServiceClient<Channel>,
    tgt: &Target,
    request: pb::GetUserAccessTokensRequest,
    edge: Edge,
    calls: usize,
) -> Result<(RunResult, String, String), String> {
    let mut id = String::new();
    let mut next = String::new();
    let mut latencies = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let t0 = Instant::now();
        let page = client
            .get_user_access_tokens(authed(request.clone(), &tgt.admin_token))
            .await
            .map_err(|s| format!("GetUserAccessTokens: {:?} {}", s.code(), s.message()))?
            .into_inner();
        latencies.push(nanos(t0.elapsed()));
        let token = match edge {
            Edge::First => page.user_access_tokens.first(),
            Edge::Last => page.user_access_tokens.last(),
        };
        id = token
            .ok_or(format!("GetUserAccessTokens {request:?}: an empty page"))?
            .id
            .clone();
        next = page.next_page_token;
    }
    Ok((
        RunResult::new(latencies, 0, None, started.elapsed()),
        id,
        next,
    ))
}

/// SearchUserAccessTokens for the token id `term`, `calls` times; one match each.
async fn search(
    client: &mut TokenServiceClient<Channel>,
    tgt: &Target,
    term: &str,
    calls: usize,
) -> Result<RunResult, String> {
    timed(calls, || {
        let mut client = client.clone();
        async move {
            let found = client
                .search_user_access_tokens(authed(
                    pb::SearchUserAccessTokensRequest {
                        term: term.to_owned(),
                    },
                    &tgt.admin_token,
                ))
                .await
                .map_err(|s| format!("SearchUserAccessTokens: {:?} {}", s.code(), s.message()))?
                .into_inner()
                .user_access_tokens;
            match found.as_slice() {
                [one] if one.id == term => Ok(()),
                other => Err(format!(
                    "SearchUserAccessTokens {term}: {} match(es), expected the token",
                    other.len()
                )),
            }
        }
    })
    .await
}

/// Revokes each of `tokens` (cached and active: checked first) and checks it every
/// millisecond until a check answers inactive. The revoke calls' latencies and the lags,
/// from each revoke's return to the answer of the first check that refused the token.
async fn revocations(
    client: &mut TokenServiceClient<Channel>,
    tgt: &Target,
    tokens: &[&String],
) -> Result<(RunResult, RunResult), String> {
    const LIMIT: Duration = Duration::from_secs(5);
    let mut calls = Vec::new();
    let mut lags = Vec::new();
    let started = Instant::now();
    for token in tokens {
        let before = introspect(client, tgt, token).await?;
        if !before.active {
            return Err("a token to revoke was already inactive".into());
        }
        let t0 = Instant::now();
        client
            .revoke_user_access_token(authed(
                pb::RevokeUserAccessTokenRequest {
                    token_id: before.token_id.clone(),
                },
                &tgt.admin_token,
            ))
            .await
            .map_err(|s| format!("RevokeUserAccessToken: {:?} {}", s.code(), s.message()))?;
        let returned = Instant::now();
        calls.push(nanos(returned - t0));
        loop {
            if !introspect(client, tgt, token).await?.active {
                lags.push(nanos(returned.elapsed()));
                break;
            }
            if returned.elapsed() > LIMIT {
                return Err(format!("a revoked token was still active after {LIMIT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let elapsed = started.elapsed();
    Ok((
        RunResult::new(calls, 0, None, elapsed),
        RunResult::new(lags, 0, None, elapsed),
    ))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `loadgen cache-memory --entries <entries>` in a process of its own (a fresh heap, so the
/// resident-memory deltas are the cache's); bytes per cached credential.
fn cache_memory(entries: u64) -> Result<f64, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find loadgen itself: {e}"))?;
    let out = std::process::Command::new(me)
        .args(["cache-memory", "--entries", &entries.to_string()])
        .output()
        .map_err(|e| format!("run cache-memory: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "cache-memory failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    stdout
        .lines()
        .find(|l| l.starts_with("summary scenario=cache-memory "))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("total_bytes="))
        })
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("cache-memory printed no total_bytes: {stdout}"))
}

fn report(name: &str, r: &RunResult) {
    println!(
        "{name:<28}{:>11.1} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  ({} calls)",
        r.rps(),
        r.p50(),
        r.p99(),
        r.requests
    );
}

fn print_table(rows: &[Row]) {
    println!(
        "\n| tokens | cached req/s | cached p99 ms | uncached req/s | uncached p99 ms | list page 0 p50/p99 ms | list last page p50/p99 ms | keyset last page p50/p99 ms | search first id p50/p99 ms | search last id p50/p99 ms | revoke call p50 ms | revocation lag p50/p99 ms | cache B/credential |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let pair = |r: &RunResult| format!("{:.3} / {:.3}", r.p50(), r.p99());
    for r in rows {
        println!(
            "| {} | {:.0} | {:.3} | {:.0} | {:.3} | {} | {} | {} | {} | {} | {:.3} | {} | {:.0} |",
            r.size,
            r.cached.rps(),
            r.cached.p99(),
            r.uncached.rps(),
            r.uncached.p99(),
            pair(&r.list_first),
            pair(&r.list_last),
            pair(&r.keyset_last),
            pair(&r.search_first),
            pair(&r.search_last),
            r.revoke_call.p50(),
            pair(&r.revoke_lag),
            r.cache_bytes
        );
    }
    println!();
    for r in rows {
        println!(
            "summary scenario=scale tokens={} cached_rps={:.1} cached_p99_ms={:.3} uncached_rps={:.1} uncached_p99_ms={:.3} \
             list_first_p50_ms={:.3} list_first_p99_ms={:.3} list_last_p50_ms={:.3} list_last_p99_ms={:.3} \
             keyset_last_p50_ms={:.3} keyset_last_p99_ms={:.3} search_first_p99_ms={:.3} search_last_p99_ms={:.3} revoke_call_p50_ms={:.3} \
             revocation_lag_p50_ms={:.3} revocation_lag_p99_ms={:.3} cache_bytes={:.1} errors={}",
            r.size,
            r.cached.rps(),
            r.cached.p99(),
            r.uncached.rps(),
            r.uncached.p99(),
            r.list_first.p50(),
            r.list_first.p99(),
            r.list_last.p50(),
            r.list_last.p99(),
            r.keyset_last.p50(),
            r.keyset_last.p99(),
            r.search_first.p99(),
            r.search_last.p99(),
            r.revoke_call.p50(),
            r.revoke_lag.p50(),
            r.revoke_lag.p99(),
            r.cache_bytes,
            r.cached.errors + r.uncached.errors
        );
    }
}
