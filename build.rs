//! Compiles `proto/` into Rust with the pure-Rust `protox` parser, so building
//! errand needs no system `protoc`.
use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/errand/v1/errand.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    // Kept for gRPC server reflection.
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("errand_descriptor.bin"), fds.encode_to_vec())?;
    // No `connect` constructors on clients: WorkerService has an RPC named
    // Connect, whose method would clash. Clients are built from a `Channel`.
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
