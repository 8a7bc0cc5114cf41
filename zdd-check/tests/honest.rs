//! zdd-check counts every failure: run against a server that fails on purpose, in a known
//! pattern, and compare what it reports with what the server did.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

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
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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

#[test]
fn bad_input_is_refused_with_exit_code_2() {
    let (code, _) = zdd_check(&["https://example.invalid/"]);
    assert_eq!(code, Some(2));
    let (code, _) = zdd_check(&["http://127.0.0.1:1/", "--concurrency", "0"]);
    assert_eq!(code, Some(2));
    let (code, _) = zdd_check(&["http://127.0.0.1:1/", "--duration", "soon"]);
    assert_eq!(code, Some(2));
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
    use hyper_util::{
        rt::{TokioExecutor, TokioIo},
        server::conn::auto::Builder,
        service::TowerToHyperService,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let http2_requests = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&http2_requests);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counted = Arc::clone(&counted);
            let service =
                tower::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    if request.version() == http::Version::HTTP_2 {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    async {
                        let response = http::Response::builder()
                            .header("x-version", "h2")
                            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")));
                        Ok::<_, std::convert::Infallible>(response.unwrap())
                    }
                });
            tokio::spawn(async move {
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .await;
            });
        }
    });
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
