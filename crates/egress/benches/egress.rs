//! Egress proxy speed (issue 16), everything in one run:
//! - download throughput of a 256 MiB file from a loopback upstream:
//!   directly, through the proxy as a plain-HTTP forward (what apt does),
//!   and through a CONNECT tunnel (what every TLS client does; the bytes
//!   inside are plain HTTP so the proxy is what is measured, not TLS);
//! - connection setup: a new TCP connection and one small request (13-byte
//!   answer), directly and through both proxy paths;
//! - the same through mature peers doing the same hop, where installed:
//!   Debian's tinyproxy (forward and CONNECT) and nginx (forward only: it
//!   has no CONNECT), so that the floor a proxy on this host meets shows.
//!
//! Rounds interleave the paths, in turn forward and backward, and each
//! proxied download is weighed against the direct one of its own round:
//! the throughput figure is the median of those per-round ratios, so that
//! a noisy neighbour moves both sides of a ratio alike. CPU is counted
//! per download for everything (this process and the peers) and for the
//! proxy alone (roost's worker threads, or the peer's processes), from
//! /proc. The upstream serves the file from the page cache with
//! `sendfile(2)`; the client is one blocking thread reading into a 1 MiB
//! buffer. The proxy runs as in `roost up`: one roost-workers thread per
//! CPU, the client placed as a machine of an app whose policy is default
//! deny plus an allow rule for the upstream, and the upstream on the
//! host's loopback reached through the guard's exact `addr:port`
//! exception (`roost up --egress-allow-addr`). At the end the machine's
//! counters must hold every byte that came through.
//!
//! `cargo bench -p roost-egress --bench egress [-- --rounds N --connections N]`

use roost_destination_guard::{Guard, GuardConfig};
use roost_egress::{Directory, EgressConfig, EgressProxy, Ledger, MachineRef, Policy};
use roost_testkit::nginx::Nginx;
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

/// How a download reaches the upstream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hop {
    Direct,
    /// `GET http://upstream/...` to a proxy.
    Forward,
    /// `CONNECT upstream`, then the GET inside.
    Tunnel,
}

/// Whose proxy a hop goes through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Proxy {
    Roost,
    /// Debian's tinyproxy (a forward proxy with CONNECT), when installed.
    Tinyproxy,
    /// Debian's nginx relaying the plain-HTTP forward (it has no
    /// CONNECT), when installed.
    Nginx,
}

#[derive(Clone, Copy)]
struct Path {
    name: &'static str,
    hop: Hop,
    proxy: Proxy,
}

/// Direct first: every ratio is against it.
fn paths(peers: &Peers) -> Vec<Path> {
    let path = |name, hop, proxy| Path { name, hop, proxy };
    let mut paths = vec![
        path("direct", Hop::Direct, Proxy::Roost),
        path("proxy, plain-HTTP forward", Hop::Forward, Proxy::Roost),
        path("proxy, CONNECT tunnel", Hop::Tunnel, Proxy::Roost),
    ];
    if peers.tinyproxy.is_some() {
        paths.push(path("tinyproxy, forward", Hop::Forward, Proxy::Tinyproxy));
        paths.push(path("tinyproxy, CONNECT", Hop::Tunnel, Proxy::Tinyproxy));
    }
    if peers.nginx.is_some() {
        paths.push(path("nginx, forward", Hop::Forward, Proxy::Nginx));
    }
    paths
}

/// The order of the paths (indices) in round `round`: forward in odd
/// rounds, backward in even ones, so that no path is always the first to
/// run after the connection loop or a neighbour's burst.
fn round_order(round: usize, paths: usize) -> Vec<usize> {
    let order = 0..paths;
    if round.is_multiple_of(2) {
        order.collect()
    } else {
        order.rev().collect()
    }
}

struct Target<'a> {
    upstream: SocketAddr,
    proxy: SocketAddr,
    peers: &'a Peers,
}

impl Target<'_> {
    /// GET `path` of the upstream over `way`: the connection, its request
    /// sent (after the tunnel is open, for a tunnel).
    fn request(&self, way: Path, path: &str) -> TcpStream {
        let upstream = self.upstream;
        let proxy = match way.proxy {
            Proxy::Roost => self.proxy,
            Proxy::Tinyproxy => self.peers.tinyproxy.as_ref().expect("tinyproxy runs").addr,
            Proxy::Nginx => self.peers.nginx.as_ref().expect("nginx runs").addr,
        };
        let (to, target) = match way.hop {
            Hop::Direct => (upstream, path.to_string()),
            Hop::Forward => (proxy, format!("http://{upstream}{path}")),
            Hop::Tunnel => (proxy, path.to_string()),
        };
        let mut stream = TcpStream::connect(to).expect("connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        if way.hop == Hop::Tunnel {
            write!(
                stream,
                "CONNECT {upstream} HTTP/1.1\r\nHost: {upstream}\r\n\r\n"
            )
            .expect("send CONNECT");
            let head = read_head(&mut stream);
            assert!(is_200(way, &head), "CONNECT: {head}");
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
        assert!(is_200(way, &head), "{}: {head}", way.name);
        let length: u64 = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("{}: no Content-Length: {head}", way.name));
        let mut got = 0;
        while got < length {
            let n = stream.read(buffer).expect("read the body");
            assert!(n > 0, "{}: body ended at {got} of {length}", way.name);
            got += n as u64;
        }
        assert_eq!(got, length, "{}: more body than announced", way.name);
        length
    }
}

/// Whether `head` is a 200: an HTTP/1.1 one from the upstream or roost;
/// tinyproxy answers CONNECT in HTTP/1.0.
fn is_200(way: Path, head: &str) -> bool {
    match way.proxy {
        Proxy::Roost => head.starts_with("HTTP/1.1 200"),
        Proxy::Tinyproxy | Proxy::Nginx => head.split(' ').nth(1) == Some("200"),
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
/// (sent with `sendfile`), anything else the small body; one request per connection.
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
    let stream = stream.into_std()?;
    tokio::task::spawn_blocking(move || {
        stream.set_nonblocking(false)?;
        send_file(&stream, &std::fs::File::open(file)?)
    })
    .await?
}

/// Sends the whole file on `stream` with `sendfile(2)`: from the page
/// cache to the socket, never through this process's memory. (std's
/// `io::copy` between a file and a socket reads and writes through an
/// 8 KiB buffer instead, which made the upstream the bench's largest CPU
/// user and fed the proxy 8 KiB segments.)
fn send_file(stream: &std::net::TcpStream, file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut left = FILE_BYTES;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the call; a null offset
        // makes sendfile read from (and move) the file's own position.
        let n = unsafe {
            libc::sendfile(
                stream.as_raw_fd(),
                file.as_raw_fd(),
                std::ptr::null_mut(),
                chunk,
            )
        };
        match n {
            n if n > 0 => left -= n as u64,
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ => {
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
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

/// The mature peers doing the same hop in the same run, those installed.
struct Peers {
    tinyproxy: Option<Tinyproxy>,
    nginx: Option<Nginx>,
}

impl Peers {
    fn start(dir: &std::path::Path, upstream: SocketAddr) -> Peers {
        Peers {
            tinyproxy: Tinyproxy::start(dir),
            nginx: start_nginx(dir, upstream),
        }
    }

    /// The process whose CPU time (its children's included) is `proxy`'s.
    fn pid(&self, proxy: Proxy) -> Option<u32> {
        match proxy {
            Proxy::Roost => None,
            Proxy::Tinyproxy => self.tinyproxy.as_ref().map(|t| t.child.id()),
            Proxy::Nginx => self.nginx.as_ref().map(Nginx::pid),
        }
    }
}

/// Whether a peer's binary is there; if not, a line saying the run goes
/// without it.
fn installed(binary: &str, package: &str) -> bool {
    let there = std::path::Path::new(binary).exists();
    if !there {
        println!("{binary} is not installed: no {package} in this run (apt-get install {package})");
    }
    there
}

/// nginx relaying to the upstream with 2 workers, as roost's proxy has 2
/// worker threads; buffers for downloads, and no spooling of a large
/// answer to disk (it reads the upstream as fast as the client takes it).
fn start_nginx(dir: &std::path::Path, upstream: SocketAddr) -> Option<Nginx> {
    if !installed("/usr/sbin/nginx", "nginx-light") {
        return None;
    }
    let dir = dir.join("nginx");
    std::fs::create_dir_all(&dir).expect("nginx dir");
    let location = format!(
        "proxy_pass http://{upstream};\n\
         proxy_http_version 1.1;\n\
         proxy_buffer_size 64k;\n\
         proxy_buffers 8 256k;\n\
         proxy_busy_buffers_size 512k;\n\
         proxy_max_temp_file_size 0;"
    );
    Some(Nginx::start(&dir, 2, "", &location, |_| {}))
}

/// Debian's tinyproxy, a forward proxy with CONNECT: run from a temp dir
/// on a free loopback port, killed when dropped.
struct Tinyproxy {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Tinyproxy {
    const BINARY: &'static str = "/usr/bin/tinyproxy";

    fn start(dir: &std::path::Path) -> Option<Tinyproxy> {
        if !installed(Self::BINARY, "tinyproxy") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let d = dir.display();
        let config = dir.join("tinyproxy.conf");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 100\nAllow 127.0.0.1\n\
                 LogLevel Critical\nLogFile \"{d}/tinyproxy.log\"\nPidFile \"{d}/tinyproxy.pid\"\n\
                 DisableViaHeader Yes\n"
            ),
        )
        .expect("write tinyproxy.conf");
        let child = std::process::Command::new(Self::BINARY)
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tinyproxy");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "tinyproxy did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Tinyproxy { child, addr })
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user and system) of a process or thread, from its `stat`
/// file under /proc: clock ticks, fields 14 and 15.
fn stat_cpu(stat: &std::path::Path) -> Duration {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // The command name (field 2) may hold spaces; fields count from its ')'.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // SAFETY: sysconf only reads a system setting.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

/// CPU time of process `pid` and of its children (nginx's workers).
fn tree_cpu(pid: u32) -> Duration {
    let proc = std::path::Path::new("/proc").join(pid.to_string());
    let children =
        std::fs::read_to_string(proc.join("task").join(pid.to_string()).join("children"))
            .unwrap_or_default();
    let children: Duration = children
        .split_whitespace()
        .map(|child| stat_cpu(&std::path::Path::new("/proc").join(child).join("stat")))
        .sum();
    stat_cpu(&proc.join("stat")) + children
}

/// CPU time used so far: by everything (this process, whose threads are
/// the client, roost's proxy and the upstream, and the peers), and by
/// each proxy alone (roost's worker threads, a peer's processes).
struct Cpu {
    all: Duration,
    roost: Duration,
    tinyproxy: Duration,
    nginx: Duration,
}

impl Cpu {
    fn of(&self, proxy: Proxy) -> Duration {
        match proxy {
            Proxy::Roost => self.roost,
            Proxy::Tinyproxy => self.tinyproxy,
            Proxy::Nginx => self.nginx,
        }
    }
}

fn cpu_time(peers: &Peers) -> Cpu {
    let peer = |proxy| peers.pid(proxy).map_or(Duration::ZERO, tree_cpu);
    let (tinyproxy, nginx) = (peer(Proxy::Tinyproxy), peer(Proxy::Nginx));
    let roost = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.starts_with("roost-egress"))
        })
        .map(|task| stat_cpu(&task.path().join("stat")))
        .sum();
    Cpu {
        all: stat_cpu(std::path::Path::new("/proc/self/stat")) + tinyproxy + nginx,
        roost,
        tinyproxy,
        nginx,
    }
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
    let peers = Peers::start(dir.path(), upstream);
    let target = Target {
        upstream,
        proxy,
        peers: &peers,
    };
    let paths = paths(&peers);
    let mut buffer = vec![0u8; 1024 * 1024];
    let mib = FILE_BYTES as f64 / (1024.0 * 1024.0);
    println!(
        "egress benchmark: {mib:.0} MiB download x {} rounds and {} new connections per path, \
         interleaved; proxy on {} worker(s), {} CPUs shared by client, proxies and upstream",
        options.rounds,
        options.connections,
        roost_workers::per_cpu(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );

    let mut through_proxy = 0;
    let mut carried = |way: Path, bytes: u64| {
        if way.hop != Hop::Direct && way.proxy == Proxy::Roost {
            through_proxy += bytes;
        }
    };
    for &way in &paths {
        let bytes = target.fetch(way, "/file", &mut buffer);
        assert_eq!(bytes, FILE_BYTES);
        carried(way, bytes);
    }
    let n = paths.len();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut proxy_cpu: Vec<Vec<f64>> = vec![Vec::new(); n];
    for round in 0..options.rounds {
        for i in round_order(round, n) {
            let way = paths[i];
            let (started, before) = (Instant::now(), cpu_time(&peers));
            let bytes = target.fetch(way, "/file", &mut buffer);
            let rate = bytes as f64 / started.elapsed().as_secs_f64() / 1e6;
            let after = cpu_time(&peers);
            rates[i].push(rate);
            cpu[i].push((after.all - before.all).as_secs_f64() * 1e3);
            let proxied = after.of(way.proxy) - before.of(way.proxy);
            proxy_cpu[i].push(proxied.as_secs_f64() * 1e3);
            carried(way, bytes);
        }
        let line: Vec<String> = paths
            .iter()
            .zip(&rates)
            .map(|(way, r)| format!("{} {:.0}", way.name, r[round]))
            .collect();
        println!("round {}: MB/s {}", round + 1, line.join(", "));
    }
    // Each proxied download against the direct one of its own round: a
    // neighbour's burst then moves both sides of a ratio, not one.
    let against_direct = |values: &[Vec<f64>], i: usize| {
        sorted(
            values[i]
                .iter()
                .zip(&values[0])
                .map(|(v, d)| v / d)
                .collect(),
        )
    };
    let ratios: Vec<Vec<f64>> = (0..n).map(|i| against_direct(&rates, i)).collect();
    let cpu_ratios: Vec<Vec<f64>> = (0..n).map(|i| against_direct(&cpu, i)).collect();

    let mut setups: Vec<Vec<f64>> = vec![Vec::new(); n];
    for _ in 0..options.connections {
        for (i, &way) in paths.iter().enumerate() {
            let started = Instant::now();
            let bytes = target.fetch(way, "/small", &mut buffer);
            setups[i].push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(bytes, SMALL_BODY.len() as u64);
            carried(way, bytes);
        }
    }

    let rates: Vec<Vec<f64>> = rates.into_iter().map(sorted).collect();
    let cpu: Vec<Vec<f64>> = cpu.into_iter().map(sorted).collect();
    let proxy_cpu: Vec<Vec<f64>> = proxy_cpu.into_iter().map(sorted).collect();
    let setups: Vec<Vec<f64>> = setups.into_iter().map(sorted).collect();
    println!();
    println!(
        "{:<28} {:>12} {:>12} {:>14} {:>16} {:>12} {:>12}",
        "path",
        "MB/s median",
        "MB/s p99",
        "CPU ms/256MiB",
        "proxy CPU ms",
        "setup p50",
        "setup p99"
    );
    for (i, way) in paths.iter().enumerate() {
        // The p99 of a rate is its slow tail: the 1st percentile.
        println!(
            "{:<28} {:>12.0} {:>12.0} {:>14.0} {:>16.0} {:>9.3} ms {:>9.3} ms",
            way.name,
            percentile(&rates[i], 50.0),
            percentile(&rates[i], 1.0),
            percentile(&cpu[i], 50.0),
            percentile(&proxy_cpu[i], 50.0),
            percentile(&setups[i], 50.0),
            percentile(&setups[i], 99.0),
        );
    }
    println!();
    println!("targets (throughput: median of the per-round ratios; setup: medians)");
    let direct_setup = percentile(&setups[0], 50.0);
    for i in 1..n {
        let ratio = percentile(&ratios[i], 50.0);
        let overhead = percentile(&setups[i], 50.0) - direct_setup;
        let overhead_p99 = percentile(&setups[i], 99.0) - percentile(&setups[0], 99.0);
        println!(
            "  {:<26} throughput {:>5.1} % of direct (rounds {:.0}-{:.0} %, target >= 80 %) {}   CPU {:.2}x direct   setup overhead p50 {:.3} ms (target <= 1 ms) {}, p99 {:.3} ms",
            paths[i].name,
            ratio * 100.0,
            ratios[i][0] * 100.0,
            ratios[i][ratios[i].len() - 1] * 100.0,
            verdict(ratio >= 0.8),
            percentile(&cpu_ratios[i], 50.0),
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
