//! Listing an app's machines with their newest events, in the store alone:
//! 2,000 machines over 10 apps whose histories hold 10 events each, and
//! the same with 100 each, in one run. The listing reads 5 events per
//! machine (what `GET /v1/apps/{app}/machines` shows), so its cost must not
//! grow with the history kept (target: 100 / 10 events <= 1.5 at p50).
//!
//! ```text
//! cargo bench -p roost-store --bench listing
//! ```
//!
//! Options after `--`: `--samples N` (per figure, default 200),
//! `--machines-per-app N` (default 200).
//!
//! Events are written as a fleet makes them: a round of one event for
//! every machine, then the next round, so one machine's events are spread
//! over the whole table as they are after days of autostop cycles. Apps are
//! listed in turn, as the density bench does through the API.

use roost_lifecycle::MachineRecord;
use roost_store::{AppRecord, OperationWrite, Store};
use roost_types::{ImageRef, MachineConfig, MachineEvent, MachineState};
use std::path::Path;
use std::time::{Duration, Instant};

const APPS: usize = 10;
const HISTORIES: [usize; 2] = [10, 100];
/// Events a listed machine carries (`roost_machines::LISTED_EVENTS`).
const LISTED: u32 = 5;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].parse().ok())
        .unwrap_or(default)
        .max(1)
}

fn app_name(n: usize) -> String {
    format!("density-{n}")
}

/// The density bench's machine: a program that exits, one HTTP service.
fn config() -> MachineConfig {
    serde_json::from_value(serde_json::json!({
        "image": "busybox",
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

fn event(serial: usize) -> MachineEvent {
    MachineEvent {
        id: format!("{serial:026}"),
        kind: "exit".into(),
        status: "stopped".into(),
        source: "flyd".into(),
        timestamp: 1_764_846_000_000 + serial as i64,
        request: Some(serde_json::json!({
            "exit_event": {"exit_code": 0, "oom_killed": false, "requested_stop": false}
        })),
    }
}

/// A store at `dir` with `per_app` stopped machines in each app, each
/// with `events` events.
fn seed(dir: &Path, per_app: usize, events: usize) -> Store {
    let store = Store::open(&dir.join("roost.db")).expect("open store");
    let mut ids = Vec::new();
    for a in 0..APPS {
        let app = app_name(a);
        store
            .create_app(&AppRecord {
                id: app.clone(),
                name: app.clone(),
                org_slug: "personal".into(),
                network: "default".into(),
                created_at: "2026-12-04T10:00:00Z".into(),
                egress: None,
            })
            .expect("create app");
        for m in 0..per_app {
            let id = format!("{a:02x}{m:012x}");
            let record = MachineRecord {
                id: id.clone(),
                app: app.clone(),
                name: format!("{app}-{m}"),
                state: MachineState::Stopped,
                region: "local".into(),
                instance_id: "01JVBENCH".into(),
                private_ip: String::new(),
                config: config(),
                image_ref: ImageRef {
                    repository: "busybox".into(),
                    tag: "latest".into(),
                    digest: format!("sha256:{}", "0".repeat(64)),
                    ..Default::default()
                },
                created_at: "2026-12-04T10:00:00Z".into(),
                updated_at: "2026-12-04T10:00:00Z".into(),
                cordoned: false,
                runtime: "crun".into(),
                init_pid: None,
                restart_count: 0,
            };
            let write = OperationWrite::NewMachine {
                record: &record,
                event: &event(0),
            };
            let op = store
                .begin_operation(write, "create", &serde_json::json!({}))
                .expect("insert machine");
            let write = OperationWrite::Machine {
                record: &record,
                event: None,
            };
            store.finish_operation(op.id, write).expect("settle");
            ids.push(id);
        }
    }
    let mut serial = 0;
    for _ in 1..events {
        for id in &ids {
            serial += 1;
            store
                .append_event(id, &event(serial))
                .expect("append event");
        }
    }
    // Reopened, as a daemon starts on its data dir: the last connection's
    // close moved the log's pages into the database file.
    drop(store);
    Store::open(&dir.join("roost.db")).expect("reopen store")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// p50 and p99 in milliseconds of `list` over the apps in turn.
fn time(samples: usize, mut list: impl FnMut(&str) -> usize) -> (f64, f64) {
    let mut times = Vec::with_capacity(samples);
    for n in 0..samples + APPS {
        let app = app_name(n % APPS);
        let began = Instant::now();
        let listed = list(&app);
        // The first round warms caches; it is not counted.
        if n >= APPS {
            times.push(began.elapsed());
        }
        assert!(listed > 0, "app {app} lists no machine");
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

fn main() {
    let samples = arg("--samples", 200);
    let per_app = arg("--machines-per-app", 200);
    let mut rows = Vec::new();
    for events in HISTORIES {
        let dir = tempfile::tempdir().expect("tempdir");
        let began = Instant::now();
        let store = seed(dir.path(), per_app, events);
        eprintln!(
            "seeded {} machines with {events} events each in {:.0} s",
            APPS * per_app,
            began.elapsed().as_secs_f64()
        );
        let with_events = time(samples, |app| {
            let listed = store.list_machines_with_events(app, LISTED).expect("list");
            assert!(listed.iter().all(|(_, e)| e.len() == LISTED as usize));
            listed.len()
        });
        let records = time(samples, |app| {
            store.list_machines(Some(app)).expect("list").len()
        });
        rows.push((events, with_events, records));
    }
    println!(
        "store listing: {} machines over {APPS} apps, {LISTED} events each listed; {samples} samples, times in ms",
        APPS * per_app
    );
    println!();
    println!("{:<8}{:<40}{:>9}{:>9}", "events", "", "p50", "p99");
    for (events, with_events, records) in &rows {
        for (what, (p50, p99)) in [
            ("machines with their newest events", with_events),
            ("machines alone", records),
        ] {
            println!("{events:<8}{what:<40}{p50:>9.3}{p99:>9.3}");
        }
    }
    let flat = (rows[1].1).0 / (rows[0].1).0;
    println!();
    println!(
        "target: with events, 100 / 10 events = {flat:.2}, target <= 1.5   {}",
        if flat <= 1.5 { "PASS" } else { "MISS" }
    );
}
