//! Density: what 2,000 stopped machines with long histories cost roost,
//! this tree against an older roost binary (commit caf328d, before events
//! were bounded and listings batched), in the same run.
//!
//! ```text
//! git worktree add ../roost-caf328d caf328d
//! (cd ../roost-caf328d && cargo build --release --locked -p roost)
//! ROOST_OLD_BIN=../roost-caf328d/target/release/roost cargo bench -p roost --bench density
//! ```
//!
//! Options after `--`: `--samples N` (per figure, default 100),
//! `--idle-secs S` (default 60), `--machines-per-app N` (default 200; the
//! targets are about 200, fewer is for trying the bench out).
//!
//! Seeding, once, through the old binary's API as a user would: busybox
//! imported, 10 apps, 200 machines each, created and launched with a
//! program that exits at once (`/bin/true`, restart policy `no`), so every one
//! settles `stopped` with its real launch and exit events. Each machine
//! carries an HTTP service with autostart off, so the proxy routes on it
//! but never starts it. Then, with the daemon stopped, each machine's
//! history is extended to 10 and to 100 events by repeating its own events
//! (fresh ids, later timestamps), written with plain SQL into the old
//! binary's events table (roost-store would migrate the schema at open,
//! which the old binary cannot read; this tree's binary migrates its copy,
//! events included, when it starts). Both binaries then run on copies of
//! the same data directory.
//!
//! For each binary and history length, on a fresh daemon with the proxy's
//! supervisor parked (`--proxy-tick-ms 3600000`, so nothing but the
//! request re-reads machines):
//! - `GET /v1/apps/{app}/machines`, apps in turn, whole body read;
//! - the proxy's routing refresh as the proxy does it: a request through
//!   the edge proxy for an app whose machine list is older than the
//!   proxy's snapshot age (1 s, so the bench waits 1.1 s between rounds of
//!   one request per app), which re-reads the app's machines and answers
//!   503 (no machine may be started). The figure is the request's latency.
//!
//! With 100 events, on another fresh daemon with default settings: idle
//! CPU over `--idle-secs` (utime + stime of the daemon from
//! `/proc/<pid>/stat`, after 5 s of settling) and the daemon's RSS.

#[path = "../tests/common/mod.rs"]
mod common;

use roost_types::{CreateMachineRequest, MachineConfig, MachineEvent};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const APPS: usize = 10;
const HISTORIES: [usize; 2] = [10, 100];
/// How many creates run at once while seeding.
const SEED_CONCURRENCY: usize = 4;
/// The proxy's snapshot age (`ProxyConfig::snapshot_max_age`) plus a margin.
const SNAPSHOT_AGE: Duration = Duration::from_millis(1100);

fn arg(name: &str, default: u64, max: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].parse().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

fn app_name(n: usize) -> String {
    format!("density-{n}")
}

/// A running `roost up` of either binary, on its own data dir; killed and
/// its host state removed when dropped.
struct Daemon {
    child: Child,
    data_dir: PathBuf,
    url: String,
    token: String,
    proxy: String,
    http: reqwest::Client,
}

impl Daemon {
    async fn start(binary: &Path, data_dir: &Path, extra: &[&str]) -> Daemon {
        let api = format!("127.0.0.1:{}", common::free_port());
        let proxy = format!("127.0.0.1:{}", common::free_port());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .expect("daemon log");
        let child = Command::new(binary)
            .args(["up", "--no-install", "--no-private-network"])
            .args(["--api-listen", &api, "--proxy-listen", &proxy])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .env("ROOST_S3_LISTEN", "127.0.0.1:0")
            .env("ROOST_TOKENIZER_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn roost up");
        let mut daemon = Daemon {
            child,
            data_dir: data_dir.to_path_buf(),
            url: format!("http://{api}"),
            token: String::new(),
            proxy,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        };
        // Opening 2,000 machines converges each one first: allow minutes.
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            if let Ok(token) = std::fs::read_to_string(data_dir.join("admin-token")) {
                daemon.token = token.trim().to_string();
                if daemon.get("/v1/apps").await.is_ok() {
                    return daemon;
                }
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!(
                    "{} exited early ({status}); see {}",
                    binary.display(),
                    data_dir.with_extension("log").display()
                );
            }
            assert!(Instant::now() < deadline, "roost up not ready in 900 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn client(&self) -> roost_client::Client {
        roost_client::Client::new(&self.url, &self.token)
    }

    /// `GET path` on the API: the whole body, or the status of a failure.
    async fn get(&self, path: &str) -> Result<bytes::Bytes, String> {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(response.status().to_string());
        }
        response.bytes().await.map_err(|e| e.to_string())
    }

    /// A request through the edge proxy for `app`: its status and body.
    async fn through_proxy(&self, app: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("http://{}/", self.proxy))
            .header("host", format!("{app}.localhost"))
            .send()
            .await
            .expect("request through the proxy");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Stops the daemon the way an operator does (SIGTERM) and waits.
    fn stop(mut self) {
        stop_child(&mut self.child);
        common::cleanup_host_state(&self.data_dir);
    }
}

fn stop_child(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        common::cleanup_host_state(&self.data_dir);
    }
}

fn machine_config() -> MachineConfig {
    serde_json::from_value(serde_json::json!({
        "image": common::IMAGE,
        "init": {"exec": ["/bin/true"]},
        "restart": {"policy": "no"},
        "services": [{
            "protocol": "tcp",
            "internal_port": 8080,
            "autostart": false,
            "autostop": false,
            "ports": [{"port": 80, "handlers": ["http"]}],
        }],
    }))
    .expect("machine config")
}

/// Seeds `data_dir` through `binary`'s API: 10 apps of `per_app` stopped machines.
async fn seed(binary: &Path, data_dir: &Path, scratch: &Path, per_app: usize) {
    let daemon = Daemon::start(binary, data_dir, &[]).await;
    let layout = roost_testkit::busybox_layout(scratch);
    daemon
        .client()
        .import_image(&layout.to_string_lossy(), common::IMAGE)
        .await
        .expect("import busybox");
    let began = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(SEED_CONCURRENCY));
    let mut created = tokio::task::JoinSet::new();
    for n in 0..APPS {
        let app = app_name(n);
        daemon.client().create_app(&app).await.expect("create app");
        for _ in 0..per_app {
            let permit = gate.clone().acquire_owned().await.unwrap();
            let (client, app) = (daemon.client(), app.clone());
            created.spawn(async move {
                let request = CreateMachineRequest {
                    config: machine_config(),
                    ..Default::default()
                };
                let machine = client.create_machine(&app, &request).await;
                drop(permit);
                (app, machine.expect("create machine").id)
            });
        }
    }
    let mut machines = Vec::new();
    while let Some(done) = created.join_next().await {
        machines.push(done.expect("create task"));
    }
    for (app, id) in &machines {
        let path = format!("/v1/apps/{app}/machines/{id}/wait?state=stopped&timeout=60");
        daemon.get(&path).await.expect("machine settles stopped");
    }
    eprintln!(
        "seeded {} stopped machines in {:.0} s",
        machines.len(),
        began.elapsed().as_secs_f64()
    );
    daemon.stop();
}

/// Extends every machine's history to exactly `events` events by
/// repeating its own, newest last, with fresh ids and later timestamps.
fn extend_histories(data_dir: &Path, events: usize) {
    // Plain SQL on the old layout's events table, not roost-store: opening
    // the store migrates the schema, which the old binary cannot read.
    let mut db = rusqlite::Connection::open(data_dir.join("roost.db")).expect("open database");
    let tx = db.transaction().expect("transaction");
    let ids: Vec<String> = tx
        .prepare("SELECT id FROM machines")
        .and_then(|mut q| q.query_map([], |row| row.get(0))?.collect())
        .expect("machines");
    let mut serial = 0u64;
    for id in &ids {
        let own: Vec<MachineEvent> = tx
            .prepare("SELECT data FROM events WHERE machine_id = ?1 ORDER BY seq")
            .and_then(|mut q| {
                q.query_map([id], |row| row.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("events")
            .iter()
            .map(|data| serde_json::from_str(data).expect("an event"))
            .collect();
        assert!(
            !own.is_empty() && own.len() <= events,
            "machine {id} has {} events",
            own.len()
        );
        let mut timestamp = own.last().map(|e| e.timestamp).unwrap_or_default();
        for n in 0..events - own.len() {
            let mut event = own[n % own.len()].clone();
            serial += 1;
            timestamp += 1;
            event.id = format!("{:026}", serial);
            event.timestamp = timestamp;
            let data = serde_json::to_string(&event).expect("event JSON");
            tx.execute(
                "INSERT INTO events (machine_id, data) VALUES (?1, ?2)",
                (id, data),
            )
            .expect("append event");
        }
    }
    tx.commit().expect("commit");
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// Median and p99 in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Figure {
    p50: f64,
    p99: f64,
}

fn figure(mut samples: Vec<Duration>) -> Figure {
    samples.sort();
    Figure {
        p50: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
    }
}

struct Timings {
    list: Figure,
    list_bytes: usize,
    refresh: Figure,
}

async fn time_listing_and_refresh(daemon: &Daemon, samples: usize) -> Timings {
    let mut list = Vec::new();
    let mut list_bytes = 0;
    for n in 0..samples + APPS {
        let path = format!("/v1/apps/{}/machines", app_name(n % APPS));
        let began = Instant::now();
        let body = daemon.get(&path).await.expect("list machines");
        // The first round warms caches; it is not counted.
        if n >= APPS {
            list.push(began.elapsed());
        }
        list_bytes = body.len();
    }
    let mut refresh = Vec::new();
    for round in 0..samples.div_ceil(APPS) + 1 {
        tokio::time::sleep(SNAPSHOT_AGE).await;
        for n in 0..APPS {
            let began = Instant::now();
            let (status, body) = daemon.through_proxy(&app_name(n)).await;
            let took = began.elapsed();
            assert_eq!(status, 503, "the proxy must refuse, not route: {body}");
            if round > 0 {
                refresh.push(took);
            }
        }
    }
    refresh.truncate(samples);
    Timings {
        list: figure(list),
        list_bytes,
        refresh: figure(refresh),
    }
}

/// The process's CPU time (user + system) in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

struct Idle {
    cpu_percent: f64,
    rss_mib: f64,
}

async fn idle(daemon: &Daemon, secs: u64) -> Idle {
    let pid = daemon.child.id();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let used = cpu_ticks(pid) - before;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Idle {
        cpu_percent: used as f64 / hz / secs as f64 * 100.0,
        rss_mib: rss_mib(pid),
    }
}

struct Run {
    timings: Timings,
    idle: Option<Idle>,
}

async fn run(
    binary: &Path,
    seeded: &Path,
    work: &Path,
    idle_secs: Option<u64>,
    samples: usize,
) -> Run {
    let data_dir = work.join("data");
    copy_dir(seeded, &data_dir);
    let daemon = Daemon::start(binary, &data_dir, &["--proxy-tick-ms", "3600000"]).await;
    let timings = time_listing_and_refresh(&daemon, samples).await;
    daemon.stop();
    let idle = match idle_secs {
        Some(secs) => {
            let daemon = Daemon::start(binary, &data_dir, &[]).await;
            let idle = idle(&daemon, secs).await;
            daemon.stop();
            Some(idle)
        }
        None => None,
    };
    std::fs::remove_dir_all(&data_dir).expect("remove data dir");
    Run { timings, idle }
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

#[tokio::main]
async fn main() {
    let samples = arg("--samples", 100, 10_000) as usize;
    let idle_secs = arg("--idle-secs", 60, 3600);
    let per_app = arg("--machines-per-app", 200, 1000) as usize;
    let Some(old) = std::env::var_os("ROOST_OLD_BIN").map(PathBuf::from) else {
        eprintln!(
            "set ROOST_OLD_BIN to a roost binary of commit caf328d:\n  \
             git worktree add ../roost-caf328d caf328d\n  \
             (cd ../roost-caf328d && cargo build --release --locked -p roost)\n  \
             ROOST_OLD_BIN=../roost-caf328d/target/release/roost cargo bench -p roost --bench density"
        );
        std::process::exit(2);
    };
    let old = std::fs::canonicalize(&old).expect("ROOST_OLD_BIN exists");
    let new = PathBuf::from(env!("CARGO_BIN_EXE_roost"));
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("seeded");
    seed(&old, &base, dir.path(), per_app).await;

    let mut results = Vec::new();
    for events in HISTORIES {
        let seeded = dir.path().join(format!("seeded-{events}"));
        copy_dir(&base, &seeded);
        extend_histories(&seeded, events);
        let idle = (events == 100).then_some(idle_secs);
        for (name, binary) in [("old", &old), ("new", &new)] {
            let work = dir.path().join(format!("{name}-{events}"));
            std::fs::create_dir_all(&work).unwrap();
            eprintln!("running {name} with {events} events per machine");
            let outcome = run(binary, &seeded, &work, idle, samples).await;
            results.push((events, name, outcome));
        }
    }

    let get = |events: usize, name: &str| {
        &results
            .iter()
            .find(|(e, n, _)| *e == events && *n == name)
            .expect("run")
            .2
    };
    println!(
        "density: {} stopped machines over {APPS} apps; old = {}, new = this tree; {samples} samples, times in ms",
        APPS * per_app,
        old.display()
    );
    println!();
    println!(
        "{:<7}{:<34}{:>9}{:>9}{:>9}{:>9}{:>11}",
        "events", "", "old p50", "old p99", "new p50", "new p99", "old/new"
    );
    for events in HISTORIES {
        let (o, n) = (&get(events, "old").timings, &get(events, "new").timings);
        for (what, a, b) in [
            ("GET /v1/apps/{app}/machines", o.list, n.list),
            ("proxy refresh (request, 503)", o.refresh, n.refresh),
        ] {
            println!(
                "{events:<7}{what:<34}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>10.1}x",
                a.p50,
                a.p99,
                b.p50,
                b.p99,
                a.p50 / b.p50
            );
        }
        println!(
            "{events:<7}{:<34}{:>18}{:>18}",
            "list body (bytes, one app)", o.list_bytes, n.list_bytes
        );
    }
    let (old_idle, new_idle) = (
        get(100, "old").idle.as_ref().expect("idle"),
        get(100, "new").idle.as_ref().expect("idle"),
    );
    println!();
    println!("idle, 100 events per machine, default settings, {idle_secs} s:");
    println!(
        "  daemon CPU   old {:>6.2} %   new {:>6.2} %",
        old_idle.cpu_percent, new_idle.cpu_percent
    );
    println!(
        "  daemon RSS   old {:>6.1} MiB new {:>6.1} MiB",
        old_idle.rss_mib, new_idle.rss_mib
    );

    let ratio = |f: fn(&Timings) -> Figure| {
        f(&get(100, "old").timings).p50 / f(&get(100, "new").timings).p50
    };
    let flat = |f: fn(&Timings) -> Figure| {
        f(&get(100, "new").timings).p50 / f(&get(10, "new").timings).p50
    };
    let (list_ratio, refresh_ratio) = (ratio(|t| t.list), ratio(|t| t.refresh));
    let (list_flat, refresh_flat) = (flat(|t| t.list), flat(|t| t.refresh));
    println!();
    println!("targets (p50, 100 events unless said)");
    println!(
        "  list    old/new                 = {list_ratio:>6.1}   target >= 10    {}",
        verdict(list_ratio >= 10.0)
    );
    println!(
        "  refresh old/new                 = {refresh_ratio:>6.1}   target >= 10    {}",
        verdict(refresh_ratio >= 10.0)
    );
    println!(
        "  list    new 100 / 10 events     = {list_flat:>6.2}   target <= 1.5   {}",
        verdict(list_flat <= 1.5)
    );
    println!(
        "  refresh new 100 / 10 events     = {refresh_flat:>6.2}   target <= 1.5   {}",
        verdict(refresh_flat <= 1.5)
    );
    println!(
        "  idle CPU new                    = {:>6.2} % target 0 %     {}",
        new_idle.cpu_percent,
        verdict(new_idle.cpu_percent == 0.0)
    );
}
