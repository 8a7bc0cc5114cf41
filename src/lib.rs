//! # zdd: redeploy web services with zero failed requests
//!
//! zdd gives a Rust service on Kubernetes (or behind any load balancer) probes that tell the
//! truth and a shutdown sequence that drops nothing:
//!
//! ```text
//! SIGTERM → unready → wait for load balancers → stop accepting → drain in-flight work
//!         → force-close what is left → ordered cleanup → a report and an exit code
//! ```
//!
//! | phase | readiness | liveness | startup | listener | HTTP |
//! |---|---|---|---|---|---|
//! | Starting | 503 | 200 | 503 | open | served |
//! | Serving | 200 if checks pass | 200 | 200 | open | served |
//! | Unready | 503 | 200 | 200 | still accepting for the propagation delay | HTTP/1 `Connection: close`, HTTP/2 GOAWAY |
//! | Draining | 503 | 200 | 200 | backlog served, then closed | in-flight work finishes, idle connections closed |
//! | Forcing | 503 | 200 | 200 | closed | what is left is closed and logged |
//! | CleaningUp | 503 | 200 | 200 | closed | cleanup hooks, newest first |
//! | Stopped | — | — | — | — | the serve call returns a [`ShutdownReport`] |
//!
//! # Quick start
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use zdd::{Check, Config, Lifecycle};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // ZDD_PROPAGATION_DELAY, ZDD_DRAIN_TIMEOUT, … with validated defaults.
//!     let mut lifecycle = Lifecycle::new(Config::from_env()?);
//!     lifecycle.listen_for_signals()?;
//!     let handle = lifecycle.handle();
//!     handle.readiness_check(Check::new("database", || async { Ok::<_, std::io::Error>(()) }));
//!     handle.on_cleanup("database", std::time::Duration::from_secs(1), async { /* pool.close().await */ });
//!
//!     // An inherited socket (systemd, an upgrade) or a new one with a server-sized backlog.
//!     let listener = zdd::listen("0.0.0.0:3000".parse()?, lifecycle.config())?;
//!     let app = Router::new().route("/", get(|| async { "hello" }));
//!     // Probes at /health/{live,ready,startup}; requests tracked; phases obeyed.
//!     let report = zdd::axum::serve(listener, app, lifecycle).await;
//!     println!("{report}");
//!     std::process::exit(report.exit_code());
//! }
//! ```
//!
//! On raw hyper, [`serve`] takes any tower service over `Request<hyper::body::Incoming>`.
//!
//! # Features
//!
//! - `hyper` (default): [`serve`], the accept loop of `zdd-hyper`, [`listen`] (inherited
//!   sockets, `SO_REUSEPORT`) and [`bind`].
//! - `signal` (default): [`Lifecycle::listen_for_signals`] (`SIGTERM`, `SIGINT`, and `SIGHUP`
//!   for in-place upgrades).
//! - `rustls`: [`RustlsAcceptor`], TLS with rustls for [`Serve::acceptor`]: ALPN `h2` and
//!   `http/1.1`, certificates from PEM files, reload without restart.
//! - `systemd` (default): `READY=1`, `STOPPING=1` and `MAINPID=` on systemd's notification
//!   socket, for `Type=notify` services.
//! - `metrics` (default): phases, work in flight, forced closes and check results through
//!   the `metrics` facade (see [`metrics`]); install any recorder to export them.
//! - `axum` (default): [`axum::serve`] for an axum `Router`, the [`axum::ZddHandle`]
//!   extractor and the [`axum::DrainingWebSocket`] helper.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[doc(inline)]
pub use zdd_core::*;

#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
#[doc(inline)]
pub use zdd_hyper::{HttpService, Listener, Serve, ServeFuture, bind, listen, serve};

#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
#[doc(inline)]
pub use zdd_hyper::{RustlsAcceptor, TlsError};

#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
#[doc(inline)]
pub use zdd_hyper::{Acceptor, DefaultAcceptor};

/// Serving an axum `Router`; see `zdd-axum`.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum {
    #[doc(inline)]
    pub use zdd_axum::{DrainingWebSocket, ZddHandle, ZddLayer, probe_routes, serve};
}

/// Serving tonic gRPC routes, and `grpc.health.v1` from the lifecycle; see `zdd-tonic`.
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod tonic {
    #[doc(inline)]
    pub use zdd_tonic::{GrpcHealth, WatchStream, serve, serve_with_health};
}
