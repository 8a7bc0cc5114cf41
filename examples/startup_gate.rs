//! Readiness and startup stay 503 until a warm-up (a migration, a cache fill) finishes, and
//! readiness then follows a dependency check.
//!
//! ```sh
//! WARM_UP_SECS=5 cargo run --example startup_gate
//! curl -i localhost:3000/health/startup   # 503 "pending" for 5 s, then 200
//! curl -i localhost:3000/health/ready     # 503 until then, then the "database" check
//! ```

#[path = "common/mod.rs"]
mod common;

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, routing::get};
use zdd::{Check, Config, Lifecycle};

#[tokio::main]
async fn main() -> ExitCode {
    common::init_logging();
    common::exit_on_error(run().await)
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let warm_up_secs: u64 = match std::env::var("WARM_UP_SECS") {
        Ok(secs) => secs
            .parse()
            .map_err(|_| format!("WARM_UP_SECS: not a number: {secs:?}"))?,
        Err(_) => 5,
    };
    let mut lifecycle = Lifecycle::new(Config::from_env()?);
    lifecycle.listen_for_signals()?;
    let handle = lifecycle.handle();

    // The gate: nothing is ready until this completes.
    let migrations = handle.startup_task("migrations");
    let database_up = Arc::new(AtomicBool::new(false));
    let up = Arc::clone(&database_up);
    tokio::spawn(async move {
        tracing::info!(seconds = warm_up_secs, "running migrations");
        tokio::time::sleep(Duration::from_secs(warm_up_secs)).await;
        up.store(true, Ordering::Release);
        migrations.complete();
    });
    // Once serving, readiness follows the dependency (cached, with a timeout).
    handle.readiness_check(
        Check::new("database", move || {
            let up = database_up.load(Ordering::Acquire);
            async move { if up { Ok(()) } else { Err("not connected") } }
        })
        .timeout(Duration::from_millis(500))
        .cache_for(Duration::from_secs(1)),
    );

    let listener = zdd::listen(([0, 0, 0, 0], common::port()?).into(), lifecycle.config())?;
    common::print_banner("startup_gate", listener.local_addr()?, lifecycle.config());
    let app = Router::new().route("/", get(|| async { "ready for business\n" }));
    let report = zdd::axum::serve(listener, app, lifecycle).await;
    Ok(common::finish(&report))
}
