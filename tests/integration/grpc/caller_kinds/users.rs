//! Every kind of caller against the user directory reads and Logout: credentials that do not
//! authenticate are UNAUTHENTICATED; every system_user (admins, token users, team admins,
//! bots; by session and by token alike) sees another user by id and by username; a guest
//! (no view_members) is refused both; everyone who authenticates may log out, which ends the
//! credential's session (for a personal access token, the minted session only).

use token_service::pb;
use tonic::Code::{self, Ok as OK, PermissionDenied as DENIED, Unauthenticated as UNAUTH};

use super::{
    code,
    sessions::{Kind, World},
};
use crate::common::*;

/// The RPCs, in the order [`codes`] calls them (Logout last: it ends the credential).
const RPCS: [&str; 4] = [
    "GetUser",
    "GetUserByUsername",
    "Logout",
    "GetMe after Logout",
];

const NOBODY: [Code; 4] = [UNAUTH; 4];
/// A session ends at logout.
const USER_SESSION: [Code; 4] = [OK, OK, OK, UNAUTH];
/// A personal access token outlives the logout of its minted session.
const USER_TOKEN: [Code; 4] = [OK, OK, OK, OK];
const GUEST_SESSION: [Code; 4] = [DENIED, DENIED, OK, UNAUTH];
const GUEST_TOKEN: [Code; 4] = [DENIED, DENIED, OK, OK];

async fn codes(w: &World, client: &Client, token: Option<&str>) -> Vec<Code> {
    let caller = ActorClient::new(client.clone(), token);
    let denied_names_view_members = |r: &Reply<pb::User>| {
        if let Err(status) = r
            && status.code() == DENIED
        {
            let info = tonic_types::StatusExt::get_details_error_info(status).unwrap();
            assert_eq!(info.metadata["permission"], "view_members");
        }
    };
    let by_id = caller.get_user(&w.victim.id).await;
    denied_names_view_members(&by_id);
    if let Ok(user) = &by_id {
        assert_eq!(user.email, "", "another user's e-mail is hidden");
    }
    let by_name = caller.get_user_by_username(&w.victim.username).await;
    denied_names_view_members(&by_name);
    vec![
        code(by_id),
        code(by_name),
        code(caller.logout().await),
        code(caller.get_me().await),
    ]
}

#[tokio::test]
async fn every_caller_kind_gets_the_right_code_from_the_user_rpcs_and_logout() {
    let table: [(Kind, [Code; 4]); 17] = [
        (Kind::Missing, NOBODY),
        (Kind::Garbage, NOBODY),
        (Kind::UnknownToken, NOBODY),
        (Kind::RevokedSession, NOBODY),
        (Kind::RevokedAccessToken, NOBODY),
        (Kind::DeactivatedSession, NOBODY),
        (Kind::DeactivatedAccessToken, NOBODY),
        (Kind::AdminSession, USER_SESSION),
        (Kind::AdminAccessToken, USER_TOKEN),
        (Kind::UserSession, USER_SESSION),
        (Kind::UserAccessToken, USER_TOKEN),
        (Kind::TeamAdminSession, USER_SESSION),
        (Kind::TeamAdminAccessToken, USER_TOKEN),
        (Kind::BotSession, USER_SESSION),
        (Kind::BotAccessToken, USER_TOKEN),
        (Kind::GuestSession, GUEST_SESSION),
        (Kind::GuestAccessToken, GUEST_TOKEN),
    ];
    let w = World::new().await;
    let client = w.srv.client().await;
    let mut wrong = Vec::new();
    for (n, (kind, expected)) in table.into_iter().enumerate() {
        let credential = w.credential(&client, kind, n).await;
        let got = codes(&w, &client, credential.token.as_deref()).await;
        for ((rpc, want), got) in RPCS.iter().zip(expected).zip(got) {
            if want != got {
                wrong.push(format!("{kind:?} {rpc}: expected {want:?}, got {got:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    w.srv.stop().await;
}
