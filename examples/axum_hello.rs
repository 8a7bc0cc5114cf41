//! The main example: an axum service with zdd's probes and shutdown.
//!
//! ```sh
//! cargo run --example axum_hello
//! curl -i localhost:3000/                 # hello, with X-Version
//! curl -i localhost:3000/health/ready     # 200 while serving
//! curl -i localhost:3000/slow?ms=3000 &   # then press Ctrl-C: it still finishes
//! ```
//!
//! Ctrl-C or `kill -TERM` starts the sequence; every phase is logged and the report printed.
//! `PORT` (default 3000), `APP_VERSION` (sent as `X-Version`, default `dev`) and the `ZDD_*`
//! timings come from the environment. `ACCESS_LOG=true` logs each request with the client's
//! address, which axum's `ConnectInfo` extractor gets from zdd's loop. `FAIL_PERCENT=5`
//! answers 5 % of the requests to `/` with a 500, evenly spread, on purpose: a bad version
//! for a canary gate to catch (`zdd-check --version v2 --max-error-rate 1%`).

#[path = "common/mod.rs"]
mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{ConnectInfo, Query, Request},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use zdd::{Config, Lifecycle};

#[tokio::main]
async fn main() -> ExitCode {
    common::init_logging();
    common::exit_on_error(run().await)
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let version = common::app_version()?;
    let mut lifecycle = Lifecycle::new(Config::from_env()?);
    lifecycle.listen_for_signals()?;

    let listener = zdd::listen(([0, 0, 0, 0], common::port()?).into(), lifecycle.config())?;
    common::print_banner(
        &format!("axum_hello {}", version.to_str().unwrap_or("?")),
        listener.local_addr()?,
        lifecycle.config(),
    );
    println!(
        "  try:   curl -i http://localhost:{}/slow?ms=3000   then Ctrl-C while it runs",
        listener.local_addr()?.port()
    );

    let failing = Failing::from_env()?;
    let app = Router::new()
        .route("/", get(move || failing.answer()))
        .route("/slow", get(slow));
    let app = match std::env::var("ACCESS_LOG").as_deref() {
        Ok("true") => app.layer(axum::middleware::from_fn(access_log)),
        _ => app,
    };
    let report = zdd::axum::serve(listener, common::with_version(app, version), lifecycle)
        .connect_info(ConnectInfo::<SocketAddr>)
        .await;
    Ok(common::finish(&report))
}

async fn slow(Query(query): Query<HashMap<String, u64>>) -> impl IntoResponse {
    let ms = query.get("ms").copied().unwrap_or(1_000).min(60_000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slow hello after {ms} ms\n")
}

/// One line per request: the client's address (axum's `ConnectInfo`), method, path, status.
async fn access_log(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    tracing::info!(target: "access", %peer, %method, path, status = response.status().as_u16());
    response
}

/// `FAIL_PERCENT`: the share of requests to `/` answered 500 on purpose (0 to 100).
#[derive(Clone)]
struct Failing {
    percent: u64,
    answered: Arc<AtomicU64>,
}

impl Failing {
    fn from_env() -> Result<Self, String> {
        let percent = match std::env::var("FAIL_PERCENT") {
            Err(_) => 0,
            Ok(value) => value
                .parse()
                .ok()
                .filter(|percent| *percent <= 100)
                .ok_or_else(|| {
                    format!("FAIL_PERCENT: not a whole percentage from 0 to 100: {value:?}")
                })?,
        };
        Ok(Self {
            percent,
            answered: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Hello, or a 500 for `percent` of the requests, evenly spread (the n-th request fails
    /// when the count of failures due by it goes up).
    async fn answer(self) -> Response {
        let n = self.answered.fetch_add(1, Ordering::Relaxed);
        if (n + 1) * self.percent / 100 > n * self.percent / 100 {
            return (StatusCode::INTERNAL_SERVER_ERROR, "failing on purpose\n").into_response();
        }
        "hello\n".into_response()
    }
}
