//! Volumes and their snapshots. Volume operations are in the one
//! operation log (`operations.rs`), like machines'.

use crate::{Store, StoreError};
use roost_types::{Volume, VolumeSnapshot};
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

/// A volume as the orchestrator keeps it. Live figures (`blocks*`,
/// `attached_*`) in `volume` are filled in when it is shown, not stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub app: String,
    pub volume: Volume,
}

/// A snapshot of a volume; it outlives the volume until its retention ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub app: String,
    pub volume_id: String,
    pub snapshot: VolumeSnapshot,
    /// Creation time in milliseconds since the epoch, for retention.
    pub created_ms: i64,
}

impl Store {
    /// Records a snapshot, replacing one of the same id (a snapshot step
    /// that ran again after a crash).
    pub fn put_snapshot(&self, snapshot: &SnapshotRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO volume_snapshots (id, volume_id, data) VALUES (?1, ?2, ?3)",
            params![
                snapshot.snapshot.id,
                snapshot.volume_id,
                serde_json::to_string(snapshot)?
            ],
        )?;
        Ok(())
    }

    pub fn get_volume(&self, id: &str) -> Result<Option<VolumeRecord>, StoreError> {
        self.get_json("SELECT data FROM volumes WHERE id = ?1", id)
    }

    /// Volumes of `app` (all apps when `None`), oldest first.
    pub fn list_volumes(&self, app: Option<&str>) -> Result<Vec<VolumeRecord>, StoreError> {
        self.list_json(
            "SELECT data FROM volumes WHERE ?1 IS NULL OR app = ?1 ORDER BY rowid",
            [app],
        )
    }

    /// Replaces a volume's record (settings changes outside operations).
    pub fn update_volume(&self, record: &VolumeRecord) -> Result<(), StoreError> {
        write_volume(&self.conn(), record)
    }

    pub fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>, StoreError> {
        self.get_json("SELECT data FROM volume_snapshots WHERE id = ?1", id)
    }

    /// Snapshots of `volume_id` (all when `None`), oldest first.
    pub fn list_snapshots(
        &self,
        volume_id: Option<&str>,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        self.list_json(
            "SELECT data FROM volume_snapshots WHERE ?1 IS NULL OR volume_id = ?1 ORDER BY rowid",
            [volume_id],
        )
    }

    pub fn delete_snapshot(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM volume_snapshots WHERE id = ?1", [id])?;
        Ok(())
    }
}

/// Inserts a new volume's row.
pub(crate) fn insert_volume(conn: &Connection, record: &VolumeRecord) -> Result<(), StoreError> {
    let v = &record.volume;
    conn.execute(
        "INSERT INTO volumes (id, app, state, data) VALUES (?1, ?2, ?3, ?4)",
        params![v.id, record.app, v.state, serde_json::to_string(record)?],
    )?;
    Ok(())
}

/// Replaces an existing volume's row.
pub(crate) fn write_volume(conn: &Connection, record: &VolumeRecord) -> Result<(), StoreError> {
    let v = &record.volume;
    let updated = conn.execute(
        "UPDATE volumes SET state = ?2, data = ?3 WHERE id = ?1",
        params![v.id, v.state, serde_json::to_string(record)?],
    )?;
    if updated == 0 {
        return Err(StoreError::NotFound {
            kind: "volume",
            name: v.id.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(id: &str, state: &str) -> VolumeRecord {
        VolumeRecord {
            app: "a".into(),
            volume: Volume {
                id: id.into(),
                state: state.into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn snapshots_are_kept_and_deleted() {
        let (_dir, store) = crate::tests::store();
        let snapshot = SnapshotRecord {
            app: "a".into(),
            volume_id: "vol_1".into(),
            snapshot: VolumeSnapshot {
                id: "vs_1".into(),
                ..Default::default()
            },
            created_ms: 1,
        };
        store.put_snapshot(&snapshot).expect("put snapshot");
        store.put_snapshot(&snapshot).expect("put it again");
        assert_eq!(store.list_snapshots(Some("vol_1")).expect("list").len(), 1);
        assert_eq!(store.get_snapshot("vs_1").expect("get"), Some(snapshot));
        store.delete_snapshot("vs_1").expect("delete");
        assert!(store.get_snapshot("vs_1").expect("get").is_none());
        assert!(matches!(
            store.update_volume(&record("vol_2", "created")),
            Err(StoreError::NotFound { .. })
        ));
    }
}
