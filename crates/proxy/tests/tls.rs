//! TLS termination: the HTTPS listener and TLS raw TCP, with a certificate
//! from a throwaway CA, against loopback servers standing in for machines.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use roost_proxy::{ProxyConfig, ProxyError, TlsCertificate};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Apps are `<app>.roost.test` here: TLS clients refuse a wildcard
/// certificate for a single-label domain such as `*.localhost`.
const DOMAIN: &str = "roost.test";

fn config() -> ProxyConfig {
    ProxyConfig {
        domain: DOMAIN.into(),
        ..test_config()
    }
}

/// A CA, and a certificate for `*.roost.test` and `localhost` it signed,
/// whose PEM files the proxy loads.
struct Pki {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    roots: Arc<rustls::RootCertStore>,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![format!("*.{DOMAIN}"), "localhost".into()])
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("certificate");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).expect("trust the CA");
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            roots: Arc::new(roots),
            dir,
        };
        std::fs::write(&pki.cert, cert.pem()).expect("write certificate");
        std::fs::write(&pki.key, key.serialize_pem()).expect("write key");
        pki
    }

    fn certificate(&self) -> TlsCertificate {
        TlsCertificate::load(&self.cert, &self.key)
            .map_err(|err| err.to_string())
            .expect("certificate loads")
    }

    /// A file in the PKI's directory with `text`.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// A TLS connection to `addr` for `host`, offering `alpn`.
    async fn connect(&self, addr: SocketAddr, host: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(self.roots.clone())
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).expect("name");
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake")
    }

    /// GETs `https://<host><path>` from `addr`, offering `alpn`, in the
    /// HTTP version the handshake chose.
    async fn get(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        alpn: &[&[u8]],
    ) -> (http::Version, Reply) {
        let stream = self.connect(addr, host, alpn).await;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        let request = http::Request::get(format!("https://{host}{path}"));
        let response = if h2 {
            // HTTP/2 names the app in :authority alone.
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .expect("h2 handshake");
            tokio::spawn(conn);
            sender
                .send_request(request.body(Empty::<Bytes>::new()).unwrap())
                .await
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("http/1.1 handshake");
            tokio::spawn(conn);
            let request = request.header(http::header::HOST, host);
            sender
                .send_request(request.body(Empty::<Bytes>::new()).unwrap())
                .await
        }
        .expect("response");
        let (version, status, headers) = (
            response.version(),
            response.status().as_u16(),
            response.headers().clone(),
        );
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        (
            version,
            Reply {
                status,
                headers,
                body,
            },
        )
    }
}

const H2: &[u8] = b"h2";
const HTTP1: &[u8] = b"http/1.1";

#[tokio::test]
async fn https_reaches_tls_http_ports_over_http1_and_h2() {
    let pki = Pki::new();
    let fake = Fake::new();
    let a = fake
        .add("alpha", "m-a", vec![http_service(json!({}))], true)
        .await;
    let proxy = start_proxy(&fake, config()).await;
    let tls = https(&proxy.proxy, &pki.certificate()).await;

    for alpn in [&[HTTP1][..], &[H2, HTTP1], &[]] {
        let (version, reply) = pki.get(tls.addr, "alpha.roost.test", "/x?y=1", alpn).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "machine=m-a"));
        let expected = if alpn.first() == Some(&H2) {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(version, expected, "ALPN {alpn:?}");
        assert!(reply.headers.contains_key("fly-request-id"));
        let seen = a.last_headers.lock().unwrap().clone().unwrap();
        assert_eq!(seen["x-forwarded-proto"], "https");
        assert_eq!(seen["x-forwarded-ssl"], "on");
        assert_eq!(
            seen["x-forwarded-port"],
            tls.addr.port().to_string().as_str()
        );
        assert_eq!(seen["fly-client-ip"], "127.0.0.1");
    }

    // The plain listener says http, and drops a client's claim of TLS.
    let reply = get(
        proxy.addr,
        "alpha.roost.test",
        "/",
        &[("x-forwarded-ssl", "on"), ("x-forwarded-proto", "https")],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = a.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert!(!seen.contains_key("x-forwarded-ssl"), "{seen:?}");

    let (_, unknown) = pki.get(tls.addr, "gamma.roost.test", "/", &[H2]).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
}

#[tokio::test]
async fn each_listener_reaches_only_its_handlers() {
    let pki = Pki::new();
    let fake = Fake::new();
    let tls_only =
        json!({"internal_port": 0, "ports": [{"port": 443, "handlers": ["tls", "http"]}]});
    let http_only = json!({"internal_port": 0, "ports": [{"port": 80, "handlers": ["http"]}]});
    fake.add("secure", "m-s", vec![service(tls_only)], true)
        .await;
    fake.add("open", "m-o", vec![service(http_only)], true)
        .await;
    let proxy = start_proxy(&fake, config()).await;
    let tls = https(&proxy.proxy, &pki.certificate()).await;

    let (_, reply) = pki.get(tls.addr, "secure.roost.test", "/", &[H2]).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "machine=m-s"));
    let reply = get(proxy.addr, "open.roost.test", "/", &[]).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "machine=m-o"));

    let reply = get(proxy.addr, "secure.roost.test", "/", &[]).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    let expected = format!(
        "app secure has no uncordoned machine with a service for port 80/{} with the http handler and no tls handler",
        proxy.addr.port()
    );
    assert!(reply.body.contains(&expected), "{}", reply.body);

    let (_, reply) = pki.get(tls.addr, "open.roost.test", "/", &[HTTP1]).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    let expected = format!(
        "app open has no uncordoned machine with a service for port 443/{} with the tls and http handlers",
        tls.addr.port()
    );
    assert!(reply.body.contains(&expected), "{}", reply.body);
}

#[tokio::test]
async fn tls_tcp_terminates_and_splices_plaintext() {
    let pki = Pki::new();
    let fake = Fake::new();
    // The machine's program is the test's HTTP server: an HTTP/1.0
    // exchange in the plaintext proves the bytes reach it unchanged.
    let tls_port = json!({"internal_port": 0, "ports": [{"port": 5432, "handlers": ["tls"]}]});
    fake.add("db", "m1", vec![service(tls_port)], false).await;
    let proxy = start_proxy(&fake, config()).await;
    let certificate = pki.certificate();
    let tls = tcp(&proxy.proxy, "db", 5432, Some(&certificate)).await;
    let plain = tcp(&proxy.proxy, "db", 5432, None).await;

    // The proxy claims no application protocol for the machine.
    let stream = pki.connect(tls.addr, "localhost", &[H2]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    let reply = http10_exchange(stream).await.expect("reply");
    assert!(
        reply.starts_with("HTTP/1.0 200") && reply.ends_with("machine=m1"),
        "{reply}"
    );
    assert_eq!(fake.starts.load(Ordering::SeqCst), 1, "autostarted");
    eventually(5, "in-flight back to 0", || {
        proxy.proxy.in_flight("m1") == 0
    })
    .await;

    // Without TLS the `["tls"]` port is not reached: the proxy hangs up.
    let stream = TcpStream::connect(plain.addr).await.unwrap();
    let reply = http10_exchange(stream).await;
    assert!(reply.as_ref().map_or(true, String::is_empty), "{reply:?}");
}

#[tokio::test]
async fn certificate_errors_name_the_file() {
    let pki = Pki::new();
    let error = |cert: &Path, key: &Path| {
        TlsCertificate::load(cert, key)
            .err()
            .expect("the certificate is refused")
    };
    let shown = |path: &Path| path.display().to_string();

    let missing = pki.dir.path().join("missing.pem");
    let err = error(&missing, &pki.key);
    assert!(matches!(err, ProxyError::TlsRead { .. }), "{err:?}");
    assert!(err.to_string().contains(&shown(&missing)), "{err}");

    let garbage = pki.file("garbage.pem", "not a certificate\n");
    let err = error(&garbage, &pki.key);
    assert!(matches!(err, ProxyError::TlsNoCertificate(_)), "{err:?}");
    assert!(err.to_string().contains(&shown(&garbage)), "{err}");

    let broken = pki.file(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let err = error(&broken, &pki.key);
    assert!(matches!(err, ProxyError::TlsPem { .. }), "{err:?}");
    assert!(err.to_string().contains(&shown(&broken)), "{err}");

    // A certificate file where the key should be: no private key in it.
    let err = error(&pki.cert, &pki.cert);
    assert!(matches!(err, ProxyError::TlsNoKey(_)), "{err:?}");
    assert!(err.to_string().contains(&shown(&pki.cert)), "{err}");

    let other = rcgen::KeyPair::generate().unwrap();
    let other = pki.file("other-key.pem", &other.serialize_pem());
    let err = error(&pki.cert, &other);
    assert!(matches!(err, ProxyError::TlsKeyMismatch { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&shown(&other)) && text.contains(&shown(&pki.cert)),
        "{text}"
    );
}

#[tokio::test]
async fn silent_clients_block_no_one_and_are_cut_off() {
    let pki = Pki::new();
    let fake = Fake::new();
    fake.add("alpha", "m-a", vec![http_service(json!({}))], true)
        .await;
    let config = ProxyConfig {
        tls_handshake_timeout: Duration::from_secs(5),
        ..config()
    };
    let proxy = start_proxy(&fake, config).await;
    let tls = https(&proxy.proxy, &pki.certificate()).await;

    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(tls.addr).await.unwrap());
    }
    let (_, reply) = tokio::time::timeout(
        Duration::from_secs(3),
        pki.get(tls.addr, "alpha.roost.test", "/", &[H2]),
    )
    .await
    .expect("served while silent clients wait");
    assert_eq!((reply.status, reply.body.as_str()), (200, "machine=m-a"));

    let mut byte = [0u8; 1];
    for stream in &mut silent {
        let still_open =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await;
        assert!(still_open.is_err(), "closed before the handshake timeout");
    }
    for stream in &mut silent {
        let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("closed after the handshake timeout");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    }
}
