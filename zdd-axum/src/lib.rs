//! Serve an axum [`Router`](axum::Router) with zdd: the same accept loop, probes and
//! shutdown sequence as `zdd-hyper`, with an `axum::serve`-style entry point, and helpers
//! for handlers that live long.
//!
//! This crate holds no lifecycle logic: [`serve`] hands the router to
//! [`zdd_hyper::serve`]; [`ZddHandle`] takes the core's handle from the router state;
//! long-lived responses end on the core's draining notice (a stream through
//! [`LifecycleHandle::until_draining`](zdd_core::LifecycleHandle::until_draining), a
//! WebSocket through [`DrainingWebSocket`]).
//!
//! # Examples
//!
//! Server-sent events that end cleanly when draining starts:
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use axum::{Router, extract::State, response::sse::{Event, Sse}, routing::get};
//! use zdd_core::{Config, Lifecycle, LifecycleHandle};
//!
//! async fn events(State(handle): State<LifecycleHandle>) -> Sse<impl futures_core::Stream<Item = Result<Event, Infallible>>> {
//!     let ticks = futures_util::stream::unfold(0_u64, |n| async move {
//!         tokio::time::sleep(Duration::from_secs(1)).await;
//!         Some((Ok(Event::default().data(n.to_string())), n + 1))
//!     });
//!     Sse::new(handle.until_draining(ticks))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let lifecycle = Lifecycle::new(Config::default());
//! # lifecycle.handle().shutdown();
//! let app = Router::new().route("/events", get(events)).with_state(lifecycle.handle());
//! let report = zdd_axum::serve(listener, app, lifecycle).await;
//! assert!(report.is_graceful());
//! # Ok(())
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod extract;
mod serve;
#[cfg(feature = "ws")]
mod ws;

#[cfg(feature = "ws")]
#[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
#[doc(inline)]
pub use self::ws::DrainingWebSocket;
#[doc(inline)]
pub use self::{
    extract::ZddHandle,
    serve::{probe_routes, serve},
};
#[doc(inline)]
pub use zdd_core::layer::ZddLayer;
/// The types [`serve`]'s signature names, so they can be named from this crate.
#[doc(no_inline)]
pub use zdd_hyper::{HttpService, Listener, Serve, ServeFuture};

/// The README's examples, compiled and run as doctests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
