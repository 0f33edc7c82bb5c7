use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) id: String,
    /// Hex HMAC-SHA256 of the session token under the server key; never the token. For a
    /// session minted for a personal access token this equals the token's own hash.
    pub(crate) token_hash: String,
    pub(crate) user_id: String,
    pub(crate) user_access_token_id: Option<String>,
    pub(crate) create_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) last_activity_at: i64,
    /// The lifetime granted at creation, in milliseconds; activity extends the expiry by
    /// this much. 0: never extended.
    pub(crate) length_ms: i64,
    pub(crate) device_id: String,
    pub(crate) roles: String,
    pub(crate) is_oauth: bool,
    pub(crate) expired_notify: bool,
    /// JSON object of string props.
    #[sea_orm(column_type = "Text")]
    pub(crate) props: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
