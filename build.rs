//! Compiles etcd's v3 API definitions in `proto/etcd/` (the project's own
//! files, written from etcd's documented wire format) into Rust: messages
//! with prost, gRPC service stubs with tonic. protox parses the files, so
//! no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/etcd/kv.proto", "proto/etcd/rpc.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
