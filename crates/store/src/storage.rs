//! Object storage key pairs: one per app, scoped to that app's buckets.
//! (Buckets themselves, and their owners, live in the object store.)
//!
//! Secret access keys arrive sealed by the orchestrator, like app secrets:
//! the store never holds a plaintext one. Databases written before that
//! have a `storage_keys` table of plaintext keys, which
//! [`Store::seal_plaintext_storage_keys`] rewrites.

use crate::{Store, StoreError};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

/// The table of plaintext key pairs of older databases.
const PLAINTEXT_TABLE: &str = "storage_keys";

/// An app's S3 key pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageKeyRecord {
    pub app: String,
    pub access_key_id: String,
    /// The secret access key, sealed; the format is the orchestrator's.
    pub sealed_secret: String,
    pub created_at: String,
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StorageKeyRecord> {
    Ok(StorageKeyRecord {
        app: row.get(0)?,
        access_key_id: row.get(1)?,
        sealed_secret: row.get(2)?,
        created_at: row.get(3)?,
    })
}

impl Store {
    /// The app's key pair, if it has one.
    pub fn storage_key(&self, app: &str) -> Result<Option<StorageKeyRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT app, access_key_id, sealed_secret, created_at FROM app_storage_keys WHERE app = ?1",
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
                "SELECT app, access_key_id, sealed_secret, created_at FROM app_storage_keys WHERE access_key_id = ?1",
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
            "INSERT OR IGNORE INTO app_storage_keys (app, access_key_id, sealed_secret, created_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                key.app,
                key.access_key_id,
                key.sealed_secret,
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
            .execute("DELETE FROM app_storage_keys WHERE app = ?1", [app])?;
        Ok(())
    }

    /// Moves the plaintext key pairs of an older database into the sealed
    /// table, each secret passed through `seal(app, secret)`, and drops the
    /// old table, all in one transaction: a crash keeps either the old
    /// table or the new rows, so no key is lost. The old values are
    /// overwritten on disk (`secure_delete`, then a WAL checkpoint), not
    /// just unlinked. Returns how many key pairs were sealed (0 when the
    /// database has no old table).
    pub fn seal_plaintext_storage_keys(
        &self,
        mut seal: impl FnMut(&str, &str) -> Result<String, String>,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [PLAINTEXT_TABLE],
            |row| row.get(0),
        )?;
        if !exists {
            return Ok(0);
        }
        conn.pragma_update(None, "secure_delete", "ON")?;
        let sealed = move_plaintext_keys(&mut conn, &mut seal);
        conn.pragma_update(None, "secure_delete", "OFF")?;
        let sealed = sealed?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(sealed)
    }
}

/// The transaction of [`Store::seal_plaintext_storage_keys`].
fn move_plaintext_keys(
    conn: &mut rusqlite::Connection,
    seal: &mut impl FnMut(&str, &str) -> Result<String, String>,
) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let plain: Vec<(String, String, String, String)> = tx
        .prepare(&format!(
            "SELECT app, access_key_id, secret_access_key, created_at FROM {PLAINTEXT_TABLE}"
        ))?
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (app, access_key_id, secret, created_at) in &plain {
        let sealed = seal(app, secret).map_err(StoreError::Sealing)?;
        tx.execute(
            "INSERT OR IGNORE INTO app_storage_keys (app, access_key_id, sealed_secret, created_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![app, access_key_id, sealed, created_at],
        )?;
    }
    tx.execute_batch(&format!("DROP TABLE {PLAINTEXT_TABLE}"))?;
    tx.commit()?;
    Ok(plain.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_keys_of_an_older_database_are_sealed_and_erased() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roost.db");
        {
            let old = rusqlite::Connection::open(&path).unwrap();
            old.pragma_update(None, "journal_mode", "WAL").unwrap();
            old.execute_batch(
                "CREATE TABLE storage_keys (app TEXT PRIMARY KEY, access_key_id TEXT NOT NULL UNIQUE,
                     secret_access_key TEXT NOT NULL, created_at TEXT NOT NULL);
                 INSERT INTO storage_keys VALUES ('a', 'RSTA', 'plain-secret-of-a-1234567890', 't0');
                 INSERT INTO storage_keys VALUES ('b', 'RSTB', 'plain-secret-of-b-1234567890', 't1');",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let sealed = store
            .seal_plaintext_storage_keys(|app, secret| {
                Ok(format!("sealed({app})={}", secret.len()))
            })
            .unwrap();
        assert_eq!(sealed, 2);
        let a = store.storage_key("a").unwrap().unwrap();
        assert_eq!(a.access_key_id, "RSTA");
        assert_eq!(a.sealed_secret, "sealed(a)=28");
        assert_eq!(a.created_at, "t0");
        assert_eq!(
            store
                .storage_key_by_id("RSTB")
                .unwrap()
                .unwrap()
                .sealed_secret,
            "sealed(b)=28"
        );
        for file in ["roost.db", "roost.db-wal"] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("plain-secret-of"),
                "{file} keeps a plaintext key"
            );
        }
        let again = store
            .seal_plaintext_storage_keys(|_, _| Err("not called again".into()))
            .unwrap();
        assert_eq!(again, 0);
    }

    #[test]
    fn a_failed_seal_keeps_the_old_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roost.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE storage_keys (app TEXT PRIMARY KEY, access_key_id TEXT NOT NULL UNIQUE,
                     secret_access_key TEXT NOT NULL, created_at TEXT NOT NULL);
                 INSERT INTO storage_keys VALUES ('a', 'RSTA', 'kept', 't0');",
            )
            .unwrap();
        let store = Store::open(&path).unwrap();
        let err = store
            .seal_plaintext_storage_keys(|_, _| Err("no key".into()))
            .unwrap_err();
        assert!(err.to_string().contains("no key"), "{err}");
        assert!(store.storage_key("a").unwrap().is_none());
        let sealed = store
            .seal_plaintext_storage_keys(|_, secret| Ok(format!("sealed {secret}")))
            .unwrap();
        assert_eq!(sealed, 1);
        assert_eq!(
            store.storage_key("a").unwrap().unwrap().sealed_secret,
            "sealed kept"
        );
    }
}
