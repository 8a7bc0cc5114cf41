//! Blue-green cut-over and canary release of real `axum_hello` processes behind HAProxy,
//! under keep-alive load with no retries: no request fails, every old process leaves by
//! itself with code 0 inside its grace period, and the traffic ends on the new version.
//!
//! Needs HAProxy (`apt-get install haproxy`); skipped with a message when it is missing,
//! mandatory under `.ci/run` (`ZDD_E2E_REQUIRED=1`).

mod support;

use support::*;

/// Prints the run's row, then holds it to the promise: old processes left gracefully, no
/// failure in either load, and no old-version answer after the old set exited.
fn hold_to_the_promise(
    label: &str,
    tally: &zdd_check::Summary,
    checked: &serde_json::Value,
    exits: &[Exited],
    v1_after_exit: u64,
) {
    println!(
        "| {label} | axum_hello | {} | {} | {:?} |",
        tally.total(),
        tally.failed(),
        tally.failures()
    );
    assert_graceful_exits(exits);
    assert_checker_clean(checked);
    assert_eq!(
        tally.failed(),
        0,
        "failed requests: {:?}; first: {:#?}",
        tally.failures(),
        tally.first_errors()
    );
    assert_eq!(
        tally.versions().get("v1").copied(),
        Some(v1_after_exit),
        "v1 answered after the old set exited"
    );
}

/// A full green set is started and ready (at weight 0), traffic is switched to it at the
/// balancer, then the blue set is terminated.
async fn blue_green(mode: Mode) {
    let Some(haproxy_bin) = haproxy() else { return };
    let binary = example("axum_hello");
    let blue: Vec<Instance> = (1..=2)
        .map(|i| Instance::start(&binary, &format!("blue-{i}"), "v1", free_port(), ZDD_ENV))
        .collect();
    let green: Vec<Instance> = (1..=2)
        .map(|i| Instance::start(&binary, &format!("green-{i}"), "v2", free_port(), ZDD_ENV))
        .collect();
    let servers: Vec<(&str, u16, u32)> = blue
        .iter()
        .map(|b| (b.name.as_str(), b.port, 100))
        .chain(green.iter().map(|g| (g.name.as_str(), g.port, 0)))
        .collect();
    let haproxy = Haproxy::start(&haproxy_bin, mode, &servers);
    haproxy.wait_until("every server up", |s| {
        s.len() == 4 && s.values().all(|v| v == "UP")
    });

    let checker = Checker::start(haproxy.port);
    let load = load(haproxy.port, 8);
    until("traffic flows to blue", || load.ok() > 300).await;
    assert_eq!(
        load.version_count("v2"),
        0,
        "green took traffic at weight 0"
    );

    // The cut-over, at the balancer.
    for instance in &green {
        haproxy.set_weight(&instance.name, 100);
    }
    for instance in &blue {
        haproxy.set_weight(&instance.name, 0);
    }
    // In mode http the next requests go to green at once. In mode tcp, as with kube-proxy,
    // kept-alive connections stay on blue until blue closes them: that is zdd's job below.
    if mode == Mode::Http {
        let before = load.version_count("v2");
        until("green takes the traffic", || {
            load.version_count("v2") > before + 300
        })
        .await;
    }

    // Blue is terminated while kept-alive clients may still be on it (always, in tcp mode).
    let exits = terminate(blue).await;
    let v1_after_exit = load.version_count("v1");
    let before = load.version_count("v2");
    until("traffic continues on green", || {
        load.version_count("v2") > before + 500
    })
    .await;
    let tally = load.stop().await;
    let checked = checker.stop();
    drop(green);

    hold_to_the_promise(
        &format!("blue-green, {mode:?} mode"),
        &tally,
        &checked,
        &exits,
        v1_after_exit,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_cut_over_behind_haproxy_http_mode_fails_nothing() {
    blue_green(Mode::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_cut_over_behind_haproxy_tcp_mode_fails_nothing() {
    blue_green(Mode::Tcp).await;
}

/// One new-version instance at a small weight takes its share of the requests, then is
/// promoted: the new version is rolled out and the old instances are terminated one by one.
///
/// In `mode http` only: in `mode tcp` HAProxy balances connections, not requests, so a
/// small weight over eight kept-alive connections says nothing about the request split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_then_promotion_behind_haproxy_fails_nothing() {
    let Some(haproxy_bin) = haproxy() else { return };
    let binary = example("axum_hello");
    let old: Vec<Instance> = (1..=2)
        .map(|i| Instance::start(&binary, &format!("old-{i}"), "v1", free_port(), ZDD_ENV))
        .collect();
    let canary = Instance::start(&binary, "canary", "v2", free_port(), ZDD_ENV);
    let second_port = free_port();
    let servers = [
        (old[0].name.as_str(), old[0].port, 100),
        (old[1].name.as_str(), old[1].port, 100),
        ("canary", canary.port, 10),
        ("new-2", second_port, 100),
    ];
    let haproxy = Haproxy::start(&haproxy_bin, Mode::Http, &servers);
    haproxy.wait_until("old and canary up, new-2 down", |s| {
        ["old-1", "old-2", "canary"]
            .iter()
            .all(|n| s.get(*n).is_some_and(|v| v == "UP"))
            && s.get("new-2").is_some_and(|v| v.starts_with("DOWN"))
    });

    let checker = Checker::start(haproxy.port);
    let load = load(haproxy.port, 8);
    until("traffic flows", || load.ok() > 300).await;
    // The split, as the checker reports it: weights 100 + 100 + 10 give the canary 10/210,
    // about 4.8 % of the requests.
    let port = haproxy.port;
    let split = tokio::task::spawn_blocking(move || Checker::run(port, 2_000))
        .await
        .unwrap();
    assert_eq!(split["failed"], 0, "{split}");
    let v1 = split["versions"]["v1"].as_f64().unwrap_or(0.0);
    let v2 = split["versions"]["v2"].as_f64().unwrap_or(0.0);
    let share = v2 / (v1 + v2);
    assert!(
        (0.02..0.10).contains(&share),
        "canary share {share:.3} in {split}"
    );

    // Promotion: the canary gets a full weight, a second new instance joins, the old ones go.
    haproxy.set_weight("canary", 100);
    let second = Instance::start(&binary, "new-2", "v2", second_port, ZDD_ENV);
    haproxy.wait_for("new-2", "UP");
    let mut exits = Vec::new();
    for instance in old {
        exits.extend(terminate(vec![instance]).await);
    }
    let v1_after_exit = load.version_count("v1");
    let before = load.ok();
    until("traffic continues on the new version", || {
        load.ok() > before + 500
    })
    .await;
    let tally = load.stop().await;
    let checked = checker.stop();
    drop((canary, second));

    hold_to_the_promise(
        &format!("canary {:.1} % then promotion, Http mode", share * 100.0),
        &tally,
        &checked,
        &exits,
        v1_after_exit,
    );
}

/// zdd-check as the canary gate, twice behind HAProxy: a healthy new version is promoted
/// (exit 0); a new version that fails 5 % of its requests on purpose is rolled back (exit
/// 1), its weight is set back to 0, and the traffic returns to the stable version, which
/// failed nothing throughout. Both verdicts are printed (`-- --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_gate_promotes_a_healthy_version_and_rolls_back_a_failing_one() {
    let Some(haproxy_bin) = haproxy() else { return };
    let binary = example("axum_hello");
    let stable: Vec<Instance> = (1..=2)
        .map(|i| Instance::start(&binary, &format!("stable-{i}"), "v1", free_port(), ZDD_ENV))
        .collect();
    let healthy = Instance::start(&binary, "canary", "v2", free_port(), ZDD_ENV);
    let mut failing_env = ZDD_ENV.to_vec();
    failing_env.push(("FAIL_PERCENT", "5"));
    let failing = Instance::start(&binary, "canary-bad", "v2", free_port(), &failing_env);
    let servers = [
        ("stable-1", stable[0].port, 100),
        ("stable-2", stable[1].port, 100),
        ("canary", healthy.port, 10),
        ("canary-bad", failing.port, 0),
    ];
    let haproxy = Haproxy::start(&haproxy_bin, Mode::Http, &servers);
    haproxy.wait_until("every instance up", |s| {
        ["stable-1", "stable-2", "canary", "canary-bad"]
            .iter()
            .all(|n| s.get(*n).is_some_and(|v| v == "UP"))
    });
    let load = load(haproxy.port, 8);
    until("traffic flows", || load.ok() > 300).await;

    // The canary stage, judged on the canary's answers only (about 4.8 % of the traffic).
    let url = format!("http://127.0.0.1:{}/", haproxy.port);
    let gate = move |url: String| {
        tokio::task::spawn_blocking(move || {
            Checker::judge(
                &url,
                &[
                    "--version",
                    "v2",
                    "--max-error-rate",
                    "1%",
                    "--max-p95",
                    "1000ms",
                    "--min-requests",
                    "150",
                    "--duration",
                    "6s",
                    "--concurrency",
                    "8",
                ],
            )
        })
    };
    let (code, promoted) = gate(url.clone()).await.unwrap();
    println!("healthy canary, verdict: {}", promoted["verdict"]);
    assert_eq!(code, Some(0), "{promoted}");
    assert_eq!(promoted["verdict"]["decision"], "promote", "{promoted}");
    assert_eq!(promoted["verdict"]["failed"], 0, "{promoted}");

    // A bad build takes the canary's place.
    haproxy.set_weight("canary", 0);
    haproxy.set_weight("canary-bad", 10);
    let (code, rolled_back) = gate(url).await.unwrap();
    println!("failing canary, verdict: {}", rolled_back["verdict"]);
    assert_eq!(code, Some(1), "{rolled_back}");
    let verdict = &rolled_back["verdict"];
    assert_eq!(verdict["decision"], "roll_back", "{rolled_back}");
    let rate = verdict["error_rate"].as_f64().unwrap();
    assert!(
        (0.03..0.08).contains(&rate),
        "the canary fails 5 %: {verdict}"
    );

    // Roll back: the canary's weight back to 0, and every request goes to the stable set.
    haproxy.set_weight("canary-bad", 0);
    let port = haproxy.port;
    let after = tokio::task::spawn_blocking(move || Checker::run(port, 2_000))
        .await
        .unwrap();
    assert_eq!(after["failed"], 0, "{after}");
    assert_eq!(
        after["versions"]["v1"], 2_000,
        "only the stable version answers: {after}"
    );

    let exits = terminate(vec![healthy, failing]).await;
    let tally = load.stop().await;
    drop(stable);
    assert_graceful_exits(&exits);
    // The stable side failed nothing; every failure is the bad canary's, on purpose.
    let by_version = tally.by_version();
    assert_eq!(by_version["v1"].failed, 0, "{:?}", by_version);
    assert_eq!(
        by_version["v2"].failed,
        tally.failed(),
        "{:?}",
        tally.failures()
    );
    println!(
        "| canary gate: promote, then roll back (5 % failing) | axum_hello | {} | {} (all from the failing canary) | {:?} |",
        tally.total(),
        tally.failed(),
        tally.failures()
    );
}
