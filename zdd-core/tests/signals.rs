//! Real signals, delivered to a child process (this test binary run again as the child).
//!
//! Each scenario starts a child that installs the signal listener and logs to stderr; the
//! parent waits for each log line before sending the next signal (a handshake, not a sleep).
#![cfg(feature = "signal")]

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use zdd_core::{Config, Lifecycle};

const CHILD_ENV: &str = "ZDD_SIGNAL_TEST_CHILD";
const BOUND: Duration = Duration::from_secs(30);

/// Runs a scenario when this binary is started as a child; does nothing in the parent.
#[test]
fn child_entry_point() {
    let Ok(scenario) = std::env::var(CHILD_ENV) else {
        return;
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The burst scenario drains at once; the others hold in Unready.
    let propagation = if scenario == "burst" { 0 } else { 60 };
    let config = Config::builder()
        .propagation_delay(Duration::from_secs(propagation))
        .drain_timeout(Duration::from_secs(60))
        .grace_period(Duration::from_secs(200))
        .build()
        .unwrap();
    let lifecycle = runtime.block_on(async {
        let mut lifecycle = Lifecycle::new(config);
        lifecycle.listen_for_signals().unwrap();
        lifecycle
    });
    let handle = lifecycle.handle();
    let in_flight = handle.track_request();
    eprintln!("child ready");
    match scenario.as_str() {
        "wedged" => runtime.block_on(async {
            // Block the only runtime thread for good: nothing async runs any more.
            loop {
                std::thread::park();
            }
        }),
        "second-sigint" => {
            let report = runtime.block_on(lifecycle.run());
            eprintln!("child report exit code {}", report.exit_code());
            std::process::exit(report.exit_code());
        }
        "burst" => {
            // The request finishes when the parent says so on stdin.
            let report = runtime.block_on(async move {
                let sequence = tokio::spawn(lifecycle.run());
                tokio::task::spawn_blocking(|| std::io::stdin().lines().next())
                    .await
                    .unwrap();
                in_flight.finish();
                sequence.await.unwrap()
            });
            eprintln!(
                "child report exit code {} completed {}",
                report.exit_code(),
                report.requests_completed()
            );
            std::process::exit(report.exit_code());
        }
        other => panic!("unknown scenario {other}"),
    }
}

struct ChildProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// Sends `count` signals named `name` at once, without waiting in between. A process that
/// has already exited is not an error: the last bursts race the child's exit on purpose.
fn burst(pid: u32, name: &str, count: usize) {
    let pid = pid.to_string();
    for _ in 0..count {
        let _ = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .stderr(Stdio::null())
            .status();
    }
}

impl ChildProcess {
    fn start(scenario: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_entry_point",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, scenario)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let process = Self { child, lines };
        process.wait_for("child ready");
        process
    }

    fn wait_for(&self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(BOUND) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("child never logged {needle:?}: {e}"),
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    fn exit_code(self) -> Option<i32> {
        let Self {
            mut child,
            lines: _,
        } = self;
        let pid = child.id().to_string();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait().map(|status| status.code()));
        });
        match rx.recv_timeout(BOUND) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("child did not exit within {BOUND:?}");
            }
        }
    }
}

#[test]
fn a_third_signal_ends_a_wedged_process_from_the_handler() {
    let child = ChildProcess::start("wedged");
    child.signal("TERM");
    child.wait_for("shutdown triggered");
    child.signal("TERM");
    child.wait_for("the runtime is not responding; the next signal ends the process");
    child.signal("TERM");
    assert_eq!(
        child.exit_code(),
        Some(143),
        "128 + SIGTERM, from the signal handler"
    );
}

#[test]
fn a_second_sigint_skips_to_forcing() {
    let child = ChildProcess::start("second-sigint");
    child.signal("INT");
    let triggered = child.wait_for("shutdown triggered");
    assert!(triggered.contains(r#"trigger="sigint""#), "{triggered}");
    child.signal("INT");
    child.wait_for("second signal: forcing");
    let forcing = child.wait_for(r#"phase="forcing""#);
    assert!(
        forcing.contains(r#"from="unready""#) || forcing.contains(r#"from="draining""#),
        "{forcing}"
    );
    child.wait_for("child report exit code 1");
    assert_eq!(
        child.exit_code(),
        Some(1),
        "the held request was forced: not graceful"
    );
}

#[test]
fn a_burst_of_sigterms_does_not_end_a_healthy_drain() {
    // Repeated, because the last signals race the end of the drain: the listener is dropped
    // while the signal thread may still be checking on the runtime for one of them.
    for round in 0..10 {
        let mut child = ChildProcess::start("burst");
        child.signal("TERM");
        child.wait_for("shutdown triggered");
        child.wait_for(r#"phase="draining""#);
        // A misconfigured supervisor: nine more, as fast as they can be sent. The kernel
        // merges a signal that arrives while the same one is pending, so fewer may be seen;
        // the first one seen must have been ignored.
        burst(child.child.id(), "TERM", 9);
        child.wait_for("repeated signal ignored: the runtime is making progress");
        // More while the drain ends: finish the request in the middle of them.
        burst(child.child.id(), "TERM", 3);
        let mut stdin = child.child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, b"finish\n").unwrap();
        drop(stdin);
        burst(child.child.id(), "TERM", 3);
        child.wait_for("child report exit code 0 completed 1");
        assert_eq!(
            child.exit_code(),
            Some(0),
            "round {round}: the drain ended gracefully"
        );
    }
}
