//! Cleanup after the drain: a connection-pool-like resource is closed once no request uses
//! it any more, hooks run newest first, each within its own timeout.
//!
//! ```sh
//! cargo run --example cleanup_hooks
//! curl localhost:3000/query &   # uses the pool for 2 s; Ctrl-C meanwhile
//! # the request finishes, then "closing pool", "flushing telemetry" (newest first), then the report
//! ```

#[path = "common/mod.rs"]
mod common;

use std::{process::ExitCode, sync::Arc, time::Duration};

use axum::{Router, extract::State, routing::get};
use tokio::sync::RwLock;
use zdd::{Config, Lifecycle};

/// Stands in for a database pool: usable until closed.
#[derive(Default)]
struct Pool {
    closed: RwLock<bool>,
}

impl Pool {
    async fn query(&self) -> Result<&'static str, &'static str> {
        let closed = self.closed.read().await;
        if *closed {
            return Err("pool closed");
        }
        tracing::info!("query started");
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok("42\n")
    }

    async fn close(&self) {
        *self.closed.write().await = true;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    common::init_logging();
    common::exit_on_error(run().await)
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut lifecycle = Lifecycle::new(Config::from_env()?);
    lifecycle.listen_for_signals()?;
    let handle = lifecycle.handle();
    let pool = Arc::new(Pool::default());

    // Registered first, so it runs last: everything else may still need the pool.
    let closing = Arc::clone(&pool);
    handle.on_cleanup("database pool", Duration::from_secs(1), async move {
        tracing::info!("closing pool");
        closing.close().await;
    });
    handle.on_cleanup("telemetry", Duration::from_millis(500), async {
        tracing::info!("flushing telemetry");
    });

    let listener = zdd::listen(([0, 0, 0, 0], common::port()?).into(), lifecycle.config())?;
    let port = listener.local_addr()?.port();
    common::print_banner("cleanup_hooks", listener.local_addr()?, lifecycle.config());
    println!("  try:   curl http://localhost:{port}/query &   then Ctrl-C");
    let app = Router::new()
        .route(
            "/query",
            get(|State(pool): State<Arc<Pool>>| async move { pool.query().await }),
        )
        .with_state(pool);
    let report = zdd::axum::serve(listener, app, lifecycle).await;
    Ok(common::finish(&report))
}
