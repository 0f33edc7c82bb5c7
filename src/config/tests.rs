//! Loading as a whole: defaults, then the file, the environment and the flags, and what
//! is refused.

use std::path::PathBuf;

use super::*;

/// An environment of `(name, value)` pairs for [`Config::load_from`].
pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults_run_on_embedded_sqlite() {
    let (c, _) = Config::load_from(None, &Overrides::default(), env(&[])).unwrap();
    assert_eq!(c.grpc_addr.to_string(), "127.0.0.1:50051");
    assert_eq!(c.http_addr.to_string(), "127.0.0.1:8065");
    assert!(
        c.effective_database_url()
            .expose()
            .starts_with("sqlite://data/")
    );
    assert!(c.enable_user_access_tokens);
}

#[test]
fn developer_mode_is_off_by_default_and_set_by_file_or_env() {
    let (c, _) = Config::load_from(None, &Overrides::default(), env(&[])).unwrap();
    assert!(!c.enable_developer);
    let (c, report) = Config::load_from(
        None,
        &Overrides::default(),
        env(&[("TOKEN_SERVICE_ENABLE_DEVELOPER", "true")]),
    )
    .unwrap();
    assert!(c.enable_developer);
    assert!(report.unknown_env_vars.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "enable_developer = true\n").unwrap();
    let (c, _) = Config::load_from(Some(&file), &Overrides::default(), env(&[])).unwrap();
    assert!(c.enable_developer);
    let err = Config::load_from(
        None,
        &Overrides::default(),
        env(&[("TOKEN_SERVICE_ENABLE_DEVELOPER", "yes please")]),
    )
    .unwrap_err();
    assert!(err.contains("enable_developer"), "{err}");
}

#[test]
fn file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "grpc_addr = \"127.0.0.1:1000\"\nhttp_addr = \"127.0.0.1:1001\"\n[pool]\nmax_connections = 3\n[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let e = env(&[
        ("TOKEN_SERVICE_HTTP_ADDR", "127.0.0.1:2001"),
        ("TOKEN_SERVICE_POOL__MAX_CONNECTIONS", "7"),
        ("TOKEN_SERVICE_ENABLE_USER_ACCESS_TOKENS", "false"),
        (
            "TOKEN_SERVICE_ROLES__SYSTEM_USER",
            "manage_bots,create_user_access_token",
        ),
        ("TOKEN_SERVICE_GRCP_ADDR", "typo"),
        ("OTHER", "x"),
    ]);
    let overrides = Overrides {
        grpc_addr: Some("127.0.0.1:3000".parse().unwrap()),
        ..Overrides::default()
    };
    let (c, report) = Config::load_from(Some(&file), &overrides, e).unwrap();
    assert_eq!(c.grpc_addr.to_string(), "127.0.0.1:3000");
    assert_eq!(c.http_addr.to_string(), "127.0.0.1:2001");
    assert_eq!(c.pool.max_connections, 7);
    assert_eq!(c.log.format, LogFormat::Json);
    assert!(!c.enable_user_access_tokens);
    assert_eq!(c.roles["system_user"].len(), 2);
    assert_eq!(report.unknown_env_vars, vec!["TOKEN_SERVICE_GRCP_ADDR"]);
}

#[test]
fn unknown_file_keys_and_bad_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "grpc_adr = \"x\"\n").unwrap();
    let err = Config::load_from(Some(&file), &Overrides::default(), env(&[])).unwrap_err();
    assert!(err.contains("grpc_adr"), "{err}");
    let err = Config::load_from(
        None,
        &Overrides::default(),
        env(&[("TOKEN_SERVICE_ROLES__X", "fly")]),
    )
    .unwrap_err();
    assert!(err.contains("fly"), "{err}");
}

#[test]
fn tls_settings_load_from_file_and_env_and_must_come_in_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[tls]\ncert_file = \"/etc/ts/server.pem\"\nkey_file = \"/etc/ts/server.key\"\n",
    )
    .unwrap();
    let e = env(&[("TOKEN_SERVICE_TLS__CLIENT_CA_FILE", "/etc/ts/ca.pem")]);
    let (c, report) = Config::load_from(Some(&file), &Overrides::default(), e).unwrap();
    assert!(report.unknown_env_vars.is_empty(), "{report:?}");
    assert!(c.tls.enabled());
    assert_eq!(c.tls.cert_file, Some(PathBuf::from("/etc/ts/server.pem")));
    assert_eq!(c.tls.client_ca_file, Some(PathBuf::from("/etc/ts/ca.pem")));
    let (plain, _) = Config::load_from(None, &Overrides::default(), env(&[])).unwrap();
    assert!(!plain.tls.enabled());

    for (pairs, named) in [
        (
            &[("TOKEN_SERVICE_TLS__CERT_FILE", "a.pem")][..],
            "tls.key_file",
        ),
        (
            &[("TOKEN_SERVICE_TLS__KEY_FILE", "a.key")][..],
            "tls.cert_file",
        ),
        (
            &[("TOKEN_SERVICE_TLS__CLIENT_CA_FILE", "ca.pem")][..],
            "tls.client_ca_file",
        ),
        (
            &[
                ("TOKEN_SERVICE_TLS__CERT_FILE", ""),
                ("TOKEN_SERVICE_TLS__KEY_FILE", "a.key"),
            ][..],
            "tls.cert_file",
        ),
    ] {
        let err = Config::load_from(None, &Overrides::default(), env(pairs)).unwrap_err();
        assert!(err.starts_with(named), "{pairs:?}: {err}");
    }
    std::fs::write(&file, "[tls]\ncert = \"x\"\n").unwrap();
    let err = Config::load_from(Some(&file), &Overrides::default(), env(&[])).unwrap_err();
    assert!(err.contains("cert"), "{err}");
}

#[test]
fn load_errors_name_the_variable_or_the_file_and_key_never_our_internals() {
    let err = Config::load_from(
        None,
        &Overrides::default(),
        env(&[("TOKEN_SERVICE_POOL__MAX_CONNECTIONS", "many")]),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "TOKEN_SERVICE_POOL__MAX_CONNECTIONS (pool.max_connections): expected a whole number \
         (0 or more), found string \"many\""
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[cache]\nenable = \"maybe\"\n").unwrap();
    let err = Config::load_from(Some(&file), &Overrides::default(), env(&[])).unwrap_err();
    assert_eq!(
        err,
        format!(
            "cache.enable in {}: expected true or false, found string \"maybe\"",
            file.display()
        )
    );
    let overrides = Overrides {
        grpc_addr: Some("localhost".into()),
        ..Overrides::default()
    };
    let err = Config::load_from(None, &overrides, env(&[])).unwrap_err();
    assert!(err.starts_with("--grpc-addr: "), "{err}");
}

#[test]
fn listen_addresses_may_be_host_names_resolved_to_ipv4_first() {
    let e = env(&[("TOKEN_SERVICE_HTTP_ADDR", "localhost:8065")]);
    let overrides = Overrides {
        grpc_addr: Some("localhost:50051".into()),
        ..Overrides::default()
    };
    let (c, _) = Config::load_from(None, &overrides, e).unwrap();
    assert_eq!(c.grpc_addr.to_string(), "127.0.0.1:50051");
    assert_eq!(c.http_addr.to_string(), "127.0.0.1:8065");
    assert_eq!(
        resolve_listen_addr("[::1]:1").unwrap().to_string(),
        "[::1]:1"
    );
    assert!(resolve_listen_addr("localhost:99999").is_err());
}

#[test]
fn an_invalid_log_filter_is_refused_naming_the_key() {
    let err = Config::load_from(
        None,
        &Overrides::default(),
        env(&[("TOKEN_SERVICE_LOG__FILTER", "info,token_service=loud")]),
    )
    .unwrap_err();
    assert!(err.starts_with("log.filter: "), "{err}");
}

#[test]
fn the_local_socket_is_in_data_dir_by_default_and_set_or_turned_off_by_env() {
    let flags = Overrides {
        data_dir: Some(PathBuf::from("/srv/ts")),
        ..Overrides::default()
    };
    let (c, _) = Config::load_from(None, &flags, env(&[])).unwrap();
    assert_eq!(
        c.local_socket_path(),
        Some(PathBuf::from("/srv/ts/token-service.sock"))
    );
    let (c, _) = Config::load_from(
        None,
        &flags,
        env(&[("TOKEN_SERVICE_LOCAL_SOCKET", "/run/ts/admin.sock")]),
    )
    .unwrap();
    assert_eq!(
        c.local_socket_path(),
        Some(PathBuf::from("/run/ts/admin.sock"))
    );
    let (c, _) = Config::load_from(
        None,
        &flags,
        env(&[("TOKEN_SERVICE_ENABLE_LOCAL_SOCKET", "false")]),
    )
    .unwrap();
    assert_eq!(c.local_socket_path(), None);
}

#[test]
fn trusted_proxies_and_the_last_use_flush_interval_load_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n[last_use]\nflush_interval = \"30s\"\n",
    )
    .unwrap();
    let (c, _) = Config::load_from(Some(&file), &Overrides::default(), env(&[])).unwrap();
    assert_eq!(c.trusted_proxies, vec!["10.0.0.0/8", "::1"]);
    assert_eq!(c.last_use.flush_interval.millis(), 30_000);
    let (e, report) = Config::load_from(
        None,
        &Overrides::default(),
        env(&[
            ("TOKEN_SERVICE_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.0.1"),
            ("TOKEN_SERVICE_LAST_USE__FLUSH_INTERVAL", "250ms"),
        ]),
    )
    .unwrap();
    assert!(report.unknown_env_vars.is_empty(), "{report:?}");
    assert_eq!(e.trusted_proxies, vec!["10.0.0.0/8", "192.168.0.1"]);
    assert_eq!(e.last_use.flush_interval.millis(), 250);
    let (d, _) = Config::load_from(None, &Overrides::default(), env(&[])).unwrap();
    assert!(d.trusted_proxies.is_empty());
    assert_eq!(d.last_use.flush_interval.millis(), 60_000, "1m by default");
    for (content, named) in [
        ("trusted_proxies = [\"10.0.0.0/33\"]\n", "trusted_proxies"),
        (
            "trusted_proxies = [\"proxy.internal\"]\n",
            "trusted_proxies",
        ),
        (
            "[last_use]\nflush_interval = \"5ms\"\n",
            "last_use.flush_interval",
        ),
        (
            "[last_use]\nflush_interval = \"2d\"\n",
            "last_use.flush_interval",
        ),
    ] {
        std::fs::write(&file, content).unwrap();
        let err = Config::load_from(Some(&file), &Overrides::default(), env(&[])).unwrap_err();
        assert!(err.contains(named), "{content}: {err}");
    }
}

#[test]
fn the_guess_throttle_and_fail_static_are_set_from_file_and_env_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[guess_throttle]\nburst = 7\ncool_down = \"5m\"\n[cache]\nstale_if_unavailable = \"1m\"\n",
    )
    .unwrap();
    let (c, _) = Config::load_from(
        Some(&file),
        &Overrides::default(),
        env(&[("TOKEN_SERVICE_GUESS_THROTTLE__FAILURES_PER_MINUTE", "3")]),
    )
    .unwrap();
    assert_eq!(c.guess_throttle.burst, 7);
    assert_eq!(c.guess_throttle.failures_per_minute, 3);
    assert_eq!(c.guess_throttle.cool_down.millis(), 300_000);
    assert_eq!(c.cache.stale_if_unavailable.millis(), 60_000);
    for (name, value, key) in [
        (
            "TOKEN_SERVICE_GUESS_THROTTLE__BURST",
            "0",
            "guess_throttle.burst",
        ),
        (
            "TOKEN_SERVICE_GUESS_THROTTLE__FAILURES_PER_MINUTE",
            "0",
            "guess_throttle.failures_per_minute",
        ),
        (
            "TOKEN_SERVICE_GUESS_THROTTLE__COOL_DOWN",
            "0",
            "guess_throttle.cool_down",
        ),
        (
            "TOKEN_SERVICE_CACHE__STALE_IF_UNAVAILABLE",
            "2d",
            "cache.stale_if_unavailable",
        ),
    ] {
        let err =
            Config::load_from(None, &Overrides::default(), env(&[(name, value)])).unwrap_err();
        assert!(err.contains(key), "{name}={value}: {err}");
    }
}

#[test]
fn the_grpc_idle_timeout_defaults_to_5m_may_be_off_and_is_checked() {
    let (c, _) = Config::load_from(None, &Overrides::default(), env(&[])).unwrap();
    assert_eq!(c.connections.grpc_idle_timeout.millis(), 300_000);
    for (value, millis) in [("0", 0), ("250ms", 250), ("1h", 3_600_000)] {
        let (c, _) = Config::load_from(
            None,
            &Overrides::default(),
            env(&[("TOKEN_SERVICE_CONNECTIONS__GRPC_IDLE_TIMEOUT", value)]),
        )
        .unwrap();
        assert_eq!(c.connections.grpc_idle_timeout.millis(), millis, "{value}");
    }
    for value in ["50ms", "8d"] {
        let err = Config::load_from(
            None,
            &Overrides::default(),
            env(&[("TOKEN_SERVICE_CONNECTIONS__GRPC_IDLE_TIMEOUT", value)]),
        )
        .unwrap_err();
        assert!(
            err.contains("connections.grpc_idle_timeout")
                && err.contains("0 (off) or between 100ms and 7d"),
            "{value}: {err}"
        );
    }
}

#[test]
fn connections_are_kept_alive_by_tcp_probes_by_default_not_http2_pings() {
    let (c, _) = Config::load_from(None, &Overrides::default(), env(&[])).unwrap();
    assert_eq!(c.connections.tcp_keepalive_interval.millis(), 60_000);
    assert_eq!(c.connections.tcp_keepalive_timeout.millis(), 20_000);
    assert_eq!(c.connections.http2_keepalive_interval.millis(), 0);
    let (c, _) = Config::load_from(
        None,
        &Overrides::default(),
        env(&[
            ("TOKEN_SERVICE_CONNECTIONS__TCP_KEEPALIVE_INTERVAL", "0"),
            ("TOKEN_SERVICE_CONNECTIONS__TCP_KEEPALIVE_TIMEOUT", "5s"),
            ("TOKEN_SERVICE_CONNECTIONS__HTTP2_KEEPALIVE_INTERVAL", "30s"),
        ]),
    )
    .unwrap();
    assert_eq!(c.connections.tcp_keepalive_interval.millis(), 0);
    assert_eq!(c.connections.tcp_keepalive_timeout.millis(), 5_000);
    assert_eq!(c.connections.http2_keepalive_interval.millis(), 30_000);
    for (name, value, rule) in [
        (
            "TCP_KEEPALIVE_INTERVAL",
            "500ms",
            "connections.tcp_keepalive_interval: must be 0 (off) or between 1s and 1d",
        ),
        (
            "TCP_KEEPALIVE_TIMEOUT",
            "0",
            "connections.tcp_keepalive_timeout: must be between 1s and 10m",
        ),
        (
            "TCP_KEEPALIVE_TIMEOUT",
            "11m",
            "connections.tcp_keepalive_timeout: must be between 1s and 10m",
        ),
    ] {
        let var = format!("TOKEN_SERVICE_CONNECTIONS__{name}");
        let err =
            Config::load_from(None, &Overrides::default(), env(&[(&var, value)])).unwrap_err();
        assert!(err.contains(rule), "{var}={value}: {err}");
    }
}

#[test]
fn the_check_connections_are_read_from_env_and_must_be_at_least_one() {
    let e = env(&[("TOKEN_SERVICE_POOL__CHECK_CONNECTIONS", "3")]);
    let (c, _) = Config::load_from(None, &Overrides::default(), e).unwrap();
    assert_eq!(c.pool.check_connections, 3);
    let (default, _) = Config::load_from(None, &Overrides::default(), env(&[])).unwrap();
    assert_eq!(default.pool.check_connections, 8);
    let mut none = default.clone();
    none.pool.check_connections = 0;
    let err = none.validate().unwrap_err();
    assert!(err.contains("pool.check_connections"), "{err}");
}

#[test]
fn the_check_batches_are_read_from_env_and_must_be_at_least_one() {
    let e = env(&[("TOKEN_SERVICE_POOL__CHECK_BATCHES", "5")]);
    let (c, _) = Config::load_from(None, &Overrides::default(), e).unwrap();
    assert_eq!(c.pool.check_batches, Some(5));
    assert_eq!(c.pool.check_batches_on(true), 5);
    let (default, _) = Config::load_from(None, &Overrides::default(), env(&[])).unwrap();
    assert_eq!(default.pool.check_batches, None);
    assert_eq!(default.pool.check_batches_on(true), 1, "SQLite");
    assert_eq!(default.pool.check_batches_on(false), 2, "a database server");
    let mut none = default.clone();
    none.pool.check_batches = Some(0);
    let err = none.validate().unwrap_err();
    assert!(
        err.contains("pool.check_batches: must be at least 1"),
        "{err}"
    );
}
