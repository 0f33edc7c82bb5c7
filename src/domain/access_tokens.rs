//! Personal access tokens: create, list, search, get, revoke, disable, enable. Check order
//! follows Mattermost's handlers (see the spec), so both transports refuse the same requests
//! for the same reasons. Where Mattermost reads the request body in the middle of its checks
//! (create, search), the operation is offered in two steps: an authorization that returns a
//! grant, then the action on the grant, so a transport can decode its body in between.

use serde_json::json;
use tracing::info;

use super::model::{AccessTokenChange, TokenWrite};
use super::token_format::SecretKind;
use super::{
    Context,
    bound_tokens::BoundCidrs,
    caller::Caller,
    error::{Error, Reason, Result},
    ids::{TokenId, UserId},
    lifecycle::{Action, NewRecord},
    model::{LastUse, Revocation, UnixMillis, User, UserAccessToken},
    paging::{self, ListPaging},
    permissions::{Permission, Scopes, caller_scopes},
    secret::PlainToken,
    text::require_no_nul,
};

/// The token a revoke, disable or enable request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRef {
    /// A well-formed token id.
    Id(TokenId),
    /// A value that cannot be a token id: it matches no token.
    Unmatchable,
}

impl TokenRef {
    /// A `token_id` field that must be a well-formed id: empty or malformed is
    /// `InvalidArgument` naming the field, before anything else is checked.
    pub fn parse(raw: &str) -> Result<Self> {
        if raw.is_empty() {
            return Err(Error::invalid(
                "token_id",
                Reason::InvalidBodyParam,
                "is required",
            ));
        }
        TokenId::parse(raw, "token_id", Reason::InvalidBodyParam).map(TokenRef::Id)
    }

    /// Any value, as Mattermost's revoke/disable/enable handlers take it: the permission is
    /// checked first and an empty or malformed id is simply not found (403 or 404, never 400).
    pub fn lenient(raw: &str) -> Self {
        TokenId::parse(raw, "token_id", Reason::InvalidBodyParam)
            .map_or(TokenRef::Unmatchable, TokenRef::Id)
    }
}

/// Longest description, in bytes (Mattermost counts bytes).
pub const MAX_DESCRIPTION_BYTES: usize = 255;

const DAY_MS: i64 = 86_400_000;

/// What a caller asks for when creating a token.
#[derive(Debug, Clone)]
pub struct NewUserAccessToken {
    /// Target user id, or "me".
    pub user_id: String,
    pub description: String,
    /// Unix milliseconds; `None` means never.
    pub expires_at: Option<UnixMillis>,
    /// What narrows the token beyond Mattermost (none by default).
    pub restrictions: TokenRestrictions,
}

/// The token fields of a create request (the body of Mattermost's request).
#[derive(Debug, Clone, Default)]
pub struct NewTokenFields {
    pub description: String,
    /// Unix milliseconds; `None` means never.
    pub expires_at: Option<UnixMillis>,
    /// What narrows the token beyond Mattermost (none by default).
    pub restrictions: TokenRestrictions,
}

/// token-service's restrictions of a new token, as requested (validated at creation). Empty
/// lists: a token as in Mattermost.
#[derive(Debug, Clone, Default)]
pub struct TokenRestrictions {
    /// The client address blocks the token may be used from (`bound_cidrs`).
    pub bound_cidrs: Vec<String>,
    /// The scopes that narrow what it may do (`scopes`).
    pub scopes: Vec<String>,
}

/// A newly created token and its secret, which is not stored and never shown again.
#[derive(Debug)]
pub struct CreatedUserAccessToken {
    pub token: UserAccessToken,
    pub secret: PlainToken,
}

/// Creates a personal access token: [`token_creation`], then [`TokenCreation::create`].
pub async fn create_user_access_token(
    ctx: &Context,
    caller: &Caller,
    request: NewUserAccessToken,
) -> Result<CreatedUserAccessToken> {
    let NewUserAccessToken {
        user_id,
        description,
        expires_at,
        restrictions,
    } = request;
    token_creation(ctx, caller, &user_id)
        .await?
        .create(
            ctx,
            caller,
            NewTokenFields {
                description,
                expires_at,
                restrictions,
            },
        )
        .await
}

/// The first step of creating a token, Mattermost's checks before it reads the request
/// body: `user_id` (a user id, or "me") is well formed and the user exists (404 otherwise,
/// before any permission check).
pub async fn token_creation(
    ctx: &Context,
    caller: &Caller,
    user_id: &str,
) -> Result<TokenCreation> {
    let user_id = caller.resolve_user_id(user_id)?;
    let owner = match caller {
        // A user creating their own token: the record their credential was just checked
        // against (kept as fresh as the credential itself by the cache's invalidation)
        // is the owner; no second read.
        Caller::User(principal) if principal.user.id == user_id => principal.user.clone(),
        _ => ctx.require_user(&user_id).await?,
    };
    Ok(TokenCreation { owner })
}

/// A token creation that passed its first step: the owner exists.
#[derive(Debug)]
pub struct TokenCreation {
    owner: User,
}

impl TokenCreation {
    /// The rest of the checks, in Mattermost's order, and the creation.
    pub async fn create(
        self,
        ctx: &Context,
        caller: &Caller,
        request: NewTokenFields,
    ) -> Result<CreatedUserAccessToken> {
        let user = self.owner;
        if request.description.is_empty() {
            return Err(Error::invalid(
                "description",
                Reason::InvalidBodyParam,
                "must not be empty",
            ));
        }
        ctx.require_permission(caller, Permission::CreateUserAccessToken)?;
        ctx.require_user_or_bot_access(caller, &user.id).await?;
        ctx.require_permission_over(caller, &user)?;
        require_tokens_enabled_for(ctx, &user)?;
        let now = ctx.now();
        check_expiry(ctx, &user, request.expires_at, now)?;
        require_no_nul("description", &request.description)?;
        if request.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(Error::invalid(
                "description",
                Reason::TokenDescriptionTooLong,
                format!("must be at most {MAX_DESCRIPTION_BYTES} bytes"),
            ));
        }
        // The token model's own check, after the description's as in Mattermost.
        require_expiry_after_epoch(request.expires_at)?;
        let (bound_cidrs, scopes) = narrowed_like_caller(caller, &request.restrictions)?;

        let secret = ctx.mint_secret(SecretKind::PersonalAccessToken);
        let token = UserAccessToken {
            id: TokenId::generate(),
            user_id: user.id.clone(),
            description: request.description,
            is_active: true,
            expires_at: request.expires_at.unwrap_or(0),
            create_at: now,
            last_use: LastUse::default(),
            bound_cidrs,
            scopes,
        };
        let mut detail = json!({"description": token.description, "expires_at": token.expires_at});
        if token.bound_cidrs.is_bound() {
            detail["bound_cidrs"] = json!(token.bound_cidrs.texts());
        }
        if token.scopes.is_scoped() {
            detail["scopes"] = json!(token.scopes.ids());
        }
        let record = NewRecord::by(caller, Action::AccessTokenCreated)
            .user(&token.user_id)
            .token(&token.id)
            .credential(ctx.audit_key(), &secret)
            .detail(detail);
        ctx.store()
            .insert_access_token(&token, &ctx.hasher().digest(&secret), &record)
            .await?;
        info!(target: "audit", action = "create_user_access_token", token_id = %token.id,
        user_id = %token.user_id, caller = %caller, "personal access token created");
        Ok(CreatedUserAccessToken { token, secret })
    }
}

/// The restrictions of a new token, validated, never wider than the caller's own: a caller
/// authenticated with a scoped or bound token may only create tokens within its scopes and
/// address blocks (a request without them inherits the caller's), so a narrowed token cannot
/// mint itself a wider one. `InvalidArgument` naming the field otherwise.
fn narrowed_like_caller(
    caller: &Caller,
    requested: &TokenRestrictions,
) -> Result<(BoundCidrs, Scopes)> {
    let mut bound = BoundCidrs::parse_request(&requested.bound_cidrs)?;
    let mut scopes = Scopes::parse_request(&requested.scopes)?;
    let (caller_bound, caller_scopes) = caller_restrictions(caller);
    if !scopes.is_scoped() {
        scopes = caller_scopes;
    }
    if !scopes.within(caller_scopes) {
        return Err(Error::invalid(
            "scopes",
            Reason::InvalidBodyParam,
            format!(
                "a token with scopes [{}] may only create tokens within them",
                caller_scopes.to_stored()
            ),
        ));
    }
    if !bound.is_bound() {
        bound = caller_bound.clone();
    }
    if !bound.within(&caller_bound) {
        return Err(Error::invalid(
            "bound_cidrs",
            Reason::InvalidBodyParam,
            format!(
                "a token bound to [{}] may only create tokens bound within those blocks",
                caller_bound.to_stored()
            ),
        ));
    }
    Ok((bound, scopes))
}

/// The scopes and address blocks of the caller's own credential (none for the operator, a
/// session or an unrestricted token).
fn caller_restrictions(caller: &Caller) -> (BoundCidrs, Scopes) {
    match caller {
        Caller::User(p) => (
            p.access_token
                .as_ref()
                .map(|t| t.bound_cidrs.clone())
                .unwrap_or_default(),
            caller_scopes(caller),
        ),
        Caller::Local => (BoundCidrs::unbound(), Scopes::unscoped()),
    }
}

/// A caller authenticated with a scoped or bound token may only rotate (and so learn the
/// secret of) a token no wider than its own: otherwise `PermissionDenied`
/// (`create_user_access_token`).
pub(super) fn require_no_wider_than_caller(caller: &Caller, token: &UserAccessToken) -> Result<()> {
    let (bound, scopes) = caller_restrictions(caller);
    if token.scopes.within(scopes) && token.bound_cidrs.within(&bound) {
        Ok(())
    } else {
        Err(Error::PermissionDenied {
            permission: Permission::CreateUserAccessToken,
        })
    }
}

/// Personal access tokens switched off (`enable_user_access_tokens`) cannot be created or
/// rotated for anyone but a bot: `Unimplemented`, Mattermost's 501.
pub(super) fn require_tokens_enabled_for(ctx: &Context, owner: &User) -> Result<()> {
    if !ctx.policy().enable_user_access_tokens && !owner.is_bot {
        return Err(Error::Unimplemented {
            reason: Reason::AccessTokensDisabled,
        });
    }
    Ok(())
}

/// The token model's own check of `expires_at`, after the policy's: only an exempt owner gets
/// this far with a negative value (the policy check calls it "in the past" for the others).
pub(super) fn require_expiry_after_epoch(expires_at: Option<UnixMillis>) -> Result<()> {
    if expires_at.is_some_and(|at| at < 0) {
        return Err(Error::invalid(
            "expires_at",
            Reason::InvalidExpiresAt,
            "must not be before 1970-01-01T00:00:00Z",
        ));
    }
    Ok(())
}

/// Mattermost's `validateUserAccessTokenExpiry`: the policy check runs first and only a
/// failure asks whether the owner is exempt (a bot without an owner). A negative value is
/// "in the past" for everyone else; for an exempt owner the token model refuses it later.
pub(super) fn check_expiry(
    ctx: &Context,
    owner: &User,
    expires_at: Option<UnixMillis>,
    now: UnixMillis,
) -> Result<()> {
    let max_days = i64::from(ctx.policy().maximum_personal_access_token_lifetime_days);
    let violation = match expires_at {
        None if max_days > 0 => Some((
            Reason::ExpiresAtRequired,
            format!("is required: tokens may live at most {max_days} days"),
        )),
        None => None,
        Some(at) if at <= now => {
            Some((Reason::ExpiresAtInPast, "must be in the future".to_owned()))
        }
        Some(at) if max_days > 0 && at > now.saturating_add(max_days * DAY_MS) => Some((
            Reason::ExpiresAtTooFar,
            format!("must be at most {max_days} days from now"),
        )),
        Some(_) => None,
    };
    let exempt = owner.is_bot && owner.bot_owner_id.is_none();
    match violation {
        Some((reason, rule)) if !exempt => Err(Error::invalid("expires_at", reason, rule)),
        _ => Ok(()),
    }
}

/// A token's state, as the list filter `state` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// Enabled and not expired: it authenticates (if its owner is active).
    Active,
    /// Disabled (whether or not it has also expired).
    Disabled,
    /// Its expiry is set and has passed (`0 < expires_at <= now`), enabled or not.
    Expired,
}

impl TokenState {
    /// The state named `text` (`active`, `disabled`, `expired`); anything else is
    /// `InvalidArgument` naming `field`.
    pub fn parse(text: &str, field: &'static str) -> Result<Self> {
        match text {
            "active" => Ok(TokenState::Active),
            "disabled" => Ok(TokenState::Disabled),
            "expired" => Ok(TokenState::Expired),
            _ => Err(Error::invalid(
                field,
                Reason::InvalidUrlParam,
                "must be one of active, disabled, expired",
            )),
        }
    }

    /// The state's name, as [`TokenState::parse`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Disabled => "disabled",
            TokenState::Expired => "expired",
        }
    }
}

/// Filters of the token lists (GitLab's): each one set narrows the list; none set lists
/// every token. Order and paging are the same with or without filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenFilter {
    /// Used, and last used before this time (Unix ms, exclusive). Never-used tokens do not
    /// match.
    pub last_used_before: Option<UnixMillis>,
    /// Last used at or after this time (Unix ms). Never-used tokens do not match.
    pub last_used_after: Option<UnixMillis>,
    /// With an expiry before this time (Unix ms, exclusive); tokens that never expire do
    /// not match.
    pub expires_before: Option<UnixMillis>,
    /// In this state (at the time of the request).
    pub state: Option<TokenState>,
}

impl TokenFilter {
    /// Checks the times: each must be 0 or more (`InvalidArgument` naming the field).
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("last_used_before", self.last_used_before),
            ("last_used_after", self.last_used_after),
            ("expires_before", self.expires_before),
        ] {
            if value.is_some_and(|v| v < 0) {
                return Err(Error::invalid(
                    field,
                    Reason::InvalidUrlParam,
                    "must not be before 1970-01-01T00:00:00Z",
                ));
            }
        }
        Ok(())
    }
}

/// One page of a token list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenPage {
    /// The tokens, ordered by id, with their last use.
    pub tokens: Vec<UserAccessToken>,
    /// Pass it as `page_token` for the next page; "" when no token follows (yet).
    pub next_page_token: String,
}

/// Which rows of a filtered token list, ordered by id, the store reads: those after `after`
/// (keyset), skipping `offset` of them (Mattermost's page number), at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenWindow {
    pub after: Option<TokenId>,
    pub offset: u64,
    pub limit: u64,
}

/// Page tokens of the token lists, apart from other listings' (see [`paging`]).
const PAGE_TOKEN_DOMAIN: &[u8] = b"token list page token\0";

/// Lists one user's tokens that pass `filter`, with their last use.
pub async fn get_user_access_tokens_for_user(
    ctx: &Context,
    caller: &Caller,
    user_id: &str,
    filter: &TokenFilter,
    paging: &ListPaging,
) -> Result<TokenPage> {
    let user_id = caller.resolve_user_id(user_id)?;
    filter.validate()?;
    ctx.require_permission(caller, Permission::ReadUserAccessToken)?;
    ctx.require_user_or_bot_access(caller, &user_id).await?;
    list_page(ctx, Some(&user_id), filter, paging).await
}

/// Lists every token that passes `filter`, with its last use.
pub async fn get_user_access_tokens(
    ctx: &Context,
    caller: &Caller,
    filter: &TokenFilter,
    paging: &ListPaging,
) -> Result<TokenPage> {
    filter.validate()?;
    ctx.require_permission(caller, Permission::ManageSystem)?;
    list_page(ctx, None, filter, paging).await
}

/// One page of `owner`'s tokens (every token for `None`) that pass `filter`. One more row
/// than the page holds is read, to know whether another page follows; the next page token
/// names the page's last token, so it continues a walk by page number too.
async fn list_page(
    ctx: &Context,
    owner: Option<&UserId>,
    filter: &TokenFilter,
    paging: &ListPaging,
) -> Result<TokenPage> {
    let fingerprint = list_fingerprint(owner, filter);
    let window = match paging {
        ListPaging::Offset(page) if page.is_empty() => return Ok(TokenPage::default()),
        ListPaging::Offset(page) => TokenWindow {
            after: None,
            offset: page.offset(),
            limit: page.limit() + 1,
        },
        ListPaging::Keyset { page_token, limit } => TokenWindow {
            after: open_list_page_token(ctx, page_token, &fingerprint)?,
            offset: 0,
            limit: limit + 1,
        },
    };
    let now = ctx.now();
    let mut tokens = match owner {
        Some(user_id) => {
            ctx.store()
                .list_access_tokens_for_user(user_id, filter, now, &window)
                .await?
        }
        None => ctx.store().list_access_tokens(filter, now, &window).await?,
    };
    let more = tokens.len() as u64 > paging.limit();
    tokens.truncate(usize::try_from(paging.limit()).unwrap_or(usize::MAX));
    let next_page_token = match tokens.last() {
        Some(last) if more => paging::seal_page_token(
            ctx.audit_key(),
            PAGE_TOKEN_DOMAIN,
            &fingerprint,
            last.id.as_str(),
        ),
        _ => String::new(),
    };
    ctx.store().fill_recent_addresses(&mut tokens).await?;
    Ok(TokenPage {
        tokens,
        next_page_token,
    })
}

/// The list and its filters in a fixed text form: a page token is only good for the list
/// that issued it.
fn list_fingerprint(owner: Option<&UserId>, filter: &TokenFilter) -> String {
    json!([
        owner.map_or("", UserId::as_str),
        filter.last_used_before,
        filter.last_used_after,
        filter.expires_before,
        filter.state.map_or("", TokenState::as_str),
    ])
    .to_string()
}

/// The token a page token continues after ("": from the start); `InvalidArgument` naming
/// `page_token` when it is malformed, altered, or issued for another list or other filters.
fn open_list_page_token(
    ctx: &Context,
    page_token: &str,
    fingerprint: &str,
) -> Result<Option<TokenId>> {
    if page_token.is_empty() {
        return Ok(None);
    }
    let opened = paging::open_page_token(page_token)?;
    let after = TokenId::parse(opened.position(), "page_token", Reason::InvalidUrlParam)
        .map_err(|_| paging::malformed_page_token())?;
    opened.verify(ctx.audit_key(), PAGE_TOKEN_DOMAIN, fingerprint)?;
    Ok(Some(after))
}

/// Finds tokens whose id, user id or owner's username equals the term:
/// [`token_search`], then [`TokenSearch::run`].
pub async fn search_user_access_tokens(
    ctx: &Context,
    caller: &Caller,
    term: &str,
) -> Result<Vec<UserAccessToken>> {
    token_search(ctx, caller)?.run(ctx, term).await
}

/// The first step of a search, before Mattermost reads the request body: `manage_system`.
pub fn token_search(ctx: &Context, caller: &Caller) -> Result<TokenSearch> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    Ok(TokenSearch(()))
}

/// A search the caller may run.
#[derive(Debug)]
pub struct TokenSearch(());

impl TokenSearch {
    /// Runs the search. As in Mattermost, backslashes are removed from the term first; there
    /// is no wildcard or prefix matching. A term containing NUL (U+0000) matches nothing: no
    /// id or username contains it.
    pub async fn run(self, ctx: &Context, term: &str) -> Result<Vec<UserAccessToken>> {
        if term.is_empty() {
            return Err(Error::invalid(
                "term",
                Reason::InvalidBodyParam,
                "must not be empty",
            ));
        }
        if term.contains('\0') {
            return Ok(Vec::new());
        }
        let term = term.replace('\\', "");
        let mut list = ctx.store().search_access_tokens(&term).await?;
        ctx.store().fill_recent_addresses(&mut list).await?;
        Ok(list)
    }
}

/// Reads one token. The read permission is checked before the lookup, the owner check after
/// (so a reader can tell "missing" from "not yours", as in Mattermost).
pub async fn get_user_access_token(
    ctx: &Context,
    caller: &Caller,
    token_id: &str,
) -> Result<UserAccessToken> {
    let token_id = TokenId::parse(token_id, "token_id", Reason::InvalidUrlParam)?;
    ctx.require_permission(caller, Permission::ReadUserAccessToken)?;
    let mut token = find_token(ctx, &token_id).await?;
    ctx.require_user_or_bot_access(caller, &token.user_id)
        .await?;
    ctx.store()
        .fill_recent_addresses(std::slice::from_mut(&mut token))
        .await?;
    Ok(token)
}

/// Revokes a token: deletes it and its minted session in one transaction.
pub async fn revoke_user_access_token(
    ctx: &Context,
    caller: &Caller,
    token: TokenRef,
) -> Result<()> {
    change_user_access_token(ctx, caller, token, TokenChange::Revoke).await
}

/// Disables a token and deletes its minted session, in one transaction. Idempotent.
pub async fn disable_user_access_token(
    ctx: &Context,
    caller: &Caller,
    token: TokenRef,
) -> Result<()> {
    change_user_access_token(ctx, caller, token, TokenChange::Disable).await
}

/// Enables a token. Gated by `create_user_access_token`, as in Mattermost. Idempotent.
pub async fn enable_user_access_token(
    ctx: &Context,
    caller: &Caller,
    token: TokenRef,
) -> Result<()> {
    change_user_access_token(ctx, caller, token, TokenChange::Enable).await
}

/// The three state changes of an existing token. Their rules (what each deletes and
/// revokes) are in `store_change`.
#[derive(Debug, Clone, Copy)]
pub enum TokenChange {
    Revoke,
    Disable,
    Enable,
}

impl TokenChange {
    /// The permission Mattermost gates the change with.
    fn permission(self) -> Permission {
        match self {
            TokenChange::Revoke | TokenChange::Disable => Permission::RevokeUserAccessToken,
            TokenChange::Enable => Permission::CreateUserAccessToken,
        }
    }

    /// What the change does, for the store to carry out in one transaction.
    fn store_change(self, token: &TokenId, at: UnixMillis) -> AccessTokenChange {
        let revoked = Some(Revocation::AccessToken(token.clone()));
        match self {
            // The token goes, and the sessions minted from it with it.
            TokenChange::Revoke => AccessTokenChange {
                token: TokenWrite::Delete,
                at,
                delete_minted_sessions: true,
                revocation: revoked,
            },
            // The token stays, but the sessions minted from it are signed out.
            TokenChange::Disable => AccessTokenChange {
                token: TokenWrite::SetActive(false),
                at,
                delete_minted_sessions: true,
                revocation: revoked,
            },
            // Nothing is taken away: no session is deleted and nothing is revoked (the next
            // use mints a session).
            TokenChange::Enable => AccessTokenChange {
                token: TokenWrite::SetActive(true),
                at,
                delete_minted_sessions: false,
                revocation: None,
            },
        }
    }

    fn audit_action(self) -> &'static str {
        match self {
            TokenChange::Revoke => "revoke_user_access_token",
            TokenChange::Disable => "disable_user_access_token",
            TokenChange::Enable => "enable_user_access_token",
        }
    }

    fn action(self) -> Action {
        match self {
            TokenChange::Revoke => Action::AccessTokenRevoked,
            TokenChange::Disable => Action::AccessTokenDisabled,
            TokenChange::Enable => Action::AccessTokenEnabled,
        }
    }
}

/// Revokes, disables or enables a token (see the three functions above): the route's
/// permission, an existing token, and the right to act on its owner.
pub async fn change_user_access_token(
    ctx: &Context,
    caller: &Caller,
    token: TokenRef,
    change: TokenChange,
) -> Result<()> {
    ctx.require_permission(caller, change.permission())?;
    let TokenRef::Id(token_id) = token else {
        return Err(token_not_found());
    };
    // A user changing one of its own tokens, the common case, needs nothing read first:
    // acting on oneself needs only the route's permission, and the store changes the token
    // only if it is the caller's. Otherwise (another user's token, or none) the token and
    // its owner are read and checked, in Mattermost's order.
    if let Caller::User(principal) = caller
        && apply_token_change(ctx, caller, &token_id, &principal.user.id, change).await?
    {
        return Ok(());
    }
    let (token, owner) = ctx
        .store()
        .find_access_token_with_owner(&token_id)
        .await?
        .ok_or_else(token_not_found)?;
    ctx.require_user_or_bot_access_to(caller, &owner)?;
    if !apply_token_change(ctx, caller, &token.id, &token.user_id, change).await? {
        return Err(token_not_found());
    }
    Ok(())
}

/// Applies `change` to token `id` if it exists and belongs to `owner`, with its lifecycle
/// record; returns whether it did.
async fn apply_token_change(
    ctx: &Context,
    caller: &Caller,
    id: &TokenId,
    owner: &UserId,
    change: TokenChange,
) -> Result<bool> {
    let store_change = change.store_change(id, ctx.now());
    let mut record = NewRecord::by(caller, change.action()).user(owner).token(id);
    if let Some(revocation) = &store_change.revocation {
        record = record.revokes(revocation.clone());
    }
    if !ctx
        .store()
        .change_access_token(id, owner, &store_change, &record)
        .await?
    {
        return Ok(false);
    }
    if let Some(revocation) = &store_change.revocation {
        ctx.revoked_here(revocation);
    }
    info!(target: "audit", action = change.audit_action(), token_id = %id,
        user_id = %owner, caller = %caller, "personal access token changed");
    Ok(true)
}

pub(super) async fn find_token(ctx: &Context, id: &TokenId) -> Result<UserAccessToken> {
    ctx.store()
        .find_access_token(id)
        .await?
        .ok_or_else(token_not_found)
}

pub(super) fn token_not_found() -> Error {
    Error::NotFound {
        reason: Reason::AccessTokenNotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_and_disable_take_the_minted_sessions_enable_takes_nothing() {
        let id = TokenId::generate();
        let revoked = Some(Revocation::AccessToken(id.clone()));
        let revoke = TokenChange::Revoke.store_change(&id, 1);
        assert_eq!(revoke.token, TokenWrite::Delete);
        assert!(revoke.delete_minted_sessions);
        assert_eq!(revoke.revocation, revoked);
        let disable = TokenChange::Disable.store_change(&id, 1);
        assert_eq!(disable.token, TokenWrite::SetActive(false));
        assert!(disable.delete_minted_sessions);
        assert_eq!(disable.revocation, revoked);
        let enable = TokenChange::Enable.store_change(&id, 1);
        assert_eq!(enable.token, TokenWrite::SetActive(true));
        assert!(!enable.delete_minted_sessions);
        assert_eq!(enable.revocation, None);
    }
}
