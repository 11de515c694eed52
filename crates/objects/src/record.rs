//! What the index records: buckets, objects (their headers, checksums and
//! where their bytes are).

use bytes::Bytes;
use s3s::dto::Checksum;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A bucket as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketInfo {
    pub name: String,
    /// The app whose key pair may use the bucket; `None` for buckets only
    /// the admin key pair reaches.
    pub owner: Option<String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// Headers stored with an object and returned on GET/HEAD.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
    #[serde(default)]
    pub checksums: Checksums,
    /// Number of parts for objects made by a multipart upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
    /// `COMPOSITE` or `FULL_OBJECT`: how `checksums` cover the body (a
    /// multipart object's composite checksum is a checksum of its parts'
    /// checksums).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
    /// The object's tag set, sorted by key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "CannedAcl::is_private")]
    pub acl: CannedAcl,
}

/// A tag of an object or bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tag {
    pub key: String,
    pub value: String,
}

/// The canned ACLs roost keeps for buckets and objects. The owner always
/// has full control; the ACL says what everyone else may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CannedAcl {
    #[default]
    #[serde(rename = "private")]
    Private,
    /// Anyone, signed or not, may read (objects: GET/HEAD; buckets: list).
    #[serde(rename = "public-read")]
    PublicRead,
    /// Anyone may also write (buckets: put and delete objects).
    #[serde(rename = "public-read-write")]
    PublicReadWrite,
    /// Any signed request may read.
    #[serde(rename = "authenticated-read")]
    AuthenticatedRead,
}

impl CannedAcl {
    pub(crate) fn is_private(&self) -> bool {
        *self == CannedAcl::Private
    }

    /// The canned ACL named `name` (`x-amz-acl`'s values), if roost keeps it.
    pub(crate) fn parse(name: &str) -> Option<CannedAcl> {
        match name {
            "private" | "bucket-owner-full-control" => Some(CannedAcl::Private),
            "public-read" => Some(CannedAcl::PublicRead),
            "public-read-write" => Some(CannedAcl::PublicReadWrite),
            "authenticated-read" => Some(CannedAcl::AuthenticatedRead),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            CannedAcl::Private => "private",
            CannedAcl::PublicRead => "public-read",
            CannedAcl::PublicReadWrite => "public-read-write",
            CannedAcl::AuthenticatedRead => "authenticated-read",
        }
    }

    /// Whether a principal other than the owner may read, given whether
    /// its request was signed.
    pub(crate) fn grants_read(&self, signed: bool) -> bool {
        match self {
            CannedAcl::Private => false,
            CannedAcl::PublicRead | CannedAcl::PublicReadWrite => true,
            CannedAcl::AuthenticatedRead => signed,
        }
    }

    /// Whether a principal other than the owner may write objects.
    pub(crate) fn grants_write(&self) -> bool {
        *self == CannedAcl::PublicReadWrite
    }
}

/// A bucket's versioning state. A bucket starts [`Versioning::Unversioned`]
/// and, once enabled, can only be suspended, never return to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Versioning {
    Unversioned,
    Enabled,
    Suspended,
}

impl Versioning {
    pub(crate) fn from_column(value: Option<&str>) -> Versioning {
        match value {
            Some("Enabled") => Versioning::Enabled,
            Some("Suspended") => Versioning::Suspended,
            _ => Versioning::Unversioned,
        }
    }

    /// The S3 status (`Status` of GetBucketVersioning); none when never
    /// enabled.
    pub(crate) fn status(&self) -> Option<&'static str> {
        match self {
            Versioning::Unversioned => None,
            Versioning::Enabled => Some("Enabled"),
            Versioning::Suspended => Some("Suspended"),
        }
    }
}

/// The id S3 shows for the version written while versioning was off.
pub(crate) const NULL_VERSION: &str = "null";

/// A part of a multipart object: where it sits in the body, and what the
/// part's upload declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartInfo {
    pub number: u32,
    pub size: u64,
    pub etag: String,
    #[serde(default)]
    pub checksums: Checksums,
}

/// Base64 checksums of a body, as S3 headers carry them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checksums {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
}

impl From<Checksum> for Checksums {
    fn from(c: Checksum) -> Checksums {
        Checksums {
            crc32: c.checksum_crc32,
            crc32c: c.checksum_crc32c,
            sha1: c.checksum_sha1,
            sha256: c.checksum_sha256,
            crc64nvme: c.checksum_crc64nvme,
        }
    }
}

/// Where an object's (or part's) bytes are.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Inline(Bytes),
    /// A file `data/<ab>/<id>` named by a random id.
    File(String),
}

/// An object's index record (one version of a key).
#[derive(Debug, Clone)]
pub(crate) struct ObjectRecord {
    pub key: String,
    /// The version id clients see ([`NULL_VERSION`] unless written while
    /// versioning was enabled).
    pub version: String,
    pub size: u64,
    /// Hex MD5 (or `<hex>-<parts>` for multipart objects), without quotes.
    pub etag: String,
    pub modified_ms: i64,
    pub meta: ObjectMeta,
    pub body: Body,
}

/// A delete marker: the version a delete leaves in a versioned bucket.
#[derive(Debug, Clone)]
pub(crate) struct DeleteMarker {
    pub version: String,
    pub modified_ms: i64,
}

/// One version of a key.
#[derive(Debug, Clone)]
pub(crate) enum Version {
    Object(Box<ObjectRecord>),
    Marker(DeleteMarker),
}

/// A bucket's CORS rule, as PutBucketCors gives it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CorsRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i32>,
}

/// What a bucket is configured with besides its name and owner.
#[derive(Debug, Clone)]
pub(crate) struct BucketConfig {
    pub owner: Option<String>,
    pub versioning: Versioning,
    pub acl: CannedAcl,
    /// `None`: no CORS configuration (GetBucketCors answers NoSuchCORSConfiguration).
    pub cors: Option<Vec<CorsRule>>,
    /// `None`: no tag set (GetBucketTagging answers NoSuchTagSet).
    pub tags: Option<Vec<Tag>>,
}

/// What a multipart upload keeps until it completes: the object's headers
/// and settings, the checksum algorithm its parts carry, who started it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct UploadMeta {
    #[serde(flatten)]
    pub object: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    /// The canonical id of the principal that created the upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
}

/// A completed upload's answer, kept for a while so that a repeated
/// CompleteMultipartUpload (a client retrying after a lost response) gets
/// the same answer instead of NoSuchUpload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Completion {
    pub etag: String,
    pub version: String,
    pub checksums: Checksums,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
    /// The part numbers the completion named.
    pub parts: Vec<u32>,
}
