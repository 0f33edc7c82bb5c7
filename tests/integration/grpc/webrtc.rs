//! GetWebrtcToken: disabled by default, Mattermost's legacy response when enabled, per-user
//! TURN credentials, and proof with a real coturn that they are accepted, and refused when
//! tampered with or expired.

use std::{
    net::{TcpListener, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use token_service::{config::Secret, pb};

use crate::common::*;

/// WebRTC on, with `ttl` seconds as credential_ttl (`None`: left unconfigured).
fn webrtc_on(c: &mut token_service::config::Config, turn_port: u16, ttl: Option<u64>) {
    c.webrtc.enable = true;
    c.webrtc.gateway_url = "wss://gateway.example.com/janus".into();
    c.webrtc.stun_uri = format!("stun:127.0.0.1:{turn_port}");
    c.webrtc.turn_uri = format!("turn:127.0.0.1:{turn_port}");
    c.webrtc.turn_shared_secret = Secret::new("coturn-shared-secret");
    if let Some(ttl) = ttl {
        c.webrtc.credential_ttl = token_service::config::Ttl(ttl);
    }
}

async fn credentials(srv: &TestServer, who: &Actor) -> pb::GetWebrtcTokenResponse {
    srv.as_(who).get_webrtc_token().await.unwrap()
}

#[tokio::test]
async fn webrtc_is_disabled_by_default() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    assert_error(
        srv.as_(&alice).get_webrtc_token().await,
        tonic::Code::Unimplemented,
        "api.webrtc.disabled.app_error",
    );
    assert_unauthenticated(srv.anonymous().get_webrtc_token().await);
    srv.stop().await;
}

#[tokio::test]
async fn every_user_gets_their_own_turn_credentials_valid_for_a_day_by_default() {
    // credential_ttl is not configured: the default is one day.
    let srv = TestServer::start_with(|c| webrtc_on(c, 3478, None)).await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let bob = srv.basic_user("bob").await;
    let creds = credentials(&srv, &alice).await;
    assert_eq!(creds.gateway_url, "wss://gateway.example.com/janus");
    assert_eq!(creds.stun_uri, "stun:127.0.0.1:3478");
    assert_eq!(creds.turn_uri, "turn:127.0.0.1:3478");
    assert_eq!(creds.credential_ttl.unwrap().seconds, 86_400);
    let (expiry, user) = creds.turn_username.split_once(':').unwrap();
    assert_eq!(user, alice.id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (now + 86_390..=now + 86_410).contains(&expiry),
        "{expiry} vs {now}"
    );
    assert_eq!(
        STANDARD.decode(&creds.turn_password).unwrap().len(),
        20,
        "HMAC-SHA1"
    );
    // The gateway token is base64 of the caller's session id, as in Mattermost.
    let session_id = srv
        .as_(&admin)
        .introspect(&alice.token)
        .await
        .unwrap()
        .session_id;
    assert_eq!(
        STANDARD.decode(&creds.token).unwrap(),
        session_id.as_bytes()
    );
    let bobs = credentials(&srv, &bob).await;
    assert_ne!(bobs.turn_username, creds.turn_username);
    assert_ne!(bobs.turn_password, creds.turn_password);
    srv.stop().await;
}

/// Whether `program` can be started (it is installed and on the PATH).
fn installed(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A port in 20000..32000, under the kernel's ephemeral range (32768 and up by default), that is
/// free for both UDP and TCP on 127.0.0.1 right now.
fn free_port_below_ephemeral_range() -> u16 {
    loop {
        let mut random = [0u8; 2];
        getrandom::fill(&mut random).unwrap();
        let port = 20_000 + u16::from_be_bytes(random) % 12_000;
        let udp = UdpSocket::bind(("127.0.0.1", port));
        let tcp = TcpListener::bind(("127.0.0.1", port));
        if udp.is_ok() && tcp.is_ok() {
            return port;
        }
    }
}

/// `s` with its first character replaced by a different one.
fn with_other_first_char(s: &str, a: char, b: char) -> String {
    let mut chars = s.chars();
    let first = chars.next().expect("non-empty");
    let other = if first == a { b } else { a };
    format!("{other}{}", chars.as_str())
}

/// A coturn `turnserver` on 127.0.0.1 with the TURN REST API secret.
struct Coturn {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Coturn {
    /// Starts turnserver and waits until it answers STUN on its port. `None` when coturn
    /// (turnserver and turnutils_uclient) is not installed.
    ///
    /// The listening port is chosen below the kernel's ephemeral range (so no outgoing
    /// connection of a test running alongside can hold it), checked free for both UDP and TCP
    /// (coturn binds both), and when coturn still cannot bind it, because something took it in
    /// between, another port is tried.
    fn start(secret: &str) -> Option<Self> {
        if !installed("turnserver", "--version") || !installed("turnutils_uclient", "-h") {
            return None;
        }
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port_below_ephemeral_range();
            match Self::start_on(secret, port) {
                Ok(coturn) => return Some(coturn),
                Err(why) => failures.push(why),
            }
        }
        panic!("turnserver did not start:\n{}", failures.join("\n----\n"));
    }

    fn start_on(secret: &str, port: u16) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("turnserver.log");
        // Relay ports: a 200-port block in 10000..20000, also below the ephemeral range.
        let relay_low = 10_000 + (port % 50) * 200;
        let child = Command::new("turnserver")
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
                "--realm=token-service.test",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--allow-loopback-peers",
                &format!("--min-port={relay_low}"),
                &format!("--max-port={}", relay_low + 199),
                "--simple-log",
            ])
            .arg(format!("--log-file={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnserver");
        let mut coturn = Self {
            child,
            port,
            log,
            _dir: dir,
        };
        coturn.wait_until_ready(Duration::from_secs(15))?;
        Ok(coturn)
    }

    /// Sends STUN Binding requests to the listening port until one is answered; an error with
    /// coturn's log if it exits, reports that it cannot bind its port, or stays silent past
    /// `timeout`.
    fn wait_until_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut request = [0u8; 20];
        request[..2].copy_from_slice(&0x0001u16.to_be_bytes()); // Binding request, no body
        request[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes()); // magic cookie
        getrandom::fill(&mut request[8..]).unwrap(); // transaction id
        let deadline = Instant::now() + timeout;
        let mut answer = [0u8; 1024];
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!(
                    "turnserver exited with {status}:\n{}",
                    self.log_text()
                ));
            }
            let log = self.log_text();
            if log.contains("Cannot bind") {
                return Err(format!(
                    "turnserver could not bind port {}:\n{log}",
                    self.port
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "turnserver did not answer STUN on port {} within {timeout:?}:\n{log}",
                    self.port
                ));
            }
            // Until the port is bound the send may fail (ICMP port unreachable): retry.
            let _ = socket.send_to(&request, ("127.0.0.1", self.port));
            if let Ok((n, _)) = socket.recv_from(&mut answer)
                && n >= 20
                && answer[..2] == 0x0101u16.to_be_bytes() // Binding success response
                && answer[8..20] == request[8..20]
            {
                return Ok(());
            }
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Allocates a relay with `turnutils_uclient`; true when the server accepted.
    fn accepts(&self, username: &str, password: &str) -> bool {
        Command::new("timeout")
            .args([
                "20",
                "turnutils_uclient",
                "-u",
                username,
                "-w",
                password,
                "-p",
                &self.port.to_string(),
                "-n",
                "1",
                "-m",
                "1",
                "-l",
                "32",
                "-y",
                "127.0.0.1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run turnutils_uclient")
            .success()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Needs coturn, which a plain `cargo test` cannot count on: ignored there (so the summary
/// says "ignored" rather than passing it without coturn), run by `.ci/run`, which installs
/// coturn, with `--ignored`; run without coturn it fails saying what to install.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs coturn (apt-get install coturn); .ci/run runs it: cargo test --test integration -- --ignored coturn_"]
async fn coturn_accepts_issued_credentials_and_refuses_tampered_or_expired_ones() {
    let Some(coturn) = Coturn::start("coturn-shared-secret") else {
        panic!(
            "coturn (turnserver, turnutils_uclient) is missing: apt-get install coturn \
             (or run .ci/run, which installs it and runs this test)"
        );
    };
    let port = coturn.port;
    let srv = TestServer::start_with(move |c| webrtc_on(c, port, Some(1))).await;
    let alice = srv.basic_user("alice").await;

    // coturn checks the expiry against the real time: issue from the wall clock.
    srv.catch_up_with_the_wall_clock();
    let creds = credentials(&srv, &alice).await;
    assert!(
        tokio::task::block_in_place(|| coturn.accepts(&creds.turn_username, &creds.turn_password)),
        "coturn must accept the issued credentials"
    );
    let (expiry, user) = creds.turn_username.split_once(':').unwrap();
    // Another user's name: the id with a different first character.
    assert_ne!(with_other_first_char("zz", 'z', 'y'), "zz");
    let tampered_user = format!("{expiry}:{}", with_other_first_char(user, 'z', 'y'));
    let tampered_password = with_other_first_char(&creds.turn_password, 'A', 'B');
    assert_ne!(tampered_user, creds.turn_username);
    assert_ne!(tampered_password, creds.turn_password);
    let longer = format!("{}:{user}", expiry.parse::<u64>().unwrap() + 3600);
    tokio::task::block_in_place(|| {
        assert!(
            !coturn.accepts(&tampered_user, &creds.turn_password),
            "another user name"
        );
        assert!(
            !coturn.accepts(&creds.turn_username, &tampered_password),
            "another password"
        );
        assert!(
            !coturn.accepts(&longer, &creds.turn_password),
            "a later expiry"
        );
    });

    // The credentials live one second: after that coturn refuses them (it reads the real
    // time, so this test waits for real).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(
        !tokio::task::block_in_place(|| coturn.accepts(&creds.turn_username, &creds.turn_password)),
        "expired credentials must be refused"
    );
    srv.stop().await;
}
