//! One request of each scenario. Each worker owns a driver and calls it in a loop; a call
//! fails when the answer is not the one the scenario expects (so an unauthenticated or
//! inactive answer is an error, not a fast success).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use token_service::pb::{
    self,
    envoy_ext_authz::envoy::service::auth::v3::{
        AttributeContext, CheckRequest, attribute_context,
        authorization_client::AuthorizationClient, check_response::HttpResponse,
    },
    token_service_client::TokenServiceClient,
};
use tonic::{
    Request,
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};

use crate::{
    db_baseline::{DbClient, HeldConnections, IdSource},
    http1::Http1Conn,
};

/// A worker's request maker.
#[derive(Debug)]
pub(crate) enum Driver {
    /// IntrospectToken of one of `tokens`, as the admin.
    Introspect {
        client: TokenServiceClient<Channel>,
        auth: MetadataValue<Ascii>,
        tokens: Arc<[String]>,
    },
    /// CreateUserAccessToken for the admin itself.
    CreateToken {
        client: TokenServiceClient<Channel>,
        auth: MetadataValue<Ascii>,
    },
    /// ext_authz Check of one of the prepared requests (one per token), as the admin.
    ExtAuthz {
        client: AuthorizationClient<Channel>,
        auth: MetadataValue<Ascii>,
        requests: Arc<[CheckRequest]>,
    },
    /// The point select of a session by one of `digests`, issued directly with a driver.
    DbSelect {
        db: DbClient,
        worker: usize,
        digests: Arc<[String]>,
    },
    /// As `DbSelect`, on sqlx connections held outside its pool.
    DbSelectHeld {
        conns: Arc<HeldConnections>,
        worker: usize,
        digests: Arc<[String]>,
    },
    /// RevokeUserAccessToken of the next of `ids` (each revoked once), as the admin.
    RevokeToken {
        client: TokenServiceClient<Channel>,
        auth: MetadataValue<Ascii>,
        ids: Arc<[String]>,
        next: Arc<AtomicU64>,
    },
    /// One row inserted into `table` in a transaction of its own, issued directly with sqlx.
    DbInsert {
        db: DbClient,
        table: Arc<str>,
        ids: Arc<IdSource>,
        next: Arc<AtomicU64>,
    },
    /// An HTTP/1.1 request: one of the prepared requests (one per token) of `rest`.
    Rest {
        conn: Http1Conn,
        rest: RestCall,
        requests: Arc<[Vec<u8>]>,
    },
}

/// The REST requests the scenarios make, and what a success answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestCall {
    /// GET /api/v4/users/me presenting the token: 200 with the user's JSON.
    GetMe,
    /// GET /auth/verify presenting the token: 200 `{"status":"OK"}` (identity in headers).
    Verify,
    /// POST /oauth2/introspect of the token, as the admin: 200 `{"active":true,...}`.
    Introspect,
}

impl RestCall {
    /// The request line's path.
    pub(crate) fn path(self) -> &'static str {
        match self {
            RestCall::GetMe => "/api/v4/users/me",
            RestCall::Verify => "/auth/verify",
            RestCall::Introspect => "/oauth2/introspect",
        }
    }

    /// How a successful answer's body starts.
    fn body_starts(self) -> &'static [u8] {
        match self {
            RestCall::GetMe => b"{",
            RestCall::Verify => b"{\"status\":\"OK\"}",
            RestCall::Introspect => b"{\"active\":true",
        }
    }

    /// The prepared requests, one per token, to `addr`; `admin_token` is the introspection
    /// caller.
    pub(crate) fn requests(
        self,
        addr: SocketAddr,
        tokens: &[String],
        admin_token: &str,
    ) -> Arc<[Vec<u8>]> {
        tokens
            .iter()
            .map(|t| match self {
                RestCall::GetMe | RestCall::Verify => Http1Conn::get_request(addr, self.path(), t),
                RestCall::Introspect => Http1Conn::post_form_request(
                    addr,
                    self.path(),
                    admin_token,
                    &format!("token={t}&token_type_hint=access_token"),
                ),
            })
            .collect()
    }
}

impl Driver {
    pub(crate) fn introspect(
        client: TokenServiceClient<Channel>,
        admin_token: &str,
        tokens: Arc<[String]>,
    ) -> Self {
        Driver::Introspect {
            client,
            auth: bearer(admin_token),
            tokens,
        }
    }

    pub(crate) fn create_token(client: TokenServiceClient<Channel>, admin_token: &str) -> Self {
        Driver::CreateToken {
            client,
            auth: bearer(admin_token),
        }
    }

    pub(crate) fn revoke_token(
        client: TokenServiceClient<Channel>,
        admin_token: &str,
        ids: Arc<[String]>,
        next: Arc<AtomicU64>,
    ) -> Self {
        Driver::RevokeToken {
            client,
            auth: bearer(admin_token),
            ids,
            next,
        }
    }

    pub(crate) fn ext_authz(
        channel: Channel,
        admin_token: &str,
        requests: Arc<[CheckRequest]>,
    ) -> Self {
        Driver::ExtAuthz {
            client: AuthorizationClient::new(channel),
            auth: bearer(admin_token),
            requests,
        }
    }

    /// The CheckRequest Envoy sends for a `GET /api/orders?page=2` carrying each token as a
    /// bearer header, with the headers a browser or client adds.
    pub(crate) fn check_requests(tokens: &[String]) -> Arc<[CheckRequest]> {
        tokens
            .iter()
            .enumerate()
            .map(|(i, token)| {
                let headers = [
                    (":authority", "orders.internal".to_owned()),
                    (":method", "GET".to_owned()),
                    (":path", "/api/orders?page=2".to_owned()),
                    (":scheme", "https".to_owned()),
                    ("accept", "application/json".to_owned()),
                    ("authorization", format!("Bearer {token}")),
                    ("user-agent", "loadgen/1".to_owned()),
                    ("x-forwarded-proto", "https".to_owned()),
                    ("x-request-id", format!("lg-{i}")),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
                CheckRequest {
                    attributes: Some(AttributeContext {
                        request: Some(attribute_context::Request {
                            time: None,
                            http: Some(attribute_context::HttpRequest {
                                id: format!("lg-{i}"),
                                method: "GET".to_owned(),
                                headers,
                                path: "/api/orders?page=2".to_owned(),
                                host: "orders.internal".to_owned(),
                                scheme: "https".to_owned(),
                                protocol: "HTTP/2".to_owned(),
                                ..Default::default()
                            }),
                        }),
                        ..Default::default()
                    }),
                }
            })
            .collect()
    }

    /// Makes request number `i` and checks the answer.
    pub(crate) async fn call(&mut self, i: usize) -> Result<(), String> {
        match self {
            Driver::Introspect {
                client,
                auth,
                tokens,
            } => {
                let mut request = Request::new(pb::IntrospectTokenRequest {
                    token: tokens[i % tokens.len()].clone(),
                });
                request.metadata_mut().insert("authorization", auth.clone());
                let answer = client
                    .introspect_token(request)
                    .await
                    .map_err(|s| format!("IntrospectToken: {:?} {}", s.code(), s.message()))?;
                if answer.get_ref().active {
                    Ok(())
                } else {
                    Err("IntrospectToken answered active=false".into())
                }
            }
            Driver::CreateToken { client, auth } => {
                let mut request = Request::new(pb::CreateUserAccessTokenRequest {
                    user_id: "me".to_owned(),
                    description: "loadgen write path".to_owned(),
                    expires_at: None,
                    ..Default::default()
                });
                request.metadata_mut().insert("authorization", auth.clone());
                let created = client
                    .create_user_access_token(request)
                    .await
                    .map_err(|s| {
                        format!("CreateUserAccessToken: {:?} {}", s.code(), s.message())
                    })?;
                if created.get_ref().token.is_empty() {
                    Err("CreateUserAccessToken returned no token".into())
                } else {
                    Ok(())
                }
            }
            Driver::RevokeToken {
                client,
                auth,
                ids,
                next,
            } => {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = usize::try_from(n).ok().and_then(|n| ids.get(n)) else {
                    return Err(format!(
                        "all {} tokens inserted for write-revoke are revoked: run shorter",
                        ids.len()
                    ));
                };
                let mut request = Request::new(pb::RevokeUserAccessTokenRequest {
                    token_id: id.clone(),
                });
                request.metadata_mut().insert("authorization", auth.clone());
                client
                    .revoke_user_access_token(request)
                    .await
                    .map(|_| ())
                    .map_err(|s| format!("RevokeUserAccessToken: {:?} {}", s.code(), s.message()))
            }
            Driver::DbInsert {
                db,
                table,
                ids,
                next,
            } => {
                db.insert_row(table, next.fetch_add(1, Ordering::Relaxed), ids)
                    .await
            }
            Driver::ExtAuthz {
                client,
                auth,
                requests,
            } => {
                let mut request = Request::new(requests[i % requests.len()].clone());
                request.metadata_mut().insert("authorization", auth.clone());
                let answer = client
                    .check(request)
                    .await
                    .map_err(|s| format!("Check: {:?} {}", s.code(), s.message()))?;
                match &answer.get_ref().http_response {
                    Some(HttpResponse::OkResponse(ok)) if !ok.headers.is_empty() => Ok(()),
                    other => Err(format!("Check did not allow: {other:?}")),
                }
            }
            Driver::DbSelect {
                db,
                worker,
                digests,
            } => {
                db.select_session(*worker, &digests[i % digests.len()])
                    .await
            }
            Driver::DbSelectHeld {
                conns,
                worker,
                digests,
            } => {
                conns
                    .select_session(*worker, &digests[i % digests.len()])
                    .await
            }
            Driver::Rest {
                conn,
                rest,
                requests,
            } => {
                let response = conn.send(&requests[i % requests.len()]).await?;
                if response.status == 200 && response.body.starts_with(rest.body_starts()) {
                    Ok(())
                } else {
                    Err(format!(
                        "{}: {} {}",
                        rest.path(),
                        response.status,
                        String::from_utf8_lossy(&response.body[..response.body.len().min(200)])
                    ))
                }
            }
        }
    }
}

fn bearer(token: &str) -> MetadataValue<Ascii> {
    format!("Bearer {token}").parse().expect("ascii token")
}
