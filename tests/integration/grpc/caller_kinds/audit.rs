//! Every kind of caller against the audit trail: credentials that do not authenticate are
//! UNAUTHENTICATED; a system admin (manage_system) reads, hashes and verifies; a
//! system_auditor (read_audit) reads and hashes but may not verify; everyone else (users,
//! team admins, bots, guests) is refused, naming read_audit or manage_system.

use tonic::Code::{self, Ok as OK, PermissionDenied as DENIED, Unauthenticated as UNAUTH};

use super::{
    code,
    sessions::{Kind, World},
};
use crate::common::*;

/// The RPCs, in the order [`codes`] calls them.
const RPCS: [&str; 3] = ["ListAuditRecords", "ComputeAuditHash", "VerifyAuditLog"];

const NOBODY: [Code; 3] = [UNAUTH; 3];
const ADMIN: [Code; 3] = [OK; 3];
const AUDITOR: [Code; 3] = [OK, OK, DENIED];
const OTHERS: [Code; 3] = [DENIED; 3];

async fn codes(client: &Client, token: Option<&str>) -> Vec<Code> {
    let caller = ActorClient::new(client.clone(), token);
    let named = |result: &Reply<()>, permission: &str| {
        if let Err(status) = result
            && status.code() == DENIED
        {
            let info = tonic_types::StatusExt::get_details_error_info(status).unwrap();
            assert_eq!(info.metadata["permission"], permission, "{status:?}");
        }
    };
    let list = caller
        .list_audit(token_service::pb::ListAuditRecordsRequest::default())
        .await
        .map(drop);
    named(&list, "read_audit");
    let hash = caller.compute_audit_hash("some token").await.map(drop);
    named(&hash, "read_audit");
    let verify = caller.verify_audit_log(None, None).await.map(drop);
    named(&verify, "manage_system");
    vec![code(list), code(hash), code(verify)]
}

#[tokio::test]
async fn every_caller_kind_gets_the_right_code_from_the_audit_rpcs() {
    let table: [(Kind, [Code; 3]); 19] = [
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
        (Kind::AuditorSession, AUDITOR),
        (Kind::AuditorAccessToken, AUDITOR),
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
