//! The gRPC surface over real sockets: each RPC group against every kind of caller
//! (`caller_kinds/`), validation and effects per group, the revocation log and stream, the
//! event stream, replicas, concurrency, database faults, shutdown, health and reflection.

mod access_tokens;
mod audit;
pub(crate) mod bound_tokens;
pub(crate) mod caller_kinds;
mod check_connections;
mod commands;
mod concurrency;
mod events;
mod exhaustion;
mod expiry_jobs;
mod ext_authz;
mod fail_static;
mod faults;
mod guess_throttle;
mod health_reflection;
mod introspection;
mod keyset_paging;
mod last_use;
mod leaks;
mod lifecycle_log;
mod log_sealing;
pub(crate) mod non_compliant;
mod replicas;
mod revocation_log;
mod revocation_stream;
mod rotation;
mod scoped_tokens;
mod sessions;
mod shutdown;
mod token_format;
mod token_trail;
mod users;
mod webhooks;
mod webhooks_replicas;
mod webrtc;
