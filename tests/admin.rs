//! The admin listener in real example processes: probes through a long drain on new
//! connections (with the public port beside it, for comparison), preStop then `SIGTERM`,
//! metrics during the drain, and the operator's mistakes.

mod support;

use std::{
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use support::*;

/// Polls `path` (bounded, real clock: an end-to-end test) until it answers `status`.
async fn wait_for(port: u16, path: &str, status: u16) {
    let started = Instant::now();
    while request(port, "GET", path).await.ok().map(|(s, _)| s) != Some(status) {
        assert!(started.elapsed() < BOUND, "{path} never answered {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn admin_env(admin: u16, extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![("ZDD_ADMIN_ADDR", format!("127.0.0.1:{admin}"))];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

fn start(name: &str, port: u16, env: &[(&'static str, String)]) -> Instance {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Instance::start(&example(name), name, "v1", port, &env)
}

/// Probes sent on new connections during a drain, and how they were answered.
#[derive(Debug, Default)]
struct Tally {
    sent: u32,
    answered: u32,
    refused: u32,
    statuses: Vec<u16>,
}

impl Tally {
    async fn probe(&mut self, port: u16, path: &str) {
        self.sent += 1;
        match request(port, "GET", path).await {
            Ok((status, _)) => {
                self.answered += 1;
                self.statuses.push(status);
            }
            Err(_) => self.refused += 1,
        }
    }
}

#[tokio::test]
async fn probes_answer_on_the_admin_port_through_a_long_drain_and_not_on_the_public_one() {
    let (port, admin) = (free_port(), free_port());
    let env = admin_env(
        admin,
        &[
            ("ZDD_PROPAGATION_DELAY", "1s"),
            ("ZDD_DRAIN_TIMEOUT", "20s"),
            ("ZDD_GRACE_PERIOD", "30s"),
        ],
    );
    let server = start("axum_hello", port, &env);
    wait_for(admin, "/health/ready", 200).await;
    // Sent before the signal: even if it arrives after, the listener still accepts while
    // unready, so the drain has it in flight.
    let slow = tokio::spawn(async move { request(port, "GET", "/slow?ms=10000").await });
    server.signal("TERM");
    server.printed("shutdown triggered").await;

    let (mut live, mut ready, mut public) = (Tally::default(), Tally::default(), Tally::default());
    let mut reported_after = None;
    while reported_after.is_none() {
        // Whether the report existed before this round's probes were sent.
        let reported = server
            .output()
            .iter()
            .any(|l| l.contains("shutdown complete"));
        live.probe(admin, "/health/live").await;
        ready.probe(admin, "/health/ready").await;
        public.probe(port, "/health/live").await;
        if reported {
            reported_after = Some(live.sent);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.0, 200, "{slow:?}");
    let exited = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert_eq!(exited.code, Some(0), "{:#?}", exited.output);

    println!(
        "probes on new connections during the drain (about 10 s): admin /health/live {}/{} answered, /health/ready {}/{} answered; public /health/live {}/{} answered, {} refused",
        live.answered,
        live.sent,
        ready.answered,
        ready.sent,
        public.answered,
        public.sent,
        public.refused
    );
    // The last round may have come after the report, when the admin listener closes.
    let before_report = (live.sent - 1) as usize;
    assert!(before_report >= 80, "too few rounds: {live:?}");
    assert!(
        live.statuses.len() >= before_report
            && live.statuses[..before_report].iter().all(|s| *s == 200),
        "liveness on the admin port: {live:?}"
    );
    assert!(
        ready.statuses.len() >= before_report
            && ready.statuses[..before_report].iter().all(|s| *s == 503),
        "readiness on the admin port: {ready:?}"
    );
    // Documented: without an admin listener, probes on new connections are refused once
    // the public listener closes at the drain.
    assert!(public.refused as usize >= before_report / 2, "{public:?}");
}

#[tokio::test]
async fn prestop_then_sigterm_waits_the_propagation_delay_once() {
    let (port, admin) = (free_port(), free_port());
    let env = admin_env(
        admin,
        &[
            ("ZDD_PROPAGATION_DELAY", "2s"),
            ("ZDD_DRAIN_TIMEOUT", "10s"),
        ],
    );
    let server = start("axum_hello", port, &env);
    wait_for(admin, "/health/ready", 200).await;
    // Work in flight, so the process is still draining when the kubelet's SIGTERM comes.
    let slow = tokio::spawn(async move { request(port, "GET", "/slow?ms=4000").await });

    let asked = Instant::now();
    let (status, body) = request(admin, "GET", "/prestop").await.unwrap();
    let waited = asked.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        waited >= Duration::from_secs(2)
            && waited < Duration::from_secs(2) + Duration::from_millis(1500),
        "the preStop answer came after {waited:?}, not after the 2 s propagation delay"
    );
    assert!(body.contains(r#""phase":"draining""#), "{body}");
    server.signal("TERM");

    assert_eq!(slow.await.unwrap().unwrap().0, 200);
    let exited = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert_eq!(exited.code, Some(0), "{:#?}", exited.output);
    let printed = exited.output.join("\n");
    let count = |what: &str, needle: &str| {
        exited
            .output
            .iter()
            .filter(|l| l.contains(what) && l.contains(needle))
            .count()
    };
    assert_eq!(count("phase changed", "phase=\"unready\""), 1, "{printed}");
    assert_eq!(count("phase changed", "phase=\"draining\""), 1, "{printed}");
    assert_eq!(
        count("shutdown triggered", "trigger=\"pre_stop\""),
        1,
        "{printed}"
    );
    assert_eq!(count("shutdown triggered", ""), 1, "{printed}");
    assert!(
        printed.contains("preStop requested on the admin listener"),
        "{printed}"
    );
    assert!(printed.contains("trigger pre_stop"), "report: {printed}");
    // The report's unready phase is the one propagation delay.
    let unready = exited
        .output
        .iter()
        .find_map(|l| l.trim().strip_prefix("unready"))
        .expect("the report lists the unready phase");
    let unready = parse_debug_duration(unready.trim()).unwrap();
    assert!(
        unready >= Duration::from_secs(2) && unready < Duration::from_secs(3),
        "unready for {unready:?}: {printed}"
    );
}

/// `Duration`'s `Debug` text (`2.001234567s`, `950ms`).
fn parse_debug_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| text.split_at(i))
        .ok_or_else(|| text.to_owned())?;
    let number: f64 = number.parse().map_err(|_| text.to_owned())?;
    let seconds = match unit {
        "s" => number,
        "ms" => number / 1e3,
        "µs" | "us" => number / 1e6,
        "ns" => number / 1e9,
        _ => return Err(text.to_owned()),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[tokio::test]
async fn prometheus_serves_metrics_on_the_admin_port_during_the_drain() {
    let (port, admin) = (free_port(), free_port());
    let env = admin_env(
        admin,
        &[
            ("ZDD_PROPAGATION_DELAY", "500ms"),
            ("ZDD_DRAIN_TIMEOUT", "10s"),
        ],
    );
    let server = start("prometheus", port, &env);
    wait_for(admin, "/health/ready", 200).await;
    // Not on the public port: the application answers 404 there.
    assert_eq!(request(port, "GET", "/metrics").await.unwrap().0, 404);

    let slow = tokio::spawn(async move { request(port, "GET", "/slow").await });
    server.signal("TERM");
    server.printed("listener closed").await;
    assert!(
        request(port, "GET", "/").await.is_err(),
        "the public listener is closed"
    );
    let (status, metrics) = request(admin, "GET", "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("zdd_phase 3"), "draining: {metrics}");
    assert_eq!(slow.await.unwrap().unwrap().0, 200);
    let exited = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert_eq!(exited.code, Some(0), "{:#?}", exited.output);
}

/// Runs the example to its end (bounded) without waiting for it to listen.
fn run_to_exit(name: &str, port: u16, env: &[(&str, String)]) -> (Option<i32>, String) {
    let mut command = Command::new(example(name));
    command
        .env("PORT", port.to_string())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    run_to_end(command)
}

#[test]
fn bad_admin_settings_stop_the_service_with_a_message_naming_them() {
    let port = free_port();
    let (code, output) = run_to_exit(
        "axum_hello",
        port,
        &[("ZDD_ADMIN_ADDR", "localhost:9000".to_owned())],
    );
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains(
            r#"ZDD_ADMIN_ADDR: invalid value "localhost:9000": expected an IP address and port"#
        ),
        "{output}"
    );

    let (code, output) = run_to_exit(
        "axum_hello",
        port,
        &[("ZDD_PUBLIC_PROBES", "false".to_owned())],
    );
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("ZDD_PUBLIC_PROBES=false needs ZDD_ADMIN_ADDR"),
        "{output}"
    );

    // In use: the server stops before it ever turns ready.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let in_use: SocketAddr = taken.local_addr().unwrap();
    let (code, output) = run_to_exit(
        "axum_hello",
        port,
        &[("ZDD_ADMIN_ADDR", in_use.to_string())],
    );
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains(&format!(
            "ZDD_ADMIN_ADDR={in_use}: cannot bind the admin listener"
        )),
        "{output}"
    );
    assert!(output.contains("trigger startup_failed"), "{output}");
    assert!(!output.contains("phase=\"serving\""), "{output}");

    // The public listener's own port.
    let (code, output) = run_to_exit(
        "axum_hello",
        port,
        &[("ZDD_ADMIN_ADDR", format!("127.0.0.1:{port}"))],
    );
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("is the public listener's address"),
        "{output}"
    );
}
