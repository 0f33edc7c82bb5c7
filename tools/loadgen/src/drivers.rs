//! One request of each scenario. Each worker owns a driver and calls it in a loop; a call
//! fails when the answer is not the one the scenario expects (so an unauthenticated or
//! inactive answer is an error, not a fast success).

use std::{net::SocketAddr, sync::Arc};

use token_service::pb::{self, token_service_client::TokenServiceClient};
use tonic::{
    Request,
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};

use crate::http1::Http1Conn;

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
    /// GET /api/v4/users/me with one of the prepared requests (one per token).
    GetMe {
        conn: Http1Conn,
        requests: Arc<[Vec<u8>]>,
    },
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

    pub(crate) fn get_me(addr: SocketAddr, tokens: &[String]) -> Arc<[Vec<u8>]> {
        tokens
            .iter()
            .map(|t| Http1Conn::get_request(addr, "/api/v4/users/me", t))
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
            Driver::GetMe { conn, requests } => {
                let response = conn.send(&requests[i % requests.len()]).await?;
                if response.status == 200 && response.body.starts_with(b"{") {
                    Ok(())
                } else {
                    Err(format!(
                        "GET /api/v4/users/me: {} {}",
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
