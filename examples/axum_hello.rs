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
//! address, which axum's `ConnectInfo` extractor gets from zdd's loop.

#[path = "common/mod.rs"]
mod common;

use std::{collections::HashMap, net::SocketAddr, process::ExitCode, time::Duration};

use axum::{
    Router,
    extract::{ConnectInfo, Query, Request},
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

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
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
