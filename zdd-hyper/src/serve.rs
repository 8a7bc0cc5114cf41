//! The awaitable [`Serve`] builder: the listeners, the service and its settings, and the
//! future that runs the lifecycle beside one accept loop per listener and the admin
//! listener.

use std::{
    future::{Future, IntoFuture},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use hyper_util::{rt::TokioExecutor, server::conn::auto::Builder};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower_layer::Layer;
use zdd_core::{AdminService, Lifecycle, ProbePaths, ShutdownReport, layer::ZddLayer};

use crate::{
    Acceptor, DefaultAcceptor, HttpService, Listener,
    accept::{AcceptLoop, ConnectInfo},
    admin,
    admin_routes::{AdminRoutes, Mounted},
    call::Insert,
    conn::Deadlines,
    turn, upgrade,
};

/// Serves `service` on `listener` until the lifecycle's shutdown sequence ends; `.await` it
/// for the [`ShutdownReport`].
///
/// The service is wrapped in [`ZddLayer`] (answering the probes at their default paths,
/// unless `ZDD_PUBLIC_PROBES=false`), so requests are tracked and responses marked by phase;
/// each connection is served with hyper-util's auto builder (HTTP/1.1 and h2c, detected per
/// connection). When the lifecycle's configuration names an admin address
/// (`ZDD_ADMIN_ADDR`), an admin listener is served there too; see [`Serve::admin`]. See the
/// [crate docs](crate) for what each phase does to the listener and the connections.
///
/// When the listener can be handed over ([`Listener::as_socket`]: TCP and Unix listeners),
/// an upgrade request (`SIGHUP`, or
/// [`LifecycleHandle::upgrade`](zdd_core::LifecycleHandle::upgrade)) starts the binary
/// installed at this program's path, with the same arguments and environment, the
/// listening sockets (public, then admin) at descriptors 3, 4, … (`LISTEN_FDS`, taken by
/// [`listen`](crate::listen) in the new process), and waits until it reports ready: then this
/// process drains with no propagation delay. A new process that exits, or is not ready
/// within [`Config::upgrade_timeout`](zdd_core::Config::upgrade_timeout), is stopped and this
/// one serves on.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use hyper::body::Incoming;
/// use zdd_core::{Config, Lifecycle};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let lifecycle = Lifecycle::new(Config::default());
/// let handle = lifecycle.handle();
/// let hello = tower::service_fn(|_req: Request<Incoming>| async {
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello"))))
/// });
///
/// # handle.shutdown();
/// let report = zdd_hyper::serve(listener, hello, lifecycle).await;
/// assert!(report.is_graceful());
/// # Ok(())
/// # }
/// ```
pub fn serve<L: Listener, S>(listener: L, service: S, lifecycle: Lifecycle) -> Serve<L, S> {
    crate::upgrade::remember_program();
    let layer = ZddLayer::new(lifecycle.handle());
    let layer = match lifecycle.config().public_probes() {
        true => layer.probes(ProbePaths::default()),
        false => layer,
    };
    let deadlines = Deadlines::from(lifecycle.config());
    Serve {
        listener,
        more: Vec::new(),
        service,
        acceptor: DefaultAcceptor,
        connect_info: None,
        admin: AdminService::new(lifecycle.handle()),
        admin_mounted: Vec::new(),
        admin_listener: None,
        lifecycle,
        layer,
        builder: Builder::new(TokioExecutor::new()),
        deadlines,
        max_connections: None,
    }
}

/// An awaitable server; built by [`serve`]. Every setter's docs end with its default.
#[must_use = "a server does nothing until awaited"]
pub struct Serve<L: Listener, S, A = DefaultAcceptor> {
    listener: L,
    /// More listeners, added with [`Serve::also`].
    more: Vec<L>,
    service: S,
    acceptor: A,
    connect_info: Option<ConnectInfo<L::Addr>>,
    admin: AdminService,
    /// Services mounted on the admin listener ([`Serve::admin_route`]).
    admin_mounted: Vec<Mounted>,
    admin_listener: Option<TcpListener>,
    lifecycle: Lifecycle,
    layer: ZddLayer,
    builder: Builder<TokioExecutor>,
    deadlines: Deadlines,
    max_connections: Option<usize>,
}

impl<L: Listener, S, A> Serve<L, S, A> {
    /// Runs `acceptor` on each accepted connection before HTTP is served (a TLS handshake,
    /// a PROXY protocol header), in the connection's own task, so one slow or silent client
    /// delays no other. The connection counts from accept: a step in progress when the
    /// shutdown starts completes during the propagation delay; it is bounded by the
    /// first-byte timeout and ends when forcing starts. Default is [`DefaultAcceptor`],
    /// which serves the stream as it is.
    pub fn acceptor<A2>(self, acceptor: A2) -> Serve<L, S, A2>
    where
        A2: Acceptor<L::Io>,
    {
        let Self {
            listener,
            more,
            service,
            acceptor: _,
            connect_info,
            admin,
            admin_mounted,
            admin_listener,
            lifecycle,
            layer,
            builder,
            deadlines,
            max_connections,
        } = self;
        Serve {
            listener,
            more,
            service,
            acceptor,
            connect_info,
            admin,
            admin_mounted,
            admin_listener,
            lifecycle,
            layer,
            builder,
            deadlines,
            max_connections,
        }
    }

    /// Serves `listener` too, with the same service, lifecycle and settings: an IPv6 address
    /// beside an IPv4 one, a second port. Each listener keeps accepting while unready,
    /// serves its backlog and closes at the drain; the report
    /// ([`ShutdownReport::listeners`](zdd_core::ShutdownReport::listeners)) and the
    /// `zdd_connections_accepted_total{listener}` metric count each one's connections apart.
    /// For listeners of different kinds (TCP and Unix), serve a
    /// [`tokio_util::either::Either`] of them. Default is the one listener given to
    /// [`serve`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use zdd_core::{Config, Lifecycle};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let v4 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let v6 = tokio::net::TcpListener::bind("[::1]:0").await.or(tokio::net::TcpListener::bind("127.0.0.1:0").await)?;
    /// let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
    ///     Ok::<_, Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    /// });
    /// let lifecycle = Lifecycle::new(Config::default());
    /// # lifecycle.handle().shutdown();
    /// let report = zdd_hyper::serve(v4, app, lifecycle).also(v6).await;
    /// assert_eq!(report.listeners().len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn also(mut self, listener: L) -> Self {
        self.more.push(listener);
        self
    }

    /// Puts `info(peer)`, made from each connection's peer address (the listener's
    /// [`Listener::Addr`]), in the extensions of every request on that connection. With
    /// axum, `.connect_info(ConnectInfo)` makes the `ConnectInfo<SocketAddr>` extractor
    /// work, as `into_make_service_with_connect_info` does for `axum::serve`. Default is
    /// none: nothing is added.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{convert::Infallible, net::SocketAddr};
    /// use zdd_core::{Config, Lifecycle};
    ///
    /// #[derive(Clone, Debug)]
    /// struct Peer(SocketAddr);
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let app = tower::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
    ///     let peer = request.extensions().get::<Peer>().map(|peer| peer.0.to_string());
    ///     Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from(
    ///         peer.unwrap_or_default(),
    ///     ))))
    /// });
    /// let lifecycle = Lifecycle::new(Config::default());
    /// # lifecycle.handle().shutdown();
    /// let report = zdd_hyper::serve(listener, app, lifecycle).connect_info(Peer).await;
    /// assert!(report.is_graceful());
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect_info<T, F>(mut self, info: F) -> Self
    where
        F: Fn(L::Addr) -> T + Send + Sync + 'static,
        T: Clone + Send + Sync + 'static,
        L::Addr: Clone,
    {
        let info = Arc::new(info);
        self.connect_info = Some(Arc::new(move |peer: &L::Addr| {
            let value = info(peer.clone());
            Arc::new(move |extensions: &mut http::Extensions| {
                extensions.insert(value.clone());
            }) as Insert
        }));
        self
    }

    /// Adjusts the [`ZddLayer`] in front of the service (probe paths, exempt paths, late
    /// requests). Default is `ZddLayer::new(handle).probes(ProbePaths::default())`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{convert::Infallible, time::Duration};
    /// use zdd_core::{Config, Lifecycle, ProbePaths, layer::LateRequests};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
    ///     Ok::<_, Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    /// });
    /// let lifecycle = Lifecycle::new(Config::default());
    /// # lifecycle.handle().shutdown();
    /// let report = zdd_hyper::serve(listener, app, lifecycle)
    ///     .layer(|layer| {
    ///         layer
    ///             .probes(ProbePaths::default().liveness("/livez").readiness("/readyz"))
    ///             .exempt("/metrics")
    ///             .late_requests(LateRequests::Reject { retry_after: Duration::from_secs(1) })
    ///     })
    ///     .await;
    /// assert!(report.is_graceful());
    /// # Ok(())
    /// # }
    /// ```
    pub fn layer(mut self, configure: impl FnOnce(ZddLayer) -> ZddLayer) -> Self {
        self.layer = configure(self.layer);
        self
    }

    /// Gives access to hyper-util's connection builder, for HTTP/1 and HTTP/2 settings (buffer
    /// sizes, HTTP/2 window and stream limits, …). Leave its timer unset: hyper's header read
    /// timeout would also close idle keep-alive connections, which
    /// [`Serve::idle_timeout`] keeps open on purpose. Default is
    /// `Builder::new(TokioExecutor::new())`.
    pub fn http(mut self, configure: impl FnOnce(&mut Builder<TokioExecutor>)) -> Self {
        configure(&mut self.builder);
        self
    }

    /// How long a new connection may stay silent before it is closed. Browsers and client
    /// pools open connections ahead of need; without a bound they would hold the drain open.
    /// Default is the lifecycle's [`Config::first_byte_timeout`](zdd_core::Config::first_byte_timeout)
    /// (`ZDD_FIRST_BYTE_TIMEOUT`, 5 s).
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.deadlines.first_byte = timeout;
        self
    }

    /// How long after accept the first request's headers must be complete, which cuts off
    /// slow-loris clients. Counted from accept, so it includes the first-byte wait. Default
    /// is the lifecycle's [`Config::first_request_timeout`](zdd_core::Config::first_request_timeout)
    /// (`ZDD_FIRST_REQUEST_TIMEOUT`, 10 s).
    pub fn first_request_timeout(mut self, timeout: Duration) -> Self {
        self.deadlines.first_request = timeout;
        self
    }

    /// How long the head of each later request on a keep-alive HTTP/1 connection may take,
    /// counted from its first byte, which cuts off slow-loris clients that send one fast
    /// request and then trickle the next. An idle connection, with no request begun, is not
    /// bound by it (see [`Serve::idle_timeout`]). The first request is bounded by
    /// [`Serve::first_request_timeout`]; upgraded connections and HTTP/2 are not bound by
    /// it. Default is the lifecycle's [`Config::header_timeout`](zdd_core::Config::header_timeout)
    /// (`ZDD_HEADER_TIMEOUT`, 10 s).
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.deadlines.header = timeout;
        self
    }

    /// How long a connection may go without a new request before it is closed gracefully.
    /// Keep it longer than every load balancer's idle timeout in front of the service (AWS
    /// ALB 60 s, nginx 75 s, GCP 600 s), so the balancer always closes first and never sends
    /// a request on a connection the server is closing. Default is the lifecycle's
    /// [`Config::idle_timeout`](zdd_core::Config::idle_timeout) (`ZDD_IDLE_TIMEOUT`, 620 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.deadlines.idle = timeout;
        self
    }

    /// Stops accepting while this many connections are open. Default is no limit.
    pub fn max_connections(mut self, limit: usize) -> Self {
        self.max_connections = Some(limit);
        self
    }

    /// Adjusts the admin listener's routes, such as the `/metrics` renderer. The admin
    /// listener is served only when there is one: given with [`Serve::admin_listener`], or
    /// bound at the lifecycle's [`Config::admin_addr`](zdd_core::Config::admin_addr)
    /// (`ZDD_ADMIN_ADDR`). Default is `AdminService::new(handle)`, with the probes at the
    /// public listener's paths.
    ///
    /// The admin listener answers the probes, `/metrics`, `/prestop` and `/maintenance`
    /// (see [`AdminService`]) over HTTP/1.1, in every phase until the report exists: it is
    /// closed last. Its connections are never counted as work to drain; at most 64 are
    /// open at once (a new one past that closes the oldest, at once if it is idle), and one
    /// whose request head takes longer than 5 s, or that stays idle that long, is closed.
    ///
    /// When the configured address cannot be bound (in use, the public listener's own), the
    /// server does not start: the error is logged, the service never turns ready, and the
    /// report comes at once with [`Trigger::StartupFailed`](zdd_core::Trigger::StartupFailed)
    /// and exit code 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use zdd_core::{Config, Lifecycle};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::builder()
    ///     .admin_addr("127.0.0.1:0".parse()?)
    ///     .public_probes(false)
    ///     .build()?;
    /// let lifecycle = Lifecycle::new(config);
    /// # lifecycle.handle().shutdown();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
    ///     Ok::<_, Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    /// });
    /// let report = zdd_hyper::serve(listener, app, lifecycle)
    ///     .admin(|admin| admin.metrics(|| "# no metrics yet\n".to_owned()))
    ///     .await;
    /// assert!(report.is_graceful());
    /// # Ok(())
    /// # }
    /// ```
    pub fn admin(mut self, configure: impl FnOnce(AdminService) -> AdminService) -> Self {
        self.admin = configure(self.admin);
        self
    }

    /// Mounts `service` on the admin listener for the requests whose path starts with
    /// `prefix`, over HTTP/1.1 or HTTP/2: zdd-tonic mounts the gRPC health service there
    /// (prefix `/grpc.health.v1.Health/`), so Kubernetes' `grpc:` probes can use the admin
    /// port. Like the rest of the admin listener, its requests are not counted and it
    /// answers until the report exists. Can be called several times; the first prefix that
    /// matches wins, zdd's own routes answer the rest. Default is none.
    pub fn admin_route<S2: HttpService + Sync>(
        mut self,
        prefix: impl Into<std::borrow::Cow<'static, str>>,
        service: S2,
    ) -> Self {
        self.admin_mounted
            .push(Mounted::new(prefix.into(), service));
        self
    }

    /// Serves the admin listener (see [`Serve::admin`]) on `listener`, instead of binding
    /// the lifecycle's [`Config::admin_addr`](zdd_core::Config::admin_addr). Default is
    /// none.
    pub fn admin_listener(mut self, listener: TcpListener) -> Self {
        self.admin_listener = Some(listener);
        self
    }
}

impl<L: Listener, S, A> std::fmt::Debug for Serve<L, S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            listener: _,
            more,
            service: _,
            acceptor: _,
            connect_info,
            admin,
            admin_mounted,
            admin_listener,
            lifecycle,
            layer,
            builder: _,
            deadlines,
            max_connections,
        } = self;
        f.debug_struct("Serve")
            .field("lifecycle", lifecycle)
            .field("layer", layer)
            .field("admin", admin)
            .field("admin_mounted", admin_mounted)
            .field("admin_listener", admin_listener)
            .field("connect_info", &connect_info.is_some())
            .field("listeners", &(1 + more.len()))
            .field("deadlines", deadlines)
            .field("max_connections", max_connections)
            .finish_non_exhaustive()
    }
}

impl<L, S, A> IntoFuture for Serve<L, S, A>
where
    L: Listener,
    S: HttpService,
    A: Acceptor<L::Io>,
{
    type Output = ShutdownReport;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> Self::IntoFuture {
        let Self {
            listener,
            more,
            service,
            acceptor,
            connect_info,
            admin,
            admin_mounted,
            admin_listener,
            lifecycle,
            layer,
            builder,
            deadlines,
            max_connections,
        } = self;
        let handle = lifecycle.handle();
        let admin = match (admin.probe_paths(), layer.probe_paths()) {
            (None, Some(paths)) => admin.probes(paths.clone()),
            _ => admin,
        };
        let listeners: Vec<L> = std::iter::once(listener).chain(more).collect();
        let public_addrs: Vec<_> = listeners
            .iter()
            .filter_map(Listener::network_addr)
            .collect();
        // Copies of the listening sockets for an upgrade's new process.
        let mut sockets: Vec<upgrade::Socket> = listeners
            .iter()
            .map_while(|listener| listener.as_socket()?.try_clone_to_owned().ok())
            .enumerate()
            .map(|(i, fd)| upgrade::Socket {
                name: if i == 0 {
                    "public".to_owned()
                } else {
                    format!("public{}", i + 1)
                },
                fd,
            })
            .collect();
        if sockets.len() < listeners.len() {
            // One that cannot be handed over: no upgrades.
            sockets.clear();
        }
        let service = layer.layer(service);
        let acceptor = Arc::new(acceptor);
        let builder = Arc::new(builder);
        let limit = max_connections.map(|n| Arc::new(Semaphore::new(n)));
        let loops: Vec<_> = listeners
            .into_iter()
            .map(|listener| {
                let name = listener
                    .local_addr()
                    .map_or_else(|_| "unknown".to_owned(), |addr| format!("{addr:?}"));
                AcceptLoop {
                    tag: handle.register_listener(name),
                    listener,
                    service: service.clone(),
                    acceptor: Arc::clone(&acceptor),
                    connect_info: connect_info.clone(),
                    builder: Arc::clone(&builder),
                    handle: handle.clone(),
                    deadlines,
                    limit: limit.clone(),
                }
            })
            .collect();
        ServeFuture {
            inner: Box::pin(async move {
                let admin_listener =
                    match admin::open(admin_listener, lifecycle.config(), &public_addrs) {
                        Ok(listener) => listener,
                        Err(error) => {
                            handle.fail_startup(&error);
                            return lifecycle.run().await;
                        }
                    };
                // Cancelled once the report exists, or if this future is dropped.
                let stop_admin = CancellationToken::new();
                let _stop_admin = stop_admin.clone().drop_guard();
                if !sockets.is_empty()
                    && let Some(fd) = admin_listener
                        .as_ref()
                        .and_then(|l| std::os::fd::AsFd::as_fd(l).try_clone_to_owned().ok())
                {
                    sockets.push(upgrade::Socket {
                        name: "admin".to_owned(),
                        fd,
                    });
                }
                if let Some(admin_listener) = admin_listener {
                    let routes = AdminRoutes {
                        admin,
                        mounted: admin_mounted.into(),
                    };
                    tokio::spawn(admin::run(admin_listener, routes, stop_admin));
                }
                let upgrades = (!sockets.is_empty())
                    .then(|| tokio::spawn(upgrade::run(handle.clone(), sockets)));
                // Idle connections close once this runtime has read the sockets' events
                // after the drain began: this task tells the lifecycle when.
                let turning = tokio::spawn(turn::at_drain(handle.clone(), handle.event_turn()));
                // Tracked, so the drain also waits for the listeners to close.
                let accepting: Vec<_> = loops
                    .into_iter()
                    .map(|accept| tokio::spawn(handle.track_future(accept.run())))
                    .collect();
                let report = lifecycle.run().await;
                turning.abort();
                for accepting in accepting {
                    accepting.abort();
                }
                if let Some(upgrades) = upgrades {
                    upgrades.abort();
                }
                report
            }),
        }
    }
}

/// The running server: [`Serve`] turned into a future by `.await` (or
/// [`IntoFuture::into_future`], to store or spawn it). It completes with the
/// [`ShutdownReport`] when the lifecycle's sequence ends.
///
/// # Cancel safety
///
/// Dropping it before it completes abandons the lifecycle (see
/// [`Lifecycle::run`](zdd_core::Lifecycle::run)): the listener stops accepting, after
/// taking the connections the kernel already queued, and every connection is closed as
/// forcing closes it; no cleanup hook runs. The accept loop and the connections run on
/// their own tasks and end by themselves, promptly, once the lifecycle is forcing. The
/// admin listener stops at once.
#[must_use = "futures do nothing unless polled"]
pub struct ServeFuture {
    inner: Pin<Box<dyn Future<Output = ShutdownReport> + Send>>,
}

impl Future for ServeFuture {
    type Output = ShutdownReport;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<ShutdownReport> {
        self.inner.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for ServeFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeFuture").finish_non_exhaustive()
    }
}
