//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates the tonic
//! client and server. The encoded descriptor set is written to `OUT_DIR` as well: it keeps the
//! `google.api.http` options, which server reflection and the contract tests read.
//!
//! Envoy's external authorization service is generated from the descriptor set vendored in
//! `proto/vendor/envoy_ext_authz.binpb` (Envoy's own protos as the PyPI package `xds-protos`
//! carries them; see `proto/vendor/README.md`), into a module tree of its own.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(["token_service/v1/token_service.proto"])?;

    fs::write(
        out_dir.join("token_service_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;

    envoy_ext_authz(&out_dir)?;

    for file in compiler.files() {
        if let Some(path) = file.path() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rerun-if-changed=proto");
    git_commit();
    Ok(())
}

/// Generates `envoy.service.auth.v3` (server and client) and the packages it imports from the
/// vendored descriptor set; `envoy_ext_authz.rs` in `OUT_DIR` nests them by package.
fn envoy_ext_authz(out_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    use prost::Message as _;
    const VENDORED: &str = "proto/vendor/envoy_ext_authz.binpb";
    let bytes = fs::read(VENDORED)?;
    let set = prost_types::FileDescriptorSet::decode(bytes.as_slice())?;
    fs::write(out_dir.join("envoy_ext_authz_descriptor.bin"), &bytes)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .include_file("envoy_ext_authz.rs")
        .compile_fds(set)?;
    println!("cargo:rerun-if-changed={VENDORED}");
    Ok(())
}

/// Sets `TOKEN_SERVICE_GIT_COMMIT` (the `build_info` metric's `commit` label) to the short
/// hash of `HEAD`, or "unknown" when the source is not a git checkout or git is missing: the
/// build never fails for want of git.
fn git_commit() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .filter(|s| s.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TOKEN_SERVICE_GIT_COMMIT={commit}");
    // A new commit or checkout moves HEAD (or the branch it names): watch both when they
    // are files (a packed ref is not; a missing path would rerun this script every build).
    let mut watched = Vec::new();
    watched.extend(git(&["rev-parse", "--git-path", "HEAD"]));
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git(&["rev-parse", "--git-path", &reference]));
    }
    for path in watched {
        if PathBuf::from(&path).is_file() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
