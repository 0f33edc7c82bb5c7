//! Every kind of caller against CountNonCompliantUserAccessTokens and
//! RevokeNonCompliantUserAccessTokens: credentials that do not authenticate are
//! UNAUTHENTICATED; everyone but a system admin is refused naming manage_system (auditors
//! included); an admin counts, and revoking without a lifetime policy (this server has none)
//! is FAILED_PRECONDITION, after the permission check.

use tonic::Code::{
    self, FailedPrecondition as NO_POLICY, Ok as OK, PermissionDenied as DENIED,
    Unauthenticated as UNAUTH,
};

use super::{
    code,
    sessions::{Kind, World},
};
use crate::common::*;

/// The RPCs, in the order [`codes`] calls them.
const RPCS: [&str; 2] = [
    "CountNonCompliantUserAccessTokens",
    "RevokeNonCompliantUserAccessTokens",
];

const NOBODY: [Code; 2] = [UNAUTH; 2];
const ADMIN: [Code; 2] = [OK, NO_POLICY];
const OTHERS: [Code; 2] = [DENIED; 2];

async fn codes(client: &Client, token: Option<&str>) -> Vec<Code> {
    let caller = ActorClient::new(client.clone(), token);
    let named = |result: &Reply<()>| {
        if let Err(status) = result
            && status.code() == DENIED
        {
            let info = tonic_types::StatusExt::get_details_error_info(status).unwrap();
            assert_eq!(info.metadata["permission"], "manage_system", "{status:?}");
        }
    };
    let count = caller.count_non_compliant_tokens().await.map(|n| {
        assert_eq!(n, 0, "no policy: nothing is non-compliant");
    });
    named(&count);
    let revoke = caller.revoke_non_compliant_tokens().await.map(drop);
    named(&revoke);
    if let Err(status) = &revoke
        && status.code() == NO_POLICY
    {
        assert_eq!(
            error_id(status),
            "app.user_access_token.revoke_non_compliant.no_policy.app_error"
        );
    }
    vec![code(count), code(revoke)]
}

#[tokio::test]
async fn every_caller_kind_gets_the_right_code_from_the_non_compliant_rpcs() {
    let table: [(Kind, [Code; 2]); 19] = [
        (Kind::Missing, NOBODY),
        (Kind::Garbage, NOBODY),
        (Kind::UnknownToken, NOBODY),
        (Kind::RevokedSession, NOBODY),
        (Kind::RevokedAccessToken, NOBODY),
        (Kind::DeactivatedSession, NOBODY),
        (Kind::DeactivatedAccessToken, NOBODY),
        (Kind::AdminSession, ADMIN),
        (Kind::AdminAccessToken, ADMIN),
        (Kind::UserSession, OTHERS),
        (Kind::UserAccessToken, OTHERS),
        (Kind::TeamAdminSession, OTHERS),
        (Kind::TeamAdminAccessToken, OTHERS),
        (Kind::BotSession, OTHERS),
        (Kind::BotAccessToken, OTHERS),
        (Kind::GuestSession, OTHERS),
        (Kind::GuestAccessToken, OTHERS),
        (Kind::AuditorSession, OTHERS),
        (Kind::AuditorAccessToken, OTHERS),
    ];
    let w = World::new().await;
    let client = w.srv.client().await;
    let mut wrong = Vec::new();
    for (n, (kind, expected)) in table.into_iter().enumerate() {
        let credential = w.credential(&client, kind, n).await;
        let got = codes(&client, credential.token.as_deref()).await;
        for ((rpc, want), got) in RPCS.iter().zip(expected).zip(got) {
            if want != got {
                wrong.push(format!("{kind:?} {rpc}: expected {want:?}, got {got:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    w.srv.stop().await;
}
