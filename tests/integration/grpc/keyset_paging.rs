//! Keyset paging of the token lists over gRPC: `page_token` walks every token exactly once in
//! id order (with filters, while tokens are added), `next_page_token` is empty on the last
//! page (even a full one), pages by number issue a token that continues them, and a cursor
//! that is malformed, altered, issued for another list or other filters, or combined with
//! `page` is INVALID_ARGUMENT naming the field.

use std::collections::BTreeSet;

use token_service::pb;

use crate::common::*;

const INVALID_URL_PARAM: &str = "api.context.invalid_url_param.app_error";

fn ids(tokens: &[pb::UserAccessToken]) -> Vec<String> {
    tokens.iter().map(|t| t.id.clone()).collect()
}

#[tokio::test]
async fn a_keyset_walk_sees_every_token_once_in_id_order_while_tokens_are_added() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let bob = srv.token_user("bob").await;
    let as_alice = srv.as_(&alice);
    let as_bob = srv.as_(&bob);
    let mut alice_tokens = Vec::new();
    for _ in 0..7 {
        alice_tokens.push(as_alice.new_token("me").await.0);
    }
    for _ in 0..3 {
        as_bob.new_token("me").await;
    }
    as_alice.disable_token(&alice_tokens[1]).await.unwrap();
    as_alice.disable_token(&alice_tokens[4]).await.unwrap();
    let as_admin = srv.as_(&admin);

    // Every token, in one page, before the walk.
    let whole = as_admin
        .list_all_tokens_with(pb::GetUserAccessTokensRequest {
            per_page: Some(200),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(whole.next_page_token.is_empty(), "one page holds them all");
    let before = ids(&whole.user_access_tokens);
    assert!(before.len() >= 10, "{before:?}");
    assert!(before.windows(2).all(|w| w[0] < w[1]), "ordered by id");

    // Walk three at a time; two tokens are created after the first page.
    let mut seen = Vec::new();
    let mut added = Vec::new();
    let mut request = pb::GetUserAccessTokensRequest {
        per_page: Some(3),
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = as_admin
            .list_all_tokens_with(request.clone())
            .await
            .unwrap();
        pages += 1;
        assert!(page.user_access_tokens.len() <= 3);
        seen.extend(ids(&page.user_access_tokens));
        if pages == 1 {
            for _ in 0..2 {
                added.push(as_alice.new_token("me").await.0);
            }
        }
        if page.next_page_token.is_empty() {
            assert!(!page.user_access_tokens.is_empty(), "no empty last page");
            break;
        }
        assert_eq!(
            page.user_access_tokens.len(),
            3,
            "only the last page is short"
        );
        request.page_token = page.next_page_token;
        assert!(pages < 100, "the walk ends");
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "strictly in id order, none twice: {seen:?}"
    );
    let seen_set: BTreeSet<&String> = seen.iter().collect();
    for id in &before {
        assert!(
            seen_set.contains(id),
            "{id} existed before the walk and was missed"
        );
    }
    // A token added during the walk is seen if its id sorts after the position reached.
    for id in &seen {
        assert!(
            before.contains(id) || added.contains(id),
            "{id} came from nowhere"
        );
    }

    // Pages by number give the same list, and their token continues them: page 1 of 3,
    // then the token, is pages 1 and 2.
    let now = as_admin
        .list_all_tokens_with(pb::GetUserAccessTokensRequest {
            per_page: Some(200),
            ..Default::default()
        })
        .await
        .unwrap();
    let everything = ids(&now.user_access_tokens);
    let page1 = as_admin
        .list_all_tokens_with(pb::GetUserAccessTokensRequest {
            page: Some(1),
            per_page: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&page1.user_access_tokens), everything[3..6]);
    let page2 = as_admin
        .list_all_tokens_with(pb::GetUserAccessTokensRequest {
            per_page: Some(3),
            page_token: page1.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&page2.user_access_tokens), everything[6..9]);
    // The last page by number has no next token; the one before it has.
    let last_page = (everything.len() as i32 - 1) / 3;
    let last = as_admin
        .list_all_tokens_with(pb::GetUserAccessTokensRequest {
            page: Some(last_page),
            per_page: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ids(&last.user_access_tokens),
        everything[(last_page as usize * 3)..]
    );
    assert!(last.next_page_token.is_empty());

    // One user's active tokens, two at a time: filters apply before the limit. Alice has
    // 7 + 2 tokens, 2 disabled: 7 active, pages 2, 2, 2, 1.
    let active: Vec<String> = ids(&as_alice
        .list_tokens_with(pb::GetUserAccessTokensForUserRequest {
            user_id: "me".into(),
            state: pb::TokenState::Active as i32,
            per_page: Some(200),
            ..Default::default()
        })
        .await
        .unwrap()
        .user_access_tokens);
    assert_eq!(active.len(), 7);
    assert!(!active.contains(&alice_tokens[1]) && !active.contains(&alice_tokens[4]));
    let mut walked = Vec::new();
    let mut sizes = Vec::new();
    let mut request = pb::GetUserAccessTokensForUserRequest {
        user_id: "me".into(),
        state: pb::TokenState::Active as i32,
        per_page: Some(2),
        ..Default::default()
    };
    loop {
        let page = as_alice.list_tokens_with(request.clone()).await.unwrap();
        sizes.push(page.user_access_tokens.len());
        walked.extend(ids(&page.user_access_tokens));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(walked, active);
    assert_eq!(sizes, [2, 2, 2, 1]);

    // A full last page has no next token either: the admin's walk of alice's 7 active
    // tokens, 7 at a time, is one page.
    let full = as_admin
        .list_tokens_with(pb::GetUserAccessTokensForUserRequest {
            user_id: alice.id.clone(),
            state: pb::TokenState::Active as i32,
            per_page: Some(7),
            page_token: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&full.user_access_tokens), active);
    assert!(full.next_page_token.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn a_bad_cursor_is_invalid_argument_naming_the_field() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.as_(&alice);
    for _ in 0..3 {
        as_alice.new_token("me").await;
    }
    let as_admin = srv.as_(&admin);
    let first = as_admin
        .list_tokens_with(pb::GetUserAccessTokensForUserRequest {
            user_id: alice.id.clone(),
            per_page: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let token = first.next_page_token.clone();
    assert!(!token.is_empty());
    let next = |tweak: fn(&mut pb::GetUserAccessTokensForUserRequest)| {
        let mut request = pb::GetUserAccessTokensForUserRequest {
            user_id: alice.id.clone(),
            per_page: Some(1),
            page_token: token.clone(),
            ..Default::default()
        };
        tweak(&mut request);
        as_admin.list_tokens_with(request)
    };
    let second = next(|_| {}).await.unwrap();
    assert!(second.user_access_tokens[0].id > first.user_access_tokens[0].id);
    // Another page size is fine.
    next(|r| r.per_page = Some(50)).await.unwrap();
    type Tweak = fn(&mut pb::GetUserAccessTokensForUserRequest);
    let cases: [(&str, &str, Tweak); 7] = [
        ("other filters", "page_token", |r| {
            r.state = pb::TokenState::Active as i32;
        }),
        ("another user", "page_token", |r| r.user_id = "me".into()),
        ("an altered token", "page_token", |r| {
            let mut bytes = r.page_token.clone().into_bytes();
            bytes[2] = if bytes[2] == b'A' { b'B' } else { b'A' };
            r.page_token = String::from_utf8(bytes).unwrap();
        }),
        ("garbage", "page_token", |r| r.page_token = "%%%".into()),
        ("too long", "page_token", |r| r.page_token = "A".repeat(300)),
        ("with page", "page_token", |r| r.page = Some(0)),
        ("per_page 0", "per_page", |r| r.per_page = Some(0)),
    ];
    for (what, field, tweak) in cases {
        let refused = next(tweak).await;
        assert!(refused.is_err(), "{what}: {refused:?}");
        assert_invalid(refused, field, INVALID_URL_PARAM);
    }
    // A token of the other list (every user's) or of the audit trail is refused too.
    let other_list = as_admin
        .list_all_tokens_with(pb::GetUserAccessTokensRequest {
            per_page: Some(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .next_page_token;
    let audit = as_admin
        .list_audit(pb::ListAuditRecordsRequest {
            page_size: Some(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .next_page_token;
    for foreign in [other_list, audit] {
        assert!(!foreign.is_empty());
        let refused = as_admin
            .list_tokens_with(pb::GetUserAccessTokensForUserRequest {
                user_id: alice.id.clone(),
                page_token: foreign.clone(),
                ..Default::default()
            })
            .await;
        assert_invalid(refused, "page_token", INVALID_URL_PARAM);
    }
    // The every-token list refuses a combination with page the same way.
    let refused = as_admin
        .list_all_tokens_with(pb::GetUserAccessTokensRequest {
            page: Some(1),
            page_token: token.clone(),
            ..Default::default()
        })
        .await;
    assert_invalid(refused, "page_token", INVALID_URL_PARAM);
    srv.stop().await;
}
