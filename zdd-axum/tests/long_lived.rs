//! Long-lived handlers end on their own at the drain (SSE, WebSocket), probes answer per
//! phase over the wire, and exempt routes keep answering during the drain.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{State, ws::WebSocketUpgrade},
    response::{
        Response,
        sse::{Event, Sse},
    },
    routing::get,
};
use futures_util::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
};
use tokio_tungstenite::tungstenite::{
    Message as ClientMessage, protocol::frame::coding::CloseCode,
};
use zdd_axum::{DrainingWebSocket, ZddHandle};
use zdd_core::{Config, Lifecycle, LifecycleHandle, Phase, ShutdownReport};

const BOUND: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct AppState {
    handle: LifecycleHandle,
    started: Arc<Notify>,
    release: Arc<Notify>,
}

impl axum::extract::FromRef<AppState> for LifecycleHandle {
    fn from_ref(state: &AppState) -> Self {
        state.handle.clone()
    }
}

async fn events(
    ZddHandle(handle): ZddHandle,
) -> Sse<impl futures_core::Stream<Item = Result<Event, Infallible>>> {
    let ticks = futures_util::stream::unfold(0_u64, |n| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some((Ok(Event::default().data(format!("tick {n}"))), n + 1))
    });
    Sse::new(handle.until_draining(ticks))
}

async fn echo(upgrade: WebSocketUpgrade, ZddHandle(handle): ZddHandle) -> Response {
    upgrade.on_upgrade(move |socket| async move {
        let mut socket = DrainingWebSocket::new(socket, &handle);
        while let Some(Ok(message)) = socket.recv().await {
            if socket.send(message).await.is_err() {
                break;
            }
        }
    })
}

async fn slow(State(state): State<AppState>) -> &'static str {
    let released = state.release.notified();
    state.started.notify_one();
    released.await;
    "slow done"
}

struct Server {
    addr: SocketAddr,
    handle: LifecycleHandle,
    started: Arc<Notify>,
    release: Arc<Notify>,
    report: tokio::task::JoinHandle<ShutdownReport>,
}

/// Serves the test routes; `/metrics` is exempt. Does not wait for serving.
async fn start(lifecycle: Lifecycle) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = lifecycle.handle();
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let state = AppState {
        handle: handle.clone(),
        started: Arc::clone(&started),
        release: Arc::clone(&release),
    };
    let app = Router::new()
        .route("/events", get(events))
        .route("/ws", get(echo))
        .route("/slow", get(slow))
        .route(
            "/metrics",
            get(|ZddHandle(h): ZddHandle| async move {
                format!("in_flight {}", h.in_flight_requests())
            }),
        )
        .with_state(state);
    let report = tokio::spawn(
        zdd_axum::serve(listener, app, lifecycle)
            .layer(|layer| layer.exempt("/metrics"))
            .into_future(),
    );
    Server {
        addr,
        handle,
        started,
        release,
        report,
    }
}

async fn serving(lifecycle: Lifecycle) -> Server {
    let server = start(lifecycle).await;
    server.handle.reached(Phase::Serving).await;
    server
}

fn config() -> Config {
    Config::builder()
        .propagation_delay(Duration::from_millis(300))
        .drain_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// One request with `Connection: close`; the status code and the body.
async fn fetch(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
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
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn an_sse_stream_ends_cleanly_when_draining_starts() {
    let server = serving(Lifecycle::new(config())).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0; 4096];
    let mut seen = String::new();
    while !seen.contains("tick 1") {
        let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let triggered = Instant::now();
    server.handle.shutdown();
    // Read to the end: a clean end of the chunked body, then the connection closes.
    loop {
        let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        seen.ends_with("0\r\n\r\n"),
        "the event stream was cut, not ended: {seen:?}"
    );
    let report = tokio::time::timeout(BOUND, server.report)
        .await
        .unwrap()
        .unwrap();
    assert!(report.is_graceful(), "{report}");
    assert!(
        triggered.elapsed() < Duration::from_secs(4),
        "the stream held the drain"
    );
    assert!(report.requests_completed() >= 1);
}

#[tokio::test]
async fn a_websocket_receives_going_away_when_draining_starts() {
    let server = serving(Lifecycle::new(config())).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr))
        .await
        .unwrap();
    socket.send(ClientMessage::text("hello")).await.unwrap();
    let echoed = tokio::time::timeout(BOUND, socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, ClientMessage::text("hello"));

    server.handle.shutdown();
    let close = loop {
        match tokio::time::timeout(BOUND, socket.next()).await.unwrap() {
            Some(Ok(ClientMessage::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    let frame = close.expect("a close frame with a code");
    assert_eq!(frame.code, CloseCode::Away);
    assert_eq!(frame.reason.as_str(), "server shutting down");
    let report = tokio::time::timeout(BOUND, server.report)
        .await
        .unwrap()
        .unwrap();
    assert!(report.is_graceful(), "{report}");
    assert_eq!(report.connections_forced(), 0);
}

#[tokio::test]
async fn probes_answer_over_the_wire_in_each_phase_and_exempt_routes_keep_answering() {
    let lifecycle = Lifecycle::new(config());
    let warm_up = lifecycle.handle().startup_task("warm-up");
    let Server {
        addr,
        handle,
        started,
        release,
        report,
    } = start(lifecycle).await;
    let probes = || async {
        [
            fetch(addr, "/health/ready").await.0,
            fetch(addr, "/health/live").await.0,
            fetch(addr, "/health/startup").await.0,
        ]
    };

    assert_eq!(probes().await, [503, 200, 503], "starting");
    warm_up.complete();
    handle.reached(Phase::Serving).await;
    assert_eq!(probes().await, [200, 200, 200], "serving");

    let slow_request = tokio::spawn(fetch(addr, "/slow"));
    started.notified().await;
    handle.shutdown();
    assert_eq!(probes().await, [503, 200, 200], "unready");
    // The exempt route answers while shutting down and is not counted: only the slow
    // request is in flight while it runs.
    assert_eq!(
        fetch(addr, "/metrics").await,
        (200, "in_flight 1".to_owned())
    );
    handle.draining().await;
    assert_eq!(handle.phase(), Phase::Draining, "held by the slow request");
    release.notify_one();
    assert_eq!(slow_request.await.unwrap(), (200, "slow done".to_owned()));
    let report = tokio::time::timeout(BOUND, report).await.unwrap().unwrap();
    assert!(report.is_graceful(), "{report}");
}
