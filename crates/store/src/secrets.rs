//! App secrets, stored as the orchestrator hands them over: already
//! encrypted. The store never sees a plaintext value.

use crate::{Store, StoreError};
use rusqlite::params;
use serde::{Deserialize, Serialize};

/// One encrypted app secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub name: String,
    /// Nonce and ciphertext, base64; the format is the orchestrator's.
    pub sealed: String,
    pub digest: String,
    pub created_at: String,
    pub updated_at: String,
}

impl Store {
    /// Writes `set` and deletes `unset` for `app` in one transaction.
    pub fn update_app_secrets(
        &self,
        app: &str,
        set: &[SecretRecord],
        unset: &[String],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for record in set {
            tx.execute(
                "INSERT OR REPLACE INTO app_secrets (app, name, data) VALUES (?1, ?2, ?3)",
                params![app, record.name, serde_json::to_string(record)?],
            )?;
        }
        for name in unset {
            tx.execute(
                "DELETE FROM app_secrets WHERE app = ?1 AND name = ?2",
                params![app, name],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The app's secrets, by name.
    pub fn list_app_secrets(&self, app: &str) -> Result<Vec<SecretRecord>, StoreError> {
        self.list_json(
            "SELECT data FROM app_secrets WHERE app = ?1 ORDER BY name",
            [app],
        )
    }
}
