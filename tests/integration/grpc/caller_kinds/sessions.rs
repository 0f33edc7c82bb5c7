//! Every kind of caller against the RPCs of sessions, slash commands and WebRTC: no
//! credential, garbage, a revoked session or token, a deactivated user's session or token are
//! UNAUTHENTICATED everywhere; a personal access token answers exactly like its owner's
//! session; a bot is an ordinary user. One table: each row is a credential and the status code
//! it gets from each RPC. The credentials and the session calls are here; the team, command
//! and WebRTC calls are in [`super::commands`].

use token_service::{
    domain::{
        caller::Caller,
        commands,
        ids::new_id,
        sessions::{self, NewSession},
    },
    pb,
};
use tonic::Code::{
    self, NotFound as NOT_FOUND, Ok as OK, PermissionDenied as DENIED, Unauthenticated as UNAUTH,
};

use super::{code, commands as command_calls};
use crate::common::*;

/// The RPCs, in the order [`codes`] calls them (RevokeSessionsFromAllUsers last: it ends the
/// other sessions); the five in the middle are [`command_calls::codes`]'.
const RPCS: [&str; 10] = [
    "GetSessions",
    "CreateSession",
    "RevokeSession",
    "RevokeAllSessions",
    "CreateCommand",
    "RegenCommandToken",
    "VerifyCommandToken",
    "AddTeamMember",
    "GetWebrtcToken",
    "RevokeSessionsFromAllUsers",
];

/// Refused before any permission check.
const NOBODY: [Code; 10] = [UNAUTH; 10];
/// A system admin may do everything.
const ADMIN: [Code; 10] = [OK; 10];
/// An ordinary user (or bot): own sessions and TURN credentials only; the command is hidden
/// (no permission on its team).
const USER: [Code; 10] = [
    OK, DENIED, OK, DENIED, DENIED, NOT_FOUND, DENIED, DENIED, OK, DENIED,
];
/// An ordinary user who is team_admin of the command's team.
const TEAM_ADMIN: [Code; 10] = [OK, DENIED, OK, DENIED, OK, OK, DENIED, DENIED, OK, DENIED];

/// The fixtures the calls act on.
pub(super) struct World {
    pub srv: TestServer,
    pub team_id: String,
    /// A user whose sessions may be revoked and who may be added to the team.
    pub victim: Actor,
    /// A command on the team, created by another team admin.
    pub command_id: String,
}

/// A credential to try, made fresh for its row (RevokeSessionsFromAllUsers ends sessions).
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Missing,
    Garbage,
    UnknownToken,
    RevokedSession,
    RevokedAccessToken,
    DeactivatedSession,
    DeactivatedAccessToken,
    AdminSession,
    AdminAccessToken,
    UserSession,
    UserAccessToken,
    TeamAdminSession,
    TeamAdminAccessToken,
    BotSession,
    BotAccessToken,
    /// A system_guest (no view_members); only the user RPCs' table uses it.
    GuestSession,
    GuestAccessToken,
    /// A system_auditor (read_audit only); only the audit table uses it.
    AuditorSession,
    AuditorAccessToken,
}

/// The token to present (none for `Missing`) and the user it acts as (none when it cannot
/// authenticate).
pub(super) struct Credential {
    pub(super) token: Option<String>,
    pub(super) user_id: Option<String>,
}

impl Credential {
    /// The same token, acting as nobody.
    fn refused(self) -> Self {
        Self {
            user_id: None,
            ..self
        }
    }
}

impl World {
    pub(super) async fn new() -> Self {
        let srv = TestServer::start_with(|c| {
            c.webrtc.enable = true;
            c.webrtc.gateway_url = "wss://gateway.example.com/janus".into();
            c.webrtc.stun_uri = "stun:127.0.0.1:3478".into();
            c.webrtc.turn_uri = "turn:127.0.0.1:3478".into();
            c.webrtc.turn_shared_secret = token_service::config::Secret::new("s");
        })
        .await;
        let victim = srv.basic_user("victim").await;
        let (team_id, command_id) = command_calls::team_with_command(&srv).await;
        Self {
            srv,
            team_id,
            victim,
            command_id,
        }
    }

    /// Makes a fresh credential of `kind`; `n` keeps user names unique.
    pub(super) async fn credential(&self, client: &Client, kind: Kind, n: usize) -> Credential {
        let srv = &self.srv;
        let name = |role: &str| format!("{role}{n}");
        let session = |actor: &Actor| Credential {
            token: Some(actor.token.clone()),
            user_id: Some(actor.id.clone()),
        };
        let access_token = |actor: &Actor, secret: String| Credential {
            token: Some(secret),
            user_id: Some(actor.id.clone()),
        };
        match kind {
            Kind::Missing => Credential {
                token: None,
                user_id: None,
            },
            Kind::Garbage => Credential {
                token: Some("garbage".into()),
                user_id: None,
            },
            Kind::UnknownToken => Credential {
                token: Some(new_id()),
                user_id: None,
            },
            Kind::RevokedSession => {
                // An admin's session, used (so cached) and then revoked by its owner.
                let admin = srv.admin(&name("revoked")).await;
                let as_admin = client.as_(&admin);
                as_admin.get_me().await.unwrap();
                as_admin.revoke_session("me", &admin.token).await.unwrap();
                session(&admin).refused()
            }
            Kind::RevokedAccessToken => {
                let admin = srv.admin(&name("revokedpat")).await;
                let (token_id, secret) = client.as_(&admin).new_token("me").await;
                client.as_(&secret).get_me().await.unwrap();
                client.as_(&admin).revoke_token(&token_id).await.unwrap();
                access_token(&admin, secret).refused()
            }
            Kind::DeactivatedSession | Kind::DeactivatedAccessToken => {
                // An admin (who could otherwise do everything), deactivated by another.
                let boss = srv.admin(&name("boss")).await;
                let admin = srv.admin(&name("deactivated")).await;
                let credential = if matches!(kind, Kind::DeactivatedSession) {
                    session(&admin)
                } else {
                    let (_, secret) = client.as_(&admin).new_token("me").await;
                    access_token(&admin, secret)
                };
                let token = credential.token.clone().unwrap();
                client.as_(&token).get_me().await.unwrap();
                client.as_(&boss).set_active(&admin.id, false).await;
                credential.refused()
            }
            Kind::AdminSession => session(&srv.admin(&name("admin")).await),
            Kind::AdminAccessToken => {
                let admin = srv.admin(&name("adminpat")).await;
                let (_, secret) = client.as_(&admin).new_token("me").await;
                access_token(&admin, secret)
            }
            Kind::UserSession => session(&srv.token_user(&name("user")).await),
            Kind::UserAccessToken => {
                let user = srv.token_user(&name("userpat")).await;
                let (_, secret) = client.as_(&user).new_token("me").await;
                access_token(&user, secret)
            }
            Kind::TeamAdminSession | Kind::TeamAdminAccessToken => {
                let user = srv.token_user(&name("teamadmin")).await;
                commands::add_team_member(
                    &srv.ctx,
                    &Caller::Local,
                    &self.team_id,
                    &user.id,
                    &["team_user team_admin".to_owned()],
                )
                .await
                .unwrap();
                if matches!(kind, Kind::TeamAdminSession) {
                    session(&user)
                } else {
                    let (_, secret) = client.as_(&user).new_token("me").await;
                    access_token(&user, secret)
                }
            }
            Kind::BotSession | Kind::BotAccessToken => {
                let owner = srv.admin(&name("botowner")).await;
                let bot = srv.bot(&name("bot"), Some(&owner)).await;
                if matches!(kind, Kind::BotSession) {
                    return session(&bot);
                }
                let secret = client
                    .as_(&owner)
                    .create_token(&bot.id, "bot token")
                    .await
                    .unwrap()
                    .token;
                access_token(&bot, secret)
            }
            Kind::GuestSession => session(&srv.user(&name("guest"), &["system_guest"]).await),
            Kind::GuestAccessToken => {
                let guest = srv.user(&name("guestpat"), &["system_guest"]).await;
                let (_, secret) = srv.existing_pat(&guest, false).await;
                access_token(&guest, secret)
            }
            Kind::AuditorSession => session(&srv.user(&name("auditor"), &["system_auditor"]).await),
            Kind::AuditorAccessToken => {
                let auditor = srv.user(&name("auditorpat"), &["system_auditor"]).await;
                let (_, secret) = srv.existing_pat(&auditor, false).await;
                access_token(&auditor, secret)
            }
        }
    }
}

/// Calls each of [`RPCS`] with `credential`, with a request that succeeds for a caller with
/// the permission, and returns the status codes. Every UNAUTHENTICATED carries Mattermost's
/// session-expired error id.
async fn codes(w: &World, client: &Client, credential: &Credential) -> Vec<Code> {
    // A session of the caller's own (the victim's for anonymous calls) to revoke.
    let own = sessions::create_session(
        &w.srv.ctx,
        &Caller::Local,
        NewSession {
            user_id: credential
                .user_id
                .clone()
                .unwrap_or_else(|| w.victim.id.clone()),
            lifetime_ms: Some(3_600_000),
            ..NewSession::default()
        },
    )
    .await
    .unwrap()
    .session
    .id
    .to_string();
    let caller = ActorClient::new(client.clone(), credential.token.as_deref());
    let mut codes = vec![
        code(caller.get_sessions("me").await),
        code(
            caller
                .create_session(pb::CreateSessionRequest {
                    user_id: w.victim.id.clone(),
                    ..Default::default()
                })
                .await,
        ),
        code(caller.revoke_session("me", &own).await),
        code(caller.revoke_all_sessions(&w.victim.id).await),
    ];
    codes.extend(command_calls::codes(w, &caller).await);
    codes.push(code(caller.revoke_sessions_from_all_users().await));
    codes
}

#[tokio::test]
async fn every_caller_kind_gets_the_right_code_from_session_command_and_webrtc_rpcs() {
    let table: [(Kind, [Code; 10]); 15] = [
        (Kind::Missing, NOBODY),
        (Kind::Garbage, NOBODY),
        (Kind::UnknownToken, NOBODY),
        (Kind::RevokedSession, NOBODY),
        (Kind::RevokedAccessToken, NOBODY),
        (Kind::DeactivatedSession, NOBODY),
        (Kind::DeactivatedAccessToken, NOBODY),
        (Kind::AdminSession, ADMIN),
        (Kind::AdminAccessToken, ADMIN),
        (Kind::UserSession, USER),
        (Kind::UserAccessToken, USER),
        (Kind::TeamAdminSession, TEAM_ADMIN),
        (Kind::TeamAdminAccessToken, TEAM_ADMIN),
        (Kind::BotSession, USER),
        (Kind::BotAccessToken, USER),
    ];
    let w = World::new().await;
    let client = w.srv.client().await;
    let mut wrong = Vec::new();
    for (n, (kind, expected)) in table.into_iter().enumerate() {
        let credential = w.credential(&client, kind, n).await;
        let got = codes(&w, &client, &credential).await;
        for ((rpc, want), got) in RPCS.iter().zip(expected).zip(got) {
            if want != got {
                wrong.push(format!("{kind:?} {rpc}: expected {want:?}, got {got:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    w.srv.stop().await;
}
