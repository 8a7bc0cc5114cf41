//! The same service on raw hyper: any tower service over `Request<hyper::body::Incoming>`.
//!
//! ```sh
//! cargo run --example hyper_hello
//! curl -i localhost:3000/                 # hello, with X-Version
//! curl -i localhost:3000/slow?ms=3000 &   # then press Ctrl-C: it still finishes
//! ```
//!
//! `PORT` (default 3000), `APP_VERSION` (sent as `X-Version`, default `dev`) and the `ZDD_*`
//! timings come from the environment.

#[path = "common/mod.rs"]
mod common;

use std::{convert::Infallible, process::ExitCode, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use zdd::{Config, Lifecycle};

#[tokio::main]
async fn main() -> ExitCode {
    common::init_logging();
    common::exit_on_error(run().await)
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let version = Arc::new(common::app_version()?);
    let mut lifecycle = Lifecycle::new(Config::from_env()?);
    lifecycle.listen_for_signals()?;
    lifecycle
        .handle()
        .on_cleanup("say goodbye", Duration::from_secs(1), async {
            tracing::info!("cleanup hook ran after the last connection closed");
        });

    let listener = zdd::listen(([0, 0, 0, 0], common::port()?).into(), lifecycle.config())?;
    common::print_banner(
        &format!("hyper_hello {}", version.to_str().unwrap_or("?")),
        listener.local_addr()?,
        lifecycle.config(),
    );
    let app = tower::service_fn(move |request: Request<Incoming>| {
        let version = Arc::clone(&version);
        async move { Ok::<_, Infallible>(respond(&request, &version).await) }
    });
    let report = zdd::serve(listener, app, lifecycle).await;
    Ok(common::finish(&report))
}

async fn respond(request: &Request<Incoming>, version: &HeaderValue) -> Response<Full<Bytes>> {
    let body = if request.uri().path() == "/slow" {
        let ms = request
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(1_000_u64)
            .min(60_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        format!("slow hello after {ms} ms\n")
    } else {
        "hello\n".to_owned()
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert("x-version", version.clone());
    response
}
