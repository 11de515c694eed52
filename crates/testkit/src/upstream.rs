//! Loopback upstreams for proxy tests and benchmarks (the tokenizer, the
//! egress proxy): real HTTP and HTTPS servers (certificate from a
//! throwaway CA) that echo what they receive and count it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// A running upstream; it serves until the test's runtime ends.
pub struct Upstream {
    pub addr: SocketAddr,
    /// PEM of the CA that signed the upstream's certificate (HTTPS only).
    pub ca_file: PathBuf,
    pub ca_pem: String,
    hits: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl Upstream {
    /// Requests the upstream has received.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Starts an HTTPS server for `localhost`/`127.0.0.1` answering every
/// request with JSON `{"method", "path", "headers": {name: [values]}, "body"}`;
/// `/delay/<ms>` answers after that many milliseconds (an upstream's work).
pub async fn tls_upstream() -> Upstream {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "roost test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA cert");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");

    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("server TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let (addr, hits) = serve(move |stream| {
        let acceptor = acceptor.clone();
        async move { acceptor.accept(stream).await.ok() }
    })
    .await;
    Upstream {
        addr,
        ca_file,
        ca_pem: ca.pem(),
        hits,
        _dir: dir,
    }
}

/// [`tls_upstream`] over plain HTTP.
pub async fn http_upstream() -> Upstream {
    let (addr, hits) = serve(|stream| async move { Some(stream) }).await;
    Upstream {
        addr,
        ca_file: PathBuf::new(),
        ca_pem: String::new(),
        hits,
        _dir: tempfile::tempdir().expect("tempdir"),
    }
}

/// Accepts on a loopback port; each connection goes through `open`
/// (a TLS handshake, or nothing) and is then served the echo.
async fn serve<S, F>(
    open: impl Fn(tokio::net::TcpStream) -> F + Send + 'static,
) -> (SocketAddr, Arc<AtomicUsize>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    F: std::future::Future<Output = Option<S>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let opened = open(stream);
            let counter = counter.clone();
            tokio::spawn(async move {
                let Some(stream) = opened.await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        echo(req)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// The echo of one request.
async fn echo(
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    if let Some(ms) = parts
        .uri
        .path()
        .strip_prefix("/delay/")
        .and_then(|ms| ms.parse().ok())
    {
        // A thread sleep is precise to tens of microseconds; tokio's timer
        // rounds up to whole milliseconds, which would turn any extra hop
        // into a 1 ms step.
        let delay = std::time::Duration::from_millis(ms);
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(delay)).await;
    }
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<serde_json::Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned().into())
            .collect();
        headers.insert(name.to_string(), values.into());
    }
    let echo = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    Ok(hyper::Response::new(Full::new(Bytes::from(
        echo.to_string(),
    ))))
}
