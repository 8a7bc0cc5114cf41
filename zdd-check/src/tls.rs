//! HTTPS: which servers to trust. The system's roots by default, the certificates of a PEM
//! file with `--cacert`, or none at all with `--insecure` (a test server's self-signed
//! certificate).

use std::{path::Path, sync::Arc};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};

/// Whom to trust for `https://` URLs.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// The system's trust roots.
    #[default]
    System,
    /// The certificates in a PEM file (a private CA, a self-signed server).
    CaFile(std::path::PathBuf),
    /// Any certificate: no verification at all. For test servers only.
    Insecure,
}

/// A TLS client configuration trusting `trust`. The load sets ALPN itself (`h2` and
/// `http/1.1`, or `h2` alone with [`Plan::h2c`](crate::Plan::h2c)).
///
/// # Errors
///
/// When the CA file cannot be read or holds no certificate, or the system has no usable
/// trust root; the message says which, and what to pass instead.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let roots = match trust {
        Trust::Insecure => None,
        Trust::CaFile(path) => Some(roots_from_file(path)?),
        Trust::System => Some(system_roots()?),
    };
    let config = match roots {
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        Some(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A configuration trusting nothing: every `https://` request fails its handshake (counted
/// as `tls_error`). What a plan without a usable trust root gets.
pub(crate) fn trusting_nothing() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config =
        match ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
            Ok(builder) => builder
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth(),
            Err(_) => unreachable!("ring supports rustls's default protocol versions"),
        };
    Arc::new(config)
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, String> {
    let named = |what: String| format!("--cacert {}: {what}", path.display());
    let pem = std::fs::read(path).map_err(|e| named(format!("cannot read: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| named(format!("not valid PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| named(format!("not a usable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(named("no certificate in it".to_owned()));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("https: the system has no usable trust root; pass --cacert FILE (the server's CA or certificate, PEM), or --insecure for a test server".to_owned());
    }
    Ok(roots)
}

/// Accepts every certificate (`--insecure`); signatures are still checked, so the
/// connection is encrypted to whoever holds the key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
