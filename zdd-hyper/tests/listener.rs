//! The listeners zdd binds and how the drain takes what they queued.

use std::{future::IntoFuture, time::Duration};

use tokio::net::TcpStream;
use zdd_hyper::Listener;

/// Connections a test server queues without accepting any: well past the 128 that
/// `tokio::net::TcpListener::bind` asks for.
const QUEUED: usize = 600;
const BOUND: Duration = Duration::from_secs(20);

/// The system's cap on listen backlogs.
fn somaxconn() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|limit| limit.trim().parse().ok())
        .unwrap_or(usize::MAX)
}

#[tokio::test]
async fn bind_queues_a_burst_far_larger_than_128_connections() {
    let listener = zdd_hyper::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    // Linux queues backlog + 1 connections; a SYN that finds the queue full is dropped, and
    // its connect would wait for a retry that never succeeds.
    let expected = QUEUED.min(somaxconn());
    let mut held = Vec::with_capacity(expected);
    for n in 0..expected {
        let stream = tokio::time::timeout(BOUND, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connection {n} was not queued: the backlog is too small"))
            .unwrap();
        held.push(stream);
    }
    assert_eq!(held.len(), expected);
    drop(listener);
}

#[tokio::test]
async fn accept_queued_takes_every_queued_connection_then_reports_an_empty_queue() {
    let mut listener = zdd_hyper::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(listener.accept_queued().is_none(), "nothing queued yet");
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(TcpStream::connect(addr).await.unwrap());
    }
    // The runtime has not been asked to watch the listener: only a direct accept finds
    // these, which is what the drain relies on.
    let mut taken = Vec::new();
    while let Some(accepted) = listener.accept_queued() {
        let (stream, peer) = accepted.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), peer);
        assert!(
            stream.nodelay().unwrap(),
            "TCP_NODELAY as on the accept path"
        );
        taken.push(peer);
    }
    assert_eq!(taken.len(), clients.len());
    let mut expected: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
    expected.sort();
    taken.sort();
    assert_eq!(taken, expected, "each client's connection, once");
}

#[tokio::test]
async fn a_unix_listener_takes_its_queue_the_same_way() {
    let dir = std::env::temp_dir().join(format!("zdd-listener-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("socket");
    let mut listener = tokio::net::UnixListener::bind(&path).unwrap();
    assert!(listener.accept_queued().is_none());
    let _clients: Vec<_> = connect_unix(&path, 5).await;
    let mut taken = 0;
    while let Some(accepted) = listener.accept_queued() {
        accepted.unwrap();
        taken += 1;
    }
    assert_eq!(taken, 5);
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn connect_unix(path: &std::path::Path, n: usize) -> Vec<tokio::net::UnixStream> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(tokio::net::UnixStream::connect(path).await.unwrap());
    }
    clients
}

#[tokio::test]
async fn bind_fails_with_address_in_use_when_the_port_is_taken() {
    let first = zdd_hyper::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let error = zdd_hyper::bind(first.local_addr().unwrap()).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse, "{error}");
}

/// Captures what a subscriber writes.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn serving_on_a_network_address_without_a_propagation_delay_warns() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let config = zdd_core::Config::builder()
        .with_env_from(|_| None)
        .unwrap()
        .build()
        .unwrap();
    let lifecycle = zdd_core::Lifecycle::new(config);
    let handle = lifecycle.handle();
    let listener = zdd_hyper::bind("0.0.0.0:0".parse().unwrap()).unwrap();
    let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(
            http_body_util::Empty::<bytes::Bytes>::new(),
        ))
    });
    let serving = tokio::spawn(zdd_hyper::serve(listener, app, lifecycle).into_future());
    handle.reached(zdd_core::Phase::Serving).await;
    handle.shutdown();
    assert!(serving.await.unwrap().is_graceful());

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<_> = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("ZDD_PROPAGATION_DELAY"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
}

/// One request on `stream` with `Connection: close`; the body.
async fn get_on<S>(mut stream: S) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(BOUND, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    response
}

#[tokio::test]
async fn a_tcp_and_a_unix_listener_share_one_lifecycle_and_both_drain() {
    use tokio_util::either::Either;

    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let dir = std::env::temp_dir().join(format!("zdd-two-listeners-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("app.sock");
    let _ = std::fs::remove_file(&path);
    let unix = tokio::net::UnixListener::bind(&path).unwrap();

    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<()>();
    let app = {
        let release = std::sync::Arc::clone(&release);
        tower::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let release = std::sync::Arc::clone(&release);
            let started = started_tx.clone();
            async move {
                if request.uri().path() == "/slow" {
                    let released = release.notified();
                    let _ = started.send(());
                    released.await;
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"ok"),
                )))
            }
        })
    };
    let config = zdd_core::Config::builder()
        .propagation_delay(Duration::ZERO)
        .build()
        .unwrap();
    let lifecycle = zdd_core::Lifecycle::new(config);
    let handle = lifecycle.handle();
    let served = tokio::spawn(
        zdd_hyper::serve(Either::Left(tcp), app, lifecycle)
            .also(Either::Right(unix))
            .into_future(),
    );

    assert!(
        get_on(TcpStream::connect(tcp_addr).await.unwrap())
            .await
            .ends_with("ok")
    );
    for _ in 0..2 {
        let answer = get_on(tokio::net::UnixStream::connect(&path).await.unwrap()).await;
        assert!(answer.ends_with("ok"), "{answer}");
    }
    // A slow request in flight on each when the shutdown starts.
    let slow = |stream: Either<TcpStream, tokio::net::UnixStream>| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = stream;
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = vec![0; 1024];
        let n = stream.read(&mut buffer).await.unwrap();
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    let on_tcp = tokio::spawn(slow(Either::Left(
        TcpStream::connect(tcp_addr).await.unwrap(),
    )));
    let on_unix = tokio::spawn(slow(Either::Right(
        tokio::net::UnixStream::connect(&path).await.unwrap(),
    )));
    started.recv().await.unwrap();
    started.recv().await.unwrap();
    handle.shutdown();
    handle.draining().await;
    // Both listeners close at the drain.
    tokio::time::timeout(BOUND, async {
        while TcpStream::connect(tcp_addr).await.is_ok()
            || tokio::net::UnixStream::connect(&path).await.is_ok()
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a listener stayed open");
    release.notify_waiters();
    assert!(on_tcp.await.unwrap().ends_with("ok"));
    assert!(on_unix.await.unwrap().ends_with("ok"));

    let report = tokio::time::timeout(BOUND, served).await.unwrap().unwrap();
    assert!(report.is_graceful(), "{report}");
    let listeners = report.listeners();
    assert_eq!(listeners.len(), 2, "{report}");
    assert!(
        listeners[0].name().contains(&tcp_addr.to_string()),
        "{report}"
    );
    assert!(listeners[1].name().contains("app.sock"), "{report}");
    assert_eq!(listeners[0].accepted(), 2, "{report}");
    assert_eq!(listeners[1].accepted(), 3, "{report}");
    assert_eq!(listeners[0].connections_graceful(), 1, "{report}");
    assert_eq!(listeners[1].connections_graceful(), 1, "{report}");
    assert!(report.to_string().contains("app.sock"), "{report}");
    let _ = std::fs::remove_dir_all(dir);
}
