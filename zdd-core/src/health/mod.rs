//! The health model: probes, checks, the startup gate and health reports.
//!
//! | phase | readiness | liveness | startup |
//! |---|---|---|---|
//! | Starting | 503 | 200 | 503 |
//! | Serving | 200 if every readiness check passes (and not [marked not ready]), else 503 | 200 | 200 |
//! | Unready … Stopped | 503 | 200 | 200 |
//!
//! Liveness runs its checks only while starting or serving, so it never fails because of
//! shutdown; it should never check dependencies. Readiness runs its checks only while
//! serving: once shutdown has begun the answer is 503 without asking anyone.
//!
//! Reports render as `application/health+json`:
//! `{"status":"pass","phase":"serving","checks":{"db":{"status":"pass","duration_ms":3}}}`.
//! A failing check shows only a short `output` (`failed`, `timed out`, `pending`…) unless
//! verbose output is enabled, so bodies never leak error details.
//!
//! # Examples
//!
//! ```
//! use zdd_core::{Check, Config, Lifecycle, Phase, Probe};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let lifecycle = Lifecycle::new(Config::default());
//! let handle = lifecycle.handle();
//! handle.readiness_check(Check::new("cache", || async {}));
//!
//! assert_eq!(handle.probe(Probe::Readiness).await.http_status(), 503); // starting
//! tokio::spawn(lifecycle.run());
//! handle.reached(Phase::Serving).await;
//! let ready = handle.probe(Probe::Readiness).await;
//! assert_eq!(ready.http_status(), 200);
//! assert_eq!(
//!     ready.to_json(),
//!     r#"{"status":"pass","phase":"serving","checks":{"cache":{"status":"pass","duration_ms":0}}}"#,
//! );
//!
//! handle.shutdown();
//! assert_eq!(handle.probe(Probe::Readiness).await.http_status(), 503);
//! assert_eq!(handle.probe(Probe::Liveness).await.http_status(), 200);
//! # }
//! ```
//!
//! [marked not ready]: crate::LifecycleHandle::set_not_ready

mod check;
mod startup;

use std::{
    borrow::Cow,
    fmt,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

pub(crate) use self::startup::Startup;
pub use self::{
    check::{Check, CheckOutput, Verdict},
    startup::StartupTask,
};
use crate::{Phase, machine::Machine};

cfg_tower! {
    mod service;
    pub use self::service::{ProbePaths, ProbeService};
    pub(crate) use self::service::respond;
}

/// Which probe is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    /// Is the process alive? Failing gets the container restarted.
    Liveness,
    /// Should traffic be routed here? Failing takes the instance out of load balancing.
    Readiness,
    /// Has startup finished? Until it has, the other probes are not asked.
    Startup,
}

impl Probe {
    /// The probe's name: `live`, `ready` or `startup`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Liveness => "live",
            Self::Readiness => "ready",
            Self::Startup => "startup",
        }
    }
}

/// A health status, as in the `application/health+json` draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Healthy.
    Pass,
    /// Healthy with a concern; probes still answer 200.
    Warn,
    /// Unhealthy; probes answer 503.
    Fail,
}

impl Status {
    /// `pass`, `warn` or `fail`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// The result of one check or startup task within a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    name: Cow<'static, str>,
    status: Status,
    duration: Duration,
    /// A short, fixed description and the full message (only shown when verbose).
    output: Option<(&'static str, String)>,
}

impl CheckReport {
    pub(crate) fn new(
        name: &str,
        status: Status,
        duration: Duration,
        output: Option<(&'static str, String)>,
    ) -> Self {
        Self {
            name: Cow::Owned(name.to_owned()),
            status,
            duration,
            output,
        }
    }

    /// The check's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The check's status.
    #[must_use]
    pub fn status(&self) -> Status {
        self.status
    }

    /// How long the check took.
    #[must_use]
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// A short, fixed description of a non-passing result (`failed`, `timed out`, …).
    #[must_use]
    pub fn output(&self) -> Option<&'static str> {
        self.output.as_ref().map(|(short, _)| *short)
    }

    /// The full message of a non-passing result, as the check gave it.
    #[must_use]
    pub fn output_verbose(&self) -> Option<&str> {
        self.output.as_ref().map(|(_, full)| full.as_str())
    }
}

/// A probe's answer: overall status, phase, and each check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    probe: Probe,
    status: Status,
    phase: Phase,
    reason: Option<&'static str>,
    checks: Vec<CheckReport>,
}

impl HealthReport {
    /// Which probe this answers.
    #[must_use]
    pub fn probe(&self) -> Probe {
        self.probe
    }

    /// The overall status.
    #[must_use]
    pub fn status(&self) -> Status {
        self.status
    }

    /// The phase when the probe was answered.
    #[must_use]
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Why the probe fails when no check is to blame (`starting`, `shutting down`,
    /// `marked not ready`).
    #[must_use]
    pub fn reason(&self) -> Option<&'static str> {
        self.reason
    }

    /// The checks (or startup tasks) behind the answer.
    #[must_use]
    pub fn checks(&self) -> &[CheckReport] {
        &self.checks
    }

    /// 200 unless the status is [`Status::Fail`], then 503.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        if self.status == Status::Fail {
            503
        } else {
            200
        }
    }

    /// The body as `application/health+json`, with short outputs only.
    #[must_use]
    pub fn to_json(&self) -> String {
        self.render(false)
    }

    /// The body with each failing check's full message. Only for trusted callers.
    #[must_use]
    pub fn to_json_verbose(&self) -> String {
        self.render(true)
    }

    /// Writes the body by hand so the fields keep the documented order (`status`, `phase`,
    /// `output`, `checks`); serde_json only escapes the strings.
    fn render(&self, verbose: bool) -> String {
        let mut body = format!(
            r#"{{"status":"{}","phase":"{}""#,
            self.status.as_str(),
            self.phase
        );
        if let Some(reason) = self.reason {
            body.push_str(&format!(r#","output":{}"#, quoted(reason)));
        }
        body.push_str(r#","checks":{"#);
        for (i, check) in self.checks.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!(
                r#"{}:{{"status":"{}","duration_ms":{}"#,
                quoted(&check.name),
                check.status.as_str(),
                check.duration.as_millis(),
            ));
            if let Some((short, full)) = &check.output {
                let output = if verbose { full.as_str() } else { short };
                body.push_str(&format!(r#","output":{}"#, quoted(output)));
            }
            body.push('}');
        }
        body.push_str("}}");
        body
    }
}

fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

impl fmt::Display for HealthReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// Registered checks and startup tasks, and the not-ready toggle. Health reads the phase
/// (from the [`Machine`]) and never writes it.
#[derive(Default)]
pub(crate) struct Health {
    startup: Startup,
    readiness: RwLock<Vec<Arc<check::Registered>>>,
    liveness: RwLock<Vec<Arc<check::Registered>>>,
    not_ready: AtomicBool,
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("not_ready", &self.is_marked_not_ready())
            .finish_non_exhaustive()
    }
}

impl Health {
    pub(crate) fn startup(&self) -> &Startup {
        &self.startup
    }

    /// Holds readiness down (or lets it go); returns the previous setting.
    pub(crate) fn set_not_ready(&self, not_ready: bool) -> bool {
        self.not_ready.swap(not_ready, Ordering::AcqRel)
    }

    pub(crate) fn is_marked_not_ready(&self) -> bool {
        self.not_ready.load(Ordering::Acquire)
    }

    pub(crate) fn add_readiness(&self, check: Check) {
        self.readiness
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(check::Registered::new(Probe::Readiness, check)));
    }

    pub(crate) fn add_liveness(&self, check: Check) {
        self.liveness
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(check::Registered::new(Probe::Liveness, check)));
    }
}

/// Runs the checks concurrently, each in its own task so a panic is caught and reported.
async fn run_checks(checks: &RwLock<Vec<Arc<check::Registered>>>) -> Vec<CheckReport> {
    let checks = checks.read().unwrap_or_else(|e| e.into_inner()).clone();
    let running: Vec<_> = checks
        .into_iter()
        .map(|check| {
            let name = check.name().clone();
            (name, tokio::spawn(async move { check.evaluate().await }))
        })
        .collect();
    let mut reports = Vec::with_capacity(running.len());
    for (name, task) in running {
        reports.push(match task.await {
            Ok(report) => report,
            Err(_) => CheckReport::new(
                &name,
                Status::Fail,
                Duration::ZERO,
                Some(("panicked", "the check panicked".to_owned())),
            ),
        });
    }
    reports
}

fn worst(checks: &[CheckReport]) -> Status {
    checks
        .iter()
        .map(CheckReport::status)
        .max()
        .unwrap_or(Status::Pass)
}

impl Health {
    /// Answers `probe` for the phase `machine` is in.
    pub(crate) async fn evaluate(&self, machine: &Machine, probe: Probe) -> HealthReport {
        evaluate(self, machine, probe).await
    }
}

async fn evaluate(health: &Health, machine: &Machine, probe: Probe) -> HealthReport {
    let phase = machine.phase();
    let (status, reason, checks) = match probe {
        Probe::Startup => {
            let tasks = health.startup.reports();
            match phase {
                Phase::Starting => (Status::Fail, Some("starting"), tasks),
                _ => (Status::Pass, None, tasks),
            }
        }
        Probe::Liveness if phase.is_shutting_down() => (Status::Pass, None, Vec::new()),
        Probe::Liveness => {
            let checks = run_checks(&health.liveness).await;
            (worst(&checks), None, checks)
        }
        Probe::Readiness => match phase {
            Phase::Starting => (Status::Fail, Some("starting"), Vec::new()),
            Phase::Serving if health.is_marked_not_ready() => {
                (Status::Fail, Some("marked not ready"), Vec::new())
            }
            Phase::Serving => {
                let checks = run_checks(&health.readiness).await;
                // The phase may have moved on while the checks ran.
                if machine.phase().is_shutting_down() {
                    (Status::Fail, Some("shutting down"), checks)
                } else {
                    (worst(&checks), None, checks)
                }
            }
            _ => (Status::Fail, Some("shutting down"), Vec::new()),
        },
    };
    HealthReport {
        probe,
        status,
        phase: machine.phase(),
        reason,
        checks,
    }
}
