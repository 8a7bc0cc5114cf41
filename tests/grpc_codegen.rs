//! The grpc_hello example's generated code matches its .proto (examples/grpc/).
//!
//! The code is generated with protox, a protobuf compiler written in Rust, so neither
//! building nor this test needs `protoc`. After changing the .proto, regenerate with
//! `ZDD_REGENERATE=1 cargo test --all-features --test grpc_codegen`.

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

/// `code` as rustfmt writes it, as every file of the repository is (`.ci/run` checks).
fn rustfmt(code: &str) -> String {
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("rustfmt runs (install it with `rustup component add rustfmt`)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(code.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "rustfmt failed on the generated code"
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_example_code_is_generated_from_its_proto() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/grpc");
    let committed = dir.join("hello.v1.rs");
    let fds = protox::compile([dir.join("hello.proto")], [&dir]).expect("hello.proto compiles");
    let out = std::env::temp_dir().join(format!("zdd-grpc-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    tonic_prost_build::configure()
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .out_dir(&out)
        .compile_fds(fds)
        .expect("tonic-prost-build generates the code");
    let generated = std::fs::read_to_string(out.join("hello.v1.rs")).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    let generated = rustfmt(&generated);
    if std::env::var_os("ZDD_REGENERATE").is_some() {
        std::fs::write(&committed, &generated).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&committed).unwrap_or_default();
    assert!(
        current == generated,
        "examples/grpc/hello.v1.rs is not what examples/grpc/hello.proto generates: \
         regenerate it with `ZDD_REGENERATE=1 cargo test --all-features --test grpc_codegen`"
    );
}
