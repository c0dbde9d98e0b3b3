//! Generates the etcd v3 gRPC messages and clients from the trimmed .proto files in `proto/`.
//! protox is a protobuf compiler written in Rust, so the build needs no system `protoc`; its
//! descriptor set feeds tonic-prost-build, which writes `etcdserverpb.rs` and `mvccpb.rs` into
//! OUT_DIR (included by src/etcd/client.rs).

use std::error::Error;

const PROTO_ROOT: &str = "proto/etcd";
const PROTO_FILES: [&str; 2] = [
    "proto/etcd/etcdserverpb/rpc.proto",
    "proto/etcd/mvccpb/kv.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(PROTO_FILES, [PROTO_ROOT])?;
    tonic_prost_build::configure()
        .build_server(false)
        // Clients are built on a channel made in client.rs, not with a generated `connect`.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
