use sea_orm::entity::prelude::*;

/// Serialize: batched creations send their rows as one JSON array (`store::token_inserts`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "user_access_tokens")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) id: String,
    /// Hex HMAC-SHA256 of the secret under the server key; never the secret.
    pub(crate) token_hash: String,
    pub(crate) user_id: String,
    pub(crate) description: String,
    pub(crate) is_active: bool,
    pub(crate) expires_at: i64,
    pub(crate) create_at: i64,
    /// When the owner was last warned of the expiry (Unix ms); internal, never in the API.
    pub(crate) last_notified_at: Option<i64>,
    /// Last use (Unix ms, 0 = never), written by the last-use flush.
    pub(crate) last_used_at: i64,
    /// The user agent of the last use, at most 255 bytes.
    pub(crate) last_user_agent: String,
    /// The client address blocks the token may be used from, canonical and space-separated;
    /// "" = unbound.
    pub(crate) bound_cidrs: String,
    /// The token's scopes, space-separated; "" = unscoped.
    pub(crate) scopes: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
