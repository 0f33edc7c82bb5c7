//! Users: insert and look up, and the two changes that also touch the user's sessions (roles,
//! activation), each applied as the domain describes it in one transaction with its
//! lifecycle record.

use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

use super::entities::{sessions, users};
use super::{Store, error::is_unique_violation, join_roles, split_roles};
use crate::domain::{
    error::{Error, Reason, Result},
    ids::UserId,
    lifecycle::NewRecord,
    model::{User, UserActivationChange, UserRolesChange},
};

impl From<users::Model> for User {
    fn from(m: users::Model) -> Self {
        User {
            id: UserId::from_trusted(m.id),
            username: m.username,
            email: m.email,
            roles: split_roles(&m.roles),
            is_bot: m.is_bot,
            bot_owner_id: m.bot_owner_id.map(UserId::from_trusted),
            create_at: m.create_at,
            update_at: m.update_at,
            delete_at: m.delete_at,
        }
    }
}

impl Store {
    /// Inserts a user. A taken id or username is `AlreadyExists`.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn insert_user(&self, user: &User, record: &NewRecord) -> Result<()> {
        let row = users::ActiveModel {
            id: Set(user.id.to_string()),
            username: Set(user.username.clone()),
            email: Set(user.email.clone()),
            roles: Set(join_roles(&user.roles)),
            is_bot: Set(user.is_bot),
            bot_owner_id: Set(user.bot_owner_id.as_ref().map(ToString::to_string)),
            create_at: Set(user.create_at),
            update_at: Set(user.update_at),
            delete_at: Set(user.delete_at),
        };
        let txn = self.begin_with_write().await?;
        users::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::AlreadyExists {
                        field: "username",
                        reason: Reason::UsernameTaken,
                    }
                } else {
                    e.into()
                }
            })?;
        let appended = self
            .append_to_log(&txn, std::slice::from_ref(record), user.create_at)
            .await?;
        self.commit_logged(txn, appended).await?;
        Ok(())
    }

    /// A user by id.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_user(&self, id: &UserId) -> Result<Option<User>> {
        Ok(users::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .map(User::from))
    }

    /// A user by (lower-case) username.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_user_by_username(&self, username: &str) -> Result<Option<User>> {
        Ok(users::Entity::find()
            .filter(users::Column::Username.eq(username))
            .one(&self.db)
            .await?
            .map(User::from))
    }

    /// Applies a roles change: the user's roles (and, if the change says so, those of every
    /// session they hold) and its revocation event, in one transaction. Returns the updated
    /// user, or `None` if there is no such user.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn update_user_roles(
        &self,
        id: &UserId,
        change: &UserRolesChange,
        record: &NewRecord,
    ) -> Result<Option<User>> {
        let txn = self.begin_write().await?;
        let joined = join_roles(&change.roles);
        let updated = users::Entity::update_many()
            .col_expr(users::Column::Roles, Expr::value(joined.clone()))
            .col_expr(users::Column::UpdateAt, Expr::value(change.update_at))
            .filter(users::Column::Id.eq(id.as_str()))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            return Ok(None);
        }
        if change.copy_to_sessions {
            sessions::Entity::update_many()
                .col_expr(sessions::Column::Roles, Expr::value(joined))
                .filter(sessions::Column::UserId.eq(id.as_str()))
                .exec(&txn)
                .await?;
        }
        let user = users::Entity::find_by_id(id.to_string())
            .one(&txn)
            .await?
            .map(User::from);
        let appended = self
            .append_to_log(&txn, std::slice::from_ref(record), change.update_at)
            .await?;
        self.commit_logged(txn, appended).await?;
        Ok(user)
    }

    /// Applies an activation change: `delete_at` (resolved against the stored value, read in
    /// the same transaction), the user's sessions if the change deletes them, and its
    /// revocation event, in one transaction. Returns the updated user, or `None` if there is
    /// no such user.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn set_user_active(
        &self,
        id: &UserId,
        change: &UserActivationChange,
        record: &NewRecord,
    ) -> Result<Option<User>> {
        let txn = self.begin_write().await?;
        let Some(existing) = users::Entity::find_by_id(id.to_string()).one(&txn).await? else {
            return Ok(None);
        };
        users::Entity::update_many()
            .col_expr(
                users::Column::DeleteAt,
                Expr::value(change.delete_at.given(existing.delete_at)),
            )
            .col_expr(users::Column::UpdateAt, Expr::value(change.update_at))
            .filter(users::Column::Id.eq(id.as_str()))
            .exec(&txn)
            .await?;
        if change.delete_sessions {
            sessions::Entity::delete_many()
                .filter(sessions::Column::UserId.eq(id.as_str()))
                .exec(&txn)
                .await?;
        }
        let user = users::Entity::find_by_id(id.to_string())
            .one(&txn)
            .await?
            .map(User::from);
        let appended = self
            .append_to_log(&txn, std::slice::from_ref(record), change.update_at)
            .await?;
        self.commit_logged(txn, appended).await?;
        Ok(user)
    }
}
