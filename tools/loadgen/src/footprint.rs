//! `loadgen idle-rss` and `loadgen startup`: the real `token-service serve` binary, spawned
//! on SQLite in a temporary directory, observed from outside. "Serving" means the first
//! successful `grpc.health.v1.Health/Check` answering SERVING.

use std::{
    fs,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tonic::transport::Endpoint;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{IdleRssArgs, StartupArgs, stats::median};

/// Longest wait for a spawned server to serve.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// nproc, CPU model, RAM and load average, on one line.
pub(crate) fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_gib = kib_field(&meminfo, "MemTotal:").map_or(0.0, |k| k as f64 / 1024.0 / 1024.0);
    format!(
        "{nproc} CPU(s), {model}, {ram_gib:.1} GiB RAM, load average {}",
        loadavg()
    )
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

pub(crate) fn idle_rss(args: &IdleRssArgs) -> Result<(), String> {
    let bin = args.server.path()?;
    runtime()?.block_on(async {
        println!("machine: {}", machine());
        let dir = TempDir::new()?;
        let (mut server, took) = Server::spawn(&bin, dir.path()).await?;
        println!(
            "token-service serve on a fresh SQLite file served after {:.1} ms; idling {:?}",
            ms(took.serving),
            args.idle
        );
        tokio::time::sleep(args.idle).await;
        let status = fs::read_to_string(format!("/proc/{}/status", server.child.id()))
            .map_err(|e| format!("read /proc/{}/status: {e}", server.child.id()))?;
        server.stop().await;
        let rss = kib_field(&status, "VmRSS:").ok_or("no VmRSS in /proc/<pid>/status")?;
        let hwm = kib_field(&status, "VmHWM:").unwrap_or(0);
        let anon = kib_field(&status, "RssAnon:").unwrap_or(0);
        let file = kib_field(&status, "RssFile:").unwrap_or(0);
        let threads = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .map_or("?", str::trim)
            .to_owned();
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "idle RSS: VmRSS {:.1} MiB (anonymous {:.1} MiB, file-backed {:.1} MiB), peak VmHWM {:.1} MiB, {threads} threads",
            mib(rss),
            mib(anon),
            mib(file),
            mib(hwm)
        );
        println!(
            "target: idle RSS <= 30 MiB: {}",
            if mib(rss) <= 30.0 { "met" } else { "NOT met" }
        );
        println!(
            "summary idle_rss_mib={:.1} peak_rss_mib={:.1}",
            mib(rss),
            mib(hwm)
        );
        Ok(())
    })
}

pub(crate) fn startup(args: &StartupArgs) -> Result<(), String> {
    if args.starts == 0 {
        return Err("--starts must be at least 1".into());
    }
    let bin = args.server.path()?;
    runtime()?.block_on(async {
        println!("machine: {}", machine());
        let mut fresh = Vec::new();
        for _ in 0..args.starts {
            let dir = TempDir::new()?;
            let (mut server, took) = Server::spawn(&bin, dir.path()).await?;
            server.stop().await;
            fresh.push(took);
        }
        let existing_dir = TempDir::new()?;
        // The first start creates and migrates the file; it is not counted.
        Server::spawn(&bin, existing_dir.path())
            .await?
            .0
            .stop()
            .await;
        let mut existing = Vec::new();
        for _ in 0..args.starts {
            let (mut server, took) = Server::spawn(&bin, existing_dir.path()).await?;
            server.stop().await;
            existing.push(took);
        }
        let serving = |v: &[Startup]| v.iter().map(|s| ms(s.serving)).collect::<Vec<_>>();
        let listening = |v: &[Startup]| v.iter().map(|s| ms(s.listening)).collect::<Vec<_>>();
        let show = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (mf, me) = (median(&serving(&fresh)), median(&serving(&existing)));
        for (kind, runs, m) in [
            ("fresh SQLite file (created, migrated, key generated)", &fresh, mf),
            ("existing SQLite file", &existing, me),
        ] {
            println!(
                "start to serving, {kind}: median {m:.1} ms (runs: {} ms); port accepting after a median {:.1} ms (runs: {} ms)",
                show(&serving(runs)),
                median(&listening(runs)),
                show(&listening(runs))
            );
        }
        println!(
            "target: start to serving <= 300 ms: fresh {}, existing {}",
            if mf <= 300.0 { "met" } else { "NOT met" },
            if me <= 300.0 { "met" } else { "NOT met" }
        );
        println!("summary startup_fresh_ms={mf:.1} startup_existing_ms={me:.1}");
        Ok(())
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

/// When a spawned server accepted its first TCP connection on the gRPC port, and when it
/// first answered a health check (on a new HTTP/2 connection), both from the spawn.
#[derive(Debug, Clone, Copy)]
struct Startup {
    listening: Duration,
    serving: Duration,
}

/// A spawned `token-service serve`; killed if dropped without [`Server::stop`].
struct Server {
    child: Child,
}

impl Server {
    /// Spawns the server on SQLite in `dir` and returns once its health check answers
    /// SERVING, with the times from just before the spawn.
    async fn spawn(bin: &Path, dir: &Path) -> Result<(Self, Startup), String> {
        let grpc = free_addr()?;
        let http = free_addr()?;
        let log = fs::File::create(dir.join("stderr.log")).map_err(|e| e.to_string())?;
        let mut command = Command::new(bin);
        command
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["serve", "--grpc-addr", &grpc.to_string()])
            .args(["--http-addr", &http.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TOKEN_SERVICE_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        let start = Instant::now();
        let child = command
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut server = Server { child };
        let mut listening = None;
        loop {
            if listening.is_none() && tokio::net::TcpStream::connect(grpc).await.is_ok() {
                listening = Some(start.elapsed());
            }
            if listening.is_some() && serving(grpc).await {
                let serving = start.elapsed();
                let listening = listening.unwrap_or(serving);
                return Ok((server, Startup { listening, serving }));
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
                return Err(format!(
                    "token-service exited ({status}) before serving:\n{log}"
                ));
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "token-service did not serve within {START_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// SIGTERM, then wait (SIGKILL after 10 s). Async so that the runtime keeps running
    /// meanwhile: it closes the health check's connection, which the server's graceful
    /// shutdown would otherwise wait for.
    async fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn serving(addr: SocketAddr) -> bool {
    let Ok(endpoint) = Endpoint::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(channel) = endpoint
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await
    else {
        return false;
    };
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    matches!(answer, Ok(r) if r.get_ref().status == ServingStatus::Serving as i32)
}

/// A port that was free a moment ago.
fn free_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("find a free port: {e}"))
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("loadgen-footprint-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
