//! Who a request acts for, and what it may reach.
//!
//! s3s verifies signatures with the secret [`Keys`] returns for the
//! request's access key id; [`Keys`] then checks, before any operation
//! runs, that the principal may use the bucket the request names. The
//! admin key pair reaches every bucket; an app's key pair reaches only
//! buckets that app owns, and buckets it creates become its own.

use crate::store::ObjectStore;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::host::{S3Host, VirtualHost};
use s3s::path::S3Path;
use s3s::{s3_error, S3Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Who a key pair acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator: every bucket.
    Admin,
    /// An app: the buckets it owns.
    App(String),
}

impl Principal {
    /// Whether this principal may use a bucket with `owner`.
    pub fn may_use(&self, owner: Option<&str>) -> bool {
        match self {
            Principal::Admin => true,
            Principal::App(app) => owner == Some(app.as_str()),
        }
    }
}

/// An S3 access key pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl AccessKey {
    /// A new random key pair: a 20-character id (AWS's length) with the
    /// given prefix, and a 40-character secret.
    pub fn generate(prefix: &str) -> AccessKey {
        let id = hex::encode(rand::random::<[u8; 10]>()).to_ascii_uppercase();
        let keep = 20usize.saturating_sub(prefix.len());
        AccessKey {
            access_key_id: format!("{prefix}{}", &id[..keep.min(id.len())]),
            secret_access_key: hex::encode(rand::random::<[u8; 20]>()),
        }
    }
}

/// Where app key pairs live (roost keeps them in its database).
pub trait KeyLookup: Send + Sync + 'static {
    /// The secret and the app of `access_key_id`, if it is an app's key.
    fn app_key(&self, access_key_id: &str) -> Result<Option<(String, String)>, String>;
}

/// Authentication and per-bucket authorization for the S3 service.
#[derive(Clone)]
pub(crate) struct Keys {
    pub admin: AccessKey,
    pub apps: Option<Arc<dyn KeyLookup>>,
    pub store: ObjectStore,
}

impl Keys {
    fn resolve(&self, access_key_id: &str) -> S3Result<Option<(String, Principal)>> {
        if access_key_id == self.admin.access_key_id {
            return Ok(Some((
                self.admin.secret_access_key.clone(),
                Principal::Admin,
            )));
        }
        let Some(apps) = &self.apps else {
            return Ok(None);
        };
        match apps.app_key(access_key_id) {
            Ok(found) => Ok(found.map(|(secret, app)| (secret, Principal::App(app)))),
            Err(err) => {
                tracing::error!(error = %err, "cannot look up an access key");
                Err(s3_error!(InternalError, "cannot look up the access key"))
            }
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.resolve(access_key)? {
            Some((secret, _)) => Ok(SecretKey::from(secret)),
            None => Err(s3_error!(InvalidAccessKeyId)),
        }
    }
}

#[async_trait::async_trait]
impl S3Access for Keys {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(credentials) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        };
        let Some((_, principal)) = self.resolve(&credentials.access_key)? else {
            return Err(s3_error!(InvalidAccessKeyId));
        };
        let bucket = match cx.s3_path() {
            S3Path::Root => None,
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(bucket.to_string()),
        };
        if let (Principal::App(_), Some(bucket)) = (&principal, &bucket) {
            // A missing bucket is left to the operation: NoSuchBucket, or
            // CreateBucket making it the app's.
            if let Some(info) = self.store.bucket(bucket).await? {
                if !principal.may_use(info.owner.as_deref()) {
                    return Err(s3_error!(
                        AccessDenied,
                        "this key pair cannot use bucket {bucket}"
                    ));
                }
            }
        }
        cx.extensions_mut().insert(principal);
        Ok(())
    }
}

/// The principal [`Keys`] attached to a request; admin when the service
/// runs without authentication.
pub(crate) fn principal(extensions: &http::Extensions) -> Principal {
    extensions
        .get::<Principal>()
        .cloned()
        .unwrap_or(Principal::Admin)
}

/// Virtual-host style for `<bucket>.<domain>`; anything else is path style
/// (so that plain IP addresses and `localhost` keep working).
#[derive(Debug)]
pub(crate) struct Domain(pub String);

impl S3Host for Domain {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = if host.starts_with('[') {
            host
        } else {
            host.split(':').next().unwrap_or(host)
        };
        let bucket = name
            .strip_suffix(self.0.as_str())
            .and_then(|rest| rest.strip_suffix('.'))
            .filter(|b| !b.is_empty());
        Ok(match bucket {
            Some(bucket) => VirtualHost::new(self.0.as_str()).with_bucket(bucket),
            None => VirtualHost::new(name),
        })
    }
}
