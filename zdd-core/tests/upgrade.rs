//! In-place upgrade requests: one at a time, refused without a server or once shutting
//! down, failures counted, and a successful one drains with no propagation delay.

use std::time::Duration;

use zdd_core::{Config, Lifecycle, Phase, Trigger};

#[tokio::test(start_paused = true)]
async fn upgrades_go_one_at_a_time_and_the_one_that_takes_over_drains_at_once() {
    let config = Config::builder()
        .propagation_delay(Duration::from_secs(5))
        .build()
        .unwrap();
    let lifecycle = Lifecycle::new(config);
    let handle = lifecycle.handle();
    let sequence = tokio::spawn(lifecycle.run());
    handle.reached(Phase::Serving).await;

    assert!(!handle.upgrade(), "no server takes requests yet");
    let mut requests = handle.upgrade_requests();
    assert!(handle.upgrade());
    assert!(!handle.upgrade(), "one is in progress");
    requests.next().await;

    requests.failed(&"the new process exited");
    assert_eq!(
        handle.phase(),
        Phase::Serving,
        "a failed upgrade changes nothing"
    );
    assert!(handle.upgrade(), "a later request may try again");
    requests.next().await;
    requests.succeeded(4242);

    let report = sequence.await.unwrap();
    assert_eq!(report.trigger(), Trigger::Upgrade);
    assert_eq!(report.time_in(Phase::Unready), Some(Duration::ZERO));
    assert_eq!(report.upgrades_failed(), 1);
    assert!(report.is_graceful());
    assert!(
        report.to_string().contains("upgrades failed: 1"),
        "{report}"
    );
    assert!(!handle.upgrade(), "shutting down");
}

#[tokio::test(start_paused = true)]
async fn a_request_waits_for_the_next_upgrade_not_an_earlier_one() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let mut first = handle.upgrade_requests();
    assert!(handle.upgrade());
    first.next().await;
    first.failed(&"not ready");
    // Taken after the request: it waits for the next one.
    let mut late = handle.upgrade_requests();
    let next = tokio::spawn(async move { late.next().await });
    tokio::task::yield_now().await;
    assert!(!next.is_finished());
    assert!(handle.upgrade());
    tokio::time::timeout(Duration::from_secs(1), next)
        .await
        .expect("the request reached the server")
        .unwrap();
}
