//! The database layout and its forward migrations.
//!
//! The layout's version is SQLite's `PRAGMA user_version`. Version 0 is
//! every database written before versions existed: those created their
//! tables with `CREATE TABLE IF NOT EXISTS` at each open, so a version-0
//! file holds some prefix of the tables below (an older one lacks, for
//! example, `app_storage_keys`). Migration `n` takes a database from version
//! `n` to `n + 1` inside one transaction that also writes the new version,
//! so a crash leaves the database at either version, never between.
//! Migrations only ever move forward; a database from a newer roost is
//! refused rather than guessed at.

use crate::StoreError;
use rusqlite::Connection;

/// Migration `i` of this list takes version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    BASELINE,
    ONE_OPERATION_LOG,
    MACHINE_COLUMNS,
    EVENT_COLUMNS,
    VOLUME_COLUMNS,
];

/// The layout this build writes and reads.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// 0 → 1: adopt the unversioned layout. Every table and index of that
/// layout, created where missing; `IF NOT EXISTS` is what lets a version-0
/// database of any age keep its rows. (A plaintext `storage_keys` table of
/// the oldest databases is left for the orchestrator to seal, see
/// [`crate::Store::seal_plaintext_storage_keys`].)
const BASELINE: &str = "
CREATE TABLE IF NOT EXISTS apps (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS machines (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS machines_by_app ON machines(app);
CREATE TABLE IF NOT EXISTS versions (
    machine_id TEXT NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    version TEXT NOT NULL,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_machine ON events(machine_id, seq);
CREATE TABLE IF NOT EXISTS leases (
    machine_id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    step INTEGER NOT NULL,
    params TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS volumes (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS volumes_by_app ON volumes(app);
CREATE TABLE IF NOT EXISTS volume_snapshots (
    id TEXT PRIMARY KEY,
    volume_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_by_volume ON volume_snapshots(volume_id);
CREATE TABLE IF NOT EXISTS volume_operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    volume_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    step INTEGER NOT NULL,
    params TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS app_secrets (
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (app, name)
);
CREATE TABLE IF NOT EXISTS app_storage_keys (
    app TEXT PRIMARY KEY,
    access_key_id TEXT NOT NULL UNIQUE,
    sealed_secret TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS app_networks (
    app TEXT PRIMARY KEY,
    number INTEGER NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS machine_addresses (
    machine_id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    slot INTEGER NOT NULL,
    UNIQUE (app, slot)
);
";

/// 1 → 2: one operation log for machines and volumes. The machines'
/// `operations` table gains the subject each row acts on (every row so far
/// is a machine's), and the rows of `volume_operations`, unfinished volume
/// operations, move into it with their step and plan, so recovery resumes
/// them from the one log. Their ids change (the log orders by id); nothing
/// refers to an operation by id across a restart.
const ONE_OPERATION_LOG: &str = "
ALTER TABLE operations RENAME COLUMN machine_id TO subject_id;
ALTER TABLE operations ADD COLUMN subject TEXT NOT NULL DEFAULT 'machine';
INSERT INTO operations (subject, subject_id, kind, step, params)
    SELECT 'volume', volume_id, kind, step, params FROM volume_operations ORDER BY id;
DROP TABLE volume_operations;
";

/// 2 → 3: machines in columns of their own instead of a JSON copy of the
/// Fly wire type (which held the record under `machine`, beside `app`,
/// `runtime`, `init_pid` and `restart_count`). The user's config stays a
/// JSON document, as in `versions`; the image reference is split into its
/// parts, its labels a JSON object. Rows are copied in `rowid` order, which
/// listings keep (oldest first). Fields older rows lack take the defaults
/// their readers gave them: not cordoned, no pid, no restarts, no labels.
const MACHINE_COLUMNS: &str = "
CREATE TABLE machine_records (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    region TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    private_ip TEXT NOT NULL,
    config TEXT NOT NULL,
    image_registry TEXT NOT NULL,
    image_repository TEXT NOT NULL,
    image_tag TEXT NOT NULL,
    image_digest TEXT NOT NULL,
    image_labels TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    cordoned INTEGER NOT NULL,
    runtime TEXT NOT NULL,
    init_pid INTEGER,
    restart_count INTEGER NOT NULL
);
INSERT INTO machine_records
    SELECT id, app, name, state,
        data ->> '$.machine.region',
        data ->> '$.machine.instance_id',
        data ->> '$.machine.private_ip',
        data -> '$.machine.config',
        data ->> '$.machine.image_ref.registry',
        data ->> '$.machine.image_ref.repository',
        data ->> '$.machine.image_ref.tag',
        data ->> '$.machine.image_ref.digest',
        coalesce(data -> '$.machine.image_ref.labels', '{}'),
        data ->> '$.machine.created_at',
        data ->> '$.machine.updated_at',
        coalesce(data ->> '$.machine.cordoned', 0),
        data ->> '$.runtime',
        data ->> '$.init_pid',
        coalesce(data ->> '$.restart_count', 0)
    FROM machines ORDER BY rowid;
DROP TABLE machines;
ALTER TABLE machine_records RENAME TO machines;
CREATE INDEX machines_by_app ON machines(app);
";

/// 3 → 4: events in columns of their own instead of a JSON copy of the
/// wire `MachineEvent`; the request an event carries stays a JSON document
/// (NULL without one). Rows keep their `seq`, so their order and the
/// per-machine index walks are those of before.
const EVENT_COLUMNS: &str = "
CREATE TABLE machine_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    request TEXT
);
INSERT INTO machine_events (seq, machine_id, id, kind, status, source, timestamp, request)
    SELECT seq, machine_id,
        data ->> '$.id',
        data ->> '$.type',
        data ->> '$.status',
        data ->> '$.source',
        data ->> '$.timestamp',
        data -> '$.request'
    FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE machine_events RENAME TO events;
CREATE INDEX events_by_machine ON events(machine_id, seq);
";

/// 4 → 5: volumes and snapshots in columns of their own instead of JSON
/// copies of the Fly wire types (under `volume` and `snapshot`, beside
/// `app` and, for a snapshot, `volume_id` and `created_ms`). What a volume
/// showed but never kept (its attachment, derived from the machines, and
/// its filesystem's usage, read from the host) has no column. An
/// unfinished volume operation's plan remembered the wire volume as
/// `previous`; it becomes the record (the app added, the shown-only fields
/// dropped), so the operation resumes. Rows are copied in `rowid` order,
/// which listings keep; a snapshot's `volume_size` and `type`, which the
/// oldest rows lack, default to what their reader gave them.
const VOLUME_COLUMNS: &str = "
UPDATE operations SET params = json_remove(
        json_set(params, '$.previous.app',
            (SELECT app FROM volumes WHERE volumes.id = operations.subject_id)),
        '$.previous.attached_machine_id', '$.previous.attached_alloc_id', '$.previous.blocks',
        '$.previous.block_size', '$.previous.blocks_free', '$.previous.blocks_avail')
    WHERE subject = 'volume' AND json_type(params, '$.previous') = 'object';
CREATE TABLE volume_records (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    size_gb INTEGER NOT NULL,
    region TEXT NOT NULL,
    zone TEXT NOT NULL,
    encrypted INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    fstype TEXT NOT NULL,
    snapshot_retention INTEGER NOT NULL,
    auto_backup_enabled INTEGER NOT NULL,
    host_dedication_key TEXT NOT NULL
);
INSERT INTO volume_records
    SELECT id, app,
        data ->> '$.volume.name',
        data ->> '$.volume.state',
        data ->> '$.volume.size_gb',
        data ->> '$.volume.region',
        data ->> '$.volume.zone',
        data ->> '$.volume.encrypted',
        data ->> '$.volume.created_at',
        data ->> '$.volume.fstype',
        data ->> '$.volume.snapshot_retention',
        data ->> '$.volume.auto_backup_enabled',
        data ->> '$.volume.host_dedication_key'
    FROM volumes ORDER BY rowid;
DROP TABLE volumes;
ALTER TABLE volume_records RENAME TO volumes;
CREATE INDEX volumes_by_app ON volumes(app);
CREATE TABLE snapshot_records (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    volume_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    digest TEXT NOT NULL,
    stored_bytes INTEGER NOT NULL,
    volume_size INTEGER NOT NULL,
    status TEXT NOT NULL,
    kind TEXT NOT NULL
);
INSERT INTO snapshot_records
    SELECT id,
        data ->> '$.app',
        volume_id,
        data ->> '$.snapshot.created_at',
        data ->> '$.created_ms',
        data ->> '$.snapshot.digest',
        data ->> '$.snapshot.size',
        coalesce(data ->> '$.snapshot.volume_size', 0),
        data ->> '$.snapshot.status',
        coalesce(data ->> '$.snapshot.type', '')
    FROM volume_snapshots ORDER BY rowid;
DROP TABLE volume_snapshots;
ALTER TABLE snapshot_records RENAME TO volume_snapshots;
CREATE INDEX snapshots_by_volume ON volume_snapshots(volume_id);
";

/// Brings the database to [`SCHEMA_VERSION`], one migration per
/// transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found = version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", from as u32 + 1)?;
        tx.commit()?;
        tracing::info!(from, to = from + 1, "migrated the database layout");
    }
    Ok(())
}

/// The database's layout version.
pub(crate) fn version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}
