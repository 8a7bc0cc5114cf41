//! Plumbing shared by the benchmark drivers: arguments, SIGTERM, and the status-quo server.

use std::{
    str::FromStr,
    time::{Duration, Instant},
};

use http::{Request, Response};
use hyper::body::Incoming;

/// The value after `--name` on the command line.
pub(crate) fn value(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The value after `--name`, parsed, or `default`.
pub(crate) fn arg<T: FromStr>(name: &str, default: T) -> T {
    value(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Completes on SIGTERM.
pub(crate) async fn sigterm() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    term.recv().await;
}

/// The status quo: hyper-util's auto builder with `GracefulShutdown`, serving `service`
/// until `terminate` completes, then shut down gracefully. Returns how long the graceful
/// shutdown took. Sets `TCP_NODELAY`, as zdd's listener does.
pub(crate) async fn hyper_util_graceful<S, B>(
    listener: tokio::net::TcpListener,
    service: S,
    terminate: impl Future<Output = ()>,
) -> Duration
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static,
{
    use hyper_util::{
        rt::{TokioExecutor, TokioIo},
        server::{conn::auto::Builder, graceful::GracefulShutdown},
        service::TowerToHyperService,
    };
    let builder = Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut terminate = std::pin::pin!(terminate);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service.clone()));
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move { let _ = connection.await; });
            }
            () = &mut terminate => break,
        }
    }
    let started = Instant::now();
    drop(listener);
    graceful.shutdown().await;
    started.elapsed()
}
