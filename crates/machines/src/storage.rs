//! Object storage for apps, the way Fly pairs apps with Tigris: a bucket
//! owned by the app, one key pair per app scoped to the app's buckets, and
//! the `AWS_*`/`BUCKET_NAME` variables in the app's machines' environment.

use crate::error::{MachineError, Missing, Result};
use crate::vault::{Slot, Vault};
use crate::{now_rfc3339, Inner, Machines, Service};
use roost_lifecycle::{Right, Target};
use roost_objects::{AccessKey, BucketInfo, KeyLookup, ObjectStore};
use roost_store::StorageKeyRecord;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Where machines reach the S3 endpoint and which region it reports.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// `AWS_ENDPOINT_URL_S3` as machines see it.
    pub public_url: String,
    /// `AWS_REGION`.
    pub region: String,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            public_url: "http://127.0.0.1:9000".into(),
            region: "auto".into(),
        }
    }
}

/// A bucket with the credentials its app uses, as `roost storage` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StorageInfo {
    pub name: String,
    pub app: Option<String>,
    pub created_at: String,
    pub endpoint: String,
    pub region: String,
    /// Only in the answer to a create.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
}

pub(crate) struct StorageLayer {
    pub objects: ObjectStore,
    pub config: StorageConfig,
}

/// App key pairs for the S3 endpoint, read from roost's store.
struct AppKeys(Arc<Inner>);

impl KeyLookup for AppKeys {
    fn app_key(
        &self,
        access_key_id: &str,
    ) -> std::result::Result<Option<(String, String)>, String> {
        let Some(key) = self
            .0
            .store
            .storage_key_by_id(access_key_id)
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let secret = self.0.storage_secret(&key).map_err(|e| e.to_string())?;
        Ok(Some((secret.to_string(), key.app)))
    }

    fn app_of(&self, access_key_id: &str) -> std::result::Result<Option<String>, String> {
        let key = self
            .0
            .store
            .storage_key_by_id(access_key_id)
            .map_err(|e| e.to_string())?;
        Ok(key.map(|key| key.app))
    }
}

/// Seals the plaintext S3 secret keys a database from before they were
/// sealed holds (at open, before anything reads them).
pub(crate) fn seal_plaintext_keys(store: &roost_store::Store, data_dir: &Path) -> Result<()> {
    let mut vault = None;
    let sealed = store.seal_plaintext_storage_keys(|app, secret| {
        if vault.is_none() {
            vault = Some(Vault::open(data_dir).map_err(|e| e.to_string())?);
        }
        let vault = vault.as_ref().expect("opened above");
        vault
            .seal(Slot::StorageKey { app }, secret)
            .map_err(|e| e.to_string())
    })?;
    if sealed > 0 {
        tracing::info!(sealed, "plaintext S3 secret keys sealed");
    }
    Ok(())
}

fn from_objects(err: roost_objects::Error) -> MachineError {
    use roost_objects::Error as E;
    match err {
        E::InvalidBucketName(_) => MachineError::Invalid(err.to_string()),
        E::BucketExists(_) | E::BucketNotEmpty(_) => MachineError::Conflict(err.to_string()),
        E::NoSuchBucket(_) => MachineError::NotFound(err.to_string()),
        other => MachineError::Internal(other.to_string()),
    }
}

impl Machines {
    /// The object store (for `roost up`'s S3 listener).
    pub fn object_store(&self) -> &ObjectStore {
        &self.inner.storage.objects
    }

    /// App key pairs, for the S3 endpoint's authentication.
    pub fn storage_keys(&self) -> Arc<dyn KeyLookup> {
        Arc::new(AppKeys(self.inner.clone()))
    }
}

impl Service {
    /// Creates a bucket owned by `app` (named `name`, or after the app) and
    /// the app's key pair if it has none yet.
    pub async fn create_storage(&self, app: &str, name: Option<&str>) -> Result<StorageInfo> {
        let inner = self.authorize(Right::Storage, Target::App(app))?;
        inner.app(app)?;
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| default_bucket_name(app));
        let bucket = inner
            .storage
            .objects
            .create_bucket(&name, Some(app))
            .await
            .map_err(from_objects)?;
        let fresh = AccessKey::generate("RST");
        let vault = Vault::open(&inner.data_dir)?;
        let key = inner.store.ensure_storage_key(&StorageKeyRecord {
            app: app.to_string(),
            access_key_id: fresh.access_key_id,
            sealed_secret: vault.seal(Slot::StorageKey { app }, &fresh.secret_access_key)?,
            created_at: now_rfc3339(),
        })?;
        tracing::info!(app, bucket = name, "storage created");
        let secret = inner.storage_secret(&key)?;
        let mut info = inner.storage_info(bucket);
        info.access_key_id = Some(key.access_key_id);
        info.secret_access_key = Some(secret.to_string());
        Ok(info)
    }

    /// Buckets, all or those of one app.
    pub async fn list_storage(&self, app: Option<&str>) -> Result<Vec<StorageInfo>> {
        let target = app.map_or(Target::Host, Target::App);
        self.authorize(Right::Read, target)?.list_storage(app).await
    }

    /// Deletes an app's bucket with its objects; the app's key pair goes
    /// with its last bucket.
    pub async fn destroy_storage(&self, app: &str, name: &str) -> Result<()> {
        let inner = self.authorize(Right::Storage, Target::App(app))?;
        inner.app(app)?;
        let objects = &inner.storage.objects;
        match objects.bucket(name).await.map_err(from_objects)? {
            Some(b) if b.owner.as_deref() == Some(app) => {}
            _ => {
                return Err(MachineError::Missing(Missing::Bucket {
                    app: app.to_string(),
                    bucket: name.to_string(),
                }))
            }
        }
        objects
            .delete_bucket(name, true)
            .await
            .map_err(from_objects)?;
        if inner.list_storage(Some(app)).await?.is_empty() {
            inner.store.delete_storage_key(app)?;
        }
        Ok(())
    }
}

impl Inner {
    /// Buckets, all or those of one app.
    async fn list_storage(&self, app: Option<&str>) -> Result<Vec<StorageInfo>> {
        if let Some(app) = app {
            self.app(app)?;
        }
        let buckets = self
            .storage
            .objects
            .list_buckets()
            .await
            .map_err(from_objects)?;
        Ok(buckets
            .into_iter()
            .filter(|b| app.is_none() || b.owner.as_deref() == app)
            .map(|b| self.storage_info(b))
            .collect())
    }

    /// Deletes every bucket of `app` with its objects, then the app's key
    /// pair: an app's storage goes with the app, as its machines and
    /// volumes do, so no bucket outlives its owner to be inherited by a
    /// later app of the same name.
    pub(crate) async fn destroy_app_storage(&self, app: &str) -> Result<()> {
        let objects = &self.storage.objects;
        for name in objects.bucket_names_of(app).map_err(from_objects)? {
            match objects.delete_bucket(&name, true).await {
                Ok(()) | Err(roost_objects::Error::NoSuchBucket(_)) => {}
                Err(err) => return Err(from_objects(err)),
            }
            tracing::info!(app, bucket = name, "bucket deleted with its app");
        }
        self.store.delete_storage_key(app)?;
        Ok(())
    }
}

/// A bucket name derived from an app name (bucket names are stricter).
fn default_bucket_name(app: &str) -> String {
    let cleaned: String = app
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("{}-bucket", cleaned.trim_matches('-'));
    name.truncate(63);
    name
}

impl Inner {
    /// The secret access key of `key`, unsealed.
    fn storage_secret(&self, key: &StorageKeyRecord) -> Result<Zeroizing<String>> {
        Vault::open(&self.data_dir)?
            .open_value(Slot::StorageKey { app: &key.app }, &key.sealed_secret)
    }

    fn storage_info(&self, bucket: BucketInfo) -> StorageInfo {
        let created = chrono::DateTime::from_timestamp_millis(bucket.created_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        StorageInfo {
            name: bucket.name,
            app: bucket.owner,
            created_at: created,
            endpoint: self.storage.config.public_url.clone(),
            region: self.storage.config.region.clone(),
            access_key_id: None,
            secret_access_key: None,
        }
    }

    /// The storage variables of `app`'s machines: Fly's Tigris set, present
    /// once the app has a bucket. `BUCKET_NAME` is its oldest bucket.
    pub(crate) fn storage_env(&self, app: &str) -> Vec<(String, String)> {
        let key = match self.store.storage_key(app) {
            Ok(Some(key)) => key,
            Ok(None) => return Vec::new(),
            Err(err) => {
                tracing::warn!(app, error = %err, "cannot read the app's storage key");
                return Vec::new();
            }
        };
        let secret = match self.storage_secret(&key) {
            Ok(secret) => secret,
            Err(err) => {
                tracing::warn!(app, error = %err, "cannot unseal the app's storage key");
                return Vec::new();
            }
        };
        let bucket = storage_bucket(&self.storage.objects, app);
        let mut env = vec![
            ("AWS_ACCESS_KEY_ID".to_string(), key.access_key_id),
            ("AWS_SECRET_ACCESS_KEY".to_string(), secret.to_string()),
            (
                "AWS_ENDPOINT_URL_S3".to_string(),
                self.storage.config.public_url.clone(),
            ),
            ("AWS_REGION".to_string(), self.storage.config.region.clone()),
        ];
        if let Some(bucket) = bucket {
            env.push(("BUCKET_NAME".to_string(), bucket));
        }
        env
    }
}

/// The app's oldest bucket (machine env is computed synchronously).
fn storage_bucket(objects: &ObjectStore, app: &str) -> Option<String> {
    objects
        .bucket_names_of(app)
        .map_err(|err| tracing::warn!(app, error = %err, "cannot list the app's buckets"))
        .ok()
        .and_then(|names| names.into_iter().next())
}
