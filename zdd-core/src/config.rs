//! Timing configuration: a builder, the `ZDD_*` environment, and validation.
//!
//! The shutdown budget:
//!
//! | setting | env | default |
//! |---|---|---|
//! | propagation delay | `ZDD_PROPAGATION_DELAY` | 5 s when `KUBERNETES_SERVICE_HOST` is set, else 0 |
//! | drain timeout | `ZDD_DRAIN_TIMEOUT` | 20 s |
//! | force wait (for servers to close what is left at the deadline) | `ZDD_FORCE_WAIT` | 1 s |
//! | cleanup timeout (all hooks) | `ZDD_CLEANUP_TIMEOUT` | 3 s |
//! | grace period it must fit in | `ZDD_GRACE_PERIOD` | 30 s |
//! | time a preStop hook already waited | `ZDD_PRESTOP_DELAY` | 0 |
//! | safety margin (process exit) | builder only | 1 s |
//!
//! The bounds of each connection, which servers take from here (each a `Serve` setter can
//! override):
//!
//! | setting | env | default |
//! |---|---|---|
//! | a new connection's first byte, from accept | `ZDD_FIRST_BYTE_TIMEOUT` | 5 s |
//! | a connection's first request head, from accept | `ZDD_FIRST_REQUEST_TIMEOUT` | 10 s |
//! | every later request head, from its first byte | `ZDD_HEADER_TIMEOUT` | 10 s |
//! | an idle keep-alive connection | `ZDD_IDLE_TIMEOUT` | 620 s |
//! | a WebSocket's close handshake at the drain | `ZDD_WEBSOCKET_CLOSE_TIMEOUT` | 1 s |
//!
//! The admin listener (see `zdd-hyper`'s `Serve::admin`):
//!
//! | setting | env | default |
//! |---|---|---|
//! | the admin listener's address, such as `0.0.0.0:9000` | `ZDD_ADMIN_ADDR` | none: no admin listener |
//! | whether the public listeners answer the probes too | `ZDD_PUBLIC_PROBES` | `true` |
//!
//! In-place restarts (see `zdd-hyper`'s `listen` and `Serve`):
//!
//! | setting | env | default |
//! |---|---|---|
//! | bind with `SO_REUSEPORT`, so a replacement can bind the same port | `ZDD_REUSE_PORT` | `false` |
//! | `SIGHUP` starts an upgrade to the binary at the same path | `ZDD_UPGRADE_ON_SIGHUP` | `true` |
//! | how long the new process may take to be ready | `ZDD_UPGRADE_TIMEOUT` | 30 s |
//!
//! Durations are human-readable (`500ms`, `5s`, `1m`, `1m 30s`). [`ConfigBuilder::build`]
//! fails with a [`ConfigError`] naming the setting when a value is malformed or negative,
//! when a connection bound is zero, when the first-byte timeout is longer than the
//! first-request timeout (both count from accept), and when
//! `prestop + propagation + drain + force wait + cleanup + margin` exceeds the grace period;
//! an address that does not parse, a boolean other than `true`/`false`, and
//! `ZDD_PUBLIC_PROBES=false` without `ZDD_ADMIN_ADDR` (no probe would be answered anywhere)
//! are errors too. A preStop hook's wait counts as propagation time already spent, so only the rest of the
//! propagation delay is waited after the trigger.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use zdd_core::Config;
//!
//! let config = Config::builder()
//!     .propagation_delay(Duration::from_secs(5))
//!     .drain_timeout(Duration::from_secs(15))
//!     .build()?;
//! assert_eq!(config.drain_timeout(), Duration::from_secs(15));
//!
//! // The same settings from the environment (here from a map, as a test would):
//! let env = [("ZDD_PROPAGATION_DELAY", "5s"), ("ZDD_DRAIN_TIMEOUT", "15s")];
//! let from_env = Config::builder()
//!     .with_env_from(|key| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string()))?
//!     .build()?;
//! assert_eq!(from_env, config);
//! # Ok::<(), zdd_core::ConfigError>(())
//! ```

use std::{net::SocketAddr, time::Duration};

use crate::{
    Trigger,
    error::{Budget, ConfigError},
};

/// Environment variable for the propagation delay.
pub const ENV_PROPAGATION_DELAY: &str = "ZDD_PROPAGATION_DELAY";
/// Environment variable for the drain timeout.
pub const ENV_DRAIN_TIMEOUT: &str = "ZDD_DRAIN_TIMEOUT";
/// Environment variable for the cleanup timeout.
pub const ENV_CLEANUP_TIMEOUT: &str = "ZDD_CLEANUP_TIMEOUT";
/// Environment variable for the grace period.
pub const ENV_GRACE_PERIOD: &str = "ZDD_GRACE_PERIOD";
/// Environment variable for the time a preStop hook already waited.
pub const ENV_PRESTOP_DELAY: &str = "ZDD_PRESTOP_DELAY";
/// Environment variable for the force wait.
pub const ENV_FORCE_WAIT: &str = "ZDD_FORCE_WAIT";
/// Environment variable for a new connection's first-byte timeout.
pub const ENV_FIRST_BYTE_TIMEOUT: &str = "ZDD_FIRST_BYTE_TIMEOUT";
/// Environment variable for a connection's first-request timeout.
pub const ENV_FIRST_REQUEST_TIMEOUT: &str = "ZDD_FIRST_REQUEST_TIMEOUT";
/// Environment variable for the header timeout of later requests.
pub const ENV_HEADER_TIMEOUT: &str = "ZDD_HEADER_TIMEOUT";
/// Environment variable for the idle keep-alive timeout.
pub const ENV_IDLE_TIMEOUT: &str = "ZDD_IDLE_TIMEOUT";
/// Environment variable for the WebSocket close handshake's timeout.
pub const ENV_WEBSOCKET_CLOSE_TIMEOUT: &str = "ZDD_WEBSOCKET_CLOSE_TIMEOUT";
/// Environment variable for the admin listener's address.
pub const ENV_ADMIN_ADDR: &str = "ZDD_ADMIN_ADDR";
/// Environment variable for whether the public listeners answer the probes.
pub const ENV_PUBLIC_PROBES: &str = "ZDD_PUBLIC_PROBES";
/// Environment variable for binding listeners with `SO_REUSEPORT`.
pub const ENV_REUSE_PORT: &str = "ZDD_REUSE_PORT";
/// Environment variable for whether `SIGHUP` starts an in-place upgrade.
pub const ENV_UPGRADE_ON_SIGHUP: &str = "ZDD_UPGRADE_ON_SIGHUP";
/// Environment variable for how long a new process may take to be ready in an upgrade.
pub const ENV_UPGRADE_TIMEOUT: &str = "ZDD_UPGRADE_TIMEOUT";
/// Set by Kubernetes in every container; its presence selects the Kubernetes defaults.
pub const ENV_KUBERNETES_SERVICE_HOST: &str = "KUBERNETES_SERVICE_HOST";

const KUBERNETES_PROPAGATION_DELAY: Duration = Duration::from_secs(5);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
const DEFAULT_CLEANUP_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
const DEFAULT_FORCE_WAIT: Duration = Duration::from_secs(1);
const DEFAULT_MARGIN: Duration = Duration::from_secs(1);
const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(620);
const DEFAULT_WEBSOCKET_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a second `SIGTERM` does.
///
/// Orchestrators sometimes repeat `SIGTERM`; treating the repeat as "hurry up" would cut
/// drains short for no reason, so the default is to log it and carry on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SecondSigterm {
    /// Log the signal and carry on with the sequence.
    #[default]
    Ignore,
    /// Skip straight to [`Phase::Forcing`](crate::Phase::Forcing), like a second `SIGINT`.
    Force,
}

/// Validated timing configuration for a [`Lifecycle`](crate::Lifecycle).
///
/// Build one with [`Config::builder`] or [`Config::from_env`]; see the
/// [module docs](crate::config) for the settings and their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    propagation_delay: Duration,
    /// Whether the propagation delay was set (builder or environment) rather than defaulted.
    propagation_delay_chosen: bool,
    drain_timeout: Duration,
    cleanup_timeout: Duration,
    grace_period: Duration,
    prestop_delay: Duration,
    force_wait: Duration,
    margin: Duration,
    first_byte_timeout: Duration,
    first_request_timeout: Duration,
    header_timeout: Duration,
    idle_timeout: Duration,
    websocket_close_timeout: Duration,
    second_sigterm: SecondSigterm,
    admin_addr: Option<SocketAddr>,
    public_probes: bool,
    reuse_port: bool,
    upgrade_on_sighup: bool,
    upgrade_timeout: Duration,
}

impl Config {
    /// A builder with every setting at its default.
    #[must_use]
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::new()
    }

    /// The defaults, adjusted by the `ZDD_*` environment variables.
    ///
    /// # Errors
    ///
    /// When a variable is not a valid non-negative duration, or the timings do not fit the
    /// grace period; the error names the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::builder().with_env()?.build()
    }

    /// How long the service keeps accepting after it turned unready, so load balancers
    /// notice before the listener closes. Already reduced by [`Config::prestop_delay`].
    #[must_use]
    pub fn propagation_delay(&self) -> Duration {
        self.propagation_delay.saturating_sub(self.prestop_delay)
    }

    /// How long the sequence keeps accepting after `trigger` turned it unready.
    ///
    /// An [`Trigger::Upgrade`] waits nothing: the new process already accepts on the same
    /// sockets, so there is no load balancer to tell. A signal comes after a preStop hook that may already have waited
    /// ([`Config::prestop_delay`]), so it gets [`Config::propagation_delay`], the rest. A
    /// [`Trigger::PreStop`] comes from the hook itself (the admin listener's `/prestop`),
    /// before anything was waited: it gets the whole delay, and the signal that follows the
    /// hook waits nothing more. Either way the time from the hook's start to the drain is
    /// the propagation delay, and nothing is waited twice.
    #[must_use]
    pub fn propagation_delay_after(&self, trigger: Trigger) -> Duration {
        match trigger {
            Trigger::PreStop => self.propagation_delay,
            Trigger::Upgrade => Duration::ZERO,
            _ => self.propagation_delay(),
        }
    }

    /// Whether the propagation delay is zero only because nothing set it: outside
    /// Kubernetes, without `ZDD_PROPAGATION_DELAY` or
    /// [`ConfigBuilder::propagation_delay`]. A service behind a load balancer then stops
    /// accepting while the balancer still routes to it; see
    /// [`LifecycleHandle::listening_on`](crate::LifecycleHandle::listening_on).
    #[must_use]
    pub fn propagation_delay_defaulted_to_zero(&self) -> bool {
        !self.propagation_delay_chosen && self.propagation_delay.is_zero()
    }

    /// How long in-flight work may take to finish before connections are forced closed.
    #[must_use]
    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    /// How long all cleanup hooks may take together.
    #[must_use]
    pub fn cleanup_timeout(&self) -> Duration {
        self.cleanup_timeout
    }

    /// The time the orchestrator allows between `SIGTERM` and `SIGKILL`.
    #[must_use]
    pub fn grace_period(&self) -> Duration {
        self.grace_period
    }

    /// The time a preStop hook already waited before the trigger.
    #[must_use]
    pub fn prestop_delay(&self) -> Duration {
        self.prestop_delay
    }

    /// How long forcing waits for servers to close what is left, after the drain deadline.
    #[must_use]
    pub fn force_wait(&self) -> Duration {
        self.force_wait
    }

    /// Time kept free inside the grace period for the process to exit.
    #[must_use]
    pub fn margin(&self) -> Duration {
        self.margin
    }

    /// How long a new connection may stay silent, from accept.
    #[must_use]
    pub fn first_byte_timeout(&self) -> Duration {
        self.first_byte_timeout
    }

    /// How long after accept a connection's first request head must be complete.
    #[must_use]
    pub fn first_request_timeout(&self) -> Duration {
        self.first_request_timeout
    }

    /// How long each later request head may take, from its first byte.
    #[must_use]
    pub fn header_timeout(&self) -> Duration {
        self.header_timeout
    }

    /// How long a keep-alive connection may stay idle before it is closed gracefully.
    #[must_use]
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// How long a WebSocket ended at the drain waits for the client's close frame.
    #[must_use]
    pub fn websocket_close_timeout(&self) -> Duration {
        self.websocket_close_timeout
    }

    /// What a second `SIGTERM` does.
    #[must_use]
    pub fn second_sigterm(&self) -> SecondSigterm {
        self.second_sigterm
    }

    /// Where the admin listener is bound, if one is configured: probes, `/metrics`,
    /// `/prestop` and `/maintenance`, answered in every phase until the report exists.
    #[must_use]
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Whether the public listeners answer the probes too (the default). Only `false` with
    /// an admin listener, so the probes are always answered somewhere.
    #[must_use]
    pub fn public_probes(&self) -> bool {
        self.public_probes
    }

    /// Whether listeners that zdd binds itself set `SO_REUSEPORT`, so a replacement process
    /// can bind the same port while this one drains. Off by default: two unrelated servers
    /// would silently share a port.
    #[must_use]
    pub fn reuse_port(&self) -> bool {
        self.reuse_port
    }

    /// Whether `SIGHUP` starts an in-place upgrade (with the `signal` feature). Default on.
    #[must_use]
    pub fn upgrade_on_sighup(&self) -> bool {
        self.upgrade_on_sighup
    }

    /// How long the new process of an in-place upgrade may take to be ready before the
    /// upgrade is abandoned (the new process stopped, this one serving on).
    #[must_use]
    pub fn upgrade_timeout(&self) -> Duration {
        self.upgrade_timeout
    }
}

impl Default for Config {
    /// The defaults, without reading `ZDD_*` variables (Kubernetes is still detected).
    fn default() -> Self {
        // The defaults always fit: 5 s + 20 s + 1 s + 3 s + 1 s = 30 s.
        match ConfigBuilder::new().build() {
            Ok(config) => config,
            Err(_) => unreachable!("the default timings fit the default grace period"),
        }
    }
}

/// Builds a [`Config`]. Every setter's docs end with its default.
#[derive(Debug, Clone, Default)]
pub struct ConfigBuilder {
    propagation_delay: Option<Duration>,
    drain_timeout: Option<Duration>,
    cleanup_timeout: Option<Duration>,
    grace_period: Option<Duration>,
    prestop_delay: Option<Duration>,
    force_wait: Option<Duration>,
    margin: Option<Duration>,
    first_byte_timeout: Option<Duration>,
    first_request_timeout: Option<Duration>,
    header_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    websocket_close_timeout: Option<Duration>,
    second_sigterm: SecondSigterm,
    in_kubernetes: Option<bool>,
    admin_addr: Option<SocketAddr>,
    public_probes: Option<bool>,
    reuse_port: Option<bool>,
    upgrade_on_sighup: Option<bool>,
    upgrade_timeout: Option<Duration>,
}

impl ConfigBuilder {
    /// A builder with every setting at its default.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder with the Kubernetes defaults whether or not `KUBERNETES_SERVICE_HOST` is
    /// set (a 5 s propagation delay).
    #[must_use]
    pub fn for_kubernetes() -> Self {
        Self {
            in_kubernetes: Some(true),
            ..Self::default()
        }
    }

    /// How long to keep accepting after turning unready.
    ///
    /// Default is 5 s when running in Kubernetes (`KUBERNETES_SERVICE_HOST` set), else 0.
    #[must_use]
    pub fn propagation_delay(mut self, delay: Duration) -> Self {
        self.propagation_delay = Some(delay);
        self
    }

    /// How long in-flight work may take to finish. Default is 20 s.
    #[must_use]
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }

    /// How long all cleanup hooks may take together. Default is 3 s.
    #[must_use]
    pub fn cleanup_timeout(mut self, timeout: Duration) -> Self {
        self.cleanup_timeout = Some(timeout);
        self
    }

    /// The orchestrator's grace period (`terminationGracePeriodSeconds`). Default is 30 s.
    #[must_use]
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = Some(grace);
        self
    }

    /// The time a preStop hook already waited before the trigger; it is taken off the
    /// propagation delay and counted against the grace period. Default is 0.
    #[must_use]
    pub fn prestop_delay(mut self, delay: Duration) -> Self {
        self.prestop_delay = Some(delay);
        self
    }

    /// How long forcing waits, after the drain deadline, for servers to close what is left
    /// (connections close at once; this bounds the last writes and socket teardown). It
    /// counts against the grace period. Default is 1 s.
    #[must_use]
    pub fn force_wait(mut self, wait: Duration) -> Self {
        self.force_wait = Some(wait);
        self
    }

    /// Time kept free inside the grace period for the process to exit after the report.
    /// Default is 1 s.
    #[must_use]
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = Some(margin);
        self
    }

    /// How long a new connection may stay silent before it is closed. Browsers and client
    /// pools open connections ahead of need; without a bound they would hold the drain open.
    /// Default is 5 s.
    #[must_use]
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = Some(timeout);
        self
    }

    /// How long after accept the first request's head must be complete, which cuts off
    /// slow-loris clients. Counted from accept, so it includes the first-byte wait and must
    /// not be shorter than it. Default is 10 s.
    #[must_use]
    pub fn first_request_timeout(mut self, timeout: Duration) -> Self {
        self.first_request_timeout = Some(timeout);
        self
    }

    /// How long the head of each later request on a keep-alive HTTP/1 connection may take,
    /// from its first byte. An idle connection is not bound by it. Default is 10 s.
    #[must_use]
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = Some(timeout);
        self
    }

    /// How long a connection may go without a new request before it is closed gracefully.
    /// Keep it longer than every load balancer's idle timeout in front of the service (AWS
    /// ALB 60 s, nginx 75 s, GCP 600 s), so the balancer always closes first. Default is
    /// 620 s.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// How long a WebSocket ended at the drain (close code 1001) waits for the client's
    /// close frame. It happens inside the drain, and forcing cuts it short. Default is 1 s.
    #[must_use]
    pub fn websocket_close_timeout(mut self, timeout: Duration) -> Self {
        self.websocket_close_timeout = Some(timeout);
        self
    }

    /// What a second `SIGTERM` does. Default is [`SecondSigterm::Ignore`].
    #[must_use]
    pub fn second_sigterm(mut self, action: SecondSigterm) -> Self {
        self.second_sigterm = action;
        self
    }

    /// Serves an admin listener at `addr` (probes, `/metrics`, `/prestop`, `/maintenance`),
    /// open in every phase until the report exists. Use a port of its own, such as
    /// `0.0.0.0:9000`. Default is none.
    #[must_use]
    pub fn admin_addr(mut self, addr: SocketAddr) -> Self {
        self.admin_addr = Some(addr);
        self
    }

    /// Whether the public listeners answer the probes too. Set it to `false` with an admin
    /// listener so public traffic cannot reach the probes. Default is `true`.
    #[must_use]
    pub fn public_probes(mut self, answer: bool) -> Self {
        self.public_probes = Some(answer);
        self
    }

    /// Whether listeners zdd binds itself set `SO_REUSEPORT`, so a replacement process can
    /// bind the same port while this one drains (an in-place restart without a balancer).
    /// Default is `false`: two unrelated servers would silently share a port.
    #[must_use]
    pub fn reuse_port(mut self, reuse: bool) -> Self {
        self.reuse_port = Some(reuse);
        self
    }

    /// Whether `SIGHUP` starts an in-place upgrade. Default is `true`.
    #[must_use]
    pub fn upgrade_on_sighup(mut self, upgrade: bool) -> Self {
        self.upgrade_on_sighup = Some(upgrade);
        self
    }

    /// How long the new process of an in-place upgrade may take to report ready. Default is
    /// 30 s.
    #[must_use]
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Self {
        self.upgrade_timeout = Some(timeout);
        self
    }

    /// Applies the `ZDD_*` variables of the process environment (and detects Kubernetes).
    ///
    /// # Errors
    ///
    /// When a variable is not valid Unicode or not a valid non-negative duration.
    pub fn with_env(self) -> Result<Self, ConfigError> {
        let mut not_unicode = None;
        let builder = self.with_env_from(|key| match std::env::var(key) {
            Ok(value) => Some(value),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(raw)) => {
                not_unicode.get_or_insert((key.to_owned(), raw.to_string_lossy().into_owned()));
                None
            }
        })?;
        match not_unicode {
            Some((key, value)) => Err(ConfigError::malformed(env_name(&key), &value)),
            None => Ok(builder),
        }
    }

    /// Applies `ZDD_*` variables looked up with `lookup` instead of the process environment
    /// (a map, a config file, a test table). `KUBERNETES_SERVICE_HOST` is looked up too.
    ///
    /// # Errors
    ///
    /// When a value is not a valid non-negative duration; the error names the variable.
    pub fn with_env_from<F>(mut self, mut lookup: F) -> Result<Self, ConfigError>
    where
        F: FnMut(&str) -> Option<String>,
    {
        let mut read = |key: &'static str| -> Result<Option<Duration>, ConfigError> {
            lookup(key)
                .map(|value| parse_duration(key, &value))
                .transpose()
        };
        if let Some(d) = read(ENV_PROPAGATION_DELAY)? {
            self.propagation_delay = Some(d);
        }
        if let Some(d) = read(ENV_DRAIN_TIMEOUT)? {
            self.drain_timeout = Some(d);
        }
        if let Some(d) = read(ENV_CLEANUP_TIMEOUT)? {
            self.cleanup_timeout = Some(d);
        }
        if let Some(d) = read(ENV_GRACE_PERIOD)? {
            self.grace_period = Some(d);
        }
        if let Some(d) = read(ENV_PRESTOP_DELAY)? {
            self.prestop_delay = Some(d);
        }
        for (key, slot) in [
            (ENV_FORCE_WAIT, &mut self.force_wait),
            (ENV_FIRST_BYTE_TIMEOUT, &mut self.first_byte_timeout),
            (ENV_FIRST_REQUEST_TIMEOUT, &mut self.first_request_timeout),
            (ENV_HEADER_TIMEOUT, &mut self.header_timeout),
            (ENV_IDLE_TIMEOUT, &mut self.idle_timeout),
            (
                ENV_WEBSOCKET_CLOSE_TIMEOUT,
                &mut self.websocket_close_timeout,
            ),
            (ENV_UPGRADE_TIMEOUT, &mut self.upgrade_timeout),
        ] {
            if let Some(d) = read(key)? {
                *slot = Some(d);
            }
        }
        if let Some(value) = lookup(ENV_ADMIN_ADDR) {
            self.admin_addr = Some(parse_addr(ENV_ADMIN_ADDR, &value)?);
        }
        if let Some(value) = lookup(ENV_PUBLIC_PROBES) {
            self.public_probes = Some(parse_bool(ENV_PUBLIC_PROBES, &value)?);
        }
        if let Some(value) = lookup(ENV_REUSE_PORT) {
            self.reuse_port = Some(parse_bool(ENV_REUSE_PORT, &value)?);
        }
        if let Some(value) = lookup(ENV_UPGRADE_ON_SIGHUP) {
            self.upgrade_on_sighup = Some(parse_bool(ENV_UPGRADE_ON_SIGHUP, &value)?);
        }
        if self.in_kubernetes.is_none() {
            self.in_kubernetes = Some(lookup(ENV_KUBERNETES_SERVICE_HOST).is_some());
        }
        Ok(self)
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// When a connection bound is zero, when the first-byte timeout is longer than the
    /// first-request timeout, or when `prestop + propagation + drain + force wait + cleanup + margin` exceeds the grace
    /// period.
    pub fn build(self) -> Result<Config, ConfigError> {
        let in_kubernetes = self
            .in_kubernetes
            .unwrap_or_else(|| std::env::var_os(ENV_KUBERNETES_SERVICE_HOST).is_some());
        let default_propagation = if in_kubernetes {
            KUBERNETES_PROPAGATION_DELAY
        } else {
            Duration::ZERO
        };
        let config = Config {
            propagation_delay: self.propagation_delay.unwrap_or(default_propagation),
            propagation_delay_chosen: self.propagation_delay.is_some(),
            drain_timeout: self.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
            cleanup_timeout: self.cleanup_timeout.unwrap_or(DEFAULT_CLEANUP_TIMEOUT),
            grace_period: self.grace_period.unwrap_or(DEFAULT_GRACE_PERIOD),
            prestop_delay: self.prestop_delay.unwrap_or(Duration::ZERO),
            force_wait: self.force_wait.unwrap_or(DEFAULT_FORCE_WAIT),
            margin: self.margin.unwrap_or(DEFAULT_MARGIN),
            first_byte_timeout: self
                .first_byte_timeout
                .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT),
            first_request_timeout: self
                .first_request_timeout
                .unwrap_or(DEFAULT_FIRST_REQUEST_TIMEOUT),
            header_timeout: self.header_timeout.unwrap_or(DEFAULT_HEADER_TIMEOUT),
            idle_timeout: self.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
            websocket_close_timeout: self
                .websocket_close_timeout
                .unwrap_or(DEFAULT_WEBSOCKET_CLOSE_TIMEOUT),
            second_sigterm: self.second_sigterm,
            admin_addr: self.admin_addr,
            public_probes: self.public_probes.unwrap_or(true),
            reuse_port: self.reuse_port.unwrap_or(false),
            upgrade_on_sighup: self.upgrade_on_sighup.unwrap_or(true),
            upgrade_timeout: self.upgrade_timeout.unwrap_or(DEFAULT_UPGRADE_TIMEOUT),
        };
        if !config.public_probes && config.admin_addr.is_none() {
            return Err(ConfigError::needs(
                (ENV_PUBLIC_PROBES, "false"),
                ENV_ADMIN_ADDR,
                "without an admin listener no probe would be answered anywhere",
            ));
        }
        config.check_connection_bounds()?;
        let budget = Budget {
            prestop: config.prestop_delay,
            propagation: config.propagation_delay(),
            drain: config.drain_timeout,
            force_wait: config.force_wait,
            cleanup: config.cleanup_timeout,
            margin: config.margin,
            total: [
                config.prestop_delay,
                config.propagation_delay(),
                config.drain_timeout,
                config.force_wait,
                config.cleanup_timeout,
                config.margin,
            ]
            .into_iter()
            .fold(Duration::ZERO, Duration::saturating_add),
            grace: config.grace_period,
        };
        if budget.total > budget.grace {
            return Err(ConfigError::over_budget(budget));
        }
        Ok(config)
    }
}

impl Config {
    /// The connection bounds: each longer than zero, and the first byte's not longer than
    /// the first request's, which counts from the same moment.
    fn check_connection_bounds(&self) -> Result<(), ConfigError> {
        for (setting, value) in [
            (ENV_FIRST_BYTE_TIMEOUT, self.first_byte_timeout),
            (ENV_FIRST_REQUEST_TIMEOUT, self.first_request_timeout),
            (ENV_HEADER_TIMEOUT, self.header_timeout),
            (ENV_IDLE_TIMEOUT, self.idle_timeout),
            (ENV_UPGRADE_TIMEOUT, self.upgrade_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::zero(setting));
            }
        }
        if self.first_byte_timeout > self.first_request_timeout {
            return Err(ConfigError::longer(
                (ENV_FIRST_BYTE_TIMEOUT, self.first_byte_timeout),
                (ENV_FIRST_REQUEST_TIMEOUT, self.first_request_timeout),
            ));
        }
        Ok(())
    }
}

/// Maps a looked-up key back to the `'static` name used in errors.
fn env_name(key: &str) -> &'static str {
    [
        ENV_PROPAGATION_DELAY,
        ENV_DRAIN_TIMEOUT,
        ENV_CLEANUP_TIMEOUT,
        ENV_GRACE_PERIOD,
        ENV_PRESTOP_DELAY,
        ENV_FORCE_WAIT,
        ENV_FIRST_BYTE_TIMEOUT,
        ENV_FIRST_REQUEST_TIMEOUT,
        ENV_HEADER_TIMEOUT,
        ENV_IDLE_TIMEOUT,
        ENV_WEBSOCKET_CLOSE_TIMEOUT,
        ENV_ADMIN_ADDR,
        ENV_PUBLIC_PROBES,
        ENV_REUSE_PORT,
        ENV_UPGRADE_ON_SIGHUP,
        ENV_UPGRADE_TIMEOUT,
        ENV_KUBERNETES_SERVICE_HOST,
    ]
    .into_iter()
    .find(|name| *name == key)
    .unwrap_or("ZDD_*")
}

/// Parses a human-readable, non-negative duration such as `500ms`, `5s` or `1m 30s`.
fn parse_duration(setting: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let trimmed = value.trim();
    if trimmed.starts_with('-') {
        return Err(ConfigError::negative(setting, value));
    }
    humantime::parse_duration(trimmed).map_err(|_| ConfigError::malformed(setting, value))
}

/// Parses an IP address and port such as `0.0.0.0:9000` or `[::]:9000`.
fn parse_addr(setting: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.trim().parse().map_err(|_| {
        ConfigError::invalid(
            setting,
            value,
            "an IP address and port, such as 0.0.0.0:9000 or [::]:9000",
        )
    })
}

/// Parses `true` or `false` (any case).
fn parse_bool(setting: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::invalid(setting, value, "true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_table(table: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::builder()
            .with_env_from(|key| {
                table
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (*v).to_owned())
            })?
            .build()
    }

    #[test]
    fn defaults_outside_kubernetes() {
        let config = from_table(&[]).unwrap();
        assert_eq!(config.propagation_delay(), Duration::ZERO);
        assert_eq!(config.drain_timeout(), Duration::from_secs(20));
        assert_eq!(config.cleanup_timeout(), Duration::from_secs(3));
        assert_eq!(config.grace_period(), Duration::from_secs(30));
        assert_eq!(config.prestop_delay(), Duration::ZERO);
        assert_eq!(config.force_wait(), Duration::from_secs(1));
        assert_eq!(config.margin(), Duration::from_secs(1));
        assert_eq!(config.first_byte_timeout(), Duration::from_secs(5));
        assert_eq!(config.first_request_timeout(), Duration::from_secs(10));
        assert_eq!(config.header_timeout(), Duration::from_secs(10));
        assert_eq!(config.idle_timeout(), Duration::from_secs(620));
        assert_eq!(config.websocket_close_timeout(), Duration::from_secs(1));
        assert_eq!(config.second_sigterm(), SecondSigterm::Ignore);
    }

    #[test]
    fn the_admin_listener_comes_from_the_environment() {
        let config = from_table(&[]).unwrap();
        assert_eq!(config.admin_addr(), None);
        assert!(config.public_probes());

        let config = from_table(&[
            ("ZDD_ADMIN_ADDR", " 0.0.0.0:9000 "),
            ("ZDD_PUBLIC_PROBES", "FALSE"),
        ])
        .unwrap();
        assert_eq!(config.admin_addr(), Some("0.0.0.0:9000".parse().unwrap()));
        assert!(!config.public_probes());
        let v6 = from_table(&[("ZDD_ADMIN_ADDR", "[::1]:9000")]).unwrap();
        assert_eq!(v6.admin_addr(), Some("[::1]:9000".parse().unwrap()));
    }

    #[test]
    fn the_restart_settings_come_from_the_environment() {
        let config = from_table(&[]).unwrap();
        assert!(!config.reuse_port());
        assert!(config.upgrade_on_sighup());
        assert_eq!(config.upgrade_timeout(), Duration::from_secs(30));
        let config = from_table(&[
            ("ZDD_REUSE_PORT", "true"),
            ("ZDD_UPGRADE_ON_SIGHUP", "false"),
            ("ZDD_UPGRADE_TIMEOUT", "5s"),
        ])
        .unwrap();
        assert!(config.reuse_port());
        assert!(!config.upgrade_on_sighup());
        assert_eq!(config.upgrade_timeout(), Duration::from_secs(5));
        for (table, message) in [
            (
                ("ZDD_REUSE_PORT", "yes"),
                r#"ZDD_REUSE_PORT: invalid value "yes": expected true or false"#,
            ),
            (
                ("ZDD_UPGRADE_ON_SIGHUP", "1"),
                r#"ZDD_UPGRADE_ON_SIGHUP: invalid value "1": expected true or false"#,
            ),
            (
                ("ZDD_UPGRADE_TIMEOUT", "0s"),
                "ZDD_UPGRADE_TIMEOUT: must be longer than 0",
            ),
        ] {
            assert_eq!(from_table(&[table]).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn bad_admin_settings_are_errors_naming_them() {
        for (table, message) in [
            (
                &[("ZDD_ADMIN_ADDR", "9000")][..],
                r#"ZDD_ADMIN_ADDR: invalid value "9000": expected an IP address and port, such as 0.0.0.0:9000 or [::]:9000"#,
            ),
            (
                &[("ZDD_ADMIN_ADDR", "localhost:9000")][..],
                r#"ZDD_ADMIN_ADDR: invalid value "localhost:9000": expected an IP address and port, such as 0.0.0.0:9000 or [::]:9000"#,
            ),
            (
                &[("ZDD_ADMIN_ADDR", "0.0.0.0:70000")][..],
                r#"ZDD_ADMIN_ADDR: invalid value "0.0.0.0:70000": expected an IP address and port, such as 0.0.0.0:9000 or [::]:9000"#,
            ),
            (
                &[
                    ("ZDD_ADMIN_ADDR", "0.0.0.0:9000"),
                    ("ZDD_PUBLIC_PROBES", "no"),
                ][..],
                r#"ZDD_PUBLIC_PROBES: invalid value "no": expected true or false"#,
            ),
            (
                &[("ZDD_PUBLIC_PROBES", "false")][..],
                "ZDD_PUBLIC_PROBES=false needs ZDD_ADMIN_ADDR: without an admin listener no probe would be answered anywhere",
            ),
        ] {
            let error = from_table(table).unwrap_err();
            assert_eq!(error.to_string(), message);
            assert_eq!(error.setting(), Some(table[table.len() - 1].0));
            assert!(error.is_malformed() || error.is_inconsistent());
        }
        // The builder says the same.
        let error = Config::builder().public_probes(false).build().unwrap_err();
        assert!(error.is_inconsistent());
        assert_eq!(error.setting(), Some("ZDD_PUBLIC_PROBES"));
    }

    #[test]
    fn every_timing_comes_from_the_environment_too() {
        let config = from_table(&[
            ("ZDD_FORCE_WAIT", "2s"),
            ("ZDD_GRACE_PERIOD", "31s"),
            ("ZDD_FIRST_BYTE_TIMEOUT", "2s"),
            ("ZDD_FIRST_REQUEST_TIMEOUT", "3s"),
            ("ZDD_HEADER_TIMEOUT", "4s"),
            ("ZDD_IDLE_TIMEOUT", "90s"),
            ("ZDD_WEBSOCKET_CLOSE_TIMEOUT", "500ms"),
        ])
        .unwrap();
        assert_eq!(config.force_wait(), Duration::from_secs(2));
        assert_eq!(config.first_byte_timeout(), Duration::from_secs(2));
        assert_eq!(config.first_request_timeout(), Duration::from_secs(3));
        assert_eq!(config.header_timeout(), Duration::from_secs(4));
        assert_eq!(config.idle_timeout(), Duration::from_secs(90));
        assert_eq!(config.websocket_close_timeout(), Duration::from_millis(500));
    }

    #[test]
    fn connection_bounds_that_cannot_work_are_errors_naming_them() {
        let table: &[(&[(&str, &str)], &str)] = &[
            (
                &[("ZDD_FIRST_BYTE_TIMEOUT", "0s")],
                "ZDD_FIRST_BYTE_TIMEOUT: must be longer than 0",
            ),
            (
                &[("ZDD_HEADER_TIMEOUT", "0ms")],
                "ZDD_HEADER_TIMEOUT: must be longer than 0",
            ),
            (
                &[("ZDD_IDLE_TIMEOUT", "0s")],
                "ZDD_IDLE_TIMEOUT: must be longer than 0",
            ),
            (
                &[("ZDD_FIRST_BYTE_TIMEOUT", "12s")],
                "ZDD_FIRST_BYTE_TIMEOUT: 12s is longer than ZDD_FIRST_REQUEST_TIMEOUT (10s), which bounds it",
            ),
            (
                &[("ZDD_FORCE_WAIT", "1m")],
                "propagation 0s + drain 20s + force wait 1m + cleanup 3s + margin 1s = 1m 24s exceeds grace period 30s",
            ),
        ];
        for (vars, message) in table {
            let err = from_table(vars).unwrap_err();
            assert_eq!(err.to_string(), *message, "{vars:?}");
            if err.is_inconsistent() {
                assert_eq!(err.setting(), Some(vars[0].0));
            }
        }
    }

    #[test]
    fn kubernetes_is_detected_and_defaults_fit_the_default_grace_period() {
        let config = from_table(&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")]).unwrap();
        assert_eq!(config.propagation_delay(), Duration::from_secs(5));
        let preset = ConfigBuilder::for_kubernetes().build().unwrap();
        assert_eq!(preset, config);
    }

    #[test]
    fn human_readable_durations_are_parsed() {
        let config = from_table(&[
            ("ZDD_PROPAGATION_DELAY", "500ms"),
            ("ZDD_DRAIN_TIMEOUT", "1m"),
            ("ZDD_CLEANUP_TIMEOUT", " 2s "),
            ("ZDD_GRACE_PERIOD", "2m 30s"),
            ("ZDD_PRESTOP_DELAY", "200ms"),
        ])
        .unwrap();
        assert_eq!(config.propagation_delay(), Duration::from_millis(300));
        assert_eq!(config.drain_timeout(), Duration::from_secs(60));
        assert_eq!(config.cleanup_timeout(), Duration::from_secs(2));
        assert_eq!(config.grace_period(), Duration::from_secs(150));
        assert_eq!(config.prestop_delay(), Duration::from_millis(200));
    }

    #[test]
    fn every_bad_input_is_an_error_naming_the_setting() {
        let table: &[(&str, &str, &str)] = &[
            (
                "ZDD_DRAIN_TIMEOUT",
                "abc",
                r#"ZDD_DRAIN_TIMEOUT: invalid duration "abc": expected a number with a unit, such as 500ms, 5s or 1m"#,
            ),
            (
                "ZDD_PROPAGATION_DELAY",
                "5",
                r#"ZDD_PROPAGATION_DELAY: invalid duration "5": expected a number with a unit, such as 500ms, 5s or 1m"#,
            ),
            (
                "ZDD_CLEANUP_TIMEOUT",
                "",
                r#"ZDD_CLEANUP_TIMEOUT: invalid duration "": expected a number with a unit, such as 500ms, 5s or 1m"#,
            ),
            (
                "ZDD_GRACE_PERIOD",
                "30 parsecs",
                r#"ZDD_GRACE_PERIOD: invalid duration "30 parsecs": expected a number with a unit, such as 500ms, 5s or 1m"#,
            ),
            (
                "ZDD_PRESTOP_DELAY",
                "-5s",
                r#"ZDD_PRESTOP_DELAY: must not be negative, got "-5s""#,
            ),
            (
                "ZDD_DRAIN_TIMEOUT",
                " -1ms",
                r#"ZDD_DRAIN_TIMEOUT: must not be negative, got " -1ms""#,
            ),
        ];
        for (key, value, message) in table {
            let err = from_table(&[(key, value)]).unwrap_err();
            assert_eq!(err.to_string(), *message, "for {key}={value:?}");
            assert_eq!(err.setting(), Some(*key));
            assert!(err.is_malformed() || err.is_negative());
            assert!(!err.is_over_budget());
        }
    }

    #[test]
    fn timings_that_do_not_fit_the_grace_period_are_rejected() {
        let table: &[(&[(&str, &str)], &str)] = &[
            (
                &[
                    ("ZDD_PROPAGATION_DELAY", "5s"),
                    ("ZDD_DRAIN_TIMEOUT", "25s"),
                ],
                "propagation 5s + drain 25s + force wait 1s + cleanup 3s + margin 1s = 35s exceeds grace period 30s",
            ),
            (
                &[("ZDD_GRACE_PERIOD", "10s")],
                "propagation 0s + drain 20s + force wait 1s + cleanup 3s + margin 1s = 25s exceeds grace period 10s",
            ),
            (
                &[
                    ("ZDD_PRESTOP_DELAY", "10s"),
                    ("ZDD_PROPAGATION_DELAY", "12s"),
                    ("ZDD_DRAIN_TIMEOUT", "15s"),
                ],
                "prestop 10s + propagation 2s + drain 15s + force wait 1s + cleanup 3s + margin 1s = 32s exceeds grace period 30s",
            ),
        ];
        for (vars, message) in table {
            let err = from_table(vars).unwrap_err();
            assert!(err.is_over_budget());
            assert_eq!(err.setting(), None);
            assert_eq!(err.to_string(), *message);
        }
    }

    #[test]
    fn a_budget_that_exactly_fits_is_accepted() {
        let config = Config::builder()
            .propagation_delay(Duration::from_secs(5))
            .drain_timeout(Duration::from_secs(20))
            .cleanup_timeout(Duration::from_secs(3))
            .force_wait(Duration::from_secs(1))
            .margin(Duration::from_secs(1))
            .grace_period(Duration::from_secs(30))
            .build()
            .unwrap();
        assert_eq!(config.propagation_delay(), Duration::from_secs(5));
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let err = Config::builder()
            .drain_timeout(Duration::MAX)
            .cleanup_timeout(Duration::MAX)
            .build()
            .unwrap_err();
        assert!(err.is_over_budget());
    }

    #[test]
    fn prestop_longer_than_propagation_leaves_no_delay() {
        let config = from_table(&[
            ("ZDD_PRESTOP_DELAY", "8s"),
            ("ZDD_PROPAGATION_DELAY", "5s"),
            ("ZDD_GRACE_PERIOD", "40s"),
        ])
        .unwrap();
        assert_eq!(config.propagation_delay(), Duration::ZERO);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        const SETTINGS: [&str; 11] = [
            ENV_PROPAGATION_DELAY,
            ENV_DRAIN_TIMEOUT,
            ENV_CLEANUP_TIMEOUT,
            ENV_GRACE_PERIOD,
            ENV_PRESTOP_DELAY,
            ENV_FORCE_WAIT,
            ENV_FIRST_BYTE_TIMEOUT,
            ENV_FIRST_REQUEST_TIMEOUT,
            ENV_HEADER_TIMEOUT,
            ENV_IDLE_TIMEOUT,
            ENV_WEBSOCKET_CLOSE_TIMEOUT,
        ];

        /// Values an operator might type, and values an attacker would.
        fn value() -> impl Strategy<Value = Option<String>> {
            prop::option::of(prop_oneof![
                any::<String>(),
                "-?[0-9]{1,25}(ns|us|ms|s|m|h|d|w|M|y)?",
                "[0-9]{1,4}(ms|s|m) [0-9]{1,4}(ms|s)",
                " *[0-9.e+-]{1,12} *[a-z]{0,8}",
            ])
        }

        proptest! {
            #[test]
            fn no_value_panics_and_every_error_names_its_setting(
                values in prop::array::uniform11(value())
            ) {
                let table: Vec<(&str, &str)> = SETTINGS
                    .iter()
                    .zip(&values)
                    .filter_map(|(key, value)| Some((*key, value.as_deref()?)))
                    .collect();
                match from_table(&table) {
                    Ok(config) => {
                        let total = [
                            config.prestop_delay(),
                            config.propagation_delay(),
                            config.drain_timeout(),
                            config.force_wait(),
                            config.cleanup_timeout(),
                            config.margin(),
                        ]
                        .into_iter()
                        .fold(Duration::ZERO, Duration::saturating_add);
                        prop_assert!(total <= config.grace_period());
                    }
                    Err(error) => {
                        let message = error.to_string();
                        match error.setting() {
                            Some(setting) => {
                                // A value that cannot be read is the one set; an inconsistent
                                // one may be a default that a set value contradicts.
                                if error.is_malformed() || error.is_negative() {
                                    prop_assert!(table.iter().any(|(key, _)| *key == setting));
                                }
                                prop_assert!(SETTINGS.contains(&setting));
                                prop_assert!(message.starts_with(setting), "{message}");
                            }
                            None => {
                                prop_assert!(error.is_over_budget());
                                prop_assert!(message.contains("exceeds grace period"), "{message}");
                            }
                        }
                    }
                }
            }
        }
    }
}
