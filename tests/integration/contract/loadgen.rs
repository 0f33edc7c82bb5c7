//! The `loadgen` binary still works: a very short `bench` of every scenario against its
//! in-process token-service (SQLite) and baselines, and the footprint commands against the
//! real `token-service` binary. Figures are not judged here (the machine is shared), only
//! that they are printed, positive and error-free.

use std::process::{Command, Output};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
const SERVER: &str = env!("CARGO_BIN_EXE_token-service");

fn run(args: &[&str]) -> String {
    let out: Output = Command::new(LOADGEN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "loadgen {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
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
    let stdout = run(&[
        "bench",
        "--duration",
        "200ms",
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
    assert!(
        stdout.contains("target: req/s >= 0.80 x grpc-echo: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("target: req/s >= 0.70 x axum-json: "),
        "{stdout}"
    );
}

#[test]
fn loadgen_measures_the_idle_memory_and_start_up_time_of_the_real_server() {
    let stdout = run(&["idle-rss", "--idle", "100ms", "--server-bin", SERVER]);
    let fields = summary(&stdout, "summary idle_rss_mib=");
    let rss = number(&fields, "idle_rss_mib");
    assert!(
        rss > 1.0 && rss <= number(&fields, "peak_rss_mib"),
        "{stdout}"
    );
    assert!(stdout.contains("target: idle RSS <= 30 MiB: "), "{stdout}");

    let stdout = run(&["startup", "--starts", "1", "--server-bin", SERVER]);
    let fields = summary(&stdout, "summary startup_fresh_ms=");
    assert!(number(&fields, "startup_fresh_ms") > 0.0, "{stdout}");
    assert!(number(&fields, "startup_existing_ms") > 0.0, "{stdout}");
    assert!(stdout.contains("fresh SQLite file"), "{stdout}");
}
