//! `loadgen h2load`: the cached scenarios measured by a client we did not write, nghttp2's
//! `h2load` (Debian package `nghttp2-client`), against the in-process target and the same
//! baselines as `bench` (`grpc-echo`, `axum-json`), in one process built with one profile.
//!
//! - `introspect-cached`: IntrospectToken over HTTP/2, the request a gRPC frame read from a
//!   file (`-d`), `--connections` connections with `concurrency / connections` streams each.
//! - `rest-get-me`: `GET /api/v4/users/me` over HTTP/1.1 (`--h1`), one connection per request
//!   in flight.
//!
//! h2load presents one token the whole run (it repeats one request), so every answer is a
//! cache hit after the first. Target and baseline runs alternate, round after round, as in
//! `bench`. The rate is h2load's own `req/s`; the latency quantiles come from its per-request
//! log (`--log-file`). Both cover the requests of the measured phase only: h2load counts
//! nothing of its warm-up but the bytes (its `traffic:` line adds up every byte received,
//! warm-up included, so bytes per request move with the warm-up's share of the run and tell
//! nothing about the answers). The server's CPU per request is the in-process server threads'
//! CPU time from the end of the warm-up to h2load's exit over the requests h2load logged.
//!
//! h2load reports an HTTP status only, and a gRPC error travels in a 200's headers, so each
//! target first answers the same request once through tonic (an active token), and every run
//! against it is checked against the target's own request counters (`/metrics`,
//! `token_service_requests_total` of the scenario's route): each answer it gave during the
//! run must have been a success, and at least as many as h2load counted.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prost::Message;
use token_service::pb;
use tokio::runtime::Handle;

use crate::{
    H2loadArgs, H2loadScenario, baseline,
    cpu::CpuProbe,
    http1::Http1Conn,
    stats::median,
    target::{self, Target},
};

/// The goals of issue 16 point 3, per scenario: req/s ratio at least, p99 ratio at most.
const GRPC_GOAL: f64 = 0.90;
const REST_GOAL: f64 = 0.85;
const P99_GOAL: f64 = 1.2;

pub(crate) fn run(args: H2loadArgs) -> Result<(), String> {
    if args.concurrency == 0 || args.connections == 0 || args.rounds == 0 {
        return Err("--concurrency, --connections and --rounds must be at least 1".into());
    }
    if !args.concurrency.is_multiple_of(args.connections) {
        return Err(
            "--concurrency must be a multiple of --connections (streams per connection)".into(),
        );
    }
    let version = Command::new(&args.h2load)
        .arg("--version")
        .output()
        .map_err(|e| {
            format!(
                "{}: {e} (install it: apt-get install nghttp2-client)",
                args.h2load.display()
            )
        })?;
    let (server_rt, client_rt, server_threads) = crate::bench::runtimes(args.server_threads, 1)?;
    let _telemetry = crate::bench::server_log(args.server_log.as_deref())?;
    println!("machine: {}", crate::footprint::machine());
    println!(
        "client: {} ({} thread(s)); load: concurrency {}, gRPC over {} connection(s), \
         REST one HTTP/1.1 connection per request in flight; {} round(s) of {:?} after {:?} \
         warm-up; {} server thread(s)",
        String::from_utf8_lossy(&version.stdout).trim(),
        args.threads,
        args.concurrency,
        args.connections,
        args.rounds,
        args.duration,
        args.warmup,
        server_threads
    );
    let outcome = client_rt.block_on(h2load(&args, server_rt.handle().clone()));
    server_rt.shutdown_timeout(Duration::from_secs(1));
    client_rt.shutdown_timeout(Duration::from_secs(1));
    outcome
}

/// One h2load run's figures.
#[derive(Debug, Clone)]
struct H2Run {
    rps: f64,
    /// Requests h2load counted as answered (the measured phase).
    answered: u64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us: Option<f64>,
}

/// What one side of a pair is asked.
struct Side {
    name: &'static str,
    url: String,
    /// h2load's arguments besides the common ones.
    args: Vec<String>,
    /// The target's: where its `/metrics` are served and the route label its answers are
    /// counted under (checked after each run). None for a baseline, whose answer is fixed.
    counted_by: Option<(SocketAddr, &'static str)>,
}

async fn h2load(args: &H2loadArgs, server_rt: Handle) -> Result<(), String> {
    let spawn_err = |e: tokio::task::JoinError| format!("server task: {e}");
    let echo = server_rt
        .spawn(baseline::start_grpc_echo())
        .await
        .map_err(spawn_err)??;
    let axum = server_rt
        .spawn(baseline::start_axum_json())
        .await
        .map_err(spawn_err)??;
    let target = Target::start_in_process(&server_rt, 1, |_| {}).await?;
    let outcome = run_pairs(args, &target, echo, axum).await;
    target.stop().await;
    outcome
}

async fn run_pairs(
    args: &H2loadArgs,
    target: &Target,
    echo: SocketAddr,
    axum: SocketAddr,
) -> Result<(), String> {
    let work = std::env::temp_dir().join(format!("loadgen-h2load-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let token = target.tokens.first().ok_or("the target has no token")?;
    let frame = work.join("introspect.grpc");
    std::fs::write(&frame, grpc_frame(token)).map_err(|e| format!("{}: {e}", frame.display()))?;
    // The checked answers: the same request through tonic, an active token.
    for addr in [target.grpc, echo] {
        check_introspection(addr, &target.admin_token, token).await?;
    }
    let http = target.http.ok_or("the target serves no REST")?;
    let scenarios = if args.scenarios.is_empty() {
        vec![H2loadScenario::IntrospectCached, H2loadScenario::RestGetMe]
    } else {
        args.scenarios.clone()
    };
    let mut failed = false;
    for scenario in scenarios {
        let (a, b, goal) = match scenario {
            H2loadScenario::IntrospectCached => {
                let path = "/token_service.v1.TokenService/IntrospectToken";
                let grpc_args = |bearer: &str| {
                    vec![
                        format!("--clients={}", args.connections),
                        format!(
                            "--max-concurrent-streams={}",
                            args.concurrency / args.connections
                        ),
                        format!("--data={}", frame.display()),
                        "--header=content-type: application/grpc".to_owned(),
                        "--header=te: trailers".to_owned(),
                        format!("--header=authorization: Bearer {bearer}"),
                    ]
                };
                (
                    Side {
                        name: "introspect-cached",
                        url: format!("http://{}{path}", target.grpc),
                        args: grpc_args(&target.admin_token),
                        counted_by: Some((http, path)),
                    },
                    Side {
                        name: "grpc-echo",
                        url: format!("http://{echo}{path}"),
                        args: grpc_args(&target.admin_token),
                        counted_by: None,
                    },
                    GRPC_GOAL,
                )
            }
            H2loadScenario::RestGetMe => {
                let rest_args = vec![
                    "--h1".to_owned(),
                    format!("--clients={}", args.concurrency),
                    format!("--header=authorization: Bearer {token}"),
                    "--header=accept: application/json".to_owned(),
                ];
                let path = "/api/v4/users/me";
                (
                    Side {
                        name: "rest-get-me",
                        url: format!("http://{http}{path}"),
                        args: rest_args.clone(),
                        counted_by: Some((http, path)),
                    },
                    Side {
                        name: "axum-json",
                        url: format!("http://{axum}{path}"),
                        args: rest_args,
                        counted_by: None,
                    },
                    REST_GOAL,
                )
            }
        };
        println!(
            "\n== {} vs {} (baseline), h2load\n{:<6}{:<20}{:>11}{:>10}{:>10}{:>12}",
            a.name, b.name, "round", "run", "req/s", "p50 ms", "p99 ms", "cpu µs/req"
        );
        let mut rps_ratios = Vec::new();
        let mut p99_ratios = Vec::new();
        let mut cpu_ratios = Vec::new();
        for round in 1..=args.rounds {
            let ra = run_checked(args, &a, &work).await?;
            print_run(round, a.name, &ra);
            let rb = run_checked(args, &b, &work).await?;
            print_run(round, b.name, &rb);
            rps_ratios.push(ra.rps / rb.rps);
            p99_ratios.push(ra.p99_ms / rb.p99_ms);
            if let (Some(x), Some(y)) = (ra.cpu_us, rb.cpu_us) {
                cpu_ratios.push(x / y);
            }
            println!(
                "{:<6}{:<20}{:>11.3}{:>10}{:>9.2}x",
                round,
                "ratio",
                ra.rps / rb.rps,
                "",
                ra.p99_ms / rb.p99_ms
            );
        }
        let (rps, p99) = (median(&rps_ratios), median(&p99_ratios));
        let met = rps >= goal && p99 <= P99_GOAL;
        failed |= !met;
        println!(
            "summary scenario={} client=h2load baseline={} rps_ratio={rps:.3} p99_ratio={p99:.2} \
             cpu_ratio={:.2} goal: req/s >= {goal:.2}, p99 <= {P99_GOAL}x: {}",
            a.name,
            b.name,
            median(&cpu_ratios),
            if met { "met" } else { "NOT met" }
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    if failed {
        println!("(a goal not met is reported, not an error)");
    }
    Ok(())
}

/// IntrospectTokenRequest as a gRPC message on the wire: uncompressed flag, length, message.
fn grpc_frame(token: &str) -> Vec<u8> {
    let message = pb::IntrospectTokenRequest {
        token: token.to_owned(),
    }
    .encode_to_vec();
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(&message);
    frame
}

/// The request h2load repeats, sent once through tonic: it must answer an active token.
async fn check_introspection(addr: SocketAddr, admin: &str, token: &str) -> Result<(), String> {
    let mut client = target::connect(addr, 1).await?.remove(0);
    let answer = client
        .introspect_token(target::authed(
            pb::IntrospectTokenRequest {
                token: token.to_owned(),
            },
            admin,
        ))
        .await
        .map_err(|s| format!("IntrospectToken at {addr}: {s}"))?
        .into_inner();
    if !answer.active {
        return Err(format!(
            "IntrospectToken at {addr}: the token is not active"
        ));
    }
    Ok(())
}

/// One h2load run against `side`; a target's answers checked against its own counters.
async fn run_checked(args: &H2loadArgs, side: &Side, work: &Path) -> Result<H2Run, String> {
    let Some((http, route)) = side.counted_by else {
        return run_side(args, side, work);
    };
    let before = answers_by_status(http, route).await?;
    let run = run_side(args, side, work)?;
    let after = answers_by_status(http, route).await?;
    let in_flight = u64::try_from(args.concurrency).unwrap_or(u64::MAX);
    check_answers(side.name, &before, &after, run.answered, in_flight)?;
    Ok(run)
}

/// One h2load run against `side`.
fn run_side(args: &H2loadArgs, side: &Side, work: &Path) -> Result<H2Run, String> {
    let log = work.join(format!("{}.log", side.name));
    let _ = std::fs::remove_file(&log);
    let started_us = unix_micros();
    let child = Command::new(&args.h2load)
        // h2load reads whole numbers with a unit.
        .arg(format!("--duration={}ms", args.duration.as_millis()))
        .arg(format!("--warm-up-time={}ms", args.warmup.as_millis()))
        .arg(format!("--threads={}", args.threads))
        .arg(format!("--log-file={}", log.display()))
        .args(&side.args)
        .arg(&side.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", args.h2load.display()))?;
    // h2load's warm-up starts as it starts (its connections take well under a millisecond
    // here); the CPU of the measured phase is what the server uses from its end.
    std::thread::sleep(args.warmup);
    let cpu_before = CpuProbe::InProcess.read();
    let output = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", args.h2load.display()))?;
    let cpu_after = CpuProbe::InProcess.read();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "h2load against {} failed ({}): {}{}",
            side.name,
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let summary = H2Summary::parse(&stdout)
        .ok_or_else(|| format!("h2load against {}: unreadable output:\n{stdout}", side.name))?;
    if summary.failed > 0 || summary.non_2xx > 0 || summary.succeeded == 0 {
        return Err(format!(
            "h2load against {}: {} succeeded, {} failed, {} not 2xx:\n{stdout}",
            side.name, summary.succeeded, summary.failed, summary.non_2xx
        ));
    }
    let logged = read_log(&log)?;
    let warm_end = started_us + u64::try_from(args.warmup.as_micros()).unwrap_or(u64::MAX);
    // h2load logs the measured phase only; the filter keeps that true of any version.
    let mut latencies: Vec<u64> = logged
        .iter()
        .filter(|(start, _)| *start >= warm_end)
        .map(|(_, us)| *us)
        .collect();
    latencies.sort_unstable();
    let cpu_us = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) if !latencies.is_empty() => {
            Some(a.saturating_sub(b).as_secs_f64() * 1e6 / latencies.len() as f64)
        }
        _ => None,
    };
    Ok(H2Run {
        rps: summary.rps,
        answered: summary.succeeded,
        p50_ms: quantile_ms(&latencies, 0.50),
        p99_ms: quantile_ms(&latencies, 0.99),
        cpu_us,
    })
}

/// The target's answers on `route` so far, by status label, from its `/metrics`.
async fn answers_by_status(http: SocketAddr, route: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut conn = Http1Conn::new(http);
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nUser-Agent: loadgen\r\n\r\n");
    let response = conn.send(request.as_bytes()).await?;
    if response.status != 200 {
        return Err(format!(
            "GET http://{http}/metrics answered {} (the target's answers are checked there)",
            response.status
        ));
    }
    let text = std::str::from_utf8(response.body)
        .map_err(|e| format!("GET http://{http}/metrics: not text: {e}"))?;
    Ok(parse_answers(text, route))
}

/// `token_service_requests_total` of `route`, by status label.
fn parse_answers(metrics: &str, route: &str) -> BTreeMap<String, u64> {
    let route_label = format!("route=\"{route}\"");
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("token_service_requests_total{"))
        .filter_map(|rest| {
            let (labels, value) = rest.split_once("} ")?;
            let mut labels = labels.split(',');
            if !labels.clone().any(|label| label == route_label) {
                return None;
            }
            let status = labels
                .find_map(|label| label.strip_prefix("status=\""))?
                .strip_suffix('"')?;
            Some((status.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The answers a run added to the target's counters: all successes (gRPC `OK`, HTTP 2xx),
/// and at least the `counted` h2load saw (the server also counts the warm-up's). h2load
/// stops with up to `in_flight` calls on the wire and closes its connections; the server
/// counts a gRPC call whose request was cut off that way as CANCELLED, and so many are no
/// failure.
fn check_answers(
    name: &str,
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    counted: u64,
    in_flight: u64,
) -> Result<(), String> {
    let mut succeeded = 0;
    let mut failed = Vec::new();
    for (status, &total) in after {
        let added = total.saturating_sub(before.get(status).copied().unwrap_or(0));
        if added == 0 {
            continue;
        }
        let success = status == "OK" || (status.len() == 3 && status.starts_with('2'));
        if success {
            succeeded += added;
        } else if !(status == "CANCELLED" && added <= in_flight) {
            failed.push(format!("{added} with status {status}"));
        }
    }
    if !failed.is_empty() {
        return Err(format!(
            "{name}: the target's counters show answers that were not successes: {}",
            failed.join(", ")
        ));
    }
    if succeeded < counted {
        return Err(format!(
            "{name}: h2load counted {counted} answers, the target's counters {succeeded} \
             successful ones"
        ));
    }
    Ok(())
}

fn print_run(round: usize, name: &str, r: &H2Run) {
    println!(
        "{:<6}{:<20}{:>11.0}{:>10.3}{:>10.3}{:>12}",
        round,
        name,
        r.rps,
        r.p50_ms,
        r.p99_ms,
        r.cpu_us.map_or("-".to_owned(), |c| format!("{c:.1}"))
    );
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn quantile_ms(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted_us.len() as f64 * q).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1] as f64 / 1000.0
}

/// h2load's per-request log: start (µs since the epoch), status, µs to the end of the
/// response, tab-separated.
fn read_log(path: &PathBuf) -> Result<Vec<(u64, u64)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut cols = line.split('\t');
            let start = cols.next()?.parse().ok()?;
            let _status = cols.next()?;
            let took = cols.next()?.parse().ok()?;
            Some((start, took))
        })
        .collect())
}

/// What h2load's closing report says.
#[derive(Debug, PartialEq)]
struct H2Summary {
    rps: f64,
    succeeded: u64,
    failed: u64,
    non_2xx: u64,
}

impl H2Summary {
    /// Reads `finished in 5.00s, 41000.00 req/s, 5.00MB/s`, `requests: N total, N started,
    /// N done, N succeeded, N failed, N errored, N timeout`, `status codes: N 2xx, N 3xx, N
    /// 4xx, N 5xx`.
    fn parse(out: &str) -> Option<Self> {
        let line = |prefix: &str| out.lines().find_map(|l| l.trim().strip_prefix(prefix));
        let rps = line("finished in ")?
            .split(", ")
            .find_map(|part| part.strip_suffix(" req/s"))?
            .parse()
            .ok()?;
        let counted = |text: &str, what: &str| -> Option<u64> {
            text.split(", ")
                .find_map(|part| part.trim().strip_suffix(what))
                .and_then(|n| n.trim().parse().ok())
        };
        let requests = line("requests: ")?;
        let codes = line("status codes: ")?;
        Some(Self {
            rps,
            succeeded: counted(requests, " succeeded")?,
            failed: counted(requests, " failed")? + counted(requests, " errored")?,
            non_2xx: counted(codes, " 3xx")? + counted(codes, " 4xx")? + counted(codes, " 5xx")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_h2loads_report() {
        let out = "starting benchmark...\n\
            finished in 5.00s, 41234.20 req/s, 5.21MB/s\n\
            requests: 206171 total, 206235 started, 206171 done, 206171 succeeded, 0 failed, 0 errored, 0 timeout\n\
            status codes: 206171 2xx, 0 3xx, 0 4xx, 0 5xx\n\
            traffic: 26.06MB (27324510) total, 2.17MB (2273551) headers (space savings 95.21%), 21.26MB (22291400) data\n";
        assert_eq!(
            H2Summary::parse(out),
            Some(H2Summary {
                rps: 41234.20,
                succeeded: 206171,
                failed: 0,
                non_2xx: 0,
            })
        );
        assert_eq!(H2Summary::parse("finished in 5.00s\n"), None);
    }

    const METRICS: &str = "# TYPE token_service_requests_total counter\n\
        token_service_requests_total{transport=\"grpc\",route=\"/a.B/C\",status=\"OK\"} 7\n\
        token_service_requests_total{transport=\"grpc\",route=\"/a.B/C\",status=\"UNAVAILABLE\"} 2\n\
        token_service_requests_total{transport=\"grpc\",route=\"/a.B/CD\",status=\"OK\"} 5\n\
        token_service_requests_total{transport=\"http\",route=\"/api/v4/users/me\",status=\"200\"} 3\n\
        token_service_request_duration_seconds_count{transport=\"grpc\",route=\"/a.B/C\",status=\"OK\"} 7\n";

    fn statuses(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
    }

    #[test]
    fn answers_are_read_for_the_route_named_exactly() {
        assert_eq!(
            parse_answers(METRICS, "/a.B/C"),
            statuses(&[("OK", 7), ("UNAVAILABLE", 2)])
        );
        assert_eq!(
            parse_answers(METRICS, "/api/v4/users/me"),
            statuses(&[("200", 3)])
        );
        assert!(parse_answers(METRICS, "/a.B").is_empty());
    }

    #[test]
    fn a_run_passes_only_if_every_answer_it_added_succeeded() {
        let before = statuses(&[("OK", 10), ("UNAVAILABLE", 2)]);
        // 100 more successes, the earlier failures unchanged: h2load's 95 are covered.
        let after = statuses(&[("OK", 110), ("UNAVAILABLE", 2)]);
        assert_eq!(check_answers("t", &before, &after, 95, 8), Ok(()));
        // One new failure, whatever else happened.
        let after = statuses(&[("OK", 110), ("UNAVAILABLE", 3)]);
        let err = check_answers("t", &before, &after, 95, 8).unwrap_err();
        assert!(err.contains("1 with status UNAVAILABLE"), "{err}");
        // A status first seen in this run.
        let after = statuses(&[("OK", 110), ("UNAVAILABLE", 2), ("500", 4)]);
        let err = check_answers("t", &before, &after, 95, 8).unwrap_err();
        assert!(err.contains("4 with status 500"), "{err}");
        // Fewer successes counted by the server than by h2load.
        let after = statuses(&[("OK", 50), ("UNAVAILABLE", 2)]);
        let err = check_answers("t", &before, &after, 95, 8).unwrap_err();
        assert!(err.contains("40 successful"), "{err}");
        // Calls cut off when h2load stopped: no more than it had in flight.
        let after = statuses(&[("OK", 110), ("UNAVAILABLE", 2), ("CANCELLED", 8)]);
        assert_eq!(check_answers("t", &before, &after, 95, 8), Ok(()));
        let after = statuses(&[("OK", 110), ("UNAVAILABLE", 2), ("CANCELLED", 9)]);
        let err = check_answers("t", &before, &after, 95, 8).unwrap_err();
        assert!(err.contains("9 with status CANCELLED"), "{err}");
        // HTTP successes.
        let after = statuses(&[("200", 95)]);
        assert_eq!(check_answers("t", &BTreeMap::new(), &after, 95, 8), Ok(()));
    }

    #[test]
    fn a_grpc_frame_is_flag_length_message() {
        let frame = grpc_frame("abc");
        assert_eq!(frame[0], 0);
        let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
        assert_eq!(len, frame.len() - 5);
        let decoded = pb::IntrospectTokenRequest::decode(&frame[5..]).unwrap();
        assert_eq!(decoded.token, "abc");
    }

    #[test]
    fn quantiles_take_the_rank() {
        let v: Vec<u64> = (1..=100).map(|n| n * 1000).collect();
        assert_eq!(quantile_ms(&v, 0.5), 50.0);
        assert_eq!(quantile_ms(&v, 0.99), 99.0);
        assert!(quantile_ms(&[], 0.5).is_nan());
    }
}
