//! The load generator behind the `zdd-check` program: keep-alive HTTP traffic at a URL, no
//! request ever retried, every outcome counted by kind, with latency percentiles and the
//! split of answers by version.
//!
//! Most people want the program (`cargo install zdd-check`; see the README). The library is
//! for tests that drive a deploy from Rust, as zdd's own end-to-end tests do: start a
//! [`Load`], read its counts while the deploy goes on, stop it for a [`Summary`].
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use zdd_check::{Load, Plan};
//!
//! # #[tokio::main]
//! # async fn main() {
//! let plan = Plan::new("http://127.0.0.1:8080/".parse().unwrap()).concurrency(8);
//! let load = Load::start(plan);
//! while load.version_count("v2") < 100 {
//!     tokio::time::sleep(Duration::from_millis(50)).await;
//! }
//! let summary = load.stop().await;
//! assert_eq!(summary.failed(), 0, "{}", summary.to_text(&[]));
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod gate;
mod load;
mod outcome;
mod summary;
mod tls;

#[doc(inline)]
pub use self::{
    gate::{DEFAULT_MIN_REQUESTS, Decision, Gate, Verdict},
    load::{GRPC_HEALTH_CHECK, Live, Load, Plan, Stopper},
    summary::{Summary, VersionSummary},
    tls::{Trust, client_config},
};
