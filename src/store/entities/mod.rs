//! SeaORM entities. Crate-private: queries in `store/` turn them into domain records.

pub(crate) mod access_token_addresses;
pub(crate) mod access_token_superseded_secrets;
pub(crate) mod commands;
pub(crate) mod lifecycle_log;
pub(crate) mod lifecycle_pending;
pub(crate) mod scheduled_jobs;
pub(crate) mod service_meta;
pub(crate) mod sessions;
pub(crate) mod team_members;
pub(crate) mod user_access_tokens;
pub(crate) mod users;
pub(crate) mod webhook_endpoints;
