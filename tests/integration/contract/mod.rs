mod architecture;
mod cli;
mod migrations;
pub(crate) mod proto;
mod query_plans;
mod tls;
