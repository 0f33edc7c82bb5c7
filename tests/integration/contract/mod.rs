mod architecture;
pub(crate) mod cli;
mod metrics;
mod migrations;
pub(crate) mod proto;
mod query_plans;
mod readme;
mod telemetry;
mod tls;
