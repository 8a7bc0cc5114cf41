//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! Install any recorder (Prometheus, StatsD, …) before building the lifecycle. Nothing is
//! recorded on the request path: events are recorded when they happen (transitions, forced
//! closes, rejections, check runs), and the gauges of current work are sampled once a second
//! while [`Lifecycle::run`](crate::Lifecycle::run) runs, and at every transition.
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `zdd_phase` | gauge | | the current phase, 0 (`starting`) to 6 (`stopped`) |
//! | `zdd_phase_transitions_total` | counter | `phase` | transitions into each phase |
//! | `zdd_phase_duration_seconds` | histogram | `phase` | time spent in each phase, recorded on leaving it |
//! | `zdd_drain_duration_seconds` | gauge | | the last drain's duration |
//! | `zdd_in_flight_requests` | gauge | | requests in flight |
//! | `zdd_open_connections` | gauge | `protocol` (`http1`, `http2`, `unknown`) | open connections |
//! | `zdd_running_tasks` | gauge | | tracked background tasks |
//! | `zdd_forced_closes_total` | counter | `kind` (`request`, `connection`) | work cut off by forcing |
//! | `zdd_late_requests_rejected_total` | counter | | late requests answered 503 during the drain |
//! | `zdd_health_check_status` | gauge | `probe`, `check` | 1 pass, 0.5 warn, 0 fail |
//! | `zdd_health_check_duration_seconds` | histogram | `probe`, `check` | each check run's duration |
//! | `zdd_upgrades_total` | counter | `outcome` (`succeeded`, `failed`) | in-place upgrades to a new process |
//! | `zdd_connections_accepted_total` | counter | `listener` (its address) | connections accepted on each registered listener |
//!
//! Without the feature, every function here compiles to nothing.

#[cfg(not(feature = "metrics"))]
pub(crate) use self::disabled::*;
#[cfg(feature = "metrics")]
pub(crate) use self::enabled::*;

/// How often the current-work gauges are sampled while the lifecycle runs.
#[cfg(feature = "metrics")]
pub(crate) const SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(feature = "metrics")]
mod enabled {
    use std::time::Duration;

    use metrics::{counter, gauge, histogram};

    use crate::{Phase, tracker::Work};

    pub(crate) fn transition(from: Phase, to: Phase, time_in_previous: Option<Duration>) {
        gauge!("zdd_phase").set(f64::from(to as u8));
        counter!("zdd_phase_transitions_total", "phase" => to.as_str()).increment(1);
        if let Some(time) = time_in_previous {
            histogram!("zdd_phase_duration_seconds", "phase" => from.as_str())
                .record(time.as_secs_f64());
            if from == Phase::Draining {
                gauge!("zdd_drain_duration_seconds").set(time.as_secs_f64());
            }
        }
    }

    pub(crate) fn forced_close(kind: &'static str) {
        counter!("zdd_forced_closes_total", "kind" => kind).increment(1);
    }

    pub(crate) fn upgrade(outcome: &'static str) {
        counter!("zdd_upgrades_total", "outcome" => outcome).increment(1);
    }

    pub(crate) fn connection_accepted(listener: &str) {
        counter!("zdd_connections_accepted_total", "listener" => listener.to_owned()).increment(1);
    }

    #[cfg(feature = "tower")]
    pub(crate) fn late_request_rejected() {
        counter!("zdd_late_requests_rejected_total").increment(1);
    }

    /// One check run: `value` is 1 for pass, 0.5 for warn, 0 for fail.
    pub(crate) fn check_result(probe: &'static str, check: &str, value: f64, duration: Duration) {
        let labels = [("probe", probe.to_owned()), ("check", check.to_owned())];
        gauge!("zdd_health_check_status", &labels).set(value);
        histogram!("zdd_health_check_duration_seconds", &labels).record(duration.as_secs_f64());
    }

    /// Sets the gauges of current work.
    pub(crate) fn sample(work: &Work) {
        let (http1, http2) = work.stats().open_by_protocol();
        let open = work.connections().len();
        gauge!("zdd_in_flight_requests").set(work.in_flight_requests() as f64);
        gauge!("zdd_open_connections", "protocol" => "http1").set(http1 as f64);
        gauge!("zdd_open_connections", "protocol" => "http2").set(http2 as f64);
        gauge!("zdd_open_connections", "protocol" => "unknown")
            .set(open.saturating_sub(http1 + http2) as f64);
        gauge!("zdd_running_tasks").set(work.tasks().len() as f64);
    }
}

#[cfg(not(feature = "metrics"))]
mod disabled {
    use std::time::Duration;

    use crate::{Phase, tracker::Work};

    pub(crate) fn transition(_: Phase, _: Phase, _: Option<Duration>) {}
    pub(crate) fn forced_close(_: &'static str) {}
    #[cfg(feature = "tower")]
    pub(crate) fn late_request_rejected() {}
    pub(crate) fn upgrade(_: &'static str) {}
    pub(crate) fn connection_accepted(_: &str) {}
    pub(crate) fn check_result(_: &'static str, _: &str, _: f64, _: Duration) {}
    pub(crate) fn sample(_: &Work) {}
}
