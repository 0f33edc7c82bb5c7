use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) id: String,
    pub(crate) url: String,
    pub(crate) description: String,
    /// Space-separated lifecycle actions; empty: every action.
    pub(crate) actions: String,
    /// Subject user filter; empty: any.
    pub(crate) user_id: String,
    pub(crate) enabled: bool,
    /// `<key id>.<base64 nonce+ciphertext>`: AES-256-GCM, never the plaintext secret.
    pub(crate) secret_ciphertext: String,
    pub(crate) previous_secret_ciphertext: String,
    pub(crate) previous_secret_expires_at: i64,
    pub(crate) delivered_through: i64,
    pub(crate) lease_owner: String,
    pub(crate) lease_expires_at: i64,
    pub(crate) attempts: i32,
    pub(crate) next_attempt_at: i64,
    pub(crate) failing_since: i64,
    pub(crate) last_error: String,
    pub(crate) last_attempt_at: i64,
    pub(crate) last_success_at: i64,
    pub(crate) disabled_reason: String,
    pub(crate) create_at: i64,
    pub(crate) update_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
