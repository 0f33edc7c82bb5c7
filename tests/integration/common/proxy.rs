//! A TCP proxy the test can cut and restore, to put the database out of reach of the service,
//! or stall, to make it stop answering without closing anything (a silent network failure).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// Forwards 127.0.0.1:<port> to `upstream` until cut.
#[derive(Debug)]
pub struct ChaosProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl ChaosProxy {
    /// Starts forwarding to `upstream` (host:port).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let cut = cut.clone();
            let stalled = stalled.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let stalled = stalled.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(outbound) = TcpStream::connect(&upstream).await {
                            let (from_client, to_client) = inbound.into_split();
                            let (from_server, to_server) = outbound.into_split();
                            tokio::join!(
                                pump(from_client, to_server, stalled.clone()),
                                pump(from_server, to_client, stalled),
                            );
                        }
                    });
                    connections.lock().unwrap().push(task);
                }
            })
        };
        Self {
            addr,
            cut,
            stalled,
            connections,
            acceptor,
        }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Stops passing bytes either way, keeping every connection open.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Passes bytes again (what was held is delivered).
    pub fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }
}

/// Copies one direction of a connection, holding the bytes while stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.cut();
        self.acceptor.abort();
    }
}

/// `scheme://user@host:port/db?q` with host:port replaced: (the original host:port, the URL
/// pointing at `addr`).
fn via(url: &str, addr: SocketAddr) -> (String, String) {
    let scheme_end = url.find("://").unwrap() + 3;
    let rest = &url[scheme_end..];
    let at = rest.find('@').map_or(0, |i| i + 1);
    let host_end = rest[at..].find(['/', '?']).map_or(rest.len(), |i| at + i);
    let upstream = rest[at..host_end].to_owned();
    let proxied = format!(
        "{}{}{addr}{}",
        &url[..scheme_end],
        &rest[..at],
        &rest[host_end..]
    );
    (upstream, proxied)
}

/// A server whose database connections pass through a proxy the test controls, after
/// `tweak` adjusts its configuration. Only a database server has connections to cut, so the
/// tests that use this are ignored on SQLite and fail clearly without `TEST_DATABASE_URL`.
pub async fn server_behind_a_proxy(
    tweak: impl FnOnce(&mut token_service::config::Config) + Send + 'static,
) -> (ChaosProxy, super::TestServer) {
    let server_url =
        super::db::required_server_url("a database server whose connections can be cut");
    let (upstream, _) = via(&server_url, "127.0.0.1:1".parse().unwrap());
    let proxy = ChaosProxy::start(upstream).await;
    let proxy_addr = proxy.addr();
    let srv = super::TestServer::start_with(move |c| {
        let url = c.database_url.as_ref().unwrap().expose().to_owned();
        let (_, proxied) = via(&url, proxy_addr);
        c.database_url = Some(token_service::config::DatabaseUrl::new(proxied));
        tweak(c);
    })
    .await;
    (proxy, srv)
}
