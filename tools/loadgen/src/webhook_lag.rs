//! `loadgen webhook-lag`: how long a lifecycle record takes from its commit to a webhook
//! endpoint. A receiver in this process (HTTP/1.1 on 127.0.0.1) is registered with
//! CreateWebhook for `access_token.revoked`; personal access tokens are revoked one at a
//! time, paced; each lag is from the moment RevokeUserAccessToken returned (the change is
//! committed) to the moment the receiver got the message naming that token. Prints p50, p99
//! and max, and how many messages arrived before the revoke's answer did (counted as 0).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use token_service::{config::Config, pb};
use tokio::runtime::Builder;

use crate::{
    WebhookLagArgs,
    stats::RunResult,
    target::{self, Target, authed},
};

/// Arrival times by token id.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

pub(crate) fn run(args: WebhookLagArgs) -> Result<(), String> {
    if args.events == 0 {
        return Err("--events must be at least 1".into());
    }
    let server_rt = Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("srv-worker")
        .enable_all()
        .build()
        .map_err(|e| format!("server runtime: {e}"))?;
    let client_rt = Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("lg-client")
        .enable_all()
        .build()
        .map_err(|e| format!("client runtime: {e}"))?;
    client_rt.block_on(measure(&args, server_rt.handle().clone()))
}

async fn receive(State(arrivals): State<Arrivals>, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let Ok(message) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if let Some(token) = message["data"]["token_id"].as_str() {
        arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(token.to_owned())
            .or_insert(at);
    }
    StatusCode::NO_CONTENT
}

async fn measure(args: &WebhookLagArgs, server_rt: tokio::runtime::Handle) -> Result<(), String> {
    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind(args.receiver_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.receiver_addr))?;
    let receiver: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(arrivals.clone());
    let serving = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let database_url = args.database_url.clone();
    let target = match (args.grpc_target, &args.admin_token) {
        (Some(grpc), Some(token)) => Target::external(grpc, None, token.clone(), 1).await?,
        _ => {
            Target::start_in_process(&server_rt, 1, move |config: &mut Config| {
                config.webhooks.allow_private_addresses = true;
                if let Some(url) = database_url {
                    config.database_url = Some(token_service::config::DatabaseUrl::new(url));
                }
            })
            .await?
        }
    };
    let outcome = drive(args, &target, receiver, &arrivals).await;
    target.stop().await;
    serving.abort();
    outcome
}

async fn drive(
    args: &WebhookLagArgs,
    target: &Target,
    receiver: SocketAddr,
    arrivals: &Arrivals,
) -> Result<(), String> {
    let mut client = target::connect(target.grpc, 1).await?.remove(0);
    let admin = &target.admin_token;
    let hook = client
        .create_webhook(authed(
            pb::CreateWebhookRequest {
                url: format!("http://{receiver}/hook"),
                description: "loadgen webhook-lag".to_owned(),
                filter: Some(pb::WebhookFilter {
                    actions: vec!["access_token.revoked".to_owned()],
                    user_id: String::new(),
                }),
            },
            admin,
        ))
        .await
        .map_err(|s| format!("CreateWebhook: {s:?} (a running target needs webhooks.allow_private_addresses = true to reach {receiver})"))?
        .into_inner()
        .webhook
        .ok_or("CreateWebhook returned no webhook")?;
    let me = client
        .get_me(authed(pb::GetMeRequest {}, admin))
        .await
        .map_err(|s| format!("GetMe: {s:?}"))?
        .into_inner()
        .user
        .ok_or("GetMe returned no user")?;

    let mut committed: Vec<(String, Instant)> = Vec::with_capacity(args.events);
    let started = Instant::now();
    for i in 0..args.events {
        let token = client
            .create_user_access_token(authed(
                pb::CreateUserAccessTokenRequest {
                    user_id: me.id.clone(),
                    description: format!("webhook-lag {i}"),
                    expires_at: None,
                    ..Default::default()
                },
                admin,
            ))
            .await
            .map_err(|s| format!("CreateUserAccessToken: {s:?}"))?
            .into_inner()
            .user_access_token
            .ok_or("no token")?;
        client
            .revoke_user_access_token(authed(
                pb::RevokeUserAccessTokenRequest {
                    token_id: token.id.clone(),
                },
                admin,
            ))
            .await
            .map_err(|s| format!("RevokeUserAccessToken: {s:?}"))?;
        committed.push((token.id, Instant::now()));
        // Paced: spread the revocations over the poll cycles instead of bursting.
        tokio::time::sleep(args.interval).await;
    }
    let deadline = Instant::now() + args.wait;
    loop {
        let got = arrivals.lock().unwrap_or_else(|e| e.into_inner()).len();
        if got >= committed.len() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "only {got} of {} messages arrived within {:?}",
                committed.len(),
                args.wait
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let arrived = arrivals.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut early = 0;
    let lags: Vec<u64> = committed
        .iter()
        .map(|(token, at)| {
            let reached = arrived[token];
            match reached.checked_duration_since(*at) {
                Some(lag) => u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX),
                None => {
                    early += 1;
                    0
                }
            }
        })
        .collect();
    let result = RunResult::new(lags, 0, None, started.elapsed());
    let _ = client
        .delete_webhook(authed(
            pb::DeleteWebhookRequest {
                webhook_id: hook.id,
            },
            admin,
        ))
        .await;
    println!(
        "summary scenario=webhook-lag events={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} before_answer={early}",
        result.requests,
        result.p50(),
        result.p99(),
        result.quantile_ms(1.0),
    );
    println!(
        "| webhook-lag | {} | {:.2} | {:.2} | {:.2} |",
        result.requests,
        result.p50(),
        result.p99(),
        result.quantile_ms(1.0)
    );
    Ok(())
}
