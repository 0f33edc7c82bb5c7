//! A second replica as its own OS process (the real `token-service serve` on the test
//! server's database and key); and reading the next event of a revocation or event stream
//! with a timeout.

use std::time::Duration;

use tempfile::TempDir;
use token_service::pb::{self, token_service_client::TokenServiceClient};
use tonic::transport::Channel;

use super::{Client, TEST_SERVER_KEY, TestServer};

/// Another replica as a separate OS process: the real `token-service serve` binary on this
/// server's database and key, with its own cache, pool and revocation feed. Killed on drop.
#[derive(Debug)]
pub struct ReplicaProcess {
    child: std::process::Child,
    pub grpc_addr: String,
    pub http_addr: String,
    /// Every line the process wrote to stderr (its log) so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl ReplicaProcess {
    /// Starts `token-service serve` for `srv`'s database and waits until it listens.
    pub fn start(srv: &TestServer) -> Self {
        Self::start_with_env(srv, &[])
    }

    /// As [`ReplicaProcess::start`], with extra environment variables (settings such as
    /// `TOKEN_SERVICE_REVOCATION_POLL_INTERVAL_MS`).
    pub fn start_with_env(srv: &TestServer, env: &[(&str, &str)]) -> Self {
        Self::start_limited(srv, env, None)
    }

    /// As [`ReplicaProcess::start_with_env`], with the process's file descriptor limit
    /// (`RLIMIT_NOFILE`) set to `open_files` (by `ulimit -n` in a shell that then `exec`s
    /// the server) when given.
    pub fn start_limited(srv: &TestServer, env: &[(&str, &str)], open_files: Option<u32>) -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("temp dir");
        let url = srv
            .config
            .database_url
            .as_ref()
            .expect("database url")
            .expose()
            .to_owned();
        let mut scan_log = super::secret_scan::child_log();
        let binary = env!("CARGO_BIN_EXE_token-service");
        let mut command = match open_files {
            None => std::process::Command::new(binary),
            Some(limit) => {
                let mut sh = std::process::Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(binary);
                sh
            }
        };
        command
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--database-url")
            .arg(&url)
            .env_remove("RUST_LOG")
            .env("TOKEN_SERVICE_SERVER_KEY", TEST_SERVER_KEY)
            .env("TOKEN_SERVICE_LOG__FORMAT", "text")
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null());
        if scan_log.is_some() {
            command.env("RUST_LOG", "trace");
        }
        let mut child = command.spawn().expect("spawn token-service serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(log) = scan_log.as_mut() {
                    use std::io::Write as _;
                    let _ = writeln!(log, "{line}");
                }
                lines.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    // Keep draining so the child never blocks on a full pipe.
                    continue;
                }
            }
        });
        let field = |line: &str, name: &str| log_field(line, name).map(str::to_owned);
        let (grpc_addr, http_addr) = loop {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
                // Never leave the child behind.
                let _ = child.kill();
                let _ = child.wait();
                panic!("the replica did not log where it listens within 30 s");
            };
            if let (Some(grpc), Some(http)) = (field(&line, "grpc_addr"), field(&line, "http_addr"))
            {
                break (grpc, http);
            }
        };
        Self {
            child,
            grpc_addr,
            http_addr,
            log,
            _dir: dir,
        }
    }

    /// The lines of the process's log (stderr, text format) so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The log lines so far that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(needle))
            .cloned()
            .collect()
    }

    /// Waits until `count` log lines contain `needle`; panics after `limit`.
    pub async fn wait_for_log_lines(&self, needle: &str, count: usize, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self.log_lines_with(needle).len() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "fewer than {count} log lines with {needle:?} after {limit:?}: {:?}",
                self.log_lines_with(needle)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL: no shutdown, no lease given up).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A sample of this replica's `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        crate::common::counter_at(&self.http_addr, name).await
    }

    /// How many token checks this replica answered from its cache.
    pub async fn cache_hits(&self) -> u64 {
        self.metric("token_service_cache_hits_total").await
    }

    /// Waits until the replica's revocation feed has caught up (its cache is in use).
    pub async fn wait_until_caught_up(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.metric("token_service_cache_trusted").await != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the replica's revocation feed never caught up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A client of this replica.
    pub async fn client(&self) -> Client {
        let channel = Channel::from_shared(format!("http://{}", self.grpc_addr))
            .unwrap()
            .connect()
            .await
            .expect("connect to replica process");
        TokenServiceClient::new(channel)
    }
}

impl Drop for ReplicaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the field `name` in a text-format log line (`name=value`, `name="value"`).
pub fn log_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let value = line.split(&format!(" {name}=")).nth(1)?;
    Some(value.split_whitespace().next()?.trim_matches('"'))
}

/// The next item of a revocation stream (an event, or the status that ended the stream),
/// within 5 s.
pub async fn next_revocation(
    stream: &mut tonic::Streaming<pb::WatchRevocationsResponse>,
) -> Result<pb::RevocationEvent, tonic::Status> {
    let message = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a stream item within 5 s")?;
    Ok(message.expect("stream open").event.expect("event set"))
}

/// The next item of a WatchEvents stream (a record, or the status that ended the stream),
/// within 5 s.
pub async fn next_event(
    stream: &mut tonic::Streaming<pb::WatchEventsResponse>,
) -> Result<pb::LifecycleRecord, tonic::Status> {
    let message = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a stream item within 5 s")?;
    Ok(message.expect("stream open").record.expect("record set"))
}
