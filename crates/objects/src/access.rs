//! Who a request acts for, and what it may reach.
//!
//! s3s verifies signatures with the secret [`Keys`] returns for the
//! request's access key id; [`Keys`] then decides, once and before any
//! operation runs, what the principal may do with the bucket the request
//! names. The admin key pair reaches every bucket; an app's key pair
//! reaches the buckets that app owns, and buckets it creates become its
//! own. Everyone else, signed by another app or not signed at all, gets
//! what the bucket's canned ACL grants: reads of a `public-read` bucket's
//! listing, writes to a `public-read-write` bucket, and reads of an object
//! whose own ACL grants them (checked by the operation, which reads the
//! object; see [`Caller::may_read`]).

use crate::record::CannedAcl;
use crate::store::ObjectStore;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::host::{S3Host, VirtualHost};
use s3s::path::S3Path;
use s3s::{s3_error, S3Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Who a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator: every bucket.
    Admin,
    /// An app: the buckets it owns.
    App(String),
    /// An unsigned request: what ACLs grant to everyone.
    Anonymous,
}

impl Principal {
    /// Whether this principal may use a bucket with `owner` as its owner
    /// does.
    pub fn may_use(&self, owner: Option<&str>) -> bool {
        match self {
            Principal::Admin => true,
            Principal::App(app) => owner == Some(app.as_str()),
            Principal::Anonymous => false,
        }
    }

    /// The canonical id S3 shows for this principal (Owner, Initiator).
    pub fn id(&self) -> &str {
        match self {
            Principal::Admin => OPERATOR_ID,
            Principal::App(app) => app,
            Principal::Anonymous => "anonymous",
        }
    }
}

/// The canonical id (and display name) of the operator, and of the
/// buckets no app owns.
pub(crate) const OPERATOR_ID: &str = "roost";

/// The id S3 shows as the owner of a bucket (and of its objects: the
/// bucket owner owns every object in it).
pub(crate) fn owner_id(owner: Option<&str>) -> &str {
    owner.unwrap_or(OPERATOR_ID)
}

/// What the access hook decided for a request, for the operations to read.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub principal: Principal,
    /// Whether the principal uses the request's bucket as its owner does
    /// (or the bucket does not exist yet).
    pub owns_bucket: bool,
    /// The request's bucket's ACL (private when there is no bucket).
    pub bucket_acl: CannedAcl,
}

impl Caller {
    /// Whether the request was signed (by any key pair).
    pub(crate) fn is_signed(&self) -> bool {
        self.principal != Principal::Anonymous
    }

    /// Whether the caller may read an object whose ACL is `acl`.
    pub(crate) fn may_read(&self, acl: CannedAcl) -> bool {
        self.owns_bucket || acl.grants_read(self.is_signed())
    }

    /// Whether the caller may list the bucket (and so learn which keys
    /// exist).
    pub(crate) fn may_list(&self) -> bool {
        self.owns_bucket || self.bucket_acl.grants_read(self.is_signed())
    }
}

/// Operations that read a bucket's listing or state: what a bucket's
/// read grant allows.
const BUCKET_READS: &[&str] = &[
    "ListObjects",
    "ListObjectsV2",
    "ListObjectVersions",
    "HeadBucket",
    "GetBucketLocation",
    "ListMultipartUploads",
];

/// Operations on objects that a bucket's write grant allows.
const BUCKET_WRITES: &[&str] = &[
    "PutObject",
    "PostObject",
    "CopyObject",
    "DeleteObject",
    "DeleteObjects",
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",
];

/// Operations that read one object, allowed or refused by the object's own
/// ACL once the operation has read it.
const OBJECT_READS: &[&str] = &["GetObject", "HeadObject"];

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

    /// The app of `access_key_id`, if it is an app's key. The access check
    /// runs once the signature is verified and needs only the app: a
    /// lookup that does not unseal the secret keeps a second unsealing off
    /// every request.
    fn app_of(&self, access_key_id: &str) -> Result<Option<String>, String> {
        Ok(self.app_key(access_key_id)?.map(|(_, app)| app))
    }
}

/// Authentication and per-bucket authorization for the S3 service.
#[derive(Clone)]
pub(crate) struct Keys {
    pub admin: AccessKey,
    pub apps: Option<Arc<dyn KeyLookup>>,
    pub store: ObjectStore,
}

impl Keys {
    /// The secret and the principal of `access_key_id`, if it is a known key.
    pub(crate) fn resolve(&self, access_key_id: &str) -> S3Result<Option<(String, Principal)>> {
        if access_key_id == self.admin.access_key_id {
            return Ok(Some((
                self.admin.secret_access_key.clone(),
                Principal::Admin,
            )));
        }
        let found = self.lookup(|apps| apps.app_key(access_key_id))?;
        Ok(found.map(|(secret, app)| (secret, Principal::App(app))))
    }

    /// The principal of `access_key_id`, if it is a known key, without its
    /// secret (for a request whose signature s3s has already verified).
    fn principal(&self, access_key_id: &str) -> S3Result<Option<Principal>> {
        if access_key_id == self.admin.access_key_id {
            return Ok(Some(Principal::Admin));
        }
        let found = self.lookup(|apps| apps.app_of(access_key_id))?;
        Ok(found.map(Principal::App))
    }

    /// `find` on the app key pairs; none without them.
    fn lookup<T>(
        &self,
        find: impl FnOnce(&dyn KeyLookup) -> Result<Option<T>, String>,
    ) -> S3Result<Option<T>> {
        let Some(apps) = &self.apps else {
            return Ok(None);
        };
        find(apps.as_ref()).map_err(|err| {
            tracing::error!(error = %err, "cannot look up an access key");
            s3_error!(InternalError, "cannot look up the access key")
        })
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
        let principal = match cx.credentials() {
            Some(credentials) => match self.principal(&credentials.access_key)? {
                Some(principal) => principal,
                None => return Err(s3_error!(InvalidAccessKeyId)),
            },
            None => Principal::Anonymous,
        };
        let bucket = match cx.s3_path() {
            S3Path::Root => None,
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(bucket.to_string()),
        };
        let (owns_bucket, bucket_acl) = match &bucket {
            None if principal == Principal::Anonymous => {
                return Err(s3_error!(AccessDenied, "Signature is required"))
            }
            None => (true, CannedAcl::Private),
            Some(bucket) => self.decide(&principal, bucket, cx.s3_op().name()).await?,
        };
        cx.extensions_mut().insert(Caller {
            principal,
            owns_bucket,
            bucket_acl,
        });
        Ok(())
    }
}

impl Keys {
    /// Whether `principal` may run `op` on `bucket`: as the bucket's owner
    /// (`true`; also when the bucket does not exist and the request is
    /// signed, which the operation reports: NoSuchBucket, or CreateBucket
    /// making it), or as anyone else the bucket's ACL lets through
    /// (`false`). Also the bucket's ACL.
    pub(crate) async fn decide(
        &self,
        principal: &Principal,
        bucket: &str,
        op: &str,
    ) -> S3Result<(bool, CannedAcl)> {
        let Some(config) = self.store.bucket_config(bucket).await? else {
            // Bucket names are global and public in S3: anyone may learn
            // that one does not exist, but only a signed request may make it.
            return match (principal, op) {
                (Principal::Anonymous, "CreateBucket") => {
                    Err(s3_error!(AccessDenied, "Signature is required"))
                }
                (Principal::Anonymous, _) => Err(s3_error!(NoSuchBucket)),
                _ => Ok((true, CannedAcl::Private)),
            };
        };
        if principal.may_use(config.owner.as_deref()) {
            return Ok((true, config.acl));
        }
        let signed = *principal != Principal::Anonymous;
        let granted = op == "CreateBucket"
            || OBJECT_READS.contains(&op)
            || (BUCKET_READS.contains(&op) && config.acl.grants_read(signed))
            || (BUCKET_WRITES.contains(&op) && config.acl.grants_write());
        if granted {
            Ok((false, config.acl))
        } else {
            Err(s3_error!(
                AccessDenied,
                "this request cannot {op} on bucket {bucket}"
            ))
        }
    }
}

/// What [`Keys`] decided for a request; the admin's full access when the
/// service runs without authentication.
pub(crate) fn caller(extensions: &http::Extensions) -> Caller {
    extensions.get::<Caller>().cloned().unwrap_or(Caller {
        principal: Principal::Admin,
        owns_bucket: true,
        bucket_acl: CannedAcl::Private,
    })
}

/// Virtual-host style for `<bucket>.<domain>`; anything else is path style
/// (so that plain IP addresses and `localhost` keep working).
#[derive(Debug, Clone)]
pub(crate) struct Domain(pub String);

impl Domain {
    /// The bucket a `Host` header names (`<bucket>.<domain>[:port]`), if
    /// it names one.
    pub(crate) fn bucket_of<'a>(&self, host: &'a str) -> Option<&'a str> {
        self.name_of(host)
            .strip_suffix(self.0.as_str())
            .and_then(|rest| rest.strip_suffix('.'))
            .filter(|b| !b.is_empty())
    }

    /// The host name of a `Host` header, without its port.
    fn name_of<'a>(&self, host: &'a str) -> &'a str {
        if host.starts_with('[') {
            host
        } else {
            host.split(':').next().unwrap_or(host)
        }
    }
}

impl S3Host for Domain {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        Ok(match self.bucket_of(host) {
            Some(bucket) => VirtualHost::new(self.0.as_str()).with_bucket(bucket),
            None => VirtualHost::new(self.name_of(host)),
        })
    }
}
