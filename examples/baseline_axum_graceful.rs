//! **Not zdd**: the status quo, kept only as the baseline the end-to-end tests compare zdd
//! against. A plain axum service shut down with `axum::serve(..).with_graceful_shutdown`
//! on SIGTERM, with a readiness route that answers 200 for as long as the process answers
//! at all, which is what many services do today.
//!
//! ```sh
//! cargo run --example baseline_axum_graceful
//! ```
//!
//! `PORT` (default 3000) and `APP_VERSION` (sent as `X-Version`) come from the environment.

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;

use axum::{Router, http::HeaderValue, routing::get};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> ExitCode {
    common::init_logging();
    common::exit_on_error(run().await)
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let version = std::env::var("APP_VERSION").unwrap_or_else(|_| "dev".to_owned());
    let version =
        HeaderValue::from_str(&version).map_err(|_| "APP_VERSION: not a valid header value")?;
    let mut terminate = signal(SignalKind::terminate())?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", common::port()?)).await?;
    println!(
        "baseline_axum_graceful listening on http://{}",
        listener.local_addr()?
    );

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/health/ready", get(|| async { "ok" }))
        .layer(axum::middleware::map_response(
            move |mut response: axum::response::Response| {
                let version = version.clone();
                async move {
                    response.headers_mut().insert("x-version", version);
                    response
                }
            },
        ));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            terminate.recv().await;
        })
        .await?;
    println!("baseline stopped");
    Ok(ExitCode::SUCCESS)
}
