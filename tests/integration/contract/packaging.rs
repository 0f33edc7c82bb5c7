//! The Debian package's files: the installed `config.toml` loads with the service's own
//! loader and points at the package's data directory, and it mentions every setting of the
//! README's configuration table (commented, with its default), so an operator editing it sees
//! them all. The package itself is built, installed and run by `.ci/package-deb`.

use std::path::Path;

use token_service::config::{Config, Overrides};

const PACKAGED_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/debian/config.toml");

/// The keys of the README's configuration table, dotted (`log.format`), without the pattern
/// rows (`roles.<role>`, `command_tokens.keys.<id>`).
fn readme_keys() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    readme
        .lines()
        .skip_while(|line| !line.starts_with("| key | env | default | meaning |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| line.split('|').nth(1).unwrap_or("").trim().to_owned())
        .filter(|key| !key.contains("&lt;"))
        .collect()
}

#[test]
fn the_packaged_config_loads_and_keeps_data_under_var_lib() {
    let (config, report) =
        Config::load_from(Some(Path::new(PACKAGED_CONFIG)), &Overrides::default(), [])
            .expect("packaging/debian/config.toml loads");
    assert!(report.unknown_env_vars.is_empty());
    assert_eq!(config.data_dir, Path::new("/var/lib/token-service"));
}

#[test]
fn the_packaged_config_mentions_every_setting_of_the_readme() {
    let text = std::fs::read_to_string(PACKAGED_CONFIG).unwrap();
    let keys = readme_keys();
    assert!(keys.len() > 20, "README configuration table not found");
    let mut section = String::new();
    let mut mentioned = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let setting = line.trim_start_matches('#').trim_start();
        if let Some((key, _)) = setting.split_once('=') {
            let key = key.trim();
            // Setting names: lower case, digits (http2_...) and underscores.
            let setting_name = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
            if !key.is_empty() && key.bytes().all(setting_name) {
                mentioned.push(if section.is_empty() {
                    key.to_owned()
                } else {
                    format!("{section}.{key}")
                });
            }
        }
    }
    let missing: Vec<&String> = keys.iter().filter(|k| !mentioned.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "packaging/debian/config.toml does not mention {missing:?}"
    );
}

/// The container image, built and run the way `.ci/container-check` does it (debootstrap base,
/// `podman build --isolation chroot`, the exported filesystem run in a chroot). Minutes long
/// and needs root, so it is ignored: `cargo test --test integration -- --ignored
/// contract::packaging::the_container_image`.
#[test]
#[ignore = "builds a container image (minutes, root): run with --ignored"]
fn the_container_image_builds_and_serves_from_its_own_filesystem() {
    let status = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/container-check"))
        .status()
        .expect("run .ci/container-check");
    assert!(status.success(), ".ci/container-check failed: {status}");
}
