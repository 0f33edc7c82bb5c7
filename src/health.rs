//! Liveness and readiness: what `/livez`, `/readyz`, `/api/v4/system/ping` and gRPC health
//! report.
//!
//! Liveness is the process serving requests; it never depends on the database. Readiness is
//! four checks, in this order:
//!
//! - `database`: the database answers `SELECT 1` within the check timeout;
//! - `migrations`: every migration this binary knows is applied (a database migrated further
//!   by a newer replica stays ready: migrations only add);
//! - `revocation_feed`: the revocation feed is caught up, so the token cache is trusted;
//! - `listeners`: every listener accepts connections (none failed to in the last seconds,
//!   out of file descriptors say; see [`crate::listener`]);
//! - `shutdown`: no graceful shutdown has begun.
//!
//! Degraded (fail static, `cache.stale_if_unavailable`): while the database is unreachable
//! and credentials cached before the outage still authenticate (within the window), the
//! failing `database`, `migrations` and `revocation_feed` checks do not make the replica
//! unready: it answers what it can (`/readyz` 200 with `"status": "degraded"`, gRPC health
//! SERVING) so load balancers keep sending it the token checks it can answer. Once the window
//! has passed it is not ready, as without the setting.
//!
//! The server's health watcher runs the database checks every `health_check_interval_ms`
//! (and reads the feed's state more often while it is behind) and publishes the result here,
//! after telling gRPC health. Probes read the published state: they never reach the database
//! themselves, answer at once even while it stalls, and agree with gRPC health.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::domain::Context;

/// The outcome of one readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckState {
    Ok,
    /// Failing, with a reason for the operator (never a secret, never database internals).
    Failing(String),
}

impl CheckState {
    /// Whether the check passes.
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckState::Ok)
    }
}

/// The readiness checks, by name, in the order they are reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub database: CheckState,
    pub migrations: CheckState,
    pub revocation_feed: CheckState,
    pub listeners: CheckState,
    pub shutdown: CheckState,
    /// Fail static: why the replica is degraded (serving cached credentials through a
    /// database outage), until when; `None` when it is not.
    pub degraded: Option<String>,
}

/// The checks a degraded replica may fail and still be ready.
const DEGRADABLE: [&str; 3] = ["database", "migrations", "revocation_feed"];

impl Readiness {
    /// Every check with its name.
    pub fn checks(&self) -> [(&'static str, &CheckState); 5] {
        [
            ("database", &self.database),
            ("migrations", &self.migrations),
            ("revocation_feed", &self.revocation_feed),
            ("listeners", &self.listeners),
            ("shutdown", &self.shutdown),
        ]
    }

    /// Whether every check passes (or, degraded, every check an outage does not fail).
    pub fn is_ready(&self) -> bool {
        self.first_failure().is_none()
    }

    /// The first failing check that makes the replica unready: its name and reason.
    pub fn first_failure(&self) -> Option<(&'static str, &str)> {
        self.checks()
            .into_iter()
            .find_map(|(name, state)| match state {
                CheckState::Failing(_) if self.degraded.is_some() && DEGRADABLE.contains(&name) => {
                    None
                }
                CheckState::Ok => None,
                CheckState::Failing(reason) => Some((name, reason.as_str())),
            })
    }
}

/// What the database checks found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseChecks {
    pub database: CheckState,
    pub migrations: CheckState,
}

/// A server's health, shared by the watcher (which writes it) and the probes (which read it).
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ctx: Context,
    published: RwLock<Readiness>,
    shutting_down: AtomicBool,
    timeout: Duration,
}

/// Why the revocation feed check fails while the feed is behind.
const FEED_BEHIND: &str = "the revocation feed has not caught up with the revocation log; \
                           token checks bypass the cache meanwhile";

impl Health {
    /// Health for a server that has just connected and migrated its database: the database
    /// checks pass, the revocation feed has not caught up yet. `timeout` bounds each database
    /// check.
    pub fn new(ctx: Context, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                ctx,
                published: RwLock::new(Readiness {
                    database: CheckState::Ok,
                    migrations: CheckState::Ok,
                    revocation_feed: CheckState::Failing(FEED_BEHIND.to_owned()),
                    listeners: CheckState::Ok,
                    shutdown: CheckState::Ok,
                    degraded: None,
                }),
                shutting_down: AtomicBool::new(false),
                timeout,
            }),
        }
    }

    /// The published readiness.
    pub fn readiness(&self) -> Readiness {
        self.inner
            .published
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publishes a readiness (the watcher, after gRPC health has been told).
    pub(crate) fn publish(&self, readiness: Readiness) {
        *self
            .inner
            .published
            .write()
            .unwrap_or_else(|e| e.into_inner()) = readiness;
    }

    /// Marks the start of a graceful shutdown: not ready from now on.
    pub(crate) fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let mut readiness = self.readiness();
        readiness.shutdown = CheckState::Failing("a graceful shutdown has begun".to_owned());
        self.publish(readiness);
    }

    /// Readiness from fresh database checks and the feed's and shutdown's current state.
    pub(crate) fn evaluate(&self, database: DatabaseChecks) -> Readiness {
        Readiness {
            database: database.database,
            migrations: database.migrations,
            revocation_feed: self.feed_state(),
            listeners: self.listeners_state(),
            shutdown: self.shutdown_state(),
            degraded: self.degraded_state(),
        }
    }

    /// The published readiness with the feed's and shutdown's current state.
    pub(crate) fn refresh_feed(&self) -> Readiness {
        let mut readiness = self.readiness();
        readiness.revocation_feed = self.feed_state();
        readiness.listeners = self.listeners_state();
        readiness.shutdown = self.shutdown_state();
        readiness.degraded = self.degraded_state();
        readiness
    }

    /// Fail static: degraded while the database is unreachable and credentials cached
    /// before the outage are still served.
    fn degraded_state(&self) -> Option<String> {
        let ctx = &self.inner.ctx;
        let until = ctx.cache().stale_until(ctx.now())?;
        Some(format!(
            "the database is unreachable: credentials cached before the outage keep \
             authenticating until {} (cache.stale_if_unavailable); every write fails",
            crate::domain::lifecycle::rfc3339(until)
        ))
    }

    fn listeners_state(&self) -> CheckState {
        match self.inner.ctx.metrics().listeners().failing() {
            None => CheckState::Ok,
            Some(reason) => CheckState::Failing(reason),
        }
    }

    fn feed_state(&self) -> CheckState {
        if self.inner.ctx.cache().is_trusted() {
            CheckState::Ok
        } else {
            CheckState::Failing(FEED_BEHIND.to_owned())
        }
    }

    fn shutdown_state(&self) -> CheckState {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            CheckState::Failing("a graceful shutdown has begun".to_owned())
        } else {
            CheckState::Ok
        }
    }

    /// Runs the database checks now: a round trip, then the applied migrations, within the
    /// timeout. The database's own error text goes to the log, not into the reason.
    pub async fn check_database(&self) -> DatabaseChecks {
        let store = self.inner.ctx.store();
        let timeout = self.inner.timeout;
        let unreachable = |detail: &str| DatabaseChecks {
            database: CheckState::Failing(detail.to_owned()),
            migrations: CheckState::Failing("not checked: the database is unreachable".to_owned()),
        };
        match tokio::time::timeout(timeout, store.ping()).await {
            Err(_) => {
                return unreachable(&format!(
                    "the database did not answer within {} ms",
                    timeout.as_millis()
                ));
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %error_chain(&e), "readiness: database ping failed");
                return unreachable("the database is unreachable");
            }
            Ok(Ok(())) => {}
        }
        let migrations = match tokio::time::timeout(timeout, store.migration_status()).await {
            Err(_) => CheckState::Failing(format!(
                "the migration table did not answer within {} ms",
                timeout.as_millis()
            )),
            Ok(Err(e)) => {
                tracing::debug!(error = %error_chain(&e), "readiness: cannot read migrations");
                CheckState::Failing("cannot read the applied migrations".to_owned())
            }
            Ok(Ok(states)) => {
                let pending: Vec<String> = states
                    .into_iter()
                    .filter(|m| !m.applied)
                    .map(|m| m.name)
                    .collect();
                if pending.is_empty() {
                    CheckState::Ok
                } else {
                    CheckState::Failing(format!(
                        "migrations not applied: {} (run `token-service migrate`)",
                        pending.join(", ")
                    ))
                }
            }
        };
        DatabaseChecks {
            database: CheckState::Ok,
            migrations,
        }
    }

    /// Whether the database answers `SELECT 1` within the timeout, checked now (for
    /// Mattermost's `system/ping?get_server_status=true`).
    pub async fn database_answers(&self) -> bool {
        matches!(
            tokio::time::timeout(self.inner.timeout, self.inner.ctx.store().ping()).await,
            Ok(Ok(()))
        )
    }
}

fn error_chain(e: &crate::domain::error::Error) -> String {
    use std::error::Error as _;
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_is_named_in_check_order() {
        let readiness = Readiness {
            database: CheckState::Ok,
            migrations: CheckState::Failing("m".into()),
            revocation_feed: CheckState::Failing("f".into()),
            listeners: CheckState::Ok,
            shutdown: CheckState::Ok,
            degraded: None,
        };
        assert!(!readiness.is_ready());
        let degraded = Readiness {
            degraded: Some("d".into()),
            ..readiness.clone()
        };
        assert!(
            degraded.is_ready(),
            "an outage's checks do not count while degraded"
        );
        let shutting_down = Readiness {
            shutdown: CheckState::Failing("s".into()),
            ..degraded
        };
        assert_eq!(shutting_down.first_failure(), Some(("shutdown", "s")));
        assert_eq!(readiness.first_failure(), Some(("migrations", "m")));
        let ready = Readiness {
            migrations: CheckState::Ok,
            revocation_feed: CheckState::Ok,
            ..readiness
        };
        assert!(ready.is_ready());
        assert_eq!(ready.first_failure(), None);
    }
}
