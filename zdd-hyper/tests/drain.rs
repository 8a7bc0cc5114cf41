//! The serve loop under shutdown, on real loopback sockets with raw HTTP/1.1 and a real
//! HTTP/2 client. Real time is used (sockets do not run on paused time); every wait is
//! either a handshake or a generous bound.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{io::AsyncWriteExt, net::TcpListener};
use zdd_core::{ForceReason, Phase, Protocol};

use support::*;

#[tokio::test]
async fn a_slow_request_in_flight_completes_and_serve_returns_right_after_it() {
    let mut server = start(config(0, 20_000)).await;
    let mut client = RawClient::connect(server.addr).await;
    let request = tokio::spawn(async move { client.get("/slow").await });
    server.wait_started("/slow").await;
    assert_eq!(server.handle.open_connections_speaking(Protocol::Http1), 1);

    server.handle.shutdown();
    server.handle.draining().await;
    server.release.notify_one();
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "slow done");
    assert_eq!(response.header("connection"), Some("close"));

    let answered = Instant::now();
    let report = server.report().await;
    assert!(
        answered.elapsed() < Duration::from_secs(5),
        "serve waited for the deadline"
    );
    assert!(report.is_graceful(), "{report}");
    assert_eq!(report.requests_completed(), 1);
    assert_eq!(report.forced(), None);
}

#[tokio::test]
async fn during_unready_responses_say_close_and_new_connections_are_still_accepted() {
    let server = start(config(3_000, 5_000)).await;
    let mut kept_alive = RawClient::connect(server.addr).await;
    let before = kept_alive.get("/").await.unwrap();
    assert_eq!(
        before.header("connection"),
        None,
        "keep-alive while serving"
    );

    server.handle.shutdown();
    assert_eq!(server.handle.phase(), Phase::Unready);
    let on_old = kept_alive.get("/").await.unwrap();
    assert_eq!(on_old.status, 200);
    assert_eq!(on_old.header("connection"), Some("close"));
    kept_alive.closed().await.unwrap();

    let mut fresh = RawClient::connect(server.addr).await;
    let on_new = fresh.get("/").await.unwrap();
    assert_eq!(on_new.status, 200, "accepted and served while unready");
    assert_eq!(on_new.header("connection"), Some("close"));
    let ready = RawClient::connect(server.addr)
        .await
        .get("/health/ready")
        .await
        .unwrap();
    assert_eq!(ready.status, 503);
    assert_eq!(
        server.handle.phase(),
        Phase::Unready,
        "all of this happened before draining"
    );
    assert!(server.report().await.is_graceful());
}

#[tokio::test]
async fn idle_keep_alive_connections_close_when_draining_starts_not_before() {
    let server = start(config(1_500, 5_000)).await;
    let mut idle = RawClient::connect(server.addr).await;
    idle.get("/").await.unwrap();

    server.handle.shutdown();
    idle.closed().await.unwrap();
    assert!(
        server.handle.phase() >= Phase::Draining,
        "closed while still unready"
    );
    let report = server.report().await;
    assert!(report.is_graceful());
    assert!(report.connections_graceful() >= 1);
    assert!(report.time_in(Phase::Unready).unwrap() >= Duration::from_millis(1_500));
}

#[tokio::test]
async fn a_request_pipelined_behind_a_slow_one_is_not_cut_by_the_header_timeout() {
    // Its bytes arrive while the slow request is being served: they start no head
    // deadline (the connection is not between requests), so waiting longer than the
    // header timeout for its turn cuts nothing. Then three more in one write.
    let mut server = start_with(config(0, 5_000), |serve| {
        serve.header_timeout(Duration::from_millis(200))
    })
    .await;
    let mut client = RawClient::connect(server.addr).await;
    assert_eq!(client.get("/").await.unwrap().status, 200);
    client
        .send("GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        .await;
    server.wait_started("/slow").await;
    client.send("GET / HTTP/1.1\r\nHost: test\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(400)).await; // twice the header timeout
    server.release.notify_one();
    for expected in ["slow done", "ok"] {
        let response = client.response().await.unwrap();
        assert_eq!(response.map(|r| r.status), Some(200), "{expected}");
    }
    client
        .send(&"GET / HTTP/1.1\r\nHost: test\r\n\r\n".repeat(3))
        .await;
    for n in 1..=3 {
        let response = client.response().await.unwrap();
        assert_eq!(response.map(|r| r.status), Some(200), "pipelined {n}");
    }

    server.handle.shutdown();
    client.closed().await.unwrap();
    let report = server.report().await;
    assert!(report.is_graceful(), "{report}");
    assert_eq!(report.connections_graceful(), 1);
}

#[tokio::test]
async fn a_request_sent_right_after_the_last_answer_is_served_not_cut_off() {
    // No balancer in front (no propagation delay): clients keep using their connections
    // right up to the drain. One that answered a request a moment ago is not closed while
    // the client may already be sending the next one; the next answer says close.
    for _ in 0..20 {
        let server = start(config(0, 5_000)).await;
        let mut client = RawClient::connect(server.addr).await;
        client.get("/").await.unwrap();
        server.handle.shutdown();
        server.handle.draining().await;
        tokio::task::yield_now().await;
        let next = client.get("/").await.expect("the next request was cut off");
        assert_eq!(next.status, 200);
        assert_eq!(next.header("connection"), Some("close"));
        client.closed().await.unwrap();
        assert!(server.report().await.is_graceful());
    }
}

#[tokio::test]
async fn a_request_whose_head_is_arriving_when_the_drain_begins_is_served() {
    // The client has begun its next request (half of its head is in) when the drain
    // begins: the connection is not idle, and closing it would lose the request. It is
    // served, and its answer says close.
    for _ in 0..20 {
        let server = start(config(0, 5_000)).await;
        let mut client = RawClient::connect(server.addr).await;
        client.get("/").await.unwrap();
        client.send("GET / HTTP/1.1\r\nHost: te").await;
        // A yielding task resumes after the runtime has read its sockets' events: the
        // server has read the first half by then.
        tokio::task::yield_now().await;
        server.handle.shutdown();
        server.handle.draining().await;
        tokio::task::yield_now().await;
        client.send("st\r\n\r\n").await;
        let next = client
            .response()
            .await
            .unwrap()
            .expect("the request whose head was arriving was cut off");
        assert_eq!(next.status, 200);
        assert_eq!(next.header("connection"), Some("close"));
        client.closed().await.unwrap();
        assert!(server.report().await.is_graceful());
    }
}

#[tokio::test]
async fn the_quiet_time_before_the_drain_closes_a_connection_counts_from_its_last_answer() {
    // The last request took longer than the quiet time (200 ms: a quarter of this drain
    // timeout): the client's next one still comes right after its answer, and is served.
    for _ in 0..5 {
        let mut server = start(config(0, 800)).await;
        let mut client = RawClient::connect(server.addr).await;
        client
            .send("GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            .await;
        server.wait_started("/slow").await;
        // The request itself takes a while (the scenario, not a synchronisation).
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.release.notify_one();
        assert_eq!(client.response().await.unwrap().unwrap().body, "slow done");
        server.handle.shutdown();
        server.handle.draining().await;
        tokio::task::yield_now().await;
        let next = client.get("/").await.expect("the next request was cut off");
        assert_eq!(next.header("connection"), Some("close"));
        assert!(server.report().await.is_graceful());
    }
}

#[tokio::test]
async fn a_head_that_never_completes_during_the_drain_is_closed_at_forcing() {
    // Waiting for a head that is arriving must not outlast forcing: the connection closes
    // at forcing, within the force wait.
    let server = start(config(0, 400)).await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/").await.unwrap();
    client.send("GET / HTTP/1.1\r\nHost: te").await;
    tokio::task::yield_now().await;
    server.handle.shutdown();
    client.closed().await.unwrap();
    let report = server.report().await;
    assert_eq!(report.forced(), Some(ForceReason::DrainTimeout), "{report}");
    assert_eq!(report.left_open(), 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_reached_an_idle_connection_as_the_drain_began_is_served() {
    // A connection idle for longer than the quiet time gets a request just as the drain
    // begins: its bytes may be in the socket before the runtime has reported them (the
    // phase can wake the connection first). It is read before the close and answered
    // (with `Connection: close` when the drain had begun, as a keep-alive answer when it
    // was served just before). On the runtime's worker threads, as a server runs. Closed
    // as soon as draining began, without waiting for the runtime to read the sockets'
    // events (the server's event turn), this failed within a few rounds.
    for _ in 0..30 {
        let server = start(config(0, 800)).await;
        let mut client = RawClient::connect(server.addr).await;
        client.get("/").await.unwrap();
        // Idle for longer than the quiet time (200 ms: a quarter of this drain timeout),
        // the scenario, not a synchronisation.
        tokio::time::sleep(Duration::from_millis(250)).await;
        client.send("GET / HTTP/1.1\r\nHost: test\r\n\r\n").await;
        server.handle.shutdown();
        let next = client
            .response()
            .await
            .ok()
            .flatten()
            .expect("the request that had reached the connection was cut off");
        assert_eq!(next.status, 200);
        assert!(server.report().await.is_graceful());
    }
}

#[tokio::test]
async fn a_client_that_pauses_before_its_next_request_is_still_served() {
    // A client whose process was busy or paused (a garbage collection, a loaded machine)
    // sends its next request a few hundred milliseconds after the last answer, and the
    // drain began in between: the connection is still open for it.
    let server = start(config(0, 5_000)).await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/").await.unwrap();
    server.handle.shutdown();
    server.handle.draining().await;
    // The client's pause (the scenario, not a synchronisation).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let next = client
        .get("/")
        .await
        .expect("the paused client's request was cut off");
    assert_eq!(next.status, 200);
    assert_eq!(next.header("connection"), Some("close"));
    client.closed().await.unwrap();
    assert!(server.report().await.is_graceful());
}

#[tokio::test]
async fn the_quiet_time_never_outlasts_a_short_drain() {
    // With a drain timeout of 400 ms, a connection that just answered is closed after
    // 100 ms of quiet (a quarter of it), not forced at the end of the drain.
    let server = start(config(0, 400)).await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/").await.unwrap();
    server.handle.shutdown();
    client.closed().await.unwrap();
    let report = server.report().await;
    assert!(report.is_graceful(), "{report}");
    assert_eq!(report.connections_graceful(), 1, "{report}");
}

#[tokio::test]
async fn a_connection_in_its_quiet_time_at_forcing_closes_within_the_force_wait() {
    // A connection that answered a moment ago waits out its quiet time before the drain
    // closes it. Forcing then must not leave it open: with a force wait of at least twice
    // the quiet time it closes at the end of it (no wait for forcing of its own); with a
    // shorter one it waits for forcing and closes at once.
    for force_wait in [Duration::from_secs(1), Duration::from_millis(20)] {
        let config = zdd_core::Config::builder()
            .propagation_delay(Duration::ZERO)
            // A quiet time of 100 ms (a quarter of it), within half the longer force wait.
            .drain_timeout(Duration::from_millis(400))
            .force_wait(force_wait)
            .cleanup_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let server = start(config).await;
        let mut client = RawClient::connect(server.addr).await;
        client.get("/").await.unwrap();
        server.handle.shutdown();
        server.handle.draining().await;
        server.handle.force();
        client.closed().await.unwrap();
        let report = server.report().await;
        assert_eq!(report.left_open(), 0, "force wait {force_wait:?}: {report}");
        assert_eq!(report.forced(), Some(ForceReason::Requested), "{report}");
    }
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_does_not_hold_the_drain() {
    let server = start_with(config(0, 20_000), |serve| {
        serve.first_byte_timeout(Duration::from_millis(300))
    })
    .await;
    let mut silent = RawClient::connect(server.addr).await;
    let started = Instant::now();
    server.handle.shutdown();
    silent.closed().await.unwrap();
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(300) && closed_after < Duration::from_secs(3),
        "{closed_after:?}"
    );
    let report = server.report().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held past its grace"
    );
    assert!(report.is_graceful(), "{report}");
}

#[tokio::test]
async fn a_slow_loris_header_is_cut_off() {
    let server = start_with(config(0, 5_000), |serve| {
        serve.first_request_timeout(Duration::from_millis(500))
    })
    .await;
    let mut loris = RawClient::connect(server.addr).await;
    let started = Instant::now();
    loris.send("GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ").await;
    loris.closed().await.unwrap();
    let cut_after = started.elapsed();
    assert!(
        cut_after >= Duration::from_millis(500),
        "cut before its deadline: {cut_after:?}"
    );
    assert!(
        cut_after < Duration::from_secs(3),
        "cut long after its deadline: {cut_after:?}"
    );
    assert_eq!(
        server.handle.phase(),
        Phase::Serving,
        "cut off by its own deadline, not a shutdown"
    );
    server.handle.shutdown();
    assert!(server.report().await.is_graceful());
}

#[tokio::test]
async fn a_hung_handler_is_forced_closed_at_the_deadline_and_reported() {
    let mut server = start(config(0, 500)).await;
    let mut client = RawClient::connect(server.addr).await;
    client
        .send("GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
        .await;
    server.wait_started("/hang").await;
    server.handle.shutdown();
    client.closed().await.unwrap();
    let report = server.report().await;
    assert_eq!(report.forced(), Some(ForceReason::DrainTimeout));
    assert_eq!(report.requests_aborted(), 1);
    assert_eq!(report.connections_forced(), 1);
    assert_eq!(report.left_open(), 0);
    assert_eq!(report.exit_code(), 1);
}

#[tokio::test]
async fn an_http2_stream_hung_at_the_deadline_is_forced_closed() {
    let mut server = start(config(0, 500)).await;
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/hang", server.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = tokio::spawn(sender.send_request(request));
    server.wait_started("/hang").await;

    server.handle.shutdown();
    let ended = tokio::time::timeout(BOUND, connection)
        .await
        .expect("the HTTP/2 connection was not closed at forcing");
    drop(ended);
    assert!(
        response.await.unwrap().is_err(),
        "the hung stream got no answer"
    );
    let report = server.report().await;
    assert_eq!(report.forced(), Some(ForceReason::DrainTimeout));
    assert_eq!(report.requests_aborted(), 1, "{report}");
    assert_eq!(report.connections_forced(), 1, "{report}");
    assert_eq!(report.left_open(), 0);
}

#[tokio::test]
async fn a_connection_silent_past_the_drain_deadline_is_closed_at_forcing() {
    // Its own deadline (20 s) is far off: forcing closes it, not the deadline.
    let server = start_with(config(0, 500), |serve| {
        serve.first_byte_timeout(Duration::from_secs(20))
    })
    .await;
    let mut silent = RawClient::connect(server.addr).await;
    let mut half = RawClient::connect(server.addr).await;
    half.send("GET / HTTP/1.1\r\nHost: te").await;
    let started = Instant::now();
    server.handle.shutdown();
    silent.closed().await.unwrap();
    half.closed().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let report = server.report().await;
    assert_eq!(report.forced(), Some(ForceReason::DrainTimeout));
    assert_eq!(report.connections_forced(), 2, "{report}");
    assert_eq!(report.left_open(), 0);
}

#[tokio::test]
async fn an_upgraded_connection_ignoring_the_drain_is_forced_closed() {
    let mut server = start(config(0, 500)).await;
    let mut client = RawClient::connect(server.addr).await;
    client
        .send("GET /upgrade HTTP/1.1\r\nHost: test\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
        .await;
    let switched = client.response().await.unwrap().unwrap();
    assert_eq!(switched.status, 101);
    server.wait_started("upgraded").await;
    client.stream().write_all(b"ping").await.unwrap();
    let mut echo = [0; 4];
    tokio::io::AsyncReadExt::read_exact(client.stream(), &mut echo)
        .await
        .unwrap();
    assert_eq!(&echo, b"ping", "the upgraded protocol works");

    server.handle.shutdown();
    server.wait_started("upgraded stream ended").await;
    client.closed().await.unwrap();
    let report = server.report().await;
    assert_eq!(report.forced(), Some(ForceReason::DrainTimeout));
    assert_eq!(report.connections_forced(), 1, "{report}");
    assert_eq!(report.left_open(), 0);
}

#[tokio::test]
async fn connections_waiting_in_the_backlog_are_served_not_reset() {
    let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let held = Arc::new(Mutex::new(true));
    let listener = GatedListener {
        inner,
        held: Arc::clone(&held),
    };
    let server = start_on(listener, config(0, 5_000), |serve| serve);

    // The loop is parked on a held accept; these connect and send into the kernel backlog.
    let mut waiting = Vec::new();
    for _ in 0..5 {
        let mut client = RawClient::connect(server.addr).await;
        client.send("GET / HTTP/1.1\r\nHost: test\r\n\r\n").await;
        waiting.push(client);
    }
    *held.lock().unwrap() = false; // only the backlog pass will accept now
    server.handle.shutdown();
    for mut client in waiting {
        let response = client
            .response()
            .await
            .unwrap()
            .expect("reset instead of served");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, "ok");
    }
    let report = server.report().await;
    assert!(report.is_graceful(), "{report}");
    assert_eq!(report.requests_completed(), 5);
}

#[tokio::test]
async fn http2_gets_goaway_at_unready_and_its_open_stream_completes() {
    use http_body_util::BodyExt;
    let mut server = start(config(3_000, 5_000)).await;
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/slow", server.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request);
    let response = tokio::spawn(response);
    server.wait_started("/slow").await;
    assert_eq!(server.handle.open_connections_speaking(Protocol::Http2), 1);
    assert_eq!(server.handle.open_connections_speaking(Protocol::Http1), 0);

    server.handle.shutdown();
    server.release.notify_one();
    let response = response.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("connection").is_none());
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "slow done"
    );

    // The server ended the connection after its last stream: GOAWAY, not a reset.
    let ended = tokio::time::timeout(BOUND, connection)
        .await
        .expect("HTTP/2 connection stayed open");
    assert!(ended.unwrap().is_ok(), "the connection ended with an error");
    assert_eq!(
        server.handle.phase(),
        Phase::Unready,
        "closed during unready, before draining"
    );
    assert!(server.report().await.is_graceful());
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let server = start_with(config(0, 5_000), |serve| {
        serve.idle_timeout(Duration::from_millis(400))
    })
    .await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/").await.unwrap();
    let served = Instant::now();
    client.closed().await.unwrap();
    let idle = served.elapsed();
    assert!(
        idle >= Duration::from_millis(400) && idle < Duration::from_secs(3),
        "{idle:?}"
    );
    assert_eq!(server.handle.phase(), Phase::Serving);
    server.handle.shutdown();
    assert!(server.report().await.is_graceful());
}

#[tokio::test]
async fn max_connections_holds_new_connections_until_one_closes() {
    let server = start_with(config(0, 5_000), |serve| serve.max_connections(1)).await;
    let mut first = RawClient::connect(server.addr).await;
    first.get("/").await.unwrap();
    let mut second = RawClient::connect(server.addr).await;
    second.send("GET / HTTP/1.1\r\nHost: test\r\n\r\n").await;
    // The second request was sent first; if it were being served, its answer would be on
    // the wire before the first connection's next one.
    first.get("/").await.unwrap();
    let mut peek = [0; 1];
    assert!(
        second.stream().try_read(&mut peek).is_err(),
        "served past the connection limit"
    );
    drop(first);
    let response = second
        .response()
        .await
        .unwrap()
        .expect("served once a slot freed");
    assert_eq!(response.status, 200);
    server.handle.shutdown();
    assert!(server.report().await.is_graceful());
}

/// A server whose later request heads must arrive within `ms` milliseconds.
async fn with_header_timeout(ms: u64) -> TestServer {
    start_with(config(0, 5_000), move |serve| {
        serve.header_timeout(Duration::from_millis(ms))
    })
    .await
}

/// A keep-alive connection that already served a request, then sends the next request's
/// head one byte at a time.
async fn trickle_after_one_request(addr: std::net::SocketAddr) -> (RawClient, Instant) {
    let mut client = RawClient::connect(addr).await;
    client.get("/").await.unwrap();
    let head = b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: abcdefghijklmnopqrstuvwxyz0123456789";
    let first_byte = Instant::now();
    let writer = client.stream();
    for byte in head {
        // The trickle is the behaviour under test, not a synchronisation: a write fails
        // once the server has closed the connection.
        if writer.write_all(std::slice::from_ref(byte)).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (client, first_byte)
}

#[tokio::test]
async fn a_later_request_head_trickled_in_is_cut_off_while_idle_connections_stay_open() {
    let server = with_header_timeout(500).await;
    // An idle keep-alive connection, opened first: it must outlive the slow one.
    let mut idle = RawClient::connect(server.addr).await;
    idle.get("/").await.unwrap();

    let (mut loris, first_byte) = trickle_after_one_request(server.addr).await;
    loris.closed().await.unwrap();
    let cut_after = first_byte.elapsed();
    assert!(
        cut_after >= Duration::from_millis(500),
        "cut before its deadline: {cut_after:?}"
    );
    assert!(
        cut_after < Duration::from_secs(3),
        "cut long after its deadline (the 36-byte trickle lasts 1.8 s): {cut_after:?}"
    );

    // Idle for longer than the header timeout, and still served.
    let again = idle.get("/").await.unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(server.handle.phase(), Phase::Serving);
    server.handle.shutdown();
    assert!(server.report().await.is_graceful());
}

#[tokio::test]
async fn a_later_request_whose_head_stalls_is_cut_off() {
    let server = with_header_timeout(300).await;
    let mut client = RawClient::connect(server.addr).await;
    for _ in 0..3 {
        assert_eq!(client.get("/").await.unwrap().status, 200);
    }
    let started = Instant::now();
    client.send("GET / HTTP/1.1\r\nHost: te").await;
    client.closed().await.unwrap();
    let cut_after = started.elapsed();
    assert!(
        cut_after >= Duration::from_millis(300) && cut_after < Duration::from_secs(3),
        "{cut_after:?}"
    );
    server.handle.shutdown();
    assert!(server.report().await.is_graceful());
}

#[tokio::test]
async fn a_slow_request_body_is_not_cut_by_the_header_timeout() {
    let server = with_header_timeout(200).await;
    let mut client = RawClient::connect(server.addr).await;
    assert_eq!(client.get("/").await.unwrap().status, 200);
    // The head arrives whole; the body takes longer than the header timeout.
    client
        .send("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n")
        .await;
    for chunk in ["01234", "56789"] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.send(chunk).await;
    }
    let response = client.response().await.unwrap().expect("served");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "0123456789");
    server.handle.shutdown();
    assert!(server.report().await.is_graceful());
}

#[tokio::test]
async fn an_upgraded_connection_is_not_bound_by_the_header_timeout() {
    let mut server = with_header_timeout(200).await;
    let mut client = RawClient::connect(server.addr).await;
    assert_eq!(client.get("/").await.unwrap().status, 200);
    client
        .send("GET /upgrade HTTP/1.1\r\nHost: test\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
        .await;
    assert_eq!(client.response().await.unwrap().unwrap().status, 101);
    server.wait_started("upgraded").await;
    for round in 0..2 {
        // Half a frame, a pause longer than the header timeout, the other half: the
        // upgraded protocol's bytes are not an HTTP request head.
        client.stream().write_all(b"pi").await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        client.stream().write_all(b"ng").await.unwrap();
        let mut echo = [0; 4];
        tokio::io::AsyncReadExt::read_exact(client.stream(), &mut echo)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(&echo, b"ping");
    }
    server.handle.force();
    server.report().await;
}

#[tokio::test]
async fn dropping_the_serve_future_stops_accepting_and_closes_its_connections() {
    let mut server = start(config(0, 20_000)).await;
    let mut client = RawClient::connect(server.addr).await;
    client
        .send("GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
        .await;
    server.wait_started("/hang").await;

    server.report.abort(); // drops the serve future
    assert!(server.report.await.unwrap_err().is_cancelled());
    client.closed().await.unwrap();
    assert_eq!(server.handle.phase(), Phase::Forcing);
    // The listener is closed once the accept loop has taken its queue: a new connection
    // is refused (polled with a bound: the loop ends on its own task).
    let deadline = Instant::now() + BOUND;
    while tokio::net::TcpStream::connect(server.addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after the drop");
        tokio::task::yield_now().await;
    }
    while server.handle.open_connections() > 0 {
        assert!(Instant::now() < deadline, "a connection outlived the drop");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn the_connection_bounds_come_from_the_configuration() {
    // ZDD_IDLE_TIMEOUT (here through the builder) reaches the loop without a Serve setter.
    let config = zdd_core::Config::builder()
        .propagation_delay(Duration::ZERO)
        .drain_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let server = start(config).await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/").await.unwrap();
    let served = Instant::now();
    client.closed().await.unwrap();
    let idle = served.elapsed();
    assert!(
        idle >= Duration::from_millis(400) && idle < Duration::from_secs(3),
        "{idle:?}"
    );
    server.handle.shutdown();
    assert!(server.report().await.is_graceful());
}
