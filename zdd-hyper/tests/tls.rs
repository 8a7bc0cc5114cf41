//! TLS with rustls on real sockets: ALPN, certificates from PEM files with clear errors,
//! reload without restart, plain HTTP on the TLS port, `close_notify` at the drain.
#![cfg(feature = "rustls")]

mod support;

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use rustls_pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream, rustls};
use zdd_hyper::RustlsAcceptor;

/// A self-signed certificate for `localhost` and its key, written as PEM files in `dir`.
fn certificate(
    dir: &Path,
    name: &str,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    CertificateDer<'static>,
) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key, certified.cert.der().clone())
}

fn temp_dir() -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("zdd-tls-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

/// A client trusting the given certificates, offering `alpn`.
fn connector(trusted: &[CertificateDer<'static>], alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(connector: &TlsConnector, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// One HTTP/1.1 request on `stream`; the response head and body as text, read to the
/// close (`Connection: close`).
async fn get_once(stream: &mut TlsStream<TcpStream>, path: &str) -> String {
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .expect("a clean end: close_notify, then EOF");
    String::from_utf8(response).unwrap()
}

#[tokio::test]
async fn https_is_served_with_alpn_and_ends_with_close_notify() {
    let dir = temp_dir();
    let (cert, key, der) = certificate(&dir, "a");
    let tls = RustlsAcceptor::from_pem_files(&cert, &key).unwrap();
    let server = start_with(config(0, 5_000), move |serve| serve.acceptor(tls)).await;

    let http1 = connector(std::slice::from_ref(&der), &[b"http/1.1"]);
    let mut stream = tls_connect(&http1, server.addr).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let response = get_once(&mut stream, "/").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");

    let h2 = connector(&[der], &[b"h2", b"http/1.1"]);
    let stream = tls_connect(&h2, server.addr).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(stream);

    server.handle.shutdown();
    assert!(server.report().await.is_graceful());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_idle_tls_connection_gets_close_notify_at_the_drain() {
    let dir = temp_dir();
    let (cert, key, der) = certificate(&dir, "a");
    let tls = RustlsAcceptor::from_pem_files(&cert, &key).unwrap();
    let server = start_with(config(0, 5_000), move |serve| serve.acceptor(tls)).await;
    let mut stream = tls_connect(&connector(&[der], &[b"http/1.1"]), server.addr).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0; 1024];
    let n = stream.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).ends_with("ok"));
    // Quiet long enough for the drain to close it at once.
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.handle.shutdown();
    // rustls reports an EOF without close_notify as an error.
    let end = tokio::time::timeout(BOUND, stream.read(&mut buffer))
        .await
        .unwrap();
    assert_eq!(end.unwrap(), 0, "closed with close_notify");
    assert!(server.report().await.is_graceful());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_to_new_connections_only() {
    let dir = temp_dir();
    let (cert, key, first) = certificate(&dir, "live");
    let tls = RustlsAcceptor::from_pem_files(&cert, &key).unwrap();
    let reloader = tls.clone();
    let server = start_with(config(0, 5_000), move |serve| serve.acceptor(tls)).await;
    let (new_cert, new_key, second) = certificate(&dir, "next");
    let both = connector(&[first.clone(), second.clone()], &[b"http/1.1"]);

    let mut old = tls_connect(&both, server.addr).await;
    assert_eq!(old.get_ref().1.peer_certificates().unwrap()[0], first);
    std::fs::rename(&new_cert, &cert).unwrap();
    std::fs::rename(&new_key, &key).unwrap();
    reloader.reload().unwrap();

    let mut new = tls_connect(&both, server.addr).await;
    assert_eq!(new.get_ref().1.peer_certificates().unwrap()[0], second);
    // The connection from before still works with its certificate.
    assert!(get_once(&mut old, "/").await.starts_with("HTTP/1.1 200"));
    assert!(get_once(&mut new, "/").await.starts_with("HTTP/1.1 200"));

    // A broken file does not replace the certificate in use.
    std::fs::write(&key, "not a key").unwrap();
    let error = reloader.reload().unwrap_err().to_string();
    assert!(error.contains("no private key in it"), "{error}");
    let mut after = tls_connect(&both, server.addr).await;
    assert_eq!(after.get_ref().1.peer_certificates().unwrap()[0], second);
    assert!(get_once(&mut after, "/").await.starts_with("HTTP/1.1 200"));

    server.handle.shutdown();
    assert!(server.report().await.is_graceful());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_closed_and_others_are_served() {
    let dir = temp_dir();
    let (cert, key, der) = certificate(&dir, "a");
    let tls = RustlsAcceptor::from_pem_files(&cert, &key).unwrap();
    let server = start_with(config(0, 5_000), move |serve| serve.acceptor(tls)).await;
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(BOUND, plain.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&rest).contains("HTTP/1.1 200"));
    let mut stream = tls_connect(&connector(&[der], &[b"http/1.1"]), server.addr).await;
    assert!(get_once(&mut stream, "/").await.starts_with("HTTP/1.1 200"));
    server.handle.shutdown();
    assert!(server.report().await.is_graceful());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_certificate_files_are_errors_naming_the_file_and_the_reason() {
    let dir = temp_dir();
    let (cert, key, _) = certificate(&dir, "a");
    let (_, other_key, _) = certificate(&dir, "b");
    let missing = dir.join("missing.pem");
    let garbage = dir.join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let error = |cert: &Path, key: &Path| {
        RustlsAcceptor::from_pem_files(cert, key)
            .unwrap_err()
            .to_string()
    };

    let message = error(&missing, &key);
    assert!(
        message.starts_with(&missing.display().to_string()) && message.contains("cannot read"),
        "{message}"
    );
    let message = error(&garbage, &key);
    assert!(
        message.starts_with(&garbage.display().to_string()) && message.contains("not valid PEM"),
        "{message}"
    );
    let message = error(&empty, &key);
    assert_eq!(
        message,
        format!("{}: no certificate in it", empty.display())
    );
    let message = error(&cert, &cert);
    assert_eq!(message, format!("{}: no private key in it", cert.display()));
    let message = error(&cert, &other_key);
    assert_eq!(
        message,
        format!(
            "{}: does not match the certificate in {}",
            other_key.display(),
            cert.display()
        )
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_expired_certificate_loads_with_a_warning() {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let dir = temp_dir();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("old.crt"), dir.join("old.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let loaded = tracing::subscriber::with_default(subscriber, || {
        RustlsAcceptor::from_pem_files(&cert_path, &key_path)
    });
    assert!(loaded.is_ok(), "an expired certificate still loads");
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("WARN") && logs.contains("the TLS certificate has expired"),
        "{logs}"
    );
    // A fresh one says nothing.
    let (fresh_cert, fresh_key, _) = certificate(&dir, "fresh");
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        RustlsAcceptor::from_pem_files(&fresh_cert, &fresh_key).unwrap();
    });
    assert!(capture.0.lock().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn silent_tcp_clients_on_the_tls_port_do_not_delay_a_handshake() {
    let dir = temp_dir();
    let (cert, key, der) = certificate(&dir, "a");
    let tls = RustlsAcceptor::from_pem_files(&cert, &key).unwrap();
    let server = start_with(config(0, 5_000), move |serve| serve.acceptor(tls)).await;
    let client = connector(&[der], &[b"http/1.1"]);
    let timed = || async {
        let started = tokio::time::Instant::now();
        let mut stream = tls_connect(&client, server.addr).await;
        assert!(get_once(&mut stream, "/").await.starts_with("HTTP/1.1 200"));
        started.elapsed()
    };
    let mut unloaded = Duration::MAX;
    for _ in 0..5 {
        unloaded = unloaded.min(timed().await);
    }
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut loaded = Duration::MAX;
    for _ in 0..5 {
        loaded = loaded.min(timed().await);
    }
    println!("TLS handshake + request: {unloaded:?} alone, {loaded:?} beside 100 silent clients");
    assert!(
        loaded < unloaded + Duration::from_millis(100),
        "silent clients delayed a handshake: {unloaded:?} alone, {loaded:?} beside them"
    );
    drop(silent);
    server.handle.shutdown();
    assert!(server.report().await.is_graceful());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_handshake_begun_before_the_shutdown_completes_and_is_served() {
    let dir = temp_dir();
    let (cert, key, der) = certificate(&dir, "a");
    let tls = RustlsAcceptor::from_pem_files(&cert, &key).unwrap();
    let server = start_with(support::config(500, 5_000), move |serve| {
        serve.acceptor(tls)
    })
    .await;
    // Accepted, its handshake waiting for the ClientHello, when the shutdown starts.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::timeout(BOUND, async {
        while server.handle.open_connections() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    server.handle.shutdown();
    let mut stream = connector(&[der], &[b"http/1.1"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the handshake completes during the shutdown");
    let response = get_once(&mut stream, "/").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let report = server.report().await;
    assert!(report.is_graceful(), "{report}");
    assert_eq!(report.connections_graceful(), 1, "{report}");
    let _ = std::fs::remove_dir_all(dir);
}
