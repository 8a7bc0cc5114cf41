//! zdd's metrics exported for Prometheus on `/metrics`.
//!
//! With an admin listener (`ZDD_ADMIN_ADDR`), `/metrics` is served there, in every phase
//! until the report exists, so the drain's own metrics can be scraped while the public
//! listener is closed. Without one, it is a public route exempt from tracking and rejection,
//! answered while the public listener is open.
//!
//! Each request is also counted by status class and timed under the version
//! (`RequestMetricsLayer`: `zdd_http_requests_total`, `zdd_http_request_duration_seconds`,
//! with histogram buckets so a dashboard can take the p95 across instances): what
//! `deploy/grafana/zdd.json` and the canary recipes' queries read. A readiness check
//! (`config`) shows in `zdd_health_check_status`. `FINAL_SCRAPE_WAIT=2s` keeps the admin
//! listener up that much longer at the end (a cleanup hook), so a last scrape sees the
//! drain's figures.
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
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use zdd::{Check, Config, Lifecycle, layer::RequestMetricsLayer};

#[tokio::main]
async fn main() -> ExitCode {
    common::init_logging();
    common::exit_on_error(run().await)
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    // The recorder first, so everything the lifecycle records reaches it. Latency buckets
    // from 5 ms to 10 s: the canary threshold (1 s) falls on one.
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("zdd_http_request_duration_seconds".to_owned()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )?
        .install_recorder()?;
    let version = common::app_version()?;
    let mut lifecycle = Lifecycle::new(Config::from_env()?);
    lifecycle.listen_for_signals()?;
    let handle = lifecycle.handle();
    handle.readiness_check(Check::new("config", || async {}));
    if let Some(wait) = final_scrape_wait()? {
        handle.on_cleanup(
            "final scrape",
            wait + Duration::from_millis(500),
            tokio::time::sleep(wait),
        );
    }

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
    let metrics = RequestMetricsLayer::new(version.to_str().unwrap_or("unknown"));
    let app = common::with_version(app.layer(metrics), version);
    let report = zdd::axum::serve(listener, app, lifecycle)
        .layer(|layer| layer.exempt("/metrics"))
        .admin(|admin| admin.metrics(render))
        .await;
    Ok(common::finish(&report))
}

/// `FINAL_SCRAPE_WAIT` (a duration such as `2s`), if set.
fn final_scrape_wait() -> Result<Option<Duration>, String> {
    match std::env::var("FINAL_SCRAPE_WAIT") {
        Err(_) => Ok(None),
        Ok(value) => humantime::parse_duration(&value)
            .map(Some)
            .map_err(|e| format!("FINAL_SCRAPE_WAIT: {e}: {value:?}")),
    }
}
