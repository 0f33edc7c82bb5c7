//! token-service: the credential lifecycle of a Mattermost-compatible platform over gRPC.
//!
//! Flow: transport (`grpc`) -> `domain` (every rule) -> `store` (SeaORM). See README.md.

pub mod admin;
pub mod cli;
pub mod client_ip;
pub mod config;
mod deadline;
pub mod domain;
pub mod grpc;
pub mod health;
pub mod listener;
pub mod metrics;
pub mod pb;
pub mod private_files;
pub mod rest;
pub mod server;
pub mod store;
pub mod stripes;
pub mod telemetry;
pub mod tls;
pub mod webhook_delivery;
