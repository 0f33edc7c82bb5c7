//! Contracts the code keeps with the outside and with itself: the proto summary and rules,
//! layer imports, migrations, the CLI, TLS, metrics, telemetry, query plans, the load
//! generator.

mod architecture;
pub(crate) mod cli;
mod loadgen;
mod metrics;
mod migrations;
pub(crate) mod proto;
mod query_plans;
mod telemetry;
mod tls;
