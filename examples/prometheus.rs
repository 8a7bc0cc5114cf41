//! zdd's metrics exported for Prometheus on `/metrics`.
//!
//! With an admin listener (`ZDD_ADMIN_ADDR`), `/metrics` is served there, in every phase
//! until the report exists, so the drain's own metrics can be scraped while the public
//! listener is closed. Without one, it is a public route exempt from tracking and rejection,
//! answered while the public listener is open.
//!
//! ```sh
//! ZDD_ADMIN_ADDR=127.0.0.1:9000 ZDD_PROPAGATION_DELAY=5s cargo run --example prometheus
//! curl localhost:9000/metrics         # zdd_phase 1, zdd_in_flight_requests, …
//! curl localhost:3000/slow &          # then Ctrl-C, and scrape again during the drain
//! cargo run --example prometheus      # no admin listener: curl localhost:3000/metrics
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

    let listener = zdd::listen(([0, 0, 0, 0], common::port()?).into(), lifecycle.config())?;
    let port = listener.local_addr()?.port();
    common::print_banner("prometheus", listener.local_addr()?, lifecycle.config());
    let admin = lifecycle.config().admin_addr();
    let metrics_port = admin.map_or(port, |admin| admin.port());
    println!("  metrics: curl http://localhost:{metrics_port}/metrics");

    let app = Router::new().route("/", get(|| async { "hello\n" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "slow hello\n"
        }),
    );
    let render = move || prometheus.render();
    let app = match admin {
        // On the admin listener only: the public port does not expose it.
        Some(_) => app,
        None => app.route(
            "/metrics",
            get({
                let render = render.clone();
                move || std::future::ready(render())
            }),
        ),
    };
    let report = zdd::axum::serve(listener, app, lifecycle)
        .layer(|layer| layer.exempt("/metrics"))
        .admin(|admin| admin.metrics(render))
        .await;
    Ok(common::finish(&report))
}
