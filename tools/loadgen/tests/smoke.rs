//! The `loadgen` binary still works: a very short `bench` of every scenario against its
//! in-process token-service (SQLite) and baselines, and the footprint commands against the
//! real `token-service` binary. Figures are not judged here (the machine is shared), only
//! that they are printed, positive and error-free.
//!
//! `token-service` belongs to another package of the workspace, so Cargo does not build it
//! for this test; [`server_bin`] asks Cargo for it (a no-op when it is fresh), into the same
//! target directory and profile as `loadgen`, where `loadgen` looks for it by default.

use std::{
    path::PathBuf,
    process::{Command, Output},
    sync::OnceLock,
};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// Prefixes of the variables Cargo sets for a test of this package, not for a shell.
const PACKAGE_VARS: &[&str] = &[
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
];

/// The `token-service` binary beside `loadgen`, built once per test run.
fn server_bin() -> &'static str {
    static BUILT: OnceLock<String> = OnceLock::new();
    BUILT.get_or_init(|| {
        // <target dir>/<profile dir>/loadgen; the `dev` profile's directory is `debug`.
        let bin_dir = PathBuf::from(LOADGEN).parent().unwrap().to_path_buf();
        let target_dir = bin_dir.parent().unwrap();
        let profile = match bin_dir.file_name().unwrap().to_str().unwrap() {
            "debug" => "dev",
            other => other,
        };
        let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let mut cargo = Command::new(env!("CARGO"));
        // Cargo gives this test the variables it gives a package's build (CARGO_PKG_NAME,
        // CARGO_MANIFEST_DIR, ...); build scripts that watch them (ring's) would see them
        // change and rebuild their crate, and the next `cargo` from a shell would again.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if PACKAGE_VARS.iter().any(|prefix| name.starts_with(prefix)) {
                cargo.env_remove(&*name);
            }
        }
        let status = cargo
            .current_dir(workspace)
            .args(["build", "-p", "token-service", "--bin", "token-service"])
            .args(["--profile", profile])
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .expect("run cargo build for token-service");
        assert!(status.success(), "cargo build --bin token-service failed");
        let server = bin_dir.join("token-service");
        assert!(server.exists(), "{} was not built", server.display());
        server.to_str().unwrap().to_owned()
    })
}

fn run(args: &[&str]) -> String {
    run_with_stderr(args).0
}

/// Runs loadgen with `args`, asserts it succeeded, and returns its stdout and stderr.
fn run_with_stderr(args: &[&str]) -> (String, String) {
    let out: Output = Command::new(LOADGEN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "loadgen {args:?} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// The `key=value` fields of the `summary` line that starts with `prefix`.
fn summary<'a>(stdout: &'a str, prefix: &str) -> Vec<(&'a str, &'a str)> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{stdout}"));
    line.split_whitespace()
        .filter_map(|field| field.split_once('='))
        .collect()
}

fn number(fields: &[(&str, &str)], key: &str) -> f64 {
    fields
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {key} in {fields:?}"))
}

#[test]
fn loadgen_bench_prints_rates_latencies_and_ratios_for_every_scenario() {
    // Long enough that a write (create-token) finishes inside the window on a loaded machine:
    // with 200 ms, a run in which no request both started and finished in it was seen.
    let (stdout, stderr) = run_with_stderr(&[
        "bench",
        "--duration",
        "500ms",
        "--warmup",
        "100ms",
        "--rounds",
        "1",
        "--tokens",
        "3",
        "--concurrency",
        "4",
        "--connections",
        "2",
    ]);
    for (scenario, baseline) in [
        ("introspect-cached", "grpc-echo"),
        ("introspect-uncached", "grpc-echo"),
        ("rest-get-me", "axum-json"),
        ("create-token", "grpc-echo"),
        ("gateway-verify", "axum-json"),
        ("gateway-introspect", "axum-json"),
        ("ext-authz", "grpc-echo"),
        ("db-sqlx", "sqlx-select"),
        ("write-create", "sqlx-insert"),
        ("write-create-users", "sqlx-insert"),
        ("write-revoke", "sqlx-insert"),
    ] {
        let fields = summary(&stdout, &format!("summary scenario={scenario} "));
        assert!(fields.contains(&("baseline", baseline)), "{fields:?}");
        assert_eq!(number(&fields, "errors"), 0.0, "{stdout}");
        for key in ["rps", "baseline_rps", "rps_ratio", "p99_ratio"] {
            assert!(number(&fields, key) > 0.0, "{key} in {fields:?}");
        }
        assert!(
            stdout.contains(&format!("median ratio {scenario}/{baseline}: req/s ")),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("| {scenario} | ")), "{stdout}");
    }
    assert!(stdout.contains("p99.9 ms"), "{stdout}");
    // The in-process target's log lines go to a file the report names, not into the report.
    let log_line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("in-process target's log: "))
        .unwrap_or_else(|| panic!("the report names the target's log file: {stdout}"));
    let log = std::fs::read_to_string(log_line).expect("the target's log file exists");
    assert!(
        log.contains("token_service"),
        "the target logged its start-up into {log_line}: {log}"
    );
    let _ = std::fs::remove_file(log_line);
    assert!(
        !stderr.contains(" INFO ") && !stdout.contains(" INFO "),
        "no INFO log line in the report:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("write-revoke: ") && stdout.contains(" tokens bulk-inserted in "),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("target: req/s >= 0.5 x sqlx-insert: ")
            .count(),
        3,
        "write-create, write-create-users and write-revoke state their goal: {stdout}"
    );
    assert!(
        stdout.contains(
            "db-sqlx: credentials checked per second / driver point selects per second = "
        ),
        "the database path is compared per credential: {stdout}"
    );
    assert!(
        stdout.contains(
            "db-sqlx-held: credentials checked per second / driver point selects per second = "
        ),
        "and against sqlx on held connections, as the check reads: {stdout}"
    );
    assert!(
        stdout.contains("== db-tokio-postgres: skipped (PostgreSQL only"),
        "tokio-postgres needs PostgreSQL; the default database is SQLite: {stdout}"
    );
    assert!(
        stdout.contains("ext-authz req/s ratio "),
        "the gateway is compared with IntrospectToken: {stdout}"
    );
    assert!(
        stdout.contains("target: req/s >= 0.80 x grpc-echo: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("target: req/s >= 0.70 x axum-json: "),
        "{stdout}"
    );
    for gateway in ["gateway-verify", "gateway-introspect"] {
        assert!(
            stdout.contains(&format!("target: {gateway} req/s ratio ")),
            "{stdout}"
        );
    }
}

#[test]
#[ignore = "needs nghttp2's h2load (apt-get install nghttp2-client); .ci/run installs it"]
fn loadgen_h2load_checks_the_targets_answers_and_prints_both_ratios() {
    let stdout = run(&[
        "h2load",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--rounds",
        "1",
    ]);
    for (scenario, baseline) in [
        ("introspect-cached", "grpc-echo"),
        ("rest-get-me", "axum-json"),
    ] {
        let fields = summary(&stdout, &format!("summary scenario={scenario} "));
        assert!(
            fields.contains(&("baseline", baseline)),
            "{fields:?}\n{stdout}"
        );
        for key in ["rps_ratio", "p99_ratio", "cpu_ratio"] {
            let value = number(&fields, key);
            assert!(value.is_finite() && value > 0.0, "{key}={value}\n{stdout}");
        }
        // Each run's server CPU per request is printed (the measured phase only).
        let cpu_column = stdout
            .lines()
            .find(|l| l.starts_with("1 ") && l.contains(scenario))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok());
        assert!(cpu_column.is_some_and(|c| c > 0.0), "{stdout}");
    }
}

#[test]
fn loadgen_measures_the_idle_memory_and_start_up_time_of_the_real_server() {
    let stdout = run(&["idle-rss", "--idle", "100ms", "--server-bin", server_bin()]);
    let fields = summary(&stdout, "summary idle_rss_mib=");
    let rss = number(&fields, "idle_rss_mib");
    assert!(
        rss > 1.0 && rss <= number(&fields, "peak_rss_mib"),
        "{stdout}"
    );
    assert!(stdout.contains("target: idle RSS <= 30 MiB: "), "{stdout}");

    let stdout = run(&["startup", "--starts", "1", "--server-bin", server_bin()]);
    let fields = summary(&stdout, "summary startup_fresh_ms=");
    assert!(number(&fields, "startup_fresh_ms") > 0.0, "{stdout}");
    assert!(number(&fields, "startup_existing_ms") > 0.0, "{stdout}");
    assert!(stdout.contains("fresh SQLite file"), "{stdout}");
}

#[test]
fn loadgen_webhook_lag_prints_percentiles_of_delivered_messages() {
    let stdout = run(&["webhook-lag", "--events", "5", "--interval", "5ms"]);
    let fields = summary(&stdout, "summary scenario=webhook-lag ");
    assert_eq!(number(&fields, "events"), 5.0, "{stdout}");
    for key in ["p50_ms", "p99_ms", "max_ms"] {
        let value = number(&fields, key);
        assert!(
            (0.0..30_000.0).contains(&value),
            "{key}={value} in {fields:?}"
        );
    }
    assert!(number(&fields, "p99_ms") >= number(&fields, "p50_ms"));
}

#[test]
fn loadgen_cache_bench_times_every_design_and_cache_memory_measures_an_entry() {
    let stdout = run(&[
        "cache-bench",
        "--entries",
        "2000",
        "--threads",
        "1,2",
        "--duration",
        "50ms",
        "--revocations",
        "10",
        "--full-inserts",
        "1000",
    ]);
    for design in ["sharded", "single-lock", "papaya", "moka"] {
        for threads in ["1", "2"] {
            let prefix = format!(
                "summary scenario=cache-bench design={design} entries=2000 threads={threads} "
            );
            let fields = summary(&stdout, &prefix);
            let ns = number(&fields, "ns_per_lookup");
            assert!(ns > 0.0 && ns.is_finite(), "{fields:?}");
            assert!(number(&fields, "insert_full_ns") > 0.0, "{fields:?}");
        }
    }
    let fields = summary(
        &stdout,
        "summary scenario=cache-bench design=sharded entries=2000 threads=1 ",
    );
    assert!(number(&fields, "revoke_us") > 0.0, "{fields:?}");
    assert_eq!(number(&fields, "lookup_keys"), 2000.0, "{fields:?}");

    // Every lookup of one digest (the hot token): per-thread copies on the sharded cache.
    let stdout = run(&[
        "cache-bench",
        "--design",
        "sharded",
        "--entries",
        "2000",
        "--threads",
        "2",
        "--duration",
        "50ms",
        "--revocations",
        "10",
        "--full-inserts",
        "100",
        "--lookup-keys",
        "1",
    ]);
    let fields = summary(
        &stdout,
        "summary scenario=cache-bench design=sharded entries=2000 threads=2 ",
    );
    assert_eq!(number(&fields, "lookup_keys"), 1.0, "{fields:?}");
    assert!(number(&fields, "ns_per_lookup") > 0.0, "{fields:?}");

    let stdout = run(&["cache-memory", "--entries", "20000"]);
    let fields = summary(
        &stdout,
        "summary scenario=cache-memory design=sharded entries=20000 ",
    );
    // A principal is a user, a session and a token: hundreds of bytes, not tens or megabytes.
    let total = number(&fields, "total_bytes");
    assert!((100.0..100_000.0).contains(&total), "{fields:?}");
}

#[test]
fn loadgen_scale_prints_every_figure_for_every_size() {
    let stdout = run(&[
        "scale",
        "--sizes",
        "1000,3000",
        "--duration",
        "200ms",
        "--warmup",
        "100ms",
        "--tokens",
        "3",
        "--concurrency",
        "4",
        "--calls",
        "5",
        "--revocations",
        "3",
    ]);
    for size in ["1000", "3000"] {
        let fields = summary(&stdout, &format!("summary scenario=scale tokens={size} "));
        assert_eq!(number(&fields, "errors"), 0.0, "{stdout}");
        for key in [
            "cached_rps",
            "cached_p99_ms",
            "uncached_rps",
            "uncached_p99_ms",
            "list_first_p50_ms",
            "list_first_p99_ms",
            "list_last_p50_ms",
            "list_last_p99_ms",
            "search_first_p99_ms",
            "search_last_p99_ms",
            "revoke_call_p50_ms",
            "revocation_lag_p50_ms",
            "revocation_lag_p99_ms",
            "cache_bytes",
        ] {
            assert!(number(&fields, key) > 0.0, "{key} in {fields:?}");
        }
        assert!(stdout.contains(&format!("\n| {size} | ")), "{stdout}");
    }
    // The table was topped up, not refilled: the second size adds only the difference.
    assert!(
        stdout.contains("rows (") && stdout.contains("to 3000 rows"),
        "{stdout}"
    );
}
