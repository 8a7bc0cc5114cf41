//! The lifecycle behind zdd: phases, request and connection tracking, health probes,
//! configuration, signals, the shutdown sequence, cleanup hooks and the report.
//!
//! A service has one [`Lifecycle`]. Its phases only move forward:
//!
//! ```text
//! Starting → Serving → Unready → Draining → Forcing → CleaningUp → Stopped
//! ```
//!
//! | phase | readiness | liveness | startup | listener |
//! |---|---|---|---|---|
//! | Starting | 503 | 200 | 503 | open |
//! | Serving | 200 if checks pass | 200 | 200 | open |
//! | Unready | 503 | 200 | 200 | open, still accepting for the propagation delay |
//! | Draining | 503 | 200 | 200 | backlog served, then closed |
//! | Forcing | 503 | 200 | 200 | closed; remaining connections closed |
//! | CleaningUp | 503 | 200 | 200 | closed; hooks run newest first |
//! | Stopped | — | — | — | the serve call returns a [`ShutdownReport`] |
//!
//! Server adapters (`zdd-hyper`, `zdd-axum`) run [`Lifecycle::run`] beside their accept
//! loop and watch the phases; nothing in them decides about draining.
//!
//! # Examples
//!
//! The whole sequence without a server, on paused time:
//!
//! ```
//! use std::time::Duration;
//! use zdd_core::{Config, Lifecycle, Phase, Probe};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), zdd_core::ConfigError> {
//! let config = Config::builder().propagation_delay(Duration::from_secs(5)).build()?;
//! let lifecycle = Lifecycle::new(config);
//! let handle = lifecycle.handle();
//! handle.on_cleanup("pool", Duration::from_secs(1), async { /* pool.close().await */ });
//!
//! let sequence = tokio::spawn(lifecycle.run());
//! handle.reached(Phase::Serving).await;
//! let request = handle.track_request();
//!
//! handle.shutdown();
//! assert_eq!(handle.probe(Probe::Readiness).await.http_status(), 503);
//! assert_eq!(handle.probe(Probe::Liveness).await.http_status(), 200);
//!
//! handle.draining().await; // 5 s later
//! request.finish();
//! let report = sequence.await.unwrap();
//! assert!(report.is_graceful());
//! assert_eq!(report.time_in(Phase::Unready), Some(Duration::from_secs(5)));
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! - `tower`: [`layer::ZddLayer`], [`ProbeService`] and the admin listener's
//!   [`AdminService`].
//! - `signal`: [`Lifecycle::listen_for_signals`] (`SIGHUP` asks for an
//!   [upgrade]).
//! - `metrics`: phases, work in flight, forced closes and check results through the
//!   `metrics` facade; see [`metrics`].
//! - `systemd`: `READY=1` when serving, `STOPPING=1` when shutdown begins and `MAINPID=`
//!   when an upgrade hands over, on systemd's notification socket (Unix only).
//!
//! Every transition, trigger, forced request and hook outcome is a structured `tracing`
//! event with the target `zdd`.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[macro_use]
mod macros;
mod loom;

// From the bottom up; nothing imports upward.
pub mod config;
mod connection;
mod error;
mod guard;
pub mod health;
pub mod hooks;
pub mod lifecycle;
mod machine;
pub mod metrics;
mod notify;
pub mod phase;
mod report;
mod sequence;
mod shared;
pub mod stream;
pub mod tracker;
pub mod upgrade;

cfg_tower! {
    pub mod admin;
    pub mod layer;
}

#[cfg(all(test, zdd_loom))]
mod tests;

cfg_signal! {
    mod signal;
}

#[doc(inline)]
pub use self::{
    config::{Config, ConfigBuilder, SecondSigterm},
    connection::ConnectionGuard,
    error::ConfigError,
    guard::RequestGuard,
    health::{Check, CheckOutput, CheckReport, HealthReport, Probe, StartupTask, Status, Verdict},
    hooks::{HookOutcome, HookOutput, HookReport},
    lifecycle::{
        EventTurn, Lifecycle, LifecycleHandle, ListenerTag, UpgradeRequests, WeakLifecycleHandle,
    },
    machine::PhaseReached,
    phase::{Phase, Trigger},
    report::{ForceReason, ListenerReport, ShutdownReport},
    stream::UntilDraining,
    tracker::Protocol,
};

cfg_tower! {
    #[doc(inline)]
    pub use self::{
        admin::AdminService,
        health::{ProbePaths, ProbeService},
    };
}

/// The README's examples, compiled and run as doctests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
