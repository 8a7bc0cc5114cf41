//! The lifecycle as an extractor.

use std::convert::Infallible;

use axum::extract::{FromRef, FromRequestParts};
use http::request::Parts;
use zdd_core::LifecycleHandle;

/// Extracts the [`LifecycleHandle`] from the router's state, for handlers that wait for the
/// draining notice, spawn tracked work, or read the phase.
///
/// Put the handle in the state (directly, or as a field with a `FromRef` impl). It costs
/// nothing per request: no request extension is inserted.
///
/// # Examples
///
/// ```
/// use axum::{Router, routing::get};
/// use zdd_axum::ZddHandle;
/// use zdd_core::{Config, Lifecycle};
///
/// async fn phase(ZddHandle(handle): ZddHandle) -> String {
///     handle.phase().to_string()
/// }
///
/// let lifecycle = Lifecycle::new(Config::default());
/// let app: Router = Router::new().route("/phase", get(phase)).with_state(lifecycle.handle());
/// # drop(app);
/// ```
#[derive(Debug, Clone)]
pub struct ZddHandle(pub LifecycleHandle);

impl<S> FromRequestParts<S> for ZddHandle
where
    LifecycleHandle: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(_parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        Ok(Self(LifecycleHandle::from_ref(state)))
    }
}
