//! Compiles `canhgac/v1/canhgac.proto` with protox (pure Rust, no system
//! `protoc`) and generates prost messages and tonic clients and servers.
//! The encoded descriptor set is written next to the code for gRPC
//! reflection.

use std::{env, path::PathBuf};

use prost::Message as _;

const PROTO: &str = "canhgac/v1/canhgac.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile([PROTO], ["."])?;
    std::fs::write(out.join("canhgac_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
