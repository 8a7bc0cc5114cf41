//! The accept loop of one listener: accepting while the lifecycle lets it, serving the
//! backlog at the drain, then closing; each accepted connection goes to its own task.

use std::sync::Arc;

use hyper_util::{rt::TokioExecutor, server::conn::auto::Builder};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zdd_core::{LifecycleHandle, ListenerTag, layer::Zdd};

use crate::{
    Acceptor, HttpService, Listener,
    backoff::Backoff,
    call::Insert,
    conn::{Deadlines, serve_connection},
    listener::is_connection_error,
};

/// Makes, for one connection's peer, what [`Serve::connect_info`](crate::Serve::connect_info)
/// inserts in each request.
pub(crate) type ConnectInfo<Addr> = Arc<dyn Fn(&Addr) -> Insert + Send + Sync>;

pub(crate) struct AcceptLoop<L: Listener, S, A> {
    pub(crate) listener: L,
    /// Counts this listener's connections apart.
    pub(crate) tag: ListenerTag,
    /// The layered service; each connection serves a copy of its own
    /// ([`Zdd::for_connection`]), which counts its requests on the connection.
    pub(crate) service: Zdd<S>,
    pub(crate) acceptor: Arc<A>,
    pub(crate) connect_info: Option<ConnectInfo<L::Addr>>,
    pub(crate) builder: Arc<Builder<TokioExecutor>>,
    pub(crate) handle: LifecycleHandle,
    pub(crate) deadlines: Deadlines,
    pub(crate) limit: Option<Arc<Semaphore>>,
}

impl<L, S, A> AcceptLoop<L, S, A>
where
    L: Listener,
    S: Clone,
    Zdd<S>: HttpService,
    A: Acceptor<L::Io>,
{
    pub(crate) async fn run(mut self) {
        if let Ok(addr) = self.listener.local_addr() {
            tracing::info!(target: "zdd", addr = ?addr, "listening");
        }
        if let Some(addr) = self.listener.network_addr() {
            self.handle.listening_on(addr);
        }
        let mut draining = self.handle.stop_accepting();
        let mut backoff = Backoff::default();
        loop {
            let permit = match &self.limit {
                Some(limit) => tokio::select! {
                    biased;
                    () = &mut draining => break,
                    permit = Arc::clone(limit).acquire_owned() => permit.ok(),
                },
                None => None,
            };
            tokio::select! {
                biased;
                () = &mut draining => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((io, peer)) => {
                        backoff = Backoff::default();
                        self.spawn(io, &peer, permit);
                    }
                    Err(error) if is_connection_error(&error) => {}
                    Err(error) => {
                        let pause = backoff.next();
                        tracing::error!(target: "zdd", error = %error, retry_in_ms = pause.as_millis() as u64, "accept failed");
                        tokio::select! {
                            biased;
                            () = &mut draining => break,
                            () = tokio::time::sleep(pause) => {}
                        }
                    }
                },
            }
        }
        self.serve_backlog().await;
    }

    /// Draining: serves what the kernel already queued (closing the listener first would
    /// reset those connections), then closes the listener.
    ///
    /// When accepting fails for want of file descriptors, the queue is still there: the
    /// loop waits for draining connections to free some and asks again, until forcing.
    async fn serve_backlog(mut self) {
        let mut forcing = self.handle.abandon_backlog();
        let mut backoff = Backoff::default();
        let mut served = 0_u64;
        loop {
            match self.listener.accept_queued() {
                None => break,
                Some(Ok((io, peer))) => {
                    served += 1;
                    self.spawn(io, &peer, None);
                }
                Some(Err(error)) if is_connection_error(&error) => {}
                Some(Err(error)) => {
                    let pause = backoff.next();
                    tracing::warn!(target: "zdd", error = %error, retry_in_ms = pause.as_millis() as u64, backlog_served = served, "accept failed while serving the backlog");
                    tokio::select! {
                        biased;
                        () = &mut forcing => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
        drop(self.listener);
        tracing::info!(target: "zdd", backlog_served = served, "listener closed");
    }

    /// Serves one accepted connection on its own task: the accept step, then HTTP. The
    /// connection counts from here, not from the task's first poll: the drain must not see
    /// zero connections while accepted ones wait to be polled.
    fn spawn(&self, io: L::Io, peer: &L::Addr, permit: Option<OwnedSemaphorePermit>) {
        let guard = self.tag.track_connection();
        let accepted = tokio::time::Instant::now();
        let acceptor = Arc::clone(&self.acceptor);
        let (service, builder, deadlines) = (
            self.service.for_connection(&guard),
            Arc::clone(&self.builder),
            self.deadlines,
        );
        let insert = self.connect_info.as_ref().map(|info| info(peer));
        tokio::spawn(async move {
            let first_byte = accepted + deadlines.first_byte;
            if let Some(io) = crate::acceptor::accept(&*acceptor, io, &guard, first_byte).await {
                serve_connection(io, guard, service, builder, deadlines, accepted, insert).await;
            }
            drop(permit);
        });
    }
}
