//! The token gate: the rules behind the endpoints that let standard infrastructure ask "is
//! this token valid, and whose is it?" without our stubs: RFC 7662 token introspection (an
//! OAuth 2.0 resource server library), nginx's `auth_request`, and the identity headers every
//! gateway (those two and Envoy's ext_authz) forwards upstream. Both reuse the one token
//! check ([`Context::authenticate`], the same cache) and [`ActiveCredential`]; nothing here
//! reads or writes the database itself.
//!
//! What a refusal says never depends on why a token does not authenticate (unknown,
//! revoked, disabled, expired, user deactivated, CSRF evidence missing): there is one
//! [`Verdict::Inactive`].

use super::{
    Context,
    caller::Caller,
    credentials::{Presentation, check_presentation},
    error::{Error, Reason, Result},
    introspection::ActiveCredential,
    permissions::{Permission, is_valid_role_name},
    secret::PlainToken,
};

/// At most this many distinct roles may be required by one check.
pub const MAX_REQUIRED_ROLES: usize = 16;

/// The system roles a check requires, every one of them (the `role` query parameters of
/// `auth_request`). Each is a role the server knows: a typo in a proxy's configuration is a
/// loud 400, not a silent "nobody may pass".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequiredRoles(Vec<String>);

impl RequiredRoles {
    /// No requirement beyond a credential that authenticates.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses the required roles: each a valid role name the server knows (duplicates count
    /// once), at most [`MAX_REQUIRED_ROLES`]. Refused with `InvalidArgument` naming `role`.
    pub fn parse<'a>(ctx: &Context, roles: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut required: Vec<String> = Vec::new();
        for role in roles {
            if !is_valid_role_name(role) {
                return Err(Error::invalid(
                    "role",
                    Reason::InvalidUrlParam,
                    "a role name is 1 to 64 lower-case letters, digits or '_'",
                ));
            }
            if !ctx.policy().roles.is_known(role) {
                return Err(Error::invalid(
                    "role",
                    Reason::InvalidUrlParam,
                    format!("unknown role {role:?}"),
                ));
            }
            if !required.iter().any(|r| r == role) {
                required.push(role.to_owned());
            }
        }
        if required.len() > MAX_REQUIRED_ROLES {
            return Err(Error::invalid(
                "role",
                Reason::InvalidUrlParam,
                format!("at most {MAX_REQUIRED_ROLES} roles may be required"),
            ));
        }
        Ok(Self(required))
    }

    /// The roles, in the order given.
    pub fn roles(&self) -> &[String] {
        &self.0
    }

    /// The first required role `credential`'s owner does not hold.
    fn first_missing(&self, credential: &ActiveCredential) -> Option<&str> {
        self.0
            .iter()
            .find(|role| !credential.roles().iter().any(|held| held == *role))
            .map(String::as_str)
    }
}

/// What a gateway check concludes about a presented credential.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The credential authenticates and its owner holds every required role.
    Allowed(ActiveCredential),
    /// The credential authenticates but its owner lacks `role` (the first missing one).
    MissingRole {
        credential: ActiveCredential,
        role: String,
    },
    /// The credential does not authenticate, for whatever reason (never said).
    Inactive,
}

/// Checks a token presented to a gateway: the same check as every request's
/// ([`Context::authenticate`], answered from the cache when it can be, never writing to the
/// database on a cache hit), then the rules of the place it was presented in (CSRF evidence
/// for a cookie on a write, only OAuth sessions in the query string; see
/// [`check_presentation`]), then the required roles. A token that fails either of the first
/// two is [`Verdict::Inactive`]; an error means the question could not be decided (the
/// database is unavailable).
pub async fn check_presented(
    ctx: &Context,
    token: &PlainToken,
    presentation: Presentation<'_>,
    required: &RequiredRoles,
) -> Result<Verdict> {
    let principal = match ctx.authenticate_caller(token).await {
        Ok(principal) => principal,
        Err(Error::Unauthenticated { .. }) => return Ok(Verdict::Inactive),
        Err(other) => return Err(other),
    };
    match check_presentation(&principal, presentation, ctx.policy().strict_csrf) {
        Ok(()) => {}
        Err(Error::Unauthenticated { .. }) => return Ok(Verdict::Inactive),
        Err(other) => return Err(other),
    }
    let credential = ActiveCredential::new(principal);
    Ok(match required.first_missing(&credential) {
        None => Verdict::Allowed(credential),
        Some(role) => Verdict::MissingRole {
            role: role.to_owned(),
            credential,
        },
    })
}

/// How the caller of RFC 7662 introspection authenticates (RFC 7662 section 2.1: a client
/// credential, or a bearer token).
#[derive(Debug)]
pub enum ClientCredential {
    /// HTTP Basic: the client id is the caller's user id or username, the client secret a
    /// session token or personal access token of that same user.
    Basic {
        client_id: String,
        client_secret: PlainToken,
    },
    /// A bearer token (session token or personal access token).
    Bearer(PlainToken),
}

/// Authenticates the caller of RFC 7662 introspection and requires
/// [`Permission::IntrospectToken`]. `Unauthenticated` when the credential does not
/// authenticate (or, for Basic, belongs to another user than `client_id` names);
/// `PermissionDenied` when the caller lacks the permission; `Unavailable` when the database
/// cannot be reached.
pub async fn authenticate_introspection_client(
    ctx: &Context,
    credential: &ClientCredential,
) -> Result<Caller> {
    let (secret, client_id) = match credential {
        ClientCredential::Basic {
            client_id,
            client_secret,
        } => (client_secret, Some(client_id.as_str())),
        ClientCredential::Bearer(token) => (token, None),
    };
    let principal = ctx.authenticate_caller(secret).await?;
    if let Some(client_id) = client_id {
        let user = &principal.user;
        let names_the_owner =
            user.id.as_str() == client_id || user.username.eq_ignore_ascii_case(client_id);
        if !names_the_owner {
            return Err(super::authenticate::refused(
                "introspection client id names another user than the secret's",
            ));
        }
    }
    let caller = Caller::User(principal);
    ctx.require_permission(&caller, Permission::IntrospectToken)?;
    Ok(caller)
}

/// The identity headers an allowed request carries upstream, lower-case. A gateway sets the
/// ones that apply and removes the others, so a client-sent copy never reaches the upstream.
pub const IDENTITY_HEADERS: [&str; 6] = [
    "x-auth-user-id",
    "x-auth-username",
    "x-auth-roles",
    "x-auth-token-type",
    "x-auth-token-id",
    "x-auth-session-id",
];

/// The identity headers of `credential` (names from [`IDENTITY_HEADERS`]): the user id and
/// username, the system roles space-separated, the credential's kind (`session` or
/// `user_access_token`), the personal access token's id (only for one) and the session id.
pub fn identity_headers(credential: &ActiveCredential) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("x-auth-user-id", credential.user_id().to_string()),
        ("x-auth-username", credential.username().to_owned()),
        ("x-auth-roles", credential.roles().join(" ")),
        ("x-auth-token-type", credential.kind().id().to_owned()),
    ];
    if let Some(token_id) = credential.token_id() {
        headers.push(("x-auth-token-id", token_id.to_string()));
    }
    headers.push(("x-auth-session-id", credential.session_id().to_string()));
    headers
}
