//! The examples, run as a user would: real processes, real signals, their printed reports.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const ENV: &[(&str, &str)] = &[
    ("ZDD_PROPAGATION_DELAY", "200ms"),
    ("ZDD_DRAIN_TIMEOUT", "5s"),
];

/// One request with `Connection: close`: the raw response.
async fn fetch(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(BOUND, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    response
}

/// Polls readiness like a probe would (end-to-end: real clock, bounded) until it passes.
async fn wait_ready(port: u16) -> String {
    let started = Instant::now();
    loop {
        let ready = fetch(port, "/health/ready").await;
        if ready.starts_with("HTTP/1.1 200") || started.elapsed() > BOUND {
            return ready;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_readme_main_command_serves_and_shuts_down_gracefully() {
    let port = free_port();
    let server = Instance::start(&example("axum_hello"), "axum_hello", "v7", port, ENV);
    assert!(wait_ready(port).await.contains(r#""status":"pass""#));
    let hello = fetch(port, "/").await;
    assert!(hello.starts_with("HTTP/1.1 200"), "{hello}");
    assert!(hello.contains("x-version: v7"), "{hello}");
    assert!(hello.ends_with("hello\n"), "{hello}");

    let slow = tokio::spawn(fetch(port, "/slow?ms=1000"));
    server.signal("TERM");
    let exited = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    let slow = slow.await.unwrap();
    assert!(
        slow.starts_with("HTTP/1.1 200") && slow.ends_with("slow hello after 1000 ms\n"),
        "{slow}"
    );
    assert_eq!(exited.code, Some(0), "{:#?}", exited.output);
    let printed = exited.output.join("\n");
    for phase in [
        "\"unready\"",
        "\"draining\"",
        "\"cleaning_up\"",
        "\"stopped\"",
    ] {
        assert!(
            printed.contains(&format!("phase={phase}")),
            "phase {phase} not logged:\n{printed}"
        );
    }
    assert!(
        printed.contains("shutdown graceful (trigger sigterm, exit code 0)"),
        "{printed}"
    );
    assert!(printed.contains("requests: 1 completed"), "{printed}");
}

#[tokio::test]
async fn startup_gate_holds_readiness_until_the_warm_up_is_done() {
    let port = free_port();
    let server = Instance::start(
        &example("startup_gate"),
        "startup_gate",
        "v1",
        port,
        &[ENV, &[("WARM_UP_SECS", "1")]].concat(),
    );
    let started = Instant::now();
    let first = fetch(port, "/health/startup").await;
    assert!(
        first.starts_with("HTTP/1.1 503")
            && first
                .contains(r#""migrations":{"status":"fail","duration_ms":0,"output":"pending"}"#),
        "{first}"
    );
    assert!(
        fetch(port, "/health/ready")
            .await
            .starts_with("HTTP/1.1 503")
    );
    let ready = wait_ready(port).await;
    assert!(ready.contains(r#""database":{"status":"pass""#), "{ready}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "ready before the warm-up ended"
    );
    server.signal("TERM");
    assert_eq!(
        tokio::task::spawn_blocking(move || server.wait())
            .await
            .unwrap()
            .code,
        Some(0)
    );
}

#[tokio::test]
async fn cleanup_hooks_run_after_the_last_request_newest_first() {
    let port = free_port();
    let server = Instance::start(&example("cleanup_hooks"), "cleanup_hooks", "v1", port, ENV);
    let query = tokio::spawn(fetch(port, "/query"));
    // The query holds the pool for 2 s; terminate once it is running.
    server.printed("query started").await;
    server.signal("TERM");
    let exited = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    let query = query.await.unwrap();
    assert!(
        query.starts_with("HTTP/1.1 200") && query.ends_with("42\n"),
        "the pool closed under a request: {query}"
    );
    assert_eq!(exited.code, Some(0), "{:#?}", exited.output);
    let printed = exited.output.join("\n");
    let telemetry = printed
        .find("flushing telemetry")
        .expect("telemetry hook ran");
    let pool = printed.find("closing pool").expect("pool hook ran");
    assert!(
        telemetry < pool,
        "hooks did not run newest first:\n{printed}"
    );
}

#[tokio::test]
async fn the_background_worker_is_stopped_and_waited_for() {
    let port = free_port();
    let server = Instance::start(
        &example("background_worker"),
        "background_worker",
        "v1",
        port,
        ENV,
    );
    assert!(fetch(port, "/").await.starts_with("HTTP/1.1 200"));
    server.signal("TERM");
    let exited = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert_eq!(exited.code, Some(0), "{:#?}", exited.output);
    let printed = exited.output.join("\n");
    let stopping = printed
        .find("worker stopping")
        .expect("the worker saw the cancellation");
    let stopped = printed
        .find("phase=\"cleaning_up\"")
        .expect("cleanup logged");
    assert!(
        stopping < stopped,
        "the drain did not wait for the worker:\n{printed}"
    );
}

#[tokio::test]
async fn prometheus_metrics_move_and_keep_answering_while_shutting_down() {
    let port = free_port();
    let server = Instance::start(
        &example("prometheus"),
        "prometheus",
        "v1",
        port,
        &[("ZDD_PROPAGATION_DELAY", "3s"), ("ZDD_DRAIN_TIMEOUT", "5s")],
    );
    wait_ready(port).await;
    let slow = tokio::spawn(fetch(port, "/slow"));
    // The gauges are sampled once a second: wait (bounded) until the slow request shows.
    let started = Instant::now();
    let busy = loop {
        let scraped = fetch(port, "/metrics").await;
        if scraped.contains("zdd_in_flight_requests 1") || started.elapsed() > BOUND {
            break scraped;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(busy.contains("zdd_in_flight_requests 1"), "{busy}");
    assert!(busy.contains("zdd_phase 1"), "{busy}");
    assert!(
        busy.contains(r#"zdd_open_connections{protocol="http1"}"#),
        "{busy}"
    );

    server.signal("TERM");
    server.printed("phase=\"unready\"").await;
    let unready = fetch(port, "/metrics").await;
    assert!(
        unready.starts_with("HTTP/1.1 200"),
        "the exempt route stopped answering: {unready}"
    );
    assert!(unready.contains("zdd_phase 2"), "{unready}");
    assert!(slow.await.unwrap().ends_with("slow hello\n"));
    let exited = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert_eq!(exited.code, Some(0), "{:#?}", exited.output);
}

/// The facade names everything its `serve` functions' signatures use.
#[test]
fn the_facade_names_the_serve_types() {
    fn named(
        _: Option<zdd::ServeFuture>,
        _: Option<zdd::Serve<tokio::net::TcpListener, axum::Router>>,
    ) {
    }
    fn bounds<S: zdd::HttpService, L: zdd::Listener>(_: &S, _: Option<L>) {}
    named(None, None);
    bounds::<_, tokio::net::TcpListener>(&axum::Router::<()>::new(), None);
}

#[tokio::test]
async fn the_access_log_shows_each_client_s_address() {
    let port = free_port();
    let env = [("ACCESS_LOG", "true"), ("ZDD_PROPAGATION_DELAY", "0s")];
    let server = Instance::start(&example("axum_hello"), "axum_hello", "v1", port, &env);
    wait_ready(port).await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let local = stream.local_addr().unwrap();
    stream
        .write_all(b"GET /?from=test HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    server
        .printed(&format!("peer={local} method=GET path=\"/\" status=200"))
        .await;
    drop(server);
}

#[cfg(feature = "rustls")]
#[tokio::test]
async fn tls_hello_serves_https_with_the_client_address() {
    use std::sync::Arc;
    use tokio_rustls::rustls;

    let dir = TempDir::new();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let port = free_port();
    let env = [
        ("TLS_CERT", cert.to_str().unwrap()),
        ("TLS_KEY", key.to_str().unwrap()),
        ("ZDD_PROPAGATION_DELAY", "0s"),
    ];
    let server = Instance::start(&example("tls_hello"), "tls_hello", "v1", port, &env);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    assert!(
        response.ends_with(&format!("hello over TLS, {local}\n")),
        "{response}"
    );
    server.signal("TERM");
    let exited = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert_eq!(exited.code, Some(0), "{:#?}", exited.output);
}
