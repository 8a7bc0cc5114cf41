//! axum over TLS (rustls), with zdd's probes and shutdown: the handshake runs in each
//! connection's own task, and the certificate is reloaded when its files change.
//!
//! ```sh
//! openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
//!     -keyout key.pem -out cert.pem
//! TLS_CERT=cert.pem TLS_KEY=key.pem cargo run --example tls_hello --features rustls
//! curl -k https://localhost:3443/     # hello over TLS; renew the files and it picks them up
//! ```
//!
//! `TLS_CERT` and `TLS_KEY` name the PEM files, `PORT` (default 3443) the port, `APP_VERSION`
//! is sent as `X-Version`; the `ZDD_*` timings (and `ZDD_ADMIN_ADDR`, for probes over plain
//! HTTP on a port of their own) come from the environment.

#[path = "common/mod.rs"]
mod common;

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use axum::{Router, extract::ConnectInfo, routing::get};
use zdd::{Config, Lifecycle, RustlsAcceptor};

#[tokio::main]
async fn main() -> ExitCode {
    common::init_logging();
    common::exit_on_error(run().await)
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (Some(cert), Some(key)) = (std::env::var_os("TLS_CERT"), std::env::var_os("TLS_KEY"))
    else {
        return Err("set TLS_CERT and TLS_KEY to a PEM certificate and key; make a self-signed pair with: openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost -keyout key.pem -out cert.pem".into());
    };
    let version = common::app_version()?;
    let tls = RustlsAcceptor::from_pem_files(cert, key)?;
    let _watching = tls.watch(Duration::from_secs(10));

    let mut lifecycle = Lifecycle::new(Config::from_env()?);
    lifecycle.listen_for_signals()?;
    let port = match std::env::var("PORT") {
        Ok(_) => common::port()?,
        Err(_) => 3443,
    };
    let listener = zdd::listen(([0, 0, 0, 0], port).into(), lifecycle.config())?;
    println!("tls_hello listening on https://{}", listener.local_addr()?);
    println!("  try:   curl -k https://localhost:{port}/");

    let app = Router::new().route(
        "/",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
            format!("hello over TLS, {peer}\n")
        }),
    );
    let report = zdd::axum::serve(listener, common::with_version(app, version), lifecycle)
        .acceptor(tls)
        .connect_info(ConnectInfo::<SocketAddr>)
        .await;
    Ok(common::finish(&report))
}
