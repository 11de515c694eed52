//! App secrets: environment variables every machine of an app gets at its
//! next start, stored encrypted at rest.
//!
//! Values are sealed with XChaCha20-Poly1305 under a 32-byte key in
//! `DATA/secrets.key` (0600), created on first use; the app and name are
//! the associated data, so a row copied to another app or name does not
//! open. Listings show a keyed digest, never the value, and no error or
//! log line formats one. Machines pick secrets up at start: the
//! `refresh_env` step rewrites the bundle's environment when it changed.

use crate::error::{MachineError, Result};
use crate::paths::MachinePaths;
use crate::{now_rfc3339, Inner, Machines};
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use roost_store::{MachineRecord, SecretRecord};
use roost_types::{AppSecret, AppSecrets};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::Path;
use zeroize::Zeroizing;

const KEY_FILE: &str = "secrets.key";
const MAX_VALUE_BYTES: usize = 64 * 1024;
const MAX_SECRETS_PER_APP: usize = 256;
const NONCE_LEN: usize = 24;

/// The at-rest key, read for each use and zeroized after it.
struct Vault {
    key: Zeroizing<[u8; 32]>,
}

impl Vault {
    fn open(data_dir: &Path) -> Result<Vault> {
        let path = data_dir.join(KEY_FILE);
        let mut key = Zeroizing::new([0u8; 32]);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                if bytes.len() != 32 {
                    return Err(MachineError::Internal(format!(
                        "{} must hold 32 bytes; restore it from a backup (without it the app secrets cannot be read)",
                        path.display()
                    )));
                }
                key.copy_from_slice(&bytes);
                return Ok(Vault { key });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        chacha20poly1305::aead::rand_core::RngCore::fill_bytes(&mut OsRng, key.as_mut());
        roost_atomic_file::write_new(&path, key.as_ref(), 0o600)?;
        Ok(Vault { key })
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.key.as_ref().into())
    }

    fn seal(&self, app: &str, name: &str, value: &str) -> Result<String> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = format!("{app}\0{name}");
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| MachineError::Internal("encrypting a secret failed".into()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend(ciphertext);
        Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    fn open_value(&self, app: &str, record: &SecretRecord) -> Result<Zeroizing<String>> {
        let broken = || {
            MachineError::Internal(format!(
                "secret {} of app {app} cannot be decrypted with {KEY_FILE}; set it again",
                record.name
            ))
        };
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&record.sealed)
            .map_err(|_| broken())?;
        if sealed.len() < NONCE_LEN {
            return Err(broken());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let aad = format!("{app}\0{}", record.name);
        let plain = self
            .cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| broken())?;
        String::from_utf8(plain).map(Zeroizing::new).map_err(|e| {
            let mut bytes = e.into_bytes();
            zeroize::Zeroize::zeroize(&mut bytes);
            broken()
        })
    }

    /// A digest that changes with the value but, being keyed, cannot be
    /// used to guess it, and being keyed by app and name too, does not
    /// tell that two secrets (of one app or of two) hold the same value.
    fn digest(&self, app: &str, name: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref())
            .expect("HMAC takes keys of any length");
        mac.update(b"roost app secret digest\0");
        for part in [app, name] {
            mac.update(part.as_bytes());
            mac.update(b"\0");
        }
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..8])
    }
}

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

impl Machines {
    /// Names and digests of the app's secrets.
    pub fn list_secrets(&self, app: &str) -> Result<AppSecrets> {
        self.inner.app(app)?;
        Ok(AppSecrets {
            secrets: self
                .inner
                .store
                .list_app_secrets(app)?
                .iter()
                .map(view)
                .collect(),
        })
    }

    /// Sets (`Some`) and unsets (`None`) secrets in one change; every name
    /// and value is checked before anything is written. Machines see the
    /// new values at their next start.
    pub fn update_secrets(
        &self,
        app: &str,
        values: BTreeMap<String, Option<Zeroizing<String>>>,
    ) -> Result<AppSecrets> {
        self.inner.app(app)?;
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
        let existing: BTreeMap<String, SecretRecord> = self
            .inner
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
        let vault = Vault::open(&self.inner.data_dir)?;
        let now = now_rfc3339();
        let mut set = Vec::new();
        let mut unset = Vec::new();
        for (name, value) in values {
            match value {
                Some(value) => set.push(SecretRecord {
                    sealed: vault.seal(app, &name, &value)?,
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
        self.inner.store.update_app_secrets(app, &set, &unset)?;
        tracing::info!(
            app,
            set = set.len(),
            unset = unset.len(),
            "app secrets changed"
        );
        self.list_secrets(app)
    }
}

impl Inner {
    /// The app's secrets, decrypted, as environment pairs.
    pub(crate) fn secret_env(&self, app: &str) -> Result<Vec<(String, Zeroizing<String>)>> {
        let records = self.store.list_app_secrets(app)?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let vault = Vault::open(&self.data_dir)?;
        records
            .iter()
            .map(|record| Ok((record.name.clone(), vault.open_value(app, record)?)))
            .collect()
    }

    /// Brings the bundle's environment up to date (app secrets change
    /// between starts). Rewrites `config.json` only when it differs, so a
    /// start without changes only reads it; the rewrite is atomic, so the
    /// step can run again after a crash.
    pub(crate) fn refresh_env(&self, record: &MachineRecord, paths: &MachinePaths) -> Result<()> {
        let image = self.images.get(&record.machine.image_ref.digest)?;
        let env = self.machine_env(record, &image)?;
        let path = paths.bundle.join("config.json");
        let mut config = read_bundle_config(&path)?;
        let current = bundle_env(&mut config, &path)?;
        let wanted = serde_json::Value::from(env);
        if *current == wanted {
            return Ok(());
        }
        *current = wanted;
        let bytes = serde_json::to_vec_pretty(&config)
            .map_err(|e| MachineError::Internal(e.to_string()))?;
        crate::write_atomically(&path, &bytes)?;
        Ok(())
    }

    /// The environment the machine's main process started with (its
    /// bundle's `process.env`), which exec'd processes get too: secrets and
    /// storage variables changed since reach both at the next start.
    pub(crate) fn started_env(&self, record: &MachineRecord) -> Result<Vec<String>> {
        let paths = MachinePaths::new(&self.data_dir, &record.machine.id);
        let path = paths.bundle.join("config.json");
        let mut config = read_bundle_config(&path)?;
        let env = bundle_env(&mut config, &path)?.take();
        serde_json::from_value(env).map_err(|e| {
            MachineError::Internal(format!(
                "{}: process.env is not a string list: {e}",
                path.display()
            ))
        })
    }
}

fn read_bundle_config(path: &Path) -> Result<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path)?)
        .map_err(|e| MachineError::Internal(format!("{} is unreadable: {e}", path.display())))
}

fn bundle_env<'a>(
    config: &'a mut serde_json::Value,
    path: &Path,
) -> Result<&'a mut serde_json::Value> {
    config
        .pointer_mut("/process/env")
        .ok_or_else(|| MachineError::Internal(format!("{} has no process.env", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_are_bound_to_their_slot() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(dir.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let record = |name: &str, sealed: String| SecretRecord {
            name: name.into(),
            sealed,
            digest: String::new(),
            created_at: String::new(),
            updated_at: String::new(),
        };
        let sealed = vault.seal("app", "TOKEN", "s3cret").unwrap();
        assert!(!sealed.contains("s3cret"));
        let again = Vault::open(dir.path()).unwrap();
        assert_eq!(
            again
                .open_value("app", &record("TOKEN", sealed.clone()))
                .unwrap()
                .as_str(),
            "s3cret"
        );
        let moved = again
            .open_value("other", &record("TOKEN", sealed.clone()))
            .unwrap_err();
        assert!(!moved.to_string().contains("s3cret"));
        assert!(again.open_value("app", &record("OTHER", sealed)).is_err());
        assert_eq!(vault.digest("app", "A", "a"), again.digest("app", "A", "a"));
        assert_ne!(vault.digest("app", "A", "a"), vault.digest("app", "A", "b"));
    }

    #[test]
    fn security_equal_values_have_unequal_digests_across_names_and_apps() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(dir.path()).unwrap();
        let digests = [
            vault.digest("app", "A", "same"),
            vault.digest("app", "B", "same"),
            vault.digest("other", "A", "same"),
            // Parts are delimited: ("ap", "pA") is not ("app", "A").
            vault.digest("ap", "pA", "same"),
        ];
        for (i, a) in digests.iter().enumerate() {
            for b in &digests[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn names_and_values_are_checked() {
        assert!(check_name("API_KEY").is_ok());
        for bad in ["", "1A", "A-B", "FLY_APP_NAME", "A=B"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_value("A", "x\0y").is_err());
    }
}
