use std::{
    borrow::Cow,
    fmt,
    future::Future,
    sync::{Arc, Weak},
    time::Duration,
};

use tokio::task::JoinHandle;
use tokio_util::{sync::CancellationToken, task::task_tracker::TrackedFuture};

use super::EventTurn;
use crate::{
    Config, Phase, PhaseReached, Trigger,
    connection::ConnectionGuard,
    guard::RequestGuard,
    health::{Check, HealthReport, Probe, StartupTask},
    hooks::{Hook, HookOutput},
    loom::sync::watch,
    shared::Shared,
};

/// A cheap, cloneable handle to a [`Lifecycle`](crate::Lifecycle).
///
/// Holding a handle never holds the drain open: only [`RequestGuard`]s, [`ConnectionGuard`]s
/// and tracked tasks do. Cloning is one reference-count increment.
///
/// See the [lifecycle module docs](crate::lifecycle) for an example.
#[derive(Clone)]
pub struct LifecycleHandle {
    pub(crate) shared: Arc<Shared>,
}

impl LifecycleHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The current phase. A single atomic load.
    #[must_use]
    #[inline]
    pub fn phase(&self) -> Phase {
        self.shared.machine().phase()
    }

    /// Whether shutdown has begun (the phase is [`Phase::Unready`] or later).
    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        self.phase().is_shutting_down()
    }

    /// Tells the lifecycle that a public listener is open at `addr`; server adapters call it
    /// once per listener.
    ///
    /// When the service is reachable from the network (any address but loopback) and its
    /// propagation delay is zero only because nothing set it (outside Kubernetes, see
    /// [`Config::propagation_delay_defaulted_to_zero`]), this logs one warning for the
    /// lifecycle's whole life: behind a load balancer, the listener would close while the
    /// balancer still sends it traffic. Setting `ZDD_PROPAGATION_DELAY`, even to `0s`,
    /// silences it.
    ///
    /// # Examples
    ///
    /// ```
    /// use zdd_core::{Config, Lifecycle};
    ///
    /// let config = Config::builder()
    ///     .with_env_from(|_| None)? // nothing set, not in Kubernetes
    ///     .build()?;
    /// assert!(config.propagation_delay_defaulted_to_zero());
    /// let lifecycle = Lifecycle::new(config);
    /// lifecycle.handle().listening_on("0.0.0.0:3000".parse().unwrap()); // warns once
    /// # Ok::<(), zdd_core::ConfigError>(())
    /// ```
    pub fn listening_on(&self, addr: std::net::SocketAddr) {
        if self.shared.config().propagation_delay_defaulted_to_zero()
            && !addr.ip().is_loopback()
            && self.shared.first_no_delay_warning()
        {
            warn!(
                addr = %addr,
                setting = crate::config::ENV_PROPAGATION_DELAY,
                "the propagation delay is 0 (the default outside Kubernetes) and the service listens on a network address: behind a load balancer, requests still routed to it after shutdown starts would be refused. Set ZDD_PROPAGATION_DELAY for your balancer (docs/operations.md in zdd's repository gives the values), or to 0s if nothing is in front of the service"
            );
        }
    }

    /// A receiver that sees every phase change.
    #[must_use]
    pub fn watch(&self) -> watch::Receiver<Phase> {
        self.shared.machine().subscribe()
    }

    /// Completes once `phase` (or a later one) is reached.
    pub fn reached(&self, phase: Phase) -> PhaseReached {
        self.shared.machine().reached(phase)
    }

    /// A receiver whose value turns `true` once `phase` (or a later one) is reached. Its
    /// value changes only then, so a task that selects on [`changed`] for a few phases is
    /// woken only for those, not at every transition. [`reached`](Self::reached) is the
    /// same as a future; this one needs no allocation.
    ///
    /// [`changed`]: watch::Receiver::changed
    ///
    /// # Examples
    ///
    /// ```
    /// use zdd_core::{Config, Lifecycle, Phase};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let lifecycle = Lifecycle::new(Config::default());
    /// let handle = lifecycle.handle();
    /// let mut draining = handle.milestone(Phase::Draining);
    /// assert!(!*draining.borrow());
    /// handle.shutdown(); // unready: the draining milestone does not change
    /// assert!(!draining.has_changed().unwrap());
    /// tokio::spawn(lifecycle.run());
    /// draining.changed().await.unwrap();
    /// assert!(*draining.borrow());
    /// # }
    /// ```
    #[must_use]
    pub fn milestone(&self, phase: Phase) -> watch::Receiver<bool> {
        self.shared.machine().milestone(phase)
    }

    /// Completes when shutdown is triggered ([`Phase::Unready`]).
    pub fn shutdown_requested(&self) -> PhaseReached {
        self.reached(Phase::Unready)
    }

    /// The draining notice: completes when [`Phase::Draining`] starts.
    ///
    /// Long-lived handlers (SSE streams, WebSockets, streaming bodies) await this and finish
    /// on their own, so the drain does not have to force them.
    ///
    /// # Examples
    ///
    /// ```
    /// use zdd_core::{Config, Lifecycle};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let lifecycle = Lifecycle::new(Config::default());
    /// let handle = lifecycle.handle();
    /// let stream_handle = handle.clone();
    /// // A long-lived handler: streams until draining starts, then ends cleanly.
    /// let stream = tokio::spawn(async move {
    ///     let _request = stream_handle.track_request();
    ///     let mut sent = 0;
    ///     let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    ///     let draining = stream_handle.draining();
    ///     tokio::pin!(draining);
    ///     loop {
    ///         tokio::select! {
    ///             _ = &mut draining => break sent,
    ///             _ = ticks.tick() => sent += 1,
    ///         }
    ///     }
    /// });
    /// let sequence = tokio::spawn(lifecycle.run());
    /// tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    /// handle.shutdown();
    /// assert!(stream.await.unwrap() >= 3);
    /// assert!(sequence.await.unwrap().is_graceful());
    /// # }
    /// ```
    pub fn draining(&self) -> PhaseReached {
        self.reached(Phase::Draining)
    }

    /// Wraps a long-lived stream (server-sent events, a feed) so it ends cleanly, between
    /// two items, when draining starts. See the [stream module](crate::stream).
    pub fn until_draining<S>(&self, stream: S) -> crate::UntilDraining<S> {
        crate::UntilDraining::new(stream, self.draining())
    }

    /// Completes when a server's listeners stop taking new connections: when draining
    /// starts. Until then they keep accepting, also while unready, because load balancers
    /// still send traffic during the propagation delay. After it, a listener takes what
    /// the kernel already queued (closing it first would reset those connections), then
    /// closes.
    pub fn stop_accepting(&self) -> PhaseReached {
        self.reached(Phase::Draining)
    }

    /// Completes when a listener must give up on its queue and close, even if taking it
    /// failed for want of file descriptors: when forcing starts.
    pub fn abandon_backlog(&self) -> PhaseReached {
        self.reached(Phase::Forcing)
    }

    /// Starts the shutdown sequence with the given trigger. Returns `true` if this call
    /// started it, `false` if it had already started (the first trigger is kept).
    // Most callers only want the effect; the answer is there for those who care.
    #[allow(clippy::must_use_candidate)]
    pub fn trigger(&self, trigger: Trigger) -> bool {
        self.shared.trigger(trigger)
    }

    /// Starts the shutdown sequence with [`Trigger::Programmatic`]. Returns `true` if this
    /// call started it.
    #[allow(clippy::must_use_candidate)]
    pub fn shutdown(&self) -> bool {
        self.trigger(Trigger::Programmatic)
    }

    /// Ends a lifecycle whose server could not start (an admin listener that could not be
    /// bound, a listener that failed): logs `error`, triggers shutdown with
    /// [`Trigger::StartupFailed`] and forces, so the sequence runs the cleanup hooks and
    /// ends at once with a report that is not graceful (exit code 1).
    ///
    /// Called before [`Lifecycle::run`](crate::Lifecycle::run) starts, the service never
    /// turns [`Phase::Serving`], so readiness never answers 200.
    ///
    /// # Examples
    ///
    /// ```
    /// use zdd_core::{Config, Lifecycle, Phase, Trigger};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let lifecycle = Lifecycle::new(Config::default());
    /// lifecycle.handle().fail_startup(&"admin listener: address in use");
    /// let report = lifecycle.run().await;
    /// assert_eq!(report.trigger(), Trigger::StartupFailed);
    /// assert_eq!(report.time_in(Phase::Serving), None);
    /// assert_eq!(report.exit_code(), 1);
    /// # }
    /// ```
    pub fn fail_startup(&self, error: &dyn fmt::Display) {
        error!(
            error = %error,
            phase = self.phase().as_str(),
            "the server could not start; stopping"
        );
        self.shared.force(Trigger::StartupFailed);
    }

    /// Asks for an in-place upgrade: the server starts the program at its own path again
    /// (so a newly installed binary takes over), hands it the listening sockets, and drains
    /// once the new process is ready, with no propagation delay. If the new process exits
    /// or is not ready within [`Config::upgrade_timeout`], this one serves on. `SIGHUP` does
    /// the same (see [`Config::upgrade_on_sighup`]). See the [upgrade module](crate::upgrade).
    ///
    /// Returns whether an upgrade started: not while another is in progress, once shutdown
    /// has begun, or when no server takes upgrade requests (each case is logged).
    #[allow(clippy::must_use_candidate)]
    pub fn upgrade(&self) -> bool {
        self.shared.request_upgrade("programmatic")
    }

    /// The upgrade requests, for a server that can hand its listening sockets to a new
    /// process. Until one is taken, [`LifecycleHandle::upgrade`] is refused.
    #[must_use]
    pub fn upgrade_requests(&self) -> crate::UpgradeRequests {
        crate::UpgradeRequests::new(&self.shared)
    }

    /// Skips what is left of the propagation delay and the drain and goes to
    /// [`Phase::Forcing`]. Triggers shutdown first if it has not started.
    pub fn force(&self) {
        self.shared.force(Trigger::Programmatic);
    }

    /// Tracks one request until the guard is finished or dropped.
    ///
    /// The [`ZddLayer`](crate::layer::ZddLayer) does this for every request that is not
    /// exempt; call it yourself when serving without the layer.
    #[must_use = "the request is tracked only while the guard is alive"]
    pub fn track_request(&self) -> RequestGuard {
        RequestGuard::new(&self.shared, None)
    }

    /// Tracks one request, named by its method and path for the log line written if it is
    /// forced closed. The same as [`Self::track_request`] followed by
    /// [`RequestGuard::describe`], without moving the guard.
    #[must_use = "the request is tracked only while the guard is alive"]
    #[inline]
    pub fn track_http_request(&self, method: &http::Method, path: &str) -> RequestGuard {
        RequestGuard::new(&self.shared, Some((method, path)))
    }

    /// Tracks one connection until the guard is dropped.
    ///
    /// Server adapters hold the guard inside the socket wrapper, so the connection counts
    /// until the socket itself is dropped, also after an HTTP upgrade.
    #[must_use = "the connection is tracked only while the guard is alive"]
    pub fn track_connection(&self) -> ConnectionGuard {
        ConnectionGuard::new(Arc::clone(&self.shared), None)
    }

    /// Says that a server will tell when its runtime has read its sockets' events after
    /// draining began, so that idle HTTP/1 connections close then rather than at the
    /// runtime's next timer turn. See [`EventTurn`](crate::EventTurn).
    pub fn event_turn(&self) -> EventTurn {
        EventTurn::new(Arc::clone(&self.shared))
    }

    /// Registers a listener named `name` (servers use its address), so its connections are
    /// also counted apart: in [`ShutdownReport::listeners`](crate::ShutdownReport::listeners)
    /// and the `zdd_connections_accepted_total{listener}` metric. Track its connections
    /// with [`ListenerTag::track_connection`].
    #[must_use]
    pub fn register_listener(&self, name: impl Into<String>) -> ListenerTag {
        ListenerTag {
            shared: Arc::clone(&self.shared),
            stats: self.shared.work().stats().listener(name.into()),
        }
    }

    /// Requests in flight now.
    #[must_use]
    pub fn in_flight_requests(&self) -> usize {
        self.shared.work().in_flight_requests()
    }

    /// Connections open now.
    #[must_use]
    pub fn open_connections(&self) -> usize {
        self.shared.work().connections().len()
    }

    /// Connections open now that speak `protocol` (as recorded by the server with
    /// [`ConnectionGuard::set_protocol`]).
    #[must_use]
    pub fn open_connections_speaking(&self, protocol: crate::Protocol) -> usize {
        let (http1, http2) = self.shared.work().stats().open_by_protocol();
        match protocol {
            crate::Protocol::Http1 => http1,
            crate::Protocol::Http2 => http2,
        }
    }

    /// Tracked background tasks running now.
    #[must_use]
    pub fn running_tasks(&self) -> usize {
        self.shared.work().tasks().len()
    }

    /// The background tasks' cancellation token, cancelled when draining starts.
    ///
    /// Keep it off per-request paths: checking it takes a lock. Use [`Self::phase`] there.
    #[must_use]
    pub fn token(&self) -> CancellationToken {
        self.shared.work().token().clone()
    }

    /// Spawns a background task that the drain waits for. It is given the lifecycle's
    /// cancellation token, cancelled when draining starts, and should return soon after.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime, like [`tokio::spawn`].
    ///
    /// # Examples
    ///
    /// ```
    /// use zdd_core::{Config, Lifecycle};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let lifecycle = Lifecycle::new(Config::default());
    /// let handle = lifecycle.handle();
    /// let worker = handle.spawn(|token| async move {
    ///     let mut jobs = 0;
    ///     while !token.is_cancelled() {
    ///         jobs += 1;
    ///         tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    ///     }
    ///     jobs
    /// });
    /// tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    /// handle.shutdown();
    /// let report = lifecycle.run().await;
    /// assert!(report.is_graceful());
    /// assert!(worker.await.unwrap() > 0);
    /// # }
    /// ```
    pub fn spawn<F, Fut>(&self, task: F) -> JoinHandle<Fut::Output>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let work = self.shared.work();
        work.tasks().spawn(task(work.token().clone()))
    }

    /// Wraps `future` so the drain waits for it, without spawning it.
    pub fn track_future<F: Future>(&self, future: F) -> TrackedFuture<F> {
        self.shared.work().tasks().track_future(future)
    }

    /// Registers a startup task: readiness and startup probes fail, and the lifecycle stays
    /// in [`Phase::Starting`], until every registered task is
    /// [completed](StartupTask::complete). A task dropped without completing counts as
    /// failed and keeps the service from ever turning ready.
    ///
    /// Register startup tasks before [`Lifecycle::run`](crate::Lifecycle::run) starts (or,
    /// when run is already going, while still in `Starting`). A task registered once the
    /// service is serving cannot take readiness back: it is logged as a mistake, listed in
    /// the startup probe's checks, and changes no probe's status.
    ///
    /// # Examples
    ///
    /// ```
    /// use zdd_core::{Config, Lifecycle, Phase, Probe};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let lifecycle = Lifecycle::new(Config::default());
    /// let handle = lifecycle.handle();
    /// let migrations = handle.startup_task("migrations");
    /// tokio::spawn(lifecycle.run());
    ///
    /// assert_eq!(handle.probe(Probe::Startup).await.http_status(), 503);
    /// migrations.complete();
    /// handle.reached(Phase::Serving).await;
    /// assert_eq!(handle.probe(Probe::Startup).await.http_status(), 200);
    /// # }
    /// ```
    pub fn startup_task(&self, name: impl Into<Cow<'static, str>>) -> StartupTask {
        let name = name.into();
        if self.phase() != Phase::Starting {
            warn!(
                task = &*name,
                phase = self.phase().as_str(),
                "startup task registered after startup"
            );
        }
        self.shared.health().startup().register(name)
    }

    /// Adds a readiness check, run (with its timeout, and cached) when the readiness probe is
    /// asked while serving.
    pub fn readiness_check(&self, check: Check) {
        self.shared.health().add_readiness(check);
    }

    /// Adds a liveness check. Liveness checks must only look at the process itself (a wedged
    /// event loop, a poisoned state), never at dependencies: a failing dependency would get
    /// every replica restarted at once. They are not run once shutdown has begun, so
    /// liveness never fails because of shutdown.
    pub fn liveness_check(&self, check: Check) {
        self.shared.health().add_liveness(check);
    }

    /// Marks the service not ready (or ready again) while serving, for maintenance or a
    /// blue-green cut-over. It does not start shutdown.
    pub fn set_not_ready(&self, not_ready: bool) {
        let was = self.shared.health().set_not_ready(not_ready);
        if was != not_ready {
            info!(not_ready, "readiness toggled");
        }
    }

    /// Whether [`Self::set_not_ready`] currently holds readiness down.
    #[must_use]
    pub fn is_marked_not_ready(&self) -> bool {
        self.shared.health().is_marked_not_ready()
    }

    /// Answers a probe: the phase, the checks that apply, and the resulting status.
    pub async fn probe(&self, probe: Probe) -> HealthReport {
        let shared = &self.shared;
        shared.health().evaluate(shared.machine(), probe).await
    }

    /// Registers a cleanup hook, run after the drain in reverse registration order (the
    /// newest first), with at most `timeout` and what is left of the cleanup budget.
    ///
    /// `hook` may return `()` or a `Result<(), E>` with `E: Display`. A hook that fails,
    /// panics or runs out of time is recorded in the report and the next one still runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use zdd_core::{Config, HookOutcome, Lifecycle};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let lifecycle = Lifecycle::new(Config::default());
    /// let handle = lifecycle.handle();
    /// handle.on_cleanup("database pool", Duration::from_secs(1), async {
    ///     // pool.close().await
    /// });
    /// handle.on_cleanup("flush telemetry", Duration::from_millis(500), async {
    ///     Err::<(), _>("collector unreachable")
    /// });
    /// handle.shutdown();
    /// let report = lifecycle.run().await;
    /// // Newest first:
    /// assert_eq!(report.hooks()[0].name(), "flush telemetry");
    /// assert!(matches!(report.hooks()[0].outcome(), HookOutcome::Failed(_)));
    /// assert_eq!(report.hooks()[1].outcome(), &HookOutcome::Completed);
    /// assert!(!report.is_graceful());
    /// # }
    /// ```
    pub fn on_cleanup<F>(&self, name: impl Into<Cow<'static, str>>, timeout: Duration, hook: F)
    where
        F: Future + Send + 'static,
        F::Output: HookOutput,
    {
        let hook = Hook::new(name.into(), timeout, hook);
        if self.phase() >= Phase::CleaningUp {
            warn!(
                hook = hook.name(),
                "cleanup hook registered after cleanup started; it will not run"
            );
        }
        self.shared.add_hook(hook);
    }

    /// The timings in use.
    #[must_use]
    pub fn config(&self) -> &Config {
        self.shared.config()
    }

    /// Counts a late request answered 503 during the drain, for the report and metrics.
    #[cfg(feature = "tower")]
    pub(crate) fn record_rejected(&self) {
        self.shared.work().stats().request_rejected();
        crate::metrics::late_request_rejected();
    }

    /// A weak handle, which does not keep the lifecycle's state alive.
    #[must_use]
    pub fn downgrade(&self) -> WeakLifecycleHandle {
        WeakLifecycleHandle {
            shared: Arc::downgrade(&self.shared),
        }
    }
}

impl fmt::Debug for LifecycleHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LifecycleHandle")
            .field("phase", &self.phase())
            .field("in_flight_requests", &self.in_flight_requests())
            .field("open_connections", &self.open_connections())
            .finish()
    }
}

/// A handle that does not keep the lifecycle's state alive; see
/// [`LifecycleHandle::downgrade`].
#[derive(Clone)]
pub struct WeakLifecycleHandle {
    shared: Weak<Shared>,
}

impl WeakLifecycleHandle {
    /// The handle, if the lifecycle still exists.
    #[must_use]
    pub fn upgrade(&self) -> Option<LifecycleHandle> {
        self.shared.upgrade().map(LifecycleHandle::new)
    }
}

impl fmt::Debug for WeakLifecycleHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakLifecycleHandle")
            .finish_non_exhaustive()
    }
}

/// A listener registered with [`LifecycleHandle::register_listener`]: tracks connections
/// like [`LifecycleHandle::track_connection`], and counts them for this listener too.
#[derive(Clone)]
pub struct ListenerTag {
    shared: Arc<Shared>,
    stats: Arc<crate::tracker::ListenerStats>,
}

impl ListenerTag {
    /// Tracks one connection accepted on this listener until the guard is dropped.
    #[must_use = "the connection is tracked only while the guard is alive"]
    pub fn track_connection(&self) -> ConnectionGuard {
        ConnectionGuard::new(Arc::clone(&self.shared), Some(Arc::clone(&self.stats)))
    }

    /// The listener's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.stats.name
    }
}

impl fmt::Debug for ListenerTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerTag")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}
