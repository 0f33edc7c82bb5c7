//! Files only the service's own user may read: the data directory (created 0700), the SQLite
//! database with its `-wal` and `-shm` files (0600), generated key files (0600), and the
//! check that refuses a key file other users can read (unless `allow_readable_key_files`).
//!
//! Modes are set when a file is created, never widened afterwards; an existing database file
//! that others can read is narrowed to the owner (SQLite gives `-wal` and `-shm` the
//! database file's mode when it creates them). On platforms without Unix modes these are
//! plain creates and the checks pass.

use std::{fs, io, path::Path};

/// The bits of a mode that let anyone but the owner in.
#[cfg(unix)]
const GROUP_AND_OTHERS: u32 = 0o077;

/// Creates `dir` and any missing parents, each with mode 0700 (the umask may only narrow
/// it). An existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Opens a new file at `path` for writing with mode 0600; fails if it exists.
pub fn create_private_file(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

/// Creates an empty SQLite database file with mode 0600 if `path` does not exist yet (an
/// empty file is a valid empty database), so that SQLite never creates it with its own
/// default of 0644; an existing file that group or others may access is narrowed to the
/// owner, as are its `-wal` and `-shm` files. Returns the paths whose mode was narrowed.
pub fn prepare_sqlite_files(db: &Path) -> io::Result<Vec<String>> {
    match create_private_file(db) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let mut narrowed = Vec::new();
    for path in sqlite_family(db) {
        if narrow_to_owner(Path::new(&path))? {
            narrowed.push(path);
        }
    }
    Ok(narrowed)
}

/// The database file and its `-wal` and `-shm` companions.
pub fn sqlite_family(db: &Path) -> [String; 3] {
    let base = db.display().to_string();
    [base.clone(), format!("{base}-wal"), format!("{base}-shm")]
}

/// Removes the group and other bits of `path`'s mode; `false` when it had none (or does not
/// exist).
fn narrow_to_owner(path: &Path) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let mode = meta.permissions().mode();
        if mode & GROUP_AND_OTHERS == 0 {
            return Ok(false);
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode & !GROUP_AND_OTHERS))?;
        Ok(true)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(false)
    }
}

/// The mode of `path` when group or others may access it (`None` when only the owner may,
/// or when the platform has no modes).
pub fn open_to_others(path: &Path) -> io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path)?.permissions().mode() & 0o7777;
        Ok((mode & GROUP_AND_OTHERS != 0).then_some(mode))
    }
    #[cfg(not(unix))]
    {
        fs::metadata(path).map(|_| None)
    }
}

/// Refuses a key file (named by its setting, e.g. `server_key_file`) that group or others
/// may access, unless `allowed` (`allow_readable_key_files = true`), which logs a warning
/// instead.
pub fn check_key_file(setting: &str, path: &Path, allowed: bool) -> Result<(), String> {
    let mode = open_to_others(path)
        .map_err(|e| format!("{setting} {}: cannot read: {e}", path.display()))?;
    let Some(mode) = mode else {
        return Ok(());
    };
    if allowed {
        tracing::warn!(
            path = %path.display(),
            mode = %format!("{mode:04o}"),
            "{setting}: group or other users may read this key file \
             (allow_readable_key_files = true); chmod 600 it"
        );
        return Ok(());
    }
    Err(format!(
        "{setting} {}: mode {mode:04o} lets group or other users read the key; \
         run `chmod 600 {}` (or set allow_readable_key_files = true to accept it)",
        path.display(),
        path.display()
    ))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn directories_and_files_are_created_for_the_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("k");
        drop(create_private_file(&file).unwrap());
        assert_eq!(mode(&file), 0o600);
        assert!(
            create_private_file(&file).is_err(),
            "an existing file is kept"
        );
    }

    #[test]
    fn sqlite_files_are_created_0600_and_loose_ones_narrowed() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("x.db");
        assert!(prepare_sqlite_files(&db).unwrap().is_empty());
        assert_eq!(mode(&db), 0o600);
        let wal = tmp.path().join("x.db-wal");
        fs::write(&wal, b"").unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o664)).unwrap();
        let narrowed = prepare_sqlite_files(&db).unwrap();
        assert_eq!(narrowed.len(), 2, "{narrowed:?}");
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_unless_allowed() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("server.key");
        drop(create_private_file(&key).unwrap());
        check_key_file("server_key_file", &key, false).unwrap();
        for loose in [0o640, 0o604, 0o660] {
            fs::set_permissions(&key, fs::Permissions::from_mode(loose)).unwrap();
            let e = check_key_file("server_key_file", &key, false).unwrap_err();
            assert!(
                e.starts_with("server_key_file ")
                    && e.contains(&format!("mode {loose:04o}"))
                    && e.contains("allow_readable_key_files"),
                "{e}"
            );
            check_key_file("server_key_file", &key, true).unwrap();
        }
    }
}
