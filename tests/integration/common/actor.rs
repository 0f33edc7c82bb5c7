//! Typed calls per actor, in one place: `srv.as_(&alice).revoke_token(&id).await` sends
//! RevokeUserAccessToken with Alice's bearer token and returns the response message, or the
//! status the server answered. One method per TokenService RPC, taking the fields a test
//! varies; the assertions of [`super::assertions`] take the result as it is.
//!
//! The credential is whatever [`Bearer`] gives: an [`Actor`] presents its login session, a
//! `&str` or `String` is presented as is (a personal access token's secret, garbage, ..), and
//! [`CallAs::anonymous`] presents nothing. Handles on a server share one connection; the
//! same calls work on any other client (a replica's, one through a proxy).
//!
//! [`authed`] and [`with_header`] remain for the calls a handle does not cover (a request the
//! test builds itself, an `authorization` header of another scheme).

use prost_types::Timestamp;
use token_service::pb;
use tonic::{Request, Response, Status, Streaming};

use super::{Actor, Client, TestServer};

/// What an RPC answered: its response message, or the status.
pub type Reply<T> = Result<T, Status>;

/// Wraps a message in a request carrying `authorization: Bearer <token>`.
pub fn authed<T>(message: T, token: &str) -> Request<T> {
    with_header(message, &format!("Bearer {token}"))
}

/// Wraps a message in a request carrying the given `authorization` header value.
pub fn with_header<T>(message: T, authorization: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        authorization.parse().expect("ascii header"),
    );
    request
}

/// Something that presents a bearer token.
pub trait Bearer {
    /// The token sent as `authorization: Bearer <token>`.
    fn bearer(&self) -> &str;
}

impl Bearer for Actor {
    /// The actor's login session.
    fn bearer(&self) -> &str {
        &self.token
    }
}

impl Bearer for str {
    fn bearer(&self) -> &str {
        self
    }
}

impl Bearer for String {
    fn bearer(&self) -> &str {
        self
    }
}

/// Where typed calls go: a [`TestServer`] (its shared connection) or any [`Client`] (a
/// replica's, one through a proxy).
pub trait CallAs {
    /// The client the calls go through.
    fn calls_client(&self) -> Client;

    /// Calls as `who` (an [`Actor`], or a token).
    fn as_<B: Bearer + ?Sized>(&self, who: &B) -> ActorClient {
        ActorClient::new(self.calls_client(), Some(who.bearer()))
    }

    /// Calls without any credential.
    fn anonymous(&self) -> ActorClient {
        ActorClient::new(self.calls_client(), None)
    }
}

impl CallAs for TestServer {
    fn calls_client(&self) -> Client {
        self.shared_client()
    }
}

impl CallAs for Client {
    fn calls_client(&self) -> Client {
        self.clone()
    }
}

/// The three RPCs that change a token, for tests that try each in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenChange {
    Revoke,
    Disable,
    Enable,
}

/// A TokenService client that presents one credential (or none) on every call.
#[derive(Debug, Clone)]
pub struct ActorClient {
    client: Client,
    token: Option<String>,
}

impl ActorClient {
    /// Calls on `client` presenting `token`, or no credential at all.
    pub fn new(client: Client, token: Option<&str>) -> Self {
        Self {
            client,
            token: token.map(str::to_owned),
        }
    }

    /// `message` with this caller's credential.
    pub fn request<T>(&self, message: T) -> Request<T> {
        match &self.token {
            Some(token) => authed(message, token),
            None => Request::new(message),
        }
    }

    /// The underlying client (cheap: it shares the channel).
    fn client(&self) -> Client {
        self.client.clone()
    }

    // Users.

    /// GetMe.
    pub async fn get_me(&self) -> Reply<pb::GetMeResponse> {
        let request = self.request(pb::GetMeRequest {});
        self.client()
            .get_me(request)
            .await
            .map(Response::into_inner)
    }

    /// GetMe's user: who this credential authenticates as.
    pub async fn me(&self) -> Reply<pb::User> {
        self.get_me().await.map(|r| r.user.expect("user"))
    }

    /// GetUser (`user_id` may be "me").
    pub async fn get_user(&self, user_id: &str) -> Reply<pb::User> {
        let request = self.request(pb::GetUserRequest {
            user_id: user_id.to_owned(),
        });
        self.client()
            .get_user(request)
            .await
            .map(|r| r.into_inner().user.expect("user"))
    }

    /// GetUserByUsername.
    pub async fn get_user_by_username(&self, username: &str) -> Reply<pb::User> {
        let request = self.request(pb::GetUserByUsernameRequest {
            username: username.to_owned(),
        });
        self.client()
            .get_user_by_username(request)
            .await
            .map(|r| r.into_inner().user.expect("user"))
    }

    /// Logout: ends the session this credential authenticated with.
    pub async fn logout(&self) -> Reply<pb::LogoutResponse> {
        let request = self.request(pb::LogoutRequest {});
        self.client()
            .logout(request)
            .await
            .map(Response::into_inner)
    }

    /// CreateUser.
    pub async fn create_user(
        &self,
        message: pb::CreateUserRequest,
    ) -> Reply<pb::CreateUserResponse> {
        let request = self.request(message);
        self.client()
            .create_user(request)
            .await
            .map(Response::into_inner)
    }

    /// UpdateUserRoles.
    pub async fn update_user_roles(
        &self,
        user_id: &str,
        roles: &[&str],
    ) -> Reply<pb::UpdateUserRolesResponse> {
        let request = self.request(pb::UpdateUserRolesRequest {
            user_id: user_id.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        });
        self.client()
            .update_user_roles(request)
            .await
            .map(Response::into_inner)
    }

    /// UpdateUserActive.
    pub async fn update_user_active(
        &self,
        user_id: &str,
        active: bool,
    ) -> Reply<pb::UpdateUserActiveResponse> {
        let request = self.request(pb::UpdateUserActiveRequest {
            user_id: user_id.to_owned(),
            active,
        });
        self.client()
            .update_user_active(request)
            .await
            .map(Response::into_inner)
    }

    /// Deactivates (or reactivates) a user, failing the test if refused.
    pub async fn set_active(&self, user_id: &str, active: bool) {
        self.update_user_active(user_id, active)
            .await
            .expect("update user active");
    }

    // Personal access tokens.

    /// CountNonCompliantUserAccessTokens.
    pub async fn count_non_compliant_tokens(&self) -> Reply<i64> {
        let request = self.request(pb::CountNonCompliantUserAccessTokensRequest {});
        self.client()
            .count_non_compliant_user_access_tokens(request)
            .await
            .map(|r| r.into_inner().count)
    }

    /// ReportLeakedTokens.
    pub async fn report_leaked_tokens(
        &self,
        tokens: &[&str],
        url: &str,
    ) -> Reply<pb::ReportLeakedTokensResponse> {
        let request = self.request(pb::ReportLeakedTokensRequest {
            tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
            url: url.to_owned(),
        });
        self.client()
            .report_leaked_tokens(request)
            .await
            .map(Response::into_inner)
    }

    /// RevokeNonCompliantUserAccessTokens.
    pub async fn revoke_non_compliant_tokens(
        &self,
    ) -> Reply<pb::RevokeNonCompliantUserAccessTokensResponse> {
        let request = self.request(pb::RevokeNonCompliantUserAccessTokensRequest {});
        self.client()
            .revoke_non_compliant_user_access_tokens(request)
            .await
            .map(Response::into_inner)
    }

    /// CreateUserAccessToken without an expiry.
    pub async fn create_token(
        &self,
        user_id: &str,
        description: &str,
    ) -> Reply<pb::CreateUserAccessTokenResponse> {
        self.create_token_expiring(user_id, description, None).await
    }

    /// CreateUserAccessToken.
    pub async fn create_token_expiring(
        &self,
        user_id: &str,
        description: &str,
        expires_at: Option<Timestamp>,
    ) -> Reply<pb::CreateUserAccessTokenResponse> {
        let request = self.request(pb::CreateUserAccessTokenRequest {
            user_id: user_id.to_owned(),
            description: description.to_owned(),
            expires_at,
            ..Default::default()
        });
        self.client()
            .create_user_access_token(request)
            .await
            .map(Response::into_inner)
    }

    /// CreateUserAccessToken with a request the test builds (bound_cidrs, scopes, ..).
    pub async fn create_token_with(
        &self,
        message: pb::CreateUserAccessTokenRequest,
    ) -> Reply<pb::CreateUserAccessTokenResponse> {
        let request = self.request(message);
        self.client()
            .create_user_access_token(request)
            .await
            .map(Response::into_inner)
    }

    /// Creates a token for `user_id` ("me" for oneself), failing the test if refused;
    /// returns (token id, secret).
    pub async fn new_token(&self, user_id: &str) -> (String, String) {
        let created = self
            .create_token(user_id, "test token")
            .await
            .expect("create token");
        let token = created.user_access_token.expect("token metadata");
        (token.id, created.token)
    }

    /// GetUserAccessTokensForUser, first page.
    pub async fn list_tokens_for(
        &self,
        user_id: &str,
    ) -> Reply<pb::GetUserAccessTokensForUserResponse> {
        self.list_tokens_for_page(user_id, None, None).await
    }

    /// GetUserAccessTokensForUser.
    pub async fn list_tokens_for_page(
        &self,
        user_id: &str,
        page: Option<i32>,
        per_page: Option<i32>,
    ) -> Reply<pb::GetUserAccessTokensForUserResponse> {
        self.list_tokens_with(pb::GetUserAccessTokensForUserRequest {
            user_id: user_id.to_owned(),
            page,
            per_page,
            ..Default::default()
        })
        .await
    }

    /// GetUserAccessTokensForUser with any request (filters, `page_token`).
    pub async fn list_tokens_with(
        &self,
        request: pb::GetUserAccessTokensForUserRequest,
    ) -> Reply<pb::GetUserAccessTokensForUserResponse> {
        self.client()
            .get_user_access_tokens_for_user(self.request(request))
            .await
            .map(Response::into_inner)
    }

    /// GetUserAccessTokens (every user's).
    pub async fn list_all_tokens(
        &self,
        page: Option<i32>,
        per_page: Option<i32>,
    ) -> Reply<pb::GetUserAccessTokensResponse> {
        self.list_all_tokens_with(pb::GetUserAccessTokensRequest {
            page,
            per_page,
            ..Default::default()
        })
        .await
    }

    /// GetUserAccessTokens with any request (filters, `page_token`).
    pub async fn list_all_tokens_with(
        &self,
        request: pb::GetUserAccessTokensRequest,
    ) -> Reply<pb::GetUserAccessTokensResponse> {
        self.client()
            .get_user_access_tokens(self.request(request))
            .await
            .map(Response::into_inner)
    }

    /// SearchUserAccessTokens.
    pub async fn search_tokens(&self, term: &str) -> Reply<pb::SearchUserAccessTokensResponse> {
        let request = self.request(pb::SearchUserAccessTokensRequest {
            term: term.to_owned(),
        });
        self.client()
            .search_user_access_tokens(request)
            .await
            .map(Response::into_inner)
    }

    /// GetUserAccessToken.
    pub async fn get_token(&self, token_id: &str) -> Reply<pb::GetUserAccessTokenResponse> {
        let request = self.request(pb::GetUserAccessTokenRequest {
            token_id: token_id.to_owned(),
        });
        self.client()
            .get_user_access_token(request)
            .await
            .map(Response::into_inner)
    }

    /// RevokeUserAccessToken.
    pub async fn revoke_token(&self, token_id: &str) -> Reply<pb::RevokeUserAccessTokenResponse> {
        let request = self.request(pb::RevokeUserAccessTokenRequest {
            token_id: token_id.to_owned(),
        });
        self.client()
            .revoke_user_access_token(request)
            .await
            .map(Response::into_inner)
    }

    /// DisableUserAccessToken.
    pub async fn disable_token(&self, token_id: &str) -> Reply<pb::DisableUserAccessTokenResponse> {
        let request = self.request(pb::DisableUserAccessTokenRequest {
            token_id: token_id.to_owned(),
        });
        self.client()
            .disable_user_access_token(request)
            .await
            .map(Response::into_inner)
    }

    /// EnableUserAccessToken.
    pub async fn enable_token(&self, token_id: &str) -> Reply<pb::EnableUserAccessTokenResponse> {
        let request = self.request(pb::EnableUserAccessTokenRequest {
            token_id: token_id.to_owned(),
        });
        self.client()
            .enable_user_access_token(request)
            .await
            .map(Response::into_inner)
    }

    /// RotateUserAccessToken: a new secret for token `token_id`, the new expiry (`None`:
    /// never) and, if given, a grace period for the old secret.
    pub async fn rotate_token(
        &self,
        token_id: &str,
        expires_at: Option<Timestamp>,
        grace_period: Option<std::time::Duration>,
    ) -> Reply<pb::RotateUserAccessTokenResponse> {
        let request = self.request(pb::RotateUserAccessTokenRequest {
            token_id: token_id.to_owned(),
            expires_at,
            grace_period: grace_period
                .map(|d| prost_types::Duration::try_from(d).expect("a short duration")),
        });
        self.client()
            .rotate_user_access_token(request)
            .await
            .map(Response::into_inner)
    }

    /// Revokes, disables or enables a token, as `what` says.
    pub async fn change_token(&self, what: TokenChange, token_id: &str) -> Reply<()> {
        match what {
            TokenChange::Revoke => self.revoke_token(token_id).await.map(drop),
            TokenChange::Disable => self.disable_token(token_id).await.map(drop),
            TokenChange::Enable => self.enable_token(token_id).await.map(drop),
        }
    }

    /// IntrospectToken on `token`.
    pub async fn introspect(&self, token: &str) -> Reply<pb::IntrospectTokenResponse> {
        let request = self.request(pb::IntrospectTokenRequest {
            token: token.to_owned(),
        });
        self.client()
            .introspect_token(request)
            .await
            .map(Response::into_inner)
    }

    /// WatchRevocations, from now on or after `after_event_id`.
    pub async fn watch_revocations(
        &self,
        after_event_id: Option<i64>,
    ) -> Reply<Streaming<pb::WatchRevocationsResponse>> {
        let request = self.request(pb::WatchRevocationsRequest { after_event_id });
        self.client()
            .watch_revocations(request)
            .await
            .map(Response::into_inner)
    }

    /// Subscribes to WatchRevocations from now on, failing the test if refused.
    pub async fn subscribe(&self) -> Streaming<pb::WatchRevocationsResponse> {
        self.watch_revocations(None).await.expect("subscribe")
    }

    /// WatchEvents with the filters and position of `message`.
    pub async fn watch_events(
        &self,
        message: pb::WatchEventsRequest,
    ) -> Reply<Streaming<pb::WatchEventsResponse>> {
        let request = self.request(message);
        self.client()
            .watch_events(request)
            .await
            .map(Response::into_inner)
    }

    /// Subscribes to every record of the lifecycle log from now on, failing the test if
    /// refused.
    pub async fn subscribe_events(&self) -> Streaming<pb::WatchEventsResponse> {
        self.watch_events(pb::WatchEventsRequest::default())
            .await
            .expect("subscribe to events")
    }

    // Sessions.

    /// GetSessions.
    pub async fn get_sessions(&self, user_id: &str) -> Reply<pb::GetSessionsResponse> {
        let request = self.request(pb::GetSessionsRequest {
            user_id: user_id.to_owned(),
        });
        self.client()
            .get_sessions(request)
            .await
            .map(Response::into_inner)
    }

    /// The sessions of `user_id` ("me" for one's own), failing the test if refused.
    pub async fn sessions_of(&self, user_id: &str) -> Vec<pb::Session> {
        self.get_sessions(user_id)
            .await
            .expect("get sessions")
            .sessions
    }

    /// CreateSession.
    pub async fn create_session(
        &self,
        message: pb::CreateSessionRequest,
    ) -> Reply<pb::CreateSessionResponse> {
        let request = self.request(message);
        self.client()
            .create_session(request)
            .await
            .map(Response::into_inner)
    }

    /// CreateSession for `user_id` with the defaults, failing the test if refused.
    pub async fn login(&self, user_id: &str) -> pb::CreateSessionResponse {
        self.create_session(pb::CreateSessionRequest {
            user_id: user_id.to_owned(),
            ..Default::default()
        })
        .await
        .expect("create session")
    }

    /// RevokeSession (`session_id` may also be the session's token).
    pub async fn revoke_session(
        &self,
        user_id: &str,
        session_id: &str,
    ) -> Reply<pb::RevokeSessionResponse> {
        let request = self.request(pb::RevokeSessionRequest {
            user_id: user_id.to_owned(),
            session_id: session_id.to_owned(),
        });
        self.client()
            .revoke_session(request)
            .await
            .map(Response::into_inner)
    }

    /// RevokeAllSessions.
    pub async fn revoke_all_sessions(&self, user_id: &str) -> Reply<pb::RevokeAllSessionsResponse> {
        let request = self.request(pb::RevokeAllSessionsRequest {
            user_id: user_id.to_owned(),
        });
        self.client()
            .revoke_all_sessions(request)
            .await
            .map(Response::into_inner)
    }

    /// RevokeSessionsFromAllUsers.
    pub async fn revoke_sessions_from_all_users(
        &self,
    ) -> Reply<pb::RevokeSessionsFromAllUsersResponse> {
        let request = self.request(pb::RevokeSessionsFromAllUsersRequest {});
        self.client()
            .revoke_sessions_from_all_users(request)
            .await
            .map(Response::into_inner)
    }

    // Teams and slash commands.

    /// AddTeamMember.
    pub async fn add_team_member(
        &self,
        team_id: &str,
        user_id: &str,
        roles: &[&str],
    ) -> Reply<pb::AddTeamMemberResponse> {
        let request = self.request(pb::AddTeamMemberRequest {
            team_id: team_id.to_owned(),
            user_id: user_id.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        });
        self.client()
            .add_team_member(request)
            .await
            .map(Response::into_inner)
    }

    /// CreateCommand.
    pub async fn create_command(
        &self,
        message: pb::CreateCommandRequest,
    ) -> Reply<pb::CreateCommandResponse> {
        let request = self.request(message);
        self.client()
            .create_command(request)
            .await
            .map(Response::into_inner)
    }

    /// RegenCommandToken.
    pub async fn regen_command_token(
        &self,
        command_id: &str,
    ) -> Reply<pb::RegenCommandTokenResponse> {
        let request = self.request(pb::RegenCommandTokenRequest {
            command_id: command_id.to_owned(),
        });
        self.client()
            .regen_command_token(request)
            .await
            .map(Response::into_inner)
    }

    /// VerifyCommandToken.
    pub async fn verify_command_token(
        &self,
        command_id: &str,
        token: &str,
    ) -> Reply<pb::VerifyCommandTokenResponse> {
        let request = self.request(pb::VerifyCommandTokenRequest {
            command_id: command_id.to_owned(),
            token: token.to_owned(),
        });
        self.client()
            .verify_command_token(request)
            .await
            .map(Response::into_inner)
    }

    // WebRTC.

    /// GetWebrtcToken.
    pub async fn get_webrtc_token(&self) -> Reply<pb::GetWebrtcTokenResponse> {
        let request = self.request(pb::GetWebrtcTokenRequest {});
        self.client()
            .get_webrtc_token(request)
            .await
            .map(Response::into_inner)
    }
    // Webhooks.

    /// CreateWebhook for `url`, receiving `actions` (empty: every action).
    pub async fn create_webhook(
        &self,
        url: &str,
        actions: &[&str],
    ) -> Reply<pb::CreateWebhookResponse> {
        self.create_webhook_with(pb::CreateWebhookRequest {
            url: url.to_owned(),
            description: "test endpoint".to_owned(),
            filter: Some(pb::WebhookFilter {
                actions: actions.iter().map(|a| (*a).to_owned()).collect(),
                user_id: String::new(),
            }),
        })
        .await
    }

    /// CreateWebhook.
    pub async fn create_webhook_with(
        &self,
        message: pb::CreateWebhookRequest,
    ) -> Reply<pb::CreateWebhookResponse> {
        let request = self.request(message);
        self.client()
            .create_webhook(request)
            .await
            .map(Response::into_inner)
    }

    /// ListWebhooks.
    pub async fn list_webhooks(&self) -> Reply<Vec<pb::Webhook>> {
        let request = self.request(pb::ListWebhooksRequest {});
        self.client()
            .list_webhooks(request)
            .await
            .map(|r| r.into_inner().webhooks)
    }

    /// GetWebhook.
    pub async fn get_webhook(&self, webhook_id: &str) -> Reply<pb::Webhook> {
        let request = self.request(pb::GetWebhookRequest {
            webhook_id: webhook_id.to_owned(),
        });
        self.client()
            .get_webhook(request)
            .await
            .map(|r| r.into_inner().webhook.expect("webhook"))
    }

    /// UpdateWebhook.
    pub async fn update_webhook(&self, message: pb::UpdateWebhookRequest) -> Reply<pb::Webhook> {
        let request = self.request(message);
        self.client()
            .update_webhook(request)
            .await
            .map(|r| r.into_inner().webhook.expect("webhook"))
    }

    /// UpdateWebhook setting only `enabled`.
    pub async fn set_webhook_enabled(&self, webhook_id: &str, enabled: bool) -> Reply<pb::Webhook> {
        self.update_webhook(pb::UpdateWebhookRequest {
            webhook_id: webhook_id.to_owned(),
            enabled: Some(enabled),
            ..Default::default()
        })
        .await
    }

    /// DeleteWebhook.
    pub async fn delete_webhook(&self, webhook_id: &str) -> Reply<pb::DeleteWebhookResponse> {
        let request = self.request(pb::DeleteWebhookRequest {
            webhook_id: webhook_id.to_owned(),
        });
        self.client()
            .delete_webhook(request)
            .await
            .map(Response::into_inner)
    }

    /// RotateWebhookSecret, with a grace period (None: the default).
    pub async fn rotate_webhook_secret(
        &self,
        webhook_id: &str,
        grace: Option<std::time::Duration>,
    ) -> Reply<pb::RotateWebhookSecretResponse> {
        let request = self.request(pb::RotateWebhookSecretRequest {
            webhook_id: webhook_id.to_owned(),
            grace_period: grace.map(|g| prost_types::Duration::try_from(g).unwrap()),
        });
        self.client()
            .rotate_webhook_secret(request)
            .await
            .map(Response::into_inner)
    }

    /// TestWebhook.
    pub async fn test_webhook(&self, webhook_id: &str) -> Reply<pb::TestWebhookResponse> {
        let request = self.request(pb::TestWebhookRequest {
            webhook_id: webhook_id.to_owned(),
        });
        self.client()
            .test_webhook(request)
            .await
            .map(Response::into_inner)
    }

    // The audit trail.

    /// ListAuditRecords.
    pub async fn list_audit(
        &self,
        message: pb::ListAuditRecordsRequest,
    ) -> Reply<pb::ListAuditRecordsResponse> {
        let request = self.request(message);
        self.client()
            .list_audit_records(request)
            .await
            .map(Response::into_inner)
    }

    /// Every record ListAuditRecords returns for `filter`, page after page, failing the test
    /// if a page is refused.
    pub async fn audit_records(
        &self,
        filter: pb::ListAuditRecordsRequest,
    ) -> Vec<pb::LifecycleRecord> {
        let mut request = pb::ListAuditRecordsRequest {
            page_size: Some(200),
            ..filter
        };
        let mut all = Vec::new();
        loop {
            let page = self
                .list_audit(request.clone())
                .await
                .expect("list audit records");
            all.extend(page.records);
            if page.next_page_token.is_empty() {
                return all;
            }
            request.page_token = page.next_page_token;
        }
    }

    /// IdentifyToken.
    pub async fn identify_token(&self, token: &str) -> Reply<pb::IdentifyTokenResponse> {
        let request = self.request(pb::IdentifyTokenRequest {
            token: token.to_owned(),
        });
        self.client()
            .identify_token(request)
            .await
            .map(Response::into_inner)
    }

    /// ComputeAuditHash.
    pub async fn compute_audit_hash(
        &self,
        credential: &str,
    ) -> Reply<pb::ComputeAuditHashResponse> {
        let request = self.request(pb::ComputeAuditHashRequest {
            credential: credential.to_owned(),
        });
        self.client()
            .compute_audit_hash(request)
            .await
            .map(Response::into_inner)
    }

    /// VerifyAuditLog.
    pub async fn verify_audit_log(
        &self,
        after_id: Option<i64>,
        max_records: Option<i64>,
    ) -> Reply<pb::VerifyAuditLogResponse> {
        let request = self.request(pb::VerifyAuditLogRequest {
            after_id,
            max_records,
        });
        self.client()
            .verify_audit_log(request)
            .await
            .map(Response::into_inner)
    }
}
