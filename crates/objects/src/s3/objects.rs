//! Object operations: put, get, head, delete (one or many), copy; each on
//! a version when asked, as the bucket's versioning state says otherwise.

use super::checksums::{checksums_of, declared_checksums, hasher_for, verify, FULL_OBJECT};
use super::conditions::{
    copy_source_conditions, not_modified, precondition_failed, read_conditions, Conditions,
    WriteConditions,
};
use super::{
    acl, copy_source, header_value, parse_http_date, shown_version, tagging, timestamp, READ_CHUNK,
};
use crate::access::{caller, Caller};
use crate::error::Error;
use crate::index::{self, objects::Written};
use crate::record::{Body, Checksums, ObjectMeta, ObjectRecord, PartInfo, NULL_VERSION};
use crate::store::{now_ms, ObjectStore};
use bytes::Bytes;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

/// What GetObject and HeadObject answer about an object: the conditions
/// checked and the range (or part) resolved once, so a HEAD describes
/// exactly what the same GET would send.
struct ObjectView {
    record: ObjectRecord,
    /// The bytes served: the requested range or part, or the whole body.
    range: std::ops::Range<u64>,
    /// `Content-Range`, for ranged and part requests only.
    content_range: Option<String>,
    /// Whether to show the object's checksums (`x-amz-checksum-mode:
    /// ENABLED`, whole object only).
    checksums: bool,
}

impl ObjectView {
    fn new(
        record: ObjectRecord,
        range: Option<&Range>,
        part: Option<(std::ops::Range<u64>, String)>,
        conditions: Conditions<'_>,
        checksum_mode: Option<&ChecksumMode>,
    ) -> S3Result<ObjectView> {
        conditions.check(&record, not_modified)?;
        let (range, content_range, etag) = match (range, part) {
            (Some(_), Some(_)) => {
                return Err(s3_error!(
                    InvalidRequest,
                    "Range and partNumber cannot be given together"
                ))
            }
            (None, None) => (0..record.size, None, None),
            (Some(range), None) => {
                let r = range
                    .check(record.size)
                    .map_err(|_| s3_error!(InvalidRange))?;
                (r, Some(()), None)
            }
            (None, Some((r, etag))) => (r, Some(()), Some(etag)),
        };
        let content_range = content_range.map(|()| {
            format!(
                "bytes {}-{}/{}",
                range.start,
                range.end.saturating_sub(1),
                record.size
            )
        });
        let checksums = content_range.is_none()
            && checksum_mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
        let mut record = record;
        if let Some(etag) = etag {
            record.etag = etag;
        }
        Ok(ObjectView {
            record,
            range,
            content_range,
            checksums,
        })
    }

    /// The headers s3s's output types do not carry as roost writes them:
    /// user metadata (Latin-1 bytes where possible, which is how HTTP
    /// clients read header values; RFC 2047 beyond it) and the tag count.
    fn headers(&self) -> http::HeaderMap {
        let meta = &self.record.meta;
        let mut headers = http::HeaderMap::new();
        for (name, value) in &meta.user {
            if let Ok(name) = http::HeaderName::try_from(format!("x-amz-meta-{name}")) {
                headers.insert(name, metadata_value(value));
            }
        }
        if !meta.tags.is_empty() {
            headers.insert(
                "x-amz-tagging-count",
                header_value(&meta.tags.len().to_string()),
            );
        }
        headers
    }
}

/// A user metadata value as a header value: ASCII as is, Latin-1 text as
/// its Latin-1 bytes, anything else RFC 2047 encoded (as S3 does).
fn metadata_value(value: &str) -> http::HeaderValue {
    use base64::Engine as _;
    // `from_str` would take UTF-8 bytes too (obs-text), which clients
    // read back as Latin-1: only plain ASCII goes through as is.
    if value.is_ascii() {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            return v;
        }
    }
    if value.chars().all(|c| (c as u32) <= 0xFF && !c.is_control()) {
        let latin1: Vec<u8> = value.chars().map(|c| c as u32 as u8).collect();
        if let Ok(v) = http::HeaderValue::from_bytes(&latin1) {
            return v;
        }
    }
    header_value(&format!(
        "=?UTF-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(value)
    ))
}

/// Builds a GetObjectOutput or HeadObjectOutput from an [`ObjectView`] plus
/// the output's own fields. The two s3s types share these field names but
/// no trait, so the shared part is written once here.
macro_rules! object_output {
    ($output:ident, $view:expr, { $($field:ident: $value:expr),* $(,)? }) => {{
        let ObjectView { record, range, content_range, checksums } = $view;
        let mut meta = record.meta;
        let sums = if checksums {
            std::mem::take(&mut meta.checksums)
        } else {
            Checksums::default()
        };
        let checksum_type = (sums != Checksums::default())
            .then(|| meta.checksum_type.clone().unwrap_or_else(|| FULL_OBJECT.to_string()))
            .map(ChecksumType::from);
        $output {
            $($field: $value,)*
            content_length: Some(i64::try_from(range.end - range.start).unwrap_or(i64::MAX)),
            content_range,
            accept_ranges: Some("bytes".into()),
            last_modified: Some(timestamp(record.modified_ms)),
            e_tag: Some(ETag::Strong(record.etag)),
            version_id: shown_version(&record.version),
            content_type: meta.content_type,
            content_encoding: meta.content_encoding,
            content_disposition: meta.content_disposition,
            content_language: meta.content_language,
            cache_control: meta.cache_control,
            expires: meta.expires.as_deref().and_then(parse_http_date),
            parts_count: meta.parts.and_then(|p| i32::try_from(p).ok()),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_type,
            ..Default::default()
        }
    }};
}

/// The bytes and ETag of part `number` of `record` (`partNumber` on GET
/// and HEAD). An object not made by a multipart upload is its own part 1.
fn part_range(
    record: &ObjectRecord,
    parts: Option<&[PartInfo]>,
    number: i32,
) -> S3Result<(std::ops::Range<u64>, String)> {
    let invalid = || s3_error!(InvalidPart, "the object has no part {number}");
    let Some(count) = record.meta.parts else {
        return match number {
            1 => Ok((0..record.size, record.etag.clone())),
            _ => Err(invalid()),
        };
    };
    if number < 1 || i64::from(number) > i64::from(count) {
        return Err(invalid());
    }
    let Some(parts) = parts else {
        return Err(s3_error!(
            NotImplemented,
            "the object was uploaded before roost kept its part layout"
        ));
    };
    let index = usize::try_from(number - 1).map_err(|_| invalid())?;
    let start: u64 = parts[..index.min(parts.len())].iter().map(|p| p.size).sum();
    let part = parts.get(index).ok_or_else(invalid)?;
    Ok((start..start + part.size, part.etag.clone()))
}

impl ObjectStore {
    /// The bytes and ETag of part `number` of `record` (of `bucket/key`),
    /// when a GET or HEAD asks for one.
    async fn part_of(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        number: Option<i32>,
    ) -> S3Result<Option<(std::ops::Range<u64>, String)>> {
        let Some(number) = number else {
            return Ok(None);
        };
        let parts = self
            .object_parts(bucket, key, Some(&record.version))
            .await?;
        part_range(record, parts.as_deref(), number).map(Some)
    }

    /// Opens the body of a version of `bucket/key` for reading; the record
    /// is read again if its file was replaced between the read and the open.
    async fn open_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> S3Result<(ObjectRecord, Option<std::fs::File>)> {
        for _ in 0..3 {
            let record = self.object_version(bucket, key, version).await?;
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

    /// The part layout of a multipart object version (for `partNumber`).
    pub(super) async fn object_parts(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> S3Result<Option<Vec<PartInfo>>> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let version = version.map(str::to_string);
        Ok(self
            .inner
            .index
            .read_async(move |conn| index::objects::parts(conn, &bucket, &key, version.as_deref()))
            .await?)
    }

    /// Records `record` as the new latest version of its key (with the
    /// part layout of a multipart object) after `check` (run inside the
    /// write, against the current object) passes, then removes the body it
    /// replaced. The record's version id is set as the bucket's versioning
    /// state says.
    pub(super) async fn commit_object(
        &self,
        bucket: &str,
        record: ObjectRecord,
        parts: Option<Vec<PartInfo>>,
        check: impl FnOnce(Option<&ObjectRecord>) -> S3Result<()> + Send + 'static,
    ) -> S3Result<Written> {
        let bucket_name = bucket.to_string();
        let body = record.body.clone();
        self.crash_point("object_write:body_durable");
        let result = self
            .inner
            .index
            .write(move |conn| {
                let current = index::objects::read(conn, &bucket_name, &record.key)?;
                check(current.as_ref())?;
                let mut record = record;
                index::objects::write(conn, &bucket_name, &mut record, parts.as_deref())
            })
            .await;
        match result {
            Ok(written) => {
                self.crash_point("object_write:recorded");
                self.remove_files(written.replaced.clone()).await;
                Ok(written)
            }
            Err(err) => {
                self.discard(&body).await;
                Err(err.into())
            }
        }
    }

    /// Deletes `bucket/key` (a version of it, or as versioning says), then
    /// removes the bodies no row names any more.
    async fn delete_key(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        if_match: Option<ETagCondition>,
    ) -> S3Result<index::objects::Deleted> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let version = version.map(str::to_string);
        let deleted = self
            .inner
            .index
            .write(move |conn| {
                if let Some(cond) = &if_match {
                    let current = index::objects::read(conn, &bucket, &key)?;
                    if let Some(cur) = current {
                        if !super::conditions::etag_matches(cond, &cur.etag) {
                            return Err(s3_error!(PreconditionFailed).into());
                        }
                    }
                }
                index::objects::delete(conn, &bucket, &key, version.as_deref())
            })
            .await?;
        self.crash_point("object_delete:recorded");
        self.remove_files(deleted.files.clone()).await;
        Ok(deleted)
    }
}

/// The error for a caller that may not read an object it asked for.
fn denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "this request may not read the object")
}

/// Refuses a read of the object `record` by `caller` unless the caller
/// owns the bucket or the object's ACL lets it read.
fn check_read(caller: &Caller, record: &ObjectRecord) -> S3Result<()> {
    if caller.may_read(record.meta.acl) {
        Ok(())
    } else {
        Err(denied())
    }
}

/// What a caller that does not own the bucket learns of a missing object:
/// NoSuchKey where the bucket's ACL lets it list, AccessDenied otherwise
/// (so a private bucket does not reveal which keys exist).
fn hide_missing(caller: &Caller, err: s3s::S3Error) -> s3s::S3Error {
    let missing = matches!(
        err.code(),
        s3s::S3ErrorCode::NoSuchKey | s3s::S3ErrorCode::NoSuchVersion
    );
    if missing && !caller.may_list() {
        denied()
    } else {
        err
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
    let acl = acl::new_object_acl!(input)?;
    let tags = tagging::header_tags(input.tagging.as_deref())?;
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
    meta.tags = tags;
    meta.acl = acl;
    let record = ObjectRecord {
        key: input.key,
        version: NULL_VERSION.to_string(),
        size: received.size,
        etag: hex::encode(received.md5),
        modified_ms: now_ms(),
        meta,
        body: received.body,
    };
    let etag = record.etag.clone();
    let conditions = WriteConditions {
        if_match: input.if_match,
        if_none_match: input.if_none_match,
    };
    let written = store
        .commit_object(&input.bucket, record, None, move |current| {
            conditions.check(current)
        })
        .await?;
    let checksum_type =
        (checksums != Checksums::default()).then(|| ChecksumType::from_static(FULL_OBJECT));
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(ETag::Strong(etag)),
        version_id: shown_version(&written.version),
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        checksum_crc64nvme: checksums.crc64nvme,
        checksum_type,
        ..Default::default()
    }))
}

pub(super) async fn get_object(
    store: &ObjectStore,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let caller = caller(&req.extensions);
    let input = req.input;
    let (record, file) = store
        .open_object(&input.bucket, &input.key, input.version_id.as_deref())
        .await
        .map_err(|e| hide_missing(&caller, e))?;
    check_read(&caller, &record)?;
    let part = store
        .part_of(&input.bucket, &input.key, &record, input.part_number)
        .await?;
    let view = ObjectView::new(
        record,
        input.range.as_ref(),
        part,
        read_conditions!(input),
        input.checksum_mode.as_ref(),
    )?;
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
    let headers = view.headers();
    let output = object_output!(GetObjectOutput, view, {
        body: Some(body),
    });
    Ok(S3Response::with_headers(output, headers))
}

pub(super) async fn head_object(
    store: &ObjectStore,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let caller = caller(&req.extensions);
    let input = req.input;
    let record = store
        .object_version(&input.bucket, &input.key, input.version_id.as_deref())
        .await
        .map_err(|e| hide_missing(&caller, e))?;
    check_read(&caller, &record)?;
    let part = store
        .part_of(&input.bucket, &input.key, &record, input.part_number)
        .await?;
    let view = ObjectView::new(
        record,
        input.range.as_ref(),
        part,
        read_conditions!(input),
        input.checksum_mode.as_ref(),
    )?;
    let headers = view.headers();
    Ok(S3Response::with_headers(
        object_output!(HeadObjectOutput, view, {}),
        headers,
    ))
}

pub(super) async fn delete_object(
    store: &ObjectStore,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let input = req.input;
    if input.if_match_last_modified_time.is_some() || input.if_match_size.is_some() {
        return Err(s3_error!(
            NotImplemented,
            "x-amz-if-match-last-modified-time and x-amz-if-match-size are not supported"
        ));
    }
    let deleted = store
        .delete_key(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            input.if_match,
        )
        .await?;
    Ok(S3Response::with_status(
        DeleteObjectOutput {
            delete_marker: deleted.marker.then_some(true),
            version_id: deleted.version,
            ..Default::default()
        },
        http::StatusCode::NO_CONTENT,
    ))
}

pub(super) async fn delete_objects(
    store: &ObjectStore,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let bucket = req.input.bucket;
    let quiet = req.input.delete.quiet.unwrap_or(false);
    let objects = req.input.delete.objects;
    if objects.len() > 1000 {
        return Err(s3_error!(
            MalformedXML,
            "at most 1000 keys may be deleted per request"
        ));
    }
    if objects
        .iter()
        .any(|o| o.e_tag.is_some() || o.size.is_some() || o.last_modified_time.is_some())
    {
        return Err(s3_error!(
            NotImplemented,
            "conditional deletes (ETag, Size, LastModifiedTime) are not supported"
        ));
    }
    let targets: Vec<(String, Option<String>)> =
        objects.into_iter().map(|o| (o.key, o.version_id)).collect();
    let wanted = targets.clone();
    let results = store
        .inner
        .index
        .write(move |conn| {
            let mut results = Vec::with_capacity(wanted.len());
            for (key, version) in &wanted {
                results.push(index::objects::delete(
                    conn,
                    &bucket,
                    key,
                    version.as_deref(),
                )?);
            }
            Ok(results)
        })
        .await?;
    store.crash_point("object_delete:recorded");
    store
        .remove_files(results.iter().flat_map(|d| d.files.clone()).collect())
        .await;
    let deleted = (!quiet).then(|| {
        targets
            .into_iter()
            .zip(results)
            .map(|((key, asked), done)| DeletedObject {
                key: Some(key),
                delete_marker: done.marker.then_some(true),
                delete_marker_version_id: match (&asked, done.marker) {
                    (None, true) => done.version.clone(),
                    _ => None,
                },
                version_id: asked,
            })
            .collect()
    });
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted,
        ..Default::default()
    }))
}

/// Reads a copy source for `caller`: the bucket's owner may copy any
/// object of it, anyone else an object whose ACL lets them read it.
pub(super) async fn readable_source(
    store: &ObjectStore,
    caller: &Caller,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> S3Result<ObjectRecord> {
    let config = super::bucket_config(store, bucket).await?;
    let owner = caller.principal.may_use(config.owner.as_deref());
    let source = store.object_version(bucket, key, version).await;
    match source {
        Ok(record) if owner || record.meta.acl.grants_read(caller.is_signed()) => Ok(record),
        Ok(_) => Err(s3_error!(
            AccessDenied,
            "this request may not read the copy source"
        )),
        Err(err) if owner || config.acl.grants_read(caller.is_signed()) => Err(err),
        Err(_) => Err(s3_error!(
            AccessDenied,
            "this request may not read the copy source"
        )),
    }
}

pub(super) async fn copy_object(
    store: &ObjectStore,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let caller = caller(&req.extensions);
    let input = req.input;
    let (src_bucket, src_key, src_version) = copy_source(&input.copy_source)?;
    store.require_bucket(&input.bucket).await?;
    let source = readable_source(
        store,
        &caller,
        &src_bucket,
        &src_key,
        src_version.as_deref(),
    )
    .await?;
    copy_source_conditions!(input).check(&source, precondition_failed)?;
    let replace = input
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
    if src_bucket == input.bucket && src_key == input.key && !replace {
        let current = store.object_version(&src_bucket, &src_key, None).await.ok();
        if current.is_some_and(|c| c.version == source.version) {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
    }
    let acl = acl::new_object_acl!(input)?;
    let tags = match input.tagging_directive.as_ref().map(|d| d.as_str()) {
        Some(TaggingDirective::REPLACE) => tagging::header_tags(input.tagging.as_deref())?,
        _ => source.meta.tags.clone(),
    };
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
            checksum_type: None,
            ..source.meta.clone()
        }
    };
    meta.tags = tags;
    meta.acl = acl;
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
        version: NULL_VERSION.to_string(),
        size: received.size,
        etag: hex::encode(received.md5),
        modified_ms,
        meta,
        body: received.body,
    };
    let etag = record.etag.clone();
    let sums = record.meta.checksums.clone();
    let written = store
        .commit_object(&input.bucket, record, None, |_| Ok(()))
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
        version_id: shown_version(&written.version),
        copy_source_version_id: shown_version(&source.version),
        ..Default::default()
    }))
}
