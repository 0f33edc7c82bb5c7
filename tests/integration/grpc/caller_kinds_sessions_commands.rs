//! Every kind of caller against the RPCs of sessions, slash commands and WebRTC: no
//! credential, garbage, a revoked session or token, a deactivated user's session or token are
//! UNAUTHENTICATED everywhere; a personal access token answers exactly like its owner's
//! session; a bot is an ordinary user. One table: each row is a credential and the status code
//! it gets from each RPC.

use token_service::{
    domain::{
        caller::Caller,
        commands,
        ids::new_id,
        sessions::{self, NewSession},
    },
    pb,
};
use tonic::{
    Code::{
        self, NotFound as NOT_FOUND, Ok as OK, PermissionDenied as DENIED,
        Unauthenticated as UNAUTH,
    },
    Request,
};

use crate::common::*;

/// The RPCs, in the order [`codes`] calls them (RevokeSessionsFromAllUsers last: it ends the
/// other sessions).
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
struct World {
    srv: TestServer,
    team_id: String,
    /// A user whose sessions may be revoked and who may be added to the team.
    victim: Actor,
    /// A command on the team, created by another team admin.
    command_id: String,
}

/// A credential to try, made fresh for its row (RevokeSessionsFromAllUsers ends sessions).
#[derive(Debug, Clone, Copy)]
enum Kind {
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
}

/// The token to present (none for `Missing`) and the user it acts as (none when it cannot
/// authenticate).
struct Credential {
    token: Option<String>,
    user_id: Option<String>,
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

fn request<T>(message: T, credential: &Credential) -> Request<T> {
    match &credential.token {
        Some(token) => authed(message, token),
        None => Request::new(message),
    }
}

impl World {
    async fn new() -> Self {
        let srv = TestServer::start_with(|c| {
            c.webrtc.enable = true;
            c.webrtc.gateway_url = "wss://gateway.example.com/janus".into();
            c.webrtc.stun_uri = "stun:127.0.0.1:3478".into();
            c.webrtc.turn_uri = "turn:127.0.0.1:3478".into();
            c.webrtc.turn_shared_secret = token_service::config::Secret::new("s");
        })
        .await;
        let team_id = new_id();
        let victim = srv.basic_user("victim").await;
        let owner = srv.basic_user("owner").await;
        commands::add_team_member(
            &srv.ctx,
            &Caller::Local,
            &team_id,
            &owner.id,
            &["team_user team_admin".to_owned()],
        )
        .await
        .unwrap();
        let command_id = srv
            .client()
            .await
            .create_command(authed(
                pb::CreateCommandRequest {
                    team_id: team_id.clone(),
                    trigger: "deploy".into(),
                    url: "https://hooks.example.com/deploy".into(),
                    ..Default::default()
                },
                &owner.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .command
            .unwrap()
            .id;
        Self {
            srv,
            team_id,
            victim,
            command_id,
        }
    }

    /// Makes a fresh credential of `kind`; `n` keeps user names unique.
    async fn credential(&self, client: &mut Client, kind: Kind, n: usize) -> Credential {
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
                client
                    .get_me(authed(pb::GetMeRequest {}, &admin.token))
                    .await
                    .unwrap();
                client
                    .revoke_session(authed(
                        pb::RevokeSessionRequest {
                            user_id: "me".into(),
                            session_id: admin.token.clone(),
                        },
                        &admin.token,
                    ))
                    .await
                    .unwrap();
                session(&admin).refused()
            }
            Kind::RevokedAccessToken => {
                let admin = srv.admin(&name("revokedpat")).await;
                let (token_id, secret) = create_own_pat(client, &admin).await;
                client
                    .get_me(authed(pb::GetMeRequest {}, &secret))
                    .await
                    .unwrap();
                client
                    .revoke_user_access_token(authed(
                        pb::RevokeUserAccessTokenRequest { token_id },
                        &admin.token,
                    ))
                    .await
                    .unwrap();
                access_token(&admin, secret).refused()
            }
            Kind::DeactivatedSession | Kind::DeactivatedAccessToken => {
                // An admin (who could otherwise do everything), deactivated by another.
                let boss = srv.admin(&name("boss")).await;
                let admin = srv.admin(&name("deactivated")).await;
                let credential = if matches!(kind, Kind::DeactivatedSession) {
                    session(&admin)
                } else {
                    let (_, secret) = create_own_pat(client, &admin).await;
                    access_token(&admin, secret)
                };
                let token = credential.token.clone().unwrap();
                client
                    .get_me(authed(pb::GetMeRequest {}, &token))
                    .await
                    .unwrap();
                set_user_active(client, &boss, &admin.id, false).await;
                credential.refused()
            }
            Kind::AdminSession => session(&srv.admin(&name("admin")).await),
            Kind::AdminAccessToken => {
                let admin = srv.admin(&name("adminpat")).await;
                let (_, secret) = create_own_pat(client, &admin).await;
                access_token(&admin, secret)
            }
            Kind::UserSession => session(&srv.token_user(&name("user")).await),
            Kind::UserAccessToken => {
                let user = srv.token_user(&name("userpat")).await;
                let (_, secret) = create_own_pat(client, &user).await;
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
                    let (_, secret) = create_own_pat(client, &user).await;
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
                    .create_user_access_token(authed(
                        pb::CreateUserAccessTokenRequest {
                            user_id: bot.id.clone(),
                            description: "bot token".into(),
                            expires_at: None,
                        },
                        &owner.token,
                    ))
                    .await
                    .unwrap()
                    .into_inner()
                    .token;
                access_token(&bot, secret)
            }
        }
    }
}

/// Calls each of [`RPCS`] with `credential`, with a request that succeeds for a caller with
/// the permission, and returns the status codes. Every UNAUTHENTICATED carries Mattermost's
/// session-expired error id.
async fn codes(w: &World, client: &mut Client, credential: &Credential) -> Vec<Code> {
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
    let c = credential;
    let results = [
        client
            .get_sessions(request(
                pb::GetSessionsRequest {
                    user_id: "me".into(),
                },
                c,
            ))
            .await
            .map(drop),
        client
            .create_session(request(
                pb::CreateSessionRequest {
                    user_id: w.victim.id.clone(),
                    ..Default::default()
                },
                c,
            ))
            .await
            .map(drop),
        client
            .revoke_session(request(
                pb::RevokeSessionRequest {
                    user_id: "me".into(),
                    session_id: own,
                },
                c,
            ))
            .await
            .map(drop),
        client
            .revoke_all_sessions(request(
                pb::RevokeAllSessionsRequest {
                    user_id: w.victim.id.clone(),
                },
                c,
            ))
            .await
            .map(drop),
        client
            .create_command(request(
                pb::CreateCommandRequest {
                    team_id: w.team_id.clone(),
                    trigger: format!("t{}", &new_id()[..8]),
                    url: "https://hooks.example.com/t".into(),
                    ..Default::default()
                },
                c,
            ))
            .await
            .map(drop),
        client
            .regen_command_token(request(
                pb::RegenCommandTokenRequest {
                    command_id: w.command_id.clone(),
                },
                c,
            ))
            .await
            .map(drop),
        client
            .verify_command_token(request(
                pb::VerifyCommandTokenRequest {
                    command_id: w.command_id.clone(),
                    token: "not-the-token".into(),
                },
                c,
            ))
            .await
            .map(drop),
        client
            .add_team_member(request(
                pb::AddTeamMemberRequest {
                    team_id: w.team_id.clone(),
                    user_id: w.victim.id.clone(),
                    roles: Vec::new(),
                },
                c,
            ))
            .await
            .map(drop),
        client
            .get_webrtc_token(request(pb::GetWebrtcTokenRequest {}, c))
            .await
            .map(drop),
        client
            .revoke_sessions_from_all_users(request(pb::RevokeSessionsFromAllUsersRequest {}, c))
            .await
            .map(drop),
    ];
    results
        .into_iter()
        .map(|result| match result {
            Ok(()) => OK,
            Err(status) => {
                if status.code() == UNAUTH {
                    assert_eq!(error_id(&status), "api.context.session_expired.app_error");
                }
                status.code()
            }
        })
        .collect()
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
    let mut client = w.srv.client().await;
    let mut wrong = Vec::new();
    for (n, (kind, expected)) in table.into_iter().enumerate() {
        let credential = w.credential(&mut client, kind, n).await;
        let got = codes(&w, &mut client, &credential).await;
        for ((rpc, want), got) in RPCS.iter().zip(expected).zip(got) {
            if want != got {
                wrong.push(format!("{kind:?} {rpc}: expected {want:?}, got {got:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    w.srv.stop().await;
}
