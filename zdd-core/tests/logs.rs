//! Structured log output, captured with a real subscriber.

use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;
use zdd_core::{Config, Lifecycle, Trigger};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

/// A subscriber writing plain lines (no time, no colour) up to `level` into a [`Capture`].
fn capturing(level: tracing::Level) -> (Capture, impl tracing::Subscriber + Send + Sync) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_ansi(false)
        .without_time()
        .with_max_level(level)
        .finish();
    (capture, subscriber)
}

#[tokio::test(start_paused = true)]
async fn transitions_triggers_and_aborted_requests_are_structured_events() {
    let (capture, subscriber) = capturing(tracing::Level::DEBUG);
    let _guard = tracing::subscriber::set_default(subscriber);

    let config = Config::builder()
        .propagation_delay(Duration::from_secs(2))
        .drain_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let lifecycle = Lifecycle::new(config);
    let handle = lifecycle.handle();
    let hung = handle
        .track_request()
        .describe(&http::Method::POST, "/upload");
    let sequence = tokio::spawn(lifecycle.run());
    handle.trigger(Trigger::Sigterm);
    handle.reached(zdd_core::Phase::Forcing).await;
    drop(hung);
    sequence.await.unwrap();

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let line = |needle: &str| {
        logs.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{logs}"))
            .to_owned()
    };
    let triggered = line("shutdown triggered");
    assert!(triggered.contains(r#"trigger="sigterm""#), "{triggered}");
    let draining = line(r#"phase="draining""#);
    assert!(
        draining.contains(r#"from="unready""#) && draining.contains("in_previous_ms=2000"),
        "{draining}"
    );
    assert!(draining.contains("in_flight_requests=1"), "{draining}");
    let aborted = line("request aborted by forced shutdown");
    assert!(aborted.contains("WARN"), "{aborted}");
    assert!(
        aborted.contains(r#"method="POST""#) && aborted.contains(r#"path="/upload""#),
        "{aborted}"
    );
    assert!(aborted.contains("age_ms="), "{aborted}");
    let done = line("shutdown complete");
    assert!(
        done.contains("graceful=false") && done.contains("exit_code=1"),
        "{done}"
    );
    assert!(
        logs.lines()
            .all(|l| l.contains(" zdd:") || l.contains("zdd")),
        "every event has the zdd target"
    );
}

#[tokio::test(start_paused = true)]
async fn forcing_many_requests_logs_a_bounded_number_of_lines() {
    let (capture, subscriber) = capturing(tracing::Level::INFO);
    let _guard = tracing::subscriber::set_default(subscriber);

    let config = Config::builder()
        .propagation_delay(Duration::ZERO)
        .drain_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let lifecycle = Lifecycle::new(config);
    let handle = lifecycle.handle();
    let streams: Vec<_> = (0..1_000)
        .map(|_| {
            handle
                .track_request()
                .describe(&http::Method::GET, "/events")
        })
        .collect();
    let sequence = tokio::spawn(lifecycle.run());
    handle.shutdown();
    handle.reached(zdd_core::Phase::Forcing).await;
    drop(streams);
    let report = sequence.await.unwrap();
    assert_eq!(
        report.requests_aborted(),
        1_000,
        "the report keeps the full count"
    );

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let one_by_one = logs
        .lines()
        .filter(|l| l.contains("request aborted by forced shutdown"))
        .count();
    assert_eq!(one_by_one, 10, "{logs}");
    let summary = logs
        .lines()
        .find(|l| l.contains("only the first logged one by one"))
        .unwrap_or_else(|| panic!("no summary line in:\n{logs}"));
    assert!(
        summary.contains("WARN")
            && summary.contains("requests_aborted=1000")
            && summary.contains("logged=10"),
        "{summary}"
    );
    assert!(
        logs.lines().count() < 40,
        "{} lines:\n{logs}",
        logs.lines().count()
    );
}

/// The warnings logged while `run` runs, one line each.
fn warnings_while(run: impl FnOnce()) -> Vec<String> {
    let (capture, subscriber) = capturing(tracing::Level::INFO);
    tracing::subscriber::with_default(subscriber, run);
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    logs.lines()
        .filter(|l| l.contains("WARN"))
        .map(str::to_owned)
        .collect()
}

fn lifecycle_from(env: &[(&str, &str)]) -> Lifecycle {
    let config = Config::builder()
        .with_env_from(|key| {
            env.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap()
        .build()
        .unwrap();
    Lifecycle::new(config)
}

#[test]
fn a_network_listener_without_a_propagation_delay_is_warned_about_once() {
    let public: std::net::SocketAddr = "0.0.0.0:3000".parse().unwrap();
    let lifecycle = lifecycle_from(&[]);
    let warnings = warnings_while(|| {
        lifecycle.handle().listening_on(public);
        lifecycle
            .handle()
            .listening_on("[::]:3001".parse().unwrap());
    });
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let warning = &warnings[0];
    assert!(
        warning.contains("ZDD_PROPAGATION_DELAY")
            && warning.contains("docs/operations.md")
            && warning.contains("addr=0.0.0.0:3000"),
        "{warning}"
    );

    // Quiet when nothing can be in front, when the delay was chosen (even 0), in Kubernetes.
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Env<'_>, &str); 4] = [
        ("loopback", &[], "127.0.0.1:3000"),
        (
            "chosen zero",
            &[("ZDD_PROPAGATION_DELAY", "0s")],
            "0.0.0.0:3000",
        ),
        (
            "chosen delay",
            &[("ZDD_PROPAGATION_DELAY", "3s")],
            "0.0.0.0:3000",
        ),
        (
            "kubernetes",
            &[("KUBERNETES_SERVICE_HOST", "10.0.0.1")],
            "0.0.0.0:3000",
        ),
    ];
    for (case, env, addr) in cases {
        let lifecycle = lifecycle_from(env);
        let warnings = warnings_while(|| lifecycle.handle().listening_on(addr.parse().unwrap()));
        assert!(warnings.is_empty(), "{case}: {warnings:#?}");
    }
}

#[cfg(feature = "tower")]
#[tokio::test(start_paused = true)]
async fn admin_state_changes_are_logged_with_the_caller_s_address() {
    use tower::ServiceExt;

    let (capture, subscriber) = capturing(tracing::Level::INFO);
    let _guard = tracing::subscriber::set_default(subscriber);

    let lifecycle = Lifecycle::new(Config::default());
    let admin =
        zdd_core::AdminService::new(lifecycle.handle()).peer("10.1.2.3:41000".parse().unwrap());
    let call = |method: http::Method, path: &str| {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        admin.clone().oneshot(request)
    };
    call(http::Method::POST, "/maintenance").await.unwrap();
    call(http::Method::POST, "/maintenance").await.unwrap();
    call(http::Method::DELETE, "/maintenance").await.unwrap();
    let sequence = tokio::spawn(lifecycle.run());
    call(http::Method::GET, "/prestop").await.unwrap();
    sequence.await.unwrap();

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let toggles: Vec<_> = logs
        .lines()
        .filter(|l| l.contains("maintenance toggled on the admin listener"))
        .collect();
    assert_eq!(toggles.len(), 3, "{logs}");
    for (line, (on, changed)) in toggles
        .iter()
        .zip([(true, true), (true, false), (false, true)])
    {
        assert!(line.contains("peer=10.1.2.3:41000"), "{line}");
        assert!(
            line.contains(&format!("maintenance={on} changed={changed}")),
            "{line}"
        );
    }
    let prestop = logs
        .lines()
        .find(|l| l.contains("preStop requested on the admin listener"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        prestop.contains("peer=10.1.2.3:41000") && prestop.contains("first=true"),
        "{prestop}"
    );
}
