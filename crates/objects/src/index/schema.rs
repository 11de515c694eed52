//! The index's tables, and the forward migrations that bring an index
//! written by an older roost to the current schema without losing a row.
//!
//! `PRAGMA user_version` holds the schema version. Version 0 is the first
//! schema (one row per key, no versions, buckets without configuration);
//! an index that has no tables at all is created at [`CURRENT`] directly.
//! Each migration runs in one transaction, so a crash during one leaves the
//! old schema, and the next open runs it again.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension};

/// The schema this code reads and writes.
pub(crate) const CURRENT: i64 = 1;

/// The columns of `objects` in schema 1, which a new index gets and the
/// migration from 0 builds (`{OBJECTS}` in [`TABLES`] and
/// [`MIGRATE_0_TO_1`]).
const OBJECTS_COLUMNS: &str = "(
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    version TEXT NOT NULL,
    latest INTEGER NOT NULL,
    marker INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified_ms INTEGER NOT NULL,
    meta TEXT NOT NULL,
    file TEXT,
    inline BLOB,
    parts TEXT,
    PRIMARY KEY (bucket, key, seq DESC)
) WITHOUT ROWID;";

/// The current schema, for a new index.
///
/// `objects` holds every version of every key. `seq` orders a key's
/// versions (larger is newer, and the primary key lists a key's versions
/// newest first, as ListObjectVersions does); `version` is the id clients
/// see (`null` for a version written while versioning was off); exactly
/// one row per key is `latest`, and it may be a delete `marker`.
const TABLES: &str = "
CREATE TABLE buckets (
    name TEXT PRIMARY KEY,
    owner TEXT,
    created_ms INTEGER NOT NULL,
    versioning TEXT,
    acl TEXT,
    cors TEXT,
    tags TEXT
);
CREATE TABLE objects {OBJECTS}
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    initiated_ms INTEGER NOT NULL,
    meta TEXT NOT NULL,
    completed TEXT,
    completed_ms INTEGER
);
CREATE INDEX uploads_by_key ON uploads(bucket, key, id);
CREATE INDEX uploads_completed ON uploads(completed_ms) WHERE completed_ms IS NOT NULL;
CREATE TABLE parts (
    upload TEXT NOT NULL,
    number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified_ms INTEGER NOT NULL,
    checksums TEXT NOT NULL,
    file TEXT NOT NULL,
    PRIMARY KEY (upload, number)
) WITHOUT ROWID;
";

/// The indexes of `objects`: one latest row per key (GET, HEAD, and in
/// key order for ListObjects).
const OBJECT_INDEXES: &str = "
CREATE UNIQUE INDEX objects_latest ON objects(bucket, key) WHERE latest = 1;
";

/// Version 0 to 1: versions, bucket configuration, completed uploads. Every
/// object becomes the latest (and only) version `null` of its key.
const MIGRATE_0_TO_1: &str = "
ALTER TABLE buckets ADD COLUMN versioning TEXT;
ALTER TABLE buckets ADD COLUMN acl TEXT;
ALTER TABLE buckets ADD COLUMN cors TEXT;
ALTER TABLE buckets ADD COLUMN tags TEXT;
CREATE TABLE objects_v1 {OBJECTS}
INSERT INTO objects_v1 (bucket, key, seq, version, latest, marker, size, etag, modified_ms, meta, file, inline)
    SELECT bucket, key, 0, 'null', 1, 0, size, etag, modified_ms, meta, file, inline FROM objects;
DROP TABLE objects;
ALTER TABLE objects_v1 RENAME TO objects;
ALTER TABLE uploads ADD COLUMN completed TEXT;
ALTER TABLE uploads ADD COLUMN completed_ms INTEGER;
CREATE INDEX uploads_completed ON uploads(completed_ms) WHERE completed_ms IS NOT NULL;
";

/// Brings the index on `conn` to [`CURRENT`]: creates it when empty,
/// migrates it forward when older, refuses one written by a newer roost.
pub(crate) fn upgrade(conn: &Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let has_tables = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'buckets'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if version > CURRENT {
        return Err(Error::Internal(format!(
            "the object index has schema version {version}, newer than this roost's {CURRENT}; upgrade roost"
        )));
    }
    if !has_tables {
        return in_transaction(conn, &with_objects(TABLES), CURRENT);
    }
    if version == 0 {
        tracing::info!("migrating the object index from schema 0 to 1 (object versions)");
        in_transaction(conn, &with_objects(MIGRATE_0_TO_1), 1)?;
    }
    Ok(())
}

/// `ddl` with the columns of `objects` filled in, followed by its indexes.
fn with_objects(ddl: &str) -> String {
    format!(
        "{}{OBJECT_INDEXES}",
        ddl.replace("{OBJECTS}", OBJECTS_COLUMNS)
    )
}

/// Runs `ddl` and sets the schema version to `to`, all or nothing.
fn in_transaction(conn: &Connection, ddl: &str, to: i64) -> Result<()> {
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {ddl} PRAGMA user_version = {to}; COMMIT;"
    ))
    .map_err(|err| {
        let _ = conn.execute_batch("ROLLBACK");
        Error::from(err)
    })
}
