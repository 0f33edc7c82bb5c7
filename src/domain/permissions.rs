//! Permissions, roles, and the default role table (Mattermost's fresh-install defaults for
//! the permissions this service decides on).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
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

/// The system admin role: holds every permission.
pub const SYSTEM_ADMIN: &str = "system_admin";
/// The ordinary user role.
pub const SYSTEM_USER: &str = "system_user";
/// token-service's role for internal services that call IntrospectToken.
pub const SYSTEM_TOKEN_INTROSPECTOR: &str = "system_token_introspector";

/// Which permissions each role grants.
#[derive(Debug, Clone)]
pub struct RoleTable {
    roles: BTreeMap<String, BTreeSet<Permission>>,
}

impl Default for RoleTable {
    fn default() -> Self {
        use Permission::*;
        let mut roles = BTreeMap::new();
        roles.insert(
            SYSTEM_ADMIN.to_owned(),
            Permission::ALL.into_iter().collect(),
        );
        let none = BTreeSet::new;
        roles.insert(SYSTEM_USER.to_owned(), none());
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
            let mut set = BTreeSet::new();
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
                .is_some_and(|set| set.contains(&permission))
        })
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
    fn legacy_slash_command_permission_is_an_alias() {
        assert_eq!(
            Permission::from_id("manage_slash_commands"),
            Some(Permission::ManageOwnSlashCommands)
        );
    }
}
