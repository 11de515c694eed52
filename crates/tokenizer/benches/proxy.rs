//! Tokenizer overhead: 64 concurrent keep-alive clients send GETs for a few
//! seconds directly to a TLS upstream and, in the same run, through the
//! tokenizer (inject processor, bearer auth) to the same upstream. Two
//! upstream profiles: one that answers at once (the worst case for a proxy
//! hop: everything is CPU-bound), and one that takes 5 ms per request, like
//! a fast real API.
//!
//! The tokenizer runs in its own process (this binary, re-executed with
//! `--serve-tokenizer`), as it runs inside `roost up` apart from any
//! client. Each profile is measured in two CPU placements:
//! - shared: clients, upstream and tokenizer on all CPUs;
//! - split: the tokenizer on half of the CPUs, clients and upstream on the
//!   other half, as when the tokenizer is a service of its own. Direct
//!   requests then have only the clients' half, so the ratio says whether
//!   the tokenizer keeps up with what those clients can send.
//!
//! The peer, in the same run: Debian's nginx as a reverse proxy to the
//! same upstream, adding a fixed `Authorization` header from its
//! configuration, on the tokenizer's CPUs: what a mature proxy achieves
//! for the same hop on the same host.
//!
//! `cargo bench -p roost-tokenizer --bench proxy [-- --seconds N --clients N]`

use roost_testkit::upstream::{self, Upstream};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use roost_testkit::nginx::Nginx;
use roost_tokenizer::{OpenKey, Tokenizer, TokenizerConfig};
use std::io::{BufRead, Read, Write};
use std::path::Path;
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
    Nginx,
}

struct Target {
    upstream: std::net::SocketAddr,
    tokenizer: std::net::SocketAddr,
    nginx: std::net::SocketAddr,
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
        Mode::Tokenizer | Mode::Nginx => {
            let proxy = match mode {
                Mode::Nginx => target.nginx,
                _ => target.tokenizer,
            };
            let tcp = tokio::net::TcpStream::connect(proxy)
                .await
                .expect("connect the proxy");
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
            Mode::Tokenizer | Mode::Nginx => {
                hyper::Request::get(format!("http://localhost:{port}{path}"))
                    .header("host", format!("localhost:{port}"))
                    .header("proxy-tokenizer", target.sealed.as_str())
                    .header("proxy-authorization", "Bearer bench-client")
                    .body(Empty::<Bytes>::new())
            }
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

const SERVE_TOKENIZER: &str = "--serve-tokenizer";

/// The tokenizer process: serves on a loopback port, prints it, and exits
/// when its standard input closes (the bench ended or died). Its guard
/// lets it reach the loopback upstream at `upstream` only.
fn serve_tokenizer(key_file: &str, ca_file: &str, upstream: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let key = OpenKey::load_or_create(Path::new(key_file)).expect("key");
        let config = TokenizerConfig {
            extra_ca_files: vec![ca_file.into()],
            plain_http_upstreams: Vec::new(),
            guard: roost_destination_guard::Guard::new(roost_destination_guard::GuardConfig {
                site: None,
                allowed: vec![upstream.parse().expect("upstream address")],
            }),
        };
        let tokenizer = Tokenizer::new(key, &config).expect("tokenizer");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        std::io::stdout().flush().expect("stdout");
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut byte = [0u8; 1];
            while matches!(std::io::stdin().read(&mut byte), Ok(n) if n > 0) {}
        });
        // As `roost up` serves it: a worker thread per CPU it may use.
        let workers = tokenizer
            .workers(roost_workers::per_cpu())
            .expect("tokenizer workers");
        tokio::select! {
            () = workers.serve(&listener, std::future::pending()) => {}
            _ = stdin_closed => {}
        }
    });
}

/// A tokenizer process on `cpus`; killed when dropped.
struct TokenizerProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl TokenizerProcess {
    fn spawn(key_file: &Path, upstream: &Upstream, cpus: &[usize]) -> TokenizerProcess {
        let mut command = std::process::Command::new(std::env::current_exe().expect("exe"));
        command
            .arg(SERVE_TOKENIZER)
            .arg(key_file)
            .arg(&upstream.ca_file)
            .arg(upstream.addr.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        pin(&mut command, cpu_set(cpus));
        let mut child = command.spawn().expect("spawn the tokenizer process");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("tokenizer address");
        let addr = line.trim().parse().expect("tokenizer address");
        TokenizerProcess { child, addr }
    }
}

impl Drop for TokenizerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peer: nginx doing the tokenizer's job with the credential written
/// into its configuration (a fixed `Authorization` header, no sealed
/// token, no checks), as a reverse proxy to the TLS upstream with pooled
/// keep-alive connections, on the tokenizer's CPUs.
fn start_nginx(dir: &Path, upstream: &Upstream, cpus: &[usize]) -> Nginx {
    let (up, ca) = (upstream.addr, upstream.ca_file.display());
    let set = cpu_set(cpus);
    Nginx::start(
        dir,
        cpus.len(),
        &format!("upstream api {{ server {up}; keepalive 128; keepalive_requests 1000000000; }}"),
        &format!(
            "proxy_pass https://api;\n\
             proxy_http_version 1.1;\n\
             proxy_set_header Connection \"\";\n\
             proxy_set_header Host localhost:{port};\n\
             proxy_set_header Proxy-Tokenizer \"\";\n\
             proxy_set_header Proxy-Authorization \"\";\n\
             proxy_set_header Authorization \"Bearer bench-real-token\";\n\
             proxy_ssl_name localhost;\n\
             proxy_ssl_server_name on;\n\
             proxy_ssl_verify on;\n\
             proxy_ssl_trusted_certificate {ca};\n\
             proxy_ssl_session_reuse on;\n\
             proxy_buffering off;",
            port = up.port(),
        ),
        |command| pin(command, set),
    )
}

/// Restricts `command` (its threads and children too) to the CPUs in `set`.
fn pin(command: &mut std::process::Command, set: nix::sched::CpuSet) {
    use std::os::unix::process::CommandExt;
    // SAFETY: sched_setaffinity is a plain system call, safe between fork
    // and exec.
    unsafe {
        command.pre_exec(move || {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                .map_err(std::io::Error::from)
        });
    }
}

fn cpu_set(cpus: &[usize]) -> nix::sched::CpuSet {
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu).expect("CPU number");
    }
    set
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).expect("affinity");
    (0..nix::sched::CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect()
}

/// Where the tokenizer and the load (clients and upstream) run.
struct Placement {
    name: String,
    tokenizer: Vec<usize>,
    load: Vec<usize>,
}

fn placements() -> Vec<Placement> {
    let cpus = allowed_cpus();
    let mut placements = vec![Placement {
        name: format!("shared: tokenizer, clients and upstream on CPUs {cpus:?}"),
        tokenizer: cpus.clone(),
        load: cpus.clone(),
    }];
    if cpus.len() >= 2 {
        let (tokenizer, load) = cpus.split_at(cpus.len() / 2);
        placements.push(Placement {
            name: format!(
                "split: tokenizer on CPUs {tokenizer:?}, clients and upstream on CPUs {load:?}"
            ),
            tokenizer: tokenizer.to_vec(),
            load: load.to_vec(),
        });
    }
    placements
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == SERVE_TOKENIZER) {
        serve_tokenizer(&args[i + 1], &args[i + 2], &args[i + 3]);
        return;
    }
    let options = options();
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("open-key");
    let seal_key = OpenKey::load_or_create(&key_file).expect("key").seal_key();
    println!(
        "tokenizer benchmark: {} concurrent keep-alive clients, {} s per run, GET to a loopback TLS upstream",
        options.clients, options.seconds
    );
    for placement in placements() {
        println!();
        println!("{}", placement.name);
        // Threads inherit their creator's CPUs: pin this thread, then
        // build the runtime the clients and the upstream run on.
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpu_set(&placement.load))
            .expect("pin the load");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(placement.load.len())
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(measure(
            &options,
            dir.path(),
            &key_file,
            &seal_key,
            &placement,
        ));
    }
}

async fn measure(
    options: &Options,
    nginx_dir: &Path,
    key_file: &Path,
    seal_key: &roost_tokenizer::SealKey,
    placement: &Placement,
) {
    let upstream = upstream::tls_upstream().await;
    let tokenizer = TokenizerProcess::spawn(key_file, &upstream, &placement.tokenizer);
    use base64::Engine;
    use sha2::Digest;
    let digest =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"bench-client"));
    let secret = serde_json::json!({
        "inject_processor": {"token": "bench-real-token"},
        "bearer_auth": {"digest": digest},
        "allowed_hosts": [format!("localhost:{}", upstream.addr.port())],
    });
    let sealed = seal_key.seal(secret.to_string().as_bytes()).expect("seal");

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
    let nginx = start_nginx(nginx_dir, &upstream, &placement.tokenizer);
    let target = Arc::new(Target {
        upstream: upstream.addr,
        tokenizer: tokenizer.addr,
        nginx: nginx.addr,
        tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        sealed,
    });
    for (profile, path) in [
        ("upstream answers at once", "/bench"),
        ("upstream takes 5 ms", "/delay/5"),
    ] {
        let modes = [Mode::Direct, Mode::Tokenizer, Mode::Nginx];
        for mode in modes {
            run(&target, mode, path, options.clients, 1).await;
        }
        let mut figures = Vec::new();
        for mode in modes {
            figures.push(run(&target, mode, path, options.clients, options.seconds).await);
        }
        let [direct, through, peer] = &figures[..] else {
            unreachable!("three modes")
        };
        println!("  {profile}");
        println!(
            "{:<30}{:>12}{:>12}{:>12}",
            "    path", "req/s", "p50 ms", "p99 ms"
        );
        for (name, f) in [
            ("    direct (client TLS)", direct),
            ("    through tokenizer", through),
            ("    through nginx (peer)", peer),
        ] {
            println!(
                "{name:<30}{:>12.0}{:>12.3}{:>12.3}",
                f.rps,
                ms(f.p50),
                ms(f.p99)
            );
        }
        let verdict = |ok: bool| if ok { "ok" } else { "MISS" };
        let overhead = ms(through.p50) - ms(direct.p50);
        let ratio = through.rps / direct.rps * 100.0;
        println!(
            "    tokenizer: p50 overhead {overhead:>7.3} ms (target < 0.5 ms) {:<4}  throughput {ratio:>5.1} % of direct (target >= 80 %) {}",
            verdict(overhead < 0.5),
            verdict(ratio >= 80.0)
        );
        println!(
            "    nginx:     p50 overhead {:>7.3} ms                           throughput {:>5.1} % of direct",
            ms(peer.p50) - ms(direct.p50),
            peer.rps / direct.rps * 100.0
        );
    }
}
