//! Throughput and latency: the same hello-world handler served by plain `axum::serve`, axum
//! with `with_graceful_shutdown`, hyper-util with `GracefulShutdown`, and zdd (layer,
//! probes and the zdd-hyper loop), in turn and alternating, each loaded by `zdd-check` over
//! keep-alive HTTP/1.1 and h2c; medians of several rounds and zdd's ratio to plain axum.
//!
//! ```sh
//! cargo bench --bench throughput                          # 5 rounds of 5 s per server and protocol
//! cargo bench --bench throughput -- --rounds 3 --seconds 3 --concurrency 32
//! ```
//!
//! Client and server share the machine: on a small one, compare ratios, not absolute rates.

#[path = "common/mod.rs"]
mod common;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use axum::{Router, routing::get, serve::ListenerExt};

const SERVERS: [&str; 4] = ["axum", "axum-graceful", "hyper-util", "zdd"];
const PROTOCOLS: [&str; 2] = ["http1", "h2c"];

fn main() {
    if let Some(kind) = common::value("--server") {
        server(&kind);
        return;
    }
    let rounds: usize = common::arg("--rounds", 5);
    let seconds: u64 = common::arg("--seconds", 5);
    let concurrency: usize = common::arg("--concurrency", 32);
    let checker = build_checker();

    let mut results: BTreeMap<(&str, &str), Vec<Measured>> = BTreeMap::new();
    for round in 0..rounds {
        let mut order = SERVERS.to_vec();
        if round % 2 == 1 {
            order.reverse();
        }
        for kind in order {
            for protocol in PROTOCOLS {
                let measured = measure(&checker, kind, protocol, seconds, concurrency);
                println!(
                    "round {round} {kind:<14} {protocol:<5} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
                    measured.0, measured.1, measured.2
                );
                results.entry((kind, protocol)).or_default().push(measured);
            }
        }
    }

    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!("\n{rounds} rounds of {seconds} s, {concurrency} keep-alive clients, medians:");
    println!(
        "{:<14} {:<5} {:>10} {:>9} {:>9} {:>12} {:>10}",
        "server", "proto", "req/s", "p50 ms", "p99 ms", "rps/axum", "p99/axum"
    );
    for protocol in PROTOCOLS {
        let baseline = results
            .get(&("axum", protocol))
            .cloned()
            .unwrap_or_default();
        let base_rps = median(&mut baseline.iter().map(|m| m.0).collect());
        let base_p99 = median(&mut baseline.iter().map(|m| m.2).collect());
        for kind in SERVERS {
            let runs = &results[&(kind, protocol)];
            let rps = median(&mut runs.iter().map(|m| m.0).collect());
            let p50 = median(&mut runs.iter().map(|m| m.1).collect());
            let p99 = median(&mut runs.iter().map(|m| m.2).collect());
            println!(
                "{kind:<14} {protocol:<5} {rps:>10.0} {p50:>9.2} {p99:>9.2} {:>11.3}x {:>9.3}x",
                rps / base_rps,
                p99 / base_p99
            );
        }
    }
}

/// One run: requests/s, p50 ms, p99 ms.
type Measured = (f64, f64, f64);

fn build_checker() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "-p", "zdd-check"])
        .current_dir(root)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building zdd-check failed");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("release").join("zdd-check")
}

/// Starts `kind`, loads it with zdd-check, stops it: (requests/s, p50 ms, p99 ms).
fn measure(
    checker: &Path,
    kind: &str,
    protocol: &str,
    seconds: u64,
    concurrency: usize,
) -> (f64, f64, f64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--server", kind])
        .stdout(Stdio::piped())
        .spawn()
        .expect("server starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    let port: u16 = lines
        .next()
        .and_then(|l| l.strip_prefix("port ").and_then(|p| p.parse().ok()))
        .expect("server port");
    let mut check = Command::new(checker);
    check.arg(format!("http://127.0.0.1:{port}/")).args([
        "--concurrency",
        &concurrency.to_string(),
        "--duration",
        &format!("{seconds}s"),
        "--json",
    ]);
    if protocol == "h2c" {
        check.arg("--h2c");
    }
    let output = check.output().expect("zdd-check runs");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("zdd-check summary");
    assert_eq!(summary["failed"], 0, "{kind} {protocol}: {summary}");
    let rps =
        summary["total"].as_f64().unwrap_or(0.0) / summary["elapsed_s"].as_f64().unwrap_or(1.0);
    let latency = |p: &str| summary["latency_ms"][p].as_f64().unwrap_or(f64::NAN);
    (rps, latency("p50"), latency("p99"))
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

fn server(kind: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        println!("port {}", listener.local_addr().unwrap().port());
        let terminate = common::sigterm();
        // Every server sets TCP_NODELAY, as zdd's listener does, so Nagle's algorithm does not
        // skew small responses.
        let nodelay = |tcp: &mut tokio::net::TcpStream| {
            let _ = tcp.set_nodelay(true);
        };
        match kind {
            "axum" => {
                tokio::select! {
                    _ = axum::serve(listener.tap_io(nodelay), app()) => {}
                    () = terminate => {}
                }
            }
            "axum-graceful" => {
                axum::serve(listener.tap_io(nodelay), app())
                    .with_graceful_shutdown(terminate)
                    .await
                    .unwrap();
            }
            "hyper-util" => {
                common::hyper_util_graceful(listener, app(), terminate).await;
            }
            _ => {
                let mut lifecycle = zdd::Lifecycle::new(zdd::Config::default());
                lifecycle.listen_for_signals().unwrap();
                let _ = zdd::axum::serve(listener, app(), lifecycle).await;
            }
        }
    });
}
