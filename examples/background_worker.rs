//! A background worker on the lifecycle's tracker: it is told to stop when draining starts,
//! finishes the job in hand, and the drain waits for it.
//!
//! ```sh
//! cargo run --example background_worker
//! # Ctrl-C: the log shows "worker stopping", then the job finishing, then the report
//! ```

#[path = "common/mod.rs"]
mod common;

use std::{process::ExitCode, time::Duration};

use axum::{Router, routing::get};
use zdd::{Config, Lifecycle};

#[tokio::main]
async fn main() -> ExitCode {
    common::init_logging();
    common::exit_on_error(run().await)
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut lifecycle = Lifecycle::new(Config::from_env()?);
    lifecycle.listen_for_signals()?;
    let handle = lifecycle.handle();

    handle.spawn(|token| async move {
        let mut job = 0_u64;
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            job += 1;
            tracing::info!(job, "job started");
            // A job, once started, is finished even if draining starts meanwhile.
            tokio::time::sleep(Duration::from_millis(800)).await;
            tracing::info!(job, "job done");
        }
        tracing::info!(jobs_done = job, "worker stopping");
    });

    let listener = zdd::listen(([0, 0, 0, 0], common::port()?).into(), lifecycle.config())?;
    common::print_banner(
        "background_worker",
        listener.local_addr()?,
        lifecycle.config(),
    );
    println!("  try:   watch the jobs in the log, then Ctrl-C");
    let app = Router::new().route("/", get(|| async { "the worker runs in the background\n" }));
    let report = zdd::axum::serve(listener, app, lifecycle).await;
    Ok(common::finish(&report))
}
