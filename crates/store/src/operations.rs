//! The one operation log: the durable operations of machines and of
//! volumes, in one table, each row naming its subject.
//!
//! An operation's start and end are each written in one transaction with
//! its subject's record ([`OperationWrite`]), so a crash never leaves a
//! subject in a transitional state without the operation that settles it,
//! nor an ended operation whose subject was not settled.

use crate::volumes::{insert_volume, write_volume};
use crate::{write_machine, Store, StoreError};
use roost_lifecycle::{MachineRecord, VolumeRecord};
use roost_types::MachineEvent;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

/// What an operation changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationSubject {
    Machine,
    Volume,
}

impl OperationSubject {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationSubject::Machine => "machine",
            OperationSubject::Volume => "volume",
        }
    }
}

/// An operation in progress. `step` is the index of the next step to run;
/// recovery resumes there (steps are idempotent, so running again the step
/// that was under way at a crash is safe).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub id: i64,
    pub subject: OperationSubject,
    /// The machine's or volume's id.
    pub subject_id: String,
    pub kind: String,
    pub step: u32,
    /// The plan, as the engine recorded it.
    pub params: serde_json::Value,
}

/// The subject's record an operation's start or end writes in its
/// transaction.
#[derive(Debug, Clone, Copy)]
pub enum OperationWrite<'a> {
    /// A new machine, with its first version and event.
    NewMachine {
        record: &'a MachineRecord,
        event: &'a MachineEvent,
    },
    Machine {
        record: &'a MachineRecord,
        event: Option<&'a MachineEvent>,
    },
    NewVolume(&'a VolumeRecord),
    Volume(&'a VolumeRecord),
}

impl OperationWrite<'_> {
    fn subject(&self) -> (OperationSubject, &str) {
        match self {
            OperationWrite::NewMachine { record, .. } | OperationWrite::Machine { record, .. } => {
                (OperationSubject::Machine, &record.id)
            }
            OperationWrite::NewVolume(record) | OperationWrite::Volume(record) => {
                (OperationSubject::Volume, &record.id)
            }
        }
    }

    fn apply(&self, store: &Store, conn: &Connection) -> Result<(), StoreError> {
        match *self {
            OperationWrite::NewMachine { record, event } => {
                crate::insert_machine(conn, record)?;
                store.insert_event(conn, &record.id, event)
            }
            OperationWrite::Machine { record, event } => {
                write_machine(conn, record)?;
                match event {
                    Some(event) => store.insert_event(conn, &record.id, event),
                    None => Ok(()),
                }
            }
            OperationWrite::NewVolume(record) => insert_volume(conn, record),
            OperationWrite::Volume(record) => write_volume(conn, record),
        }
    }
}

impl Store {
    /// Records a new operation of `kind` with plan `params`, writing its
    /// subject's transitional record in the same transaction.
    pub fn begin_operation(
        &self,
        write: OperationWrite<'_>,
        kind: &str,
        params: &serde_json::Value,
    ) -> Result<Operation, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        write.apply(self, &tx)?;
        let (subject, subject_id) = write.subject();
        tx.execute(
            "INSERT INTO operations (subject, subject_id, kind, step, params) VALUES (?1, ?2, ?3, 0, ?4)",
            params![subject.as_str(), subject_id, kind, serde_json::to_string(params)?],
        )?;
        let op = Operation {
            id: tx.last_insert_rowid(),
            subject,
            subject_id: subject_id.to_string(),
            kind: kind.to_string(),
            step: 0,
            params: params.clone(),
        };
        tx.commit()?;
        Ok(op)
    }

    /// Records that `op` finished step `step - 1` and will run `step` next.
    pub fn set_operation_step(&self, op_id: i64, step: u32) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE operations SET step = ?2 WHERE id = ?1",
            params![op_id, step],
        )?;
        Ok(())
    }

    /// Ends an operation, writing its subject's settled record in the same
    /// transaction.
    pub fn finish_operation(
        &self,
        op_id: i64,
        write: OperationWrite<'_>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        write.apply(self, &tx)?;
        tx.execute("DELETE FROM operations WHERE id = ?1", [op_id])?;
        tx.commit()?;
        Ok(())
    }

    /// Operations a previous process left unfinished, oldest first.
    pub fn unfinished_operations(&self) -> Result<Vec<Operation>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, subject, subject_id, kind, step, params FROM operations ORDER BY id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, u32>(4)?,
                row.get::<_, String>(5)?,
            ))
        })?;
        rows.map(|row| {
            let (id, subject, subject_id, kind, step, params) = row?;
            Ok(Operation {
                id,
                subject: crate::parse_name(subject)?,
                subject_id,
                kind,
                step,
                params: serde_json::from_str(&params)?,
            })
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{app, event, machine, store};
    use crate::volumes::tests::record as volume;
    use roost_lifecycle::VolumeState;
    use roost_types::MachineState;

    #[test]
    fn operations_of_both_subjects_survive_reopen_and_finish_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roost.db");
        let mut record = machine("m1", "a");
        {
            let store = Store::open(&path).unwrap();
            store.create_app(&app("a")).unwrap();
            let launch = event("launch");
            let write = OperationWrite::NewMachine {
                record: &record,
                event: &launch,
            };
            let op = store
                .begin_operation(write, "launch", &serde_json::json!({}))
                .unwrap();
            store.set_operation_step(op.id, 2).unwrap();
            let creating = volume("vol_1", VolumeState::Creating);
            store
                .begin_operation(
                    OperationWrite::NewVolume(&creating),
                    "volume_create",
                    &serde_json::json!({"kind": "create"}),
                )
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
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
                (OperationSubject::Machine, "m1", "launch", 2),
                (OperationSubject::Volume, "vol_1", "volume_create", 0)
            ]
        );
        record.state = MachineState::Started;
        let start = event("start");
        let write = OperationWrite::Machine {
            record: &record,
            event: Some(&start),
        };
        store.finish_operation(ops[0].id, write).unwrap();
        let created = volume("vol_1", VolumeState::Created);
        store
            .finish_operation(ops[1].id, OperationWrite::Volume(&created))
            .unwrap();
        assert!(store.unfinished_operations().unwrap().is_empty());
        assert_eq!(
            store.get_machine("m1").unwrap().unwrap().state,
            MachineState::Started
        );
        let kinds: Vec<_> = store
            .list_events("m1", 10)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["start", "launch"]);
        let stored = store.get_volume("vol_1").unwrap().unwrap();
        assert_eq!(stored, created);
    }

    #[test]
    fn a_failed_write_records_no_operation() {
        let (_dir, store) = store();
        let missing = volume("vol_missing", VolumeState::Extending);
        let err = store
            .begin_operation(
                OperationWrite::Volume(&missing),
                "volume_extend",
                &serde_json::json!({}),
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        assert!(store.unfinished_operations().unwrap().is_empty());
    }
}
