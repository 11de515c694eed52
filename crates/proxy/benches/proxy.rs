//! Proxy throughput and latency against nginx, in one run.
//!
//! One upstream HTTP/1.1 server (hyper, one thread, a 13-byte answer) sits
//! behind (a) roost's proxy (two worker threads, routing by Host to a
//! started "machine" whose private address is 127.0.0.1) and (b) nginx
//! (two workers, keep-alive upstream pool, setting the same forwarding
//! headers and request id as roost) configured in a temp dir with
//! its own pid file and logs, loopback only. wrk drives each with 64
//! connections in rounds that pair the two back to back (alternating which
//! goes first); the summary is the median over rounds, and the direct
//! upstream figure is context.
//!
//! `cargo bench -p roost-proxy --bench proxy [-- --seconds N --rounds N]`
//!
//! The cold path (stopped machine → first byte) needs real machines; it is
//! measured by `cargo bench -p roost --bench proxy_cold`.

use bytes::Bytes;
use http_body_util::Full;
use roost_lifecycle::MachineRecord;
use roost_proxy::{BackendError, Backends, BoxFuture, Proxy, ProxyConfig};
use roost_testkit::nginx::Nginx;
use roost_testkit::wait_listening;
use roost_types::{CheckStatus, MachineConfig, MachineState};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

const CONNECTIONS: u32 = 64;

struct Options {
    seconds: u64,
    rounds: usize,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 3,
        rounds: 5,
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
    machine: MachineRecord,
}

impl Backends for OneMachine {
    fn change_count(&self) -> u64 {
        0
    }
    fn changed(&self, seen: u64) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if seen == 0 {
                std::future::pending::<()>().await
            }
        })
    }
    fn apps(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>> {
        Box::pin(async { Ok(vec!["bench".to_string()]) })
    }
    fn machines<'a>(
        &'a self,
        app: &'a str,
    ) -> BoxFuture<'a, Result<Vec<MachineRecord>, BackendError>> {
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
    let machine = MachineRecord {
        app: "bench".into(),
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
        cordoned: false,
        runtime: "crun".into(),
        init_pid: None,
        restart_count: 0,
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

/// nginx as a reverse proxy to `upstream`, with two workers, doing the
/// header work roost's proxy does: the same forwarding headers to the
/// machine and a request id back to the client.
fn start_nginx(dir: &Path, upstream: SocketAddr) -> Nginx {
    Nginx::start(
        dir,
        2,
        &format!(
            "upstream machine {{ server {upstream}; keepalive 128; keepalive_requests 1000000000; }}"
        ),
        "proxy_pass http://machine;\n\
         proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\";\n\
         proxy_set_header Host $host;\n\
         proxy_set_header Fly-Client-IP $remote_addr;\n\
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         proxy_set_header X-Forwarded-Proto $scheme;\n\
         proxy_set_header X-Forwarded-Port $server_port;\n\
         proxy_set_header Fly-Forwarded-Port $server_port;\n\
         proxy_set_header Fly-Request-Id $request_id-local;\n\
         proxy_set_header Fly-Region local;\n\
         add_header Fly-Request-Id $request_id-local;\n\
         proxy_buffering off;",
        |_| {},
    )
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The median of each figure over the rounds.
fn medians(runs: &[Figures]) -> Figures {
    Figures {
        rps: median(runs.iter().map(|f| f.rps).collect()),
        p50_ms: median(runs.iter().map(|f| f.p50_ms).collect()),
        p99_ms: median(runs.iter().map(|f| f.p99_ms).collect()),
    }
}

fn main() {
    let options = options();
    let dir = tempfile::tempdir().expect("temp dir");
    let upstream = upstream();
    wait_listening(upstream, "the upstream");
    let roost = start_roost_proxy(upstream);
    wait_listening(roost, "roost's proxy");
    let nginx = start_nginx(dir.path(), upstream);
    let host = "bench.localhost";

    // Warm up both (connection pools, caches).
    wrk(roost, host, 1);
    wrk(nginx.addr, host, 1);
    // Rounds pair roost and nginx back to back, alternating which goes
    // first, so the host's slow drifts hit both alike; each round's ratio
    // is printed, and the summary is the median over rounds.
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    println!(
        "proxy benchmark: wrk -t2 -c{CONNECTIONS}, {} rounds of {}s per target, 13-byte responses, 2 cores shared by wrk, proxy and upstream",
        options.rounds, options.seconds
    );
    for round in 0..options.rounds {
        let (a, b) = if round % 2 == 0 {
            let a = wrk(roost, host, options.seconds);
            (a, wrk(nginx.addr, host, options.seconds))
        } else {
            let b = wrk(nginx.addr, host, options.seconds);
            (wrk(roost, host, options.seconds), b)
        };
        println!(
            "round {}: roost {:.0} req/s, nginx {:.0} req/s, ratio {:.2}",
            round + 1,
            a.rps,
            b.rps,
            a.rps / b.rps
        );
        ours.push(a);
        theirs.push(b);
    }
    let ratio = median(
        ours.iter()
            .zip(&theirs)
            .map(|(a, b)| a.rps / b.rps)
            .collect(),
    );
    let direct = wrk(upstream, host, options.seconds);
    let (ours, theirs) = (medians(&ours), medians(&theirs));
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
        "roost/nginx (medians over rounds): throughput {ratio:.2}x (target >= 0.9), p50 {:+.3} ms, p99 {:+.3} ms (target within 1 ms)",
        ours.p50_ms - theirs.p50_ms,
        ours.p99_ms - theirs.p99_ms
    );
    drop(nginx);
}
