//! Adding up what the clients saw, and telling it.

use std::{collections::BTreeMap, fmt::Write, time::Duration};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::outcome::Outcome;

/// What one client saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) outcomes: BTreeMap<Outcome, u64>,
    pub(crate) versions: BTreeMap<String, u64>,
    pub(crate) first_errors: Vec<String>,
    /// Pauses after failed connects, and their total length.
    pub(crate) backoffs: u64,
    pub(crate) backed_off: Duration,
    /// Requests never sent (their connection closed first), sent again.
    pub(crate) unsent_retried: u64,
}

/// What a [`Load`](crate::Load) saw, added up: totals, failures by kind, latency
/// percentiles of the successful requests, and answers per version.
#[derive(Debug)]
pub struct Summary {
    version_header: String,
    outcomes: BTreeMap<Outcome, u64>,
    /// Latencies of successful requests, in microseconds.
    latencies: Histogram<u64>,
    versions: BTreeMap<String, u64>,
    by_version: BTreeMap<String, VersionSummary>,
    first_errors: Vec<String>,
    backoffs: u64,
    backed_off: Duration,
    unsent_retried: u64,
    pub(crate) elapsed: Duration,
}

/// One version's answers: what a canary decision compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSummary {
    /// Answers from this version, successful or not.
    pub answered: u64,
    /// Of those, failures: a 5xx or other non-2xx status, a failed gRPC status, or an answer
    /// cut short.
    pub failed: u64,
    /// Latency percentiles of all its answers (50th, 95th, 99th); `None` without answers.
    pub p50: Option<Duration>,
    /// See [`VersionSummary::p50`].
    pub p95: Option<Duration>,
    /// See [`VersionSummary::p50`].
    pub p99: Option<Duration>,
}

impl VersionSummary {
    /// `failed / answered`, 0 without answers.
    #[must_use]
    pub fn error_rate(&self) -> f64 {
        if self.answered == 0 {
            0.0
        } else {
            self.failed as f64 / self.answered as f64
        }
    }
}

/// The latency below which `percent` of what `latencies` holds falls.
fn percentile_of(latencies: &Histogram<u64>, percent: f64) -> Option<Duration> {
    (!latencies.is_empty())
        .then(|| Duration::from_micros(latencies.value_at_quantile(percent / 100.0)))
}

/// A histogram of latencies in microseconds, from 1 µs to an hour, to three significant
/// digits: percentiles in constant memory (a few hundred KB) however long the run.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 3_600_000_000, 3) {
        Ok(histogram) => histogram,
        Err(_) => unreachable!("the bounds are valid"),
    }
}

impl Summary {
    pub(crate) fn new(version_header: &str, latencies: Histogram<u64>) -> Self {
        Self {
            version_header: version_header.to_owned(),
            outcomes: BTreeMap::new(),
            latencies,
            versions: BTreeMap::new(),
            by_version: BTreeMap::new(),
            first_errors: Vec::new(),
            backoffs: 0,
            backed_off: Duration::ZERO,
            unsent_retried: 0,
            elapsed: Duration::ZERO,
        }
    }

    pub(crate) fn add(&mut self, seen: Seen) {
        for (outcome, n) in seen.outcomes {
            *self.outcomes.entry(outcome).or_default() += n;
        }
        for (version, n) in seen.versions {
            *self.versions.entry(version).or_default() += n;
        }
        self.first_errors.extend(seen.first_errors);
        self.first_errors.truncate(10);
        self.backoffs += seen.backoffs;
        self.backed_off += seen.backed_off;
        self.unsent_retried += seen.unsent_retried;
    }

    /// Adds `version`'s answers: `ok` successful, `failed` not, the latencies of all.
    pub(crate) fn add_version(
        &mut self,
        version: &str,
        ok: u64,
        failed: u64,
        latencies: &Histogram<u64>,
    ) {
        self.by_version.insert(
            version.to_owned(),
            VersionSummary {
                answered: ok + failed,
                failed,
                p50: percentile_of(latencies, 50.0),
                p95: percentile_of(latencies, 95.0),
                p99: percentile_of(latencies, 99.0),
            },
        );
    }

    /// Requests sent.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.outcomes.values().sum()
    }

    fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }

    /// Requests that failed, of any kind.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.total() - self.count(Outcome::Ok)
    }

    /// Requests answered with a 2xx status and a complete body.
    #[must_use]
    pub fn ok(&self) -> u64 {
        self.count(Outcome::Ok)
    }

    /// Failures by kind (`connect_refused`, `dns_error`, `reset`, `empty_reply`,
    /// `timeout`, `status_5xx`, `status_other`, `other_error`); kinds that did not occur
    /// are left out.
    #[must_use]
    pub fn failures(&self) -> BTreeMap<&'static str, u64> {
        Outcome::failures()
            .map(|outcome| (outcome.as_str(), self.count(outcome)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Successful requests per version (the version header's value, `(none)` without one).
    #[must_use]
    pub fn versions(&self) -> &BTreeMap<String, u64> {
        &self.versions
    }

    /// Every version's answers, successful or not, with their failures and latencies.
    #[must_use]
    pub fn by_version(&self) -> &BTreeMap<String, VersionSummary> {
        &self.by_version
    }

    /// The first few failures, described.
    #[must_use]
    pub fn first_errors(&self) -> &[String] {
        &self.first_errors
    }

    /// Requests that provably never reached the server's application (their kept-alive
    /// connection closed as it was picked, the client's pool dropped them while they waited
    /// for a connection, or an HTTP/2 server refused the stream with GOAWAY or
    /// `REFUSED_STREAM`), each sent again (up to 3 times) on a new connection, as clients
    /// do. Not failures: nothing was processed; counted so nothing is hidden.
    #[must_use]
    pub fn unsent_retried(&self) -> u64 {
        self.unsent_retried
    }

    /// How long the load ran.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The latency below which `percent` of successful requests answered (to three
    /// significant digits).
    fn percentile(&self, percent: f64) -> Option<Duration> {
        percentile_of(&self.latencies, percent)
    }

    /// The 95th-percentile latency of successful requests.
    pub(crate) fn p95_of_answers(&self) -> Option<Duration> {
        self.percentile(95.0)
    }

    /// Reasons to fail the run: nothing sent, more failures than `max_failures`, a p99
    /// above `max_p99`. Empty when it passed.
    #[must_use]
    pub fn verdict(&self, max_failures: u64, max_p99: Option<Duration>) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.total() == 0 {
            reasons.push("no request was sent".to_owned());
        }
        if self.failed() > max_failures {
            reasons.push(format!(
                "{} requests failed (allowed {max_failures})",
                self.failed()
            ));
        }
        if let (Some(limit), Some(p99)) = (max_p99, self.percentile(99.0))
            && p99 > limit
        {
            reasons.push(format!("p99 {p99:?} above {limit:?}"));
        }
        reasons
    }

    /// The summary and `verdict` as one JSON object.
    #[must_use]
    pub fn to_json(&self, verdict: &[String]) -> String {
        // Every HTTP kind, counted or not; a gRPC status only once seen.
        let failures: serde_json::Map<String, serde_json::Value> = Outcome::failures()
            .map(|o| (o, self.count(o)))
            .filter(|(o, n)| !matches!(o, Outcome::Grpc(_)) || *n > 0)
            .map(|(o, n)| (o.as_str().to_owned(), n.into()))
            .collect();
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
        json!({
            "total": self.total(),
            "ok": self.count(Outcome::Ok),
            "failed": self.failed(),
            "failures": failures,
            "latency_ms": { "p50": ms(self.percentile(50.0)), "p95": ms(self.percentile(95.0)), "p99": ms(self.percentile(99.0)) },
            "version_header": self.version_header,
            "versions": self.versions,
            "by_version": self.by_version.iter().map(|(version, v)| (version.clone(), json!({
                "answered": v.answered,
                "failed": v.failed,
                "error_rate": v.error_rate(),
                "latency_ms": { "p50": ms(v.p50), "p95": ms(v.p95), "p99": ms(v.p99) },
            }))).collect::<serde_json::Map<_, _>>(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "passed": verdict.is_empty(),
            "reasons": verdict,
            "first_errors": self.first_errors,
            "connect_backoff": { "pauses": self.backoffs, "total_ms": self.backed_off.as_secs_f64() * 1e3 },
            "unsent_retried": self.unsent_retried,
        })
        .to_string()
    }

    /// The summary and `verdict` as lines for a person.
    #[must_use]
    pub fn to_text(&self, verdict: &[String]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "requests: {} in {:.1}s, {} ok, {} failed",
            self.total(),
            self.elapsed.as_secs_f64(),
            self.count(Outcome::Ok),
            self.failed()
        );
        for (outcome, n) in self.failures() {
            let _ = writeln!(out, "  {outcome:<15} {n}");
        }
        if let (Some(p50), Some(p95), Some(p99)) = (
            self.percentile(50.0),
            self.percentile(95.0),
            self.percentile(99.0),
        ) {
            let _ = writeln!(out, "latency: p50 {p50:.2?}  p95 {p95:.2?}  p99 {p99:.2?}");
        }
        let _ = writeln!(out, "by {}:", self.version_header);
        for (version, v) in &self.by_version {
            let ok = self.versions.get(version).copied().unwrap_or(0);
            let p95 = v.p95.map(|p| format!("{p:.2?}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {version:<15} {ok} ok, {} failed ({:.2} %), p95 {p95}",
                v.failed,
                v.error_rate() * 100.0
            );
        }
        for error in &self.first_errors {
            let _ = writeln!(out, "  e.g. {error}");
        }
        if self.backoffs > 0 {
            let _ = writeln!(
                out,
                "connects failed: clients paused {} times ({:.1}s in all) before trying again",
                self.backoffs,
                self.backed_off.as_secs_f64()
            );
        }
        if self.unsent_retried > 0 {
            let _ = writeln!(
                out,
                "never processed, sent again: {} (their connection closed as they were sent, or HTTP/2 refused the stream)",
                self.unsent_retried
            );
        }
        match verdict.is_empty() {
            true => out.push_str("PASS\n"),
            false => {
                let _ = writeln!(out, "FAIL: {}", verdict.join("; "));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram_to_three_digits() {
        let mut latencies = latency_histogram();
        for ms in 1..=1_000_u64 {
            latencies.record(ms * 1_000).unwrap();
        }
        let summary = Summary::new("x-version", latencies);
        let near = |percent: f64, ms: u64| {
            let got = summary.percentile(percent).unwrap().as_micros() as f64;
            let want = (ms * 1_000) as f64;
            assert!(
                (got - want).abs() / want < 0.001,
                "p{percent}: {got} µs, not {want}"
            );
        };
        near(50.0, 500);
        near(95.0, 950);
        near(99.0, 990);
        assert_eq!(
            Summary::new("x", latency_histogram()).percentile(99.0),
            None
        );
    }

    #[test]
    fn the_histogram_stays_the_same_size_however_many_it_counts() {
        let mut latencies = latency_histogram();
        let before = latencies.distinct_values();
        for micros in (1..5_000_000_u64).step_by(7) {
            latencies.saturating_record(micros);
        }
        latencies.saturating_record(u64::MAX);
        assert_eq!(latencies.distinct_values(), before);
        assert_eq!(latencies.len(), 714_286 + 1);
    }
}
