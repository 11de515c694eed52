//! Tokenizer overhead: 64 concurrent keep-alive clients send GETs for a few
//! seconds directly to a TLS upstream and, in the same run, through the
//! tokenizer (inject processor, bearer auth) to the same upstream. Two
//! upstream profiles: one that answers at once (clients, tokenizer and
//! upstream then saturate the host's CPUs, the worst case for a proxy hop),
//! and one that takes 5 ms per request, like a fast real API.
//!
//! `cargo bench -p roost-tokenizer --bench proxy [-- --seconds N --clients N]`

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use roost_tokenizer::{OpenKey, Tokenizer, TokenizerConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Options {
    seconds: u64,
    clients: usize,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 5,
        clients: 64,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (args[i].as_str(), value) {
            ("--seconds", Some(v)) => options.seconds = v.max(1),
            ("--clients", Some(v)) => options.clients = (v as usize).max(1),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    options
}

#[derive(Clone, Copy)]
enum Mode {
    Direct,
    Tokenizer,
}

struct Target {
    upstream: std::net::SocketAddr,
    proxy: std::net::SocketAddr,
    tls: tokio_rustls::TlsConnector,
    sealed: String,
}

/// One client: a keep-alive connection sending requests back to back until
/// `deadline`; returns each request's latency.
async fn client(
    target: Arc<Target>,
    mode: Mode,
    path: &'static str,
    deadline: Instant,
) -> Vec<Duration> {
    let port = target.upstream.port();
    let (mut sender, conn) = match mode {
        Mode::Direct => {
            let tcp = tokio::net::TcpStream::connect(target.upstream)
                .await
                .expect("connect upstream");
            tcp.set_nodelay(true).expect("nodelay");
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let tls = target.tls.connect(name, tcp).await.expect("TLS handshake");
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .expect("handshake");
            (
                sender,
                tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) }),
            )
        }
        Mode::Tokenizer => {
            let tcp = tokio::net::TcpStream::connect(target.proxy)
                .await
                .expect("connect tokenizer");
            tcp.set_nodelay(true).expect("nodelay");
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .expect("handshake");
            (
                sender,
                tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) }),
            )
        }
    };
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let request = match mode {
            Mode::Direct => hyper::Request::get(path)
                .header("host", format!("localhost:{port}"))
                .body(Empty::<Bytes>::new()),
            Mode::Tokenizer => hyper::Request::get(format!("http://localhost:{port}{path}"))
                .header("host", format!("localhost:{port}"))
                .header("proxy-tokenizer", target.sealed.as_str())
                .header("proxy-authorization", "Bearer bench-client")
                .body(Empty::<Bytes>::new()),
        }
        .expect("request");
        let started = Instant::now();
        let response = sender.send_request(request).await.expect("send");
        assert_eq!(response.status(), 200, "request failed");
        response.into_body().collect().await.expect("body");
        latencies.push(started.elapsed());
    }
    drop(sender);
    let _ = conn.await;
    latencies
}

struct Figures {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(
    target: &Arc<Target>,
    mode: Mode,
    path: &'static str,
    clients: usize,
    seconds: u64,
) -> Figures {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(client(target.clone(), mode, path, deadline)))
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Figures {
        rps: all.len() as f64 / elapsed,
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let options = options();
    let upstream = common::tls_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = OpenKey::load_or_create(&dir.path().join("open-key")).expect("key");
    let config = TokenizerConfig {
        extra_ca_files: vec![upstream.ca_file.clone()],
        plain_http_upstreams: Vec::new(),
    };
    let tokenizer = Tokenizer::new(key, &config).expect("tokenizer");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy = listener.local_addr().expect("addr");
    use base64::Engine;
    use sha2::Digest;
    let digest =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"bench-client"));
    let secret = serde_json::json!({
        "inject_processor": {"token": "bench-real-token"},
        "bearer_auth": {"digest": digest},
        "allowed_hosts": [format!("localhost:{}", upstream.addr.port())],
    });
    let sealed = tokenizer
        .seal_key()
        .seal(secret.to_string().as_bytes())
        .expect("seal");
    let workers = tokenizer.workers(2).expect("workers");
    tokio::spawn(async move { workers.serve(&listener, std::future::pending()).await });

    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(upstream.ca_pem.as_bytes()) {
        roots.add(cert.expect("CA pem")).expect("CA");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let target = Arc::new(Target {
        upstream: upstream.addr,
        proxy,
        tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        sealed,
    });

    println!(
        "tokenizer benchmark: {} concurrent keep-alive clients, {} s per run, GET to a loopback TLS upstream",
        options.clients, options.seconds
    );
    for (profile, path) in [
        ("upstream answers at once", "/bench"),
        ("upstream takes 5 ms", "/delay/5"),
    ] {
        for mode in [Mode::Direct, Mode::Tokenizer] {
            run(&target, mode, path, options.clients, 1).await;
        }
        let direct = run(
            &target,
            Mode::Direct,
            path,
            options.clients,
            options.seconds,
        )
        .await;
        let through = run(
            &target,
            Mode::Tokenizer,
            path,
            options.clients,
            options.seconds,
        )
        .await;
        println!();
        println!("{profile}");
        println!(
            "{:<28}{:>12}{:>12}{:>12}",
            "  path", "req/s", "p50 ms", "p99 ms"
        );
        for (name, f) in [
            ("  direct (client TLS)", &direct),
            ("  through tokenizer", &through),
        ] {
            println!(
                "{name:<28}{:>12.0}{:>12.3}{:>12.3}",
                f.rps,
                ms(f.p50),
                ms(f.p99)
            );
        }
        let overhead = ms(through.p50) - ms(direct.p50);
        let ratio = through.rps / direct.rps * 100.0;
        let verdict = |ok: bool| if ok { "ok" } else { "MISS" };
        println!(
            "  p50 overhead {overhead:>8.3} ms  (target < 0.5 ms)  {}",
            verdict(overhead < 0.5)
        );
        println!(
            "  throughput   {ratio:>8.1} %   (target >= 80 %)   {}",
            verdict(ratio >= 80.0)
        );
    }
}
