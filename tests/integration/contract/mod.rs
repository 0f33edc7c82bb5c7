//! Contracts the code keeps with the outside and with itself: the proto summary and rules,
//! layer imports, migrations, the CLI (and its audit commands), file modes, TLS, metrics, telemetry, query plans, the load
//! generator.

mod architecture;
pub(crate) mod cli;
mod cli_audit;
mod cli_leaks;
mod cli_non_compliant;
mod file_modes;
mod metrics;
mod migrations;
mod packaging;
pub(crate) mod proto;
mod query_plans;
mod readme;
mod telemetry;
pub(crate) mod tls;
