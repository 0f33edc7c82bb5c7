//! Who may do what: the permissions, the role table (Mattermost's fresh-install defaults for
//! the permissions this service decides on), and every permission decision the operations
//! make (Mattermost's `SessionHasPermissionTo*`), each in one shape: `Ok(())` or
//! `PermissionDenied` naming the permission Mattermost reports. The operations call these in
//! Mattermost's order (the order is observable: 404 before 403 in some handlers).

use std::{collections::BTreeMap, fmt};

use super::{
    Context,
    caller::Caller,
    error::{Error, Result},
    ids::{TeamId, UserId},
    model::{Session, User},
};

/// Declares [`Permission`] from one line per permission: the variant, Mattermost's permission
/// id and, where it needs one, its documentation. Emits the enum, [`Permission::ALL`] and
/// [`Permission::id`].
macro_rules! permissions {
    ($($variant:ident, $id:literal $(, $doc:literal)?;)*) => {
        /// A permission this service checks.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Permission {
            $($(#[doc = $doc])? $variant,)*
        }

        impl Permission {
            /// Every permission, for the system admin role and for parsing.
            pub const ALL: [Permission; [$(stringify!($variant)),*].len()] =
                [$(Permission::$variant),*];

            /// Mattermost's permission id.
            pub fn id(self) -> &'static str {
                match self {
                    $(Permission::$variant => $id,)*
                }
            }
        }
    };
}

// Variant, Mattermost's permission id, documentation (optional).
permissions! {
    CreateUserAccessToken, "create_user_access_token";
    ReadUserAccessToken, "read_user_access_token";
    RevokeUserAccessToken, "revoke_user_access_token";
    EditOtherUsers, "edit_other_users";
    ManageSystem, "manage_system";
    ManageBots, "manage_bots";
    ManageOthersBots, "manage_others_bots";
    IntrospectToken, "introspect_token", "token-service's own: may call IntrospectToken.";
    ManageOwnSlashCommands, "manage_own_slash_commands";
    ManageOthersSlashCommands, "manage_others_slash_commands";
    ViewMembers, "view_members", "May see other users (GetUser, GetUserByUsername); without it, only users who share a team where the caller's team roles grant it.";
    ReadAudit, "read_audit", "token-service's own: may read the audit trail (ListAuditRecords, ComputeAuditHash), and nothing else.";
}

impl Permission {
    /// Parses a permission id; `manage_slash_commands` is the pre-2026 name of
    /// `manage_own_slash_commands`.
    pub fn from_id(id: &str) -> Option<Self> {
        if id == "manage_slash_commands" {
            return Some(Permission::ManageOwnSlashCommands);
        }
        Self::ALL.into_iter().find(|p| p.id() == id)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Declares [`Scope`] from one line per scope: the variant, its id, the permissions it lets
/// a scoped token use, and its documentation.
macro_rules! scopes {
    ($($variant:ident, $id:literal, [$($perm:ident),*], $doc:literal;)*) => {
        /// A scope a personal access token may be narrowed to (token-service's own).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Scope {
            $(#[doc = $doc] $variant,)*
        }

        impl Scope {
            /// Every scope, in the order of the table.
            pub const ALL: [Scope; [$(stringify!($variant)),*].len()] = [$(Scope::$variant),*];

            /// The scope's id (`read`, `tokens`, ..).
            pub fn id(self) -> &'static str {
                match self {
                    $(Scope::$variant => $id,)*
                }
            }

            /// The permissions a token with this scope may use (if its owner holds them).
            pub fn permissions(self) -> &'static [Permission] {
                match self {
                    $(Scope::$variant => &[$(Permission::$perm),*],)*
                }
            }
        }
    };
}

// Scope, id, the permissions it lets a token use, documentation.
scopes! {
    Read, "read", [ReadUserAccessToken, ViewMembers, ReadAudit],
        "Read-only operations: list and read tokens, sessions and users, read the audit trail.";
    Tokens, "tokens", [CreateUserAccessToken, ReadUserAccessToken, RevokeUserAccessToken, EditOtherUsers, ManageBots, ManageOthersBots],
        "The token and session operations: create, list, rotate, disable, enable and revoke tokens, list and revoke sessions (another user's as far as the owner may).";
    Introspect, "introspect", [IntrospectToken],
        "Only token checks: IntrospectToken, the gateway endpoints' caller, VerifyCommandToken, WatchRevocations and WatchEvents.";
    Commands, "commands", [ManageOwnSlashCommands, ManageOthersSlashCommands],
        "Slash commands: CreateCommand and RegenCommandToken.";
}

/// Most scopes one token may carry (every scope once).
pub const MAX_SCOPES: usize = Scope::ALL.len();

/// The scopes of a personal access token, as a set of bits: allocation-free and `Copy`.
/// Unscoped (0) is Mattermost's behaviour: the token may do all its owner may. A scoped token
/// may use a permission only if its owner holds it *and* one of its scopes lists it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// Set on every scoped token, so a token whose stored scopes cannot be read (written by a
    /// newer version) stays scoped, to nothing: fail closed.
    const SCOPED: u8 = 0x80;

    /// Unscoped: everything the owner may do.
    pub fn unscoped() -> Self {
        Self(0)
    }

    fn bit(scope: Scope) -> u8 {
        1 << (scope as u8)
    }

    /// Whether the token is narrowed by scopes at all.
    pub fn is_scoped(self) -> bool {
        self.0 & Self::SCOPED != 0
    }

    /// Whether `scope` is one of the token's scopes.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & Self::bit(scope) != 0
    }

    /// Whether the scopes let the token use `permission` (always, when unscoped).
    pub fn allow(self, permission: Permission) -> bool {
        !self.is_scoped()
            || Scope::ALL
                .iter()
                .any(|s| self.contains(*s) && s.permissions().contains(&permission))
    }

    /// The scopes, in the table's order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The scope ids, in the table's order.
    pub fn ids(self) -> Vec<String> {
        self.iter().map(|s| s.id().to_owned()).collect()
    }

    /// The `scopes` of a create request: known scope ids (duplicates count once). Empty:
    /// unscoped. Refused with `InvalidArgument` naming `scopes`.
    pub fn parse_request<S: AsRef<str>>(list: &[S]) -> Result<Self> {
        let mut bits = 0u8;
        for id in list {
            let id = id.as_ref();
            let scope = Scope::ALL
                .into_iter()
                .find(|s| s.id() == id)
                .ok_or_else(|| {
                    Error::invalid(
                        "scopes",
                        super::error::Reason::InvalidBodyParam,
                        format!(
                            "unknown scope {:?}; known: {}",
                            super::lifecycle::cut(id, 64),
                            Scope::ALL.map(Scope::id).join(", ")
                        ),
                    )
                })?;
            bits |= Self::bit(scope);
        }
        Ok(if bits == 0 {
            Self(0)
        } else {
            Self(bits | Self::SCOPED)
        })
    }

    /// Whether a token with these scopes can do no more than one with `outer`: `outer` is
    /// unscoped, or these are scoped and each is one of `outer`'s.
    pub fn within(self, outer: Scopes) -> bool {
        !outer.is_scoped() || (self.is_scoped() && self.0 & !outer.0 == 0)
    }

    /// The stored form: the ids space-separated ("" when unscoped).
    pub fn to_stored(self) -> String {
        self.ids().join(" ")
    }

    /// Reads the stored form; an unknown id grants nothing but keeps the token scoped.
    pub fn from_stored(stored: &str) -> Self {
        let mut bits = 0u8;
        for id in stored.split_whitespace() {
            bits |= Self::SCOPED;
            if let Some(scope) = Scope::ALL.into_iter().find(|s| s.id() == id) {
                bits |= Self::bit(scope);
            }
        }
        Self(bits)
    }
}

/// The system admin role: holds every permission.
pub const SYSTEM_ADMIN: &str = "system_admin";
/// The ordinary user role.
pub const SYSTEM_USER: &str = "system_user";
/// token-service's role for internal services that call IntrospectToken.
pub const SYSTEM_TOKEN_INTROSPECTOR: &str = "system_token_introspector";
/// token-service's read-only role for auditors: the audit trail and nothing else.
pub const SYSTEM_AUDITOR: &str = "system_auditor";

/// Which permissions each role grants.
#[derive(Debug, Clone)]
pub struct RoleTable {
    roles: BTreeMap<String, PermissionSet>,
}

/// A set of permissions, one bit each: a role's grant is tested without a search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PermissionSet(u64);

const _: () = assert!(Permission::ALL.len() <= 64, "a PermissionSet has 64 bits");

impl PermissionSet {
    fn insert(&mut self, permission: Permission) {
        self.0 |= 1 << permission as u32;
    }

    fn contains(self, permission: Permission) -> bool {
        self.0 & (1 << permission as u32) != 0
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(permissions: I) -> Self {
        let mut set = Self::default();
        for permission in permissions {
            set.insert(permission);
        }
        set
    }
}

impl Default for RoleTable {
    fn default() -> Self {
        use Permission::*;
        let mut roles = BTreeMap::new();
        roles.insert(
            SYSTEM_ADMIN.to_owned(),
            Permission::ALL.into_iter().collect(),
        );
        let none = PermissionSet::default;
        // Mattermost's system_user may see the other users (`view_members`).
        roles.insert(SYSTEM_USER.to_owned(), [ViewMembers].into_iter().collect());
        roles.insert(
            "system_user_access_token".to_owned(),
            [
                CreateUserAccessToken,
                ReadUserAccessToken,
                RevokeUserAccessToken,
            ]
            .into_iter()
            .collect(),
        );
        for role in [
            "system_user_manager",
            "system_manager",
            "system_read_only_admin",
            "system_guest",
        ] {
            roles.insert(role.to_owned(), none());
        }
        roles.insert(
            SYSTEM_TOKEN_INTROSPECTOR.to_owned(),
            [IntrospectToken].into_iter().collect(),
        );
        roles.insert(SYSTEM_AUDITOR.to_owned(), [ReadAudit].into_iter().collect());
        // Team-scoped roles, consulted only by team-scoped checks.
        roles.insert("team_user".to_owned(), none());
        roles.insert(
            "team_admin".to_owned(),
            [ManageOwnSlashCommands, ManageOthersSlashCommands]
                .into_iter()
                .collect(),
        );
        Self { roles }
    }
}

impl RoleTable {
    /// The defaults with `overrides` applied: each entry replaces (or adds) a role with exactly
    /// the listed permissions. `system_admin` always keeps every permission.
    pub fn with_overrides(overrides: &BTreeMap<String, Vec<String>>) -> Result<Self, String> {
        let mut table = Self::default();
        for (role, permissions) in overrides {
            if !is_valid_role_name(role) {
                return Err(format!(
                    "roles.{role}: a role name is 1 to 64 lower-case letters, digits or '_'"
                ));
            }
            if role == SYSTEM_ADMIN {
                return Err("roles.system_admin: system_admin always holds every permission and cannot be changed".into());
            }
            let mut set = PermissionSet::default();
            for p in permissions {
                let perm = Permission::from_id(p).ok_or_else(|| {
                    format!(
                        "roles.{role}: unknown permission {p:?}; known: {}",
                        Permission::ALL.map(Permission::id).join(", ")
                    )
                })?;
                set.insert(perm);
            }
            table.roles.insert(role.clone(), set);
        }
        Ok(table)
    }

    /// Whether `role` exists.
    pub fn is_known(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }

    /// Whether any of `roles` grants `permission`. Unknown roles grant nothing.
    pub fn grants<'a>(
        &self,
        roles: impl IntoIterator<Item = &'a str>,
        permission: Permission,
    ) -> bool {
        roles.into_iter().any(|role| {
            self.roles
                .get(role)
                .is_some_and(|set| set.contains(permission))
        })
    }
}

/// The decisions. A `Caller::Local` (the operator's CLI) may do everything.
impl Context {
    /// Whether the caller holds `permission` through its system roles.
    /// A scoped personal access token holds only what its scopes also allow.
    fn has_permission(&self, caller: &Caller, permission: Permission) -> bool {
        match caller {
            Caller::Local => true,
            Caller::User(p) => {
                scopes_of(p).allow(permission)
                    && self
                        .policy()
                        .roles
                        .grants(p.user.roles.iter().map(String::as_str), permission)
            }
        }
    }

    /// A scoped token acting on its own user where Mattermost asks no permission (its own
    /// sessions): reading needs `read` or `tokens`, changing needs `tokens`. A denial is
    /// reported as `edit_other_users`, as every denial of acting on a user.
    fn scope_allows_self(caller: &Caller, access: SelfAccess) -> bool {
        let Caller::User(p) = caller else {
            return true;
        };
        let scopes = scopes_of(p);
        !scopes.is_scoped()
            || scopes.contains(Scope::Tokens)
            || (access == SelfAccess::Read && scopes.contains(Scope::Read))
    }

    /// Mattermost's `SessionHasPermissionTo`: the caller's system roles grant `permission`.
    pub fn require_permission(&self, caller: &Caller, permission: Permission) -> Result<()> {
        if self.has_permission(caller, permission) {
            Ok(())
        } else {
            Err(Error::PermissionDenied { permission })
        }
    }

    /// Any of `permissions`; a denial names the last one.
    pub fn require_any_permission(
        &self,
        caller: &Caller,
        permissions: &[Permission],
    ) -> Result<()> {
        match permissions.split_last() {
            Some((last, others)) if !others.iter().any(|p| self.has_permission(caller, *p)) => {
                self.require_permission(caller, *last)
            }
            _ => Ok(()),
        }
    }

    /// Acting on a system admin's credentials also needs `manage_system`.
    pub fn require_permission_over(&self, caller: &Caller, target: &User) -> Result<()> {
        if target.is_system_admin() {
            self.require_permission(caller, Permission::ManageSystem)
        } else {
            Ok(())
        }
    }

    /// Mattermost's `SessionHasPermissionToUser`: self, or `manage_system`, or
    /// `edit_other_users` on an existing target that is not a system admin. A denial is
    /// reported as `edit_other_users`.
    pub async fn require_user_access(
        &self,
        caller: &Caller,
        target: &UserId,
        access: SelfAccess,
    ) -> Result<()> {
        if self.can_act_on_user(caller, target, access).await? {
            Ok(())
        } else {
            Err(denied_as_edit_other_users())
        }
    }

    /// Mattermost's `SessionHasPermissionToUserOrBot`: for a bot target, its owner needs
    /// `manage_bots` and anyone else `manage_others_bots` (no fallback to
    /// `edit_other_users`); otherwise as [`Context::require_user_access`]. A caller may
    /// always act on itself (in Mattermost a bot reaches the same result through the user
    /// fallback). A denial is reported as `edit_other_users`, as Mattermost does.
    pub async fn require_user_or_bot_access(&self, caller: &Caller, target: &UserId) -> Result<()> {
        let Caller::User(p) = caller else {
            return Ok(());
        };
        if &p.user.id == target {
            return Ok(());
        }
        match self.store().find_user(target).await? {
            Some(user) => self.require_user_or_bot_access_to(caller, &user),
            // No such user: only a system manager passes (as `can_act_on_user` decides).
            None if self.has_permission(caller, Permission::ManageSystem) => Ok(()),
            None => Err(denied_as_edit_other_users()),
        }
    }

    /// As [`Context::require_user_or_bot_access`], the target already read.
    pub fn require_user_or_bot_access_to(&self, caller: &Caller, target: &User) -> Result<()> {
        let Caller::User(p) = caller else {
            return Ok(());
        };
        let allowed = if p.user.id == target.id {
            true
        } else if target.is_bot {
            if target.bot_owner_id.as_ref() == Some(&p.user.id) {
                self.has_permission(caller, Permission::ManageBots)
            } else {
                self.has_permission(caller, Permission::ManageOthersBots)
            }
        } else {
            // `can_act_on_user` for another user, read already.
            self.has_permission(caller, Permission::ManageSystem)
                || (self.has_permission(caller, Permission::EditOtherUsers)
                    && !target.is_system_admin())
        };
        if allowed {
            Ok(())
        } else {
            Err(denied_as_edit_other_users())
        }
    }

    /// Mattermost's `SessionHasPermissionToTeam`: a system role, or a role of the caller's
    /// live membership of the team, grants `permission`.
    pub async fn require_team_permission(
        &self,
        caller: &Caller,
        team_id: &TeamId,
        permission: Permission,
    ) -> Result<()> {
        let Caller::User(p) = caller else {
            return Ok(());
        };
        let granted = self.has_permission(caller, permission)
            || self
                .store()
                .find_team_member(team_id, &p.user.id)
                .await?
                .is_some_and(|member| {
                    scopes_of(p).allow(permission)
                        && self
                            .policy()
                            .roles
                            .grants(member.roles.iter().map(String::as_str), permission)
                });
        if granted {
            Ok(())
        } else {
            Err(Error::PermissionDenied { permission })
        }
    }

    /// Whether the caller holds `view_members` through its system roles: it may see every
    /// user (Mattermost's `GetViewUsersRestrictions` returns no restriction).
    pub fn sees_every_user(&self, caller: &Caller) -> bool {
        self.has_permission(caller, Permission::ViewMembers)
    }

    /// Mattermost's `UserCanSeeOtherUser`: self; or `view_members` through a system role;
    /// or a live membership of a team the target also belongs to, where the caller's team
    /// roles grant `view_members` (token-service has no channels, so Mattermost's
    /// channel-membership branch has nothing to match). A denial names `view_members`,
    /// whether the target exists or not.
    pub async fn require_can_see_user(&self, caller: &Caller, target: &UserId) -> Result<()> {
        let Caller::User(p) = caller else {
            return Ok(());
        };
        if &p.user.id == target || self.sees_every_user(caller) {
            return Ok(());
        }
        let roles = &self.policy().roles;
        let mine: Vec<TeamId> = self
            .store()
            .list_team_members_for_user(&p.user.id)
            .await?
            .into_iter()
            .filter(|m| {
                scopes_of(p).allow(Permission::ViewMembers)
                    && roles.grants(m.roles.iter().map(String::as_str), Permission::ViewMembers)
            })
            .map(|m| m.team_id)
            .collect();
        if !mine.is_empty()
            && self
                .store()
                .list_team_members_for_user(target)
                .await?
                .iter()
                .any(|m| mine.contains(&m.team_id))
        {
            return Ok(());
        }
        Err(Error::PermissionDenied {
            permission: Permission::ViewMembers,
        })
    }

    async fn can_act_on_user(
        &self,
        caller: &Caller,
        target: &UserId,
        access: SelfAccess,
    ) -> Result<bool> {
        let Caller::User(p) = caller else {
            return Ok(true);
        };
        if &p.user.id == target {
            return Ok(Self::scope_allows_self(caller, access));
        }
        if self.has_permission(caller, Permission::ManageSystem) {
            return Ok(true);
        }
        if !self.has_permission(caller, Permission::EditOtherUsers) {
            return Ok(false);
        }
        Ok(self
            .store()
            .find_user(target)
            .await?
            .is_some_and(|user| !user.is_system_admin()))
    }
}

/// Whether a user acts on itself to read or to change (for the scopes of a scoped token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfAccess {
    Read,
    Write,
}

/// The scopes of the calling credential: unscoped for the operator, a session or an
/// unscoped token.
pub fn caller_scopes(caller: &Caller) -> Scopes {
    match caller {
        Caller::Local => Scopes::unscoped(),
        Caller::User(p) => scopes_of(p),
    }
}

/// The scopes of the credential `p` authenticated with (unscoped for a session).
fn scopes_of(p: &super::caller::Principal) -> Scopes {
    p.access_token
        .as_ref()
        .map_or(Scopes::unscoped(), |t| t.scopes)
}

fn denied_as_edit_other_users() -> Error {
    Error::PermissionDenied {
        permission: Permission::EditOtherUsers,
    }
}

/// Whether `session` is `owner`'s: Mattermost's revoke-session handler answers 400 (invalid
/// `user_id` in the URL) for another user's session, after the caller passed the user check.
pub fn require_session_owner(session: &Session, owner: &UserId) -> Result<()> {
    if &session.user_id == owner {
        Ok(())
    } else {
        Err(Error::invalid(
            "user_id",
            super::error::Reason::InvalidUrlParam,
            "the session belongs to another user",
        ))
    }
}

/// Role names: what Mattermost accepts for scheme roles.
pub fn is_valid_role_name(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= 64
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permission_set_holds_exactly_what_was_put_in() {
        for one in Permission::ALL {
            let set: PermissionSet = [one].into_iter().collect();
            for other in Permission::ALL {
                assert_eq!(set.contains(other), other == one, "{one:?} / {other:?}");
            }
        }
        let all: PermissionSet = Permission::ALL.into_iter().collect();
        assert!(Permission::ALL.into_iter().all(|p| all.contains(p)));
        assert!(
            Permission::ALL
                .into_iter()
                .all(|p| !PermissionSet::default().contains(p))
        );
    }

    #[test]
    fn default_table_matches_mattermost() {
        let t = RoleTable::default();
        assert!(t.grants(["system_admin"], Permission::ManageSystem));
        assert!(!t.grants(["system_user"], Permission::CreateUserAccessToken));
        assert!(t.grants(
            ["system_user", "system_user_access_token"],
            Permission::RevokeUserAccessToken
        ));
        assert!(!t.grants(["system_user_access_token"], Permission::EditOtherUsers));
        assert!(!t.grants(["system_user_manager"], Permission::EditOtherUsers));
        assert!(t.grants(["system_token_introspector"], Permission::IntrospectToken));
        assert!(t.grants(["system_admin"], Permission::ReadAudit));
        let auditor: Vec<Permission> = Permission::ALL
            .into_iter()
            .filter(|p| t.grants(["system_auditor"], *p))
            .collect();
        assert_eq!(auditor, [Permission::ReadAudit], "the auditor only reads");
        assert!(!t.grants(["nonexistent"], Permission::ManageSystem));
    }

    #[test]
    fn overrides_replace_roles_and_reject_unknown_permissions() {
        let mut o = BTreeMap::new();
        o.insert("system_user".to_owned(), vec!["manage_bots".to_owned()]);
        let t = RoleTable::with_overrides(&o).unwrap();
        assert!(t.grants(["system_user"], Permission::ManageBots));
        o.insert("bad".to_owned(), vec!["fly".to_owned()]);
        assert!(RoleTable::with_overrides(&o).unwrap_err().contains("fly"));
        let mut o = BTreeMap::new();
        o.insert("system_admin".to_owned(), vec![]);
        assert!(RoleTable::with_overrides(&o).is_err());
    }

    #[test]
    fn scopes_narrow_and_fail_closed() {
        let read = Scopes::parse_request(&["read"]).unwrap();
        assert!(read.is_scoped());
        assert!(read.allow(Permission::ReadUserAccessToken));
        assert!(!read.allow(Permission::RevokeUserAccessToken));
        assert!(Scopes::unscoped().allow(Permission::ManageSystem));
        for scope in Scope::ALL {
            assert!(
                !Scopes::parse_request(&[scope.id()])
                    .unwrap()
                    .allow(Permission::ManageSystem)
            );
        }
        let both = Scopes::parse_request(&["tokens", "read", "read"]).unwrap();
        assert_eq!(both.to_stored(), "read tokens");
        assert_eq!(Scopes::from_stored(&both.to_stored()), both);
        assert!(read.within(both) && !both.within(read));
        assert!(!Scopes::unscoped().within(read) && read.within(Scopes::unscoped()));
        assert!(!Scopes::parse_request::<&str>(&[]).unwrap().is_scoped());
        let e = Scopes::parse_request(&["write"]).unwrap_err().to_string();
        assert!(e.starts_with("scopes: unknown scope"), "{e}");
        let unknown = Scopes::from_stored("fly");
        assert!(
            unknown.is_scoped(),
            "an unreadable stored scope stays scoped"
        );
        assert!(Permission::ALL.iter().all(|p| !unknown.allow(*p)));
    }

    #[test]
    fn legacy_slash_command_permission_is_an_alias() {
        assert_eq!(
            Permission::from_id("manage_slash_commands"),
            Some(Permission::ManageOwnSlashCommands)
        );
    }
}
