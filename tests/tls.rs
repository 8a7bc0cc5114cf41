//! TLS under load: the certificate is renewed while zdd-check's keep-alive load runs over
//! HTTPS; nothing fails, and new connections get the new certificate.
#![cfg(feature = "rustls")]

mod support;

use std::{sync::Arc, time::Duration};

use support::*;
use tokio_rustls::rustls;

/// The certificate a new TLS connection to `port` is served.
async fn served_certificate(
    port: u16,
    trusted: &[rustls::pki_types::CertificateDer<'static>],
) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_renewed_under_load_fails_nothing() {
    let dir = TempDir::new();
    let first = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let second = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    std::fs::write(&cert, first.cert.pem()).unwrap();
    std::fs::write(&key, first.signing_key.serialize_pem()).unwrap();
    // The load trusts both, as clients trust a CA that signs both.
    let both = dir.0.join("both.pem");
    std::fs::write(&both, format!("{}{}", first.cert.pem(), second.cert.pem())).unwrap();

    let tls = zdd::RustlsAcceptor::from_pem_files(&cert, &key).unwrap();
    let renew = tls.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = zdd::Config::builder()
        .propagation_delay(Duration::ZERO)
        .build()
        .unwrap();
    let lifecycle = zdd::Lifecycle::new(config);
    let handle = lifecycle.handle();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
    let served = tokio::spawn(
        zdd::axum::serve(listener, app, lifecycle)
            .acceptor(tls)
            .into_future(),
    );

    let load = load_tls(port, 16, &both);
    until("traffic flows", || load.ok() > 500).await;
    let trusted = [first.cert.der().clone(), second.cert.der().clone()];
    assert_eq!(
        served_certificate(port, &trusted).await,
        first.cert.der().to_vec()
    );

    std::fs::write(&cert, second.cert.pem()).unwrap();
    std::fs::write(&key, second.signing_key.serialize_pem()).unwrap();
    renew.reload().unwrap();
    assert_eq!(
        served_certificate(port, &trusted).await,
        second.cert.der().to_vec()
    );
    let before = load.ok();
    until("traffic continues after the renewal", || {
        load.ok() > before + 500
    })
    .await;

    let tally = load.stop().await;
    println!(
        "certificate renewed under load: {} requests, {} failed",
        tally.total(),
        tally.failed()
    );
    assert_eq!(
        tally.failed(),
        0,
        "{:?} {:?}",
        tally.failures(),
        tally.first_errors()
    );
    handle.shutdown();
    assert!(served.await.unwrap().is_graceful());
}
