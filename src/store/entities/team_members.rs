use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "team_members")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) team_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) user_id: String,
    /// Space-separated team role names.
    pub(crate) roles: String,
    pub(crate) create_at: i64,
    pub(crate) delete_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
