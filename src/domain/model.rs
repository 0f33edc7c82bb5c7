//! The domain's records. Times are Unix milliseconds (Mattermost's unit); 0 means unset.

use std::collections::BTreeMap;

use super::ids::{CommandId, SessionId, TeamId, TokenId, UserId};
use super::permissions::SYSTEM_ADMIN;

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
