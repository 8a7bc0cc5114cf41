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

/// Replaces two `v1` instances of `server` by two `v2` ones, one at a time, behind HAProxy,
/// under load.
async fn rolling_update(mode: Mode, server: &str) -> Option<Outcome> {
    let haproxy_bin = haproxy()?;
    let binary = example(server);
    let old: Vec<Instance> = ["old-1", "old-2"]
        .iter()
        .map(|n| Instance::start(&binary, n, "v1", free_port(), ZDD_ENV))
        .collect();
    let new_ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let servers = [
        ("old-1", old[0].port, 100),
        ("old-2", old[1].port, 100),
        ("new-1", new_ports[0], 100),
        ("new-2", new_ports[1], 100),
    ];
    let haproxy = Haproxy::start(&haproxy_bin, mode, &servers);
    haproxy.wait_until("old up, new down", |s| {
        s.get("old-1").is_some_and(|v| v == "UP")
            && s.get("old-2").is_some_and(|v| v == "UP")
            && s.get("new-1").is_some_and(|v| v.starts_with("DOWN"))
            && s.get("new-2").is_some_and(|v| v.starts_with("DOWN"))
    });

    let checker = Checker::start(haproxy.port);
    let load = load(haproxy.port, 8);
    until("traffic flows", || load.ok() > 200).await;

    let mut exits = Vec::new();
    let mut replacements = Vec::new();
    for (old, (new_name, new_port)) in old
        .into_iter()
        .zip([("new-1", new_ports[0]), ("new-2", new_ports[1])])
    {
        // The replacement starts on its own port with the new version and becomes ready.
        replacements.push(Instance::start(&binary, new_name, "v2", new_port, ZDD_ENV));
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
        "| rolling, {mode:?} mode | {server} | {} | {} | {:?} |",
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
    let Some(Outcome {
        tally,
        checker,
        exits,
    }) = rolling_update(mode, "axum_hello").await
    else {
        return;
    };
    let baseline = rolling_update(mode, "baseline_axum_graceful")
        .await
        .expect("HAProxy was found above");
    eprintln!(
        "{mode:?} rolling update: zdd {} ok, failures {:?}; baseline {} ok, failures {:?}",
        tally.ok(),
        tally.failures(),
        baseline.tally.ok(),
        baseline.tally.failures()
    );
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
