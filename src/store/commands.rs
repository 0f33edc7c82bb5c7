//! Slash commands (stored with their token encrypted) and team memberships: insert, look up,
//! rotate a command token, add a membership or set its roles.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};

use super::entities::{commands, team_members};
use super::lifecycle::Appended;
use super::{Store, join_roles, split_roles};
use crate::domain::{
    error::Result,
    ids::{CommandId, TeamId, UserId},
    lifecycle::NewRecord,
    model::{Command, TeamMember, TeamMemberWrite, UnixMillis},
};

impl From<commands::Model> for Command {
    fn from(m: commands::Model) -> Self {
        Command {
            id: CommandId::from_trusted(m.id),
            team_id: TeamId::from_trusted(m.team_id),
            creator_id: UserId::from_trusted(m.creator_id),
            trigger: m.trigger,
            method: m.method,
            url: m.url,
            display_name: m.display_name,
            description: m.description,
            username: m.username,
            icon_url: m.icon_url,
            auto_complete: m.auto_complete,
            auto_complete_desc: m.auto_complete_desc,
            auto_complete_hint: m.auto_complete_hint,
            create_at: m.create_at,
            update_at: m.update_at,
            delete_at: m.delete_at,
        }
    }
}

impl From<team_members::Model> for TeamMember {
    fn from(m: team_members::Model) -> Self {
        TeamMember {
            team_id: TeamId::from_trusted(m.team_id),
            user_id: UserId::from_trusted(m.user_id),
            roles: split_roles(&m.roles),
            create_at: m.create_at,
            delete_at: m.delete_at,
        }
    }
}

impl Store {
    /// Stores a new command with its encrypted token.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn insert_command(
        &self,
        command: &Command,
        token_ciphertext: &str,
        record: &NewRecord,
    ) -> Result<()> {
        let row = commands::ActiveModel {
            id: Set(command.id.to_string()),
            token_ciphertext: Set(token_ciphertext.to_owned()),
            team_id: Set(command.team_id.to_string()),
            creator_id: Set(command.creator_id.to_string()),
            trigger: Set(command.trigger.clone()),
            method: Set(command.method.clone()),
            url: Set(command.url.clone()),
            display_name: Set(command.display_name.clone()),
            description: Set(command.description.clone()),
            username: Set(command.username.clone()),
            icon_url: Set(command.icon_url.clone()),
            auto_complete: Set(command.auto_complete),
            auto_complete_desc: Set(command.auto_complete_desc.clone()),
            auto_complete_hint: Set(command.auto_complete_hint.clone()),
            create_at: Set(command.create_at),
            update_at: Set(command.update_at),
            delete_at: Set(command.delete_at),
        };
        let txn = self.begin_with_write().await?;
        commands::Entity::insert(row)
            .exec_without_returning(&txn)
            .await?;
        let appended = self
            .append_to_log(&txn, std::slice::from_ref(record), command.create_at)
            .await?;
        self.commit_logged(txn, appended).await?;
        Ok(())
    }

    /// A command (deleted ones included) with its encrypted token.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_command(&self, id: &CommandId) -> Result<Option<(Command, String)>> {
        Ok(commands::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .map(|m| {
                let ciphertext = m.token_ciphertext.clone();
                (Command::from(m), ciphertext)
            }))
    }

    /// Whether a live command on the team already uses the trigger.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn command_trigger_taken(&self, team_id: &TeamId, trigger: &str) -> Result<bool> {
        let count = commands::Entity::find()
            .filter(commands::Column::TeamId.eq(team_id.as_str()))
            .filter(commands::Column::Trigger.eq(trigger))
            .filter(commands::Column::DeleteAt.eq(0))
            .count(&self.db)
            .await?;
        Ok(count > 0)
    }

    /// Replaces a live command's encrypted token. Returns whether the command was updated.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn update_command_token(
        &self,
        id: &CommandId,
        token_ciphertext: &str,
        now: UnixMillis,
        record: &NewRecord,
    ) -> Result<bool> {
        let txn = self.begin_write().await?;
        let live = commands::Entity::find_by_id(id.to_string())
            .filter(commands::Column::DeleteAt.eq(0))
            .one(&txn)
            .await?
            .is_some();
        let mut appended = Appended::default();
        if live {
            commands::Entity::update_many()
                .col_expr(
                    commands::Column::TokenCiphertext,
                    Expr::value(token_ciphertext.to_owned()),
                )
                .col_expr(commands::Column::UpdateAt, Expr::value(now))
                .filter(commands::Column::Id.eq(id.as_str()))
                .exec(&txn)
                .await?;
            appended = self
                .append_to_log(&txn, std::slice::from_ref(record), now)
                .await?;
        }
        self.commit_logged(txn, appended).await?;
        Ok(live)
    }

    /// A live (not deleted) team membership.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_team_member(
        &self,
        team_id: &TeamId,
        user_id: &UserId,
    ) -> Result<Option<TeamMember>> {
        Ok(
            team_members::Entity::find_by_id((team_id.to_string(), user_id.to_string()))
                .filter(team_members::Column::DeleteAt.eq(0))
                .one(&self.db)
                .await?
                .map(TeamMember::from),
        )
    }

    /// A user's live (not deleted) team memberships, ordered by team id. The index on
    /// user_id finds the rows; the few deleted ones are dropped here rather than by a filter
    /// the database would apply after the index.
    pub async fn list_team_members_for_user(&self, user_id: &UserId) -> Result<Vec<TeamMember>> {
        Ok(team_members::Entity::find()
            .filter(team_members::Column::UserId.eq(user_id.as_str()))
            .order_by_asc(team_members::Column::TeamId)
            .all(&self.db)
            .await?
            .into_iter()
            .filter(|m| m.delete_at == 0)
            .map(TeamMember::from)
            .collect())
    }

    /// Writes a membership as `write` says, in one transaction: the membership after it,
    /// and whether anything was written (false when a live membership was kept as it is).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn upsert_team_member(
        &self,
        team_id: &TeamId,
        user_id: &UserId,
        write: &TeamMemberWrite,
        now: UnixMillis,
        record: &NewRecord,
    ) -> Result<(TeamMember, bool)> {
        let txn = self.begin_write().await?;
        let key = (team_id.to_string(), user_id.to_string());
        let existing = team_members::Entity::find_by_id(key.clone())
            .one(&txn)
            .await?;
        let roles = match (write, &existing) {
            (TeamMemberWrite::JoinKeepingLiveRoles(_), Some(live)) if live.delete_at == 0 => {
                txn.commit().await?;
                return Ok((TeamMember::from(live.clone()), false));
            }
            (
                TeamMemberWrite::JoinKeepingLiveRoles(roles) | TeamMemberWrite::SetRoles(roles),
                _,
            ) => roles,
        };
        if existing.is_some() {
            team_members::Entity::update_many()
                .col_expr(team_members::Column::Roles, Expr::value(join_roles(roles)))
                .col_expr(team_members::Column::DeleteAt, Expr::value(0i64))
                .filter(team_members::Column::TeamId.eq(team_id.as_str()))
                .filter(team_members::Column::UserId.eq(user_id.as_str()))
                .exec(&txn)
                .await?;
        } else {
            team_members::Entity::insert(team_members::ActiveModel {
                team_id: Set(key.0.clone()),
                user_id: Set(key.1.clone()),
                roles: Set(join_roles(roles)),
                create_at: Set(now),
                delete_at: Set(0),
            })
            .exec_without_returning(&txn)
            .await?;
        }
        let member = team_members::Entity::find_by_id(key)
            .one(&txn)
            .await?
            .map(TeamMember::from);
        let appended = self
            .append_to_log(&txn, std::slice::from_ref(record), now)
            .await?;
        self.commit_logged(txn, appended).await?;
        member
            .map(|m| (m, true))
            .ok_or_else(|| crate::domain::error::Error::internal("team member vanished"))
    }
}
