//! Streams that end cleanly when draining starts.
//!
//! A long-lived response (server-sent events, a log tail, a progress feed) never finishes on
//! its own, so it would hold the drain open until forcing cuts it off mid-event. Wrapped
//! with [`LifecycleHandle::until_draining`](crate::LifecycleHandle::until_draining), it
//! yields its items as usual and ends, between two items, as soon as draining starts: the
//! client sees a normal end of stream and reconnects to an instance that is still ready.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use zdd_core::{Config, Lifecycle};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let lifecycle = Lifecycle::new(Config::default());
//! let handle = lifecycle.handle();
//! // An endless stream of ticks…
//! let ticks = futures_util::stream::unfold(0_u64, |n| async move {
//!     tokio::time::sleep(Duration::from_secs(1)).await;
//!     Some((n, n + 1))
//! });
//! // …that ends when draining starts.
//! let mut events = std::pin::pin!(handle.until_draining(ticks));
//! let sequence = tokio::spawn(lifecycle.run());
//! use futures_util::StreamExt;
//! assert_eq!(events.next().await, Some(0));
//! handle.shutdown();
//! assert_eq!(events.next().await, None);
//! assert!(sequence.await.unwrap().is_graceful());
//! # }
//! ```

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use futures_core::Stream;

use crate::PhaseReached;

/// A stream that ends when draining starts; see the [module docs](crate::stream).
#[must_use = "streams do nothing unless polled"]
#[derive(Debug)]
pub struct UntilDraining<S> {
    stream: Pin<Box<S>>,
    draining: Option<PhaseReached>,
}

impl<S> UntilDraining<S> {
    pub(crate) fn new(stream: S, draining: PhaseReached) -> Self {
        Self {
            stream: Box::pin(stream),
            draining: Some(draining),
        }
    }
}

impl<S: Stream> Stream for UntilDraining<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        // Checked first, so a stream that is always ready still ends at the drain.
        let Some(draining) = self.draining.as_mut() else {
            return Poll::Ready(None);
        };
        if Pin::new(draining).poll(cx).is_ready() {
            self.draining = None;
            return Poll::Ready(None);
        }
        let item = self.stream.as_mut().poll_next(cx);
        if let Poll::Ready(None) = item {
            self.draining = None;
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.draining {
            Some(_) => (0, self.stream.size_hint().1),
            None => (0, Some(0)),
        }
    }
}
