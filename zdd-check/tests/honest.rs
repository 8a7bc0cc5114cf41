//! zdd-check counts every failure: run against a server that fails on purpose, in a known
//! pattern, and compare what it reports with what the server did.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use http_body_util::BodyExt;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

fn answer(status: &str, version: &str) -> String {
    format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nx-version: {version}\r\n\r\nok")
}

/// What the test server does with one request.
enum Reply {
    Answer(String),
    /// Close the connection without answering (an empty reply).
    Close,
    /// Close with a zero linger, so the peer gets a reset.
    Reset,
}

/// A keep-alive HTTP/1.1 server (GET only) that asks `reply` what to do with each request,
/// given the request line and how many requests came before it over all connections.
async fn server(reply: impl Fn(&str, u64) -> Reply + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let reply = Arc::new(reply);
    let seen = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (reply, seen) = (Arc::clone(&reply), Arc::clone(&seen));
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut line = String::new();
                    while line != "\r\n" {
                        line.clear();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    match reply(&request_line, seen.fetch_add(1, Ordering::SeqCst)) {
                        Reply::Answer(bytes) => {
                            if stream.get_mut().write_all(bytes.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        Reply::Close => return,
                        Reply::Reset => {
                            let _ = stream.get_ref().set_zero_linger();
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// Answers the n-th request (counted over all connections) by n % 6: 200 from v1; closes
/// without answering; 500; resets the connection; 404; 200 from v2.
async fn misbehaving_server() -> u16 {
    server(|_, n| match n % 6 {
        0 => Reply::Answer(answer("200 OK", "v1")),
        1 => Reply::Close,
        2 => Reply::Answer(answer("500 Internal Server Error", "v1")),
        3 => Reply::Reset,
        4 => Reply::Answer(answer("404 Not Found", "v1")),
        _ => Reply::Answer(answer("200 OK", "v2")),
    })
    .await
}

/// Answers every request 200, from v1 and v2 in turn; every 10th answer of v2 is a 500.
async fn canary_server() -> u16 {
    server(|_, n| match (n % 2, (n / 2) % 10) {
        (0, _) => Reply::Answer(answer("200 OK", "v1")),
        (_, 9) => Reply::Answer(answer("500 Internal Server Error", "v2")),
        _ => Reply::Answer(answer("200 OK", "v2")),
    })
    .await
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn zdd_check(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_zdd-check"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_is_counted_by_kind() {
    let port = misbehaving_server().await;
    let url = format!("http://127.0.0.1:{port}/");
    let (code, stdout) = tokio::task::spawn_blocking(move || {
        zdd_check(&[
            &url,
            "--concurrency",
            "1",
            "--requests",
            "60",
            "--duration",
            "30s",
            "--json",
        ])
    })
    .await
    .unwrap();
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(code, Some(1), "failures must make the exit code non-zero");
    assert_eq!(summary["total"], 60, "{summary}");
    assert_eq!(summary["ok"], 20, "{summary}");
    assert_eq!(summary["failed"], 40, "{summary}");
    let failures = &summary["failures"];
    assert_eq!(failures["empty_reply"], 10, "{summary}");
    assert_eq!(failures["reset"], 10, "{summary}");
    assert_eq!(failures["status_5xx"], 10, "{summary}");
    assert_eq!(failures["status_other"], 10, "{summary}");
    assert_eq!(failures["connect_refused"], 0, "{summary}");
    assert_eq!(summary["versions"]["v1"], 10, "{summary}");
    assert_eq!(summary["versions"]["v2"], 10, "{summary}");
    assert_eq!(summary["passed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_counted_and_a_clean_run_passes() {
    let closed = closed_port();
    let url = format!("http://127.0.0.1:{closed}/");
    let (code, stdout) = tokio::task::spawn_blocking(move || {
        zdd_check(&[&url, "--requests", "5", "--concurrency", "1", "--json"])
    })
    .await
    .unwrap();
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(code, Some(1));
    assert_eq!(summary["failures"]["connect_refused"], 5, "{summary}");

    // A server that always answers 200: exit 0, text summary says PASS.
    let port = server(|_, _| Reply::Answer(answer("200 OK", "v3"))).await;
    let url = format!("http://127.0.0.1:{port}/");
    let (code, stdout) = tokio::task::spawn_blocking(move || {
        zdd_check(&[
            &url,
            "--duration",
            "1s",
            "--concurrency",
            "4",
            "--max-p99",
            "1s",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains(" 0 failed") && stdout.ends_with("PASS\n"),
        "{stdout}"
    );
    assert!(stdout.contains("v3"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_a_canary_gate_it_promotes_rolls_back_or_says_it_cannot_tell() {
    let port = canary_server().await;
    let url = format!("http://127.0.0.1:{port}/");
    let gate = move |extra: &[&str]| {
        let mut args = vec![
            url.as_str(),
            "--requests",
            "400",
            "--concurrency",
            "4",
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, stdout) = zdd_check(&args);
        let summary: Value = serde_json::from_str(&stdout).unwrap();
        (code, summary["verdict"].clone(), summary)
    };
    let run = |extra: Vec<&'static str>| {
        let gate = gate.clone();
        tokio::task::spawn_blocking(move || gate(&extra))
    };
    // v2 fails 10 % of its answers: rolled back at 1 %, promoted at 20 %.
    let (code, verdict, summary) = run(vec!["--version", "v2", "--max-error-rate", "1%"])
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(verdict["decision"], "roll_back", "{verdict}");
    assert_eq!(verdict["requests"], 200, "{verdict}");
    assert_eq!(verdict["failed"], 20, "{verdict}");
    assert_eq!(verdict["error_rate"], 0.1, "{verdict}");
    assert_eq!(verdict["thresholds"]["max_error_rate"], 0.01, "{verdict}");
    assert_eq!(summary["by_version"]["v2"]["failed"], 20, "{summary}");
    let (code, verdict, _) = run(vec![
        "--version",
        "v2",
        "--max-error-rate",
        "20%",
        "--max-p95",
        "5s",
    ])
    .await
    .unwrap();
    assert_eq!(
        (code, &verdict["decision"]),
        (Some(0), &Value::from("promote")),
        "{verdict}"
    );
    assert!(verdict["p95_ms"].as_f64().unwrap() < 5000.0, "{verdict}");
    // v1 never fails; a p95 limit no answer can hold rolls back.
    let (code, verdict, _) = run(vec!["--version", "v1", "--max-error-rate", "0%"])
        .await
        .unwrap();
    assert_eq!(
        (code, &verdict["decision"]),
        (Some(0), &Value::from("promote")),
        "{verdict}"
    );
    let (code, verdict, _) = run(vec!["--version", "v1", "--max-p95", "1us"])
        .await
        .unwrap();
    assert_eq!(
        (code, &verdict["decision"]),
        (Some(1), &Value::from("roll_back")),
        "{verdict}"
    );
    // Too little traffic, or a version that never answered: inconclusive, and why.
    let (code, verdict, _) = run(vec!["--version", "v2", "--min-requests", "1000"])
        .await
        .unwrap();
    assert_eq!(
        (code, &verdict["decision"]),
        (Some(3), &Value::from("inconclusive")),
        "{verdict}"
    );
    assert!(
        verdict["reasons"][0]
            .as_str()
            .unwrap()
            .contains("fewer than the 1000"),
        "{verdict}"
    );
    let (code, verdict, _) = run(vec!["--version", "v9", "--max-error-rate", "1%"])
        .await
        .unwrap();
    assert_eq!(
        (code, &verdict["decision"]),
        (Some(3), &Value::from("inconclusive")),
        "{verdict}"
    );
    let reason = verdict["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("\"v9\" never answered") && reason.contains("v1, v2"),
        "{reason}"
    );
    // All traffic: 20 of 400 failed, 5 %.
    let (code, verdict, _) = run(vec!["--max-error-rate", "4%"]).await.unwrap();
    assert_eq!(
        (code, &verdict["requests"], &verdict["failed"]),
        (Some(1), &Value::from(400), &Value::from(20)),
        "{verdict}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_lines_go_to_stderr_while_it_runs() {
    let port = canary_server().await;
    let url = format!("http://127.0.0.1:{port}/");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_zdd-check"))
            .args([
                &url,
                "--duration",
                "1s",
                "--progress-every",
                "200ms",
                "--json",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" requests, "))
        .collect();
    // Not a terminal: plain lines, one every 200 ms of a 1 s run, with the split by version.
    assert!((2..=6).contains(&lines.len()), "{stderr}");
    assert!(
        lines.iter().all(|l| l.contains("v1 ") && l.contains("v2 ")),
        "{stderr}"
    );
    assert!(lines.last().unwrap().contains("status_5xx"), "{stderr}");
    // The summary on stdout is untouched.
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(summary["total"].as_u64().unwrap() > 0);
    let quiet = Command::new(env!("CARGO_BIN_EXE_zdd-check"))
        .args([
            &format!("http://127.0.0.1:{port}/"),
            "--duration",
            "500ms",
            "--progress-every",
            "100ms",
            "--no-progress",
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains(" requests, "));
}

#[test]
fn bad_input_is_refused_with_exit_code_2_and_the_option_named() {
    let url = "http://127.0.0.1:1/";
    let table: &[(&[&str], &str)] = &[
        (
            &["ftp://example.invalid/"],
            "must start with http:// or https://",
        ),
        (
            &[url, "--insecure"],
            "--cacert and --insecure are for https:// URLs",
        ),
        (
            &["https://127.0.0.1:1/", "--cacert", "/nonexistent/ca.pem"],
            "--cacert /nonexistent/ca.pem: cannot read",
        ),
        (
            &["https://127.0.0.1:1/", "--cacert", "/dev/null"],
            "--cacert /dev/null: no certificate in it",
        ),
        (
            &[
                "https://127.0.0.1:1/",
                "--cacert",
                "/dev/null",
                "--insecure",
            ],
            "cannot be used with",
        ),
        (
            &["http://127.0.0.1:99999/"],
            "port \"99999\" is not a port number (1 to 65535)",
        ),
        (&["http://127.0.0.1:0/"], "port 0 cannot be connected to"),
        (
            &["http://[::1]:70000/"],
            "port \"70000\" is not a port number",
        ),
        (&["not a url"], "not a URL"),
        (
            &[url, "--concurrency", "0"],
            "'--concurrency <CONCURRENCY>': 0 is not in 1..=10000",
        ),
        (
            &[url, "--concurrency", "18446744073709551615"],
            "'--concurrency <CONCURRENCY>': 18446744073709551615 is not in 1..=10000",
        ),
        (&[url, "--concurrency", "1000000000"], "is not in 1..=10000"),
        (&[url, "--duration", "soon"], "'--duration <DURATION>'"),
        (
            &[url, "--duration", "18446744073709551615s"],
            "'--duration <DURATION>': 18446744073709551615s is longer than the limit of 7days",
        ),
        (&[url, "--duration=-1s"], "'--duration <DURATION>'"),
        (
            &[url, "--timeout", "2h"],
            "'--timeout <TIMEOUT>': 2h is longer than the limit of 1h",
        ),
        (&[url, "--requests", "0"], "'--requests <REQUESTS>'"),
        (
            &[url, "--max-error-rate", "150%"],
            "'--max-error-rate <PERCENT>': 150% is outside 0% to 100%",
        ),
        (&[url, "--max-p95", "fast"], "'--max-p95 <MAX_P95>'"),
        (
            &[url, "--min-requests", "0"],
            "'--min-requests <MIN_REQUESTS>'",
        ),
        (
            &[url, "--slow-path", "slow?ms=100"],
            "'--slow-path <SLOW_PATH>': must start with / (e.g. /slow?ms=100)",
        ),
        (
            &[url, "--slow-path", "/a b"],
            "'--slow-path <SLOW_PATH>': not a request path",
        ),
        (&[url, "--slow-every", "0"], "'--slow-every <SLOW_EVERY>'"),
        (
            &[url, "--version-header", "bad header"],
            "'--version-header <VERSION_HEADER>'",
        ),
        (&[url, "--max-p99", "fast"], "'--max-p99 <MAX_P99>'"),
    ];
    for (args, message) in table {
        let output = Command::new(env!("CARGO_BIN_EXE_zdd-check"))
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(message),
            "{args:?}: expected {message:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: no traffic, no summary");
    }
}

#[test]
fn a_name_that_does_not_resolve_is_its_own_kind_of_failure() {
    // A 64-character label is refused by the resolver itself: no query leaves the machine.
    let url = format!("http://{}.invalid/", "a".repeat(64));
    let (code, stdout) = zdd_check(&[&url, "--requests", "3", "--concurrency", "1", "--json"]);
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(code, Some(1));
    assert_eq!(summary["failures"]["dns_error"], 3, "{summary}");
    assert_eq!(summary["failures"]["connect_refused"], 0, "{summary}");
}

#[test]
fn nothing_listening_is_retried_with_a_bounded_backoff_and_the_summary_says_so() {
    let closed = closed_port();
    let url = format!("http://127.0.0.1:{closed}/");
    let (code, stdout) = zdd_check(&[&url, "--duration", "2s", "--concurrency", "2", "--json"]);
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(code, Some(1));
    // 10 ms doubling to 1 s: a client makes about 8 attempts in 2 s; without the pauses
    // it made tens of thousands.
    let refused = summary["failures"]["connect_refused"].as_u64().unwrap();
    assert!((2..=40).contains(&refused), "{summary}");
    let pauses = summary["connect_backoff"]["pauses"].as_u64().unwrap();
    assert_eq!(
        pauses, refused,
        "one pause after each refused connect: {summary}"
    );
    let paused_ms = summary["connect_backoff"]["total_ms"].as_f64().unwrap();
    assert!(paused_ms > 1_000.0, "{summary}");

    let (_, text) = zdd_check(&[&url, "--requests", "3", "--concurrency", "1"]);
    assert!(
        text.contains("connects failed: clients paused 3 times"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_are_mixed_in_at_the_given_rate() {
    let slow_hits = Arc::new(AtomicU64::new(0));
    let hits = Arc::clone(&slow_hits);
    let port = server(move |request_line, _| {
        if request_line.starts_with("GET /slow?ms=1 ") {
            hits.fetch_add(1, Ordering::SeqCst);
        }
        Reply::Answer(answer("200 OK", "v1"))
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/");
    let (code, stdout) = tokio::task::spawn_blocking(move || {
        zdd_check(&[
            &url,
            "--concurrency",
            "1",
            "--requests",
            "20",
            "--slow-path",
            "/slow?ms=1",
            "--slow-every",
            "2",
            "--json",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(slow_hits.load(Ordering::SeqCst), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_speaks_http2_with_prior_knowledge() {
    let http2_requests = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&http2_requests);
    let port = h2c_server(move |request| {
        if request.version() == http::Version::HTTP_2 {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        let response = http::Response::builder()
            .header("x-version", "h2")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")));
        response
            .unwrap()
            .map(|body| body.with_trailers(std::future::ready(None)))
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/");
    let (code, stdout) = tokio::task::spawn_blocking(move || {
        zdd_check(&[
            &url,
            "--h2c",
            "--concurrency",
            "2",
            "--requests",
            "20",
            "--json",
        ])
    })
    .await
    .unwrap();
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["versions"]["h2"], 20, "{summary}");
    assert_eq!(http2_requests.load(Ordering::SeqCst), 20);
}

type H2Body = http_body_util::combinators::WithTrailers<
    http_body_util::Full<bytes::Bytes>,
    std::future::Ready<Option<Result<http::HeaderMap, std::convert::Infallible>>>,
>;

/// A server speaking HTTP/1.1 and HTTP/2 (prior knowledge) that answers every request with
/// `answer`; its port.
async fn h2c_server(
    answer: impl Fn(http::Request<hyper::body::Incoming>) -> http::Response<H2Body>
    + Send
    + Sync
    + 'static,
) -> u16 {
    use hyper_util::{
        rt::{TokioExecutor, TokioIo},
        server::conn::auto::Builder,
        service::TowerToHyperService,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let answer = Arc::clone(&answer);
            let service = tower::service_fn(move |request| {
                std::future::ready(Ok::<_, std::convert::Infallible>(answer(request)))
            });
            tokio::spawn(async move {
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_counted_by_status_code() {
    // In turn: OK in trailers, UNAVAILABLE trailers-only, UNIMPLEMENTED in trailers, and an
    // answer cut before any status.
    let calls = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&calls);
    let port = h2c_server(move |request| {
        let well_formed = request.method() == http::Method::POST
            && request.uri().path() == "/hello.v1.Greeter/SayHello"
            && request.headers()["content-type"] == "application/grpc"
            && request.headers()["te"] == "trailers";
        assert!(well_formed, "{request:?}");
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let trailers = |code: &str| {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", code.parse().unwrap());
            Some(Ok(trailers))
        };
        let message = bytes::Bytes::from_static(b"\0\0\0\0\0");
        let (head_status, body, end) = match n % 4 {
            0 => (None, message, trailers("0")),
            1 => (Some("14"), bytes::Bytes::new(), None),
            2 => (None, message, trailers("12")),
            _ => (None, message, None),
        };
        let mut response = http::Response::builder()
            .header("content-type", "application/grpc")
            .header("x-version", "g1");
        if let Some(code) = head_status {
            response = response.header("grpc-status", code);
        }
        let body = http_body_util::Full::new(body).with_trailers(std::future::ready(end));
        response.body(body).unwrap()
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/hello.v1.Greeter/SayHello");
    let (code, stdout) = tokio::task::spawn_blocking(move || {
        zdd_check(&[
            "--grpc",
            &url,
            "--concurrency",
            "2",
            "--requests",
            "40",
            "--json",
        ])
    })
    .await
    .unwrap();
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(calls.load(Ordering::SeqCst), 40);
    assert_eq!(summary["ok"], 10, "{summary}");
    assert_eq!(summary["failures"]["grpc_unavailable"], 10, "{summary}");
    assert_eq!(summary["failures"]["grpc_unimplemented"], 10, "{summary}");
    assert_eq!(summary["failures"]["empty_reply"], 10, "{summary}");
    assert_eq!(summary["versions"]["g1"], 10, "{summary}");
    // A gRPC code not seen is not listed; every HTTP kind is.
    assert!(
        summary["failures"].get("grpc_internal").is_none(),
        "{summary}"
    );
    assert_eq!(summary["failures"]["status_5xx"], 0, "{summary}");
}

/// An HTTPS server (rustls) with a fresh self-signed certificate for `localhost`: its port
/// and the certificate as PEM.
async fn https_server() -> (u16, String) {
    use std::sync::Arc;
    use tokio_rustls::rustls;

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_request| async {
                    let mut response = http::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"ok"),
                    ));
                    response
                        .headers_mut()
                        .insert("x-version", http::HeaderValue::from_static("tls"));
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, certified.cert.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_checked_with_the_trust_it_is_given() {
    let (port, pem) = https_server().await;
    let dir = std::env::temp_dir().join(format!("zdd-check-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("server.pem");
    std::fs::write(&ca, pem).unwrap();
    let url = format!("https://localhost:{port}/");
    let ca = ca.display().to_string();
    let run = |extra: &'static [&'static str], ca: Option<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut args = vec![
                url.as_str(),
                "--requests",
                "50",
                "--concurrency",
                "2",
                "--json",
            ];
            args.extend_from_slice(extra);
            if let Some(ca) = &ca {
                args.extend_from_slice(&["--cacert", ca.as_str()]);
            }
            let (code, stdout) = zdd_check(&args);
            (code, serde_json::from_str::<Value>(&stdout).unwrap())
        })
    };

    let (code, summary) = run(&[], Some(ca)).await.unwrap();
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["ok"], 50, "{summary}");
    assert_eq!(summary["versions"]["tls"], 50, "{summary}");

    let (code, summary) = run(&["--insecure"], None).await.unwrap();
    assert_eq!(code, Some(0), "{summary}");

    // The system does not trust a fresh self-signed certificate: every request fails, by
    // kind, and nothing is retried.
    let (code, summary) = run(&[], None).await.unwrap();
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(summary["failures"]["tls_error"], 50, "{summary}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn https_without_a_usable_trust_root_is_refused_at_start() {
    // No system roots (rustls-native-certs reads these first), no --cacert.
    let output = Command::new(env!("CARGO_BIN_EXE_zdd-check"))
        .arg("https://127.0.0.1:1/")
        .env("SSL_CERT_FILE", "/dev/null")
        .env("SSL_CERT_DIR", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the system has no usable trust root; pass --cacert FILE"),
        "{stderr}"
    );
}
