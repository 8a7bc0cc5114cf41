//! The promise, end to end: a rolling update of real `axum_hello` processes behind HAProxy
//! (HTTP health checks on `/health/ready`, no retries) under keep-alive load fails no
//! request, every old process exits by itself with code 0 inside its grace period, and the
//! traffic ends on the new version.
//!
//! In the same run, the same rolling update of `baseline_axum_graceful` (axum's own
//! `with_graceful_shutdown`, not zdd) is measured and printed beside it; its failures are
//! recorded, not asserted. `cargo test --test rolling_update -- --nocapture` prints the
//! table.
//!
//! The gRPC example (`grpc_hello`) goes through the same rolling update with HAProxy
//! speaking HTTP/2 on both sides (`proto h2`) under unary gRPC calls: no call fails.
//!
//! A third run checks health on zdd's admin listener instead (`check port`, with
//! `ZDD_PUBLIC_PROBES=false`), as the Kubernetes recipes do: the same promise holds.
//!
//! Needs HAProxy (`apt-get install haproxy`); skipped with a message when it is missing,
//! mandatory under `.ci/run` (`ZDD_E2E_REQUIRED=1`).

mod support;

use support::*;

#[test]
fn the_propagation_delay_covers_what_the_balancer_needs_to_notice() {
    // The balancer marks a server down after `fall` failed checks, one per interval; the
    // delay must cover that with room to spare, or requests reach a closed listener.
    let needed = CHECK_INTERVAL * CHECK_FALL;
    assert!(
        PROPAGATION >= needed * 3,
        "propagation {PROPAGATION:?} vs detection {needed:?}"
    );
}

/// What a rolling update did.
struct Outcome {
    tally: zdd_check::Summary,
    checker: serde_json::Value,
    exits: Vec<Exited>,
}

/// Where the balancer checks health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Checks {
    /// `/health/ready` on the traffic port.
    Public,
    /// `/health/ready` on each instance's admin listener; none on the traffic port.
    Admin,
}

/// Replaces two `v1` instances of `server` by two `v2` ones, one at a time, behind HAProxy,
/// under load.
///
/// `tls_hello` is served over HTTPS (a fresh self-signed certificate), HAProxy in `mode tcp`
/// passes TLS through, and both load generators trust that certificate.
async fn rolling_update(mode: Mode, server: &str, checks: Checks) -> Option<Outcome> {
    let haproxy_bin = haproxy()?;
    let binary = example(server);
    let certificates = TempDir::new();
    let tls = (server == "tls_hello").then(|| self_signed(&certificates.0));
    let admin_ports: Vec<u16> = match checks {
        Checks::Public => Vec::new(),
        Checks::Admin => (0..4).map(|_| free_port()).collect(),
    };
    let env = |i: usize| -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = ZDD_ENV
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(admin) = admin_ports.get(i) {
            env.push(("ZDD_ADMIN_ADDR".to_owned(), format!("127.0.0.1:{admin}")));
            env.push(("ZDD_PUBLIC_PROBES".to_owned(), "false".to_owned()));
        }
        if let Some((cert, key)) = &tls {
            env.push(("TLS_CERT".to_owned(), cert.display().to_string()));
            env.push(("TLS_KEY".to_owned(), key.display().to_string()));
        }
        env
    };
    let start = |name: &str, version: &str, port: u16, i: usize| {
        let env = env(i);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Instance::start(&binary, name, version, port, &env)
    };
    let old: Vec<Instance> = ["old-1", "old-2"]
        .iter()
        .enumerate()
        .map(|(i, n)| start(n, "v1", free_port(), i))
        .collect();
    let new_ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let servers = [
        ("old-1", old[0].port, 100),
        ("old-2", old[1].port, 100),
        ("new-1", new_ports[0], 100),
        ("new-2", new_ports[1], 100),
    ];
    let haproxy = Haproxy::start_checking(&haproxy_bin, mode, &servers, &admin_ports);
    haproxy.wait_until("old up, new down", |s| {
        s.get("old-1").is_some_and(|v| v == "UP")
            && s.get("old-2").is_some_and(|v| v == "UP")
            && s.get("new-1").is_some_and(|v| v.starts_with("DOWN"))
            && s.get("new-2").is_some_and(|v| v.starts_with("DOWN"))
    });

    let (checker, load) = match &tls {
        None if mode == Mode::Grpc => (
            Checker::start_on(
                &format!("http://127.0.0.1:{}{GRPC_METHOD}", haproxy.port),
                &["--grpc"],
            ),
            load_grpc(haproxy.port, 8),
        ),
        None => (Checker::start(haproxy.port), load(haproxy.port, 8)),
        Some((cert, _)) => {
            let cacert = cert.display().to_string();
            (
                Checker::start_on(
                    &format!("https://localhost:{}/", haproxy.port),
                    &["--cacert", &cacert],
                ),
                load_tls(haproxy.port, 8, cert),
            )
        }
    };
    until("traffic flows", || load.ok() > 200).await;

    let mut exits = Vec::new();
    let mut replacements = Vec::new();
    for (i, (old, (new_name, new_port))) in old
        .into_iter()
        .zip([("new-1", new_ports[0]), ("new-2", new_ports[1])])
        .enumerate()
    {
        // The replacement starts on its own port with the new version and becomes ready.
        replacements.push(start(new_name, "v2", new_port, 2 + i));
        haproxy.wait_for(new_name, "UP");
        let before = load.ok();
        until("the new instance takes traffic", || {
            load.ok() > before + 200
        })
        .await;

        // The old one is terminated and must leave by itself.
        let name = old.name.clone();
        old.signal("TERM");
        let exited = tokio::task::spawn_blocking(move || old.wait())
            .await
            .unwrap();
        haproxy.wait_until(&format!("{name} down"), |s| {
            s.get(&name).is_some_and(|v| v.starts_with("DOWN"))
        });
        exits.push(exited);
    }
    let before = load.ok();
    until("traffic continues on the new version", || {
        load.ok() > before + 500
    })
    .await;
    let tally = load.stop().await;
    let checker = checker.stop();
    drop(replacements);
    println!(
        "| rolling, {mode:?} mode, checks {checks:?} | {server} | {} | {} | {:?} |",
        tally.total(),
        tally.failed(),
        tally.failures()
    );
    println!(
        "| rolling, {mode:?} mode (zdd-check) | {server} | {} | {} | {} |",
        checker["total"], checker["failed"], checker["failures"]
    );
    Some(Outcome {
        tally,
        checker,
        exits,
    })
}

/// Runs zdd and the baseline through the same rolling update and holds zdd to zero.
async fn zdd_against_the_baseline(mode: Mode) {
    let Some(outcome) = rolling_update(mode, "axum_hello", Checks::Public).await else {
        return;
    };
    let baseline = rolling_update(mode, "baseline_axum_graceful", Checks::Public)
        .await
        .expect("HAProxy was found above");
    eprintln!(
        "{mode:?} rolling update: zdd {} ok, failures {:?}; baseline {} ok, failures {:?}",
        outcome.tally.ok(),
        outcome.tally.failures(),
        baseline.tally.ok(),
        baseline.tally.failures()
    );
    assert_nothing_failed(outcome);
}

/// Every old process left gracefully, and neither load generator saw a failure.
fn assert_nothing_failed(outcome: Outcome) {
    let Outcome {
        tally,
        checker,
        exits,
    } = outcome;
    assert_graceful_exits(&exits);
    assert_checker_clean(&checker);
    assert_eq!(
        tally.failed(),
        0,
        "failed requests: {:?}; first: {:#?}",
        tally.failures(),
        tally.first_errors()
    );
    assert!(tally.versions().get("v1").copied().unwrap_or(0) > 0);
    assert!(
        tally.versions().get("v2").copied().unwrap_or(0) > 500,
        "{:?}",
        tally.versions()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_behind_haproxy_http_mode_fails_nothing() {
    zdd_against_the_baseline(Mode::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_behind_haproxy_tcp_mode_fails_nothing() {
    zdd_against_the_baseline(Mode::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_with_health_checks_on_the_admin_port_fails_nothing() {
    let Some(outcome) = rolling_update(Mode::Http, "axum_hello", Checks::Admin).await else {
        return;
    };
    eprintln!(
        "rolling update, checks on the admin port: {} ok, failures {:?}",
        outcome.tally.ok(),
        outcome.tally.failures()
    );
    assert_nothing_failed(outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_over_tls_fails_nothing() {
    // HAProxy passes TLS through (`mode tcp`) and checks the admin port's readiness.
    let Some(outcome) = rolling_update(Mode::Tcp, "tls_hello", Checks::Admin).await else {
        return;
    };
    eprintln!(
        "rolling update over TLS: {} ok, failures {:?}",
        outcome.tally.ok(),
        outcome.tally.failures()
    );
    assert_nothing_failed(outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_of_a_grpc_service_fails_no_call() {
    // HTTP/2 from the clients to HAProxy and from HAProxy to each instance; every old
    // instance sends GOAWAY at Unready and finishes its calls.
    let Some(outcome) = rolling_update(Mode::Grpc, "grpc_hello", Checks::Public).await else {
        return;
    };
    eprintln!(
        "rolling update, gRPC: {} calls ok, failures {:?}",
        outcome.tally.ok(),
        outcome.tally.failures()
    );
    assert_nothing_failed(outcome);
}
