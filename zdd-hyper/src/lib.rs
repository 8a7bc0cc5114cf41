//! The zdd accept/serve loop for hyper 1.x: one loop that drains without dropping a request.
//!
//! [`serve`] runs a [`Lifecycle`](zdd_core::Lifecycle)'s shutdown sequence beside an accept
//! loop, serving each connection with hyper-util's auto builder (HTTP/1.1 and h2c). The loop
//! decides nothing about draining; it does what each phase says:
//!
//! | phase | listener | connections |
//! |---|---|---|
//! | Starting, Serving | accepting | served; idle ones closed after [`Serve::idle_timeout`] |
//! | Unready | **still accepting** | HTTP/1 responses carry `Connection: close`; HTTP/2 connections get the graceful GOAWAY, their open streams finish |
//! | Draining | the backlog is served, then the listener closes | graceful close: idle HTTP/1 closed after one more read of its socket (one that answered less than 1 s ago, at most a quarter of the drain timeout, once quiet that long; one whose next head is arriving after that request), in-flight requests finish, HTTP/2 GOAWAY |
//! | Forcing | closed | every remaining connection is closed, upgraded ones too |
//!
//! Every connection is bounded: one that never sends a byte is closed after
//! [`Serve::first_byte_timeout`], one whose first request's headers do not arrive in time
//! after [`Serve::first_request_timeout`], one that starts a later request's head and does
//! not finish it after [`Serve::header_timeout`], and all of them at the drain deadline.
//! An idle keep-alive connection is closed only after [`Serve::idle_timeout`].
//!
//! Each connection's requests are counted on that connection
//! ([`Zdd::for_connection`](zdd_core::layer::Zdd::for_connection)): the connection counts
//! until its last request ends, and a request touches nothing that requests on other
//! connections touch (the in-flight figure is summed when the metrics or the report read
//! it). A connection's task is woken by its socket, and by its deadline and the phase it
//! waits for through a waker of their own, so a request wakes it once and polls nothing
//! else.
//!
//! With an admin address configured (`ZDD_ADMIN_ADDR`), or a listener given to
//! [`Serve::admin_listener`], the probes, `/metrics`, `/prestop` and `/maintenance` are
//! also served on an admin listener that stays open in every phase until the report exists
//! and whose connections are never work to drain; see [`Serve::admin`].
//!
//! Restarts in place lose nothing: [`listen`] takes a socket inherited from systemd's
//! socket activation or from a zdd parent, and otherwise binds one (with `SO_REUSEPORT`
//! when `ZDD_REUSE_PORT=true`); `SIGHUP` (or
//! [`LifecycleHandle::upgrade`](zdd_core::LifecycleHandle::upgrade)) starts the binary
//! installed at this program's path with the listening sockets, and drains this process
//! once the new one is ready. A new process that exits or is not ready within
//! `ZDD_UPGRADE_TIMEOUT` is stopped, and this one serves on.
//!
//! # Examples
//!
//! ```no_run
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use hyper::body::Incoming;
//! use zdd_core::{Config, Lifecycle};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut lifecycle = Lifecycle::new(Config::from_env()?);
//!     lifecycle.listen_for_signals()?;
//!     let listener = zdd_hyper::listen("0.0.0.0:3000".parse()?, lifecycle.config())?;
//!     let hello = tower::service_fn(|_req: Request<Incoming>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello"))))
//!     });
//!     let report = zdd_hyper::serve(listener, hello, lifecycle).await;
//!     println!("{report}");
//!     std::process::exit(report.exit_code());
//! }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod accept;
mod acceptor;
mod admin;
mod admin_routes;
mod backoff;
mod call;
mod conn;
mod io;
mod linger;
mod listen;
mod listener;
mod serve;
mod service;
mod side;
mod state;
#[cfg(feature = "rustls")]
mod tls;
mod turn;
mod upgrade;

#[doc(inline)]
pub use self::{
    acceptor::{Acceptor, DefaultAcceptor},
    listen::listen,
    listener::{Listener, bind},
    serve::{Serve, ServeFuture, serve},
    service::HttpService,
};

#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
#[doc(inline)]
pub use self::tls::{RustlsAcceptor, TlsError};

/// The README's examples, compiled and run as doctests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
