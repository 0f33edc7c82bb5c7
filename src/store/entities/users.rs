use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) id: String,
    pub(crate) username: String,
    pub(crate) email: String,
    /// Space-separated role names, as Mattermost stores them.
    pub(crate) roles: String,
    pub(crate) is_bot: bool,
    pub(crate) bot_owner_id: Option<String>,
    pub(crate) create_at: i64,
    pub(crate) update_at: i64,
    pub(crate) delete_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
