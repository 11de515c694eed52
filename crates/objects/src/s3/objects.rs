//! Object operations: put, get, head, delete (one or many), copy.

use super::checksums::{checksums_of, declared_checksums, hasher_for, verify};
use super::conditions::{
    copy_source_conditions, etag_matches, not_modified, precondition_failed, read_conditions,
    Conditions,
};
use super::{authorize, copy_source, parse_http_date, timestamp, READ_CHUNK};
use crate::access::principal;
use crate::error::Error;
use crate::index;
use crate::record::{Body, Checksums, ObjectMeta, ObjectRecord};
use crate::store::{now_ms, ObjectStore};
use bytes::Bytes;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

/// What GetObject and HeadObject answer about an object: the conditions
/// checked and the range resolved once, so a HEAD describes exactly what
/// the same GET would send.
struct ObjectView {
    record: ObjectRecord,
    /// The bytes served: the requested range, or the whole body.
    range: std::ops::Range<u64>,
    /// `Content-Range`, for ranged requests only.
    content_range: Option<String>,
}

impl ObjectView {
    pub(super) fn new(
        record: ObjectRecord,
        range: Option<&Range>,
        conditions: Conditions<'_>,
    ) -> S3Result<ObjectView> {
        conditions.check(&record, not_modified)?;
        let (range, content_range) = match range {
            None => (0..record.size, None),
            Some(range) => {
                let r = range
                    .check(record.size)
                    .map_err(|_| s3_error!(InvalidRange))?;
                let header = format!(
                    "bytes {}-{}/{}",
                    r.start,
                    r.end.saturating_sub(1),
                    record.size
                );
                (r, Some(header))
            }
        };
        Ok(ObjectView {
            record,
            range,
            content_range,
        })
    }
}

/// Builds a GetObjectOutput or HeadObjectOutput from an [`ObjectView`] plus
/// the output's own fields. The two s3s types share these field names but
/// no trait, so the shared part is written once here. Checksums describe the
/// whole object, so a ranged answer carries none.
macro_rules! object_output {
    ($output:ident, $view:expr, { $($field:ident: $value:expr),* $(,)? }) => {{
        let ObjectView { record, range, content_range } = $view;
        let mut meta = record.meta;
        let sums = if content_range.is_none() {
            std::mem::take(&mut meta.checksums)
        } else {
            Checksums::default()
        };
        $output {
            $($field: $value,)*
            content_length: Some(i64::try_from(range.end - range.start).unwrap_or(i64::MAX)),
            content_range,
            accept_ranges: Some("bytes".into()),
            last_modified: Some(timestamp(record.modified_ms)),
            e_tag: Some(ETag::Strong(record.etag)),
            content_type: meta.content_type,
            content_encoding: meta.content_encoding,
            content_disposition: meta.content_disposition,
            content_language: meta.content_language,
            cache_control: meta.cache_control,
            expires: meta.expires.as_deref().and_then(parse_http_date),
            metadata: (!meta.user.is_empty()).then(|| meta.user.into_iter().collect()),
            parts_count: meta.parts.and_then(|p| i32::try_from(p).ok()),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            checksum_crc64nvme: sums.crc64nvme,
            ..Default::default()
        }
    }};
}

impl ObjectStore {
    /// Opens the body of `bucket/key` for reading; the record is read again
    /// if its file was replaced between the read and the open.
    async fn open_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> S3Result<(ObjectRecord, Option<std::fs::File>)> {
        for _ in 0..3 {
            let record = self.object(bucket, key).await?;
            let Body::File(id) = &record.body else {
                return Ok((record, None));
            };
            match std::fs::File::open(self.data_path(id)) {
                Ok(file) => return Ok((record, Some(file))),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(Error::from(err).into()),
            }
        }
        Err(s3_error!(
            InternalError,
            "object changed too often while being opened"
        ))
    }

    /// Records `record` in `bucket` after `check` (run inside the write,
    /// against the current object) passes, then removes the replaced body.
    async fn commit_object(
        &self,
        bucket: &str,
        record: ObjectRecord,
        check: impl FnOnce(Option<&ObjectRecord>) -> S3Result<()> + Send + 'static,
    ) -> S3Result<()> {
        let bucket_name = bucket.to_string();
        let body = record.body.clone();
        self.crash_point("object_write:body_durable");
        let result = self
            .inner
            .index
            .write(move |conn| {
                let current = index::objects::read(conn, &bucket_name, &record.key)?;
                check(current.as_ref())?;
                index::objects::write(conn, &bucket_name, &record)
            })
            .await;
        match result {
            Ok(old) => {
                self.crash_point("object_write:recorded");
                self.remove_files(old.into_iter().collect()).await;
                Ok(())
            }
            Err(err) => {
                self.discard(&body).await;
                Err(err.into())
            }
        }
    }
}

pub(super) async fn put_object(
    store: &ObjectStore,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let input = req.input;
    let Some(body) = input.body else {
        return Err(s3_error!(IncompleteBody));
    };
    store.require_bucket(&input.bucket).await?;
    let headers = checksums_of(
        input.checksum_crc32,
        input.checksum_crc32c,
        input.checksum_sha1,
        input.checksum_sha256,
        input.checksum_crc64nvme,
    );
    let hasher = hasher_for(input.checksum_algorithm.as_ref(), &headers)?;
    let received = store.receive(body, hasher, true).await?;
    let declared = declared_checksums(headers, req.trailing_headers);
    let verified = declared.and_then(|d| verify(&received, input.content_md5.as_deref(), &d));
    let checksums = match verified {
        Ok(c) => c,
        Err(err) => {
            store.discard(&received.body).await;
            return Err(err);
        }
    };
    let mut meta = ObjectStore::meta_from(
        input.content_type,
        input.content_encoding,
        input.content_disposition,
        input.content_language,
        input.cache_control,
        input.expires,
        input.metadata,
    );
    meta.checksums = checksums.clone();
    let record = ObjectRecord {
        key: input.key,
        size: received.size,
        etag: hex::encode(received.md5),
        modified_ms: now_ms(),
        meta,
        body: received.body,
    };
    let etag = record.etag.clone();
    let (if_match, if_none_match) = (input.if_match, input.if_none_match);
    store
        .commit_object(&input.bucket, record, move |current| {
            match (current, &if_match) {
                (None, Some(_)) => return Err(s3_error!(NoSuchKey)),
                (Some(cur), Some(cond)) if !etag_matches(cond, &cur.etag) => {
                    return Err(precondition_failed())
                }
                _ => {}
            }
            if let (Some(cur), Some(cond)) = (current, &if_none_match) {
                if etag_matches(cond, &cur.etag) {
                    return Err(precondition_failed());
                }
            }
            Ok(())
        })
        .await?;
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(ETag::Strong(etag)),
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        checksum_crc64nvme: checksums.crc64nvme,
        ..Default::default()
    }))
}

pub(super) async fn get_object(
    store: &ObjectStore,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let input = req.input;
    let (record, file) = store.open_object(&input.bucket, &input.key).await?;
    let view = ObjectView::new(record, input.range.as_ref(), read_conditions!(input))?;
    let body = match (&view.record.body, file) {
        (Body::Inline(bytes), _) => {
            let slice: Bytes = bytes.slice(
                usize::try_from(view.range.start).unwrap_or(0)
                    ..usize::try_from(view.range.end).unwrap_or(0),
            );
            StreamingBlob::from(s3s::Body::from(slice))
        }
        (Body::File(_), Some(file)) => {
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            let mut file = tokio::fs::File::from_std(file);
            file.seek(std::io::SeekFrom::Start(view.range.start))
                .await
                .map_err(Error::from)?;
            let reader = file.take(view.range.end - view.range.start);
            StreamingBlob::wrap(tokio_util::io::ReaderStream::with_capacity(
                reader, READ_CHUNK,
            ))
        }
        (Body::File(_), None) => return Err(s3_error!(InternalError, "object body vanished")),
    };
    Ok(S3Response::new(object_output!(GetObjectOutput, view, {
        body: Some(body),
    })))
}

pub(super) async fn head_object(
    store: &ObjectStore,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = req.input;
    let record = store.object(&input.bucket, &input.key).await?;
    let view = ObjectView::new(record, input.range.as_ref(), read_conditions!(input))?;
    Ok(S3Response::new(object_output!(HeadObjectOutput, view, {})))
}

pub(super) async fn delete_object(
    store: &ObjectStore,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let (bucket, key) = (req.input.bucket, req.input.key);
    let removed = store
        .inner
        .index
        .write(move |conn| {
            if !index::buckets::exists(conn, &bucket)? {
                return Err(s3_error!(NoSuchBucket).into());
            }
            index::objects::delete(conn, &bucket, &key)
        })
        .await?;
    store.crash_point("object_delete:recorded");
    store.remove_files(removed.into_iter().collect()).await;
    Ok(S3Response::new(DeleteObjectOutput::default()))
}

pub(super) async fn delete_objects(
    store: &ObjectStore,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let bucket = req.input.bucket;
    let quiet = req.input.delete.quiet.unwrap_or(false);
    let keys: Vec<String> = req
        .input
        .delete
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    if keys.len() > 1000 {
        return Err(s3_error!(
            MalformedXML,
            "at most 1000 keys may be deleted per request"
        ));
    }
    let deleted_keys = keys.clone();
    let files = store
        .inner
        .index
        .write(move |conn| {
            if !index::buckets::exists(conn, &bucket)? {
                return Err(s3_error!(NoSuchBucket).into());
            }
            let mut files = Vec::new();
            for key in &keys {
                files.extend(index::objects::delete(conn, &bucket, key)?);
            }
            Ok(files)
        })
        .await?;
    store.crash_point("object_delete:recorded");
    store.remove_files(files).await;
    let deleted = (!quiet).then(|| {
        deleted_keys
            .into_iter()
            .map(|key| DeletedObject {
                key: Some(key),
                ..Default::default()
            })
            .collect()
    });
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted,
        ..Default::default()
    }))
}

pub(super) async fn copy_object(
    store: &ObjectStore,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let who = principal(&req.extensions);
    let input = req.input;
    let (src_bucket, src_key) = copy_source(&input.copy_source)?;
    authorize(store, &who, &src_bucket).await?;
    store.require_bucket(&input.bucket).await?;
    let source = store.object(&src_bucket, &src_key).await?;
    copy_source_conditions!(input).check(&source, precondition_failed)?;
    let replace = input
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
    if src_bucket == input.bucket && src_key == input.key && !replace {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let mut meta = if replace {
        ObjectStore::meta_from(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires,
            input.metadata,
        )
    } else {
        ObjectMeta {
            checksums: Checksums::default(),
            parts: None,
            ..source.meta.clone()
        }
    };
    let mut wanted = source.meta.checksums.clone();
    if source.meta.parts.is_some() {
        wanted = Checksums::default();
    }
    let hasher = hasher_for(input.checksum_algorithm.as_ref(), &wanted)?;
    let received = store
        .assemble(vec![(source.body.clone(), 0..source.size)], hasher, true)
        .await?;
    meta.checksums = Checksums::from(received.checksum.clone());
    let modified_ms = now_ms();
    let record = ObjectRecord {
        key: input.key,
        size: received.size,
        etag: hex::encode(received.md5),
        modified_ms,
        meta,
        body: received.body,
    };
    let etag = record.etag.clone();
    let sums = record.meta.checksums.clone();
    store
        .commit_object(&input.bucket, record, |_| Ok(()))
        .await?;
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(timestamp(modified_ms)),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            checksum_crc64nvme: sums.crc64nvme,
            ..Default::default()
        }),
        ..Default::default()
    }))
}
