//! Shared helpers: a test server on loopback with handshake-driven handlers, and a minimal
//! raw HTTP/1.1 client that shows exactly what is on the wire.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    missing_debug_implementations,
    clippy::must_use_candidate
)]

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{Notify, mpsc},
    task::JoinHandle,
};
use zdd_core::{Config, Lifecycle, LifecycleHandle, ShutdownReport};
use zdd_hyper::{Acceptor, Listener, Serve};

/// A generous bound for anything that should happen promptly on loopback.
pub const BOUND: Duration = Duration::from_secs(10);

pub type Body = Full<Bytes>;

/// Handlers: `/` answers at once; `/slow` reports it started and waits for `release`;
/// `/hang` reports it started and never answers; `/upgrade` switches to an echo protocol
/// that ignores the draining notice.
#[derive(Clone)]
pub struct App {
    pub started: mpsc::UnboundedSender<String>,
    pub release: Arc<Notify>,
}

impl App {
    async fn handle(self, mut request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let path = request.uri().path().to_owned();
        let text = match path.as_str() {
            "/slow" => {
                let released = self.release.notified();
                let _ = self.started.send(path);
                released.await;
                "slow done"
            }
            "/hang" => {
                let _ = self.started.send(path);
                std::future::pending::<()>().await;
                unreachable!()
            }
            "/upgrade" => {
                let upgrade = hyper::upgrade::on(&mut request);
                let started = self.started.clone();
                tokio::spawn(async move {
                    let Ok(upgraded) = upgrade.await else { return };
                    let mut io = hyper_util::rt::TokioIo::new(upgraded);
                    let _ = started.send("upgraded".to_owned());
                    let mut buf = [0; 64];
                    // Echo until the stream fails, ignoring the draining notice on purpose.
                    loop {
                        match io.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = started.send("upgraded stream ended".to_owned());
                });
                let mut response = Response::new(Body::default());
                *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                response
                    .headers_mut()
                    .insert("connection", "upgrade".parse().unwrap());
                response
                    .headers_mut()
                    .insert("upgrade", "echo".parse().unwrap());
                return Ok(response);
            }
            "/echo" => {
                let body = http_body_util::BodyExt::collect(request.into_body())
                    .await
                    .map(http_body_util::Collected::to_bytes)
                    .unwrap_or_default();
                return Ok(Response::new(Full::new(body)));
            }
            _ => "ok",
        };
        Ok(Response::new(Full::new(Bytes::from(text))))
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: LifecycleHandle,
    pub started: mpsc::UnboundedReceiver<String>,
    pub release: Arc<Notify>,
    pub report: JoinHandle<ShutdownReport>,
}

pub fn config(propagation_ms: u64, drain_ms: u64) -> Config {
    Config::builder()
        .propagation_delay(Duration::from_millis(propagation_ms))
        .drain_timeout(Duration::from_millis(drain_ms))
        .cleanup_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

pub type AppService =
    tower::util::BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>;

pub async fn start(config: Config) -> TestServer {
    start_with(config, |serve| serve).await
}

pub async fn start_with<A, F>(config: Config, configure: F) -> TestServer
where
    A: Acceptor<TcpStream>,
    F: FnOnce(Serve<TcpListener, AppService>) -> Serve<TcpListener, AppService, A>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_on(listener, config, configure)
}

pub fn start_on<L, A, F>(listener: L, config: Config, configure: F) -> TestServer
where
    L: Listener,
    L::Addr: Into<SocketAddr>,
    A: Acceptor<L::Io>,
    F: FnOnce(Serve<L, AppService>) -> Serve<L, AppService, A>,
{
    if std::env::var_os("ZDD_TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("zdd=debug")
            .with_test_writer()
            .try_init();
    }
    let addr = listener.local_addr().unwrap().into();
    let lifecycle = Lifecycle::new(config);
    let handle = lifecycle.handle();
    let (started_tx, started) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let app = App {
        started: started_tx,
        release: Arc::clone(&release),
    };
    let service = AppService::new(tower::service_fn(move |request| {
        app.clone().handle(request)
    }));
    let report =
        tokio::spawn(configure(zdd_hyper::serve(listener, service, lifecycle)).into_future());
    TestServer {
        addr,
        handle,
        started,
        release,
        report,
    }
}

impl TestServer {
    pub async fn wait_started(&mut self, what: &str) {
        let got = tokio::time::timeout(BOUND, self.started.recv())
            .await
            .expect("handler never started");
        assert_eq!(got.as_deref(), Some(what));
    }

    pub async fn report(self) -> ShutdownReport {
        tokio::time::timeout(BOUND * 3, self.report)
            .await
            .expect("serve did not return")
            .unwrap()
    }
}

/// One HTTP/1.1 response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive HTTP/1.1 client on one raw TCP connection.
pub struct RawClient {
    reader: BufReader<TcpStream>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::try_connect(addr).await.unwrap()
    }

    pub async fn try_connect(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            reader: BufReader::new(TcpStream::connect(addr).await?),
        })
    }

    pub async fn send(&mut self, raw: &str) {
        self.reader
            .get_mut()
            .write_all(raw.as_bytes())
            .await
            .unwrap();
    }

    pub async fn get(&mut self, path: &str) -> io::Result<RawResponse> {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
            .await;
        self.response()
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a response"))
    }

    /// Reads one response; `None` on a clean close before its first byte.
    pub async fn response(&mut self) -> io::Result<Option<RawResponse>> {
        let mut line = String::new();
        if tokio::time::timeout(BOUND, self.reader.read_line(&mut line)).await?? == 0 {
            return Ok(None);
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await?;
        Ok(Some(RawResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }))
    }

    /// Waits until the server closes the connection: `Ok(())` on EOF or reset, error on
    /// unexpected data or if it stays open past the bound.
    pub async fn closed(&mut self) -> io::Result<()> {
        let mut buf = [0; 1];
        match tokio::time::timeout(BOUND, self.reader.read(&mut buf)).await? {
            Ok(0) | Err(_) => Ok(()),
            Ok(_) => Err(io::Error::other("unexpected data instead of a close")),
        }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }
}

/// A listener whose accepting can be held, so connections pile up in the kernel's backlog.
pub struct GatedListener {
    pub inner: TcpListener,
    pub held: Arc<Mutex<bool>>,
}

impl Listener for GatedListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    fn accept(
        &mut self,
    ) -> impl std::future::Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        let held = *self.held.lock().unwrap();
        let accept: Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> = if held {
            Box::pin(std::future::pending())
        } else {
            Box::pin(self.inner.accept())
        };
        accept
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}
