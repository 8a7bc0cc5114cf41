//! The gRPC example as a real process, through its shutdown: a server-streaming call open
//! at SIGTERM ends cleanly when draining starts (status OK, stream complete); a stream and
//! a unary call still running at the drain deadline end `UNAVAILABLE`; the report counts
//! the first as completed and the other two as aborted.
//!
//! The rolling update of the same example behind HAProxy is in `rolling_update.rs`; the
//! health service against the phases in `zdd-tonic/tests/grpc.rs`.

mod support;

#[allow(
    clippy::all,
    missing_docs,
    unreachable_pub,
    missing_debug_implementations
)]
#[path = "../examples/grpc/hello.v1.rs"]
mod hello;

use std::time::{Duration, Instant};

use hello::{CountRequest, HelloRequest, greeter_client::GreeterClient};
use support::*;
use tonic::Code;

const DRAIN: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_open_at_shutdown_end_ok_at_draining_or_unavailable_at_the_deadline() {
    let env = [
        ("ZDD_PROPAGATION_DELAY", "300ms"),
        ("ZDD_DRAIN_TIMEOUT", "2s"),
        ("ZDD_CLEANUP_TIMEOUT", "1s"),
        ("ZDD_GRACE_PERIOD", "10s"),
    ];
    let server = Instance::start(&example("grpc_hello"), "grpc", "v1", free_port(), &env);
    let url = format!("http://127.0.0.1:{}", server.port);
    let endpoint = tonic::transport::Endpoint::from_shared(url).unwrap();
    let channel = tokio::time::timeout(BOUND, endpoint.connect())
        .await
        .expect("connects in time")
        .expect("connects");
    let mut client = GreeterClient::new(channel);

    let count = |through_drain| CountRequest {
        interval_ms: 50,
        through_drain,
    };
    let mut ending = client.count(count(false)).await.unwrap().into_inner();
    let mut running = client.count(count(true)).await.unwrap().into_inner();
    // Both streams are open: each has sent its first item.
    for stream in [&mut ending, &mut running] {
        let first = tokio::time::timeout(BOUND, stream.message()).await.unwrap();
        assert_eq!(first.unwrap().map(|reply| reply.n), Some(0));
    }
    let mut slow_client = client.clone();
    let slow = tokio::spawn(async move {
        let request = HelloRequest {
            name: "slow".into(),
            delay_ms: 60_000,
        };
        slow_client.say_hello(request).await
    });
    // The slow call has reached the server once the server counts it (it logs nothing):
    // give the request its round trip through the open connection.
    let hello = client
        .say_hello(HelloRequest::default())
        .await
        .expect("a quick call answers");
    assert_eq!(hello.into_inner().message, "hello world");

    server.signal("TERM");
    let signalled = Instant::now();

    // The stream that follows the drain ends cleanly: every item, then OK.
    let ended = tokio::time::timeout(BOUND, async {
        loop {
            match ending.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(signalled.elapsed()),
                Err(status) => return Err(status),
            }
        }
    })
    .await
    .expect("the draining stream ends");
    let ended_after = ended.unwrap_or_else(|status| panic!("ended with {status:?}"));
    assert!(
        ended_after < DRAIN,
        "ended at the drain, not at its deadline: {ended_after:?}"
    );

    // The stream that runs through the drain ends UNAVAILABLE at the deadline.
    let cut = tokio::time::timeout(BOUND, async {
        loop {
            match running.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream running through the drain ended OK"),
                Err(status) => return (status, signalled.elapsed()),
            }
        }
    })
    .await
    .expect("the running stream is ended");
    assert_eq!(cut.0.code(), Code::Unavailable, "{:?}", cut.0);
    assert!(cut.1 >= DRAIN, "ended before the deadline: {:?}", cut.1);

    // So does the unary call still waiting.
    let slow = tokio::time::timeout(BOUND, slow).await.unwrap().unwrap();
    assert_eq!(slow.unwrap_err().code(), Code::Unavailable);

    let exited = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    // Forced: not graceful, exit code 1; the report counts each call.
    assert_eq!(exited.code, Some(1), "{:#?}", exited.output);
    let requests = exited
        .output
        .iter()
        .find(|line| line.trim_start().starts_with("requests:"))
        .unwrap_or_else(|| panic!("no report: {:#?}", exited.output));
    assert!(
        requests.contains("1 completed, 2 aborted"),
        "{requests}; {:#?}",
        exited.output
    );
}
