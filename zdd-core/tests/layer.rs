//! `ZddLayer`: accounting at every step of a request, response marking by phase and HTTP
//! version, late-request rejection, exempt paths and probes.
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
use http_body_util::{BodyExt, Empty, Full};
use tokio::sync::{mpsc, oneshot};
use tokio_test::{assert_pending, assert_ready, task};
use tower::{Layer, Service, ServiceExt, service_fn};
use zdd_core::{
    Config, Lifecycle, LifecycleHandle, Phase, ProbePaths, RequestGuard,
    layer::{LateRequests, ZddLayer},
};

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

fn ok() -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

/// Runs the sequence into `phase`, held there by a request the caller keeps.
async fn run_to(lifecycle: Lifecycle, phase: Phase) -> (LifecycleHandle, RequestGuard) {
    let handle = lifecycle.handle();
    let hold = handle.track_request();
    tokio::spawn(lifecycle.run());
    handle.shutdown();
    handle.reached(phase).await;
    assert_eq!(handle.phase(), phase);
    (handle, hold)
}

#[tokio::test]
async fn a_request_counts_until_its_body_ends_not_until_the_handler_returns() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let (chunks_tx, chunks_rx) = mpsc::channel::<Bytes>(1);
    let mut slot = Some((release_rx, chunks_rx));
    let mut service = ZddLayer::new(handle.clone()).layer(service_fn(move |_req: Request<()>| {
        let (release, chunks) = slot.take().unwrap();
        async move {
            let _ = release.await;
            Ok::<_, Infallible>(Response::new(Streaming(chunks)))
        }
    }));

    assert_eq!(handle.in_flight_requests(), 0);
    let mut call = task::spawn(service.call(request("/stream", Version::HTTP_11)));
    assert_eq!(handle.in_flight_requests(), 1, "after call");
    assert_pending!(call.poll());
    release_tx.send(()).unwrap();
    let response = assert_ready!(call.poll()).unwrap();
    assert_eq!(handle.in_flight_requests(), 1, "after the handler returned");

    let mut body = response.into_body();
    chunks_tx.send(Bytes::from_static(b"a")).await.unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "a");
    assert_eq!(handle.in_flight_requests(), 1, "mid-body");
    drop(chunks_tx);
    assert!(body.frame().await.is_none());
    assert_eq!(handle.in_flight_requests(), 0, "after the body ended");
}

#[tokio::test]
async fn dropping_the_body_or_the_future_releases_the_request() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let (_chunks_tx, chunks_rx) = mpsc::channel::<Bytes>(1);
    let mut chunks = Some(chunks_rx);
    let service = ZddLayer::new(handle.clone()).layer(service_fn(move |_req: Request<()>| {
        let body = Streaming(chunks.take().unwrap());
        async move { Ok::<_, Infallible>(Response::new(body)) }
    }));

    let response = service
        .oneshot(request("/", Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(handle.in_flight_requests(), 1);
    drop(response);
    assert_eq!(handle.in_flight_requests(), 0, "after the body was dropped");

    let pending = ZddLayer::new(handle.clone())
        .layer(service_fn(|_req: Request<()>| {
            std::future::pending::<Result<Response<Empty<Bytes>>, Infallible>>()
        }))
        .oneshot(request("/", Version::HTTP_11));
    let mut pending = task::spawn(pending);
    assert_pending!(pending.poll());
    assert_eq!(handle.in_flight_requests(), 1);
    drop(pending);
    assert_eq!(
        handle.in_flight_requests(),
        0,
        "after the future was dropped"
    );
}

#[tokio::test]
async fn a_panicking_handler_releases_its_request() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let service = ZddLayer::new(handle.clone()).layer(service_fn(|req: Request<()>| async move {
        if req.uri().path() == "/boom" {
            panic!("handler bug");
        }
        Ok::<_, Infallible>(ok())
    }));
    let call = service.oneshot(request("/boom", Version::HTTP_11));
    assert_eq!(handle.in_flight_requests(), 0, "oneshot has not called yet");
    let joined = tokio::spawn(call).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(handle.in_flight_requests(), 0, "after the handler panicked");
}

#[tokio::test]
async fn an_empty_body_completes_the_request_with_the_response() {
    let lifecycle = Lifecycle::new(
        Config::builder()
            .drain_timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    let handle = lifecycle.handle();
    let service = ZddLayer::new(handle.clone()).layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
    }));
    let sequence = tokio::spawn(lifecycle.run());
    handle.shutdown();
    let response = service
        .oneshot(request("/", Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(
        handle.in_flight_requests(),
        0,
        "never polled, already complete"
    );
    drop(response);
    let report = sequence.await.unwrap();
    assert_eq!(report.requests_completed(), 1);
}

#[tokio::test]
async fn http1_responses_get_connection_close_from_unready_on_and_http2_never() {
    let lifecycle = Lifecycle::new(
        Config::builder()
            .propagation_delay(Duration::from_secs(60))
            .grace_period(Duration::from_secs(90))
            .build()
            .unwrap(),
    );
    let handle = lifecycle.handle();
    let service = ZddLayer::new(handle.clone()).layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(ok())
    }));
    let close = |response: &Response<_>| response.headers().get("connection").cloned();

    let serving = service
        .clone()
        .oneshot(request("/", Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(close(&serving), None, "no header while serving");

    handle.shutdown();
    for version in [Version::HTTP_10, Version::HTTP_11] {
        let unready = service
            .clone()
            .oneshot(request("/", version))
            .await
            .unwrap();
        assert_eq!(
            unready.status(),
            StatusCode::OK,
            "still served while unready"
        );
        assert_eq!(close(&unready).unwrap(), "close");
    }
    let h2 = service
        .clone()
        .oneshot(request("/", Version::HTTP_2))
        .await
        .unwrap();
    assert_eq!(close(&h2), None, "HTTP/2 forbids the header");
}

#[tokio::test]
async fn an_upgrade_answer_is_never_marked_close() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let service = ZddLayer::new(handle.clone()).layer(service_fn(|_req: Request<()>| async {
        let mut response = Response::new(Empty::<Bytes>::new());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        Ok::<_, Infallible>(response)
    }));
    handle.shutdown();
    let response = service
        .oneshot(request("/ws", Version::HTTP_11))
        .await
        .unwrap();
    assert!(response.headers().get("connection").is_none());
}

#[tokio::test(start_paused = true)]
async fn late_requests_are_served_by_default_or_rejected_with_retry_after() {
    let (handle, _hold) = run_to(Lifecycle::new(Config::default()), Phase::Draining).await;
    let inner = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(ok()) });

    let served = ZddLayer::new(handle.clone())
        .layer(inner)
        .oneshot(request("/", Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["connection"], "close");
    drop(served);

    let rejecting = ZddLayer::new(handle.clone())
        .late_requests(LateRequests::Reject {
            retry_after: Duration::from_millis(1500),
        })
        .layer(inner);
    let rejected = rejecting
        .clone()
        .oneshot(request("/", Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rejected.headers()["retry-after"], "2");
    assert_eq!(rejected.headers()["connection"], "close");
    assert_eq!(
        handle.in_flight_requests(),
        1,
        "a rejected request is not counted"
    );
    let h2 = rejecting
        .oneshot(request("/", Version::HTTP_2))
        .await
        .unwrap();
    assert_eq!(h2.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(h2.headers().get("connection").is_none());
}

#[tokio::test(start_paused = true)]
async fn rejected_requests_are_counted_in_the_report() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let hold = handle.track_request();
    let sequence = tokio::spawn(lifecycle.run());
    handle.shutdown();
    handle.draining().await;
    let service = ZddLayer::new(handle.clone())
        .late_requests(LateRequests::Reject {
            retry_after: Duration::from_secs(1),
        })
        .layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(ok())
        }));
    service
        .oneshot(request("/", Version::HTTP_11))
        .await
        .unwrap();
    hold.finish();
    assert_eq!(sequence.await.unwrap().requests_rejected(), 1);
}

#[tokio::test(start_paused = true)]
async fn exempt_paths_are_never_counted_nor_rejected() {
    let (handle, _hold) = run_to(Lifecycle::new(Config::default()), Phase::Draining).await;
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let mut release = Some(release_rx);
    let service = ZddLayer::new(handle.clone())
        .exempt("/metrics")
        .late_requests(LateRequests::Reject {
            retry_after: Duration::from_secs(1),
        })
        .layer(service_fn(move |_req: Request<()>| {
            let gate = release.take();
            async move {
                if let Some(gate) = gate {
                    let _ = gate.await;
                }
                Ok::<_, Infallible>(ok())
            }
        }));
    let mut metrics = task::spawn(service.oneshot(request("/metrics", Version::HTTP_11)));
    assert_pending!(metrics.poll());
    assert_eq!(handle.in_flight_requests(), 1, "only the held request");
    release_tx.send(()).unwrap();
    let response = assert_ready!(metrics.poll()).unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["connection"], "close");
}

/// The layer tells most paths apart from the exempt and probe paths by their length
/// alone: a path of the same length is still counted, and paths of any length (past 63
/// bytes too) are exempt or answered.
#[tokio::test(start_paused = true)]
async fn exempt_and_probe_paths_of_any_length_are_told_from_others_of_the_same_length() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let long_exempt = format!("/{}", "e".repeat(80));
    let long_probe = format!("/{}", "r".repeat(70));
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let service = ZddLayer::new(handle.clone())
        .exempt("/metrics")
        .exempt(long_exempt.clone())
        .probes(ProbePaths::default().readiness(long_probe.clone()))
        .layer(service_fn(move |_req: Request<()>| {
            let mut release = release_rx.clone();
            async move {
                let _ = release.wait_for(|released| *released).await;
                Ok::<_, Infallible>(ok())
            }
        }));
    tokio::spawn(lifecycle.run());
    handle.reached(Phase::Serving).await;

    let counted = |path: &str| {
        let mut call = task::spawn(service.clone().oneshot(request(path, Version::HTTP_11)));
        let before = handle.in_flight_requests();
        assert_pending!(call.poll());
        let counted = handle.in_flight_requests() - before;
        (call, counted)
    };
    let same_length_as = |path: &str, c: char| format!("/{}", c.to_string().repeat(path.len() - 1));
    let mut held = Vec::new();
    for (path, expected) in [
        ("/metrics".to_owned(), 0),
        (same_length_as("/metrics", 'm'), 1),
        (long_exempt.clone(), 0),
        (same_length_as(&long_exempt, 'x'), 1),
        (same_length_as(&long_probe, 'x'), 1),
        ("/".to_owned(), 1),
    ] {
        let (call, counted) = counted(&path);
        assert_eq!(counted, expected, "{path}");
        held.push(call);
    }
    let probe = service
        .clone()
        .oneshot(request(&long_probe, Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(
        probe.status(),
        StatusCode::OK,
        "the long readiness path is answered"
    );
    release_tx.send(true).unwrap();
    for mut call in held {
        assert_ready!(call.poll()).unwrap();
    }
    assert_eq!(handle.in_flight_requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_layer_answers_probes_in_front_of_the_service() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let service = ZddLayer::new(handle.clone())
        .probes(ProbePaths::default().readiness("/readyz"))
        .layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
        }));
    tokio::spawn(lifecycle.run());
    handle.reached(Phase::Serving).await;

    let ready = service
        .clone()
        .oneshot(request("/readyz", Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.headers()["content-type"], "application/health+json");
    assert_eq!(ready.headers()["cache-control"], "no-store");
    let body = ready.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, r#"{"status":"pass","phase":"serving","checks":{}}"#);
    assert_eq!(handle.in_flight_requests(), 0);

    let app = service
        .clone()
        .oneshot(request("/health/ready", Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(
        app.into_body().collect().await.unwrap().to_bytes(),
        "app",
        "moved path goes to the app"
    );

    handle.shutdown();
    let unready = service
        .oneshot(request("/readyz", Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(unready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unready.headers()["connection"], "close");
}

#[tokio::test(start_paused = true)]
async fn a_body_dropped_during_forcing_is_counted_as_aborted() {
    let lifecycle = Lifecycle::new(
        Config::builder()
            .drain_timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    );
    let handle = lifecycle.handle();
    let (_chunks_tx, chunks_rx) = mpsc::channel::<Bytes>(1);
    let mut chunks = Some(chunks_rx);
    let service = ZddLayer::new(handle.clone()).layer(service_fn(move |_req: Request<()>| {
        let body = Streaming(chunks.take().unwrap());
        async move { Ok::<_, Infallible>(Response::new(body)) }
    }));
    let response = service
        .oneshot(request("/events", Version::HTTP_11))
        .await
        .unwrap();
    let sequence = tokio::spawn(lifecycle.run());
    handle.shutdown();
    handle.reached(Phase::Forcing).await;
    drop(response); // the server force-closes the connection
    let report = sequence.await.unwrap();
    assert_eq!(report.requests_aborted(), 1);
    assert_eq!(report.requests_completed(), 0);
}

#[tokio::test(start_paused = true)]
async fn end_forced_with_ends_open_requests_with_trailers_or_a_trailers_only_answer() {
    let lifecycle = Lifecycle::new(
        Config::builder()
            .drain_timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    );
    let handle = lifecycle.handle();
    let mut end = http::HeaderMap::new();
    end.insert("content-type", "application/grpc".parse().unwrap());
    end.insert("grpc-status", "14".parse().unwrap());
    let (_chunks_tx, chunks_rx) = mpsc::channel::<Bytes>(1);
    let mut chunks = Some(chunks_rx);
    let layer = ZddLayer::new(handle.clone()).end_forced_with(end);
    let streaming = layer.clone().layer(service_fn(move |_req: Request<()>| {
        let body = Streaming(chunks.take().unwrap());
        async move { Ok::<_, Infallible>(Response::new(body)) }
    }));
    let never = layer.layer(service_fn(|_req: Request<()>| async {
        std::future::pending::<Result<Response<Empty<Bytes>>, Infallible>>().await
    }));
    // An answer whose body is still open, and a request not answered yet.
    let open = streaming
        .oneshot(request("/stream", Version::HTTP_2))
        .await
        .unwrap();
    let unanswered = tokio::spawn(never.oneshot(request("/slow", Version::HTTP_2)));
    tokio::task::yield_now().await;
    assert_eq!(handle.in_flight_requests(), 2);

    let sequence = tokio::spawn(lifecycle.run());
    handle.shutdown();
    // The body ends with the trailers (without Content-Type, which belongs to a head).
    let collected = open.into_body().collect().await.unwrap();
    assert_eq!(handle.phase(), Phase::Forcing);
    let trailers = collected.trailers().expect("trailers at forcing");
    assert_eq!(trailers.get("grpc-status").unwrap(), "14");
    assert!(trailers.get("content-type").is_none());
    // The unanswered request is answered 200 with them as headers, and an empty body.
    let answer = unanswered.await.unwrap().unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers().get("grpc-status").unwrap(), "14");
    assert_eq!(
        answer.headers().get("content-type").unwrap(),
        "application/grpc"
    );
    assert!(
        answer
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );

    let report = sequence.await.unwrap();
    assert_eq!(report.requests_aborted(), 2, "{report}");
    assert_eq!(report.requests_completed(), 0, "{report}");
}

/// A body that is always ready, as an endless stream of data is.
struct Endless;

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"tick")))))
    }
}

/// A body that never waits is never registered for forcing (the wait is made only while a
/// body or service waits), yet still ends with the trailers at forcing, at its next poll.
#[tokio::test(start_paused = true)]
async fn end_forced_with_ends_a_body_that_never_waits() {
    let lifecycle = Lifecycle::new(
        Config::builder()
            .drain_timeout(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let handle = lifecycle.handle();
    let mut end = http::HeaderMap::new();
    end.insert("grpc-status", "14".parse().unwrap());
    let service = ZddLayer::new(handle.clone())
        .end_forced_with(end)
        .layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Endless))
        }));
    let response = service
        .oneshot(request("/endless", Version::HTTP_2))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());

    let sequence = tokio::spawn(lifecycle.run());
    handle.shutdown();
    handle.reached(Phase::Forcing).await;
    let last = body.frame().await.unwrap().unwrap();
    let trailers = last.into_trailers().expect("the trailers at forcing");
    assert_eq!(trailers.get("grpc-status").unwrap(), "14");
    assert!(body.frame().await.is_none(), "ended after the trailers");
    drop(body);
    assert_eq!(sequence.await.unwrap().requests_aborted(), 1);
}
