//! Requests counted on their connection (`Zdd::for_connection`, as zdd-hyper's loop serves
//! them): the connection stays counted until they end, the drain and the report see them as
//! they see any request, and the connection learns when it is between HTTP/1 requests.
#![cfg(feature = "tower")]

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;
use tower::{Layer, ServiceExt, service_fn};
use zdd_core::{Config, Lifecycle, Phase, ProbePaths, Protocol, layer::ZddLayer};

/// A streaming body fed by a channel; ends when the sender is dropped.
struct Streaming(mpsc::Receiver<Bytes>);

impl Body for Streaming {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

fn request(path: &str, version: Version) -> Request<()> {
    Request::builder()
        .uri(path)
        .version(version)
        .body(())
        .unwrap()
}

/// A service answering every request with a body streamed from the channel it is handed.
fn streaming(
    handle: zdd_core::LifecycleHandle,
) -> (
    zdd_core::layer::Zdd<
        impl tower::Service<
            Request<()>,
            Response = Response<Streaming>,
            Error = Infallible,
            Future: Send,
        > + Clone,
    >,
    mpsc::Sender<Bytes>,
) {
    let (chunks_tx, chunks_rx) = mpsc::channel::<Bytes>(1);
    let chunks = std::sync::Arc::new(std::sync::Mutex::new(Some(chunks_rx)));
    let service = ZddLayer::new(handle).layer(service_fn(move |_req: Request<()>| {
        let body = Streaming(chunks.lock().unwrap().take().expect("one request"));
        async move { Ok::<_, Infallible>(Response::new(body)) }
    }));
    (service, chunks_tx)
}

#[tokio::test]
async fn a_request_keeps_its_connection_counted_until_its_body_ends() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let (service, chunks) = streaming(handle.clone());
    let connection = handle.track_connection();
    connection.request_begins(Version::HTTP_11);
    let response = service
        .for_connection(&connection)
        .oneshot(request("/stream", Version::HTTP_11))
        .await
        .unwrap();
    drop(connection); // the socket is gone; the response is still being written
    assert_eq!(
        handle.open_connections(),
        1,
        "the request holds its connection"
    );
    assert_eq!(handle.in_flight_requests(), 1, "and counts as in flight");

    let mut body = response.into_body();
    chunks.send(Bytes::from_static(b"a")).await.unwrap();
    assert!(body.frame().await.is_some());
    drop(chunks);
    assert!(body.frame().await.is_none());
    assert_eq!(handle.in_flight_requests(), 0, "the body ended");
    drop(body);
    assert_eq!(handle.open_connections(), 0, "nothing holds the connection");
}

#[tokio::test(start_paused = true)]
async fn the_drain_waits_for_them_and_the_report_counts_them() {
    let config = Config::builder()
        .propagation_delay(Duration::ZERO)
        .drain_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let lifecycle = Lifecycle::new(config);
    let handle = lifecycle.handle();
    let (service, chunks) = streaming(handle.clone());
    let connection = handle.track_connection();
    let response = service
        .for_connection(&connection)
        .oneshot(request("/stream", Version::HTTP_2))
        .await
        .unwrap();
    drop(connection);
    let sequence = tokio::spawn(lifecycle.run());
    handle.shutdown();
    handle.draining().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!sequence.is_finished(), "the drain waits for the request");

    let mut body = response.into_body();
    drop(chunks);
    assert!(body.frame().await.is_none());
    drop(body);
    let report = sequence.await.unwrap();
    assert!(report.is_graceful(), "{report:?}");
    assert_eq!(report.requests_completed(), 1);
    assert_eq!(report.connections_graceful(), 1);
}

#[tokio::test(start_paused = true)]
async fn one_left_at_forcing_is_aborted_and_its_connection_forced() {
    let config = Config::builder()
        .propagation_delay(Duration::ZERO)
        .drain_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let lifecycle = Lifecycle::new(config);
    let handle = lifecycle.handle();
    let (service, _chunks) = streaming(handle.clone());
    let connection = handle.track_connection();
    let response = service
        .for_connection(&connection)
        .oneshot(request("/events", Version::HTTP_11))
        .await
        .unwrap();
    let sequence = tokio::spawn(lifecycle.run());
    handle.shutdown();
    handle.reached(Phase::Forcing).await;
    drop((response, connection)); // the server force-closes the connection
    let report = sequence.await.unwrap();
    assert_eq!(report.requests_aborted(), 1);
    assert_eq!(report.connections_forced(), 1);
}

#[tokio::test]
async fn the_connection_is_between_http1_requests_only_once_each_answer_is_over() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let layer = ZddLayer::new(handle.clone())
        .probes(ProbePaths::default())
        .exempt("/metrics");
    let service = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }));
    let connection = handle.track_connection();
    assert!(!connection.between_http1_requests(), "no protocol yet");
    for path in ["/", "/metrics", "/health/live"] {
        connection.request_begins(Version::HTTP_11);
        assert_eq!(connection.protocol(), Some(Protocol::Http1));
        assert!(!connection.between_http1_requests(), "{path}: serving");
        let response = service
            .for_connection(&connection)
            .oneshot(request(path, Version::HTTP_11))
            .await
            .unwrap();
        assert!(
            !connection.between_http1_requests(),
            "{path}: body not over"
        );
        let body = response.into_body().collect().await.unwrap();
        assert!(!body.to_bytes().is_empty());
        assert!(connection.between_http1_requests(), "{path}: answered");
        assert_eq!(handle.in_flight_requests(), 0);
    }
    assert_eq!(connection.http1_requests_begun(), 3);
}

#[tokio::test]
async fn an_upgrade_answer_ends_http1_requests_on_the_connection() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let service = ZddLayer::new(handle.clone()).layer(service_fn(|_req: Request<()>| async {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        Ok::<_, Infallible>(response)
    }));
    let connection = handle.track_connection();
    connection.request_begins(Version::HTTP_11);
    let response = service
        .for_connection(&connection)
        .oneshot(request("/ws", Version::HTTP_11))
        .await
        .unwrap();
    drop(response);
    assert!(
        !connection.between_http1_requests(),
        "its bytes are another protocol's now"
    );
}

#[tokio::test]
async fn requests_on_many_connections_and_threads_add_up() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let service = ZddLayer::new(handle.clone()).layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }));
    // Bodies held on 8 threads' connections, then released on other threads.
    let bodies: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (service, handle) = (service.clone(), handle.clone());
                scope.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    let connection = handle.track_connection();
                    let bodies: Vec<_> = (0..25)
                        .map(|_| {
                            runtime
                                .block_on(
                                    service
                                        .for_connection(&connection)
                                        .oneshot(request("/", Version::HTTP_2)),
                                )
                                .unwrap()
                                .into_body()
                        })
                        .collect();
                    (connection, bodies)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(handle.in_flight_requests(), 200);
    assert_eq!(handle.open_connections(), 8);
    std::thread::scope(|scope| {
        for (connection, bodies) in bodies {
            scope.spawn(move || drop((bodies, connection)));
        }
    });
    assert_eq!(handle.in_flight_requests(), 0);
    assert_eq!(handle.open_connections(), 0);
}
