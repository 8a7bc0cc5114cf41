//! The main example: a hello-world service on raw hyper with zdd's probes and shutdown.
//!
//! ```sh
//! cargo run --example hyper_hello
//! # then, in another terminal:
//! curl -i localhost:3000/                # X-Version: dev
//! curl -i localhost:3000/health/ready    # 200 while serving
//! # press Ctrl-C (or `kill -TERM <pid>`): every phase is logged and the report printed
//! ```
//!
//! Settings come from the environment: `PORT` (default 3000), `APP_VERSION` (sent as
//! `X-Version`, default `dev`), and the `ZDD_*` timings (`ZDD_PROPAGATION_DELAY`,
//! `ZDD_DRAIN_TIMEOUT`, `ZDD_CLEANUP_TIMEOUT`, `ZDD_GRACE_PERIOD`, `ZDD_PRESTOP_DELAY`).
//! `/slow?ms=N` answers after N milliseconds, to watch a request finish during the drain.

use std::{convert::Infallible, process::ExitCode, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use zdd::{Config, Lifecycle};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "zdd=info".to_owned()))
        .init();
    match run().await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("hyper_hello: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT: not a port number: {port:?}"))?,
        Err(_) => 3000,
    };
    let version = std::env::var("APP_VERSION").unwrap_or_else(|_| "dev".to_owned());
    let version = Arc::new(
        HeaderValue::from_str(&version).map_err(|_| "APP_VERSION: not a valid header value")?,
    );

    let mut lifecycle = Lifecycle::new(Config::from_env()?);
    lifecycle.listen_for_signals()?;
    let handle = lifecycle.handle();
    handle.on_cleanup("say goodbye", Duration::from_secs(1), async {
        tracing::info!("cleanup hook ran after the last connection closed");
    });

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    let addr = listener.local_addr()?;
    println!(
        "hyper_hello {} listening on http://{addr}",
        version.to_str().unwrap_or("?")
    );
    for probe in ["live", "ready", "startup"] {
        println!("  probe: http://localhost:{}/health/{probe}", addr.port());
    }
    println!(
        "  try:   curl -i http://localhost:{}/slow?ms=3000   then Ctrl-C while it runs",
        addr.port()
    );

    let app = tower::service_fn(move |request: Request<Incoming>| {
        let version = Arc::clone(&version);
        async move { Ok::<_, Infallible>(respond(&request, &version).await) }
    });
    let report = zdd::serve(listener, app, lifecycle).await;
    println!("{report}");
    Ok(ExitCode::from(
        u8::try_from(report.exit_code()).unwrap_or(1),
    ))
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
