use sea_orm::entity::prelude::*;

/// The most recent client addresses of a personal access token (the last-use flush keeps 5).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_token_addresses")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) token_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) ip: String,
    pub(crate) last_seen_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
