//! App secrets: environment variables every machine of an app gets at its
//! next start, stored encrypted at rest.
//!
//! Values are sealed by the vault (`vault.rs`) for their app and name, so
//! a row copied to another app or name does not open. Listings show a
//! keyed digest, never the value, and no error or log line formats one. Machines pick secrets up at start: the
//! `refresh_env` step rewrites the bundle's environment when it changed.

use crate::error::{MachineError, Result};
use crate::vault::{Slot, Vault};
use crate::{now_rfc3339, Inner, Service};
use roost_lifecycle::{MachineRecord, Right, Target};
use roost_store::SecretRecord;
use roost_types::{AppSecret, AppSecrets};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

const MAX_VALUE_BYTES: usize = 64 * 1024;
const MAX_SECRETS_PER_APP: usize = 256;

fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 256
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !valid {
        return Err(MachineError::Invalid(format!(
            "secret name {name:?} is invalid: use 1-256 letters, digits and '_', not starting with a digit (it becomes an environment variable)"
        )));
    }
    if name.starts_with("FLY_") {
        return Err(MachineError::Invalid(format!(
            "secret name {name:?} is reserved: FLY_* variables are set by the platform"
        )));
    }
    Ok(())
}

fn check_value(name: &str, value: &str) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(MachineError::Invalid(format!(
            "secret {name} is longer than {MAX_VALUE_BYTES} bytes"
        )));
    }
    if value.contains('\0') {
        return Err(MachineError::Invalid(format!(
            "secret {name} contains a NUL byte, which an environment variable cannot hold"
        )));
    }
    Ok(())
}

fn view(record: &SecretRecord) -> AppSecret {
    AppSecret {
        name: record.name.clone(),
        digest: record.digest.clone(),
        created_at: record.created_at.clone(),
        updated_at: record.updated_at.clone(),
    }
}

impl Service {
    /// Names and digests of the app's secrets.
    pub fn list_secrets(&self, app: &str) -> Result<AppSecrets> {
        self.authorize(Right::Read, Target::App(app))?
            .secrets_of(app)
    }

    /// Sets (`Some`) and unsets (`None`) secrets in one change; every name
    /// and value is checked before anything is written. Machines see the
    /// new values at their next start.
    pub fn update_secrets(
        &self,
        app: &str,
        values: BTreeMap<String, Option<Zeroizing<String>>>,
    ) -> Result<AppSecrets> {
        let inner = self.authorize(Right::SecretsWrite, Target::App(app))?;
        inner.app(app)?;
        if values.is_empty() {
            return Err(MachineError::Invalid(
                "no secrets given: send {\"values\": {\"NAME\": \"value\"}} (null unsets a name)"
                    .into(),
            ));
        }
        for (name, value) in &values {
            check_name(name)?;
            if let Some(value) = value {
                check_value(name, value)?;
            }
        }
        let existing: BTreeMap<String, SecretRecord> = inner
            .store
            .list_app_secrets(app)?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        let added = values
            .iter()
            .filter(|(name, value)| value.is_some() && !existing.contains_key(*name))
            .count();
        if existing.len() + added > MAX_SECRETS_PER_APP {
            return Err(MachineError::Invalid(format!(
                "an app holds at most {MAX_SECRETS_PER_APP} secrets"
            )));
        }
        let vault = Vault::open(&inner.data_dir)?;
        let now = now_rfc3339();
        let mut set = Vec::new();
        let mut unset = Vec::new();
        for (name, value) in values {
            match value {
                Some(value) => set.push(SecretRecord {
                    sealed: vault.seal(Slot::AppSecret { app, name: &name }, &value)?,
                    digest: vault.digest(app, &name, &value),
                    created_at: existing
                        .get(&name)
                        .map(|r| r.created_at.clone())
                        .unwrap_or_else(|| now.clone()),
                    updated_at: now.clone(),
                    name,
                }),
                None => unset.push(name),
            }
        }
        inner.store.update_app_secrets(app, &set, &unset)?;
        tracing::info!(
            app,
            set = set.len(),
            unset = unset.len(),
            "app secrets changed"
        );
        inner.secrets_of(app)
    }
}

impl Inner {
    /// Names and digests of the app's secrets.
    fn secrets_of(&self, app: &str) -> Result<AppSecrets> {
        self.app(app)?;
        Ok(AppSecrets {
            secrets: self.store.list_app_secrets(app)?.iter().map(view).collect(),
        })
    }

    /// The app's secrets, decrypted, as environment pairs.
    pub(crate) fn secret_env(&self, app: &str) -> Result<Vec<(String, Zeroizing<String>)>> {
        let records = self.store.list_app_secrets(app)?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let vault = Vault::open(&self.data_dir)?;
        records
            .iter()
            .map(|record| {
                let slot = Slot::AppSecret {
                    app,
                    name: &record.name,
                };
                Ok((record.name.clone(), vault.open_value(slot, &record.sealed)?))
            })
            .collect()
    }

    /// Brings the bundle's environment up to date (app secrets change
    /// between starts); the host rewrites the bundle only when it differs,
    /// atomically, so the step can run again after a crash.
    pub(crate) async fn refresh_env(&self, record: &MachineRecord) -> Result<()> {
        let image = self.images.get(&record.image_ref.digest)?;
        let env = self.machine_env(record, &image)?;
        Ok(self.host.refresh_env(&record.id, &env).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_checked() {
        assert!(check_name("API_KEY").is_ok());
        for bad in ["", "1A", "A-B", "FLY_APP_NAME", "A=B"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_value("A", "x\0y").is_err());
    }
}
