//! Live progress while a load runs (a canary stage lasts minutes): on a terminal, a line on
//! stderr refreshed every second; otherwise a plain line every `--progress-every` (10 s).

use std::{fmt::Write, io::IsTerminal, time::Duration};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zdd_check::{Live, Load};

/// One progress line: requests, failures by kind, the split by version.
pub(crate) fn line(live: &Live) -> String {
    let mut line = format!(
        "{:>5.0}s  {} requests, {} failed",
        live.elapsed.as_secs_f64(),
        live.ok + live.failed,
        live.failed
    );
    if !live.failures.is_empty() {
        let kinds: Vec<String> = live
            .failures
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        let _ = write!(line, " ({})", kinds.join(", "));
    }
    let answered: u64 = live.versions.values().sum();
    if answered > 0 {
        let split: Vec<String> = live
            .versions
            .iter()
            .map(|(version, n)| format!("{version} {:.1} %", *n as f64 * 100.0 / answered as f64))
            .collect();
        let _ = write!(line, "  |  {}", split.join(", "));
    }
    line
}

/// Shows progress of `load` until `done` completes; `every` is the plain lines' interval.
pub(crate) async fn show(load: &Load, done: impl Future<Output = ()>, every: Duration) {
    let mut done = std::pin::pin!(done);
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        loop {
            bar.set_message(line(&load.live()));
            bar.tick();
            tokio::select! {
                () = &mut done => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        bar.finish_and_clear();
    } else {
        loop {
            tokio::select! {
                () = &mut done => break,
                () = tokio::time::sleep(every) => eprintln!("{}", line(&load.live())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_line_says_requests_failures_by_kind_and_the_split_by_version() {
        let live = Live {
            elapsed: Duration::from_secs(61),
            ok: 990,
            failed: 10,
            failures: BTreeMap::from([("status_5xx", 8), ("reset", 2)]),
            versions: BTreeMap::from([("v1".to_owned(), 900), ("v2".to_owned(), 98)]),
        };
        assert_eq!(
            line(&live),
            "   61s  1000 requests, 10 failed (reset 2, status_5xx 8)  |  v1 90.2 %, v2 9.8 %"
        );
    }
}
