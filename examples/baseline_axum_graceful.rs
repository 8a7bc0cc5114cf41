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

use axum::{Router, routing::get};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> ExitCode {
    common::init_logging();
    common::exit_on_error(run().await)
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let version = common::app_version()?;
    let mut terminate = signal(SignalKind::terminate())?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", common::port()?)).await?;
    println!(
        "baseline_axum_graceful listening on http://{}",
        listener.local_addr()?
    );

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route(
            "/slow",
            get(
                |axum::extract::Query(query): axum::extract::Query<
                    std::collections::HashMap<String, u64>,
                >| async move {
                    let ms = query.get("ms").copied().unwrap_or(1_000).min(60_000);
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    "slow hello\n"
                },
            ),
        )
        .route("/health/ready", get(|| async { "ok" }));
    axum::serve(listener, common::with_version(app, version))
        .with_graceful_shutdown(async move {
            terminate.recv().await;
        })
        .await?;
    println!("baseline stopped");
    Ok(ExitCode::SUCCESS)
}
