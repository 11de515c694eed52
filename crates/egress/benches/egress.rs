//! Egress proxy speed (issue 16), everything in one run:
//! - download throughput of a 256 MiB file from a loopback upstream:
//!   directly, through the proxy as a plain-HTTP forward (what apt does),
//!   and through a CONNECT tunnel (what every TLS client does; the bytes
//!   inside are plain HTTP so the proxy is what is measured, not TLS);
//! - connection setup: a new TCP connection and one small request (13-byte
//!   answer), directly and through both proxy paths.
//!
//! Rounds interleave the paths so that a noisy neighbour hits all of them
//! alike. The upstream serves the file from the page cache with
//! `sendfile`, the fastest a server can; the client is one blocking
//! thread reading into a 1 MiB buffer. The proxy runs as in `roost up`:
//! one roost-workers thread per CPU, the client placed as a machine of an
//! app whose policy is default deny plus an allow rule for the upstream,
//! and the upstream on the host's loopback reached through the guard's
//! exact `addr:port` exception (`roost up --egress-allow-addr`). At the
//! end the machine's counters must hold every byte that came through.
//!
//! `cargo bench -p roost-egress --bench egress [-- --rounds N --connections N]`

use roost_destination_guard::{Guard, GuardConfig};
use roost_egress::{Directory, EgressConfig, EgressProxy, Ledger, MachineRef, Policy};
use roost_types::{EgressDefault, EgressPolicy};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FILE_BYTES: u64 = 256 * 1024 * 1024;
const SMALL_BODY: &[u8] = b"hello, egress";
const APP: &str = "bench";
const MACHINE: &str = "bench-machine";
/// Bound on any one read or write of the client: a stuck path fails the
/// bench instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

struct Options {
    rounds: usize,
    connections: usize,
}

fn options() -> Options {
    let mut options = Options {
        rounds: 7,
        connections: 500,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        let value = pair[1].parse::<usize>().ok().filter(|v| *v > 0);
        match (pair[0].as_str(), value) {
            ("--rounds", Some(v)) => options.rounds = v.min(100),
            ("--connections", Some(v)) => options.connections = v.min(20_000),
            _ => {}
        }
    }
    options
}

/// One machine (every loopback client) of one app.
struct Bench {
    policy: Arc<Policy>,
}

impl Directory for Bench {
    fn machine_at(&self, _peer: IpAddr) -> Option<MachineRef> {
        Some(MachineRef {
            app: APP.into(),
            id: MACHINE.into(),
        })
    }

    fn policy(&self, app: &str) -> Option<Arc<Policy>> {
        (app == APP).then(|| self.policy.clone())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    Forward,
    Tunnel,
}

const PATHS: [Path; 3] = [Path::Direct, Path::Forward, Path::Tunnel];

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Forward => "proxy, plain-HTTP forward",
            Path::Tunnel => "proxy, CONNECT tunnel",
        }
    }
}

struct Target {
    upstream: SocketAddr,
    proxy: SocketAddr,
}

impl Target {
    /// GET `path` of the upstream over `way`: the connection, its request
    /// sent (after the tunnel is open, for a tunnel).
    fn request(&self, way: Path, path: &str) -> TcpStream {
        let upstream = self.upstream;
        let (to, target) = match way {
            Path::Direct => (upstream, path.to_string()),
            Path::Forward => (self.proxy, format!("http://{upstream}{path}")),
            Path::Tunnel => (self.proxy, path.to_string()),
        };
        let mut stream = TcpStream::connect(to).expect("connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        if way == Path::Tunnel {
            write!(
                stream,
                "CONNECT {upstream} HTTP/1.1\r\nHost: {upstream}\r\n\r\n"
            )
            .expect("send CONNECT");
            let head = read_head(&mut stream);
            assert!(head.starts_with("HTTP/1.1 200"), "CONNECT: {head}");
        }
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n\r\n"
        )
        .expect("send GET");
        stream
    }

    /// GET `path` over `way` and read the answer to its end: the body's
    /// length.
    fn fetch(&self, way: Path, path: &str, buffer: &mut [u8]) -> u64 {
        let mut stream = self.request(way, path);
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 200"), "{}: {head}", way.name());
        let length: u64 = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("{}: no Content-Length: {head}", way.name()));
        let mut got = 0;
        while got < length {
            let n = stream.read(buffer).expect("read the body");
            assert!(n > 0, "{}: body ended at {got} of {length}", way.name());
            got += n as u64;
        }
        assert_eq!(got, length, "{}: more body than announced", way.name());
        length
    }
}

/// Reads an HTTP head byte by byte, so that nothing of what follows is
/// taken.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read a head");
        assert!(n == 1 && head.len() < 64 * 1024, "no complete head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A loopback upstream on a thread of its own: `GET /file` is the file
/// (sent with `sendfile`, which std's copy uses between a file and a
/// socket), anything else the small body; one request per connection.
fn upstream(file: std::path::PathBuf) -> SocketAddr {
    on_thread(|listener| async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let file = file.clone();
            tokio::spawn(async move {
                if let Err(err) = answer(stream, file).await {
                    eprintln!("upstream: {err}");
                }
            });
        }
    })
}

/// Runs `serve` on a loopback listener, on a thread of its own with a
/// single-threaded runtime, until the bench ends: the listener's address.
fn on_thread<F>(serve: impl FnOnce(tokio::net::TcpListener) -> F + Send + 'static) -> SocketAddr
where
    F: std::future::Future<Output = ()>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
    let addr = listener.local_addr().expect("listener address");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            serve(listener).await
        })
    });
    addr
}

async fn answer(
    mut stream: tokio::net::TcpStream,
    file: std::path::PathBuf,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.set_nodelay(true)?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    if !line.starts_with("GET /file ") {
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            SMALL_BODY.len()
        )
        .into_bytes();
        reply.extend_from_slice(SMALL_BODY);
        return stream.write_all(&reply).await;
    }
    stream
        .write_all(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {FILE_BYTES}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut stream = stream.into_std()?;
    tokio::task::spawn_blocking(move || {
        stream.set_nonblocking(false)?;
        let mut file = std::fs::File::open(file)?;
        let sent = std::io::copy(&mut file, &mut stream)?;
        assert_eq!(sent, FILE_BYTES);
        Ok(())
    })
    .await?
}

/// A file of `FILE_BYTES` bytes that no layer can compress (xorshift),
/// left in the page cache.
fn write_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("file");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create the file"));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..FILE_BYTES / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.write_all(&x.to_le_bytes()).expect("write the file");
    }
    out.flush().expect("write the file");
    path
}

/// The proxy, serving on a loopback port from one worker per CPU until the
/// bench ends.
fn proxy(upstream: SocketAddr, ledger: Arc<Ledger>) -> SocketAddr {
    let policy = Policy::compile(&EgressPolicy {
        default: EgressDefault::Deny,
        allow: vec![upstream.to_string()],
        deny: vec!["*:25".into()],
    })
    .expect("bench policy");
    let config = EgressConfig {
        guard: Guard::new(GuardConfig {
            site: None,
            allowed: vec![upstream],
        }),
        ..EgressConfig::default()
    };
    let proxy = EgressProxy::new(
        config,
        Arc::new(Bench {
            policy: Arc::new(policy),
        }),
        ledger,
    );
    let workers = proxy
        .workers(roost_workers::per_cpu())
        .expect("proxy workers");
    on_thread(|listener| async move { workers.serve(&listener, std::future::pending()).await })
}

/// CPU time this process (client, proxy and upstream alike) has used.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

fn main() {
    let options = options();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path());
    let upstream = upstream(file);
    let ledger = Arc::new(Ledger::default());
    let proxy = proxy(upstream, ledger.clone());
    let target = Target { upstream, proxy };
    let mut buffer = vec![0u8; 1024 * 1024];
    let mib = FILE_BYTES as f64 / (1024.0 * 1024.0);
    println!(
        "egress benchmark: {mib:.0} MiB download x {} rounds and {} new connections per path, \
         interleaved; proxy on {} worker(s), {} CPUs shared by client, proxy and upstream",
        options.rounds,
        options.connections,
        roost_workers::per_cpu(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );

    for way in PATHS {
        assert_eq!(target.fetch(way, "/file", &mut buffer), FILE_BYTES);
    }
    let mut through_proxy = 2 * FILE_BYTES;
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); PATHS.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); PATHS.len()];
    for round in 0..options.rounds {
        for (i, way) in PATHS.into_iter().enumerate() {
            let (started, cpu_before) = (Instant::now(), cpu_time());
            let bytes = target.fetch(way, "/file", &mut buffer);
            let rate = bytes as f64 / started.elapsed().as_secs_f64() / 1e6;
            rates[i].push(rate);
            cpu[i].push((cpu_time() - cpu_before).as_secs_f64() * 1e3);
            if way != Path::Direct {
                through_proxy += bytes;
            }
        }
        let line: Vec<String> = PATHS
            .iter()
            .zip(&rates)
            .map(|(way, r)| format!("{} {:.0}", way.name(), r[round]))
            .collect();
        println!("round {}: MB/s {}", round + 1, line.join(", "));
    }

    let mut setups: Vec<Vec<f64>> = vec![Vec::new(); PATHS.len()];
    for _ in 0..options.connections {
        for (i, way) in PATHS.into_iter().enumerate() {
            let started = Instant::now();
            let bytes = target.fetch(way, "/small", &mut buffer);
            setups[i].push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(bytes, SMALL_BODY.len() as u64);
            if way != Path::Direct {
                through_proxy += bytes;
            }
        }
    }

    let rates: Vec<Vec<f64>> = rates.into_iter().map(sorted).collect();
    let cpu: Vec<Vec<f64>> = cpu.into_iter().map(sorted).collect();
    let setups: Vec<Vec<f64>> = setups.into_iter().map(sorted).collect();
    println!();
    println!(
        "{:<28} {:>12} {:>12} {:>14} {:>12} {:>12}",
        "path", "MB/s median", "MB/s p99", "CPU ms/256MiB", "setup p50", "setup p99"
    );
    for (i, way) in PATHS.into_iter().enumerate() {
        // The p99 of a rate is its slow tail: the 1st percentile.
        println!(
            "{:<28} {:>12.0} {:>12.0} {:>14.0} {:>9.3} ms {:>9.3} ms",
            way.name(),
            percentile(&rates[i], 50.0),
            percentile(&rates[i], 1.0),
            percentile(&cpu[i], 50.0),
            percentile(&setups[i], 50.0),
            percentile(&setups[i], 99.0),
        );
    }
    println!();
    println!("targets (medians)");
    let direct_rate = percentile(&rates[0], 50.0);
    let direct_setup = percentile(&setups[0], 50.0);
    for i in 1..PATHS.len() {
        let ratio = percentile(&rates[i], 50.0) / direct_rate;
        let overhead = percentile(&setups[i], 50.0) - direct_setup;
        let overhead_p99 = percentile(&setups[i], 99.0) - percentile(&setups[0], 99.0);
        println!(
            "  {:<26} throughput {:>5.1} % of direct (target >= 80 %) {}   setup overhead p50 {:.3} ms (target <= 1 ms) {}, p99 {:.3} ms",
            PATHS[i].name(),
            ratio * 100.0,
            verdict(ratio >= 0.8),
            overhead,
            verdict(overhead <= 1.0),
            overhead_p99,
        );
    }

    let counted = ledger.machine(MACHINE).expect("the machine's counters");
    println!();
    println!(
        "machine counters: {} allowed, {} refused, {:.1} MB received (bodies through the proxy: {:.1} MB)",
        counted.allowed,
        counted.refused,
        counted.bytes_received as f64 / 1e6,
        through_proxy as f64 / 1e6
    );
    assert!(
        counted.bytes_received >= through_proxy,
        "the proxy counted fewer bytes than it carried"
    );
    assert_eq!(counted.refused, 0);
}
