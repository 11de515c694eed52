//! Databases written by older roosts open, migrate and keep every record.
//!
//! `fixtures/v0-caf328d.sql` is the `sqlite3 .dump` of a database that
//! caf328d's own `roost-store` wrote, before the layout had a version: a
//! small program against that commit's API created two apps with networks,
//! three machines (one with its create operation unfinished at step 1) with
//! versions, events and addresses, a lease, two volumes (one with its
//! operation unfinished), a snapshot, an app secret and a plaintext storage
//! key pair.
//!
//! `fixtures/v2-ab170e2.sql` is the dump (with the `user_version` it
//! does not carry put first) of a database that ab170e2's
//! `roost-store` wrote (layout 2, machines stored as JSON copies of the wire
//! type): a program against that API created two apps with egress policies
//! and networks, six machines (started with a pid and restarts, stopped and
//! cordoned, created, failed without an address, destroyed, and starting
//! with its create unfinished at step 1), crun and runc, full configs
//! (services, checks, mounts, files, metadata, unknown fields), image
//! labels, events with a request, versions, a lease, two volumes (one
//! attached, one with its create unfinished), a snapshot, an app secret and
//! a sealed storage key pair.
//!
//! Layout 5 gave volumes and snapshots columns of their own; both fixtures
//! hold them as JSON copies of the wire types, so both show every field of
//! every volume and snapshot coming through.

use roost_lifecycle::{
    MachineRecord, Operation as _, Shown, VolumeOpKind, VolumePlan, VolumeShown, VolumeState,
};
use roost_store::{OperationSubject, Store, StoreError, SCHEMA_VERSION};
use roost_types::{Machine, MachineEvent, MachineState, Volume, VolumeSnapshot};
use rusqlite::types::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const FIXTURE: &str = include_str!("fixtures/v0-caf328d.sql");
const FIXTURE_V2: &str = include_str!("fixtures/v2-ab170e2.sql");

/// A database in a temp dir made from the dump `sql`.
fn database(sql: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roost.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
    (dir, path)
}

/// A copy of the caf328d fixture database in a temp dir.
fn version_zero_db() -> (tempfile::TempDir, PathBuf) {
    database(FIXTURE)
}

/// A machine as layouts before 3 stored it: the wire type under `machine`
/// and the host's facts beside it (older rows lack the last two).
#[derive(serde::Deserialize)]
struct StoredMachine {
    app: String,
    machine: Machine,
    runtime: String,
    #[serde(default)]
    init_pid: Option<u32>,
    #[serde(default)]
    restart_count: u32,
}

/// The machines of the unmigrated database at `path`, oldest first.
fn stored_machines(path: &Path) -> Vec<StoredMachine> {
    documents(path, "machines")
}

/// Every stored machine came through with every field: its record shows
/// as the wire view it was stored as, beside the same host facts.
fn assert_machines_kept(store: &Store, before: Vec<StoredMachine>) {
    let after = store.list_machines(None).unwrap();
    assert_eq!(after.len(), before.len());
    for (record, old) in after.into_iter().zip(before) {
        assert_eq!(
            (
                record.app.as_str(),
                record.runtime.as_str(),
                record.init_pid,
                record.restart_count
            ),
            (
                old.app.as_str(),
                old.runtime.as_str(),
                old.init_pid,
                old.restart_count
            ),
            "machine {}",
            old.machine.id
        );
        let again = store.get_machine(&record.id).unwrap();
        assert_eq!(again.as_ref(), Some(&record));
        let shown = Shown {
            events: old.machine.events.clone(),
            checks: old.machine.checks.clone(),
            nonce: old.machine.nonce.clone(),
            egress: old.machine.egress.clone(),
        };
        assert_eq!(record.into_view(shown), old.machine);
    }
}

/// The events of the unmigrated database at `path`, by machine, each
/// machine's newest first.
fn stored_events(path: &Path) -> BTreeMap<String, Vec<MachineEvent>> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT machine_id, data FROM events ORDER BY seq DESC")
        .unwrap();
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .unwrap();
    let mut events: BTreeMap<String, Vec<MachineEvent>> = BTreeMap::new();
    for row in rows {
        let (machine, data) = row.unwrap();
        let event = serde_json::from_str(&data).unwrap();
        events.entry(machine).or_default().push(event);
    }
    events
}

/// Every stored event came through with every field, in its order.
fn assert_events_kept(store: &Store, before: BTreeMap<String, Vec<MachineEvent>>) {
    assert!(!before.is_empty());
    for (machine, events) in before {
        let after = store
            .list_events(&machine, store.events_per_machine())
            .unwrap();
        assert_eq!(after, events, "events of machine {machine}");
    }
}

/// A volume as layouts before 5 stored it: the wire type under `volume`.
#[derive(serde::Deserialize)]
struct StoredVolume {
    app: String,
    volume: Volume,
}

/// A snapshot as layouts before 5 stored it.
#[derive(serde::Deserialize)]
struct StoredSnapshot {
    app: String,
    volume_id: String,
    snapshot: VolumeSnapshot,
    created_ms: i64,
}

/// The JSON documents of `table` in the unmigrated database at `path`,
/// oldest first.
fn documents<T: serde::de::DeserializeOwned>(path: &Path, table: &str) -> Vec<T> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare(&format!("SELECT data FROM {table} ORDER BY rowid"))
        .unwrap();
    let rows = stmt.query_map([], |row| row.get::<_, String>(0)).unwrap();
    rows.map(|data| serde_json::from_str(&data.unwrap()).unwrap())
        .collect()
}

/// Every stored volume and snapshot came through with every field: each
/// record shows as the wire view it was stored as, given what the view
/// adds (an attachment and usage, which the old rows held too).
fn assert_volumes_kept(store: &Store, volumes: Vec<StoredVolume>, snapshots: Vec<StoredSnapshot>) {
    let after = store.list_volumes(None).unwrap();
    assert_eq!(after.len(), volumes.len());
    for (record, old) in after.into_iter().zip(volumes) {
        assert_eq!(record.app, old.app, "volume {}", old.volume.id);
        assert_eq!(
            store.get_volume(&record.id).unwrap().as_ref(),
            Some(&record)
        );
        let shown = VolumeShown {
            attached_machine_id: old.volume.attached_machine_id.clone(),
            block_size: old.volume.block_size,
            blocks: old.volume.blocks,
            blocks_free: old.volume.blocks_free,
            blocks_avail: old.volume.blocks_avail,
        };
        assert_eq!(old.volume.attached_alloc_id, shown.attached_machine_id);
        assert_eq!(record.into_view(shown), old.volume);
    }
    let after = store.list_snapshots(None).unwrap();
    assert_eq!(after.len(), snapshots.len());
    for (record, old) in after.into_iter().zip(snapshots) {
        assert_eq!(
            (
                record.app.as_str(),
                record.volume_id.as_str(),
                record.created_ms
            ),
            (old.app.as_str(), old.volume_id.as_str(), old.created_ms),
            "snapshot {}",
            old.snapshot.id
        );
        assert_eq!(
            store.get_snapshot(&record.id).unwrap().as_ref(),
            Some(&record)
        );
        assert_eq!(record.into_view(), old.snapshot);
    }
}

/// The tables whose records later layouts moved into columns.
const RECORD_TABLES: [&str; 4] = ["machines", "events", "volumes", "volume_snapshots"];

/// Every row of every table but the [`RECORD_TABLES`], by table.
fn rows_beside_records(path: &Path) -> Vec<(String, Vec<Vec<Value>>)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables
        .into_iter()
        .filter(|table| !RECORD_TABLES.contains(&table.as_str()))
        .map(|table| {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))
                .unwrap();
            let columns = stmt.column_count();
            let rows = stmt
                .query_map([], |row| {
                    (0..columns).map(|i| row.get::<_, Value>(i)).collect()
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            (table, rows)
        })
        .collect()
}

fn user_version(path: &std::path::Path) -> u32 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn a_version_zero_database_migrates_with_nothing_lost() {
    let (_dir, path) = version_zero_db();
    assert_eq!(user_version(&path), 0);
    let stored = stored_machines(&path);
    let events = stored_events(&path);
    let volumes = documents(&path, "volumes");
    let snapshots = documents(&path, "volume_snapshots");
    let store = Store::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    assert_machines_kept(&store, stored);
    assert_events_kept(&store, events);
    assert_volumes_kept(&store, volumes, snapshots);

    let apps = store.list_apps().unwrap();
    let names: Vec<_> = apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(apps[0].id, "id-alpha");
    assert_eq!(apps[0].egress, None);
    assert_eq!(
        store.list_app_networks().unwrap(),
        [("alpha".to_string(), 1), ("beta".to_string(), 2)]
    );

    let machines = store.list_machines(None).unwrap();
    let ids: Vec<_> = machines.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["m-alpha-1", "m-alpha-2", "m-beta-1"]);
    let first = &machines[0];
    assert_eq!(first.app, "alpha");
    assert_eq!(first.state, MachineState::Stopped);
    assert_eq!(first.config.env["GREETING"], "hi");
    assert_eq!(first.image_ref.digest, "sha256:abc");
    assert_eq!(first.private_ip, "fdaa:0:1::2");
    assert_eq!((first.restart_count, first.init_pid), (1, None));
    assert_eq!(machines[1].runtime, "runc");
    assert_eq!(machines[2].state, MachineState::Created);
    assert_eq!(store.list_machines(Some("beta")).unwrap().len(), 1);

    let versions = store.list_versions("m-alpha-1").unwrap();
    let versions: Vec<_> = versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, ["01V2", "01V1"]);
    let events = store.list_events("m-alpha-1", 10).unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["exit", "start", "launch"]);
    assert_eq!(store.list_events("m-beta-1", 10).unwrap().len(), 1);
    let lease = store.get_lease("m-alpha-1").unwrap().unwrap();
    assert_eq!(
        (lease.nonce.as_str(), lease.expires_at),
        ("nonce-1", 4102444800)
    );
    assert_eq!(store.machine_address("m-alpha-2").unwrap(), Some(3));
    assert_eq!(store.machine_address("m-beta-1").unwrap(), Some(2));

    // Both unfinished operations are in the one log that recovery resumes
    // from, each at its step, naming its subject.
    let ops = store.unfinished_operations().unwrap();
    let rows: Vec<_> = ops
        .iter()
        .map(|op| {
            (
                op.subject,
                op.subject_id.as_str(),
                op.kind.as_str(),
                op.step,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (OperationSubject::Machine, "m-beta-1", "create", 1),
            (OperationSubject::Volume, "vol_beta", "volume_create", 1)
        ]
    );
    assert_eq!(ops[0].params["image"], "busybox");
    assert_eq!(ops[1].params["size_gb"], 2);

    let volumes = store.list_volumes(None).unwrap();
    let states: Vec<_> = volumes.iter().map(|v| (v.id.as_str(), v.state)).collect();
    assert_eq!(
        states,
        [
            ("vol_alpha", VolumeState::Created),
            ("vol_beta", VolumeState::Creating)
        ]
    );
    let snapshot = store.get_snapshot("vs_1").unwrap().unwrap();
    assert_eq!(
        (snapshot.volume_id.as_str(), snapshot.created_ms),
        ("vol_alpha", 5000)
    );

    let secrets = store.list_app_secrets("alpha").unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].sealed, "bm9uY2U=.Y2lwaGVy");
    let sealed = store
        .seal_plaintext_storage_keys(|app, secret| Ok(format!("sealed {app} {secret}")))
        .unwrap();
    assert_eq!(sealed, 1);
    let key = store.storage_key_by_id("RSTALPHA").unwrap().unwrap();
    assert_eq!(key.sealed_secret, "sealed alpha plain-secret-alpha");
}

#[test]
fn a_version_two_database_migrates_with_nothing_lost() {
    let (_dir, path) = database(FIXTURE_V2);
    assert_eq!(user_version(&path), 2);
    let stored = stored_machines(&path);
    let events = stored_events(&path);
    let volumes = documents(&path, "volumes");
    let snapshots = documents(&path, "volume_snapshots");
    let beside = rows_beside_records(&path);
    let store = Store::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    assert_eq!(
        rows_beside_records(&path),
        beside,
        "only the tables of records change"
    );
    assert_events_kept(&store, events);

    let states: Vec<_> = stored
        .iter()
        .map(|old| (old.machine.state, old.runtime.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            (MachineState::Started, "crun"),
            (MachineState::Stopped, "crun"),
            (MachineState::Created, "runc"),
            (MachineState::Failed, "runc"),
            (MachineState::Destroyed, "crun"),
            (MachineState::Starting, "runc"),
        ]
    );
    let started = &stored[0];
    assert_eq!((started.init_pid, started.restart_count), (Some(4242), 2));
    assert!(stored[1].machine.cordoned);
    assert!(started.machine.config.extra.contains_key("dns"));
    assert_machines_kept(&store, stored);
    assert_volumes_kept(&store, volumes, snapshots);

    // The other records read as before, through the store.
    let apps = store.list_apps().unwrap();
    assert_eq!(apps.len(), 2);
    assert!(apps.iter().all(|app| app.egress.is_some()));
    let started = "0a1b2c3d4e5f60";
    let kinds: Vec<_> = store
        .list_events("2a1b2c3d4e5f62", 10)
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.request.is_some()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("update".to_string(), false),
            ("exit".to_string(), true),
            ("start".to_string(), false),
            ("launch".to_string(), false)
        ]
    );
    let versions = store.list_versions(started).unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].user_config.env["V"], "2");
    assert_eq!(store.get_lease(started).unwrap().unwrap().nonce, "3f1c9e");
    // The volume's attachment is the config that mounts it.
    let volume = store.get_volume("vol_web_data").unwrap().unwrap();
    let holder = store.get_machine(started).unwrap().unwrap();
    let mounts: Vec<_> = holder.config.mounts.iter().map(|m| &m.volume).collect();
    assert_eq!(mounts, [&volume.id]);
    assert_eq!(
        store.get_snapshot("vs_web_1").unwrap().unwrap().volume_id,
        "vol_web_data"
    );
    assert_eq!(
        store.list_app_secrets("web").unwrap()[0].name,
        "DATABASE_URL"
    );
    assert_eq!(
        store.storage_key("web").unwrap().unwrap().access_key_id,
        "RSTWEB"
    );
    let ops: Vec<_> = store
        .unfinished_operations()
        .unwrap()
        .into_iter()
        .map(|op| (op.subject, op.subject_id, op.step))
        .collect();
    assert_eq!(
        ops,
        [
            (OperationSubject::Machine, "5a1b2c3d4e5f65".to_string(), 1),
            (OperationSubject::Volume, "vol_jobs_scratch".to_string(), 1)
        ]
    );

    // And the migrated machines take writes.
    let mut record: MachineRecord = store.get_machine(started).unwrap().unwrap();
    record.state = MachineState::Stopped;
    record.init_pid = None;
    store.update_machine(&record, None).unwrap();
    assert_eq!(store.get_machine(started).unwrap(), Some(record));
    let listed = store.list_machines_with_events("web", 1).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].1[0].kind, "update");
}

/// A volume plan as caf328d's service recorded it (its `VolumePlan`), for
/// an extend interrupted before its step was recorded.
const CAF328D_EXTEND: &str = r#"{"kind":"extend","size":4294967296,"source":null,"scheduled":false,"fstype":null,"previous":{"id":"vol_alpha","name":"data","state":"created","size_gb":1,"region":"local","zone":"","encrypted":false,"attached_machine_id":null,"attached_alloc_id":null,"created_at":"","blocks":0,"block_size":0,"blocks_free":0,"blocks_avail":0,"fstype":"","snapshot_retention":0,"auto_backup_enabled":false,"host_dedication_key":""}}"#;

#[test]
fn an_unfinished_volume_operation_resumes_as_a_plan_of_the_model() {
    let (_dir, path) = version_zero_db();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO volume_operations (volume_id, kind, step, params) VALUES ('vol_alpha', 'volume_extend', 0, ?1)",
            [CAF328D_EXTEND],
        )
        .unwrap();
    let store = Store::open(&path).unwrap();
    let ops = store.unfinished_operations().unwrap();
    let extend = ops
        .iter()
        .find(|op| op.subject_id == "vol_alpha")
        .expect("the extend is in the log");
    assert_eq!(
        (extend.subject, extend.kind.as_str(), extend.step),
        (OperationSubject::Volume, "volume_extend", 0)
    );
    // The engine reads the recorded plan back and resumes at its step.
    let plan: VolumePlan = serde_json::from_value(extend.params.clone()).unwrap();
    assert_eq!(plan.kind, VolumeOpKind::Extend);
    assert_eq!(plan.kind(), extend.kind);
    assert_eq!(plan.size, 4 << 30);
    assert_eq!(
        plan.crash_points()[extend.step as usize],
        "volume_extend:grow_filesystem"
    );
    // The wire volume it remembered is the volume's record now, as
    // migrated (nothing changed it since).
    let previous = plan.previous.expect("the volume before the extend");
    assert_eq!(previous.size_gb, 1);
    assert_eq!(Some(previous), store.get_volume("vol_alpha").unwrap());
    // Ordered by id: the fixture's operations first.
    let order: Vec<_> = ops.iter().map(|op| op.subject_id.as_str()).collect();
    assert_eq!(order, ["m-beta-1", "vol_beta", "vol_alpha"]);
}

/// A volume plan as ab170e2's service recorded it: the lifecycle model's
/// `VolumePlan`, whose `previous` was the wire volume (as its store kept
/// it), for a destroy interrupted before its step was recorded.
fn ab170e2_destroy(path: &Path) -> String {
    let previous: StoredVolume = rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT data FROM volumes WHERE id = 'vol_web_data'",
            [],
            |row| row.get::<_, String>(0),
        )
        .map(|data| serde_json::from_str(&data).unwrap())
        .unwrap();
    serde_json::json!({
        "kind": "destroy",
        "size": 0,
        "source": null,
        "scheduled": false,
        "fstype": null,
        "previous": previous.volume,
    })
    .to_string()
}

#[test]
fn an_unfinished_volume_operation_of_layout_two_resumes_with_its_record() {
    let (_dir, path) = database(FIXTURE_V2);
    let recorded = ab170e2_destroy(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE volumes SET state = 'destroying', data = json_set(data, '$.volume.state', 'destroying') WHERE id = 'vol_web_data'",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO operations (subject, subject_id, kind, step, params) VALUES ('volume', 'vol_web_data', 'volume_destroy', 0, ?1)",
        [recorded],
    )
    .unwrap();
    drop(conn);
    let store = Store::open(&path).unwrap();
    let ops = store.unfinished_operations().unwrap();
    let destroy = ops
        .iter()
        .find(|op| op.subject_id == "vol_web_data")
        .expect("the destroy is in the log");
    let plan: VolumePlan = serde_json::from_value(destroy.params.clone()).unwrap();
    assert_eq!(
        plan.crash_points()[destroy.step as usize],
        "volume_destroy:remove_image"
    );
    // What a failure puts back is the record as it was before the destroy:
    // the one now stored, but created.
    let mut before = store.get_volume("vol_web_data").unwrap().unwrap();
    assert_eq!(before.state, VolumeState::Destroying);
    before.state = VolumeState::Created;
    assert_eq!(plan.previous, Some(before));
    // The create the fixture left unfinished has no record to put back.
    let create = ops
        .iter()
        .find(|op| op.subject_id == "vol_jobs_scratch")
        .expect("the create is in the log");
    let plan: VolumePlan = serde_json::from_value(create.params.clone()).unwrap();
    assert_eq!((plan.kind, plan.previous), (VolumeOpKind::Create, None));
}

#[test]
fn migrating_again_changes_nothing_and_new_writes_work() {
    let (_dir, path) = version_zero_db();
    drop(Store::open(&path).unwrap());
    let store = Store::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    assert_eq!(store.list_machines(None).unwrap().len(), 3);
    assert_eq!(store.allocate_machine_address("alpha", "m-new").unwrap(), 4);
}

/// The layout of events did not change with their bound, so migrating
/// drops none (the fixture's machines hold fewer than the default bound,
/// all checked above). What the bound drops, when a database holds more
/// than a smaller bound, is only the oldest: reads stop at the bound at
/// once, and the rows go at the machine's next event.
#[test]
fn a_smaller_event_bound_drops_only_the_oldest_events() {
    let (_dir, path) = version_zero_db();
    let store = Store::open_keeping_events(&path, 2).unwrap();
    let kinds = |id: &str| -> Vec<String> {
        let events = store.list_events(id, 100).unwrap();
        events.into_iter().map(|e| e.kind).collect()
    };
    assert_eq!(kinds("m-alpha-1"), ["exit", "start"]);
    let mut event = store.list_events("m-alpha-1", 1).unwrap().remove(0);
    event.kind = "stop".into();
    store.append_event("m-alpha-1", &event).unwrap();
    assert_eq!(kinds("m-alpha-1"), ["stop", "exit"]);
    drop(store);
    let store = Store::open(&path).unwrap();
    let kept: Vec<_> = store.list_events("m-alpha-1", 100).unwrap();
    assert_eq!(kept.len(), 2, "the dropped event is gone for good");
    assert_eq!(store.list_events("m-beta-1", 100).unwrap().len(), 1);
}

#[test]
fn a_database_from_a_newer_roost_is_refused_untouched() {
    let (_dir, path) = version_zero_db();
    let newer = SCHEMA_VERSION + 1;
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let err = Store::open(&path).err().expect("a newer layout is refused");
    assert!(
        matches!(err, StoreError::NewerSchema { found, known } if found == newer && known == SCHEMA_VERSION),
        "{err}"
    );
    assert_eq!(user_version(&path), newer);
}
