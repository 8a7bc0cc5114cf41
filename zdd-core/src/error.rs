//! Errors returned by zdd-core.

use std::{fmt, time::Duration};

use humantime::format_duration;

/// A configuration value was malformed, negative, zero where it must not be, inconsistent
/// with another, needs a setting that is missing, or the timings do not fit the grace period.
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
///     "propagation 5s + drain 25s + force wait 1s + cleanup 3s = 34s exceeds grace period 30s",
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
    /// Not a duration setting: `expected` says what the value should look like.
    Invalid {
        setting: &'static str,
        value: String,
        expected: &'static str,
    },
    /// `setting` has a value that only works when `needs` is set too.
    Needs {
        setting: &'static str,
        value: String,
        needs: &'static str,
        why: &'static str,
    },
    Negative {
        setting: &'static str,
        value: String,
    },
    Zero {
        setting: &'static str,
    },
    /// `setting` is longer than `limit_setting`, which bounds it.
    Longer {
        setting: &'static str,
        value: Duration,
        limit_setting: &'static str,
        limit: Duration,
    },
    OverBudget(Box<Budget>),
}

/// The figures of a shutdown budget that does not fit the grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Budget {
    pub(crate) prestop: Duration,
    pub(crate) propagation: Duration,
    pub(crate) drain: Duration,
    pub(crate) force_wait: Duration,
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

    pub(crate) fn invalid(setting: &'static str, value: &str, expected: &'static str) -> Self {
        Self {
            kind: Kind::Invalid {
                setting,
                value: value.to_owned(),
                expected,
            },
        }
    }

    pub(crate) fn needs(
        (setting, value): (&'static str, &str),
        needs: &'static str,
        why: &'static str,
    ) -> Self {
        Self {
            kind: Kind::Needs {
                setting,
                value: value.to_owned(),
                needs,
                why,
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

    pub(crate) fn zero(setting: &'static str) -> Self {
        Self {
            kind: Kind::Zero { setting },
        }
    }

    pub(crate) fn longer(
        (setting, value): (&'static str, Duration),
        (limit_setting, limit): (&'static str, Duration),
    ) -> Self {
        Self {
            kind: Kind::Longer {
                setting,
                value,
                limit_setting,
                limit,
            },
        }
    }

    pub(crate) fn over_budget(budget: Budget) -> Self {
        Self {
            kind: Kind::OverBudget(Box::new(budget)),
        }
    }

    /// Whether a value could not be parsed (as a duration, an address or a boolean).
    #[must_use]
    pub fn is_malformed(&self) -> bool {
        matches!(self.kind, Kind::Malformed { .. } | Kind::Invalid { .. })
    }

    /// Whether a value was negative.
    #[must_use]
    pub fn is_negative(&self) -> bool {
        matches!(self.kind, Kind::Negative { .. })
    }

    /// Whether a value that must be positive was zero, or longer than the setting that bounds
    /// it (the first-byte timeout longer than the first-request timeout, which counts from the
    /// same moment and so includes it), or a setting needs another that is missing
    /// (`ZDD_PUBLIC_PROBES=false` without `ZDD_ADMIN_ADDR`).
    #[must_use]
    pub fn is_inconsistent(&self) -> bool {
        matches!(
            self.kind,
            Kind::Zero { .. } | Kind::Longer { .. } | Kind::Needs { .. }
        )
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
            Kind::Malformed { setting, .. }
            | Kind::Invalid { setting, .. }
            | Kind::Needs { setting, .. }
            | Kind::Negative { setting, .. }
            | Kind::Zero { setting }
            | Kind::Longer { setting, .. } => Some(setting),
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
            Kind::Invalid {
                setting,
                value,
                expected,
            } => write!(f, "{setting}: invalid value {value:?}: expected {expected}"),
            Kind::Needs {
                setting,
                value,
                needs,
                why,
            } => write!(f, "{setting}={value} needs {needs}: {why}"),
            Kind::Negative { setting, value } => {
                write!(f, "{setting}: must not be negative, got {value:?}")
            }
            Kind::Zero { setting } => write!(f, "{setting}: must be longer than 0"),
            Kind::Longer {
                setting,
                value,
                limit_setting,
                limit,
            } => write!(
                f,
                "{setting}: {} is longer than {limit_setting} ({}), which bounds it",
                format_duration(*value),
                format_duration(*limit),
            ),
            Kind::OverBudget(b) => {
                if !b.prestop.is_zero() {
                    write!(f, "prestop {} + ", format_duration(b.prestop))?;
                }
                write!(
                    f,
                    "propagation {} + drain {}",
                    format_duration(b.propagation),
                    format_duration(b.drain),
                )?;
                if !b.force_wait.is_zero() {
                    write!(f, " + force wait {}", format_duration(b.force_wait))?;
                }
                write!(f, " + cleanup {}", format_duration(b.cleanup))?;
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
