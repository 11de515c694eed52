//! Object storage throughput: roost's S3 endpoint against `s3s-fs` 0.14.1 and the raw disk,
//! in the same run, on the same temporary filesystem.
//!
//! * **roost**: a real `roost up` (the release build cargo makes for benches) on a temp data
//!   dir, bucket made with `POST /v1/apps/{app}/storage`, requests signed with the app's key
//!   pair, as a machine would send them.
//! * **s3s-fs**: the reference filesystem backend of the s3s crate roost's protocol layer comes
//!   from, on a directory next to roost's. It writes without fsync; roost's PUT answers only
//!   once the body and its record are on disk. Skipped, with the install command printed, when
//!   `s3s-fs` is not on `PATH` or in `~/.cargo/bin`.
//! * **raw disk**: a 256 MiB file written in 1 MiB `write`s then `fsync`ed (timed together),
//!   and read back in 1 MiB `read`s after its pages were dropped from the page cache.
//!
//! Before every GET phase, each file under every store's directory is `fdatasync`ed (outside
//! the timed region) and its cached pages dropped with `POSIX_FADV_DONTNEED`, so GETs read
//! the disk like the raw read does, whether or not the server fsynced its writes.
//!
//! The client is reqwest over kept-alive HTTP/1.1 connections with a small SigV4 signer
//! (`UNSIGNED-PAYLOAD`, as SDKs send over TLS, so neither server hashes the body for the
//! signature). Phases, each run against roost then s3s-fs before the next starts:
//! 256 × 1 MiB PUT then GET by 16 concurrent clients, 2 × 256 MiB PUT then GET by one client,
//! 4096 × 4 KiB PUT then GET by 16 concurrent clients.
//!
//! Then versioning's cost: 4096 × 4 KiB PUTs by 16 clients into a roost bucket with
//! versioning Enabled and into an unversioned one, alternating for 9 rounds on the same keys
//! (so rounds after the first add a version, or replace the object), with the median rate
//! and the median and p99 PUT latency of each; their ratio is the median of the rounds' own.
//!
//! Run with `cargo bench -p roost --bench objects`. Targets: roost ≥ s3s-fs on every figure,
//! ≥ 80% of the raw disk rate for 256 MiB objects, and versioned PUTs ≥ 90% of the rate of
//! unversioned ones. A miss prints MISS and the bench still succeeds; a failed request makes
//! it exit non-zero.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use common::{Daemon, APP};
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;
const CLIENTS: usize = 16;
const BUCKET: &str = "bench";
const VERSIONED_BUCKET: &str = "bench-versioned";
const VERSIONING_ROUNDS: usize = 9;
const VERSIONING_WORKLOAD: Workload = Workload {
    size: 4096,
    count: 4096,
    clients: CLIENTS,
};
const S3S_FS_VERSION: &str = "0.14.1";

/// One workload: `count` objects of `size` bytes, spread over `clients` concurrent clients.
#[derive(Clone, Copy)]
struct Workload {
    size: usize,
    count: usize,
    clients: usize,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        size: MIB,
        count: 256,
        clients: CLIENTS,
    },
    Workload {
        size: 256 * MIB,
        count: 2,
        clients: 1,
    },
    Workload {
        size: 4096,
        count: 4096,
        clients: CLIENTS,
    },
];

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start tokio: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("objects bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// An S3 endpoint under test, with the key pair and bucket the bench uses.
struct Endpoint {
    /// `127.0.0.1:PORT`, the Host header the signature covers.
    host: String,
    access_key_id: String,
    secret_access_key: String,
    /// Where the server keeps its data, for dropping cached pages.
    dir: PathBuf,
    http: reqwest::Client,
}

/// PUT and GET rates of one workload: bytes/s for large objects, objects/s for small ones.
#[derive(Clone, Copy, Default)]
struct Rates {
    put: f64,
    get: f64,
}

async fn run() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    println!(
        "object storage benchmark: data in {} (same filesystem for all columns)",
        scratch.path().display()
    );
    let raw = raw_disk(scratch.path())?;

    let s3_addr = format!("127.0.0.1:{}", common::free_port());
    let daemon = Daemon::start_with_args(&["--s3-listen", &s3_addr]).await;
    let roost = roost_endpoint(&daemon, &s3_addr).await?;
    let s3s_fs = match find_s3s_fs() {
        Some(binary) => Some(S3sFs::start(&binary, &scratch.path().join("s3s-fs")).await?),
        None => {
            println!(
                "s3s-fs not found: its column is skipped. Install it with\n  \
                 cargo install s3s-fs --version {S3S_FS_VERSION} --features binary"
            );
            None
        }
    };
    let mut endpoints = vec![roost.clone()];
    if let Some(server) = &s3s_fs {
        endpoints.push(server.endpoint.clone());
    }

    let mut results: Vec<Vec<Rates>> = vec![Vec::new(); endpoints.len()];
    for workload in WORKLOADS {
        let data = payload(workload.size);
        for (endpoint, rates) in endpoints.iter().zip(results.iter_mut()) {
            let prefix = format!("w{}", workload.size);
            let (put, _) = put_all(endpoint, BUCKET, &prefix, &data, workload).await?;
            drop_cached_pages(&endpoint.dir)?;
            let get = get_all(endpoint, &prefix, workload).await?;
            let unit = |elapsed: Duration| per_second(workload, elapsed);
            rates.push(Rates {
                put: unit(put),
                get: unit(get),
            });
            delete_all(endpoint, &prefix, workload).await?;
        }
    }
    print_table(&results, raw, s3s_fs.is_some());
    versioning_cost(&roost).await
}

/// PUT rate and latency into a versioned bucket against an unversioned one, in alternating
/// rounds on the same keys so both see the same server state and load over time.
async fn versioning_cost(roost: &Arc<Endpoint>) -> Result<()> {
    succeeded(
        roost.request(reqwest::Method::PUT, &format!("/{VERSIONED_BUCKET}")),
        "CreateBucket",
    )
    .await?;
    succeeded(
        roost
            .request(
                reqwest::Method::PUT,
                &format!("/{VERSIONED_BUCKET}?versioning="),
            )
            .body(
                "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <Status>Enabled</Status></VersioningConfiguration>",
            ),
        "PutBucketVersioning",
    )
    .await?;
    let workload = VERSIONING_WORKLOAD;
    let data = payload(workload.size);
    let buckets = [BUCKET, VERSIONED_BUCKET];
    let mut rates = [Vec::new(), Vec::new()];
    let mut latencies = [Vec::new(), Vec::new()];
    for round in 0..VERSIONING_ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let (elapsed, mut times) =
                put_all(roost, buckets[which], "versioning", &data, workload).await?;
            rates[which].push(per_second(workload, elapsed));
            latencies[which].append(&mut times);
        }
    }
    println!();
    println!(
        "PUT 4 KiB ({} x {}, {VERSIONING_ROUNDS} alternating rounds, same keys)",
        workload.clients, workload.count
    );
    // Each round's two rates saw the same moment of the host's load: their
    // ratio is steadier than the ratio of the two medians.
    let mut ratios: Vec<f64> = rates[1]
        .iter()
        .zip(&rates[0])
        .map(|(versioned, unversioned)| versioned / unversioned)
        .collect();
    for (which, label) in ["unversioned", "versioned"].into_iter().enumerate() {
        let rate = median(&mut rates[which]);
        latencies[which].sort();
        let at = |q: f64| {
            let times = &latencies[which];
            times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
        };
        println!(
            "  {label:<12} median {:>8.1} ops/s   latency median {:>6.2} ms   p99 {:>6.2} ms",
            rate,
            at(0.5),
            at(0.99)
        );
    }
    let ratio = median(&mut ratios);
    let verdict = if ratio >= 0.9 { "PASS" } else { "MISS" };
    println!(
        "  versioned / unversioned PUT rate = {ratio:>6.2} (median of per-round ratios, {:.2} to {:.2})   target >= 0.90   {verdict}",
        ratios[0],
        ratios[ratios.len() - 1]
    );
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Objects/s for small objects, bytes/s otherwise.
fn per_second(workload: Workload, elapsed: Duration) -> f64 {
    let units = if workload.size < MIB {
        workload.count
    } else {
        workload.count * workload.size
    };
    units as f64 / elapsed.as_secs_f64()
}

/// Bytes that neither compress nor repeat per MiB (so no layer can dedupe them).
fn payload(size: usize) -> Bytes {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(size);
    Bytes::from(data)
}

async fn roost_endpoint(daemon: &Daemon, s3_addr: &str) -> Result<Arc<Endpoint>> {
    let created: serde_json::Value = daemon
        .client()
        .post(
            &format!("/v1/apps/{APP}/storage"),
            &serde_json::json!({ "name": BUCKET }),
        )
        .await
        .context("create roost storage")?;
    let field = |name: &str| {
        created[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("storage answer lacks {name}: {created}"))
    };
    Ok(Arc::new(Endpoint {
        host: s3_addr.to_owned(),
        access_key_id: field("access_key_id")?,
        secret_access_key: field("secret_access_key")?,
        dir: daemon.data_dir().join("objects"),
        http: reqwest::Client::new(),
    }))
}

/// `s3s-fs` on `PATH`, else where `cargo install` puts it.
fn find_s3s_fs() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("s3s-fs"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let installed = Path::new(&home).join(".cargo/bin/s3s-fs");
        installed.is_file().then_some(installed)
    })
}

/// A running `s3s-fs`, killed on drop.
struct S3sFs {
    child: Child,
    endpoint: Arc<Endpoint>,
}

impl S3sFs {
    async fn start(binary: &Path, dir: &Path) -> Result<S3sFs> {
        std::fs::create_dir_all(dir)?;
        let port = common::free_port();
        let (access_key_id, secret_access_key) = ("BENCHKEY".to_owned(), "bench-secret".to_owned());
        let log = std::fs::File::create(dir.with_extension("log"))?;
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &access_key_id, "--secret-key"])
            .arg(&secret_access_key)
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;
        let server = S3sFs {
            child,
            endpoint: Arc::new(Endpoint {
                host: format!("127.0.0.1:{port}"),
                access_key_id,
                secret_access_key,
                dir: dir.to_owned(),
                http: reqwest::Client::new(),
            }),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(&server.endpoint.host)
            .await
            .is_err()
        {
            ensure!(
                Instant::now() < deadline,
                "s3s-fs did not listen within 10s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        succeeded(
            server
                .endpoint
                .request(reqwest::Method::PUT, &format!("/{BUCKET}")),
            "s3s-fs CreateBucket",
        )
        .await?;
        println!("s3s-fs {} on {}", version_of(binary), server.endpoint.host);
        Ok(server)
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn version_of(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
}

impl Endpoint {
    /// A request for `path` (already URI-safe, its query if any already in SigV4's canonical
    /// form, e.g. `?versioning=`), signed with AWS SigV4 header auth.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let (uri_path, query) = path.split_once('?').unwrap_or((path, ""));
        let now = chrono::Utc::now();
        let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
        let day = &amz_date[..8];
        let scope = format!("{day}/us-east-1/s3/aws4_request");
        let canonical = format!(
            "{method}\n{uri_path}\n{query}\nhost:{}\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:{amz_date}\n\n\
             host;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD",
            self.host
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", self.secret_access_key).as_bytes(),
            day.as_bytes(),
        );
        for part in ["us-east-1", "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex(&hmac(&key, to_sign.as_bytes()));
        self.http
            .request(method, format!("http://{}{path}", self.host))
            .header("x-amz-date", amz_date)
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, \
                     SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}",
                    self.access_key_id
                ),
            )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 (RFC 2104) over `sha2`, the one primitive SigV4 needs.
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(block.map(|b| b ^ 0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(block.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The answer to `request`, which must be a success (`what` names it in the error).
async fn succeeded(request: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response> {
    let response = request.send().await?;
    ensure!(
        response.status().is_success(),
        "{what} answered {}",
        response.status()
    );
    Ok(response)
}

fn object_path(bucket: &str, prefix: &str, index: usize) -> String {
    format!("/{bucket}/{prefix}/{index:06}")
}

/// Runs `op` for every object index, `workload.clients` at a time (client `c` takes indexes
/// `c, c + clients, ...`), and returns the wall time of the whole phase.
async fn phase<F, Fut>(workload: Workload, op: F) -> Result<Duration>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let clients: Vec<_> = (0..workload.clients)
        .map(|client| {
            let op = op.clone();
            tokio::spawn(async move {
                for index in (client..workload.count).step_by(workload.clients) {
                    op(index).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for client in clients {
        client.await??;
    }
    Ok(started.elapsed())
}

/// PUTs every object of `workload` into `bucket`; the phase's wall time and each PUT's.
async fn put_all(
    endpoint: &Arc<Endpoint>,
    bucket: &str,
    prefix: &str,
    data: &Bytes,
    workload: Workload,
) -> Result<(Duration, Vec<Duration>)> {
    let endpoint = endpoint.clone();
    let (bucket, prefix, data) = (bucket.to_owned(), prefix.to_owned(), data.clone());
    let times = Arc::new(std::sync::Mutex::new(Vec::with_capacity(workload.count)));
    let recorded = times.clone();
    let elapsed = phase(workload, move |index| {
        let request = endpoint
            .request(reqwest::Method::PUT, &object_path(&bucket, &prefix, index))
            .body(data.clone());
        let recorded = recorded.clone();
        async move {
            let started = Instant::now();
            succeeded(request, "PUT").await?;
            recorded.lock().expect("latencies").push(started.elapsed());
            Ok(())
        }
    })
    .await?;
    let times = std::mem::take(&mut *times.lock().expect("latencies"));
    Ok((elapsed, times))
}

async fn get_all(endpoint: &Arc<Endpoint>, prefix: &str, workload: Workload) -> Result<Duration> {
    let endpoint = endpoint.clone();
    let prefix = prefix.to_owned();
    let expected = workload.size;
    phase(workload, move |index| {
        let request = endpoint.request(reqwest::Method::GET, &object_path(BUCKET, &prefix, index));
        async move {
            let mut response = succeeded(request, "GET").await?;
            let mut received = 0;
            while let Some(chunk) = response.chunk().await? {
                received += chunk.len();
            }
            ensure!(
                received == expected,
                "GET returned {received} bytes, not {expected}"
            );
            Ok(())
        }
    })
    .await
}

async fn delete_all(endpoint: &Arc<Endpoint>, prefix: &str, workload: Workload) -> Result<()> {
    let endpoint = endpoint.clone();
    let prefix = prefix.to_owned();
    phase(workload, move |index| {
        let request = endpoint.request(
            reqwest::Method::DELETE,
            &object_path(BUCKET, &prefix, index),
        );
        async move {
            succeeded(request, "DELETE").await?;
            Ok(())
        }
    })
    .await?;
    Ok(())
}

/// Flushes and evicts from the page cache every file under `dir`, so the next reads come from
/// the disk. Flushing first matters: dirty pages cannot be dropped.
fn drop_cached_pages(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            drop_cached_pages(&path)?;
        } else if kind.is_file() {
            let file = std::fs::File::open(&path)?;
            file.sync_data()?;
            // SAFETY: the descriptor is open for the duration of the call.
            let rc =
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            if rc != 0 {
                bail!("posix_fadvise({}) failed: errno {rc}", path.display());
            }
        }
    }
    Ok(())
}

/// Write (+fsync) and read rates of the disk under `dir`, in bytes/s, as the same number of
/// 256 MiB files the large-object workload stores.
fn raw_disk(dir: &Path) -> Result<Rates> {
    use std::io::{Read, Write};
    let large = WORKLOADS[1];
    let data = payload(large.size);
    let dir = dir.join("raw");
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    for index in 0..large.count {
        let mut file = std::fs::File::create(dir.join(index.to_string()))?;
        for chunk in data.chunks(MIB) {
            file.write_all(chunk)?;
        }
        file.sync_all()?;
    }
    let write = started.elapsed();
    drop_cached_pages(&dir)?;
    let mut buffer = vec![0u8; MIB];
    let started = Instant::now();
    for index in 0..large.count {
        let mut file = std::fs::File::open(dir.join(index.to_string()))?;
        let mut total = 0;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            total += n;
        }
        ensure!(total == large.size, "raw read returned {total} bytes");
    }
    let read = started.elapsed();
    std::fs::remove_dir_all(&dir)?;
    Ok(Rates {
        put: per_second(large, write),
        get: per_second(large, read),
    })
}

fn print_table(results: &[Vec<Rates>], raw: Rates, with_s3s_fs: bool) {
    let labels = ["1 MiB", "256 MiB", "4 KiB"];
    println!();
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "figure", "roost", "s3s-fs", "raw disk"
    );
    let mut checks: Vec<(String, f64, f64)> = Vec::new();
    for (index, (workload, label)) in WORKLOADS.iter().zip(labels).enumerate() {
        let small = workload.size < MIB;
        let unit = if small { "ops/s" } else { "MB/s" };
        let scale = if small { 1.0 } else { 1e6 };
        for (op, pick) in [
            ("PUT", (|r: &Rates| r.put) as fn(&Rates) -> f64),
            ("GET", |r: &Rates| r.get),
        ] {
            let roost = pick(&results[0][index]);
            let other = results.get(1).map(|rates| pick(&rates[index]));
            let disk = (workload.size == WORKLOADS[1].size).then(|| pick(&raw));
            let cell = |value: Option<f64>| match value {
                Some(v) => format!("{:>10.1}", v / scale),
                None => format!("{:>10}", "-"),
            };
            let name = format!(
                "{op} {label} ({} x {}, {unit})",
                workload.clients, workload.count
            );
            println!(
                "{name:<34} {} {} {}",
                cell(Some(roost)),
                cell(other),
                cell(disk)
            );
            if let Some(other) = other {
                checks.push((format!("{op} {label}: roost / s3s-fs"), roost / other, 1.0));
            }
            if let Some(disk) = disk {
                checks.push((format!("{op} {label}: roost / raw disk"), roost / disk, 0.8));
            }
        }
    }
    println!();
    println!("targets");
    for (name, ratio, target) in checks {
        let verdict = if ratio >= target { "PASS" } else { "MISS" };
        println!("  {name:<36} = {ratio:>6.2}   target >= {target:.2}   {verdict}");
    }
    if !with_s3s_fs {
        println!("  roost vs s3s-fs: not measured (s3s-fs not installed)");
    }
    println!(
        "\nclients x objects per phase; MB = 10^6 bytes; GETs read after the stores' pages were \
         flushed and dropped (POSIX_FADV_DONTNEED);\nraw disk: 1 MiB writes + fsync, then 1 MiB \
         reads after POSIX_FADV_DONTNEED; s3s-fs does not fsync, roost does before answering a PUT"
    );
}
