//! The `TokenService` gRPC handlers: authenticate, convert, call the domain, convert back.
//! No rule lives here. Domain errors become statuses by `?` (`From<Error> for Status`, in
//! `status.rs`); request and response conversions live in `convert.rs`.

use tonic::{Request, Response, Status};

use super::convert;
use crate::domain::{
    Context,
    access_tokens::{self, NewUserAccessToken, TokenRef},
    audit::{self, AuditRequest},
    commands::{self, NewCommand},
    error::{Error, Reason},
    events::{self, EventQuery},
    introspection, leaks, non_compliant, revocations,
    rotation::{self, RotateUserAccessToken},
    sessions::{self, NewSession},
    token_trail,
    users::{self, NewUser},
    webhooks::{self, NewWebhook, WebhookChange},
    webrtc,
    {caller::Caller, credentials::parse_authorization_header},
};
use crate::pb::{self, token_service_server::TokenService};

/// The gRPC face of the domain.
#[derive(Debug, Clone)]
pub(crate) struct TokenServiceApi {
    ctx: Context,
    /// Turns true when a graceful shutdown begins; long-lived calls end on it.
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Served on the local operator socket (or called in-process by the `admin` CLI): every
    /// call is the operator's ([`Caller::Local`]). Never set for the TCP listener.
    local: bool,
}

type RpcResult<T> = Result<Response<T>, Status>;

impl TokenServiceApi {
    /// The API for the network listener: every call authenticates.
    pub(crate) fn new(ctx: Context, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        Self {
            ctx,
            shutdown,
            local: false,
        }
    }

    /// The API for the local operator: every call is [`Caller::Local`]. Only for the Unix
    /// socket (whose file mode limits who may connect) and in-process use by `admin`.
    pub(crate) fn local(ctx: Context, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        Self {
            ctx,
            shutdown,
            local: true,
        }
    }

    /// The operator on the local socket, or the user whose `authorization` metadata entry
    /// authenticates.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Error> {
        if self.local {
            return Ok(Caller::Local);
        }
        let token = request
            .metadata()
            .get(&*super::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_authorization_header)
            .ok_or_else(|| Error::Unauthenticated {
                reason: Reason::SessionExpired,
            })?;
        let principal = self.ctx.authenticate_caller(&token).await?;
        crate::telemetry::record_caller(&principal);
        Ok(Caller::User(principal))
    }
}

impl TokenServiceApi {
    /// The caller of an RPC anyone may call: the local operator, the user whose credential
    /// authenticates, or nobody (no credential, or one that does not authenticate).
    async fn maybe_caller<T>(&self, request: &Request<T>) -> Result<Option<Caller>, Error> {
        match self.caller(request).await {
            Ok(caller) => Ok(Some(caller)),
            Err(Error::Unauthenticated { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

fn ok<T>(value: T) -> RpcResult<T> {
    Ok(Response::new(value))
}

#[tonic::async_trait]
impl TokenService for TokenServiceApi {
    async fn create_user_access_token(
        &self,
        request: Request<pb::CreateUserAccessTokenRequest>,
    ) -> RpcResult<pb::CreateUserAccessTokenResponse> {
        let caller = self.caller(&request).await?;
        let new = NewUserAccessToken::try_from(request.into_inner())?;
        let created = access_tokens::create_user_access_token(&self.ctx, &caller, new).await?;
        ok(created.into())
    }

    async fn get_user_access_tokens_for_user(
        &self,
        request: Request<pb::GetUserAccessTokensForUserRequest>,
    ) -> RpcResult<pb::GetUserAccessTokensForUserResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let paging = convert::list_paging(r.page, r.per_page, &r.page_token)?;
        let filter = convert::token_filter(
            r.last_used_before.as_ref(),
            r.last_used_after.as_ref(),
            r.expires_before.as_ref(),
            r.state,
        )?;
        let page = access_tokens::get_user_access_tokens_for_user(
            &self.ctx, &caller, &r.user_id, &filter, &paging,
        )
        .await?;
        ok(pb::GetUserAccessTokensForUserResponse {
            user_access_tokens: convert::tokens(page.tokens),
            next_page_token: page.next_page_token,
        })
    }

    async fn get_user_access_tokens(
        &self,
        request: Request<pb::GetUserAccessTokensRequest>,
    ) -> RpcResult<pb::GetUserAccessTokensResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let paging = convert::list_paging(r.page, r.per_page, &r.page_token)?;
        let filter = convert::token_filter(
            r.last_used_before.as_ref(),
            r.last_used_after.as_ref(),
            r.expires_before.as_ref(),
            r.state,
        )?;
        let page =
            access_tokens::get_user_access_tokens(&self.ctx, &caller, &filter, &paging).await?;
        ok(pb::GetUserAccessTokensResponse {
            user_access_tokens: convert::tokens(page.tokens),
            next_page_token: page.next_page_token,
        })
    }

    async fn search_user_access_tokens(
        &self,
        request: Request<pb::SearchUserAccessTokensRequest>,
    ) -> RpcResult<pb::SearchUserAccessTokensResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let list = access_tokens::search_user_access_tokens(&self.ctx, &caller, &r.term).await?;
        ok(pb::SearchUserAccessTokensResponse {
            user_access_tokens: convert::tokens(list),
        })
    }

    async fn get_user_access_token(
        &self,
        request: Request<pb::GetUserAccessTokenRequest>,
    ) -> RpcResult<pb::GetUserAccessTokenResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let token = access_tokens::get_user_access_token(&self.ctx, &caller, &r.token_id).await?;
        ok(pb::GetUserAccessTokenResponse {
            user_access_token: Some(token.into()),
        })
    }

    async fn revoke_user_access_token(
        &self,
        request: Request<pb::RevokeUserAccessTokenRequest>,
    ) -> RpcResult<pb::RevokeUserAccessTokenResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        access_tokens::revoke_user_access_token(&self.ctx, &caller, TokenRef::parse(&r.token_id)?)
            .await?;
        ok(pb::RevokeUserAccessTokenResponse {})
    }

    async fn disable_user_access_token(
        &self,
        request: Request<pb::DisableUserAccessTokenRequest>,
    ) -> RpcResult<pb::DisableUserAccessTokenResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        access_tokens::disable_user_access_token(&self.ctx, &caller, TokenRef::parse(&r.token_id)?)
            .await?;
        ok(pb::DisableUserAccessTokenResponse {})
    }

    async fn enable_user_access_token(
        &self,
        request: Request<pb::EnableUserAccessTokenRequest>,
    ) -> RpcResult<pb::EnableUserAccessTokenResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        access_tokens::enable_user_access_token(&self.ctx, &caller, TokenRef::parse(&r.token_id)?)
            .await?;
        ok(pb::EnableUserAccessTokenResponse {})
    }

    async fn rotate_user_access_token(
        &self,
        request: Request<pb::RotateUserAccessTokenRequest>,
    ) -> RpcResult<pb::RotateUserAccessTokenResponse> {
        let caller = self.caller(&request).await?;
        let rotate = RotateUserAccessToken::try_from(request.into_inner())?;
        let rotated = rotation::rotate_user_access_token(&self.ctx, &caller, rotate).await?;
        ok(pb::RotateUserAccessTokenResponse {
            token: rotated.secret.expose().to_owned(),
            user_access_token: Some(rotated.token.into()),
        })
    }

    async fn count_non_compliant_user_access_tokens(
        &self,
        request: Request<pb::CountNonCompliantUserAccessTokensRequest>,
    ) -> RpcResult<pb::CountNonCompliantUserAccessTokensResponse> {
        let caller = self.caller(&request).await?;
        let count =
            non_compliant::count_non_compliant_user_access_tokens(&self.ctx, &caller).await?;
        ok(pb::CountNonCompliantUserAccessTokensResponse {
            count: i64::try_from(count).unwrap_or(i64::MAX),
        })
    }

    async fn revoke_non_compliant_user_access_tokens(
        &self,
        request: Request<pb::RevokeNonCompliantUserAccessTokensRequest>,
    ) -> RpcResult<pb::RevokeNonCompliantUserAccessTokensResponse> {
        let caller = self.caller(&request).await?;
        let done =
            non_compliant::revoke_non_compliant_user_access_tokens(&self.ctx, &caller).await?;
        ok(pb::RevokeNonCompliantUserAccessTokensResponse {
            count: i64::try_from(done.count).unwrap_or(i64::MAX),
            complete: done.complete,
        })
    }

    async fn report_leaked_tokens(
        &self,
        request: Request<pb::ReportLeakedTokensRequest>,
    ) -> RpcResult<pb::ReportLeakedTokensResponse> {
        let caller = self.maybe_caller(&request).await?;
        let r = request.into_inner();
        let receipt = leaks::report_leaked_tokens(
            &self.ctx,
            caller.as_ref(),
            leaks::LeakReport {
                tokens: r.tokens,
                url: r.url,
            },
        )
        .await?;
        ok(pb::ReportLeakedTokensResponse {
            received: i64::try_from(receipt.received).unwrap_or(i64::MAX),
        })
    }

    async fn get_sessions(
        &self,
        request: Request<pb::GetSessionsRequest>,
    ) -> RpcResult<pb::GetSessionsResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let list = sessions::get_sessions(&self.ctx, &caller, &r.user_id).await?;
        ok(pb::GetSessionsResponse {
            sessions: list.into_iter().map(Into::into).collect(),
        })
    }

    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> RpcResult<pb::RevokeSessionResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        sessions::revoke_session(&self.ctx, &caller, &r.user_id, &r.session_id).await?;
        ok(pb::RevokeSessionResponse {})
    }

    async fn revoke_all_sessions(
        &self,
        request: Request<pb::RevokeAllSessionsRequest>,
    ) -> RpcResult<pb::RevokeAllSessionsResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        sessions::revoke_all_sessions(&self.ctx, &caller, &r.user_id).await?;
        ok(pb::RevokeAllSessionsResponse {})
    }

    async fn revoke_sessions_from_all_users(
        &self,
        request: Request<pb::RevokeSessionsFromAllUsersRequest>,
    ) -> RpcResult<pb::RevokeSessionsFromAllUsersResponse> {
        let caller = self.caller(&request).await?;
        sessions::revoke_sessions_from_all_users(&self.ctx, &caller).await?;
        ok(pb::RevokeSessionsFromAllUsersResponse {})
    }

    async fn regen_command_token(
        &self,
        request: Request<pb::RegenCommandTokenRequest>,
    ) -> RpcResult<pb::RegenCommandTokenResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let token = commands::regen_command_token(&self.ctx, &caller, &r.command_id).await?;
        ok(pb::RegenCommandTokenResponse {
            token: token.expose().to_owned(),
        })
    }

    async fn create_command(
        &self,
        request: Request<pb::CreateCommandRequest>,
    ) -> RpcResult<pb::CreateCommandResponse> {
        let caller = self.caller(&request).await?;
        let new = NewCommand::from(request.into_inner());
        let created = commands::create_command(&self.ctx, &caller, new).await?;
        ok(created.into())
    }

    async fn verify_command_token(
        &self,
        request: Request<pb::VerifyCommandTokenRequest>,
    ) -> RpcResult<pb::VerifyCommandTokenResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let valid =
            commands::verify_command_token(&self.ctx, &caller, &r.command_id, &r.token).await?;
        ok(pb::VerifyCommandTokenResponse { valid })
    }

    async fn add_team_member(
        &self,
        request: Request<pb::AddTeamMemberRequest>,
    ) -> RpcResult<pb::AddTeamMemberResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let member =
            commands::add_team_member(&self.ctx, &caller, &r.team_id, &r.user_id, &r.roles).await?;
        ok(pb::AddTeamMemberResponse {
            team_member: Some(member.into()),
        })
    }

    async fn get_webrtc_token(
        &self,
        request: Request<pb::GetWebrtcTokenRequest>,
    ) -> RpcResult<pb::GetWebrtcTokenResponse> {
        let caller = self.caller(&request).await?;
        let credentials = webrtc::get_webrtc_token(&self.ctx, &caller)?;
        ok(credentials.into())
    }

    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> RpcResult<pb::CreateSessionResponse> {
        let caller = self.caller(&request).await?;
        let new = NewSession::try_from(request.into_inner())?;
        let created = sessions::create_session(&self.ctx, &caller, new).await?;
        ok(created.into())
    }

    async fn get_me(&self, request: Request<pb::GetMeRequest>) -> RpcResult<pb::GetMeResponse> {
        let caller = self.caller(&request).await?;
        let user = users::get_me(&caller)?;
        ok(pb::GetMeResponse {
            user: Some(user.clone().into()),
        })
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> RpcResult<pb::GetUserResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let user = users::get_user(&self.ctx, &caller, &r.user_id).await?;
        ok(pb::GetUserResponse {
            user: Some(user.into()),
        })
    }

    async fn get_user_by_username(
        &self,
        request: Request<pb::GetUserByUsernameRequest>,
    ) -> RpcResult<pb::GetUserByUsernameResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let user = users::get_user_by_username(&self.ctx, &caller, &r.username).await?;
        ok(pb::GetUserByUsernameResponse {
            user: Some(user.into()),
        })
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> RpcResult<pb::LogoutResponse> {
        let caller = self.caller(&request).await?;
        sessions::logout(&self.ctx, &caller).await?;
        ok(pb::LogoutResponse {})
    }

    type WatchRevocationsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::WatchRevocationsResponse, Status>> + Send>,
    >;

    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> RpcResult<Self::WatchRevocationsStream> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let events = revocations::watch_revocations(
            &self.ctx,
            &caller,
            r.after_event_id,
            self.shutdown.clone(),
        )
        .await?;
        let stream = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::ReceiverStream::new(events),
            |event| {
                Ok(pb::WatchRevocationsResponse {
                    event: Some(convert::revocation_event(event?)),
                })
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    type WatchEventsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send>,
    >;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> RpcResult<Self::WatchEventsStream> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let query = EventQuery {
            after_event_id: r.after_event_id,
            actions: r.actions,
            user_id: r.user_id,
        };
        let records =
            events::watch_events(&self.ctx, &caller, &query, self.shutdown.clone()).await?;
        let stream = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::ReceiverStream::new(records),
            |record| {
                Ok(pb::WatchEventsResponse {
                    record: Some(convert::lifecycle_record(record?)),
                })
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn introspect_token(
        &self,
        request: Request<pb::IntrospectTokenRequest>,
    ) -> RpcResult<pb::IntrospectTokenResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let found = introspection::introspect_token(&self.ctx, &caller, &r.token).await?;
        ok(convert::introspection(found))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> RpcResult<pb::CreateUserResponse> {
        let caller = self.caller(&request).await?;
        let new = NewUser::from(request.into_inner());
        let user = users::create_user(&self.ctx, &caller, new).await?;
        ok(pb::CreateUserResponse {
            user: Some(user.into()),
        })
    }

    async fn update_user_roles(
        &self,
        request: Request<pb::UpdateUserRolesRequest>,
    ) -> RpcResult<pb::UpdateUserRolesResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let user = users::update_user_roles(&self.ctx, &caller, &r.user_id, &r.roles).await?;
        ok(pb::UpdateUserRolesResponse {
            user: Some(user.into()),
        })
    }

    async fn update_user_active(
        &self,
        request: Request<pb::UpdateUserActiveRequest>,
    ) -> RpcResult<pb::UpdateUserActiveResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let user = users::update_user_active(&self.ctx, &caller, &r.user_id, r.active).await?;
        ok(pb::UpdateUserActiveResponse {
            user: Some(user.into()),
        })
    }
    async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> RpcResult<pb::CreateWebhookResponse> {
        let caller = self.caller(&request).await?;
        let new = NewWebhook::from(request.into_inner());
        let created = webhooks::create_webhook(&self.ctx, &caller, new).await?;
        ok(created.into())
    }

    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> RpcResult<pb::ListWebhooksResponse> {
        let caller = self.caller(&request).await?;
        let list = webhooks::list_webhooks(&self.ctx, &caller).await?;
        ok(pb::ListWebhooksResponse {
            webhooks: list.into_iter().map(Into::into).collect(),
        })
    }

    async fn get_webhook(
        &self,
        request: Request<pb::GetWebhookRequest>,
    ) -> RpcResult<pb::GetWebhookResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let webhook = webhooks::get_webhook(&self.ctx, &caller, &r.webhook_id).await?;
        ok(pb::GetWebhookResponse {
            webhook: Some(webhook.into()),
        })
    }

    async fn update_webhook(
        &self,
        request: Request<pb::UpdateWebhookRequest>,
    ) -> RpcResult<pb::UpdateWebhookResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let id = r.webhook_id.clone();
        let webhook =
            webhooks::update_webhook(&self.ctx, &caller, &id, WebhookChange::from(r)).await?;
        ok(pb::UpdateWebhookResponse {
            webhook: Some(webhook.into()),
        })
    }

    async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> RpcResult<pb::DeleteWebhookResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        webhooks::delete_webhook(&self.ctx, &caller, &r.webhook_id).await?;
        ok(pb::DeleteWebhookResponse {})
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> RpcResult<pb::RotateWebhookSecretResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let grace = r
            .grace_period
            .as_ref()
            .map(|d| convert::duration_millis(d, "grace_period"))
            .transpose()?;
        let rotated =
            webhooks::rotate_webhook_secret(&self.ctx, &caller, &r.webhook_id, grace).await?;
        ok(pb::RotateWebhookSecretResponse {
            webhook: Some(rotated.webhook.into()),
            secret: rotated.secret.expose().to_owned(),
        })
    }

    async fn test_webhook(
        &self,
        request: Request<pb::TestWebhookRequest>,
    ) -> RpcResult<pb::TestWebhookResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let result = webhooks::test_webhook(&self.ctx, &caller, &r.webhook_id).await?;
        ok(result.into())
    }

    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> RpcResult<pb::ListAuditRecordsResponse> {
        let caller = self.caller(&request).await?;
        let query = AuditRequest::try_from(request.into_inner())?;
        let page = audit::list_audit_records(&self.ctx, &caller, &query).await?;
        ok(pb::ListAuditRecordsResponse {
            records: page
                .records
                .into_iter()
                .map(convert::stored_lifecycle_record)
                .collect(),
            next_page_token: page.next_page_token,
        })
    }

    async fn compute_audit_hash(
        &self,
        request: Request<pb::ComputeAuditHashRequest>,
    ) -> RpcResult<pb::ComputeAuditHashResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let credential_hmac = audit::compute_audit_hash(&self.ctx, &caller, &r.credential)?;
        ok(pb::ComputeAuditHashResponse { credential_hmac })
    }

    async fn identify_token(
        &self,
        request: Request<pb::IdentifyTokenRequest>,
    ) -> RpcResult<pb::IdentifyTokenResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let trail = token_trail::identify_token(&self.ctx, &caller, &r.token).await?;
        ok(convert::token_trail(trail))
    }

    async fn verify_audit_log(
        &self,
        request: Request<pb::VerifyAuditLogRequest>,
    ) -> RpcResult<pb::VerifyAuditLogResponse> {
        let caller = self.caller(&request).await?;
        let verify = request.into_inner().into();
        let report = audit::verify_audit_log(&self.ctx, &caller, verify).await?;
        ok(convert::chain_report(report))
    }
}
