//! The S3 operations over [`ObjectStore`]. s3s has already parsed the
//! request, checked its signature (header or presigned), decoded an
//! aws-chunked body and resolved path- or virtual-host style; every method
//! here is storage semantics only.
//!
//! One module per operation family; the [`S3`] impl below only routes each
//! operation to its family.

mod acl;
mod attributes;
mod buckets;
mod checksums;
mod conditions;
mod cors;
mod listing;
mod multipart;
mod objects;
mod tagging;

use crate::index::{self, buckets::Setting};
use crate::record::{BucketConfig, DeleteMarker, ObjectMeta, ObjectRecord, Version, NULL_VERSION};
use crate::store::ObjectStore;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result, S3};
use std::time::{Duration, UNIX_EPOCH};

/// S3's smallest part, except for the last one.
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;
const DEFAULT_MAX_KEYS: i32 = 1000;
/// GET bodies are read from their files in pieces of this size.
const READ_CHUNK: usize = 1024 * 1024;

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn unix_secs(ts: &Timestamp) -> i64 {
    time::OffsetDateTime::from(ts.clone()).unix_timestamp()
}

fn http_date(ts: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    ts.format(TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

/// The bucket, key and version (if any) a copy reads from.
fn copy_source(source: &CopySource) -> S3Result<(String, String, Option<String>)> {
    match source {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((
            bucket.to_string(),
            key.to_string(),
            version_id.as_ref().map(|v| v.to_string()),
        )),
        _ => Err(s3_error!(
            NotImplemented,
            "access point copy sources are not supported"
        )),
    }
}

/// A version id as responses show it: none for the `null` version (S3
/// shows none for objects written while versioning is off).
fn shown_version(version: &str) -> Option<String> {
    (version != NULL_VERSION).then(|| version.to_string())
}

fn header_value(value: &str) -> http::HeaderValue {
    http::HeaderValue::from_str(value).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

/// The error of reading a key whose latest version is a delete marker (or
/// that has none): NoSuchKey, saying which with `x-amz-delete-marker`.
fn no_such_key(marker: Option<&DeleteMarker>) -> S3Error {
    let mut err = s3_error!(NoSuchKey);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-amz-delete-marker",
        http::HeaderValue::from_static(if marker.is_some() { "true" } else { "false" }),
    );
    if let Some(marker) = marker {
        if let Some(version) = shown_version(&marker.version) {
            headers.insert("x-amz-version-id", header_value(&version));
        }
        if let Some(date) = http_date(&timestamp(marker.modified_ms)) {
            headers.insert(http::header::LAST_MODIFIED, header_value(&date));
        }
    }
    err.set_headers(headers);
    err
}

/// The configuration of `bucket`, which must exist.
async fn bucket_config(store: &ObjectStore, bucket: &str) -> S3Result<BucketConfig> {
    store
        .bucket_config(bucket)
        .await?
        .ok_or_else(|| s3_error!(NoSuchBucket))
}

impl ObjectStore {
    /// The object at `version` of `bucket/key` (the current one when
    /// `None`): NoSuchKey when the key has none (or its latest version is
    /// a delete marker), NoSuchVersion for an unknown version,
    /// MethodNotAllowed for a version that is a delete marker.
    async fn object_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> S3Result<ObjectRecord> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let wanted = version.map(str::to_string);
        let found = self
            .inner
            .index
            .read_async(move |conn| {
                if !index::buckets::exists(conn, &bucket)? {
                    return Err(s3_error!(NoSuchBucket).into());
                }
                index::objects::get(conn, &bucket, &key, wanted.as_deref())
            })
            .await?;
        match (found, version) {
            (Some(Version::Object(record)), _) => Ok(*record),
            (Some(Version::Marker(marker)), None) => Err(no_such_key(Some(&marker))),
            (Some(Version::Marker(marker)), Some(_)) => {
                let mut err =
                    s3_error!(MethodNotAllowed, "the specified version is a delete marker");
                let mut headers = http::HeaderMap::new();
                headers.insert(
                    "x-amz-delete-marker",
                    http::HeaderValue::from_static("true"),
                );
                headers.insert("x-amz-version-id", header_value(&marker.version));
                err.set_headers(headers);
                Err(err)
            }
            (None, None) => Err(no_such_key(None)),
            (None, Some(_)) => Err(s3_error!(NoSuchVersion)),
        }
    }

    async fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        match self.bucket(bucket).await? {
            Some(_) => Ok(()),
            None => Err(s3_error!(NoSuchBucket)),
        }
    }

    /// Changes an object version's metadata (tags, ACL) in one write;
    /// returns the version changed.
    async fn update_object_meta(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        change: impl FnOnce(&mut ObjectMeta) + Send + 'static,
    ) -> S3Result<String> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let version = version.map(str::to_string);
        let crash = self.clone();
        let changed = self
            .inner
            .index
            .write(move |conn| {
                let changed =
                    index::objects::update_meta(conn, &bucket, &key, version.as_deref(), |meta| {
                        change(meta);
                        Ok(())
                    })?;
                crash.crash_point("object_meta:uncommitted");
                Ok(changed)
            })
            .await?;
        Ok(changed)
    }

    /// Replaces (`Some`) or clears a bucket setting in one write.
    async fn set_bucket(
        &self,
        bucket: &str,
        setting: Setting,
        value: Option<String>,
    ) -> S3Result<()> {
        let bucket = bucket.to_string();
        self.inner
            .index
            .write(move |conn| index::buckets::set(conn, &bucket, setting, value.as_deref()))
            .await?;
        Ok(())
    }

    fn meta_from(
        content_type: Option<String>,
        content_encoding: Option<String>,
        content_disposition: Option<String>,
        content_language: Option<String>,
        cache_control: Option<String>,
        expires: Option<Timestamp>,
        metadata: Option<Metadata>,
    ) -> ObjectMeta {
        ObjectMeta {
            content_type,
            content_encoding: content_encoding.and_then(|e| without_aws_chunked(&e)),
            content_disposition,
            content_language,
            cache_control,
            expires: expires.as_ref().and_then(http_date),
            user: metadata.unwrap_or_default().into_iter().collect(),
            ..ObjectMeta::default()
        }
    }
}

/// A Content-Encoding without `aws-chunked`, which describes the transfer
/// (decoded by s3s), not the object; none when nothing else is left.
fn without_aws_chunked(encoding: &str) -> Option<String> {
    let kept: Vec<&str> = encoding
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

#[async_trait::async_trait]
impl S3 for ObjectStore {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        buckets::list_buckets(self, req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        buckets::create_bucket(self, req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        buckets::head_bucket(self, req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        buckets::delete_bucket(self, req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        buckets::get_bucket_location(self, req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        buckets::get_bucket_versioning(self, req).await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        buckets::put_bucket_versioning(self, req).await
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        tagging::get_bucket_tagging(self, req).await
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        tagging::put_bucket_tagging(self, req).await
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        tagging::delete_bucket_tagging(self, req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        tagging::get_object_tagging(self, req).await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        tagging::put_object_tagging(self, req).await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        tagging::delete_object_tagging(self, req).await
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        cors::get_bucket_cors(self, req).await
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        cors::put_bucket_cors(self, req).await
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        cors::delete_bucket_cors(self, req).await
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        acl::get_bucket_acl(self, req).await
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        acl::put_bucket_acl(self, req).await
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        acl::get_object_acl(self, req).await
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        acl::put_object_acl(self, req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        objects::put_object(self, req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        objects::get_object(self, req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        objects::head_object(self, req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        objects::delete_object(self, req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        objects::delete_objects(self, req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        objects::copy_object(self, req).await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        attributes::get_object_attributes(self, req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        listing::list_objects(self, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        listing::list_objects_v2(self, req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        listing::list_object_versions(self, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create_multipart_upload(self, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        multipart::upload_part_copy(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete_multipart_upload(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort_multipart_upload(self, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_multipart_uploads(self, req).await
    }
}
