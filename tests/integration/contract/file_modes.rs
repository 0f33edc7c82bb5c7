//! What other local users may read of the service's state: nothing. The binary, started
//! on an empty data directory with the embedded SQLite database and a generated server key,
//! creates the directory 0700 and the database, its `-wal` and `-shm` files and the key
//! 0600; an existing database others could read is narrowed at start (a data directory
//! others may list is named in a warning); a key file (the
//! server key or the TLS key) that group or others may read stops the start with exit code
//! 2 naming the file and the fix, unless `allow_readable_key_files` accepts it. SQLite and
//! the file system only: the backend under test plays no part.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use super::cli::{Serving, stderr_of};
use crate::common::{TEST_SERVER_KEY, http_get};

const BIN: &str = env!("CARGO_BIN_EXE_token-service");

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `token-service serve` on ephemeral ports with `data_dir` and nothing else configured
/// (the embedded SQLite database and the generated key file).
fn serve(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--grpc-addr", "127.0.0.1:0"])
        .args(["--http-addr", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .env_remove("TOKEN_SERVICE_DATABASE_URL")
        .env_remove("TOKEN_SERVICE_SERVER_KEY")
        .env("TOKEN_SERVICE_LOG__FORMAT", "text")
        .env("TOKEN_SERVICE_ENABLE_LOCAL_SOCKET", "false");
    cmd
}

/// Waits until the server answers `/readyz` (its signal handler is in place by then), and
/// stops it with SIGTERM.
async fn stop_when_ready(serving: &mut Serving) {
    let url = format!("http://{}/readyz", serving.http_addr);
    for _ in 0..200 {
        if http_get(&url).await.is_ok_and(|r| r.status() == 200) {
            serving.terminate().await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{url} never answered 200");
}

/// Asserts that `serving` logged a warning containing `text` while starting.
fn assert_warned(serving: &Serving, text: &str) {
    assert!(
        serving
            .startup
            .iter()
            .any(|l| l.contains("WARN") && l.contains(text)),
        "no warning with {text:?}: {:#?}",
        serving.startup
    );
}

fn database_files(data_dir: &Path) -> [PathBuf; 3] {
    [
        "token-service.db",
        "token-service.db-wal",
        "token-service.db-shm",
    ]
    .map(|f| data_dir.join(f))
}

#[tokio::test]
async fn the_data_directory_database_and_key_are_the_service_users_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("state/data");
    let mut serving = Serving::start(serve(&data), TEST_SERVER_KEY);
    // Serving in WAL mode: the -wal and -shm files exist while the database is open.
    assert_eq!(mode(&tmp.path().join("state")), 0o700, "a created parent");
    assert_eq!(mode(&data), 0o700, "data_dir");
    for file in database_files(&data) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert_eq!(mode(&data.join("server.key")), 0o600, "the generated key");
    stop_when_ready(&mut serving).await;

    // A database left readable (as earlier versions created it) is narrowed at the next
    // start, and the log says so.
    // A data directory left open is named in a warning (and left as it is).
    chmod(&data.join("token-service.db"), 0o644);
    chmod(&data, 0o755);
    let mut serving = Serving::start(serve(&data), TEST_SERVER_KEY);
    for file in database_files(&data) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert_warned(&serving, "narrowed it to mode 0600");
    assert_warned(&serving, "chmod 700");
    assert_eq!(mode(&data), 0o755);
    stop_when_ready(&mut serving).await;
}

#[tokio::test]
async fn a_server_key_file_others_can_read_stops_the_start_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = tmp.path().join("server.key");
    std::fs::write(&key, format!("{TEST_SERVER_KEY}\n")).unwrap();
    for loose in [0o640, 0o604] {
        chmod(&key, loose);
        let out = serve(&data)
            .env("TOKEN_SERVICE_SERVER_KEY_FILE", &key)
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        for part in [
            "server_key_file",
            &key.display().to_string(),
            &format!("mode {loose:04o}"),
            "chmod 600",
            "allow_readable_key_files",
        ] {
            assert!(err.contains(part), "{part:?} not in {err}");
        }
    }

    // The explicit setting accepts it, with a warning naming the file.
    let mut allowed = serve(&data);
    allowed
        .env("TOKEN_SERVICE_SERVER_KEY_FILE", &key)
        .env("TOKEN_SERVICE_ALLOW_READABLE_KEY_FILES", "true");
    let mut serving = Serving::start(allowed, TEST_SERVER_KEY);
    assert_warned(&serving, "server_key_file");
    stop_when_ready(&mut serving).await;

    // 0600 needs no setting.
    chmod(&key, 0o600);
    let mut private = serve(&data);
    private.env("TOKEN_SERVICE_SERVER_KEY_FILE", &key);
    let mut serving = Serving::start(private, TEST_SERVER_KEY);
    stop_when_ready(&mut serving).await;
}
