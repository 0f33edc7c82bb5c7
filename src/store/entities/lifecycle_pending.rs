use sea_orm::entity::prelude::*;

/// Deserialize: the PostgreSQL seal reads the rows it takes as one JSON array
/// (`store::lifecycle`); Serialize: batched token creations send theirs as one
/// (`store::token_inserts`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Deserialize, serde::Serialize)]
#[sea_orm(table_name = "lifecycle_pending")]
pub(crate) struct Model {
    #[sea_orm(primary_key)]
    pub(crate) seq: i64,
    pub(crate) create_at: i64,
    pub(crate) action: String,
    pub(crate) actor_type: String,
    pub(crate) actor_id: String,
    pub(crate) user_id: String,
    pub(crate) token_id: String,
    pub(crate) session_id: String,
    pub(crate) command_id: String,
    pub(crate) team_id: String,
    pub(crate) webhook_id: String,
    pub(crate) ip: String,
    pub(crate) user_agent: String,
    pub(crate) request_id: String,
    #[sea_orm(column_type = "Text")]
    pub(crate) detail: String,
    pub(crate) credential_hmac: String,
    pub(crate) revokes: String,
    pub(crate) revokes_id: String,
    /// 1 when `revokes` is set (indexed with the id), else 0.
    pub(crate) revoking: i16,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
