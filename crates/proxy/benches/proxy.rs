//! Proxy throughput and latency against nginx, in one run.
//!
//! One upstream HTTP/1.1 server (hyper, one thread, a 13-byte answer) sits
//! behind (a) roost's proxy (two worker threads, routing by Host to a
//! started "machine" whose private address is 127.0.0.1) and (b) nginx
//! (two workers, keep-alive upstream pool) configured in a temp dir with
//! its own pid file and logs, loopback only. wrk drives each with 64
//! connections for a few seconds; the direct upstream figure is context.
//!
//! `cargo bench -p roost-proxy --bench proxy [-- --seconds N --rounds N]`
//!
//! The cold path (stopped machine → first byte) needs real machines; it is
//! measured by `cargo bench -p roost --bench proxy_cold`.

use bytes::Bytes;
use http_body_util::Full;
use roost_proxy::{BackendError, Backends, BoxFuture, Proxy, ProxyConfig};
use roost_types::{CheckStatus, Machine, MachineConfig, MachineState};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const CONNECTIONS: u32 = 64;

struct Options {
    seconds: u64,
    rounds: usize,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 5,
        rounds: 2,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        match (pair[0].as_str(), pair[1].parse::<u64>()) {
            ("--seconds", Ok(v)) => options.seconds = v.clamp(1, 60),
            ("--rounds", Ok(v)) => options.rounds = v.clamp(1, 10) as usize,
            _ => {}
        }
    }
    options
}

/// One app, one started machine serving the upstream port.
struct OneMachine {
    machine: Machine,
}

impl Backends for OneMachine {
    fn change_count(&self) -> u64 {
        0
    }
    fn apps(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>> {
        Box::pin(async { Ok(vec!["bench".to_string()]) })
    }
    fn machines<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Result<Vec<Machine>, BackendError>> {
        Box::pin(async move {
            if app == "bench" {
                Ok(vec![self.machine.clone()])
            } else {
                Err(BackendError::NotFound(app.to_string()))
            }
        })
    }
    fn start<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
    fn stop<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
    fn report_checks(&self, _: &str, _: &str, _: Vec<CheckStatus>) {}
}

fn upstream() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"hello, world\n"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}

fn start_roost_proxy(upstream: SocketAddr) -> SocketAddr {
    let services = serde_json::from_value(serde_json::json!([{
        "protocol": "tcp",
        "internal_port": upstream.port(),
        "ports": [{"port": 80, "handlers": ["http"]}],
        "concurrency": {"type": "requests", "soft_limit": 100000, "hard_limit": 100000},
    }]))
    .unwrap();
    let machine = Machine {
        id: "bench0000000001".into(),
        name: "bench".into(),
        state: MachineState::Started,
        region: "local".into(),
        instance_id: "1".into(),
        private_ip: upstream.ip().to_string(),
        config: MachineConfig {
            image: "bench".into(),
            services,
            ..Default::default()
        },
        image_ref: Default::default(),
        created_at: String::new(),
        updated_at: String::new(),
        events: vec![],
        checks: vec![],
        nonce: None,
        cordoned: false,
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let proxy = Proxy::new(Arc::new(OneMachine { machine }), ProxyConfig::default());
            // Two workers, like nginx's two worker processes.
            proxy
                .serve_workers(listener, 2, std::future::pending())
                .await
                .expect("proxy serve");
        });
    });
    addr
}

/// nginx as a reverse proxy to `upstream`, on its own port, in `dir`.
struct Nginx {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Drop for Nginx {
    /// SIGTERM, not SIGKILL: the master then takes its workers down with
    /// it (killed outright, it leaves them running).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn start_nginx(dir: &Path, upstream: SocketAddr) -> Nginx {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let d = dir.display();
    let config = format!(
        "worker_processes 2;\n\
         daemon off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/body;\n\
           proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n\
           uwsgi_temp_path {d}/uwsgi;\n\
           scgi_temp_path {d}/scgi;\n\
           upstream machine {{ server {upstream}; keepalive 128; }}\n\
           server {{\n\
             listen 127.0.0.1:{port};\n\
             location / {{\n\
               proxy_pass http://machine;\n\
               proxy_http_version 1.1;\n\
               proxy_set_header Connection \"\";\n\
               proxy_set_header Host $host;\n\
               proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
               proxy_set_header X-Forwarded-Proto $scheme;\n\
               proxy_buffering off;\n\
             }}\n\
           }}\n\
         }}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).unwrap();
    let child = Command::new("/usr/sbin/nginx")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run /usr/sbin/nginx (Debian package nginx)");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr);
    Nginx { child, addr }
}

fn wait_listening(addr: SocketAddr) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{addr} never accepted connections");
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn parse_duration_ms(text: &str) -> Option<f64> {
    let (number, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| text.split_at(i))?;
    let value: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => return None,
    })
}

fn wrk(addr: SocketAddr, host: &str, seconds: u64) -> Figures {
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            &format!("Host: {host}"),
            &format!("http://{addr}/"),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run wrk (Debian package wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut figures = Figures {
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => figures.rps = value.parse().unwrap_or(0.0),
            ["50%", value] => figures.p50_ms = parse_duration_ms(value).unwrap_or(f64::NAN),
            ["99%", value] => figures.p99_ms = parse_duration_ms(value).unwrap_or(f64::NAN),
            _ => {}
        }
    }
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("wrk reported errors against {addr}:\n{text}");
    }
    figures
}

fn best(runs: &[Figures]) -> Figures {
    // The round with the highest throughput: the least disturbed by the
    // rest of the host.
    *runs
        .iter()
        .max_by(|a, b| a.rps.total_cmp(&b.rps))
        .expect("at least one round")
}

fn main() {
    let options = options();
    let dir = tempfile::tempdir().expect("temp dir");
    let upstream = upstream();
    wait_listening(upstream);
    let roost = start_roost_proxy(upstream);
    wait_listening(roost);
    let nginx = start_nginx(dir.path(), upstream);
    let host = "bench.localhost";

    // Warm up both (connection pools, caches).
    wrk(roost, host, 1);
    wrk(nginx.addr, host, 1);
    let mut direct = Vec::new();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..options.rounds {
        ours.push(wrk(roost, host, options.seconds));
        theirs.push(wrk(nginx.addr, host, options.seconds));
    }
    direct.push(wrk(upstream, host, options.seconds));
    let (direct, ours, theirs) = (best(&direct), best(&ours), best(&theirs));
    println!(
        "proxy benchmark: wrk -t2 -c{CONNECTIONS}, {}s x {} rounds (best round), 13-byte responses, 2 cores shared by wrk, proxy and upstream",
        options.seconds, options.rounds
    );
    println!(
        "{:<14} {:>12} {:>10} {:>10}",
        "target", "req/s", "p50 ms", "p99 ms"
    );
    for (name, f) in [("direct", direct), ("roost proxy", ours), ("nginx", theirs)] {
        println!(
            "{name:<14} {:>12.0} {:>10.3} {:>10.3}",
            f.rps, f.p50_ms, f.p99_ms
        );
    }
    println!(
        "roost/nginx: throughput {:.2}x, p50 {:+.3} ms, p99 {:+.3} ms",
        ours.rps / theirs.rps,
        ours.p50_ms - theirs.p50_ms,
        ours.p99_ms - theirs.p99_ms
    );
    drop(nginx);
}
