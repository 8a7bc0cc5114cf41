//! `grpc.health.v1.Health` answered from the lifecycle's health state.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_core::Stream;
use tonic::{Request, Response, Status};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse,
    health_check_response::ServingStatus,
    health_server::{Health, HealthServer},
};
use zdd_core::{LifecycleHandle, Phase, Probe, Status as CheckStatus};

/// The health service's request paths' common start.
pub(crate) const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";
/// The health service's `Check` method, as a request path.
pub(crate) const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// The health service's `Watch` method, as a request path.
pub(crate) const WATCH_PATH: &str = "/grpc.health.v1.Health/Watch";

/// How often a `Watch` asks again while the phase does not change (a readiness check may
/// change its answer at any time). Default of [`GrpcHealth::watch_interval`].
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What a service name's status follows.
#[derive(Debug, Clone)]
enum Source {
    /// A probe: `SERVING` when it would answer 200.
    Probe(Probe),
    /// Named readiness checks: `SERVING` while readiness has no reason to fail of its own
    /// (starting, shutting down, marked not ready) and none of them fails.
    Checks(Vec<Cow<'static, str>>),
}

/// The `grpc.health.v1.Health` service, answered from the lifecycle's probes, for
/// Kubernetes' native `grpc:` probes and gRPC clients that check health.
///
/// - The overall service (`""`) follows readiness: `SERVING` while `/health/ready` answers
///   200, `NOT_SERVING` while it answers 503 (starting, marked not ready, a failing check,
///   and from Unready on).
/// - [`service`](Self::service) maps a name to a probe: [`Probe::Liveness`] answers
///   `SERVING` through the drain, like `/health/live`; [`Probe::Startup`] turns `SERVING`
///   once startup is done. [`service_checks`](Self::service_checks) maps a name to some of
///   the readiness checks.
/// - `Check` on a name with no mapping answers `NOT_FOUND`; `Watch` sends
///   `SERVICE_UNKNOWN` and stays open, as the protocol asks.
/// - `Watch` sends the status at once, then each change (the phase's at once, the checks'
///   within [`watch_interval`](Self::watch_interval)), and ends when draining starts, after
///   sending `NOT_SERVING`, so no watching client holds a connection through the drain.
///
/// [`serve`](crate::serve) exempts both methods from counting.
///
/// # Examples
///
/// ```
/// use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_server::Health};
/// use zdd_core::{Config, Lifecycle, Phase, Probe};
/// use zdd_tonic::GrpcHealth;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let lifecycle = Lifecycle::new(Config::default());
/// let handle = lifecycle.handle();
/// let health = GrpcHealth::new(handle.clone()).service("liveness", Probe::Liveness);
/// let status = async |service: &str| {
///     let request = tonic::Request::new(HealthCheckRequest { service: service.into() });
///     health.check(request).await.map(|answer| answer.into_inner().status())
/// };
/// assert_eq!(status("").await.unwrap(), ServingStatus::NotServing); // starting
/// tokio::spawn(lifecycle.run());
/// handle.reached(Phase::Serving).await;
/// assert_eq!(status("").await.unwrap(), ServingStatus::Serving);
/// handle.shutdown();
/// assert_eq!(status("").await.unwrap(), ServingStatus::NotServing);
/// assert_eq!(status("liveness").await.unwrap(), ServingStatus::Serving);
/// assert_eq!(status("nope").await.unwrap_err().code(), tonic::Code::NotFound);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct GrpcHealth {
    handle: LifecycleHandle,
    services: Arc<HashMap<String, Source>>,
    interval: Duration,
    /// The mapped check names found missing, each logged once (a `Watch` asks every
    /// interval).
    missing: Arc<Mutex<HashSet<String>>>,
}

impl GrpcHealth {
    /// The health service of `handle`'s lifecycle, with the overall service (`""`) following
    /// readiness.
    #[must_use]
    pub fn new(handle: LifecycleHandle) -> Self {
        let services = HashMap::from([(String::new(), Source::Probe(Probe::Readiness))]);
        Self {
            handle,
            services: Arc::new(services),
            interval: WATCH_INTERVAL,
            missing: Arc::default(),
        }
    }

    /// Answers for service `name` what `probe` answers. Mapping `""` replaces the overall
    /// service's.
    #[must_use]
    pub fn service(self, name: impl Into<String>, probe: Probe) -> Self {
        self.map(name.into(), Source::Probe(probe))
    }

    /// Answers for service `name` from the readiness checks named `checks` (registered with
    /// [`LifecycleHandle::readiness_check`]): `SERVING` while serving, not marked not ready,
    /// and none of them fails (a warning passes). A name no check has answers
    /// `NOT_SERVING`, and is logged, so a typo cannot pass for health.
    #[must_use]
    pub fn service_checks<I, C>(self, name: impl Into<String>, checks: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<Cow<'static, str>>,
    {
        let checks = checks.into_iter().map(Into::into).collect();
        self.map(name.into(), Source::Checks(checks))
    }

    /// How often a `Watch` asks the checks again while the phase does not change. Phase
    /// changes are sent at once. Default is 1 s.
    #[must_use]
    pub fn watch_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The tonic service, to add to the routes (`Routes::new(..)`, `add_service`).
    #[must_use]
    pub fn into_server(self) -> HealthServer<Self> {
        HealthServer::new(self)
    }

    fn map(mut self, name: String, source: Source) -> Self {
        Arc::make_mut(&mut self.services).insert(name, source);
        self
    }

    /// The status of `service`, or `None` when no such service is mapped.
    async fn status(&self, service: &str) -> Option<ServingStatus> {
        let source = self.services.get(service)?;
        let serving = match source {
            Source::Probe(probe) => self.handle.probe(*probe).await.http_status() == 200,
            Source::Checks(names) => {
                let report = self.handle.probe(Probe::Readiness).await;
                report.reason().is_none()
                    && names.iter().all(|name| {
                        match report.checks().iter().find(|check| check.name() == name) {
                            Some(check) => check.status() != CheckStatus::Fail,
                            None => {
                                self.missing_check(service, name);
                                false
                            }
                        }
                    })
            }
        };
        Some(match serving {
            true => ServingStatus::Serving,
            false => ServingStatus::NotServing,
        })
    }
}

impl GrpcHealth {
    /// Logs, once per name, that a mapped readiness check does not exist.
    fn missing_check(&self, service: &str, check: &str) {
        let first = self
            .missing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(check.to_owned());
        if first {
            tracing::warn!(
                target: "zdd",
                service,
                check,
                "gRPC health: no readiness check has this name; answering NOT_SERVING"
            );
        }
    }
}

/// The stream a `Watch` call answers with.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

#[tonic::async_trait]
impl Health for GrpcHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        match self.status(&service).await {
            Some(status) => Ok(Response::new(answer(status))),
            None => Err(Status::not_found(format!("unknown service {service:?}"))),
        }
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let service = request.into_inner().service;
        let watch = Watch {
            health: self.clone(),
            service,
            phase: self.handle.watch(),
            last: None,
            ended: false,
        };
        let stream = futures_util::stream::unfold(watch, Watch::next);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// One `Watch` call's state.
struct Watch {
    health: GrpcHealth,
    service: String,
    phase: tokio::sync::watch::Receiver<Phase>,
    /// The status sent last.
    last: Option<ServingStatus>,
    ended: bool,
}

impl Watch {
    /// The next status to send, once it differs from the last one; `None` once draining
    /// has started and the last status is out.
    async fn next(mut self) -> Option<(Result<HealthCheckResponse, Status>, Self)> {
        loop {
            if self.ended {
                return None;
            }
            let draining = *self.phase.borrow_and_update() >= Phase::Draining;
            let status = self
                .health
                .status(&self.service)
                .await
                .unwrap_or(ServingStatus::ServiceUnknown);
            // Sent last at draining, whatever it is: not serving, unless the service
            // follows liveness.
            self.ended = draining;
            if self.last != Some(status) {
                self.last = Some(status);
                return Some((Ok(answer(status)), self));
            }
            if self.ended {
                return None;
            }
            tokio::select! {
                changed = self.phase.changed() => {
                    // The lifecycle is gone: as far as phases go.
                    if changed.is_err() {
                        return None;
                    }
                }
                () = tokio::time::sleep(self.health.interval) => {}
            }
        }
    }
}
