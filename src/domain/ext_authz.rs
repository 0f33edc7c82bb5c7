//! External authorization for gateways (Envoy's `ext_authz`, Istio's external authorizer): a
//! gateway asks, for each request it forwards, whether the request's credential authenticates
//! and whose it is. The credential is read from the forwarded request exactly as the REST
//! shim reads it ([`PresentedRequest`]), checked by the same [`Context::authenticate`] (same
//! cache: a hit writes nothing), and the answer is a [`Decision`]: allow with the identity, or
//! deny as unauthenticated or forbidden, never saying why a token is inactive.
//!
//! Who may ask ([`Gateway`]): a client certificate whose subject is listed in
//! `ext_authz.allowed_client_subjects` (a service identity holding the introspection
//! permission), or a caller token holding `introspect_token`.

use std::{net::IpAddr, sync::Arc};

use super::{
    Context,
    caller::Caller,
    credentials::{PresentedRequest, check_presentation, presented_token},
    error::{Error, Reason, Result},
    introspection::ActiveCredential,
    lifecycle::RequestOrigin,
    permissions::Permission,
    secret::PlainToken,
};

/// Settings of external authorization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtAuthzPolicy {
    /// Client certificate subjects (normalized by [`normalize_subject`]) that may call Check
    /// as a service identity with the introspection permission.
    pub allowed_client_subjects: Vec<String>,
}

/// The caller of a Check: the gateway, as its transport authenticated it.
#[derive(Debug, Default)]
pub struct Gateway<'a> {
    /// The subject of the client certificate the connection presented (mutual TLS), as the
    /// certificate spells it (`CN=envoy, O=platform`).
    pub client_subject: Option<&'a str>,
    /// The token the call carries (`authorization: Bearer ...` metadata).
    pub token: Option<PlainToken>,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No credential, or one that does not authenticate (unknown, revoked, disabled,
    /// expired, user deactivated, CSRF evidence missing on a cookie write, a non-OAuth token
    /// in the query string): all alike, HTTP 401.
    Unauthenticated,
    /// The credential authenticates but lacks a role the route requires: HTTP 403.
    Forbidden,
}

impl Denial {
    /// The reason the deny response reports (its Mattermost error id).
    pub fn reason(self) -> Reason {
        match self {
            Denial::Unauthenticated => Reason::SessionExpired,
            Denial::Forbidden => Reason::PermissionDenied,
        }
    }
}

/// The answer to a Check.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Forward the request, carrying this identity.
    Allow(ActiveCredential),
    /// Refuse the request.
    Deny(Denial),
}

/// The outcome label of `token_service_ext_authz_checks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    DeniedUnauthenticated,
    DeniedForbidden,
    /// The question could not be decided (database unavailable).
    Error,
    /// The gateway itself was not allowed to ask.
    CallerRejected,
}

impl Outcome {
    /// Every outcome, in the order `/metrics` lists them.
    pub const ALL: [Outcome; 5] = [
        Outcome::Allowed,
        Outcome::DeniedUnauthenticated,
        Outcome::DeniedForbidden,
        Outcome::Error,
        Outcome::CallerRejected,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::DeniedUnauthenticated => "denied_unauthenticated",
            Outcome::DeniedForbidden => "denied_forbidden",
            Outcome::Error => "error",
            Outcome::CallerRejected => "caller_rejected",
        }
    }
}

/// Decides a Check: first whether `gateway` may ask (else `Unauthenticated` or
/// `PermissionDenied`, an error of the call itself), then what the forwarded `request`'s
/// credential is. `required_roles` (space- or comma-separated) are roles the credential's user
/// must all hold; missing one is [`Denial::Forbidden`]. An error (the database unavailable)
/// means the question could not be decided. Counts the outcome.
///
/// `downstream` is the forwarded request's client address as the gateway reports it: the
/// forwarded credential is used from there, so a bound token is checked against it (and its
/// last use recorded with it); without one, a bound token is refused. The gateway's own
/// credential is checked against the gateway's address.
pub async fn check(
    ctx: &Context,
    gateway: Gateway<'_>,
    request: &PresentedRequest<'_>,
    required_roles: Option<&str>,
    downstream: Option<IpAddr>,
) -> Result<Decision> {
    let answer = match authorize_gateway(ctx, gateway).await {
        Ok(()) => {
            let origin = RequestOrigin::with_current(|o| o.cloned()).unwrap_or_default();
            RequestOrigin {
                ip: downstream,
                ..origin
            }
            .scope(decide(ctx, request, required_roles))
            .await
        }
        Err(err) => {
            let outcome = match err {
                Error::Unauthenticated { .. } | Error::PermissionDenied { .. } => {
                    Outcome::CallerRejected
                }
                _ => Outcome::Error,
            };
            ctx.metrics().record_ext_authz_check(outcome.label());
            return Err(err);
        }
    };
    let outcome = match &answer {
        Ok(Decision::Allow(_)) => Outcome::Allowed,
        Ok(Decision::Deny(Denial::Unauthenticated)) => Outcome::DeniedUnauthenticated,
        Ok(Decision::Deny(Denial::Forbidden)) => Outcome::DeniedForbidden,
        Err(_) => Outcome::Error,
    };
    ctx.metrics().record_ext_authz_check(outcome.label());
    answer
}

/// Whether `gateway` may call Check: its client certificate's subject is listed, or its
/// token holds `introspect_token`.
async fn authorize_gateway(ctx: &Context, gateway: Gateway<'_>) -> Result<()> {
    if let Some(subject) = gateway.client_subject {
        let subject = normalize_subject(subject);
        if ctx
            .policy()
            .ext_authz
            .allowed_client_subjects
            .contains(&subject)
        {
            return Ok(());
        }
    }
    let Some(token) = gateway.token else {
        return Err(Error::Unauthenticated {
            reason: Reason::SessionExpired,
        });
    };
    let principal = ctx.authenticate_caller(&token).await?;
    ctx.require_permission(&Caller::User(principal), Permission::IntrospectToken)
}

/// The decision for the forwarded request's credential.
async fn decide(
    ctx: &Context,
    request: &PresentedRequest<'_>,
    required_roles: Option<&str>,
) -> Result<Decision> {
    const UNAUTHENTICATED: Decision = Decision::Deny(Denial::Unauthenticated);
    let Some((raw, location)) = request.find_token() else {
        return Ok(UNAUTHENTICATED);
    };
    let Some(token) = presented_token(&raw) else {
        return Ok(UNAUTHENTICATED);
    };
    let principal = match ctx.authenticate(&token).await {
        Ok(principal) => principal,
        Err(Error::Unauthenticated { .. }) => return Ok(UNAUTHENTICATED),
        Err(other) => return Err(other),
    };
    if check_presentation(
        &principal,
        request.presentation(location),
        ctx.policy().strict_csrf,
    )
    .is_err()
    {
        return Ok(UNAUTHENTICATED);
    }
    let held = &principal.user.roles;
    let missing = required_roles
        .into_iter()
        .flat_map(|roles| roles.split([' ', ',']))
        .filter(|role| !role.is_empty())
        .any(|role| !held.iter().any(|h| h == role));
    if missing {
        return Ok(Decision::Deny(Denial::Forbidden));
    }
    Ok(Decision::Allow(ActiveCredential::new(Arc::clone(
        &principal,
    ))))
}

/// A certificate subject in one spelling, for comparison: its attributes in the order given,
/// each `TYPE=value` with the type upper-cased and spaces around `=` and `,` removed, joined
/// by `,`. So `CN = envoy, O = platform` (OpenSSL's `-subject`), `CN=envoy,O=platform` and
/// `cn=envoy, O=platform` are the same subject. Values are compared exactly.
pub fn normalize_subject(subject: &str) -> String {
    subject
        .split(',')
        .map(|attribute| match attribute.split_once('=') {
            Some((kind, value)) => format!("{}={}", kind.trim().to_ascii_uppercase(), value.trim()),
            None => attribute.trim().to_owned(),
        })
        .filter(|attribute| !attribute.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks a configured subject: at least one `TYPE=value` attribute, none empty.
pub fn validate_subject(subject: &str) -> std::result::Result<(), String> {
    let attributes: Vec<&str> = subject.split(',').collect();
    let well_formed = attributes.iter().all(|attribute| {
        attribute
            .split_once('=')
            .is_some_and(|(kind, value)| !kind.trim().is_empty() && !value.trim().is_empty())
    });
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "{subject:?} is not a certificate subject: expected TYPE=value attributes separated \
             by commas, such as \"CN=envoy-gateway, O=platform\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_compare_in_one_spelling() {
        assert_eq!(
            normalize_subject("CN = envoy, O = platform"),
            "CN=envoy,O=platform"
        );
        assert_eq!(
            normalize_subject("cn=envoy,O=platform"),
            "CN=envoy,O=platform"
        );
        assert_ne!(normalize_subject("CN=Envoy"), normalize_subject("CN=envoy"));
        assert!(validate_subject("CN=envoy-gateway, O=platform").is_ok());
        for bad in ["", "envoy", "CN=", "CN=x,", "=x"] {
            let err = validate_subject(bad).unwrap_err();
            assert!(err.contains("TYPE=value"), "{bad}: {err}");
        }
    }
}
