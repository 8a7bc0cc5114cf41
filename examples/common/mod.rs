//! Plumbing shared by the examples: logging, the port, printing what to try, the exit code.
#![allow(dead_code)]

use std::{net::SocketAddr, process::ExitCode};

use axum::{Router, http::HeaderValue};
use zdd::{Config, ShutdownReport};

/// `APP_VERSION` (default `dev`), sent back as `X-Version` so load checkers can tell
/// versions apart during a deploy. `APP_VERSION_FILE` names a file to read it from
/// instead: an in-place upgrade keeps the environment, so a new version comes that way.
pub(crate) fn app_version() -> Result<HeaderValue, String> {
    let version = match std::env::var_os("APP_VERSION_FILE") {
        Some(path) => std::fs::read_to_string(&path)
            .map(|version| version.trim().to_owned())
            .map_err(|e| format!("APP_VERSION_FILE {}: {e}", path.to_string_lossy()))?,
        None => std::env::var("APP_VERSION").unwrap_or_else(|_| "dev".to_owned()),
    };
    HeaderValue::from_str(&version)
        .map_err(|_| format!("APP_VERSION: not a valid header value: {version:?}"))
}

/// Adds `X-Version: version` to every response of `router`.
pub(crate) fn with_version(router: Router, version: HeaderValue) -> Router {
    router.layer(axum::middleware::map_response(
        move |mut response: axum::response::Response| {
            let version = version.clone();
            async move {
                response.headers_mut().insert("x-version", version);
                response
            }
        },
    ))
}

/// Logs zdd's events (every phase, trigger and hook) to stderr, in colour only on a
/// terminal; `RUST_LOG` overrides the filter.
pub(crate) fn init_logging() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "zdd=info,info".to_owned()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// `PORT`, default 3000.
pub(crate) fn port() -> Result<u16, String> {
    port_or(3000)
}

/// `PORT`, default `default`.
pub(crate) fn port_or(default: u16) -> Result<u16, String> {
    match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT: not a port number: {port:?}")),
        Err(_) => Ok(default),
    }
}

/// Prints where the server is and the probe URLs: on the admin listener when
/// `ZDD_ADMIN_ADDR` configures one, with its preStop and maintenance endpoints.
pub(crate) fn print_banner(name: &str, addr: SocketAddr, config: &Config) {
    println!("{name} listening on http://{addr}");
    let probes_port = match config.admin_addr() {
        Some(admin) => {
            println!("  admin listening on http://{admin}");
            admin.port()
        }
        None => addr.port(),
    };
    for probe in ["live", "ready", "startup"] {
        println!("  probe: curl -i http://localhost:{probes_port}/health/{probe}");
    }
    if config.admin_addr().is_some() {
        println!(
            "  admin: curl -X POST http://localhost:{probes_port}/maintenance   (DELETE to end it)"
        );
        println!(
            "  admin: curl http://localhost:{probes_port}/prestop   starts the shutdown, answers after the propagation delay"
        );
    }
}

/// Prints the report and turns it into the process exit code.
pub(crate) fn finish(report: &ShutdownReport) -> ExitCode {
    println!("{report}");
    ExitCode::from(u8::try_from(report.exit_code()).unwrap_or(1))
}

/// Runs `main`, turning an error into exit code 2 with its message.
pub(crate) fn exit_on_error(result: Result<ExitCode, Box<dyn std::error::Error>>) -> ExitCode {
    result.unwrap_or_else(|error| {
        eprintln!("error: {error}");
        ExitCode::from(2)
    })
}
