//! Errors returned by zdd-core.

use std::{fmt, time::Duration};

use humantime::format_duration;

/// A configuration value was malformed, negative, or the timings do not fit the grace period.
///
/// Every message names the setting (and its environment variable when the value came from
/// the environment) and the numbers involved, so it can be shown to an operator as is.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use zdd_core::Config;
///
/// let err = Config::builder()
///     .propagation_delay(Duration::from_secs(5))
///     .drain_timeout(Duration::from_secs(25))
///     .cleanup_timeout(Duration::from_secs(3))
///     .margin(Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert!(err.is_over_budget());
/// assert_eq!(
///     err.to_string(),
///     "propagation 5s + drain 25s + cleanup 3s = 33s exceeds grace period 30s",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Malformed {
        setting: &'static str,
        value: String,
    },
    Negative {
        setting: &'static str,
        value: String,
    },
    OverBudget(Budget),
}

/// The figures of a shutdown budget that does not fit the grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Budget {
    pub(crate) prestop: Duration,
    pub(crate) propagation: Duration,
    pub(crate) drain: Duration,
    pub(crate) cleanup: Duration,
    pub(crate) margin: Duration,
    pub(crate) total: Duration,
    pub(crate) grace: Duration,
}

impl ConfigError {
    pub(crate) fn malformed(setting: &'static str, value: &str) -> Self {
        Self {
            kind: Kind::Malformed {
                setting,
                value: value.to_owned(),
            },
        }
    }

    pub(crate) fn negative(setting: &'static str, value: &str) -> Self {
        Self {
            kind: Kind::Negative {
                setting,
                value: value.to_owned(),
            },
        }
    }

    pub(crate) fn over_budget(budget: Budget) -> Self {
        Self {
            kind: Kind::OverBudget(budget),
        }
    }

    /// Whether a value could not be parsed as a duration.
    #[must_use]
    pub fn is_malformed(&self) -> bool {
        matches!(self.kind, Kind::Malformed { .. })
    }

    /// Whether a value was negative.
    #[must_use]
    pub fn is_negative(&self) -> bool {
        matches!(self.kind, Kind::Negative { .. })
    }

    /// Whether propagation delay, drain, cleanup and margin add up to more than the grace
    /// period.
    #[must_use]
    pub fn is_over_budget(&self) -> bool {
        matches!(self.kind, Kind::OverBudget(_))
    }

    /// The setting the error is about (an environment variable name such as
    /// `ZDD_DRAIN_TIMEOUT`), or `None` when the timings as a whole do not fit.
    #[must_use]
    pub fn setting(&self) -> Option<&'static str> {
        match &self.kind {
            Kind::Malformed { setting, .. } | Kind::Negative { setting, .. } => Some(setting),
            Kind::OverBudget(_) => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Malformed { setting, value } => write!(
                f,
                "{setting}: invalid duration {value:?}: expected a number with a unit, such as 500ms, 5s or 1m"
            ),
            Kind::Negative { setting, value } => {
                write!(f, "{setting}: must not be negative, got {value:?}")
            }
            Kind::OverBudget(b) => {
                if !b.prestop.is_zero() {
                    write!(f, "prestop {} + ", format_duration(b.prestop))?;
                }
                write!(
                    f,
                    "propagation {} + drain {} + cleanup {}",
                    format_duration(b.propagation),
                    format_duration(b.drain),
                    format_duration(b.cleanup),
                )?;
                if !b.margin.is_zero() {
                    write!(f, " + margin {}", format_duration(b.margin))?;
                }
                write!(
                    f,
                    " = {} exceeds grace period {}",
                    format_duration(b.total),
                    format_duration(b.grace),
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}
