//! rustls configuration from PEM files.
//!
//! - Server side: the configured chain and key; no client certificate is asked for.
//! - Client side: the server's chain is verified (webpki) against the system's trust store
//!   (`rustls-native-certs`, read once at bind) plus the certificates of our own
//!   [`TlsFiles::cert`] file, so peers sharing a private CA or a self-signed certificate
//!   work without a system-wide install. The name checked is the SIP domain the target
//!   named when the resolver recorded one in [`TlsNames`](crate::TlsNames) (RFC 5922; also
//!   sent as SNI), else the peer's IP address. Our chain is offered if the server asks for
//!   a client certificate.
//!
//! The crypto provider is `ring`, chosen explicitly (no process-wide default), so the build
//! needs neither cmake nor the aws-lc sources.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{NetError, TlsFiles};

/// Both halves of TLS, built once at bind.
#[derive(Clone)]
pub(crate) struct TlsContext {
    /// Accepts incoming TLS connections.
    pub(crate) acceptor: TlsAcceptor,
    /// Opens outgoing TLS connections.
    pub(crate) connector: TlsConnector,
}

impl TlsContext {
    /// Reads the PEM files and builds the server and client configurations.
    pub(crate) fn load(files: &TlsFiles) -> Result<TlsContext, NetError> {
        let certs = read_certs(&files.cert)?;
        let key = read_key(&files.key)?;
        let provider: Arc<CryptoProvider> = Arc::new(ring::default_provider());

        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key.clone_key())?;

        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!(error = %e, "system trust store");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "system trust anchors");
        let (own, _) = roots.add_parsable_certificates(certs.iter().cloned());
        tracing::debug!(own, "trust anchors from our own certificate file");

        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)?;

        Ok(TlsContext {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, NetError> {
    fs::read(path).map_err(|source| NetError::TlsFile {
        path: path.to_owned(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| NetError::TlsFile {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(NetError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, NetError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| NetError::TlsFile {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| NetError::NoPrivateKey {
            path: path.to_owned(),
        })
}
