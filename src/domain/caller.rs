//! Who is calling: the operator on the machine, or an authenticated user with the credential
//! it presented. Every domain operation takes a [`Caller`]; what it may do is decided in
//! `permissions`, how a presented token becomes a [`Principal`] in `authenticate`.

use std::{fmt, sync::Arc};

use super::{
    error::{Reason, Result},
    ids::UserId,
    model::{Revocation, Session, UnixMillis, User, UserAccessToken},
};

/// Who performs an operation.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The operator on the machine (the `admin` CLI): unrestricted, like Mattermost's local
    /// mode.
    Local,
    /// An authenticated user.
    User(Arc<Principal>),
}

/// An authenticated credential: the user, the session it is (or was minted as), and for a
/// personal access token the token itself.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub session: Session,
    pub access_token: Option<UserAccessToken>,
}

impl Principal {
    /// Whether `revocation` may take this credential away (or change what it may do).
    pub fn covered_by(&self, revocation: &Revocation) -> bool {
        match revocation {
            Revocation::All => true,
            Revocation::Session(id) => &self.session.id == id,
            Revocation::AccessToken(id) => {
                self.access_token.as_ref().map(|t| &t.id) == Some(id)
                    || self.session.user_access_token_id.as_ref() == Some(id)
            }
            Revocation::User(id) => &self.user.id == id,
        }
    }

    /// When the credential stops authenticating; 0 means never. For a personal access
    /// token, the token's expiry, unless its session was brought forward to end earlier (a
    /// secret replaced by a rotation, during its grace period).
    pub fn expires_at(&self) -> UnixMillis {
        match &self.access_token {
            Some(token) => {
                let session = self.session.expires_at;
                let brought_forward = session > 0
                    && (token.expires_at == 0 || session < token.expires_at)
                    && session
                        < self
                            .session
                            .create_at
                            .saturating_add(super::authenticate::ACCESS_TOKEN_SESSION_LIFETIME_MS);
                if brought_forward {
                    session
                } else {
                    token.expires_at
                }
            }
            None => self.session.expires_at,
        }
    }
}

impl Caller {
    /// The calling user's id, if a user calls.
    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Caller::Local => None,
            Caller::User(p) => Some(&p.user.id),
        }
    }

    /// Resolves a user id parameter: "me" is the caller.
    pub fn resolve_user_id(&self, raw: &str) -> Result<UserId> {
        match (raw, self.user_id()) {
            ("me", Some(id)) => Ok(id.clone()),
            _ => UserId::parse(raw, "user_id", Reason::InvalidUrlParam),
        }
    }
}

/// How the audit log names a caller: `local`, or the user's id.
impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Local => f.write_str("local"),
            Caller::User(p) => f.write_str(p.user.id.as_str()),
        }
    }
}
