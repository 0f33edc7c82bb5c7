//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates the tonic
//! client and server. The encoded descriptor set is written to `OUT_DIR` as well: it keeps the
//! `google.api.http` options, which server reflection and the contract tests read.

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

    for file in compiler.files() {
        if let Some(path) = file.path() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
