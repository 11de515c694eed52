//! Volumes, their snapshots and the operation log of volume operations.
//!
//! Volume operations have their own log (not the machines' `operations`
//! table) so that each recovery loop only ever sees operations it knows.

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

/// An unfinished volume operation; `step` is the index of the next step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeOperation {
    pub id: i64,
    pub volume_id: String,
    pub kind: String,
    pub step: u32,
    pub params: serde_json::Value,
}

impl Store {
    /// Inserts a new volume together with the operation that builds it.
    pub fn insert_volume(
        &self,
        record: &VolumeRecord,
        kind: &str,
        params: &serde_json::Value,
    ) -> Result<VolumeOperation, StoreError> {
        self.record_volume_operation(record, kind, params, true)
    }

    /// Saves a volume's new (transitional) record with the operation that
    /// will settle it.
    pub fn begin_volume_operation(
        &self,
        record: &VolumeRecord,
        kind: &str,
        params: &serde_json::Value,
    ) -> Result<VolumeOperation, StoreError> {
        self.record_volume_operation(record, kind, params, false)
    }

    /// Writes (inserting when `new`) the volume's record and a new
    /// operation in one transaction, so a crash never separates them.
    fn record_volume_operation(
        &self,
        record: &VolumeRecord,
        kind: &str,
        params: &serde_json::Value,
        new: bool,
    ) -> Result<VolumeOperation, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let v = &record.volume;
        if new {
            tx.execute(
                "INSERT INTO volumes (id, app, state, data) VALUES (?1, ?2, ?3, ?4)",
                params![v.id, record.app, v.state, serde_json::to_string(record)?],
            )?;
        } else {
            write_volume(&tx, record)?;
        }
        tx.execute(
            "INSERT INTO volume_operations (volume_id, kind, step, params) VALUES (?1, ?2, 0, ?3)",
            params![v.id, kind, serde_json::to_string(params)?],
        )?;
        let op = VolumeOperation {
            id: tx.last_insert_rowid(),
            volume_id: v.id.clone(),
            kind: kind.to_string(),
            step: 0,
            params: params.clone(),
        };
        tx.commit()?;
        Ok(op)
    }

    pub fn set_volume_operation_step(&self, op_id: i64, step: u32) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE volume_operations SET step = ?2 WHERE id = ?1",
            params![op_id, step],
        )?;
        Ok(())
    }

    /// Ends a volume operation, saving the volume's settled record in the
    /// same transaction.
    pub fn finish_volume_operation(
        &self,
        op_id: i64,
        record: &VolumeRecord,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        write_volume(&tx, record)?;
        tx.execute("DELETE FROM volume_operations WHERE id = ?1", [op_id])?;
        tx.commit()?;
        Ok(())
    }

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

    /// Volume operations a previous process left unfinished, oldest first.
    pub fn unfinished_volume_operations(&self) -> Result<Vec<VolumeOperation>, StoreError> {
        let ops = self.operation_rows(
            "SELECT id, volume_id, kind, step, params FROM volume_operations ORDER BY id",
        )?;
        Ok(ops
            .into_iter()
            .map(|op| VolumeOperation {
                id: op.id,
                volume_id: op.machine_id,
                kind: op.kind,
                step: op.step,
                params: op.params,
            })
            .collect())
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

fn write_volume(conn: &Connection, record: &VolumeRecord) -> Result<(), StoreError> {
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
mod tests {
    use super::*;

    fn record(id: &str, state: &str) -> VolumeRecord {
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
    fn a_volume_operation_survives_reopen_and_snapshots_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("roost.db");
        {
            let store = Store::open(&path).expect("open");
            let op = store
                .insert_volume(
                    &record("vol_1", "creating"),
                    "volume_create",
                    &serde_json::json!({}),
                )
                .expect("insert");
            store.set_volume_operation_step(op.id, 1).expect("step");
        }
        let store = Store::open(&path).expect("reopen");
        let ops = store.unfinished_volume_operations().expect("ops");
        assert_eq!((ops.len(), ops[0].step), (1, 1));
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
        store
            .finish_volume_operation(ops[0].id, &record("vol_1", "created"))
            .expect("finish");
        assert!(store
            .unfinished_volume_operations()
            .expect("ops")
            .is_empty());
        let volume = store.get_volume("vol_1").expect("get").expect("volume");
        assert_eq!(volume.volume.state, "created");
        assert_eq!(store.list_snapshots(Some("vol_1")).expect("list").len(), 1);
        store.delete_snapshot("vs_1").expect("delete");
        assert!(store.get_snapshot("vs_1").expect("get").is_none());
        assert!(matches!(
            store.update_volume(&record("vol_2", "created")),
            Err(StoreError::NotFound { .. })
        ));
    }
}
