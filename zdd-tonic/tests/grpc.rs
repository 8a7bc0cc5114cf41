//! zdd-tonic over real sockets: the health service follows the phases exactly as
//! `/health/ready` does, unknown services answer `UNIMPLEMENTED`, and a malformed HTTP/2
//! preface is closed and counted.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_client::HealthClient,
};
use zdd_core::{Check, Config, Lifecycle, Phase, Probe, ShutdownReport};
use zdd_tonic::GrpcHealth;

/// A generous bound for what should happen promptly on loopback.
const BOUND: Duration = Duration::from_secs(10);

async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The readiness probe's HTTP status, asked over HTTP/1.1 on the same port.
async fn http_ready(addr: SocketAddr) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /health/ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    bounded("probe answer", stream.read_to_string(&mut answer))
        .await
        .unwrap();
    answer
        .get(9..12)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

async fn check(client: &mut HealthClient<Channel>, service: &str) -> Result<ServingStatus, Code> {
    let request = HealthCheckRequest {
        service: service.into(),
    };
    match bounded("Check", client.check(request)).await {
        Ok(answer) => Ok(answer.into_inner().status()),
        Err(status) => Err(status.code()),
    }
}

async fn next(watch: &mut tonic::Streaming<HealthCheckResponse>) -> Option<ServingStatus> {
    bounded("Watch", watch.message())
        .await
        .expect("the watch stream ends cleanly")
        .map(|answer| answer.status())
}

struct Server {
    addr: SocketAddr,
    served: tokio::task::JoinHandle<ShutdownReport>,
}

/// Serves `health` (and nothing else) through `zdd_tonic::serve`.
async fn start(lifecycle: Lifecycle, health: GrpcHealth) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = tonic::service::Routes::new(health.into_server());
    let served = tokio::spawn(zdd_tonic::serve(listener, routes, lifecycle).into_future());
    Server { addr, served }
}

async fn channel(addr: SocketAddr) -> Channel {
    bounded(
        "connect",
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_watch_follow_the_phases_as_the_readiness_probe_does() {
    let config = Config::builder()
        .propagation_delay(Duration::from_millis(1500))
        .drain_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let lifecycle = Lifecycle::new(config);
    let handle = lifecycle.handle();
    let warm_up = handle.startup_task("warm-up");
    let db_up = Arc::new(AtomicBool::new(true));
    let db = Arc::clone(&db_up);
    handle.readiness_check(
        Check::new("db", move || {
            let up = db.load(Ordering::SeqCst);
            async move { up }
        })
        .cache_for(Duration::ZERO),
    );
    let health = GrpcHealth::new(handle.clone())
        .service("liveness", Probe::Liveness)
        .service_checks("db", ["db"])
        .service_checks("typo", ["no-such-check"])
        .watch_interval(Duration::from_millis(20));
    let server = start(lifecycle, health).await;
    let addr = server.addr;
    let mut client = HealthClient::new(channel(addr).await);
    let watch_request = HealthCheckRequest {
        service: String::new(),
    };
    let mut watch = client.watch(watch_request).await.unwrap().into_inner();

    // Starting: not serving, as the probe answers 503.
    assert_eq!(http_ready(addr).await, 503);
    assert_eq!(check(&mut client, "").await, Ok(ServingStatus::NotServing));
    assert_eq!(next(&mut watch).await, Some(ServingStatus::NotServing));
    assert_eq!(
        check(&mut client, "liveness").await,
        Ok(ServingStatus::Serving)
    );

    // Serving.
    warm_up.complete();
    assert_eq!(next(&mut watch).await, Some(ServingStatus::Serving));
    assert_eq!(handle.phase(), Phase::Serving);
    assert_eq!(http_ready(addr).await, 200);
    assert_eq!(check(&mut client, "").await, Ok(ServingStatus::Serving));
    assert_eq!(check(&mut client, "db").await, Ok(ServingStatus::Serving));
    // A mapping to a check that does not exist never passes for healthy.
    assert_eq!(
        check(&mut client, "typo").await,
        Ok(ServingStatus::NotServing)
    );
    assert_eq!(check(&mut client, "nope").await, Err(Code::NotFound));

    // A failing readiness check: not serving, then serving again, on the watch too.
    db_up.store(false, Ordering::SeqCst);
    assert_eq!(next(&mut watch).await, Some(ServingStatus::NotServing));
    assert_eq!(http_ready(addr).await, 503);
    assert_eq!(check(&mut client, "").await, Ok(ServingStatus::NotServing));
    assert_eq!(
        check(&mut client, "db").await,
        Ok(ServingStatus::NotServing)
    );
    db_up.store(true, Ordering::SeqCst);
    assert_eq!(next(&mut watch).await, Some(ServingStatus::Serving));
    assert_eq!(http_ready(addr).await, 200);

    // Marked not ready (maintenance).
    handle.set_not_ready(true);
    assert_eq!(next(&mut watch).await, Some(ServingStatus::NotServing));
    assert_eq!(http_ready(addr).await, 503);
    handle.set_not_ready(false);
    assert_eq!(next(&mut watch).await, Some(ServingStatus::Serving));

    // Unready: not serving at once; liveness still serving; the listener still answers.
    handle.shutdown();
    assert_eq!(next(&mut watch).await, Some(ServingStatus::NotServing));
    assert_eq!(handle.phase(), Phase::Unready);
    assert_eq!(http_ready(addr).await, 503);
    let mut fresh = HealthClient::new(channel(addr).await);
    assert_eq!(check(&mut fresh, "").await, Ok(ServingStatus::NotServing));
    assert_eq!(
        check(&mut fresh, "liveness").await,
        Ok(ServingStatus::Serving)
    );

    // Draining: the watch ends cleanly, so it holds no connection through the drain.
    assert_eq!(next(&mut watch).await, None);
    assert!(handle.phase() >= Phase::Draining);
    drop((client, fresh, watch));
    let report = bounded("the report", server.served).await.unwrap();
    assert!(report.is_graceful(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_services_answer_unimplemented_and_a_malformed_preface_is_closed_and_counted() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let server = start(lifecycle, GrpcHealth::new(handle.clone())).await;
    bounded("serving", handle.reached(Phase::Serving)).await;

    // An HTTP/2 preface with garbage where the SETTINGS frame belongs.
    let mut garbage = TcpStream::connect(server.addr).await.unwrap();
    garbage
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
        .await
        .unwrap();
    let mut rest = Vec::new();
    // Closed by the server: an end of stream (or a reset), not a hang.
    let _ = bounded(
        "the malformed connection is closed",
        garbage.read_to_end(&mut rest),
    )
    .await;
    bounded("the connection is no longer counted as open", async {
        while handle.open_connections() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;

    // A call to a service the routes do not have.
    let mut grpc = tonic::client::Grpc::new(channel(server.addr).await);
    bounded("ready", grpc.ready()).await.unwrap();
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/nope.v1.Nothing/Call");
    let request = tonic::Request::new(HealthCheckRequest::default());
    let answer = bounded("the unknown call", grpc.unary(request, path, codec)).await;
    assert_eq!(answer.unwrap_err().code(), Code::Unimplemented);
    drop(grpc);

    handle.shutdown();
    let report = bounded("the report", server.served).await.unwrap();
    assert!(report.is_graceful(), "{report}");
    let listener = &report.listeners()[0];
    // The malformed connection, then the client's.
    assert!(listener.accepted() >= 2, "{report}");
    assert_eq!(listener.connections_forced(), 0, "{report}");
    assert_eq!(report.left_open(), 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_service_answers_on_the_admin_listener_through_the_drain() {
    let config = Config::builder()
        .drain_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let lifecycle = Lifecycle::new(config);
    let handle = lifecycle.handle();
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_addr = public.local_addr().unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let health = GrpcHealth::new(handle.clone()).service("liveness", Probe::Liveness);
    let routes = tonic::service::Routes::default();
    let served = tokio::spawn(
        zdd_tonic::serve_with_health(public, routes, health, lifecycle)
            .admin_listener(admin)
            .into_future(),
    );
    bounded("serving", handle.reached(Phase::Serving)).await;
    let mut on_admin = HealthClient::new(channel(admin_addr).await);
    assert_eq!(check(&mut on_admin, "").await, Ok(ServingStatus::Serving));
    let mut on_public = HealthClient::new(channel(public_addr).await);
    assert_eq!(check(&mut on_public, "").await, Ok(ServingStatus::Serving));
    drop(on_public);

    // Work in flight holds the drain open; the public listener is closed by then.
    let work = handle.track_request();
    handle.shutdown();
    bounded("draining", handle.reached(Phase::Draining)).await;
    bounded("the public listener closes", async {
        while TcpStream::connect(public_addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // A new connection to the admin port (as each Kubernetes probe makes) still answers.
    let mut fresh = HealthClient::new(channel(admin_addr).await);
    assert_eq!(check(&mut fresh, "").await, Ok(ServingStatus::NotServing));
    assert_eq!(
        check(&mut fresh, "liveness").await,
        Ok(ServingStatus::Serving)
    );
    assert_eq!(
        check(&mut on_admin, "liveness").await,
        Ok(ServingStatus::Serving)
    );
    // Not counted as work: the drain ends with the request, not with the probes.
    assert_eq!(handle.in_flight_requests(), 1);
    drop(work);
    let report = bounded("the report", served).await.unwrap();
    assert!(report.is_graceful(), "{report}");
}
