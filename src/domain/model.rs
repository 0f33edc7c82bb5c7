//! The domain's records. Times are Unix milliseconds (Mattermost's unit); 0 means unset.

use std::collections::BTreeMap;

use super::ids::{CommandId, SessionId, TeamId, TokenId, UserId};
use super::permissions::SYSTEM_ADMIN;
use super::secret::TokenDigest;

/// Unix time in milliseconds; 0 means "unset" / "never".
pub type UnixMillis = i64;

/// Roles as Mattermost writes them in one string, space-separated.
pub fn roles_from_str(roles: &str) -> Vec<String> {
    roles.split_whitespace().map(str::to_owned).collect()
}

/// A user or bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub email: String,
    pub roles: Vec<String>,
    pub is_bot: bool,
    pub bot_owner_id: Option<UserId>,
    pub create_at: UnixMillis,
    pub update_at: UnixMillis,
    pub delete_at: UnixMillis,
}

impl User {
    /// Not deactivated.
    pub fn is_active(&self) -> bool {
        self.delete_at == 0
    }

    /// Holds the system admin role.
    pub fn is_system_admin(&self) -> bool {
        self.roles.iter().any(|r| r == SYSTEM_ADMIN)
    }

    /// Holds the guest role.
    pub fn is_guest(&self) -> bool {
        self.roles.iter().any(|r| r == "system_guest")
    }
}

/// A personal access token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccessToken {
    pub id: TokenId,
    pub user_id: UserId,
    pub description: String,
    pub is_active: bool,
    pub expires_at: UnixMillis,
    pub create_at: UnixMillis,
    /// When and from where it was last used, as flushed to the database so far.
    pub last_use: LastUse,
    /// The client address blocks it may be used from (unbound: anywhere).
    pub bound_cidrs: super::bound_tokens::BoundCidrs,
    /// What it may do, within its owner's permissions (unscoped: all of them).
    pub scopes: super::permissions::Scopes,
}

/// A personal access token's last use, GitLab-style, as the last-use flush recorded it
/// (see `token_usage`): at most one flush interval behind the token checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastUse {
    /// When it last authenticated (Unix ms); 0 = never (or not yet flushed).
    pub last_used_at: UnixMillis,
    /// The `User-Agent` of that use (cut to 255 bytes); may be empty.
    pub user_agent: String,
    /// The most recent distinct client addresses (at most 5), newest first. Filled where
    /// tokens are shown (list, search, get); empty on the token check's copy.
    pub recent_addresses: Vec<RecentAddress>,
}

/// One client address a token was used from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentAddress {
    /// The address in canonical text form (IPv4-mapped IPv6 shown as IPv4).
    pub ip: String,
    /// When the token was last used from it (Unix ms).
    pub last_seen_at: UnixMillis,
}

impl UserAccessToken {
    /// Mattermost's `IsExpired`: an expiry is set and has passed.
    pub fn is_expired(&self, now: UnixMillis) -> bool {
        self.expires_at > 0 && now >= self.expires_at
    }
}

/// A session, without its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    /// Set for sessions minted for a personal access token.
    pub user_access_token_id: Option<TokenId>,
    pub create_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub last_activity_at: UnixMillis,
    /// The lifetime granted at creation (ms); activity extends the expiry by this much when
    /// extension is on. 0: never extended (personal access token sessions, endless sessions).
    pub length_ms: i64,
    pub device_id: String,
    pub roles: Vec<String>,
    pub is_oauth: bool,
    pub expired_notify: bool,
    pub props: BTreeMap<String, String>,
}

impl Session {
    /// Expired: an expiry is set and has passed.
    pub fn is_expired(&self, now: UnixMillis) -> bool {
        self.expires_at > 0 && now >= self.expires_at
    }
}

/// Session prop keys and values Mattermost uses for token sessions.
pub mod session_props {
    pub const TYPE: &str = "type";
    pub const TYPE_USER_ACCESS_TOKEN: &str = "UserAccessToken";
    pub const USER_ACCESS_TOKEN_ID: &str = "user_access_token_id";
    pub const IS_BOT: &str = "is_bot";
    pub const IS_GUEST: &str = "is_guest";
    pub const CSRF: &str = "csrf";
}

/// A slash command, without its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub id: CommandId,
    pub team_id: TeamId,
    pub creator_id: UserId,
    pub trigger: String,
    /// "P" or "G".
    pub method: String,
    pub url: String,
    pub display_name: String,
    pub description: String,
    pub username: String,
    pub icon_url: String,
    pub auto_complete: bool,
    pub auto_complete_desc: String,
    pub auto_complete_hint: String,
    pub create_at: UnixMillis,
    pub update_at: UnixMillis,
    pub delete_at: UnixMillis,
}

/// A team membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamMember {
    pub team_id: TeamId,
    pub user_id: UserId,
    pub roles: Vec<String>,
    pub create_at: UnixMillis,
    pub delete_at: UnixMillis,
}

/// How the store writes a team membership (the domain decides which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamMemberWrite {
    /// Leave a live membership exactly as it is; add a new member, or revive a removed one,
    /// with these roles.
    JoinKeepingLiveRoles(Vec<String>),
    /// Set these roles, adding or reviving the membership as needed.
    SetRoles(Vec<String>),
}

/// What a revocation takes away. Replicas drop matching cache entries; `WatchRevocations`
/// subscribers receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// One session (a login, or the session minted for a personal access token).
    Session(SessionId),
    /// A personal access token was revoked or disabled (its minted session goes with it).
    AccessToken(TokenId),
    /// Something about a user changed: deactivated, roles changed, all sessions revoked, or
    /// sessions trimmed to the per-user cap.
    User(UserId),
    /// Every session of every user was revoked.
    All,
}

impl Revocation {
    /// The stored kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Revocation::Session(_) => "session",
            Revocation::AccessToken(_) => "access_token",
            Revocation::User(_) => "user",
            Revocation::All => "all",
        }
    }

    /// The stored subject id ("" for `All`).
    pub fn subject_id(&self) -> &str {
        match self {
            Revocation::Session(id) => id.as_str(),
            Revocation::AccessToken(id) => id.as_str(),
            Revocation::User(id) => id.as_str(),
            Revocation::All => "",
        }
    }

    /// Rebuilds a stored revocation; `None` for an unknown kind (written by a newer version).
    pub fn from_stored(kind: &str, subject_id: String) -> Option<Self> {
        Some(match kind {
            "session" => Revocation::Session(SessionId::from_trusted(subject_id)),
            "access_token" => Revocation::AccessToken(TokenId::from_trusted(subject_id)),
            "user" => Revocation::User(UserId::from_trusted(subject_id)),
            "all" => Revocation::All,
            _ => return None,
        })
    }
}

/// A revocation as recorded in the log, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationEvent {
    /// Position in the log; increases with every event.
    pub id: i64,
    pub revocation: Revocation,
    pub create_at: UnixMillis,
}

/// How a stored time is written by a change the domain decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeWrite {
    /// This value.
    Set(UnixMillis),
    /// This value if the stored one is 0 (unset); a stored time stays.
    SetIfUnset(UnixMillis),
}

impl TimeWrite {
    /// The value to write, given the stored one.
    pub fn given(self, stored: UnixMillis) -> UnixMillis {
        match self {
            TimeWrite::Set(value) => value,
            TimeWrite::SetIfUnset(value) if stored == 0 => value,
            TimeWrite::SetIfUnset(_) => stored,
        }
    }
}

/// A change of a user's roles, as the domain decided it. The store applies all of it and
/// records `revocation`, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRolesChange {
    pub roles: Vec<String>,
    pub update_at: UnixMillis,
    /// Write the roles onto every session the user holds as well.
    pub copy_to_sessions: bool,
    pub revocation: Revocation,
}

/// A change of a user's activation, as the domain decided it. The store applies all of it
/// and records `revocation`, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserActivationChange {
    /// Resolved against the `delete_at` the store reads in that transaction, so concurrent
    /// changes cannot slip in between the read and the write.
    pub delete_at: TimeWrite,
    pub update_at: UnixMillis,
    /// Delete every session the user holds.
    pub delete_sessions: bool,
    pub revocation: Revocation,
}

/// What a change does to a personal access token's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenWrite {
    /// Delete the token.
    Delete,
    /// Set its active flag.
    SetActive(bool),
}

/// A change of a personal access token, as the domain decided it. The store applies all of
/// it in one transaction, and only if the token exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenChange {
    pub token: TokenWrite,
    /// When the change is made (the revocation's time).
    pub at: UnixMillis,
    /// Delete the sessions minted from the token. (A deleted token's sessions go regardless:
    /// they reference it; the store deletes them explicitly when this is set, before the
    /// token row.)
    pub delete_minted_sessions: bool,
    /// Recorded in the log when set.
    pub revocation: Option<Revocation>,
}

/// Outcome of storing a session under a token digest.
#[derive(Debug)]
pub enum SessionInsert {
    Inserted,
    /// A session with this digest already exists (a concurrent first use won the race).
    DigestTaken,
    /// The user or the token it belongs to was deleted meanwhile (a revoke won the race).
    OwnerGone,
}

/// What woke the revocation feed (see the store's `LogWakeups`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    /// A record that revokes something was appended somewhere.
    Revoked,
    /// Another record was appended somewhere.
    Appended,
    /// The notification connection broke; notifications may have been missed.
    ConnectionLost,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_if_unset_keeps_a_stored_time() {
        assert_eq!(TimeWrite::SetIfUnset(20).given(0), 20);
        assert_eq!(TimeWrite::SetIfUnset(20).given(10), 10);
        assert_eq!(TimeWrite::Set(0).given(10), 0);
        assert_eq!(TimeWrite::Set(20).given(10), 20);
    }
}

/// A rotation of a personal access token's secret, as the domain decided it. The store
/// applies all of it in one transaction, and only if the token exists and is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRotation {
    /// The digest of the new secret.
    pub new_digest: TokenDigest,
    /// The token's new expiry (0 = never).
    pub expires_at: UnixMillis,
    /// When the rotation is made.
    pub at: UnixMillis,
    /// Until when the replaced secret keeps working (its minted session is clamped to it);
    /// 0: it stops now and its minted session is deleted.
    pub grace_until: UnixMillis,
}

/// What became of a rotation in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationOutcome {
    Rotated,
    /// The token is gone.
    Missing,
    /// The token was disabled meanwhile.
    Disabled,
}

/// A secret a rotation replaced, as stored (by digest only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupersededSecret {
    pub token_id: TokenId,
    pub user_id: UserId,
    pub superseded_at: UnixMillis,
    /// Until when it still authenticates; 0 = not at all.
    pub grace_until: UnixMillis,
}

impl SupersededSecret {
    /// Still within its grace period at `now`.
    pub fn in_grace(&self, now: UnixMillis) -> bool {
        now < self.grace_until
    }
}

/// What one digest names, as stored.
#[derive(Debug, Clone, Default)]
pub struct StoredCredential {
    /// The session stored under the digest, with the stored digest; `None` if there is none
    /// (a personal access token before its first use, or an unknown digest).
    pub session: Option<StoredSession>,
    /// The personal access token whose current secret has this digest, with its owner and
    /// the stored digest; `None` if no token has it, and also when a session was found (the
    /// check then needs only `digest_names_a_token`, so the token is not read).
    pub access_token: Option<(UserAccessToken, User, TokenDigest)>,
    /// Whether a personal access token's current secret has this digest.
    pub digest_names_a_token: bool,
}

/// A session with what its check needs.
#[derive(Debug, Clone)]
pub struct StoredSession {
    pub session: Session,
    pub stored_digest: TokenDigest,
    /// The session's user (`None` if the row is gone).
    pub user: Option<User>,
    /// The personal access token the session was minted for (`None` for a login session,
    /// or when the token row is gone).
    pub access_token: Option<UserAccessToken>,
}
