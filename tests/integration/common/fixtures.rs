//! The actors tests act as, provisioned directly through the domain as the local operator (as
//! `token-service admin` does): users with roles, token users, admins and bots, each with a
//! login session, and personal access tokens that already exist.

use token_service::domain::{
    access_tokens::{self, NewUserAccessToken},
    caller::Caller,
    secret::PlainToken,
    sessions::{self, NewSession},
    users::{self, NewUser},
};

use super::TestServer;

/// A user with a login session token.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub username: String,
    /// A session token for this user (like a Mattermost login).
    pub token: String,
}

impl TestServer {
    /// Creates a user with `roles` and a login session.
    pub async fn user(&self, username: &str, roles: &[&str]) -> Actor {
        self.create_actor(username, roles, false, None).await
    }

    /// A plain user (`system_user`).
    pub async fn basic_user(&self, username: &str) -> Actor {
        self.user(username, &["system_user"]).await
    }

    /// A user allowed to manage their own tokens (`system_user system_user_access_token`).
    pub async fn token_user(&self, username: &str) -> Actor {
        self.user(username, &["system_user", "system_user_access_token"])
            .await
    }

    /// A system admin.
    pub async fn admin(&self, username: &str) -> Actor {
        self.user(username, &["system_user", "system_admin"]).await
    }

    /// A bot owned by `owner` (or by nobody), with a session.
    pub async fn bot(&self, username: &str, owner: Option<&Actor>) -> Actor {
        self.create_actor(
            username,
            &["system_user"],
            true,
            owner.map(|o| o.id.as_str()),
        )
        .await
    }

    async fn create_actor(
        &self,
        username: &str,
        roles: &[&str],
        is_bot: bool,
        owner: Option<&str>,
    ) -> Actor {
        let user = users::create_user(
            &self.ctx,
            &Caller::Local,
            NewUser {
                username: username.to_owned(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                is_bot,
                bot_owner_id: owner.unwrap_or_default().to_owned(),
                ..NewUser::default()
            },
        )
        .await
        .expect("create fixture user");
        let created = sessions::create_session(
            &self.ctx,
            &Caller::Local,
            NewSession {
                user_id: user.id.to_string(),
                lifetime_ms: Some(3_600_000),
                ..NewSession::default()
            },
        )
        .await
        .expect("create fixture session");
        Actor {
            id: user.id.to_string(),
            username: user.username,
            token: created.token.expose().to_owned(),
        }
    }

    /// A personal access token for `owner` made by the local operator (as `token-service admin
    /// create-token` does), whatever the running server's settings: a token that already
    /// existed, for example before `enable_user_access_tokens` was switched off. With `used`,
    /// it has also authenticated once, so its session is minted. Returns (token id, secret).
    pub async fn existing_pat(&self, owner: &Actor, used: bool) -> (String, String) {
        let created = access_tokens::create_user_access_token(
            &self.ctx,
            &Caller::Local,
            NewUserAccessToken {
                user_id: owner.id.clone(),
                description: "made earlier".into(),
                expires_at: None,
                restrictions: Default::default(),
            },
        )
        .await
        .expect("create fixture token");
        let secret = created.secret.expose().to_owned();
        if used {
            self.ctx
                .authenticate(&PlainToken::from_presented(secret.clone()))
                .await
                .expect("the fixture token authenticates where tokens are on");
        }
        (created.token.id.to_string(), secret)
    }
}
