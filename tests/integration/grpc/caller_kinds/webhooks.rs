//! Every kind of caller against the webhook RPCs: credentials that do not authenticate are
//! UNAUTHENTICATED; only `manage_system` (the admins, by session and by token) passes the
//! permission check, which comes before the request is read (so an admin's refused URL is
//! INVALID_ARGUMENT and an unknown endpoint NOT_FOUND, while everyone else is
//! PERMISSION_DENIED naming manage_system, whatever the request).

use token_service::pb;
use tonic::Code::{
    self, InvalidArgument as INVALID, NotFound as MISSING, Ok as OK, PermissionDenied as DENIED,
    Unauthenticated as UNAUTH,
};

use super::{
    code,
    sessions::{Kind, World},
};
use crate::common::*;

/// The RPCs, in the order [`codes`] calls them.
const RPCS: [&str; 7] = [
    "ListWebhooks",
    "CreateWebhook (loopback URL)",
    "GetWebhook (unknown)",
    "UpdateWebhook (unknown)",
    "RotateWebhookSecret (unknown)",
    "TestWebhook (unknown)",
    "DeleteWebhook (unknown)",
];

const NOBODY: [Code; 7] = [UNAUTH; 7];
const ADMIN: [Code; 7] = [OK, INVALID, MISSING, MISSING, MISSING, MISSING, MISSING];
const OTHERS: [Code; 7] = [DENIED; 7];

async fn codes(client: &Client, token: Option<&str>) -> Vec<Code> {
    let caller = ActorClient::new(client.clone(), token);
    let unknown = token_service::domain::ids::new_id();
    let denied_names_manage_system = |status: &tonic::Status| {
        if status.code() == DENIED {
            let info = tonic_types::StatusExt::get_details_error_info(status).unwrap();
            assert_eq!(info.metadata["permission"], "manage_system");
        }
    };
    let results = vec![
        caller.list_webhooks().await.map(|_| ()),
        caller
            .create_webhook("http://127.0.0.1:9/hook", &[])
            .await
            .map(|_| ()),
        caller.get_webhook(&unknown).await.map(|_| ()),
        caller
            .update_webhook(pb::UpdateWebhookRequest {
                webhook_id: unknown.clone(),
                description: Some("x".into()),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        caller
            .rotate_webhook_secret(&unknown, None)
            .await
            .map(|_| ()),
        caller.test_webhook(&unknown).await.map(|_| ()),
        caller.delete_webhook(&unknown).await.map(|_| ()),
    ];
    results
        .into_iter()
        .map(|r| {
            if let Err(status) = &r {
                denied_names_manage_system(status);
            }
            code(r)
        })
        .collect()
}

#[tokio::test]
async fn every_caller_kind_gets_the_right_code_from_the_webhook_rpcs() {
    let table: [(Kind, [Code; 7]); 17] = [
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
