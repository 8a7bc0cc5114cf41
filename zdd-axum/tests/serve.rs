//! An axum router served by zdd on a real socket, and the probe routes on plain axum.

use std::net::SocketAddr;

use axum::{Router, routing::get};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use zdd_core::{Config, Lifecycle, Phase, ProbePaths};

/// Sends one request with `Connection: close` and returns the whole raw response.
async fn fetch(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn a_router_is_served_with_probes_and_drains() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let app = Router::new().route("/", get(|| async { "hello from axum" }));
    let server = tokio::spawn(zdd_axum::serve(listener, app, lifecycle).into_future());
    handle.reached(Phase::Serving).await;

    let hello = fetch(addr, "/").await;
    assert!(hello.starts_with("HTTP/1.1 200"), "{hello}");
    assert!(hello.ends_with("hello from axum"), "{hello}");
    let ready = fetch(addr, "/health/ready").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(
        ready.contains("content-type: application/health+json"),
        "{ready}"
    );
    assert!(
        ready.ends_with(r#"{"status":"pass","phase":"serving","checks":{}}"#),
        "{ready}"
    );

    handle.shutdown();
    let report = server.await.unwrap();
    assert!(report.is_graceful(), "{report}");
    assert_eq!(
        report.requests_completed(),
        0,
        "both requests finished before the trigger"
    );
}

#[tokio::test]
async fn probe_routes_answer_on_a_plain_axum_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lifecycle = Lifecycle::new(Config::default());
    let app = Router::new().merge(zdd_axum::probe_routes(
        lifecycle.handle(),
        &ProbePaths::default().readiness("/readyz"),
    ));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let live = fetch(addr, "/health/live").await;
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    let ready = fetch(addr, "/readyz").await;
    assert!(
        ready.starts_with("HTTP/1.1 503"),
        "the lifecycle never started serving: {ready}"
    );
    assert!(
        fetch(addr, "/health/ready")
            .await
            .starts_with("HTTP/1.1 404")
    );
}

/// A server a user keeps in a struct of their own: every type in `serve`'s signature, and
/// the future it turns into, can be named from this crate.
struct App {
    server: zdd_axum::ServeFuture,
}

fn build<L: zdd_axum::Listener>(listener: L, lifecycle: Lifecycle) -> App {
    let serve: zdd_axum::Serve<L, Router> = zdd_axum::serve(
        listener,
        Router::new().route("/", get(|| async { "hi" })),
        lifecycle,
    );
    App {
        server: std::future::IntoFuture::into_future(serve),
    }
}

#[tokio::test]
async fn the_server_future_can_be_named_stored_and_spawned() {
    fn is_http_service<S: zdd_axum::HttpService>(_: &S) {}
    is_http_service(&Router::new());
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let app = build(TcpListener::bind("127.0.0.1:0").await.unwrap(), lifecycle);
    let running = tokio::spawn(app.server);
    handle.reached(Phase::Serving).await;
    handle.shutdown();
    assert!(running.await.unwrap().is_graceful());
}

#[tokio::test]
async fn the_connect_info_extractor_sees_the_client_address() {
    use axum::extract::ConnectInfo;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let app = Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    );
    let server = tokio::spawn(
        zdd_axum::serve(listener, app, lifecycle)
            .connect_info(ConnectInfo)
            .into_future(),
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    stream
        .write_all(b"GET /peer HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(&local.to_string()), "{response}");
    handle.shutdown();
    assert!(server.await.unwrap().is_graceful());
}
