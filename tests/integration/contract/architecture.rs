//! The layer rules, checked on the source: the domain imports no transport or database
//! crate; SeaORM stays in the store; generated protobuf types stay in the gRPC transport
//! (plus `pb.rs`, `server.rs`, `lib.rs`).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The given files of `src/`, and every file of the configuration (`src/config/`).
fn outside_the_layers(files: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = files.iter().map(|file| src().join(file)).collect();
    out.extend(rust_files(&src().join("config")));
    out
}

fn offenders(dir: &Path, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in rust_files(dir) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for word in forbidden {
                if code.contains(&format!("{word}::")) || code.contains(&format!("use {word}")) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, code));
                }
            }
        }
    }
    found
}

#[test]
fn the_domain_imports_no_transport_or_database_crate() {
    let bad = offenders(
        &src().join("domain"),
        &[
            "tonic",
            "prost",
            "prost_types",
            "axum",
            "sea_orm",
            "crate::pb",
            "crate::grpc",
        ],
    );
    assert!(
        bad.is_empty(),
        "domain must stay transport- and storage-free:\n{bad:#?}"
    );
}

#[test]
fn sea_orm_stays_in_the_store() {
    let mut bad = Vec::new();
    for dir in ["domain", "grpc"] {
        bad.extend(offenders(&src().join(dir), &["sea_orm"]));
    }
    for file in outside_the_layers(&["server.rs", "cli.rs", "admin.rs", "main.rs"]) {
        let text = std::fs::read_to_string(&file).unwrap();
        if text.contains("sea_orm") {
            bad.push(file.display().to_string());
        }
    }
    assert!(bad.is_empty(), "SeaORM outside store/:\n{bad:#?}");
}

#[test]
fn protobuf_types_stay_in_the_grpc_transport() {
    let bad = offenders(&src().join("store"), &["crate::pb", "tonic", "prost"]);
    assert!(bad.is_empty(), "{bad:#?}");
    for file in outside_the_layers(&["cli.rs", "admin.rs"]) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("pb::"),
            "{} uses protobuf types",
            file.display()
        );
    }
}
