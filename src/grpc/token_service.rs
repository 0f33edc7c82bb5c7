//! The `TokenService` gRPC handlers: authenticate, convert, call the domain, convert back.
//! No rule lives here.

use tonic::{Request, Response, Status};

use super::{convert, status::to_status};
use crate::domain::{
    Context,
    access_tokens::{self, NewUserAccessToken, TokenRef},
    commands::{self, NewCommand},
    error::{Error, Reason},
    introspection,
    paging::PageRequest,
    revocations,
    sessions::{self, NewSession},
    users::{self, NewUser},
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
}

type RpcResult<T> = Result<Response<T>, Status>;

impl TokenServiceApi {
    pub(crate) fn new(ctx: Context, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        Self { ctx, shutdown }
    }

    /// Authenticates the `authorization` metadata entry.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_authorization_header)
            .ok_or_else(|| {
                to_status(Error::Unauthenticated {
                    reason: Reason::SessionExpired,
                })
            })?;
        let principal = self.ctx.authenticate(&token).await.map_err(to_status)?;
        crate::telemetry::record_caller(principal.user.id.as_str());
        Ok(Caller::User(principal))
    }
}

fn ok<T>(value: T) -> RpcResult<T> {
    Ok(Response::new(value))
}

fn tokens_response(list: Vec<crate::domain::model::UserAccessToken>) -> Vec<pb::UserAccessToken> {
    list.into_iter().map(Into::into).collect()
}

#[tonic::async_trait]
impl TokenService for TokenServiceApi {
    async fn create_user_access_token(
        &self,
        request: Request<pb::CreateUserAccessTokenRequest>,
    ) -> RpcResult<pb::CreateUserAccessTokenResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let expires_at = r
            .expires_at
            .as_ref()
            .map(|ts| convert::millis(ts, "expires_at"))
            .transpose()
            .map_err(to_status)?;
        let created = access_tokens::create_user_access_token(
            &self.ctx,
            &caller,
            NewUserAccessToken {
                user_id: r.user_id,
                description: r.description,
                expires_at,
            },
        )
        .await
        .map_err(to_status)?;
        ok(pb::CreateUserAccessTokenResponse {
            token: created.secret.expose().to_owned(),
            user_access_token: Some(created.token.into()),
        })
    }

    async fn get_user_access_tokens_for_user(
        &self,
        request: Request<pb::GetUserAccessTokensForUserRequest>,
    ) -> RpcResult<pb::GetUserAccessTokensForUserResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let page = PageRequest::new(convert::page_param(r.page), convert::page_param(r.per_page))
            .map_err(to_status)?;
        let list =
            access_tokens::get_user_access_tokens_for_user(&self.ctx, &caller, &r.user_id, page)
                .await
                .map_err(to_status)?;
        ok(pb::GetUserAccessTokensForUserResponse {
            user_access_tokens: tokens_response(list),
        })
    }

    async fn get_user_access_tokens(
        &self,
        request: Request<pb::GetUserAccessTokensRequest>,
    ) -> RpcResult<pb::GetUserAccessTokensResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let page = PageRequest::new(convert::page_param(r.page), convert::page_param(r.per_page))
            .map_err(to_status)?;
        let list = access_tokens::get_user_access_tokens(&self.ctx, &caller, page)
            .await
            .map_err(to_status)?;
        ok(pb::GetUserAccessTokensResponse {
            user_access_tokens: tokens_response(list),
        })
    }

    async fn search_user_access_tokens(
        &self,
        request: Request<pb::SearchUserAccessTokensRequest>,
    ) -> RpcResult<pb::SearchUserAccessTokensResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let list = access_tokens::search_user_access_tokens(&self.ctx, &caller, &r.term)
            .await
            .map_err(to_status)?;
        ok(pb::SearchUserAccessTokensResponse {
            user_access_tokens: tokens_response(list),
        })
    }

    async fn get_user_access_token(
        &self,
        request: Request<pb::GetUserAccessTokenRequest>,
    ) -> RpcResult<pb::GetUserAccessTokenResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let token = access_tokens::get_user_access_token(&self.ctx, &caller, &r.token_id)
            .await
            .map_err(to_status)?;
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
        access_tokens::revoke_user_access_token(
            &self.ctx,
            &caller,
            TokenRef::parse(&r.token_id).map_err(to_status)?,
        )
        .await
        .map_err(to_status)?;
        ok(pb::RevokeUserAccessTokenResponse {})
    }

    async fn disable_user_access_token(
        &self,
        request: Request<pb::DisableUserAccessTokenRequest>,
    ) -> RpcResult<pb::DisableUserAccessTokenResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        access_tokens::disable_user_access_token(
            &self.ctx,
            &caller,
            TokenRef::parse(&r.token_id).map_err(to_status)?,
        )
        .await
        .map_err(to_status)?;
        ok(pb::DisableUserAccessTokenResponse {})
    }

    async fn enable_user_access_token(
        &self,
        request: Request<pb::EnableUserAccessTokenRequest>,
    ) -> RpcResult<pb::EnableUserAccessTokenResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        access_tokens::enable_user_access_token(
            &self.ctx,
            &caller,
            TokenRef::parse(&r.token_id).map_err(to_status)?,
        )
        .await
        .map_err(to_status)?;
        ok(pb::EnableUserAccessTokenResponse {})
    }

    async fn get_sessions(
        &self,
        request: Request<pb::GetSessionsRequest>,
    ) -> RpcResult<pb::GetSessionsResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let list = sessions::get_sessions(&self.ctx, &caller, &r.user_id)
            .await
            .map_err(to_status)?;
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
        sessions::revoke_session(&self.ctx, &caller, &r.user_id, &r.session_id)
            .await
            .map_err(to_status)?;
        ok(pb::RevokeSessionResponse {})
    }

    async fn revoke_all_sessions(
        &self,
        request: Request<pb::RevokeAllSessionsRequest>,
    ) -> RpcResult<pb::RevokeAllSessionsResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        sessions::revoke_all_sessions(&self.ctx, &caller, &r.user_id)
            .await
            .map_err(to_status)?;
        ok(pb::RevokeAllSessionsResponse {})
    }

    async fn revoke_sessions_from_all_users(
        &self,
        request: Request<pb::RevokeSessionsFromAllUsersRequest>,
    ) -> RpcResult<pb::RevokeSessionsFromAllUsersResponse> {
        let caller = self.caller(&request).await?;
        sessions::revoke_sessions_from_all_users(&self.ctx, &caller)
            .await
            .map_err(to_status)?;
        ok(pb::RevokeSessionsFromAllUsersResponse {})
    }

    async fn regen_command_token(
        &self,
        request: Request<pb::RegenCommandTokenRequest>,
    ) -> RpcResult<pb::RegenCommandTokenResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let token = commands::regen_command_token(&self.ctx, &caller, &r.command_id)
            .await
            .map_err(to_status)?;
        ok(pb::RegenCommandTokenResponse {
            token: token.expose().to_owned(),
        })
    }

    async fn create_command(
        &self,
        request: Request<pb::CreateCommandRequest>,
    ) -> RpcResult<pb::CreateCommandResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let created = commands::create_command(
            &self.ctx,
            &caller,
            NewCommand {
                team_id: r.team_id,
                trigger: r.trigger,
                method: r.method,
                url: r.url,
                display_name: r.display_name,
                description: r.description,
                username: r.username,
                icon_url: r.icon_url,
                auto_complete: r.auto_complete,
                auto_complete_desc: r.auto_complete_desc,
                auto_complete_hint: r.auto_complete_hint,
            },
        )
        .await
        .map_err(to_status)?;
        ok(pb::CreateCommandResponse {
            token: created.token.expose().to_owned(),
            command: Some(created.command.into()),
        })
    }

    async fn verify_command_token(
        &self,
        request: Request<pb::VerifyCommandTokenRequest>,
    ) -> RpcResult<pb::VerifyCommandTokenResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let valid = commands::verify_command_token(&self.ctx, &caller, &r.command_id, &r.token)
            .await
            .map_err(to_status)?;
        ok(pb::VerifyCommandTokenResponse { valid })
    }

    async fn add_team_member(
        &self,
        request: Request<pb::AddTeamMemberRequest>,
    ) -> RpcResult<pb::AddTeamMemberResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let member =
            commands::add_team_member(&self.ctx, &caller, &r.team_id, &r.user_id, &r.roles)
                .await
                .map_err(to_status)?;
        ok(pb::AddTeamMemberResponse {
            team_member: Some(member.into()),
        })
    }

    async fn get_webrtc_token(
        &self,
        request: Request<pb::GetWebrtcTokenRequest>,
    ) -> RpcResult<pb::GetWebrtcTokenResponse> {
        let caller = self.caller(&request).await?;
        let c = webrtc::get_webrtc_token(&self.ctx, &caller).map_err(to_status)?;
        ok(pb::GetWebrtcTokenResponse {
            token: c.token,
            gateway_url: c.gateway_url,
            stun_uri: c.stun_uri,
            turn_uri: c.turn_uri,
            turn_username: c.turn_username,
            turn_password: c.turn_password,
            credential_ttl: Some(prost_types::Duration {
                seconds: i64::try_from(c.credential_ttl_secs).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        })
    }

    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> RpcResult<pb::CreateSessionResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let lifetime_ms = r
            .lifetime
            .as_ref()
            .map(|d| convert::duration_millis(d, "lifetime"))
            .transpose()
            .map_err(to_status)?;
        let created = sessions::create_session(
            &self.ctx,
            &caller,
            NewSession {
                user_id: r.user_id,
                lifetime_ms,
                device_id: r.device_id,
                props: r.props.into_iter().collect(),
            },
        )
        .await
        .map_err(to_status)?;
        ok(pb::CreateSessionResponse {
            token: created.token.expose().to_owned(),
            session: Some(created.session.into()),
        })
    }

    async fn get_me(&self, request: Request<pb::GetMeRequest>) -> RpcResult<pb::GetMeResponse> {
        let caller = self.caller(&request).await?;
        let user = users::get_me(&caller).map_err(to_status)?;
        ok(pb::GetMeResponse {
            user: Some(user.clone().into()),
        })
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
        .await
        .map_err(to_status)?;
        let stream = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::ReceiverStream::new(events),
            |event| {
                event
                    .map(|e| pb::WatchRevocationsResponse {
                        event: Some(convert::revocation_event(e)),
                    })
                    .map_err(to_status)
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
        let found = introspection::introspect_token(&self.ctx, &caller, &r.token)
            .await
            .map_err(to_status)?;
        ok(convert::introspection(found))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> RpcResult<pb::CreateUserResponse> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let user = users::create_user(
            &self.ctx,
            &caller,
            NewUser {
                id: r.id,
                username: r.username,
                email: r.email,
                roles: r.roles,
                is_bot: r.is_bot,
                bot_owner_id: r.bot_owner_id,
            },
        )
        .await
        .map_err(to_status)?;
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
        let user = users::update_user_roles(&self.ctx, &caller, &r.user_id, &r.roles)
            .await
            .map_err(to_status)?;
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
        let user = users::update_user_active(&self.ctx, &caller, &r.user_id, r.active)
            .await
            .map_err(to_status)?;
        ok(pb::UpdateUserActiveResponse {
            user: Some(user.into()),
        })
    }
}
