use sea_orm::entity::prelude::*;

/// One background job's lease and run times (Unix ms; 0 = never).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "scheduled_jobs")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) name: String,
    /// The replica running the job (its worker name), or "".
    pub(crate) lease_owner: String,
    pub(crate) lease_until: i64,
    pub(crate) last_started_at: i64,
    pub(crate) last_finished_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
