//! Cleanup hooks: named steps run after the drain, newest first, each with a timeout.
//!
//! Register them with [`LifecycleHandle::on_cleanup`](crate::LifecycleHandle::on_cleanup).
//! They run in reverse registration order (what was set up last is torn down first, like
//! destructors), during [`Phase::CleaningUp`](crate::Phase::CleaningUp), after the last
//! connection has closed, so nothing still uses what they close. Each runs in its own task
//! with the smaller of its own timeout and what is left of the cleanup budget; a hook that
//! fails, panics or runs out of time is recorded and the next one still runs. Once the budget
//! is spent, the remaining hooks are skipped.

use std::{borrow::Cow, fmt, future::Future, pin::Pin, time::Duration};

use tokio::time::Instant;

type HookFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// What a cleanup hook may return: `()` or `Result<(), E>` with `E: Display`. Sealed.
pub trait HookOutput: sealed::Sealed + Send + 'static {
    /// Converts into a result with the error's message.
    fn into_result(self) -> Result<(), String>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for () {}
    impl<E: std::fmt::Display> Sealed for Result<(), E> {}
}

impl HookOutput for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display + Send + 'static> HookOutput for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

pub(crate) struct Hook {
    name: Cow<'static, str>,
    timeout: Duration,
    future: HookFuture,
}

impl Hook {
    pub(crate) fn new<F>(name: Cow<'static, str>, timeout: Duration, future: F) -> Self
    where
        F: Future + Send + 'static,
        F::Output: HookOutput,
    {
        Self {
            name,
            timeout,
            future: Box::pin(async move { future.await.into_result() }),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// How a cleanup hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookOutcome {
    /// It finished without error.
    Completed,
    /// It returned an error, with its message.
    Failed(String),
    /// It panicked, with the panic message when there was one.
    Panicked(String),
    /// It did not finish within its timeout (or the rest of the cleanup budget) and was
    /// cancelled.
    TimedOut,
    /// The cleanup budget was spent before its turn; it did not run.
    Skipped,
}

impl HookOutcome {
    /// `completed`, `failed`, `panicked`, `timed_out` or `skipped`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed(_) => "failed",
            Self::Panicked(_) => "panicked",
            Self::TimedOut => "timed_out",
            Self::Skipped => "skipped",
        }
    }
}

/// One hook's entry in the [`ShutdownReport`](crate::ShutdownReport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReport {
    name: Cow<'static, str>,
    outcome: HookOutcome,
    duration: Duration,
}

impl HookReport {
    /// The hook's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How it ended.
    #[must_use]
    pub fn outcome(&self) -> &HookOutcome {
        &self.outcome
    }

    /// How long it ran.
    #[must_use]
    pub fn duration(&self) -> Duration {
        self.duration
    }
}

/// Runs `hooks` newest first within `budget`.
pub(crate) async fn run(mut hooks: Vec<Hook>, budget: Duration) -> Vec<HookReport> {
    let deadline = Instant::now() + budget;
    let mut reports = Vec::with_capacity(hooks.len());
    while let Some(Hook {
        name,
        timeout,
        future,
    }) = hooks.pop()
    {
        let started = Instant::now();
        let left = deadline.saturating_duration_since(started);
        let outcome = if left.is_zero() {
            HookOutcome::Skipped
        } else {
            let task = tokio::spawn(future);
            let abort = task.abort_handle();
            match tokio::time::timeout(timeout.min(left), task).await {
                Ok(Ok(Ok(()))) => HookOutcome::Completed,
                Ok(Ok(Err(message))) => HookOutcome::Failed(message),
                Ok(Err(join)) => HookOutcome::Panicked(panic_message(join)),
                Err(_) => {
                    abort.abort();
                    HookOutcome::TimedOut
                }
            }
        };
        let duration = started.elapsed();
        let duration_ms = duration.as_millis() as u64;
        match &outcome {
            HookOutcome::Completed => info!(hook = &*name, duration_ms, "cleanup hook completed"),
            HookOutcome::Failed(message) | HookOutcome::Panicked(message) => {
                warn!(
                    hook = &*name,
                    outcome = outcome.as_str(),
                    error = message.as_str(),
                    duration_ms,
                    "cleanup hook failed"
                );
            }
            HookOutcome::TimedOut | HookOutcome::Skipped => {
                warn!(
                    hook = &*name,
                    outcome = outcome.as_str(),
                    duration_ms,
                    "cleanup hook did not finish"
                );
            }
        }
        reports.push(HookReport {
            name,
            outcome,
            duration,
        });
    }
    reports
}

fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic with a non-string payload".to_owned()),
        Err(_) => "cancelled".to_owned(),
    }
}
