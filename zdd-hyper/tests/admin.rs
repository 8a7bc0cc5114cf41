//! The admin listener on real sockets: open through the drain while the public listener is
//! closed, never work to drain, state changes only there, and a clear stop when it cannot
//! be bound.

mod support;

use std::{io, net::SocketAddr, time::Duration};

use support::*;
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
};
use zdd_core::{Config, Phase, Trigger};

fn with_admin(config: zdd_core::ConfigBuilder, admin: SocketAddr) -> Config {
    config
        .admin_addr(admin)
        .drain_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A free port on loopback, for a configured (not given) admin address.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn admin_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// One request on a new connection.
async fn once(addr: SocketAddr, method: &str, path: &str) -> io::Result<RawResponse> {
    let mut client = RawClient::try_connect(addr).await?;
    client
        .send(&format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n"
        ))
        .await;
    client
        .response()
        .await?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed"))
}

/// Waits (bounded) until connecting to `addr` is refused.
async fn refused(addr: SocketAddr) {
    tokio::time::timeout(BOUND, async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the listener never closed");
}

#[tokio::test]
async fn probes_answer_on_new_and_kept_admin_connections_through_the_drain() {
    let (admin, admin_addr) = admin_listener().await;
    let mut server = start_with(config(0, 5_000), move |serve| serve.admin_listener(admin)).await;
    let mut kept = RawClient::connect(admin_addr).await;
    assert_eq!(kept.get("/health/ready").await.unwrap().status, 200);

    let mut slow = RawClient::connect(server.addr).await;
    slow.send("GET /slow HTTP/1.1\r\nHost: test\r\n\r\n").await;
    server.wait_started("/slow").await;
    server.handle.shutdown();
    server.handle.draining().await;
    refused(server.addr).await;

    // The public listener is closed; the admin listener answers, on new connections and on
    // the one kept from before.
    for _ in 0..20 {
        let live = once(admin_addr, "GET", "/health/live").await.unwrap();
        assert_eq!(live.status, 200, "{live:?}");
        assert!(live.body.contains(r#""phase":"draining""#), "{live:?}");
        let ready = once(admin_addr, "GET", "/health/ready").await.unwrap();
        assert_eq!(ready.status, 503, "{ready:?}");
    }
    assert_eq!(kept.get("/health/live").await.unwrap().status, 200);

    server.release.notify_one();
    assert_eq!(slow.response().await.unwrap().unwrap().body, "slow done");
    let report = server.report().await;
    assert!(report.is_graceful(), "{report}");
    // The report exists: the admin listener is closed last, the kept connection with it.
    refused(admin_addr).await;
    kept.closed().await.unwrap();
}

#[tokio::test]
async fn a_flood_of_idle_admin_connections_is_not_work_to_drain() {
    let (admin, admin_addr) = admin_listener().await;
    let server = start_with(config(0, 5_000), move |serve| serve.admin_listener(admin)).await;
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(admin_addr).await.unwrap());
    }
    // Past the limit, each new connection closes the oldest: a probe is answered long
    // before the idle connections' own 5 s timeout.
    let mut client = RawClient::connect(admin_addr).await;
    let live = tokio::time::timeout(Duration::from_secs(3), client.get("/health/live"))
        .await
        .expect("the probe waited for idle admin connections");
    assert_eq!(live.unwrap().status, 200);
    // The oldest was closed to make room.
    let mut byte = [0; 1];
    let read = tokio::time::timeout(BOUND, idle[0].read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");

    server.handle.shutdown();
    let report = server.report().await;
    assert!(report.is_graceful(), "{report}");
    assert_eq!(report.connections_graceful(), 0, "{report}");
    assert_eq!(report.connections_forced(), 0, "{report}");
    // Idle admin connections would close after 5 s; the drain did not wait for them.
    assert!(
        report.time_in(Phase::Draining).unwrap() < Duration::from_secs(4),
        "{report}"
    );
}

#[tokio::test]
async fn state_changes_are_not_reachable_on_the_public_listener() {
    let (admin, admin_addr) = admin_listener().await;
    let server = start_with(config(0, 5_000), move |serve| serve.admin_listener(admin)).await;
    // The public paths reach the application (which answers "ok" to anything), not zdd.
    for (method, path) in [
        ("GET", "/prestop"),
        ("POST", "/prestop"),
        ("POST", "/maintenance"),
        ("DELETE", "/maintenance"),
    ] {
        let answer = once(server.addr, method, path).await.unwrap();
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "ok"),
            "{method} {path}"
        );
    }
    assert_eq!(server.handle.phase(), Phase::Serving);
    assert!(!server.handle.is_marked_not_ready());

    // On the admin listener, maintenance flips readiness on both listeners.
    let ready = |addr| async move { once(addr, "GET", "/health/ready").await.unwrap().status };
    assert_eq!(
        once(admin_addr, "POST", "/maintenance")
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        [ready(server.addr).await, ready(admin_addr).await],
        [503, 503]
    );
    assert_eq!(
        once(admin_addr, "DELETE", "/maintenance")
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        [ready(server.addr).await, ready(admin_addr).await],
        [200, 200]
    );
    let unknown = once(admin_addr, "GET", "/").await.unwrap();
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (404, r#"{"error":"not found"}"#)
    );

    server.handle.shutdown();
    assert!(server.report().await.is_graceful());
}

#[tokio::test]
async fn the_configured_address_is_bound_and_public_probes_can_be_turned_off() {
    let admin_addr = free_addr();
    let config = with_admin(Config::builder().public_probes(false), admin_addr);
    let server = start(config).await;
    // Bound when the server starts running.
    tokio::time::timeout(BOUND, async {
        while TcpStream::connect(admin_addr).await.is_err() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the admin listener was never bound");
    let on_admin = once(admin_addr, "GET", "/health/live").await.unwrap();
    assert_eq!(on_admin.status, 200);
    assert_eq!(
        on_admin.header("content-type"),
        Some("application/health+json")
    );
    // The public listener leaves the probe paths to the application.
    let on_public = once(server.addr, "GET", "/health/live").await.unwrap();
    assert_eq!((on_public.status, on_public.body.as_str()), (200, "ok"));

    // preStop over the wire: answered once the propagation delay (0) is over.
    let prestop = once(admin_addr, "GET", "/prestop").await.unwrap();
    assert_eq!(prestop.status, 200, "{prestop:?}");
    let report = server.report().await;
    assert_eq!(report.trigger(), Trigger::PreStop);
    assert!(report.is_graceful(), "{report}");
}

#[tokio::test]
async fn an_admin_port_in_use_stops_the_server_before_it_turns_ready() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = with_admin(Config::builder(), taken.local_addr().unwrap());
    let server = start(config).await;
    let public = server.addr;
    let report = server.report().await;
    assert_eq!(report.trigger(), Trigger::StartupFailed, "{report}");
    assert_eq!(report.time_in(Phase::Serving), None, "{report}");
    assert_eq!(report.exit_code(), 1);
    refused(public).await;
}

#[tokio::test]
async fn the_public_listener_s_own_address_is_refused_for_the_admin_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = listener.local_addr().unwrap();
    let config = with_admin(Config::builder(), public);
    let server = start_on(listener, config, |serve| serve);
    let report = server.report().await;
    assert_eq!(report.trigger(), Trigger::StartupFailed, "{report}");
    assert_eq!(report.time_in(Phase::Serving), None, "{report}");
}
