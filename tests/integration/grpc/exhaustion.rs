//! Exhaustion and slow clients: out of file descriptors the listeners back off instead of
//! spinning (and readiness and /metrics say so); connections that send nothing, or their
//! request head byte by byte, are cut; a listener holds at most `max_per_listener`
//! connections; a body that does not arrive is the client's fault (408), not the
//! database's; an oversized gRPC message is RESOURCE_EXHAUSTED; a gRPC connection without
//! a call in flight for `grpc_idle_timeout` is closed (a stream in flight keeps it open).

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use token_service::config::Span;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::common::*;

/// CPU time (user + system) the process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/pid/stat");
    // Fields after the command name (which may hold spaces): state is field 3; utime and
    // stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second: u64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100);
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Opens `count` TCP connections to `addr` that send nothing.
fn idle_connections(addr: &str, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|i| {
            TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}"))
        })
        .collect()
}

/// Reads from `stream` until the server closes it; panics if it is still open after
/// `limit`.
fn assert_closed_within(mut stream: TcpStream, limit: Duration, what: &str) {
    stream.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("{what}: still open after {limit:?}")
            }
            Err(_) => return,
        }
        assert!(
            started.elapsed() < limit,
            "{what}: still open after {limit:?}"
        );
    }
}

async fn grpc_serves(addr: &str) -> bool {
    let Ok(channel) = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
    else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok()
}

#[tokio::test]
async fn out_of_file_descriptors_the_server_backs_off_reports_it_and_recovers() {
    let srv = TestServer::start().await;
    // Enough descriptors to start and serve, far fewer than the connections opened below.
    let replica = ReplicaProcess::start_limited(
        &srv,
        &[
            // Keep the held connections held for the whole test.
            ("TOKEN_SERVICE_CONNECTIONS__GRPC_PREFACE_TIMEOUT", "60s"),
            ("TOKEN_SERVICE_CONNECTIONS__HTTP_HEADER_READ_TIMEOUT", "60s"),
            ("TOKEN_SERVICE_POOL__MAX_CONNECTIONS", "2"),
        ],
        Some(128),
    );
    // One kept-alive HTTP connection opened now, to ask for readiness and metrics while no
    // new connection can be accepted.
    install_crypto_provider();
    let probe = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let readyz = |probe: reqwest::Client| {
        let url = format!("http://{}/readyz", replica.http_addr);
        async move {
            let response = probe.get(url).send().await.expect("readyz");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(probe.clone()).await.0 != 200 {
        assert!(Instant::now() < deadline, "the replica never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Past the descriptor limit: the server accepts what it can, the rest wait in the
    // backlog and every accept fails with EMFILE.
    let held = idle_connections(&replica.grpc_addr, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cpu_before = cpu_time(replica.pid());
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu = cpu_time(replica.pid()) - cpu_before;
    let share = cpu.as_secs_f64() / wall.elapsed().as_secs_f64();
    eprintln!(
        "out of descriptors: {:.1} % of a core ({cpu:?} in {:?})",
        share * 100.0,
        wall.elapsed()
    );
    assert!(
        share < 0.3,
        "out of descriptors, the server used {:.0} % of a core ({cpu:?} in {:?}): it spins",
        share * 100.0,
        wall.elapsed()
    );

    // Readiness says why, over the connection opened before.
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let (status, body) = readyz(probe.clone()).await;
        if status == 503 && body["checks"]["listeners"] != "ok" {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never reported the failing listener: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = body["checks"]["listeners"].as_str().unwrap();
    assert!(
        reason.contains("grpc listener") && reason.contains("Too many open files"),
        "{reason}"
    );
    let metrics = probe
        .get(format!("http://{}/metrics", replica.http_addr))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap();
    let fd_errors: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "token_service_accept_errors_total{listener=\"grpc\",kind=\"fd_limit\"} ",
            )
        })
        .expect("the accept error series")
        .parse()
        .unwrap();
    assert!(fd_errors > 0, "no fd_limit accept error counted");
    // Backing off: a handful of tries per second, not millions.
    assert!(
        fd_errors < 200,
        "{fd_errors} failed accepts in a few seconds"
    );

    // Once the connections close, new clients are served and readiness recovers.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !grpc_serves(&replica.grpc_addr).await {
        assert!(
            Instant::now() < deadline,
            "no new gRPC client was served after the connections closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = readyz(probe.clone()).await;
        if status == 200 {
            assert_eq!(body["checks"]["listeners"], "ok");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness did not recover: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    srv.stop().await;
}

#[tokio::test]
async fn each_burst_of_failed_accepts_is_logged_once_when_it_begins_and_once_when_it_ends() {
    const BEGINS: &str = "cannot accept connections; pausing between tries";
    const ENDS: &str = "accepting connections again";
    let srv = TestServer::start().await;
    let replica = ReplicaProcess::start_limited(
        &srv,
        &[
            ("TOKEN_SERVICE_CONNECTIONS__GRPC_PREFACE_TIMEOUT", "60s"),
            ("TOKEN_SERVICE_POOL__MAX_CONNECTIONS", "2"),
        ],
        Some(128),
    );
    let open = "token_service_open_connections{listener=\"grpc\"}";
    let mut logged_failures = 0;
    for burst in 1..=2 {
        // Past the descriptor limit: every accept fails with EMFILE, retried with pauses
        // (5 ms doubling: about eight failures in the 1.5 s below).
        let held = idle_connections(&replica.grpc_addr, 200);
        grpc_lines_reach(&replica, BEGINS, burst, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        // The held connections close; those waiting in the backlog are accepted and close
        // too (accepting fails again now and then meanwhile: the same burst).
        drop(held);
        let deadline = Instant::now() + Duration::from_secs(15);
        while replica.metric(open).await != 0 {
            assert!(
                Instant::now() < deadline,
                "the held connections never closed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let begun = grpc_lines(&replica, BEGINS);
        assert_eq!(
            begun.len(),
            burst,
            "burst {burst}: one line per burst, not per failure: {begun:#?}"
        );
        let line = begun.last().unwrap();
        assert!(
            line.contains("WARN") && line.contains("grpc") && line.contains("Too many open files"),
            "{line}"
        );
        assert_eq!(grpc_lines(&replica, ENDS).len(), burst - 1);
        // The first accept after 3 s without a failure ends the burst: one line, with the
        // count of failures it was logged instead of.
        tokio::time::sleep(Duration::from_millis(3_200)).await;
        assert!(grpc_serves(&replica.grpc_addr).await);
        grpc_lines_reach(&replica, ENDS, burst, Duration::from_secs(5)).await;
        let ended = grpc_lines(&replica, ENDS);
        assert_eq!(ended.len(), burst, "{ended:#?}");
        let failures: u64 = log_field(ended.last().unwrap(), "failures")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no failure count: {}", ended.last().unwrap()));
        assert!(
            failures >= 3,
            "burst {burst}: {failures} failed accepts (a burst of several was expected)"
        );
        logged_failures += failures;
    }
    // Each failure was counted, though only the bursts were logged.
    let counted = replica
        .metric("token_service_accept_errors_total{listener=\"grpc\",kind=\"fd_limit\"}")
        .await;
    assert_eq!(counted, logged_failures);
    assert_eq!(grpc_lines(&replica, BEGINS).len(), 2);
    srv.stop().await;
}

/// The replica's log lines with `needle` about the gRPC listener. The metrics read over HTTP
/// while descriptors run out can meet the limit on the HTTP listener too: its own burst,
/// logged with `listener="http"`.
fn grpc_lines(replica: &ReplicaProcess, needle: &str) -> Vec<String> {
    replica
        .log_lines_with(needle)
        .into_iter()
        .filter(|line| line.contains("listener=\"grpc\""))
        .collect()
}

/// Waits until `count` of [`grpc_lines`] contain `needle`; panics after `limit`.
async fn grpc_lines_reach(replica: &ReplicaProcess, needle: &str, count: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while grpc_lines(replica, needle).len() < count {
        assert!(
            Instant::now() < deadline,
            "fewer than {count} gRPC listener lines with {needle:?} after {limit:?}: {:?}",
            replica.log_lines_with(needle)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn silent_and_trickling_connections_are_cut() {
    let srv = TestServer::start_with(|c| {
        c.connections.grpc_preface_timeout = Span(300);
        c.connections.http_header_read_timeout = Span(300);
    })
    .await;
    let grpc = srv.config.grpc_addr.to_string();
    let http = srv.config.http_addr.to_string();
    // A gRPC connection that never sends the HTTP/2 preface.
    let silent_grpc = idle_connections(&grpc, 1).pop().unwrap();
    // An HTTP connection that never sends a byte.
    let silent_http = idle_connections(&http, 1).pop().unwrap();
    // An HTTP request head sent one header line every 100 ms, never finished.
    let mut trickle = idle_connections(&http, 1).pop().unwrap();
    trickle.write_all(b"GET /livez HTTP/1.1\r\n").unwrap();
    let writer = trickle.try_clone().unwrap();
    let trickling = std::thread::spawn(move || {
        let mut writer = writer;
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            if writer.write_all(b"X-Slow: a\r\n").is_err() {
                return true;
            }
        }
        false
    });
    let checks = std::thread::spawn(move || {
        assert_closed_within(
            silent_grpc,
            Duration::from_secs(5),
            "silent gRPC connection",
        );
        assert_closed_within(
            silent_http,
            Duration::from_secs(5),
            "silent HTTP connection",
        );
        assert_closed_within(trickle, Duration::from_secs(5), "trickling HTTP request");
    });
    tokio::task::spawn_blocking(move || checks.join().unwrap())
        .await
        .unwrap();
    let cut = tokio::task::spawn_blocking(move || trickling.join().unwrap())
        .await
        .unwrap();
    assert!(cut, "the trickling request's writes never failed");
    // Clients that talk are served as before.
    assert!(grpc_serves(&grpc).await);
    let livez = http_get(format!("http://{http}/livez")).await.unwrap();
    assert_eq!(livez.status(), 200);
    srv.stop().await;
}

/// Reads one HTTP/1.1 answer with a `Content-Length` body from `stream`.
fn read_one_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or_else(|e| {
            panic!(
                "the answer: {e}; so far {:?}",
                String::from_utf8_lossy(&answer)
            )
        });
        assert!(n > 0, "closed before answering: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .expect("a content length");
            if answer.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn a_kept_alive_http_connection_waits_the_header_read_timeout_after_each_answer() {
    const TIMEOUT: Duration = Duration::from_millis(600);
    let srv = TestServer::start_with(|c| {
        c.connections.http_header_read_timeout = Span(600);
        c.request_timeout_ms = 5_000;
    })
    .await;
    let alice = srv.token_user("alice").await;
    let http = srv.config.http_addr.to_string();
    let token = alice.token.clone();
    // Blocking socket calls: off the runtime that serves.
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&http).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let get_me = format!(
            "GET /api/v4/users/me HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {}\r\n\r\n",
            token
        );
        // Three requests, each sent most of a timeout after the previous answer: the wait
        // starts again at each answer, so the connection serves all three.
        for _ in 0..3 {
            stream.write_all(get_me.as_bytes()).unwrap();
            let answer = read_one_answer(&mut stream);
            assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
            std::thread::sleep(TIMEOUT * 3 / 4);
        }
        // A request whose body arrives slowly is in flight: the head's timeout does not cut
        // it (the request's own deadline governs its body).
        stream
            .write_all(
                format!(
                    "POST /api/v4/users/me/tokens HTTP/1.1\r\nHost: {http}\r\n\
                     Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
                     Content-Length: 27\r\n\r\n{{\"description\"",
                    token
                )
                .as_bytes(),
            )
            .unwrap();
        std::thread::sleep(TIMEOUT * 2);
        stream.write_all(b":\"slow body\"}").unwrap();
        let answer = read_one_answer(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        // Then silence: closed a timeout after the answer, not sooner, and at most an eighth
        // of one later (plus scheduling slack).
        let answered = Instant::now();
        stream.set_read_timeout(Some(TIMEOUT * 5)).unwrap();
        let mut buf = [0u8; 64];
        let read = stream.read(&mut buf);
        let waited = answered.elapsed();
        assert!(
            matches!(read, Ok(0))
                || read.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "the idle connection was not closed"
        );
        assert!(
            waited >= TIMEOUT - Duration::from_millis(20),
            "closed after {waited:?}"
        );
        assert!(waited < TIMEOUT * 2, "closed only after {waited:?}");
    })
    .await
    .unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn a_listener_holds_at_most_max_per_listener_connections() {
    let srv = TestServer::start_with(|c| c.connections.max_per_listener = 2).await;
    let http = srv.config.http_addr.to_string();
    let mut held = idle_connections(&http, 2);
    // Give the server the time to accept both.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = || {
        reqwest::Client::builder()
            .timeout(Duration::from_millis(700))
            .build()
            .unwrap()
    };
    install_crypto_provider();
    let waiting = client().get(format!("http://{http}/livez")).send().await;
    assert!(
        waiting.is_err_and(|e| e.is_timeout()),
        "a third connection was served while two were held"
    );
    held.pop();
    let served = client()
        .get(format!("http://{http}/livez"))
        .send()
        .await
        .expect("served once a held connection closed");
    assert_eq!(served.status(), 200);
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reached = scrape_metric(
        &http,
        "token_service_connection_limit_reached_total{listener=\"http\"}",
    )
    .await
    .expect("the limit series");
    assert!(reached >= 1.0, "the limit was reached and not counted");
    srv.stop().await;
}

#[tokio::test]
async fn a_request_body_that_does_not_arrive_is_a_408_not_a_database_outage() {
    let srv = TestServer::start_with(|c| c.request_timeout_ms = 500).await;
    let alice = srv.token_user("alice").await;
    let http = srv.config.http_addr.to_string();
    let answer = send_partial_request(
        &http,
        format!(
            "POST /api/v4/users/me/tokens HTTP/1.1\r\nHost: {http}\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{\"descr",
            alice.token
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.contains("token_service.request.body_timeout"),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(!answer.contains("database"), "{answer}");
    // Nothing was created.
    let tokens = srv
        .as_(&alice)
        .list_tokens_for(&alice.id)
        .await
        .expect("list tokens");
    assert!(
        tokens.user_access_tokens.is_empty(),
        "the cut request created a token"
    );
    srv.stop().await;
}

/// GetUser for `user_id` presenting `token`.
fn get_user_request(
    token: &str,
    user_id: &str,
) -> tonic::Request<token_service::pb::GetUserRequest> {
    let mut request = tonic::Request::new(token_service::pb::GetUserRequest {
        user_id: user_id.to_owned(),
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// A client on a connection of its own, and a health watch open on that connection (a
/// dropped connection ends it).
async fn client_and_watch(
    srv: &TestServer,
) -> (
    token_service::pb::token_service_client::TokenServiceClient<tonic::transport::Channel>,
    tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
) {
    let channel = tonic::transport::Channel::from_shared(srv.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    watch.message().await.expect("first status").expect("open");
    let client = token_service::pb::token_service_client::TokenServiceClient::new(channel)
        .max_encoding_message_size(usize::MAX);
    (client, watch)
}

/// Checks that the connection under `watch` is still open, and that `client` still serves
/// `alice` on it.
async fn assert_connection_serves(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
    client: &mut token_service::pb::token_service_client::TokenServiceClient<
        tonic::transport::Channel,
    >,
    alice: &Actor,
) {
    let still_open = tokio::time::timeout(Duration::from_millis(500), watch.message()).await;
    assert!(
        still_open.is_err(),
        "the connection was dropped: {still_open:?}"
    );
    let me = client
        .get_user(get_user_request(&alice.token, "me"))
        .await
        .expect("GetUser me");
    assert_eq!(me.into_inner().user.unwrap().id, alice.id);
}

#[tokio::test]
async fn an_oversized_grpc_message_is_resource_exhausted_and_the_connection_still_serves() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let (mut client, mut watch) = client_and_watch(&srv).await;
    let err = client
        .get_user(get_user_request(&alice.token, &"x".repeat(2 << 20)))
        .await
        .expect_err("a 2 MiB message is over the 1 MiB limit");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert_connection_serves(&mut watch, &mut client, &alice).await;
    srv.stop().await;
}

/// GetUser for `me` presenting `token`, with `count` extra metadata entries of `size` bytes.
fn request_with_metadata(
    token: &str,
    count: usize,
    size: usize,
) -> tonic::Request<token_service::pb::GetUserRequest> {
    let mut request = get_user_request(token, "me");
    let value: tonic::metadata::MetadataValue<_> = "x".repeat(size).parse().unwrap();
    for i in 0..count {
        let name = format!("x-padding-{i}");
        let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes()).unwrap();
        request.metadata_mut().insert(key, value.clone());
    }
    request
}

#[tokio::test]
async fn oversized_metadata_is_refused_per_call_and_the_connection_still_serves() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let (mut client, mut watch) = client_and_watch(&srv).await;
    // Over the 16 KiB limit, in one value or in many: RESOURCE_EXHAUSTED, naming the limit.
    for (count, size) in [(1, 20 << 10), (1, 400 << 10), (200, 2 << 10)] {
        let err = client
            .get_user(request_with_metadata(&alice.token, count, size))
            .await
            .expect_err("over the metadata limit");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
        assert!(
            err.message().contains("metadata is too large") && err.message().contains("16384"),
            "{err:?}"
        );
        assert_connection_serves(&mut watch, &mut client, &alice).await;
    }
    // Over the HTTP/2 header list limit (1 MiB): HTTP/2 refuses the call itself (431, which
    // gRPC clients report as UNKNOWN); the connection still serves.
    for (count, size) in [(1, 1200 << 10), (1000, 1 << 10), (1, 1450 << 10)] {
        let err = client
            .get_user(request_with_metadata(&alice.token, count, size))
            .await
            .expect_err("over the header list limit");
        assert!(err.message().contains("431"), "{count} x {size}: {err:?}");
        assert_connection_serves(&mut watch, &mut client, &alice).await;
    }
    // The bound: a header block over 82 frames of 16 KiB (1,312 KiB on the wire; 1,500 KiB
    // of 'x' is 1,313 KiB Huffman-coded) makes h2 close the connection (GOAWAY
    // ENHANCE_YOUR_CALM), which no setting moves further without accepting more (README
    // "Connection limits").
    let err = client
        .get_user(request_with_metadata(&alice.token, 1, 1500 << 10))
        .await
        .expect_err("1500 KiB of metadata");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    let dropped = tokio::time::timeout(Duration::from_secs(2), watch.message()).await;
    assert!(
        matches!(dropped, Ok(Err(_) | Ok(None))),
        "the connection survived 1500 KiB of metadata: {dropped:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn watch_streams_are_capped_per_replica_and_a_closed_one_frees_its_place() {
    let srv = TestServer::start_with(|c| c.connections.max_watch_streams = 2).await;
    let admin = srv.admin("root").await;
    let first = srv
        .as_(&admin)
        .watch_revocations(None)
        .await
        .expect("first");
    let _second = srv
        .as_(&admin)
        .watch_events(Default::default())
        .await
        .expect("second");
    // A third stream is over the limit.
    assert_error(
        srv.as_(&admin).watch_revocations(None).await,
        tonic::Code::ResourceExhausted,
        "token_service.too_many_streams",
    );
    let http = srv.config.http_addr.to_string();
    assert_eq!(
        scrape_metric(&http, "token_service_watch_streams").await,
        Some(2.0)
    );
    // Closing a stream gives its place back (once the server notices).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match srv.as_(&admin).watch_revocations(None).await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
                assert!(
                    Instant::now() < deadline,
                    "the closed stream's place was never given back"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    srv.stop().await;
}

/// A request body that sends its first bytes and then nothing more.
struct Stalled(Option<bytes::Bytes>);

impl http_body::Body for Stalled {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match self.0.take() {
            Some(bytes) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes)))),
            None => std::task::Poll::Pending,
        }
    }
}

#[tokio::test]
async fn a_request_message_that_does_not_arrive_is_deadline_exceeded_not_unavailable() {
    use tower::ServiceExt as _;
    let srv = TestServer::start_with(|c| c.request_timeout_ms = 500).await;
    let alice = srv.basic_user("alice").await;
    let channel = tonic::transport::Channel::from_shared(srv.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    // A gRPC frame announcing a 100-byte message, of which 2 bytes arrive.
    let body = Stalled(Some(bytes::Bytes::from_static(&[0, 0, 0, 0, 100, 10, 3])));
    let request = http::Request::post(format!(
        "{}/token_service.v1.TokenService/GetUser",
        srv.endpoint()
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("authorization", format!("Bearer {}", alice.token))
    .body(tonic::body::Body::new(body))
    .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), channel.oneshot(request))
        .await
        .expect("an answer within 5 s")
        .expect("a response");
    let status =
        tonic::Status::from_header_map(response.headers()).expect("a trailers-only status");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(!status.message().contains("database"), "{status:?}");
    srv.stop().await;
}

#[tokio::test]
async fn a_call_past_the_deadline_its_client_set_is_answered_deadline_exceeded_by_the_server() {
    // No server deadline: only the client's (grpc-timeout) can end the call.
    let srv = TestServer::start_with(|c| c.request_timeout_ms = 0).await;
    let alice = srv.basic_user("alice").await;
    // A raw HTTP/2 client (tonic's channel would give up by itself at its deadline): the
    // call's headers and 7 bytes of a frame announcing a 100-byte message, then nothing.
    let tcp = tokio::net::TcpStream::connect(srv.config.grpc_addr)
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let stalled = |timeout: &str| {
        let client = client.clone();
        let request = http::Request::post(format!(
            "{}/token_service.v1.TokenService/GetUser",
            srv.endpoint()
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .header("authorization", format!("Bearer {}", alice.token))
        .body(())
        .unwrap();
        async move {
            let mut client = client.ready().await.expect("ready");
            let (answer, mut body) = client
                .send_request(request, false)
                .expect("send the headers");
            body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 100, 10, 3]), false)
                .expect("send part of the message");
            let answer = answer.await.expect("an answer");
            (answer, body)
        }
    };
    let started = Instant::now();
    let (answer, _body) = tokio::time::timeout(Duration::from_secs(5), stalled("300m"))
        .await
        .expect("the server answers once the client's deadline passes");
    let waited = started.elapsed();
    let status = tonic::Status::from_header_map(answer.headers()).expect("a trailers-only status");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("grpc-timeout"), "{status:?}");
    assert!(
        waited >= Duration::from_millis(300),
        "answered after {waited:?}, before the 300 ms deadline"
    );
    // A deadline that is not one (the unit missing, or over 8 digits) is ignored, as
    // tonic's and grpc-go's servers ignore it: the call waits for its message.
    for ignored in ["300", "123456789m", "3x"] {
        let answered = tokio::time::timeout(Duration::from_millis(600), stalled(ignored)).await;
        assert!(
            answered.is_err(),
            "{ignored:?} ended the call: {:?}",
            answered.map(|(answer, _)| answer.headers().clone())
        );
    }
    connection.abort();
    srv.stop().await;
}

#[tokio::test]
async fn a_call_whose_connection_breaks_mid_request_is_counted_cancelled_not_unknown() {
    let srv = TestServer::start().await;
    let route = "/token_service.v1.TokenService/GetUser";
    let series = |status: &str| {
        format!(
            "token_service_requests_total{{transport=\"grpc\",route=\"{route}\",status=\"{status}\"}}"
        )
    };
    // A raw HTTP/2 connection: the call's headers and 7 bytes of a frame announcing a
    // 100-byte message, then the socket closes (what a client that dies or stops its run
    // mid-call does; dropping a call on a live connection sends RST_STREAM CANCEL instead).
    let tcp = tokio::net::TcpStream::connect(srv.config.grpc_addr)
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::post(format!("{}{route}", srv.endpoint()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (_answer, mut body) = client
        .send_request(request, false)
        .expect("send the headers");
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 100, 10, 3]), false)
        .expect("send part of the message");
    // Let the part arrive and the call start decoding, then close the socket.
    tokio::time::sleep(Duration::from_millis(200)).await;
    connection.abort();
    let _ = connection.await;
    drop((client, body));
    let started = Instant::now();
    while scrape_metric(srv.config.http_addr, &series("CANCELLED")).await != Some(1.0) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no CANCELLED call counted within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        scrape_metric(srv.config.http_addr, &series("UNKNOWN")).await,
        None,
        "the broken call is not also an UNKNOWN error"
    );
    srv.stop().await;
}

/// A server whose gRPC connections are closed after 300 ms without a call (pinging them
/// every second).
async fn server_closing_idle_connections() -> TestServer {
    TestServer::start_with(|c| {
        c.connections.grpc_idle_timeout = Span(300);
        c.connections.http2_keepalive_interval = Span(1_000);
    })
    .await
}

/// A channel of its own that pings the server every 100 ms, calls or not: pings are no
/// calls, so they must not keep the connection open.
async fn pinging_client(srv: &TestServer) -> Client {
    let channel = tonic::transport::Channel::from_shared(srv.endpoint())
        .unwrap()
        .http2_keep_alive_interval(Duration::from_millis(100))
        .keep_alive_timeout(Duration::from_secs(2))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .expect("connect");
    token_service::pb::token_service_client::TokenServiceClient::new(channel)
}

/// Open gRPC connections, as `/metrics` reports them.
async fn open_grpc_connections(srv: &TestServer) -> f64 {
    scrape_metric(
        srv.config.http_addr,
        "token_service_open_connections{listener=\"grpc\"}",
    )
    .await
    .expect("the open connections series")
}

/// Waits until the server holds no gRPC connection.
async fn until_no_grpc_connection(srv: &TestServer, limit: Duration, what: &str) {
    let started = Instant::now();
    while open_grpc_connections(srv).await != 0.0 {
        assert!(
            started.elapsed() < limit,
            "{what}: still open after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_idle_grpc_connection_is_closed_and_its_channel_reconnects() {
    let srv = server_closing_idle_connections().await;
    let alice = srv.basic_user("alice").await;
    let client = pinging_client(&srv).await;
    client.as_(&alice).get_me().await.expect("GetMe");
    let called = Instant::now();
    // Pinged every 100 ms, and closed all the same, once 300 ms pass without a call.
    until_no_grpc_connection(&srv, Duration::from_secs(5), "idle connection").await;
    let idle_for = called.elapsed();
    assert!(
        idle_for >= Duration::from_millis(250),
        "closed {idle_for:?} after the last call, before grpc_idle_timeout"
    );
    let closed = srv
        .counter("token_service_idle_connections_closed_total{listener=\"grpc\"}")
        .await;
    assert!(closed >= 1, "the idle close was not counted");
    // The same channel connects again (no connection was left) and serves.
    let me = client
        .as_(&alice)
        .get_me()
        .await
        .expect("GetMe after the close");
    assert_eq!(me.user.unwrap().id, alice.id);
    srv.stop().await;
}

#[tokio::test]
async fn a_watch_stream_keeps_its_connection_open_past_the_idle_timeout() {
    let srv = server_closing_idle_connections().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let client = pinging_client(&srv).await;
    let mut stream = client
        .as_(&admin)
        .watch_revocations(None)
        .await
        .expect("WatchRevocations");
    // Four idle timeouts with no other call on the stream's connection.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(open_grpc_connections(&srv).await >= 1.0);
    let (token_id, _) = srv.as_(&alice).new_token("me").await;
    srv.as_(&alice).revoke_token(&token_id).await.unwrap();
    let event = next_revocation(&mut stream)
        .await
        .expect("the stream is still open and carries the revocation");
    assert_eq!(event.subject_id, token_id);
    // A call on the same connection, beside the stream.
    client
        .as_(&alice)
        .get_me()
        .await
        .expect("GetMe beside the stream");
    // Once the stream ends, its connection is idle and closed.
    drop(stream);
    until_no_grpc_connection(&srv, Duration::from_secs(5), "connection after its stream").await;
    srv.stop().await;
}
