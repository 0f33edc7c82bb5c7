//! GetWebrtcToken: disabled by default, Mattermost's legacy response when enabled, per-user
//! TURN credentials, and proof with a real coturn that they are accepted, and refused when
//! tampered with or expired.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use token_service::{config::Secret, pb};

use crate::common::*;

fn webrtc_on(c: &mut token_service::config::Config, turn_port: u16, ttl: u64) {
    c.webrtc.enable = true;
    c.webrtc.gateway_url = "wss://gateway.example.com/janus".into();
    c.webrtc.stun_uri = format!("stun:127.0.0.1:{turn_port}");
    c.webrtc.turn_uri = format!("turn:127.0.0.1:{turn_port}");
    c.webrtc.turn_shared_secret = Secret::new("coturn-shared-secret");
    c.webrtc.credential_ttl = token_service::config::Ttl(ttl);
}

async fn credentials(srv: &TestServer, who: &Actor) -> pb::GetWebrtcTokenResponse {
    srv.client()
        .await
        .get_webrtc_token(authed(pb::GetWebrtcTokenRequest {}, &who.token))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn webrtc_is_disabled_by_default() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let mut client = srv.client().await;
    assert_error(
        client
            .get_webrtc_token(authed(pb::GetWebrtcTokenRequest {}, &alice.token))
            .await,
        tonic::Code::Unimplemented,
        "api.webrtc.disabled.app_error",
    );
    assert_unauthenticated(
        client
            .get_webrtc_token(tonic::Request::new(pb::GetWebrtcTokenRequest {}))
            .await,
    );
    srv.stop().await;
}

#[tokio::test]
async fn every_user_gets_their_own_turn_credentials() {
    let srv = TestServer::start_with(|c| webrtc_on(c, 3478, 86_400)).await;
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
        .client()
        .await
        .introspect_token(authed(
            pb::IntrospectTokenRequest {
                token: alice.token.clone(),
            },
            &admin.token,
        ))
        .await
        .unwrap()
        .into_inner()
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

/// A coturn `turnserver` on 127.0.0.1 with the TURN REST API secret.
struct Coturn {
    child: Child,
    port: u16,
}

impl Coturn {
    fn start(secret: &str) -> Option<Self> {
        if Command::new("turnserver")
            .arg("--version")
            .output()
            .is_err()
        {
            return None;
        }
        let port = {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap().port()
        };
        let relay_low = 40_000 + (port % 20_000);
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
                &format!("--max-port={}", relay_low + 200),
                "--log-file=stdout",
                "--simple-log",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnserver");
        std::thread::sleep(Duration::from_millis(800));
        Some(Self { child, port })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_accepts_issued_credentials_and_refuses_tampered_or_expired_ones() {
    let Some(coturn) = Coturn::start("coturn-shared-secret") else {
        eprintln!(
            "skipped: coturn (turnserver, turnutils_uclient) is not installed; .ci/run installs it"
        );
        return;
    };
    let port = coturn.port;
    let srv = TestServer::start_with(move |c| webrtc_on(c, port, 1)).await;
    let alice = srv.basic_user("alice").await;

    let creds = credentials(&srv, &alice).await;
    assert!(
        tokio::task::block_in_place(|| coturn.accepts(&creds.turn_username, &creds.turn_password)),
        "coturn must accept the issued credentials"
    );
    let (expiry, user) = creds.turn_username.split_once(':').unwrap();
    let tampered_user = format!("{expiry}:{}", user.replace(&user[..1], "z"));
    let mut tampered_password = creds.turn_password.clone();
    tampered_password.replace_range(
        0..1,
        if tampered_password.starts_with('A') {
            "B"
        } else {
            "A"
        },
    );
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

    // The credentials live one second: after that coturn refuses them.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(
        !tokio::task::block_in_place(|| coturn.accepts(&creds.turn_username, &creds.turn_password)),
        "expired credentials must be refused"
    );
    srv.stop().await;
}
