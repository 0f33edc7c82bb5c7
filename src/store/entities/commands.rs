use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "commands")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) id: String,
    /// `<key id>.<base64 nonce+ciphertext>`: AES-256-GCM, never the plaintext token.
    pub(crate) token_ciphertext: String,
    pub(crate) team_id: String,
    pub(crate) creator_id: String,
    pub(crate) trigger: String,
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) display_name: String,
    pub(crate) description: String,
    pub(crate) username: String,
    pub(crate) icon_url: String,
    pub(crate) auto_complete: bool,
    pub(crate) auto_complete_desc: String,
    pub(crate) auto_complete_hint: String,
    pub(crate) create_at: i64,
    pub(crate) update_at: i64,
    pub(crate) delete_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
