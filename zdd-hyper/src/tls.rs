//! TLS with rustls (feature `rustls`): [`RustlsAcceptor`], an [`Acceptor`] that runs the
//! handshake in each connection's own task, with a certificate chain and key read from PEM
//! files and reloaded without a restart.

use std::{
    fmt, io,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use rustls::{ServerConfig, sign::CertifiedKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::Acceptor;

/// Why a certificate chain and key could not be loaded. The message names the file and
/// the reason.
#[derive(Debug)]
pub struct TlsError {
    message: String,
}

impl TlsError {
    fn new(path: &Path, what: impl fmt::Display) -> Self {
        Self {
            message: format!("{}: {what}", path.display()),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TlsError {}

/// Where the certificate chain and the key come from.
#[derive(Debug, Clone)]
struct Source {
    cert: PathBuf,
    key: PathBuf,
}

impl Source {
    /// Reads both files into a server configuration offering `h2` and `http/1.1`.
    fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|error| TlsError::new(path, format!("cannot read: {error}")))
        };
        let cert_pem = read(&self.cert)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| TlsError::new(&self.cert, format!("not valid PEM: {error}")))?;
        if chain.is_empty() {
            return Err(TlsError::new(&self.cert, "no certificate in it"));
        }
        warn_if_expiring(&self.cert, &chain[0]);
        let key_pem = read(&self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| match error {
            rustls_pki_types::pem::Error::NoItemsFound => {
                TlsError::new(&self.key, "no private key in it")
            }
            error => TlsError::new(&self.key, format!("not valid PEM: {error}")),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|error| TlsError::new(&self.key, format!("unusable private key: {error}")))?;
        let certified = CertifiedKey::new(chain, signing);
        certified.keys_match().map_err(|_| {
            TlsError::new(
                &self.key,
                format!("does not match the certificate in {}", self.cert.display()),
            )
        })?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::new(&self.cert, error))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The later of the two files' modification times.
    fn modified(&self) -> Option<SystemTime> {
        let time = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        time(&self.cert).max(time(&self.key))
    }
}

/// A certificate this close to its end is warned about at load.
const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

/// Logs a warning when the leaf certificate has expired, or expires within
/// [`EXPIRY_WARNING`]: clients will refuse it, and a renewal is due. It is still served
/// (the clock may be wrong; an operator decides).
fn warn_if_expiring(path: &Path, leaf: &CertificateDer<'_>) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return;
    };
    let not_after = cert.validity().not_after.timestamp();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let left = not_after - now;
    if left <= 0 {
        tracing::warn!(target: "zdd", cert = %path.display(), expired_s_ago = -left, "the TLS certificate has expired: clients will refuse it");
    } else if left < i64::try_from(EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX) {
        tracing::warn!(target: "zdd", cert = %path.display(), expires_in_s = left, "the TLS certificate expires within a week");
    }
}

/// TLS for [`Serve::acceptor`](crate::Serve::acceptor), with rustls: ALPN `h2` and
/// `http/1.1`, TLS 1.2 and 1.3, the certificate chain and key from PEM files.
///
/// The handshake runs in each connection's own task (see [`Acceptor`]): a client that
/// connects and sends nothing delays no other, a handshake in progress at the shutdown
/// completes, and one that takes longer than the first-byte timeout is cut off. Connections
/// closed gracefully at the drain get TLS `close_notify`.
///
/// [`reload`](Self::reload) reads the files again (clones share the certificate, so keep
/// one to reload it): new connections get the new certificate, open ones keep theirs.
/// [`watch`](Self::watch) does it when the files change.
///
/// # Examples
///
/// ```no_run
/// use std::{convert::Infallible, time::Duration};
/// use zdd_hyper::RustlsAcceptor;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = RustlsAcceptor::from_pem_files("cert.pem", "key.pem")?;
/// let _watching = tls.watch(Duration::from_secs(60)); // renewed files are picked up
/// let mut lifecycle = zdd_core::Lifecycle::new(zdd_core::Config::from_env()?);
/// lifecycle.listen_for_signals()?;
/// let listener = zdd_hyper::listen("0.0.0.0:443".parse()?, lifecycle.config())?;
/// let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
///     Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from("hello"))))
/// });
/// let report = zdd_hyper::serve(listener, app, lifecycle).acceptor(tls).await;
/// std::process::exit(report.exit_code());
/// # }
/// ```
#[derive(Clone)]
pub struct RustlsAcceptor {
    source: Source,
    config: Arc<RwLock<Arc<ServerConfig>>>,
}

impl RustlsAcceptor {
    /// Reads the certificate chain (`cert`, PEM, leaf first) and its private key (`key`,
    /// PEM: PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    ///
    /// Naming the file: it cannot be read, it is not PEM, it holds no certificate or no
    /// key, or the key does not match the certificate.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let source = Source {
            cert: cert.as_ref().to_owned(),
            key: key.as_ref().to_owned(),
        };
        let config = source.load()?;
        Ok(Self {
            source,
            config: Arc::new(RwLock::new(config)),
        })
    }

    /// Reads the files again and serves the new certificate to new connections. Open
    /// connections keep theirs.
    ///
    /// # Errors
    ///
    /// As [`RustlsAcceptor::from_pem_files`]; the certificate in use then stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = self.source.load()?;
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
        tracing::info!(target: "zdd", cert = %self.source.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// Checks the files every `every` and reloads when they changed, until the returned
    /// task is aborted (or the runtime ends). A failed reload is logged and the certificate
    /// in use stays.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, like `tokio::spawn`.
    #[must_use = "the files are watched until the task is aborted"]
    pub fn watch(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let acceptor = self.clone();
        tokio::spawn(async move {
            let mut seen = acceptor.source.modified();
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                let now = acceptor.source.modified();
                if now != seen {
                    seen = now;
                    if let Err(error) = acceptor.reload() {
                        tracing::error!(target: "zdd", error = %error, "TLS certificate not reloaded; the one in use stays");
                    }
                }
            }
        })
    }

    fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl fmt::Debug for RustlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustlsAcceptor")
            .field("cert", &self.source.cert)
            .field("key", &self.source.key)
            .finish_non_exhaustive()
    }
}

impl<I> Acceptor<I> for RustlsAcceptor
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = tokio_rustls::server::TlsStream<I>;

    async fn accept(&self, stream: I) -> io::Result<Self::Stream> {
        tokio_rustls::TlsAcceptor::from(self.current())
            .accept(stream)
            .await
    }
}
