//! The load: clients on kept-alive connections, each looping until the plan ends.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

use crate::{
    outcome::Outcome,
    summary::{Seen, Summary},
};

/// What to send.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) url: http::Uri,
    pub(crate) concurrency: usize,
    pub(crate) duration: Duration,
    pub(crate) requests: Option<u64>,
    pub(crate) timeout: Duration,
    /// The slow requests' URL, and every how many requests of a client one is sent.
    pub(crate) slow: Option<(http::Uri, u64)>,
    pub(crate) version_header: http::HeaderName,
    pub(crate) h2c: bool,
}

/// The first pause after a failed connect; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

pub(crate) async fn run(plan: Plan) -> Summary {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        // Every failure must count: a retried request would hide one.
        .retry_canceled_requests(false)
        .pool_max_idle_per_host(plan.concurrency)
        .http2_only(plan.h2c)
        .build_http();
    let plan = Arc::new(plan);
    let sent = Arc::new(AtomicU64::new(0));
    // Ctrl-C or SIGTERM ends the run early; the summary is still printed.
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            stopped().await;
            stop.store(true, Ordering::Relaxed);
        }
    });
    let started = Instant::now();
    let deadline = started + plan.duration;
    let clients: Vec<_> = (0..plan.concurrency)
        .map(|_| {
            let (client, plan, sent, stop) = (
                client.clone(),
                Arc::clone(&plan),
                Arc::clone(&sent),
                Arc::clone(&stop),
            );
            tokio::spawn(async move {
                let mut seen = Seen::default();
                let mut own = 0_u64;
                let mut backoff = FIRST_BACKOFF;
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
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
                    if one(&client, url, &plan, &mut seen)
                        .await
                        .is_connect_failure()
                    {
                        // Nothing to talk to: pause (bounded) instead of spinning.
                        let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
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
    let mut summary = Summary::new(plan.version_header.as_str());
    for client in clients {
        if let Ok(seen) = client.await {
            summary.add(seen);
        }
    }
    summary.elapsed = started.elapsed();
    summary
}

/// Completes on Ctrl-C or SIGTERM (never, if neither can be listened for).
async fn stopped() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Sends one request and records what it came to.
async fn one<C>(
    client: &Client<C, Empty<Bytes>>,
    url: http::Uri,
    plan: &Plan,
    seen: &mut Seen,
) -> Outcome
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let started = Instant::now();
    let answer = tokio::time::timeout(plan.timeout, async {
        let response = client.get(url).await?;
        let outcome = Outcome::from_status(response.status());
        let version = response
            .headers()
            .get(&plan.version_header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // A body cut short is a failed request too.
        match response.into_body().collect().await {
            Ok(_) => Ok((outcome, version)),
            Err(_) => Ok((Outcome::EmptyReply, version)),
        }
    })
    .await;
    let outcome = match answer {
        Ok(Ok((outcome, version))) => {
            if outcome == Outcome::Ok {
                seen.latencies.push(started.elapsed());
                *seen
                    .versions
                    .entry(version.unwrap_or_else(|| "(none)".to_owned()))
                    .or_default() += 1;
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
    *seen.outcomes.entry(outcome).or_default() += 1;
    outcome
}
