//! The canary gate: judging a version's answers against thresholds, with an answer a
//! pipeline can act on (promote, roll back, or wait for more traffic).

use std::time::Duration;

use serde_json::json;

use crate::Summary;

/// Thresholds a version must hold to be promoted. Built with [`Gate::new`] and its setters.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use zdd_check::{Decision, Gate};
///
/// let gate = Gate::new()
///     .version("v2")
///     .max_error_rate(0.01)
///     .max_p95(Duration::from_millis(1000))
///     .min_requests(200);
/// # let _ = (gate, Decision::Promote);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    version: Option<String>,
    max_error_rate: Option<f64>,
    max_p95: Option<Duration>,
    min_requests: u64,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

/// The default least number of requests a judgement needs.
pub const DEFAULT_MIN_REQUESTS: u64 = 100;

impl Gate {
    /// No threshold, all traffic judged, at least [`DEFAULT_MIN_REQUESTS`] requests.
    #[must_use]
    pub fn new() -> Self {
        Self {
            version: None,
            max_error_rate: None,
            max_p95: None,
            min_requests: DEFAULT_MIN_REQUESTS,
        }
    }

    /// Judges only the answers of `version` (the version header's value). Default is all
    /// traffic, whichever version answered.
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// The highest share of failed requests (0 to 1) that still promotes. Default is none.
    #[must_use]
    pub fn max_error_rate(mut self, rate: f64) -> Self {
        self.max_error_rate = Some(rate);
        self
    }

    /// The highest 95th-percentile latency that still promotes. Default is none.
    #[must_use]
    pub fn max_p95(mut self, p95: Duration) -> Self {
        self.max_p95 = Some(p95);
        self
    }

    /// Fewer requests than this are too few to judge: inconclusive. Default is
    /// [`DEFAULT_MIN_REQUESTS`].
    #[must_use]
    pub fn min_requests(mut self, requests: u64) -> Self {
        self.min_requests = requests;
        self
    }

    /// Judges `summary`.
    #[must_use]
    pub fn judge(&self, summary: &Summary) -> Verdict {
        let (requests, failed, p95) = match &self.version {
            Some(version) => match summary.by_version().get(version) {
                Some(answers) => (answers.answered, answers.failed, answers.p95),
                None => {
                    let seen: Vec<&str> = summary.by_version().keys().map(String::as_str).collect();
                    return self.verdict(
                        Decision::Inconclusive,
                        vec![format!(
                            "version {version:?} never answered (answers came from: {})",
                            if seen.is_empty() {
                                "none".to_owned()
                            } else {
                                seen.join(", ")
                            }
                        )],
                        (0, 0, None),
                    );
                }
            },
            None => (summary.total(), summary.failed(), summary.p95_of_answers()),
        };
        let numbers = (requests, failed, p95);
        if requests < self.min_requests {
            return self.verdict(
                Decision::Inconclusive,
                vec![format!(
                    "{requests} requests, fewer than the {} needed to judge (--min-requests)",
                    self.min_requests
                )],
                numbers,
            );
        }
        let rate = failed as f64 / requests as f64;
        let mut reasons = Vec::new();
        if let Some(max) = self.max_error_rate
            && rate > max
        {
            reasons.push(format!(
                "error rate {:.2} % above {:.2} % ({failed} of {requests} failed)",
                rate * 100.0,
                max * 100.0
            ));
        }
        if let (Some(max), Some(p95)) = (self.max_p95, p95)
            && p95 > max
        {
            reasons.push(format!("p95 {p95:.2?} above {max:?}"));
        }
        let decision = match reasons.is_empty() {
            true => Decision::Promote,
            false => Decision::RollBack,
        };
        self.verdict(decision, reasons, numbers)
    }

    fn verdict(
        &self,
        decision: Decision,
        reasons: Vec<String>,
        (requests, failed, p95): (u64, u64, Option<Duration>),
    ) -> Verdict {
        Verdict {
            decision,
            reasons,
            gate: self.clone(),
            requests,
            failed,
            p95,
        }
    }
}

/// What the gate decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Every threshold held on enough traffic.
    Promote,
    /// A threshold was crossed.
    RollBack,
    /// Too little traffic (or none from the judged version) to tell.
    Inconclusive,
}

impl Decision {
    /// `promote`, `roll_back` or `inconclusive`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::RollBack => "roll_back",
            Self::Inconclusive => "inconclusive",
        }
    }

    /// The program's exit code: 0 promote, 1 roll back, 3 inconclusive (2 is bad input).
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Promote => 0,
            Self::RollBack => 1,
            Self::Inconclusive => 3,
        }
    }
}

/// A [`Gate`]'s judgement and the numbers it was based on.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    decision: Decision,
    reasons: Vec<String>,
    gate: Gate,
    requests: u64,
    failed: u64,
    p95: Option<Duration>,
}

impl Verdict {
    /// The decision.
    #[must_use]
    pub fn decision(&self) -> Decision {
        self.decision
    }

    /// Why it is not a promotion (empty for one).
    #[must_use]
    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }

    /// The decision, the numbers it was based on, and the thresholds, as JSON.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
        let rate = match self.requests {
            0 => None,
            n => Some(self.failed as f64 / n as f64),
        };
        json!({
            "decision": self.decision.as_str(),
            "exit_code": self.decision.exit_code(),
            "version": self.gate.version,
            "requests": self.requests,
            "failed": self.failed,
            "error_rate": rate,
            "p95_ms": ms(self.p95),
            "thresholds": {
                "max_error_rate": self.gate.max_error_rate,
                "max_p95_ms": ms(self.gate.max_p95),
                "min_requests": self.gate.min_requests,
            },
            "reasons": self.reasons,
        })
    }
}

impl Verdict {
    /// Adds the plain check's failed thresholds (`--max-failures`, `--max-p99`, given
    /// explicitly beside the gate): any of them rolls back a verdict that would promote.
    pub fn also_failed(&mut self, reasons: &[String]) {
        if reasons.is_empty() {
            return;
        }
        if self.decision == Decision::Promote {
            self.decision = Decision::RollBack;
        }
        self.reasons.extend(reasons.iter().cloned());
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let judged = self.gate.version.as_deref().unwrap_or("all traffic");
        write!(
            f,
            "verdict: {} ({judged}: {} requests, {} failed",
            self.decision.as_str(),
            self.requests,
            self.failed
        )?;
        if let Some(p95) = self.p95 {
            write!(f, ", p95 {p95:.2?}")?;
        }
        f.write_str(")")?;
        if !self.reasons.is_empty() {
            write!(f, ": {}", self.reasons.join("; "))?;
        }
        Ok(())
    }
}
