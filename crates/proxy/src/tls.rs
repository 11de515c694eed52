//! TLS termination: the certificate the TLS listeners present, and the
//! [`Transport`] that makes the listeners one piece of code with or
//! without TLS.
//!
//! The handshake runs in the connection's own task, never in the accept
//! loop, and has a time limit
//! ([`ProxyConfig::tls_handshake_timeout`](crate::ProxyConfig)): a client
//! that connects and says nothing costs one task for that long and blocks
//! no one.

use crate::ProxyError;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A certificate chain and its private key, ready for
/// [`Proxy::serve_tls`](crate::Proxy::serve_tls) and TLS raw TCP
/// ([`Proxy::serve_tcp`](crate::Proxy::serve_tcp)). Cheap to clone.
#[derive(Clone)]
pub struct TlsCertificate {
    /// For HTTP: ALPN offers `h2` and `http/1.1`.
    http: TlsAcceptor,
    /// For raw TCP: no ALPN, since the proxy does not know the protocol
    /// the machine speaks and must not claim one for it.
    tcp: TlsAcceptor,
}

impl TlsCertificate {
    /// Loads `cert_pem` (the certificate, then any intermediates) and
    /// `key_pem` (a PKCS#8, PKCS#1 or SEC1 private key). Errors name the
    /// file at fault.
    pub fn load(
        cert_pem: impl AsRef<Path>,
        key_pem: impl AsRef<Path>,
    ) -> Result<TlsCertificate, ProxyError> {
        let (cert_path, key_path) = (cert_pem.as_ref(), key_pem.as_ref());
        let cert_text = read("certificate", cert_path)?;
        let chain = CertificateDer::pem_slice_iter(&cert_text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| bad_pem("certificate", cert_path, err))?;
        if chain.is_empty() {
            return Err(ProxyError::TlsNoCertificate(cert_path.to_path_buf()));
        }
        let key =
            PrivateKeyDer::from_pem_slice(&read("key", key_path)?).map_err(|err| match err {
                pem::Error::NoItemsFound => ProxyError::TlsNoKey(key_path.to_path_buf()),
                err => bad_pem("key", key_path, err),
            })?;
        let unusable = |source: rustls::Error| match source {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                ProxyError::TlsKeyMismatch {
                    cert: cert_path.to_path_buf(),
                    key: key_path.to_path_buf(),
                }
            }
            source => ProxyError::TlsUnusable {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
                source,
            },
        };
        let tcp = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(unusable)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(unusable)?;
        let mut http = tcp.clone();
        http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsCertificate {
            http: TlsAcceptor::from(Arc::new(http)),
            tcp: TlsAcceptor::from(Arc::new(tcp)),
        })
    }

    pub(crate) fn for_http(&self, timeout: Duration) -> Tls {
        Tls {
            acceptor: self.http.clone(),
            timeout,
        }
    }

    pub(crate) fn for_tcp(&self, timeout: Duration) -> Tls {
        Tls {
            acceptor: self.tcp.clone(),
            timeout,
        }
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ProxyError> {
    std::fs::read(path).map_err(|source| ProxyError::TlsRead {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn bad_pem(what: &'static str, path: &Path, source: pem::Error) -> ProxyError {
    ProxyError::TlsPem {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// How a listener turns an accepted connection into the client's byte
/// stream: as it is ([`Plain`]) or after a TLS handshake ([`Tls`]).
/// Everything after that is the same code for both.
pub(crate) trait Transport: Clone + Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Whether clients reached TLS termination, which decides the ports
    /// the listener reaches (those with a `tls` handler or those without)
    /// and `X-Forwarded-Proto`.
    const TLS: bool;

    /// The client's stream, or `None` when the connection ended before it
    /// could carry anything (a failed or timed-out handshake, logged here).
    fn open(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> impl Future<Output = Option<Self::Stream>> + Send;

    /// The HTTP server for an opened stream.
    fn http_server(stream: &Self::Stream) -> auto::Builder<TokioExecutor>;
}

/// No TLS: the TCP connection is the client's stream.
#[derive(Clone)]
pub(crate) struct Plain;

impl Transport for Plain {
    type Stream = TcpStream;
    const TLS: bool = false;

    async fn open(&self, stream: TcpStream, _peer: SocketAddr) -> Option<TcpStream> {
        Some(stream)
    }

    /// HTTP/1.1 or HTTP/2 with prior knowledge (h2c): hyper tells them
    /// apart by the connection's first bytes.
    fn http_server(_stream: &TcpStream) -> auto::Builder<TokioExecutor> {
        auto::Builder::new(TokioExecutor::new())
    }
}

/// TLS termination with one certificate.
#[derive(Clone)]
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    timeout: Duration,
}

impl Transport for Tls {
    type Stream = TlsStream<TcpStream>;
    const TLS: bool = true;

    /// Failures are the client's business (a scanner, a client that does
    /// not trust the certificate), so they are logged at debug only.
    async fn open(&self, stream: TcpStream, peer: SocketAddr) -> Option<Self::Stream> {
        match tokio::time::timeout(self.timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(err)) => {
                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, timeout = ?self.timeout, "TLS handshake timed out");
                None
            }
        }
    }

    /// HTTP/2 when the client chose `h2` by ALPN, HTTP/1.1 otherwise: over
    /// TLS, ALPN is how a client announces HTTP/2.
    fn http_server(stream: &Self::Stream) -> auto::Builder<TokioExecutor> {
        let server = auto::Builder::new(TokioExecutor::new());
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            server.http2_only()
        } else {
            server.http1_only()
        }
    }
}
