//! The load: clients on kept-alive connections, each looping until the plan ends or the
//! load is stopped, never retrying, counting every outcome.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// How many times a request that was provably never sent is sent again.
const UNSENT_RETRIES: usize = 3;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::task::JoinHandle;

use crate::{
    outcome::Outcome,
    summary::{Seen, Summary},
};

/// What to send. Built with [`Plan::new`] and its setters; every setter's docs end with its
/// default.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use zdd_check::Plan;
///
/// let plan = Plan::new("http://127.0.0.1:8080/".parse().unwrap())
///     .concurrency(16)
///     .duration(Duration::from_secs(60))
///     .slow("/slow?ms=2000".parse().unwrap(), 20);
/// # drop(plan);
/// ```
#[derive(Debug, Clone)]
pub struct Plan {
    url: http::Uri,
    concurrency: usize,
    duration: Option<Duration>,
    requests: Option<u64>,
    timeout: Duration,
    /// The slow requests' URL, and every how many requests of a client one is sent.
    slow: Option<(http::Uri, u64)>,
    version_header: http::HeaderName,
    h2c: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// gRPC calls: the request message's frame (5-byte prefix, then the message).
    grpc: Option<Bytes>,
}

/// The method a gRPC load calls when the URL names none: the health service's `Check` of
/// the overall service (an empty request).
pub const GRPC_HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

impl Plan {
    /// Load on `url` (`http://host[:port]/path`).
    #[must_use]
    pub fn new(url: http::Uri) -> Self {
        Self {
            url,
            concurrency: 8,
            duration: None,
            requests: None,
            timeout: Duration::from_secs(5),
            slow: None,
            version_header: http::HeaderName::from_static("x-version"),
            h2c: false,
            tls: None,
            grpc: None,
        }
    }

    /// Concurrent clients, each on its own kept-alive connection. Default is 8.
    #[must_use]
    pub fn concurrency(mut self, clients: usize) -> Self {
        self.concurrency = clients.max(1);
        self
    }

    /// How long to send traffic. Default is until [`Load::stop`] (or the request limit).
    #[must_use]
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// Stop after this many requests in all. Default is no limit.
    #[must_use]
    pub fn requests(mut self, limit: u64) -> Self {
        self.requests = Some(limit);
        self
    }

    /// Per-request timeout; a request without a complete answer by then is a failure.
    /// Default is 5 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `path` (on the same host) every `every`-th request of each client. Default is
    /// none.
    #[must_use]
    pub fn slow(mut self, path: http::uri::PathAndQuery, every: u64) -> Self {
        let mut parts = self.url.clone().into_parts();
        parts.path_and_query = Some(path);
        // A scheme, an authority and a path always make a URL.
        if let Ok(url) = http::Uri::from_parts(parts) {
            self.slow = Some((url, every.max(1)));
        }
        self
    }

    /// The response header whose value groups requests per version. Default is
    /// `x-version`.
    #[must_use]
    pub fn version_header(mut self, header: http::HeaderName) -> Self {
        self.version_header = header;
        self
    }

    /// Speak HTTP/2 only: with prior knowledge on `http://` (h2c), through ALPN on
    /// `https://`. Default is HTTP/1.1 (or what ALPN picks on `https://`).
    #[must_use]
    pub fn h2c(mut self, h2c: bool) -> Self {
        self.h2c = h2c;
        self
    }

    /// Sends gRPC unary calls (HTTP/2 only) instead of `GET`s: to the method the URL's path
    /// names (`/package.Service/Method`), or to `grpc.health.v1.Health/Check` when the
    /// path is `/`, with `message` as the request (protobuf-encoded; empty sets every
    /// field to its default). A call counts as successful when it ends with status `OK`;
    /// any other status counts as a failure named after its code (`grpc_unavailable`, …).
    /// Default is off.
    ///
    /// # Examples
    ///
    /// ```
    /// use zdd_check::Plan;
    ///
    /// let plan = Plan::new("http://127.0.0.1:50051/hello.v1.Greeter/SayHello".parse().unwrap())
    ///     .grpc(&[]);
    /// # drop(plan);
    /// ```
    #[must_use]
    pub fn grpc(mut self, message: &[u8]) -> Self {
        if self.url.path() == "/" {
            let mut parts = self.url.clone().into_parts();
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static(GRPC_HEALTH_CHECK));
            if let Ok(url) = http::Uri::from_parts(parts) {
                self.url = url;
            }
        }
        let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
        let mut frame = Vec::with_capacity(5 + message.len());
        frame.push(0); // not compressed
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(message);
        self.grpc = Some(Bytes::from(frame));
        self.h2c = true;
        self
    }

    /// The request for `url`: a `GET`, or a gRPC call.
    fn request(&self, url: http::Uri) -> http::Request<Full<Bytes>> {
        let builder = http::Request::builder().uri(url);
        let request = match &self.grpc {
            None => builder.body(Full::new(Bytes::new())),
            Some(frame) => builder
                .method(http::Method::POST)
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header(http::header::TE, "trailers")
                .body(Full::new(frame.clone())),
        };
        // A URL and fixed, valid headers always make a request.
        request.unwrap_or_else(|_| unreachable!("a request of fixed parts"))
    }

    /// The TLS configuration for `https://` URLs, such as [`client_config`](crate::client_config)
    /// makes. Default is the system's trust roots (if it has none, every request fails
    /// with `tls_error`).
    #[must_use]
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }
}

/// The first pause after a failed connect; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Counts everyone can read while the load runs.
#[derive(Debug)]
struct Progress {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Latencies of successful requests, shared: one histogram whatever the concurrency.
    latencies: Mutex<Histogram<u64>>,
    /// Answers per version (the version header's value); the write lock is taken once per
    /// new version.
    versions: RwLock<BTreeMap<String, Arc<VersionProgress>>>,
    /// Failures by kind, for the live progress line (failures are rare: a lock is cheap).
    failures: Mutex<BTreeMap<Outcome, u64>>,
    /// Clients still running, and the notice each gives as it ends.
    running: AtomicUsize,
    ended: tokio::sync::Notify,
}

/// One version's answers: successes, failures (a 5xx, a failed gRPC status, an answer cut
/// short), and the latency of every answer.
#[derive(Debug)]
struct VersionProgress {
    ok: AtomicU64,
    failed: AtomicU64,
    latencies: Mutex<Histogram<u64>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            latencies: Mutex::new(crate::summary::latency_histogram()),
            versions: RwLock::default(),
            failures: Mutex::default(),
            running: AtomicUsize::new(0),
            ended: tokio::sync::Notify::new(),
        }
    }
}

/// Records `latency` in `histogram`, in microseconds; saturates at the histogram's top (an
/// hour), beyond any timeout.
fn record(histogram: &Mutex<Histogram<u64>>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    histogram
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .saturating_record(micros.max(1));
}

impl Progress {
    fn version(&self, version: &str) -> Arc<VersionProgress> {
        let versions = self.versions.read().unwrap_or_else(|e| e.into_inner());
        if let Some(progress) = versions.get(version) {
            return Arc::clone(progress);
        }
        drop(versions);
        let mut versions = self.versions.write().unwrap_or_else(|e| e.into_inner());
        let progress = versions.entry(version.to_owned()).or_insert_with(|| {
            Arc::new(VersionProgress {
                ok: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                latencies: Mutex::new(crate::summary::latency_histogram()),
            })
        });
        Arc::clone(progress)
    }

    /// An answer of `version` came after `latency`: a success, or not.
    fn answered(&self, version: &str, ok: bool, latency: Duration) {
        let progress = self.version(version);
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
            record(&self.latencies, latency);
            progress.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            progress.failed.fetch_add(1, Ordering::Relaxed);
        }
        record(&progress.latencies, latency);
    }

    fn failed(&self, outcome: Outcome) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(outcome)
            .or_default() += 1;
    }
}

/// Counts a client as running until it ends, however it ends.
struct Running(Arc<Progress>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.ended.notify_waiters();
        }
    }
}

/// What a load has seen so far ([`Load::live`]), for a progress line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// Since the load started.
    pub elapsed: Duration,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub failed: u64,
    /// Failures by kind (`status_5xx`, `grpc_unavailable`, …), counted ones only.
    pub failures: BTreeMap<&'static str, u64>,
    /// Answers (successful or not) by version.
    pub versions: BTreeMap<String, u64>,
}

/// A running load. Read its counts while it runs; [`Load::stop`] and [`Load::finish`] end
/// it with a [`Summary`].
///
/// # Examples
///
/// ```no_run
/// use zdd_check::{Load, Plan};
///
/// # #[tokio::main]
/// # async fn main() {
/// let load = Load::start(Plan::new("http://127.0.0.1:8080/".parse().unwrap()));
/// // … deploy …
/// let summary = load.stop().await;
/// assert_eq!(summary.failed(), 0, "{}", summary.to_text(&[]));
/// # }
/// ```
#[derive(Debug)]
pub struct Load {
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Seen>>,
    version_header: http::HeaderName,
    started: Instant,
}

impl Load {
    /// Starts the clients on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, like `tokio::spawn`.
    #[must_use]
    pub fn start(plan: Plan) -> Self {
        let tls = plan.tls.clone().unwrap_or_else(|| {
            crate::tls::client_config(&crate::tls::Trust::System)
                .unwrap_or_else(|_| crate::tls::trusting_nothing())
        });
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        // A request's head and body go out in separate writes on HTTP/2 (gRPC calls):
        // without this, Nagle's algorithm holds the second until the first is acknowledged.
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http();
        let connector = if plan.h2c {
            https.enable_http2().wrap_connector(http)
        } else {
            https.enable_all_versions().wrap_connector(http)
        };
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            // Every failure must count: a retried request would hide one.
            .retry_canceled_requests(false)
            .pool_max_idle_per_host(plan.concurrency)
            .http2_only(plan.h2c)
            .build(connector);
        let version_header = plan.version_header.clone();
        let plan = Arc::new(plan);
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Progress::default());
        let started = Instant::now();
        let deadline = plan.duration.and_then(|d| started.checked_add(d));
        progress.running.store(plan.concurrency, Ordering::Release);
        let clients = (0..plan.concurrency)
            .map(|_| {
                let (client, plan, sent, stop, progress) = (
                    client.clone(),
                    Arc::clone(&plan),
                    Arc::clone(&sent),
                    Arc::clone(&stop),
                    Arc::clone(&progress),
                );
                tokio::spawn(async move {
                    let _running = Running(Arc::clone(&progress));
                    let mut seen = Seen::default();
                    let mut own = 0_u64;
                    let mut backoff = FIRST_BACKOFF;
                    let running = || {
                        deadline.is_none_or(|deadline| Instant::now() < deadline)
                            && !stop.load(Ordering::Relaxed)
                    };
                    while running() {
                        if plan
                            .requests
                            .is_some_and(|limit| sent.fetch_add(1, Ordering::Relaxed) >= limit)
                        {
                            break;
                        }
                        own += 1;
                        let url = match &plan.slow {
                            Some((slow, every)) if own.is_multiple_of(*every) => slow.clone(),
                            _ => plan.url.clone(),
                        };
                        if one(&client, url, &plan, &mut seen, &progress)
                            .await
                            .is_connect_failure()
                        {
                            // Nothing to talk to: pause (bounded) instead of spinning.
                            let left = deadline.map_or(MAX_BACKOFF, |deadline| {
                                deadline.saturating_duration_since(Instant::now())
                            });
                            let pause = backoff.min(left);
                            tokio::time::sleep(pause).await;
                            seen.backoffs += 1;
                            seen.backed_off += pause;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        } else {
                            backoff = FIRST_BACKOFF;
                        }
                    }
                    seen
                })
            })
            .collect();
        Self {
            progress,
            stop,
            clients,
            version_header,
            started,
        }
    }

    /// Successful requests so far.
    #[must_use]
    pub fn ok(&self) -> u64 {
        self.progress.ok.load(Ordering::Relaxed)
    }

    /// Failed requests so far.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.progress.failed.load(Ordering::Relaxed)
    }

    /// Successful requests so far answered by `version` (the version header's value).
    #[must_use]
    pub fn version_count(&self, version: &str) -> u64 {
        let versions = self
            .progress
            .versions
            .read()
            .unwrap_or_else(|e| e.into_inner());
        versions
            .get(version)
            .map_or(0, |progress| progress.ok.load(Ordering::Relaxed))
    }

    /// Completes once every client has ended: the plan's duration or request limit is
    /// reached, or [`Load::stop`] was asked for.
    pub async fn until_done(&self) {
        loop {
            let ended = self.progress.ended.notified();
            let mut ended = std::pin::pin!(ended);
            ended.as_mut().enable();
            if self.progress.running.load(Ordering::Acquire) == 0 {
                return;
            }
            ended.await;
        }
    }

    /// What the load has seen so far: counts, failures by kind, answers by version.
    #[must_use]
    pub fn live(&self) -> Live {
        let failures = self
            .progress
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(outcome, n)| (outcome.as_str(), *n))
            .collect();
        let versions = self
            .progress
            .versions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(version, progress)| {
                let answered =
                    progress.ok.load(Ordering::Relaxed) + progress.failed.load(Ordering::Relaxed);
                (version.clone(), answered)
            })
            .collect();
        Live {
            elapsed: self.started.elapsed(),
            ok: self.ok(),
            failed: self.failed(),
            failures,
            versions,
        }
    }

    /// Tells every client to stop after its current request, and sums up.
    pub async fn stop(self) -> Summary {
        self.stop.store(true, Ordering::Relaxed);
        self.finish().await
    }

    /// Waits until the plan's duration or request limit ends the load (or until
    /// [`Load::stop`] was called), and sums up.
    pub async fn finish(self) -> Summary {
        let Self {
            progress,
            stop: _,
            clients,
            version_header,
            started,
        } = self;
        let mut seen = Vec::with_capacity(clients.len());
        for client in clients {
            if let Ok(client) = client.await {
                seen.push(client);
            }
        }
        let latencies = std::mem::replace(
            &mut *progress.latencies.lock().unwrap_or_else(|e| e.into_inner()),
            crate::summary::latency_histogram(),
        );
        let mut summary = Summary::new(version_header.as_str(), latencies);
        for client in seen {
            summary.add(client);
        }
        for (version, answers) in progress
            .versions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            summary.add_version(
                version,
                answers.ok.load(Ordering::Relaxed),
                answers.failed.load(Ordering::Relaxed),
                &answers.latencies.lock().unwrap_or_else(|e| e.into_inner()),
            );
        }
        summary.elapsed = started.elapsed();
        summary
    }

    /// A handle that stops the load from elsewhere (a signal handler, a deadline).
    #[must_use]
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::clone(&self.stop))
    }
}

/// Stops a [`Load`] from elsewhere; see [`Load::stopper`].
#[derive(Debug, Clone)]
pub struct Stopper(Arc<AtomicBool>);

impl Stopper {
    /// Tells every client to stop after its current request.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Sends one request and records what it came to.
async fn one<C>(
    client: &Client<C, Full<Bytes>>,
    url: http::Uri,
    plan: &Plan,
    seen: &mut Seen,
    progress: &Progress,
) -> Outcome
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let started = Instant::now();
    let mut unsent = 0;
    let answer = tokio::time::timeout(plan.timeout, async {
        // A request the client never sent (its kept-alive connection closed as it was
        // picked) is sent again, as every client does, up to `UNSENT_RETRIES` times (during
        // a rollout the pool may hand out a second closing connection); each is counted
        // apart, and the last attempt's outcome is the request's.
        let mut attempt = client.request(plan.request(url.clone())).await;
        for _ in 0..UNSENT_RETRIES {
            match &attempt {
                Err(error) if Outcome::never_sent(error) => {
                    unsent += 1;
                    attempt = client.request(plan.request(url.clone())).await;
                }
                _ => break,
            }
        }
        let response = attempt?;
        let outcome = Outcome::from_status(response.status());
        let version = response
            .headers()
            .get(&plan.version_header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // gRPC's status is in the head (a trailers-only answer) or in the trailers.
        let head_status = response.headers().get("grpc-status").cloned();
        // A body cut short is a failed request too.
        let body = match response.into_body().collect().await {
            Ok(body) => body,
            Err(_) => return Ok((Outcome::EmptyReply, version)),
        };
        if plan.grpc.is_none() || outcome != Outcome::Ok {
            return Ok((outcome, version));
        }
        let status = head_status.or_else(|| body.trailers()?.get("grpc-status").cloned());
        match status {
            Some(status) => Ok((Outcome::from_grpc_status(status.as_bytes()), version)),
            // No status: the call was cut before its end.
            None => Ok((Outcome::EmptyReply, version)),
        }
    })
    .await;
    seen.unsent_retried += unsent;
    let outcome = match answer {
        Ok(Ok((outcome, version))) => {
            // An answer: counted for its version, successful or not.
            let version = version.unwrap_or_else(|| "(none)".to_owned());
            progress.answered(&version, outcome == Outcome::Ok, started.elapsed());
            if outcome == Outcome::Ok {
                *seen.versions.entry(version).or_default() += 1;
            }
            outcome
        }
        Ok(Err(error)) => {
            let outcome = Outcome::from_error(&error);
            if seen.first_errors.len() < 5 {
                seen.first_errors
                    .push(format!("{}: {error:?}", outcome.as_str()));
            }
            outcome
        }
        Err(_) => Outcome::Timeout,
    };
    if outcome != Outcome::Ok {
        progress.failed(outcome);
    }
    *seen.outcomes.entry(outcome).or_default() += 1;
    outcome
}
