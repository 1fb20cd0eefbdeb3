//! Compiles the .proto files with protox (pure Rust), so a fresh machine needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/gfs/v1/common.proto",
        "proto/gfs/v1/errors.proto",
        "proto/gfs/v1/master.proto",
        "proto/gfs/v1/chunkserver.proto",
        "proto/gfs/disk/v1/oplog.proto",
        "proto/mapred/v1/mapred.proto",
        "proto/google/rpc/status.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // `bytes` fields become `Bytes`, so packets are sliced rather than copied.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
