//! zdd's metrics exported for Prometheus on `/metrics`, a route exempt from tracking and
//! rejection, so scrapes keep answering while the service shuts down.
//!
//! ```sh
//! cargo run --example prometheus
//! curl localhost:3000/metrics         # zdd_phase 1, zdd_in_flight_requests, …
//! curl localhost:3000/slow &          # then Ctrl-C, and scrape again during the 5 s propagation
//! ZDD_PROPAGATION_DELAY=5s cargo run --example prometheus
//! ```

#[path = "common/mod.rs"]
mod common;

use std::{process::ExitCode, time::Duration};

use axum::{Router, routing::get};
use metrics_exporter_prometheus::PrometheusBuilder;
use zdd::{Config, Lifecycle};

#[tokio::main]
async fn main() -> ExitCode {
    common::init_logging();
    common::exit_on_error(run().await)
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    // The recorder first, so everything the lifecycle records reaches it.
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let mut lifecycle = Lifecycle::new(Config::from_env()?);
    lifecycle.listen_for_signals()?;

    let listener = zdd::bind(([0, 0, 0, 0], common::port()?).into())?;
    let port = listener.local_addr()?.port();
    common::print_banner("prometheus", listener.local_addr()?);
    println!("  metrics: curl http://localhost:{port}/metrics");

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "slow hello\n"
            }),
        )
        .route(
            "/metrics",
            get(move || std::future::ready(prometheus.render())),
        );
    let report = zdd::axum::serve(listener, app, lifecycle)
        .layer(|layer| layer.exempt("/metrics"))
        .await;
    Ok(common::finish(&report))
}
