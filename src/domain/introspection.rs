//! IntrospectToken, the hot path: is this token valid, and whose is it? The answer
//! ([`Introspection`]) is computed here once; the transports only spell it.

use std::sync::Arc;

use super::{
    Context,
    caller::{Caller, Principal},
    error::{Error, Reason, Result},
    ids::{SessionId, TokenId, UserId},
    model::UnixMillis,
    permissions::{Permission, Scopes},
    secret::PlainToken,
};

/// What a presented credential is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A login session's token.
    Session,
    /// A personal access token's secret.
    PersonalAccessToken,
}

impl CredentialKind {
    /// The kind's name on the REST shim.
    pub fn id(self) -> &'static str {
        match self {
            CredentialKind::Session => "session",
            CredentialKind::PersonalAccessToken => "user_access_token",
        }
    }
}

/// The answer of an introspection: `None` when the token does not authenticate (unknown,
/// revoked, disabled, expired, or its user deactivated).
pub type Introspection = Option<ActiveCredential>;

/// A credential that authenticates, as introspection describes it.
#[derive(Debug, Clone)]
pub struct ActiveCredential(Arc<Principal>);

impl ActiveCredential {
    /// The credential `principal` authenticated as.
    pub(super) fn new(principal: Arc<Principal>) -> Self {
        Self(principal)
    }

    /// The authenticated principal behind it (for the transports' request span).
    pub fn principal(&self) -> &Principal {
        &self.0
    }

    /// What the credential is.
    pub fn kind(&self) -> CredentialKind {
        match self.0.access_token {
            Some(_) => CredentialKind::PersonalAccessToken,
            None => CredentialKind::Session,
        }
    }

    /// The owner.
    pub fn user_id(&self) -> &UserId {
        &self.0.user.id
    }

    /// The owner's username.
    pub fn username(&self) -> &str {
        &self.0.user.username
    }

    /// The owner's system roles.
    pub fn roles(&self) -> &[String] {
        &self.0.user.roles
    }

    /// A personal access token's scopes (unscoped for a session or an unscoped token).
    pub fn scopes(&self) -> Scopes {
        self.0
            .access_token
            .as_ref()
            .map_or(Scopes::unscoped(), |t| t.scopes)
    }

    /// Whether the owner is a bot.
    pub fn is_bot(&self) -> bool {
        self.0.user.is_bot
    }

    /// The personal access token's id; `None` for a session.
    pub fn token_id(&self) -> Option<&TokenId> {
        self.0.access_token.as_ref().map(|t| &t.id)
    }

    /// The session (a personal access token's minted session for a token).
    pub fn session_id(&self) -> &SessionId {
        &self.0.session.id
    }

    /// When the credential stops authenticating; 0 means never.
    pub fn expires_at(&self) -> UnixMillis {
        self.0.expires_at()
    }

    /// When the credential was issued: a personal access token's creation, or the
    /// session's.
    pub fn issued_at(&self) -> UnixMillis {
        match &self.0.access_token {
            Some(token) => token.create_at,
            None => self.0.session.create_at,
        }
    }
}

/// Checks `token` for an internal service. `Ok(None)` means the token does not authenticate:
/// a normal answer, not an error. An error means the question could not be decided (for example the database is
/// unavailable). Never writes to the database, except minting a personal access token's
/// session on its very first use.
pub async fn introspect_token(
    ctx: &Context,
    caller: &Caller,
    token: &str,
) -> Result<Introspection> {
    ctx.require_permission(caller, Permission::IntrospectToken)?;
    if token.is_empty() {
        return Err(Error::invalid(
            "token",
            Reason::InvalidBodyParam,
            "must not be empty",
        ));
    }
    match ctx.authenticate(&PlainToken::from_presented(token)).await {
        Ok(principal) => Ok(Some(ActiveCredential::new(principal))),
        Err(Error::Unauthenticated { .. }) => Ok(None),
        Err(other) => Err(other),
    }
}
