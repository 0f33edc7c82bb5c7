//! TLS on both listeners and client certificates (mTLS), with certificates generated here:
//! a CA, a server certificate for localhost and 127.0.0.1, a client certificate from the
//! CA and one from another CA. gRPC is called with tonic's TLS client, the REST shim with
//! raw HTTP/1.1 over tokio-rustls, and bad TLS settings are refused by the binary.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_token-service");
const SERVICE: &str = "token_service.v1.TokenService";

/// A certificate and its key, as PEM.
pub(crate) struct Pem {
    cert: String,
    key: String,
}

/// Generated certificates, also written to a directory as PEM files.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
    pub(crate) ca: String,
    server: Pem,
    /// Subject `CN=internal-caller`, from the CA.
    pub(crate) client: Pem,
    /// Subject `CN=unlisted-caller`, from the CA too.
    pub(crate) other_client: Pem,
    stranger: Pem,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(names: &[&str], issuer: &CertifiedIssuer<'static, KeyPair>) -> Pem {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

impl Pki {
    pub(crate) fn generate() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ours = ca("token-service test CA");
        let theirs = ca("some other CA");
        let pki = Self {
            ca: ours.pem(),
            server: leaf(&["localhost", "127.0.0.1"], &ours),
            client: leaf(&["internal-caller"], &ours),
            other_client: leaf(&["unlisted-caller"], &ours),
            stranger: leaf(&["stranger"], &theirs),
            dir,
        };
        for (name, text) in [
            ("ca.pem", &pki.ca),
            ("server.pem", &pki.server.cert),
            ("server.key", &pki.server.key),
            ("client.pem", &pki.client.cert),
            ("client.key", &pki.client.key),
        ] {
            std::fs::write(pki.path(name), text).unwrap();
            if name.ends_with(".key") {
                // As an operator keeps a private key (a readable one stops the start).
                use std::os::unix::fs::PermissionsExt as _;
                let private = std::fs::Permissions::from_mode(0o600);
                std::fs::set_permissions(pki.path(name), private).unwrap();
            }
        }
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Server settings: TLS with the server certificate, and client certificates from the
    /// CA required when `mutual`.
    pub(crate) fn configure(&self, config: &mut token_service::config::Config, mutual: bool) {
        config.tls.cert_file = Some(self.path("server.pem"));
        config.tls.key_file = Some(self.path("server.key"));
        if mutual {
            config.tls.client_ca_file = Some(self.path("ca.pem"));
        }
    }
}

/// A gRPC channel over TLS trusting the test CA, presenting `identity` if given; the
/// server is addressed by IP and its certificate checked for the name "localhost".
pub(crate) async fn tls_channel(
    addr: SocketAddr,
    ca: &str,
    identity: Option<&Pem>,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(pem) = identity {
        tls = tls.identity(Identity::from_pem(&pem.cert, &pem.key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| format!("{e:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Connects and asks the health service about the token service: Ok(status) or the error.
async fn grpc_health(channel: Result<Channel, String>) -> Result<i32, String> {
    let mut health = HealthClient::new(channel?);
    health
        .check(HealthCheckRequest {
            service: SERVICE.to_owned(),
        })
        .await
        .map(|r| r.into_inner().status)
        .map_err(|e| format!("{e:?}"))
}

/// A rustls client configuration (ring) trusting `ca`, presenting `identity` if given.
fn rustls_client(ca: &str, identity: Option<&Pem>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let chain = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(config)
}

async fn https_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config)
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
}

/// Why the server ends a TLS connection made with `config`: the error a client sees
/// when it only listens after the handshake (so no write of its own can fail first with
/// a broken pipe and hide the server's alert). Panics if the server keeps it open.
async fn tls_refusal(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> String {
    let mut stream = match https_connect(addr, config).await {
        Ok(stream) => stream,
        Err(e) => return e.to_string(),
    };
    let mut buf = [0; 64];
    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(n)) => panic!("the server kept the connection ({n} bytes read)"),
        Err(_) => panic!("the server kept the connection open"),
    }
}

/// `GET path` over HTTPS (HTTP/1.1, `Connection: close`): (status, body) or the error.
async fn https_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    token: &str,
) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = https_connect(addr, config).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&raw).into_owned())
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    parse_response(&raw)
}

fn parse_response(raw: &str) -> Result<(u16, String), String> {
    let status = raw
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP/1.1 response: {raw:?}"))?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[tokio::test]
async fn grpc_health_reflection_and_calls_work_over_tls_and_plaintext_is_refused() {
    let pki = Pki::generate();
    let srv = TestServer::start_with(|c| pki.configure(c, false)).await;
    let alice = srv.token_user("alice").await;
    let addr = srv.config.grpc_addr;

    let channel = tls_channel(addr, &pki.ca, None).await.expect("TLS connect");
    assert_eq!(
        grpc_health(Ok(channel.clone())).await,
        Ok(ServingStatus::Serving as i32)
    );
    let client = Client::new(channel.clone());
    let me = client.as_(&alice).me().await.expect("GetMe over TLS");
    assert_eq!(me.id, alice.id);

    {
        use tokio_stream::StreamExt;
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut reflection = ServerReflectionClient::new(channel);
        let mut stream = reflection
            .server_reflection_info(tokio_stream::iter(vec![ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            }]))
            .await
            .expect("reflection over TLS")
            .into_inner();
        let listed = stream.next().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = listed.message_response else {
            panic!("unexpected {listed:?}");
        };
        assert!(list.service.iter().any(|s| s.name == SERVICE), "{list:?}");
    }

    let plaintext = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"));
    let refused = grpc_health(plaintext).await;
    assert!(
        refused.is_err(),
        "plaintext gRPC on a TLS port: {refused:?}"
    );

    let other_ca = ca("untrusted CA").pem();
    let untrusted = grpc_health(tls_channel(addr, &other_ca, None).await).await;
    assert!(
        untrusted
            .as_ref()
            .is_err_and(|e| e.contains("UnknownIssuer")),
        "a client that does not trust the server's CA must not connect: {untrusted:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_rest_shim_answers_over_https_and_not_over_plain_http() {
    let pki = Pki::generate();
    let srv = TestServer::start_with(|c| pki.configure(c, false)).await;
    let alice = srv.basic_user("alice").await;
    let addr = srv.config.http_addr;

    let (status, body) = https_get(
        addr,
        rustls_client(&pki.ca, None),
        "/api/v4/users/me",
        &alice.token,
    )
    .await
    .expect("HTTPS GET");
    assert_eq!(status, 200, "{body}");
    let me: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(me["id"], alice.id.as_str());

    let (status, _) = https_get(
        addr,
        rustls_client(&pki.ca, None),
        "/api/v4/users/me",
        "nope",
    )
    .await
    .expect("HTTPS GET");
    assert_eq!(status, 401, "authentication still applies over TLS");

    let plain = crate::common::http_client()
        .get(format!("http://{addr}/api/v4/users/me"))
        .bearer_auth(&alice.token)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP on the HTTPS port must not be answered: {plain:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_a_certificate_from_it_get_in() {
    let pki = Pki::generate();
    let srv = TestServer::start_with(|c| pki.configure(c, true)).await;
    let alice = srv.basic_user("alice").await;
    let (grpc, http) = (srv.config.grpc_addr, srv.config.http_addr);

    // gRPC
    assert_eq!(
        grpc_health(tls_channel(grpc, &pki.ca, Some(&pki.client)).await).await,
        Ok(ServingStatus::Serving as i32)
    );
    let anonymous = grpc_health(tls_channel(grpc, &pki.ca, None).await).await;
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    let stranger = grpc_health(tls_channel(grpc, &pki.ca, Some(&pki.stranger)).await).await;
    assert!(
        stranger.is_err(),
        "certificate from another CA: {stranger:?}"
    );
    // The reasons, as the server's TLS alerts say them.
    let refusal = tls_refusal(grpc, rustls_client(&pki.ca, None)).await;
    assert!(refusal.contains("CertificateRequired"), "{refusal}");
    let refusal = tls_refusal(grpc, rustls_client(&pki.ca, Some(&pki.stranger))).await;
    assert!(refusal.contains("UnknownCA"), "{refusal}");

    // REST
    let get = |identity: Option<&Pem>| {
        https_get(
            http,
            rustls_client(&pki.ca, identity),
            "/api/v4/users/me",
            &alice.token,
        )
    };
    let (status, body) = get(Some(&pki.client))
        .await
        .expect("HTTPS with a good certificate");
    assert_eq!(status, 200, "{body}");
    let anonymous = get(None).await;
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    let stranger = get(Some(&pki.stranger)).await;
    assert!(
        stranger.is_err(),
        "certificate from another CA: {stranger:?}"
    );
    let refusal = tls_refusal(http, rustls_client(&pki.ca, None)).await;
    assert!(refusal.contains("CertificateRequired"), "{refusal}");
    let refusal = tls_refusal(http, rustls_client(&pki.ca, Some(&pki.stranger))).await;
    assert!(refusal.contains("UnknownCA"), "{refusal}");
    srv.stop().await;
}

#[tokio::test]
async fn https_shutdown_finishes_the_request_in_flight_and_closes_idle_connections() {
    let pki = Pki::generate();
    let srv = TestServer::start_with(|c| pki.configure(c, false)).await;
    let alice = srv.token_user("alice").await;
    let addr = srv.config.http_addr;
    let config = rustls_client(&pki.ca, None);

    let mut idle = https_connect(addr, config.clone()).await.unwrap();
    let mut busy = https_connect(addr, config.clone()).await.unwrap();
    // Both connections have been served once (keep-alive), so the server has accepted them.
    for stream in [&mut idle, &mut busy] {
        stream
            .write_all(
                format!(
                    "GET /api/v4/users/me HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
                    alice.token
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut buf = vec![0; 8192];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }

    // Half a request on `busy`, then shutdown, then the rest of it.
    let body = r#"{"description":"made during shutdown"}"#;
    let head = format!(
        "POST /api/v4/users/{}/tokens HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        alice.id,
        alice.token,
        body.len()
    );
    busy.write_all(head.as_bytes()).await.unwrap();
    busy.write_all(&body.as_bytes()[..5]).await.unwrap();
    busy.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    srv.trigger_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    busy.write_all(&body.as_bytes()[5..]).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), busy.read_to_end(&mut raw))
        .await
        .expect("the in-flight request is answered and the connection closed")
        .unwrap();
    let (status, answer) = parse_response(&String::from_utf8_lossy(&raw)).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("made during shutdown"), "{answer}");

    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), idle.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "an idle keep-alive connection is closed at shutdown"
    );
    let started = Instant::now();
    srv.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no connection held shutdown up to the grace period"
    );
    assert!(
        https_connect(addr, config).await.is_err(),
        "nothing accepts after shutdown"
    );
}

/// Environment variables naming files.
type Env<'a> = Vec<(&'a str, &'a Path)>;

/// Runs `token-service serve` with TLS settings from the environment: (exit code, stderr)
/// for a start that fails.
fn serve_with_env(data_dir: &Path, env: &[(&str, &Path)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(data_dir)
    .env_remove("RUST_LOG")
    .env("TOKEN_SERVICE_LOG__FORMAT", "text")
    .env("TOKEN_SERVICE_SERVER_KEY", TEST_SERVER_KEY)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    for (name, value) in env {
        cmd.env(name, value);
    }
    let mut child = cmd.spawn().expect("spawn token-service serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve kept running with env {env:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn bad_tls_settings_refuse_to_start_naming_the_setting() {
    let pki = Pki::generate();
    let data = tempfile::tempdir().unwrap();
    let missing = pki.path("missing.pem");
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let (cert, key, ca_pem) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );
    let client_key = pki.path("client.key");
    let readable_key = pki.path("readable.key");
    std::fs::copy(&key, &readable_key).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&readable_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    const CERT: &str = "TOKEN_SERVICE_TLS__CERT_FILE";
    const KEY: &str = "TOKEN_SERVICE_TLS__KEY_FILE";
    const CA: &str = "TOKEN_SERVICE_TLS__CLIENT_CA_FILE";
    let cases: Vec<(Env<'_>, &[&str])> = vec![
        (vec![(CERT, &cert)], &["tls.key_file", "required"]),
        (vec![(KEY, &key)], &["tls.cert_file", "required"]),
        (
            vec![(CA, &ca_pem)],
            &["tls.client_ca_file", "tls.cert_file"],
        ),
        (
            vec![(CERT, &missing), (KEY, &key)],
            &["tls.cert_file", "missing.pem", "cannot read"],
        ),
        (
            vec![(CERT, &garbage), (KEY, &key)],
            &["tls.cert_file", "no PEM certificate"],
        ),
        (
            vec![(CERT, &cert), (KEY, &cert)],
            &["tls.key_file", "no PEM private key"],
        ),
        (
            vec![(CERT, &cert), (KEY, &readable_key)],
            &[
                "tls.key_file",
                "readable.key",
                "mode 0644",
                "allow_readable_key_files",
            ],
        ),
        (
            vec![(CERT, &cert), (KEY, &client_key)],
            &["tls.key_file", "does not match the certificate"],
        ),
        (
            vec![(CERT, &cert), (KEY, &key), (CA, &garbage)],
            &["tls.client_ca_file", "no PEM certificate"],
        ),
        (
            vec![(CERT, &cert), (KEY, &key), (CA, &missing)],
            &["tls.client_ca_file", "cannot read"],
        ),
    ];
    for (env, expected) in cases {
        let (code, stderr) = serve_with_env(data.path(), &env);
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        assert!(
            stderr.contains("invalid configuration"),
            "{env:?}: {stderr}"
        );
        for part in expected {
            assert!(stderr.contains(part), "{env:?}: {part:?} not in {stderr}");
        }
    }
}

#[tokio::test]
async fn the_binary_serves_mutual_tls_from_env_settings_and_logs_it() {
    let pki = Pki::generate();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("RUST_LOG")
        .env("TOKEN_SERVICE_LOG__FORMAT", "text")
        .env("TOKEN_SERVICE_SERVER_KEY", TEST_SERVER_KEY)
        .env("TOKEN_SERVICE_TLS__CERT_FILE", pki.path("server.pem"))
        .env("TOKEN_SERVICE_TLS__KEY_FILE", pki.path("server.key"))
        .env("TOKEN_SERVICE_TLS__CLIENT_CA_FILE", pki.path("ca.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn token-service serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let line = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| {
                let _ = child.kill();
                panic!("serve did not log where it listens: {e}")
            });
        if line.contains("grpc_addr=") {
            break line;
        }
    };
    let addr: SocketAddr = line
        .split("grpc_addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap();
    let answer = grpc_health(tls_channel(addr, &pki.ca, Some(&pki.client)).await).await;
    let refused = grpc_health(tls_channel(addr, &pki.ca, None).await).await;
    let refusal = tls_refusal(addr, rustls_client(&pki.ca, None)).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("tls=mutual"), "{line}");
    assert_eq!(answer, Ok(ServingStatus::Serving as i32));
    assert!(refused.is_err(), "{refused:?}");
    assert!(refusal.contains("CertificateRequired"), "{refusal}");
}
