//! TLS: zdd (its loop with `RustlsAcceptor`) against axum-server with rustls, the same
//! handler, certificate and crypto provider (ring), alternating rounds:
//!
//! - keep-alive throughput: zdd-check over HTTPS (HTTP/1.1), 32 clients;
//! - new handshakes: 16 clients each opening a new TLS connection per request.
//!
//! ```sh
//! cargo bench --bench tls --features rustls                   # 5 rounds of 5 s
//! cargo bench --bench tls --features rustls -- --rounds 7 --seconds 3
//! ```
//!
//! Client and server share the machine: compare the ratios (zdd / axum-server), not the
//! absolute rates.

#[path = "common/mod.rs"]
#[allow(dead_code)] // each driver uses a part of it
mod common;

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

const SERVERS: [&str; 2] = ["axum-server", "zdd"];

fn main() {
    if let Some(kind) = common::value("--server") {
        server(&kind);
        return;
    }
    let rounds: usize = common::arg("--rounds", 5);
    let seconds: u64 = common::arg("--seconds", 5);
    let dir = std::env::temp_dir().join(format!("zdd-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    let checker = common::build_checker();

    let mut keep_alive: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut handshakes: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        let mut order = SERVERS.to_vec();
        if round % 2 == 1 {
            order.reverse();
        }
        for kind in order {
            let rps = keep_alive_rate(&checker, kind, &dir, seconds);
            let hps = handshake_rate(kind, &dir, certified.cert.der(), seconds);
            println!(
                "round {round} {kind:<12} keep-alive {rps:>9.0} req/s  new handshakes {hps:>7.0} /s"
            );
            keep_alive.entry(kind).or_default().push(rps);
            handshakes.entry(kind).or_default().push(hps);
        }
    }
    let median = |values: &[f64]| {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    println!("\n{rounds} rounds of {seconds} s, medians:");
    println!(
        "{:<12} {:>12} {:>16}",
        "server", "keep-alive/s", "handshakes/s"
    );
    for kind in SERVERS {
        println!(
            "{kind:<12} {:>12.0} {:>16.0}",
            median(&keep_alive[kind]),
            median(&handshakes[kind])
        );
    }
    println!(
        "zdd / axum-server: keep-alive {:.3}x, new handshakes {:.3}x",
        median(&keep_alive["zdd"]) / median(&keep_alive["axum-server"]),
        median(&handshakes["zdd"]) / median(&handshakes["axum-server"]),
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Keep-alive HTTPS requests per second, from zdd-check.
fn keep_alive_rate(checker: &Path, kind: &str, dir: &Path, seconds: u64) -> f64 {
    let mut server = common::ServerProcess::start(&format!("{kind}@{}", dir.display()));
    let output = Command::new(checker)
        .arg(format!("https://localhost:{}/", server.port))
        .arg("--cacert")
        .arg(dir.join("cert.pem"))
        .args([
            "--concurrency",
            "32",
            "--duration",
            &format!("{seconds}s"),
            "--json",
        ])
        .output()
        .expect("zdd-check runs");
    server.terminate();
    let _ = server.child.wait();
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("zdd-check summary");
    assert_eq!(summary["failed"], 0, "{kind}: {summary}");
    summary["total"].as_f64().unwrap_or(f64::NAN)
        / summary["elapsed_s"].as_f64().unwrap_or(f64::NAN)
}

/// New TLS connections per second, each carrying one request.
fn handshake_rate(kind: &str, dir: &Path, cert: &[u8], seconds: u64) -> f64 {
    let mut server = common::ServerProcess::start(&format!("{kind}@{}", dir.display()));
    let port = server.port;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.to_vec().into()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    runtime.block_on(async {
        let clients: Vec<_> = (0..16)
            .map(|_| {
                let (connector, done, kind) =
                    (connector.clone(), Arc::clone(&done), kind.to_owned());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                            .await
                            .unwrap();
                        let mut tls = connector
                            .connect("localhost".try_into().unwrap(), tcp)
                            .await
                            .unwrap();
                        tls.write_all(
                            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                        )
                        .await
                        .unwrap();
                        let mut response = Vec::new();
                        let _ = tls.read_to_end(&mut response).await;
                        assert!(response.starts_with(b"HTTP/1.1 200"), "{kind}");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for client in clients {
            client.await.unwrap();
        }
    });
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    server.terminate();
    let _ = server.child.wait();
    rate
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

fn server(kind_and_dir: &str) {
    let (kind, dir) = kind_and_dir.split_once('@').expect("kind@dir");
    let (cert, key) = (
        Path::new(dir).join("cert.pem"),
        Path::new(dir).join("key.pem"),
    );
    let kind = kind.to_owned();
    common::server_main(|listener| async move {
        match kind.as_str() {
            "axum-server" => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .unwrap();
                let handle = axum_server::Handle::new();
                let shutdown = handle.clone();
                tokio::spawn(async move {
                    common::sigterm().await;
                    shutdown.graceful_shutdown(Some(Duration::from_secs(5)));
                });
                axum_server::from_tcp_rustls(listener.into_std().unwrap(), config)
                    .unwrap()
                    .handle(handle)
                    .serve(app().into_make_service())
                    .await
                    .unwrap();
            }
            _ => {
                let tls = zdd::RustlsAcceptor::from_pem_files(cert, key).unwrap();
                let mut lifecycle = zdd::Lifecycle::new(zdd::Config::default());
                lifecycle.listen_for_signals().unwrap();
                let _ = zdd::axum::serve(listener, app(), lifecycle)
                    .acceptor(tls)
                    .await;
            }
        }
    });
}
