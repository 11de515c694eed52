//! Object storage key pairs: one per app, scoped to that app's buckets.
//! (Buckets themselves, and their owners, live in the object store.)

use crate::{Store, StoreError};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS storage_keys (
    app TEXT PRIMARY KEY,
    access_key_id TEXT NOT NULL UNIQUE,
    secret_access_key TEXT NOT NULL,
    created_at TEXT NOT NULL
);
";

/// An app's S3 key pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageKeyRecord {
    pub app: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub created_at: String,
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StorageKeyRecord> {
    Ok(StorageKeyRecord {
        app: row.get(0)?,
        access_key_id: row.get(1)?,
        secret_access_key: row.get(2)?,
        created_at: row.get(3)?,
    })
}

impl Store {
    /// The app's key pair, if it has one.
    pub fn storage_key(&self, app: &str) -> Result<Option<StorageKeyRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT app, access_key_id, secret_access_key, created_at FROM storage_keys WHERE app = ?1",
                [app],
                from_row,
            )
            .optional()?)
    }

    /// The key pair with this access key id.
    pub fn storage_key_by_id(
        &self,
        access_key_id: &str,
    ) -> Result<Option<StorageKeyRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT app, access_key_id, secret_access_key, created_at FROM storage_keys WHERE access_key_id = ?1",
                [access_key_id],
                from_row,
            )
            .optional()?)
    }

    /// Stores `key` unless the app has one already; returns the app's key.
    pub fn ensure_storage_key(
        &self,
        key: &StorageKeyRecord,
    ) -> Result<StorageKeyRecord, StoreError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO storage_keys (app, access_key_id, secret_access_key, created_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                key.app,
                key.access_key_id,
                key.secret_access_key,
                key.created_at
            ],
        )?;
        self.storage_key(&key.app)?.ok_or(StoreError::NotFound {
            kind: "storage key",
            name: key.app.clone(),
        })
    }

    /// Removes the app's key pair (no-op without one).
    pub fn delete_storage_key(&self, app: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM storage_keys WHERE app = ?1", [app])?;
        Ok(())
    }
}
