//! Volumes and their snapshots, each a record of the lifecycle model in
//! columns of its own. Volume operations are in the one operation log
//! (`operations.rs`), like machines'.

use crate::{parse_name, read_rows, Store, StoreError};
use roost_lifecycle::{SnapshotRecord, VolumeRecord};
use rusqlite::{params, Connection, Row};

/// A volume's columns, in the order [`read_volume`] reads and
/// [`write_volume_row`] writes them.
const VOLUME_COLUMNS: &str = "id, app, name, state, size_gb, region, zone, encrypted, \
    created_at, fstype, snapshot_retention, auto_backup_enabled, host_dedication_key";

/// A snapshot's columns, in the order [`read_snapshot`] reads and
/// [`Store::put_snapshot`] writes them.
const SNAPSHOT_COLUMNS: &str = "id, app, volume_id, created_at, created_ms, digest, \
    stored_bytes, volume_size, status, kind";

impl Store {
    /// Records a snapshot, replacing one of the same id (a snapshot step
    /// that ran again after a crash).
    pub fn put_snapshot(&self, snapshot: &SnapshotRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT OR REPLACE INTO volume_snapshots ({SNAPSHOT_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        );
        self.conn().prepare_cached(&sql)?.execute(params![
            snapshot.id,
            snapshot.app,
            snapshot.volume_id,
            snapshot.created_at,
            snapshot.created_ms,
            snapshot.digest,
            snapshot.stored_bytes,
            snapshot.volume_size,
            snapshot.status,
            snapshot.kind,
        ])?;
        Ok(())
    }

    pub fn get_volume(&self, id: &str) -> Result<Option<VolumeRecord>, StoreError> {
        let sql = format!("SELECT {VOLUME_COLUMNS} FROM volumes WHERE id = ?1");
        Ok(read_rows(&self.conn(), &sql, [id], read_volume)?.pop())
    }

    /// Volumes of `app` (all apps when `None`), oldest first.
    pub fn list_volumes(&self, app: Option<&str>) -> Result<Vec<VolumeRecord>, StoreError> {
        let sql = format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes WHERE ?1 IS NULL OR app = ?1 ORDER BY rowid"
        );
        read_rows(&self.conn(), &sql, [app], read_volume)
    }

    /// Replaces a volume's record (settings changes outside operations).
    pub fn update_volume(&self, record: &VolumeRecord) -> Result<(), StoreError> {
        write_volume(&self.conn(), record)
    }

    pub fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>, StoreError> {
        let sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM volume_snapshots WHERE id = ?1");
        Ok(read_rows(&self.conn(), &sql, [id], read_snapshot)?.pop())
    }

    /// Snapshots of `volume_id` (all when `None`), oldest first.
    pub fn list_snapshots(
        &self,
        volume_id: Option<&str>,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        let sql = format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM volume_snapshots \
             WHERE ?1 IS NULL OR volume_id = ?1 ORDER BY rowid"
        );
        read_rows(&self.conn(), &sql, [volume_id], read_snapshot)
    }

    pub fn delete_snapshot(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM volume_snapshots WHERE id = ?1", [id])?;
        Ok(())
    }
}

/// The volume in the row's [`VOLUME_COLUMNS`].
fn read_volume(row: &Row<'_>) -> Result<VolumeRecord, StoreError> {
    Ok(VolumeRecord {
        id: row.get(0)?,
        app: row.get(1)?,
        name: row.get(2)?,
        state: parse_name(row.get(3)?)?,
        size_gb: row.get(4)?,
        region: row.get(5)?,
        zone: row.get(6)?,
        encrypted: row.get(7)?,
        created_at: row.get(8)?,
        fstype: row.get(9)?,
        snapshot_retention: row.get(10)?,
        auto_backup_enabled: row.get(11)?,
        host_dedication_key: row.get(12)?,
    })
}

/// The snapshot in the row's [`SNAPSHOT_COLUMNS`].
fn read_snapshot(row: &Row<'_>) -> Result<SnapshotRecord, StoreError> {
    Ok(SnapshotRecord {
        id: row.get(0)?,
        app: row.get(1)?,
        volume_id: row.get(2)?,
        created_at: row.get(3)?,
        created_ms: row.get(4)?,
        digest: row.get(5)?,
        stored_bytes: row.get(6)?,
        volume_size: row.get(7)?,
        status: row.get(8)?,
        kind: row.get(9)?,
    })
}

/// Runs `sql`, whose parameters are [`VOLUME_COLUMNS`] in order, with
/// `record`'s values.
fn write_volume_row(
    conn: &Connection,
    sql: &str,
    record: &VolumeRecord,
) -> Result<usize, StoreError> {
    Ok(conn.prepare_cached(sql)?.execute(params![
        record.id,
        record.app,
        record.name,
        record.state.as_str(),
        record.size_gb,
        record.region,
        record.zone,
        record.encrypted,
        record.created_at,
        record.fstype,
        record.snapshot_retention,
        record.auto_backup_enabled,
        record.host_dedication_key,
    ])?)
}

/// Inserts a new volume's row.
pub(crate) fn insert_volume(conn: &Connection, record: &VolumeRecord) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO volumes ({VOLUME_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    );
    write_volume_row(conn, &sql, record)?;
    Ok(())
}

/// Replaces an existing volume's row (its id and app never change).
pub(crate) fn write_volume(conn: &Connection, record: &VolumeRecord) -> Result<(), StoreError> {
    let updated = write_volume_row(
        conn,
        "UPDATE volumes SET name = ?3, state = ?4, size_gb = ?5, region = ?6, zone = ?7, \
         encrypted = ?8, created_at = ?9, fstype = ?10, snapshot_retention = ?11, \
         auto_backup_enabled = ?12, host_dedication_key = ?13 WHERE id = ?1 AND app = ?2",
        record,
    )?;
    if updated == 0 {
        return Err(StoreError::NotFound {
            kind: "volume",
            name: record.id.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use roost_lifecycle::VolumeState;

    pub(crate) fn record(id: &str, state: VolumeState) -> VolumeRecord {
        VolumeRecord {
            id: id.into(),
            app: "a".into(),
            name: "data".into(),
            state,
            size_gb: 1,
            region: "local".into(),
            zone: "local".into(),
            encrypted: false,
            created_at: "2026-01-01T00:00:00Z".into(),
            fstype: "ext4".into(),
            snapshot_retention: 5,
            auto_backup_enabled: true,
            host_dedication_key: String::new(),
        }
    }

    #[test]
    fn volumes_keep_every_field() {
        let (_dir, store) = crate::tests::store();
        let conn = store.conn();
        let mut volume = record("vol_1", VolumeState::Creating);
        insert_volume(&conn, &volume).expect("insert");
        volume.state = VolumeState::Created;
        volume.size_gb = 4;
        volume.encrypted = true;
        volume.snapshot_retention = 9;
        volume.auto_backup_enabled = false;
        volume.host_dedication_key = "k".into();
        write_volume(&conn, &volume).expect("write");
        drop(conn);
        insert_volume(&store.conn(), &record("vol_2", VolumeState::Created)).expect("insert");
        assert_eq!(
            store.get_volume("vol_1").expect("get"),
            Some(volume.clone())
        );
        let listed = store.list_volumes(Some("a")).expect("list");
        let ids: Vec<_> = listed.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["vol_1", "vol_2"]);
        assert!(store.list_volumes(Some("b")).expect("list").is_empty());
    }

    #[test]
    fn snapshots_are_kept_and_deleted() {
        let (_dir, store) = crate::tests::store();
        let snapshot = SnapshotRecord {
            id: "vs_1".into(),
            app: "a".into(),
            volume_id: "vol_1".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            created_ms: 1,
            digest: "sha256:feed".into(),
            stored_bytes: 4096,
            volume_size: 1 << 30,
            status: "created".into(),
            kind: "on-demand".into(),
        };
        store.put_snapshot(&snapshot).expect("put snapshot");
        store.put_snapshot(&snapshot).expect("put it again");
        assert_eq!(store.list_snapshots(Some("vol_1")).expect("list").len(), 1);
        assert_eq!(store.get_snapshot("vs_1").expect("get"), Some(snapshot));
        store.delete_snapshot("vs_1").expect("delete");
        assert!(store.get_snapshot("vs_1").expect("get").is_none());
        assert!(matches!(
            store.update_volume(&record("vol_2", VolumeState::Created)),
            Err(StoreError::NotFound { .. })
        ));
    }
}
