use sea_orm::entity::prelude::*;

/// The digest of a secret a rotation replaced; never the secret.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_token_superseded_secrets")]
pub(crate) struct Model {
    /// Hex HMAC-SHA256 of the superseded secret under the server key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) token_hash: String,
    pub(crate) token_id: String,
    pub(crate) user_id: String,
    pub(crate) superseded_at: i64,
    /// Until when the superseded secret still authenticates; 0 = not at all.
    pub(crate) grace_until: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
