use std::{borrow::Cow, fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use tokio::time::Instant;

use super::{CheckReport, Status};

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(800);
const DEFAULT_CACHE_FOR: Duration = Duration::from_secs(2);

type RunCheck = dyn Fn() -> Pin<Box<dyn Future<Output = Verdict> + Send>> + Send + Sync;

/// What a check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Healthy.
    Pass,
    /// Degraded but usable: the probe still passes, with status `warn`.
    Warn(String),
    /// Unhealthy: the probe fails.
    Fail(String),
}

/// What a check function may return: `()`, `bool`, `Result<(), E: Display>`, or a
/// [`Verdict`]. Sealed.
pub trait CheckOutput: sealed::Sealed + Send + 'static {
    /// Converts into a [`Verdict`].
    fn into_verdict(self) -> Verdict;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for () {}
    impl Sealed for bool {}
    impl Sealed for super::Verdict {}
    impl<E: std::fmt::Display> Sealed for Result<(), E> {}
}

impl CheckOutput for () {
    fn into_verdict(self) -> Verdict {
        Verdict::Pass
    }
}

impl CheckOutput for bool {
    fn into_verdict(self) -> Verdict {
        if self {
            Verdict::Pass
        } else {
            Verdict::Fail("check returned false".to_owned())
        }
    }
}

impl CheckOutput for Verdict {
    fn into_verdict(self) -> Verdict {
        self
    }
}

impl<E: fmt::Display + Send + 'static> CheckOutput for Result<(), E> {
    fn into_verdict(self) -> Verdict {
        match self {
            Ok(()) => Verdict::Pass,
            Err(e) => Verdict::Fail(e.to_string()),
        }
    }
}

/// A named health check, with its own timeout and cache interval.
///
/// The function is called at most once per cache interval however often the probe is asked
/// (concurrent probes wait for the one run in progress), so probes never hammer a
/// dependency. A run that exceeds the timeout fails with `timed out`; one that panics fails
/// with `panicked`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use zdd_core::{Check, Config, Lifecycle, Phase, Probe};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let lifecycle = Lifecycle::new(Config::default());
/// let handle = lifecycle.handle();
/// handle.readiness_check(
///     Check::new("database", || async { Err::<(), _>("connection refused") })
///         .timeout(Duration::from_millis(500))
///         .cache_for(Duration::from_secs(5)),
/// );
/// tokio::spawn(lifecycle.run());
/// handle.reached(Phase::Serving).await;
///
/// let report = handle.probe(Probe::Readiness).await;
/// assert_eq!(report.http_status(), 503);
/// assert_eq!(
///     report.to_json(),
///     r#"{"status":"fail","phase":"serving","checks":{"database":{"status":"fail","duration_ms":0,"output":"failed"}}}"#,
/// );
/// # }
/// ```
#[derive(Clone)]
pub struct Check {
    name: Cow<'static, str>,
    timeout: Duration,
    cache_for: Duration,
    run: Arc<RunCheck>,
}

impl Check {
    /// A check named `name` that calls `check` and awaits its future.
    pub fn new<F, Fut>(name: impl Into<Cow<'static, str>>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: CheckOutput,
    {
        Self {
            name: name.into(),
            timeout: DEFAULT_TIMEOUT,
            cache_for: DEFAULT_CACHE_FOR,
            run: Arc::new(move || {
                let fut = check();
                Box::pin(async move { fut.await.into_verdict() })
            }),
        }
    }

    /// How long one run may take before it fails with `timed out`. Keep it below the probe's
    /// `timeoutSeconds` (Kubernetes' default is 1 s). Default is 800 ms.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a result is reused before the check runs again. Default is 2 s.
    #[must_use]
    pub fn cache_for(mut self, interval: Duration) -> Self {
        self.cache_for = interval;
        self
    }

    /// The check's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            name,
            timeout,
            cache_for,
            run: _,
        } = self;
        f.debug_struct("Check")
            .field("name", name)
            .field("timeout", timeout)
            .field("cache_for", cache_for)
            .finish_non_exhaustive()
    }
}

/// A check with its cache. The async mutex makes concurrent probes share one run.
pub(crate) struct Registered {
    probe: super::Probe,
    check: Check,
    cache: tokio::sync::Mutex<Option<(Instant, CheckReport)>>,
}

impl Registered {
    pub(crate) fn new(probe: super::Probe, check: Check) -> Self {
        Self {
            probe,
            check,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn name(&self) -> &Cow<'static, str> {
        &self.check.name
    }

    /// The cached report if fresh, else a new run's.
    pub(crate) async fn evaluate(&self) -> CheckReport {
        let mut cache = self.cache.lock().await;
        if let Some((at, report)) = &*cache
            && at.elapsed() < self.check.cache_for
        {
            return report.clone();
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.check.timeout, (self.check.run)()).await;
        let duration = started.elapsed();
        let report = match outcome {
            Ok(Verdict::Pass) => CheckReport::new(self.name(), Status::Pass, duration, None),
            Ok(Verdict::Warn(message)) => CheckReport::new(
                self.name(),
                Status::Warn,
                duration,
                Some(("warning", message)),
            ),
            Ok(Verdict::Fail(message)) => CheckReport::new(
                self.name(),
                Status::Fail,
                duration,
                Some(("failed", message)),
            ),
            Err(_) => CheckReport::new(
                self.name(),
                Status::Fail,
                duration,
                Some((
                    "timed out",
                    format!("no answer within {:?}", self.check.timeout),
                )),
            ),
        };
        let value = match report.status() {
            Status::Pass => 1.0,
            Status::Warn => 0.5,
            Status::Fail => 0.0,
        };
        crate::metrics::check_result(self.probe.as_str(), &self.check.name, value, duration);
        if report.status() != Status::Pass {
            warn!(
                check = &*self.check.name,
                status = report.status().as_str(),
                duration_ms = duration.as_millis() as u64,
                output = report.output_verbose(),
                "health check not passing"
            );
        }
        *cache = Some((Instant::now(), report.clone()));
        report
    }
}
