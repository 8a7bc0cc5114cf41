//! The per-connection accept step (here a one-byte greeting standing in for a TLS
//! handshake) on real sockets: silent clients delay no other, a step in progress at the
//! shutdown completes and is served, steps are bounded and forced; and the connect info
//! reaches handlers.

mod support;

use std::{io, net::SocketAddr, time::Duration};

use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use zdd_core::{Config, Phase};
use zdd_hyper::Acceptor;

/// Waits for a one-byte greeting, `!`, before HTTP: a handshake the client must start.
struct Greeting;

impl Acceptor<TcpStream> for Greeting {
    type Stream = TcpStream;

    async fn accept(&self, mut stream: TcpStream) -> io::Result<TcpStream> {
        let mut greeting = [0; 1];
        stream.read_exact(&mut greeting).await?;
        if greeting == *b"!" {
            Ok(stream)
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidData, "no greeting"))
        }
    }
}

fn bounded(propagation_ms: u64, drain_ms: u64, first_byte_ms: u64) -> Config {
    Config::builder()
        .propagation_delay(Duration::from_millis(propagation_ms))
        .drain_timeout(Duration::from_millis(drain_ms))
        .first_byte_timeout(Duration::from_millis(first_byte_ms))
        .first_request_timeout(Duration::from_millis(first_byte_ms.max(10_000)))
        .build()
        .unwrap()
}

async fn greeted(addr: SocketAddr) -> RawClient {
    let mut client = RawClient::connect(addr).await;
    client.send("!").await;
    client
}

async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0; 1];
    matches!(
        tokio::time::timeout(BOUND, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn silent_clients_in_the_accept_step_delay_no_other_and_are_closed_at_the_deadline() {
    let server = start_with(bounded(0, 5_000, 1_500), |serve| serve.acceptor(Greeting)).await;
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Served at once, while every silent one still waits in its own task.
    let started = tokio::time::Instant::now();
    let mut client = greeted(server.addr).await;
    let answer = client.get("/").await.unwrap();
    let latency = started.elapsed();
    assert_eq!(answer.body, "ok");
    assert!(
        latency < Duration::from_millis(1_500),
        "a silent client delayed another: {latency:?}"
    );
    println!("handshake + request beside 100 silent clients: {latency:?}");
    // The silent ones are closed at the first-byte deadline.
    for stream in &mut silent {
        assert!(closed(stream).await);
    }
    server.handle.shutdown();
    assert!(server.report().await.is_graceful());
}

#[tokio::test]
async fn an_accept_step_in_progress_at_the_shutdown_completes_and_is_served() {
    let server = start_with(bounded(500, 5_000, 5_000), |serve| serve.acceptor(Greeting)).await;
    let mut client = RawClient::connect(server.addr).await;
    server.handle.shutdown();
    // The connection counts from accept: the drain waits for it.
    client.send("!").await;
    let answer = client.get("/").await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
    assert_eq!(answer.header("connection"), Some("close"));
    let report = server.report().await;
    assert!(report.is_graceful(), "{report}");
    assert_eq!(report.connections_graceful(), 1, "{report}");
}

#[tokio::test]
async fn an_accept_step_that_never_ends_is_closed_when_forcing() {
    let server = start_with(bounded(0, 300, 10_000), |serve| serve.acceptor(Greeting)).await;
    let mut stuck = TcpStream::connect(server.addr).await.unwrap();
    // Counted from accept, before the step ends.
    tokio::time::timeout(BOUND, async {
        while server.handle.open_connections() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    server.handle.shutdown();
    let report = server.report().await;
    assert_eq!(report.connections_forced(), 1, "{report}");
    assert!(report.time_in(Phase::Forcing).is_some(), "{report}");
    assert!(closed(&mut stuck).await);
}

#[tokio::test]
async fn a_failed_accept_step_closes_the_connection_and_nothing_else() {
    let server = start_with(bounded(0, 5_000, 5_000), |serve| serve.acceptor(Greeting)).await;
    // Plain HTTP where the greeting was expected.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert!(closed(&mut plain).await);
    let mut client = greeted(server.addr).await;
    assert_eq!(client.get("/").await.unwrap().body, "ok");
    server.handle.shutdown();
    let report = server.report().await;
    assert!(report.is_graceful(), "{report}");
}

#[derive(Clone, Debug)]
struct Peer(SocketAddr);

#[tokio::test]
async fn the_connect_info_reaches_every_request_through_the_accept_step_too() {
    let lifecycle = zdd_core::Lifecycle::new(bounded(0, 5_000, 5_000));
    let handle = lifecycle.handle();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = tower::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
        let peer = request
            .extensions()
            .get::<Peer>()
            .map_or_else(|| "none".to_owned(), |peer| peer.0.to_string());
        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
            bytes::Bytes::from(peer),
        )))
    });
    let served = tokio::spawn(
        zdd_hyper::serve(listener, app, lifecycle)
            .acceptor(Greeting)
            .connect_info(Peer)
            .into_future(),
    );
    let mut client = greeted(addr).await;
    let local = client.stream().local_addr().unwrap();
    for _ in 0..3 {
        assert_eq!(client.get("/").await.unwrap().body, local.to_string());
    }
    handle.shutdown();
    assert!(served.await.unwrap().is_graceful());
}
