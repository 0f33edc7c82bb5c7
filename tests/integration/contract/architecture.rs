//! The layer rules, checked on the source: the domain imports no transport or database
//! crate, and of the rest of the crate names only the store's handles and the metrics
//! registry; SeaORM stays in the store; the two transports (`grpc/`, `rest/`) do not import
//! each other; generated protobuf types stay out of the store and the command line.
//!
//! Crate paths are read whole: `crate::a::{b, c::d}` groups, paths spread over lines and
//! `super::` chains that climb to the crate root all count.

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

/// The files of top-level module `name`: `src/name.rs`, or every file under `src/name/`.
fn module_files(name: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{name}.rs"));
    if file.is_file() {
        vec![file]
    } else {
        let dir = src().join(name);
        assert!(dir.is_dir(), "no module {name} in src/");
        rust_files(&dir)
    }
}

/// A file's text with whole-line comments blanked (line numbers stay).
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("//") {
                ""
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn offenders(dir: &Path, forbidden: &[&str]) -> Vec<String> {
    offenders_in(&rust_files(dir), forbidden)
}

fn offenders_in(files: &[PathBuf], forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let code = code_of(file);
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            for word in forbidden {
                if line.contains(&format!("{word}::")) || line.contains(&format!("use {word}")) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line));
                }
            }
        }
    }
    found
}

/// A path into this crate named in a file: its segments from the crate root (a `*` glob is
/// a segment), with the line it starts on.
#[derive(Debug)]
struct CratePath {
    line: usize,
    segments: Vec<String>,
}

/// The module path of a file under `src/` (`rest/handlers.rs` is `[rest, handlers]`,
/// `rest/mod.rs` is `[rest]`).
fn module_path(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src()).unwrap();
    let mut path: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let last = path.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        path.push(stem.to_owned());
    }
    path
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// For each line (from 1), how many inline modules (`mod tests {`) enclose it; a module ends
/// at the `}` indented like its `mod` line (the code is rustfmt-formatted).
fn inline_module_depths(code: &str) -> Vec<usize> {
    let mut open: Vec<String> = Vec::new();
    let mut depths = vec![0];
    for line in code.lines() {
        depths.push(open.len());
        let indent = &line[..line.len() - line.trim_start().len()];
        let words: Vec<&str> = line.split_whitespace().collect();
        let opens_module = words.last() == Some(&"{")
            && words.len() >= 3
            && words[words.len() - 3] == "mod"
            && words[..words.len() - 3]
                .iter()
                .all(|w| w.starts_with("pub"));
        if opens_module {
            open.push(indent.to_owned());
        } else if open.last().is_some_and(|top| line == format!("{top}}}")) {
            open.pop();
        }
    }
    depths
}

/// Every crate path a file names, through `crate::` or through enough `super::` to reach
/// the crate root, with `{..}` groups expanded.
fn crate_paths(file: &Path) -> Vec<CratePath> {
    let text = code_of(file);
    let inline = inline_module_depths(&text);
    let code: Vec<char> = text.chars().collect();
    let depth = module_path(file).len();
    let mut found = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let starts_path = (i == 0 || !(is_ident(code[i - 1]) || code[i - 1] == ':'))
            && (starts_with(&code, i, "crate::") || starts_with(&code, i, "super::"));
        if !starts_path {
            i += 1;
            continue;
        }
        let start = i;
        let line = code[..start].iter().filter(|c| **c == '\n').count() + 1;
        let at_root = if starts_with(&code, i, "crate::") {
            i += "crate::".len();
            true
        } else {
            let mut climbs = 0;
            while starts_with(&code, i, "super::") {
                climbs += 1;
                i += "super::".len();
            }
            climbs == depth + inline[line]
        };
        if at_root {
            let (paths, end) = use_tree(&code, i, Vec::new());
            found.extend(
                paths
                    .into_iter()
                    .map(|segments| CratePath { line, segments }),
            );
            i = end;
        }
    }
    found
}

fn starts_with(code: &[char], at: usize, word: &str) -> bool {
    word.chars()
        .enumerate()
        .all(|(k, c)| code.get(at + k) == Some(&c))
}

fn skip_space(code: &[char], mut i: usize) -> usize {
    while i < code.len() && code[i].is_whitespace() {
        i += 1;
    }
    i
}

/// Reads a path (or a `use` tree) starting at `i` below `prefix`; returns its paths and where
/// it ends.
fn use_tree(code: &[char], mut i: usize, mut prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    loop {
        i = skip_space(code, i);
        match code.get(i) {
            Some('{') => {
                let mut paths = Vec::new();
                i += 1;
                loop {
                    i = skip_space(code, i);
                    match code.get(i) {
                        Some('}') => return (paths, i + 1),
                        Some(',') => i += 1,
                        None => return (paths, i),
                        _ => {
                            let (sub, end) = use_tree(code, i, prefix.clone());
                            paths.extend(sub);
                            i = if end == i { i + 1 } else { end };
                        }
                    }
                }
            }
            Some('*') => {
                prefix.push("*".to_owned());
                return (vec![prefix], i + 1);
            }
            _ => {
                let start = i;
                while i < code.len() && is_ident(code[i]) {
                    i += 1;
                }
                if i == start {
                    return (vec![prefix], i);
                }
                prefix.push(code[start..i].iter().collect());
                let after = skip_space(code, i);
                if starts_with(code, after, "::") {
                    i = after + 2;
                } else if starts_with(code, after, "as ") {
                    // A rename: skip `as name`.
                    i = skip_space(code, after + 2);
                    while i < code.len() && is_ident(code[i]) {
                        i += 1;
                    }
                    return (vec![prefix], i);
                } else {
                    return (vec![prefix], i);
                }
            }
        }
    }
}

/// Crate paths in `files` that `allowed` refuses, as "file:line: a::b".
fn crate_path_offenders(files: &[PathBuf], allowed: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        for path in crate_paths(file) {
            if !allowed(&path.segments) {
                found.push(format!(
                    "{}:{}: crate::{}",
                    file.display(),
                    path.line,
                    path.segments.join("::")
                ));
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
            "reqwest",
            "hyper",
            "crate::pb",
            "crate::grpc",
            "crate::rest",
        ],
    );
    assert!(
        bad.is_empty(),
        "domain must stay transport- and storage-free:\n{bad:#?}"
    );
}

/// Of the rest of the crate the domain names the store's handles (`Store`, and the feed's
/// `RevocationWakeups`) and their methods, never a type the store defines: the records it
/// passes and gets back live in the domain. It also names `crate::metrics`, allowed on
/// purpose: the domain's `Context` owns each server's registry, and that module is plain
/// counters (checked below); and `crate::stripes`, per-thread numbers and striped counters
/// that name nothing else of the crate (checked below too).
#[test]
fn the_domain_names_only_the_store_handles_and_the_metrics_registry() {
    let domain = rust_files(&src().join("domain"));
    // The reader sees the paths the domain does name (it is not blind).
    let named: Vec<Vec<String>> = domain
        .iter()
        .flat_map(|file| crate_paths(file))
        .map(|path| path.segments)
        .collect();
    assert!(named.iter().any(|p| p == &["store", "Store"]));
    assert!(
        named
            .iter()
            .any(|p| p.first().is_some_and(|m| m == "metrics"))
    );
    let bad = crate_path_offenders(&domain, |path| match path.first().map(String::as_str) {
        Some("domain" | "metrics" | "stripes") => true,
        Some("store") => matches!(
            path.get(1).map(String::as_str),
            Some("Store" | "LogWakeups" | "ChainLink")
        ),
        _ => false,
    });
    assert!(
        bad.is_empty(),
        "the domain names only crate::store::{{Store, LogWakeups, ChainLink}}, crate::metrics and crate::stripes:\n{bad:#?}"
    );
}

#[test]
fn the_metrics_registry_names_no_layer() {
    let files = module_files("metrics");
    let mut bad = offenders_in(&files, &["tonic", "prost", "axum", "sea_orm"]);
    bad.extend(crate_path_offenders(&files, |path| {
        path.first()
            .is_some_and(|top| top == "metrics" || top == "stripes")
    }));
    assert!(
        bad.is_empty(),
        "metrics must stay plain (the domain depends on it):\n{bad:#?}"
    );
}

#[test]
fn the_stripes_name_nothing_of_the_crate() {
    let files = module_files("stripes");
    let mut bad = offenders_in(&files, &["tonic", "prost", "axum", "sea_orm", "tokio"]);
    bad.extend(crate_path_offenders(&files, |path| {
        path.first().is_some_and(|top| top == "stripes")
    }));
    assert!(
        bad.is_empty(),
        "stripes must stay a leaf (the domain and metrics depend on it):\n{bad:#?}"
    );
}

#[test]
fn sea_orm_stays_in_the_store() {
    let store = src().join("store");
    let outside: Vec<PathBuf> = rust_files(&src())
        .into_iter()
        .filter(|file| !file.starts_with(&store))
        .collect();
    let mut bad = offenders_in(&outside, &["sea_orm"]);
    // Start-up and the command line do not even mention it (the log filter in telemetry does).
    for module in ["server", "config", "cli", "admin", "main"] {
        for file in module_files(module) {
            if std::fs::read_to_string(&file).unwrap().contains("sea_orm") {
                bad.push(file.display().to_string());
            }
        }
    }
    assert!(bad.is_empty(), "SeaORM outside store/:\n{bad:#?}");
}

#[test]
fn the_transports_do_not_import_each_other() {
    // A glob of the crate root (`crate::*`) would bring the other transport in too.
    let refuse = |other: &'static str| {
        move |path: &[String]| path.first().is_none_or(|top| top != other && top != "*")
    };
    let mut bad = crate_path_offenders(&rust_files(&src().join("rest")), refuse("grpc"));
    bad.extend(crate_path_offenders(
        &rust_files(&src().join("grpc")),
        refuse("rest"),
    ));
    assert!(
        bad.is_empty(),
        "grpc/ and rest/ share only the domain:\n{bad:#?}"
    );
}

#[test]
fn protobuf_types_stay_in_the_grpc_transport() {
    let bad = offenders(&src().join("store"), &["crate::pb", "tonic", "prost"]);
    assert!(bad.is_empty(), "{bad:#?}");
    for module in ["config", "cli", "admin"] {
        for file in module_files(module) {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                !text.contains("pb::"),
                "{} uses protobuf types",
                file.display()
            );
        }
    }
}

/// The webhook HTTP client stays in `webhook_delivery`: the domain decides what to send and
/// when, through its `WebhookSender` trait; nothing else speaks outbound HTTP.
#[test]
fn outbound_http_stays_in_the_webhook_sender() {
    let sender = src().join("webhook_delivery.rs");
    let outside: Vec<PathBuf> = rust_files(&src())
        .into_iter()
        .filter(|file| *file != sender)
        .collect();
    let bad = offenders_in(&outside, &["reqwest"]);
    assert!(
        bad.is_empty(),
        "reqwest is used only by src/webhook_delivery.rs:\n{bad:#?}"
    );
    assert!(
        !offenders_in(&[sender], &["reqwest"]).is_empty(),
        "the reader sees the sender's imports"
    );
}
