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

/// An object's index record.
#[derive(Debug, Clone)]
pub(crate) struct ObjectRecord {
    pub key: String,
    pub size: u64,
    /// Hex MD5 (or `<hex>-<parts>` for multipart objects), without quotes.
    pub etag: String,
    pub modified_ms: i64,
    pub meta: ObjectMeta,
    pub body: Body,
}
