//! Serve tonic gRPC services with zdd: the same accept loop, drain and report as
//! `zdd-hyper`, with gRPC's own ends (GOAWAY at Unready, `UNAVAILABLE` for calls still open
//! at the drain deadline), and `grpc.health.v1.Health` answered from the lifecycle's
//! probes, for Kubernetes' native `grpc:` probes.
//!
//! This crate holds no lifecycle logic: [`serve`] hands tonic's `Routes` to
//! [`zdd_hyper::serve`] with the core's settings for gRPC
//! ([`end_forced_with`](zdd_core::layer::ZddLayer::end_forced_with)); [`GrpcHealth`]
//! translates the core's probe answers into `SERVING` / `NOT_SERVING`. Server-streaming
//! handlers end cleanly when draining starts through
//! [`LifecycleHandle::until_draining`](zdd_core::LifecycleHandle::until_draining).
//!
//! # Examples
//!
//! A server-streaming handler's stream that ends, with status `OK`, when draining starts:
//!
//! ```
//! use std::{pin::Pin, time::Duration};
//! use futures_core::Stream;
//! use zdd_core::LifecycleHandle;
//!
//! type Ticks = Pin<Box<dyn Stream<Item = Result<u64, tonic::Status>> + Send>>;
//!
//! fn ticks(handle: &LifecycleHandle) -> Ticks {
//!     let ticks = futures_util::stream::unfold(0_u64, |n| async move {
//!         tokio::time::sleep(Duration::from_millis(100)).await;
//!         Some((Ok(n), n + 1))
//!     });
//!     Box::pin(handle.until_draining(ticks))
//! }
//! # let lifecycle = zdd_core::Lifecycle::new(zdd_core::Config::default());
//! # let _stream = ticks(&lifecycle.handle());
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod health;
mod serve;

#[doc(inline)]
pub use self::{
    health::{GrpcHealth, WatchStream},
    serve::{serve, serve_with_health},
};
/// The types [`serve`]'s signature names, so they can be named from this crate.
#[doc(no_inline)]
pub use zdd_hyper::{Listener, Serve, ServeFuture};

/// The README's examples, compiled and run as doctests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
