//! Multipart uploads: create, upload part (and part copy), complete,
//! abort, list parts, list uploads.

use super::checksums::{checksums_of, composite, declared_checksums, hasher_for, verify};
use super::conditions::{copy_source_conditions, precondition_failed, Conditions};
use super::{authorize, copy_source, timestamp, MAX_PART_NUMBER, MIN_PART_SIZE};
use crate::access::principal;
use crate::error::Error;
use crate::index::{self, uploads::PartRow};
use crate::record::{Body, Checksums, ObjectRecord};
use crate::store::{now_ms, random_id, ObjectStore, Received};
use s3s::checksum::ChecksumHasher;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

fn check_part_number(n: i32) -> S3Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "part number must be an integer between 1 and 10000, inclusive"
        ))
    }
}

/// Parses `bytes=first-last` of UploadPartCopy.
fn copy_range(range: Option<&str>, size: u64) -> S3Result<std::ops::Range<u64>> {
    let Some(range) = range else {
        return Ok(0..size);
    };
    let parsed = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    match parsed {
        Some((first, last)) if first <= last && last < size => Ok(first..last + 1),
        _ => Err(s3_error!(
            InvalidRange,
            "x-amz-copy-source-range must be bytes=first-last within the source object"
        )),
    }
}

pub(super) async fn create_multipart_upload(
    store: &ObjectStore,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let input = req.input;
    store.require_bucket(&input.bucket).await?;
    let meta = ObjectStore::meta_from(
        input.content_type,
        input.content_encoding,
        input.content_disposition,
        input.content_language,
        input.cache_control,
        input.expires,
        input.metadata,
    );
    hasher_for(input.checksum_algorithm.as_ref(), &Checksums::default())?;
    let id = random_id();
    let (bucket, key, upload) = (input.bucket.clone(), input.key.clone(), id.clone());
    let meta_text = serde_json::to_string(&meta).map_err(Error::from)?;
    store
        .inner
        .index
        .write(move |conn| {
            index::uploads::create(conn, &upload, &bucket, &key, now_ms(), &meta_text)
        })
        .await?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(id),
        checksum_algorithm: input.checksum_algorithm,
        ..Default::default()
    }))
}

pub(super) async fn upload_part(
    store: &ObjectStore,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let input = req.input;
    check_part_number(input.part_number)?;
    let Some(body) = input.body else {
        return Err(s3_error!(IncompleteBody));
    };
    store
        .check_upload(&input.bucket, &input.key, &input.upload_id)
        .await?;
    let headers = checksums_of(
        input.checksum_crc32,
        input.checksum_crc32c,
        input.checksum_sha1,
        input.checksum_sha256,
        input.checksum_crc64nvme,
    );
    let hasher = hasher_for(input.checksum_algorithm.as_ref(), &headers)?;
    let received = store.receive(body, hasher, false).await?;
    let declared = declared_checksums(headers, req.trailing_headers);
    let checksums = match declared.and_then(|d| verify(&received, input.content_md5.as_deref(), &d))
    {
        Ok(c) => c,
        Err(err) => {
            store.discard(&received.body).await;
            return Err(err);
        }
    };
    let etag = hex::encode(received.md5);
    store
        .commit_part(
            &input.bucket,
            &input.key,
            &input.upload_id,
            input.part_number,
            &received,
            &etag,
            &checksums,
        )
        .await?;
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(ETag::Strong(etag)),
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        checksum_crc64nvme: checksums.crc64nvme,
        ..Default::default()
    }))
}

pub(super) async fn upload_part_copy(
    store: &ObjectStore,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let who = principal(&req.extensions);
    let input = req.input;
    check_part_number(input.part_number)?;
    let (src_bucket, src_key) = copy_source(&input.copy_source)?;
    authorize(store, &who, &src_bucket).await?;
    store
        .check_upload(&input.bucket, &input.key, &input.upload_id)
        .await?;
    let source = store.object(&src_bucket, &src_key).await?;
    copy_source_conditions!(input).check(&source, precondition_failed)?;
    let range = copy_range(input.copy_source_range.as_deref(), source.size)?;
    let received = store
        .assemble(
            vec![(source.body.clone(), range)],
            ChecksumHasher::default(),
            false,
        )
        .await?;
    let etag = hex::encode(received.md5);
    let checksums = Checksums::default();
    store
        .commit_part(
            &input.bucket,
            &input.key,
            &input.upload_id,
            input.part_number,
            &received,
            &etag,
            &checksums,
        )
        .await?;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(timestamp(now_ms())),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

pub(super) async fn complete_multipart_upload(
    store: &ObjectStore,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let input = req.input;
    let requested: Vec<CompletedPart> = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default();
    if requested.is_empty() {
        return Err(s3_error!(MalformedXML, "the request names no parts"));
    }
    let (bucket, key, upload) = (
        input.bucket.clone(),
        input.key.clone(),
        input.upload_id.clone(),
    );
    let (meta, stored) = store
        .inner
        .index
        .read_async(move |conn| {
            let meta =
                index::uploads::upload_of(index::uploads::read(conn, &upload)?, &bucket, &key)?;
            Ok((meta, index::uploads::parts(conn, &upload)?))
        })
        .await?;
    let mut chosen: Vec<&PartRow> = Vec::with_capacity(requested.len());
    let mut previous = 0;
    for (i, part) in requested.iter().enumerate() {
        let number = part.part_number.unwrap_or(0);
        if number <= previous {
            return Err(s3_error!(InvalidPartOrder));
        }
        previous = number;
        let found = stored
            .iter()
            .find(|p| p.number == number)
            .ok_or_else(|| s3_error!(InvalidPart, "part {number} was not uploaded"))?;
        if let Some(etag) = &part.e_tag {
            if etag.value() != found.etag {
                return Err(s3_error!(
                    InvalidPart,
                    "part {number}'s ETag does not match"
                ));
            }
        }
        if i + 1 < requested.len() && found.size < MIN_PART_SIZE {
            return Err(s3_error!(
                EntityTooSmall,
                "part {number} is smaller than 5 MiB and not the last part"
            ));
        }
        chosen.push(found);
    }
    let mut md5s = Vec::with_capacity(chosen.len() * 16);
    for part in &chosen {
        md5s.extend(
            hex::decode(&part.etag)
                .map_err(|_| s3_error!(InternalError, "stored part ETag is corrupt"))?,
        );
    }
    let etag = format!(
        "{}-{}",
        hex::encode(<s3s::crypto::Md5 as s3s::crypto::Checksum>::checksum(&md5s)),
        chosen.len()
    );
    let sources: Vec<(Body, std::ops::Range<u64>)> = chosen
        .iter()
        .map(|p| (Body::File(p.file.clone()), 0..p.size))
        .collect();
    let part_count = chosen.len();
    let composite_of = |pick: fn(&Checksums) -> &Option<String>, algorithm| {
        let values: Vec<Option<String>> =
            chosen.iter().map(|p| pick(&p.checksums).clone()).collect();
        composite(&values, algorithm)
    };
    let checksums = Checksums {
        crc32: composite_of(|c| &c.crc32, "CRC32"),
        crc32c: composite_of(|c| &c.crc32c, "CRC32C"),
        sha1: composite_of(|c| &c.sha1, "SHA1"),
        sha256: composite_of(|c| &c.sha256, "SHA256"),
        crc64nvme: None,
    };
    let assembled = store.concatenate(sources).await?;
    store.crash_point("object_complete:assembled");
    let mut meta = meta;
    meta.parts = Some(u32::try_from(part_count).unwrap_or(u32::MAX));
    meta.checksums = checksums.clone();
    let record = ObjectRecord {
        key: input.key.clone(),
        size: assembled.1,
        etag: etag.clone(),
        modified_ms: now_ms(),
        meta,
        body: Body::File(assembled.0.clone()),
    };
    let (bucket, upload) = (input.bucket.clone(), input.upload_id.clone());
    let key = input.key.clone();
    let result = store
        .inner
        .index
        .write(move |conn| {
            index::uploads::upload_of(index::uploads::read(conn, &upload)?, &bucket, &key)?;
            let parts: Vec<String> = index::uploads::parts(conn, &upload)?
                .into_iter()
                .map(|p| p.file)
                .collect();
            let old = index::objects::write(conn, &bucket, &record)?;
            index::uploads::remove(conn, &upload)?;
            Ok(parts.into_iter().chain(old).collect::<Vec<_>>())
        })
        .await;
    match result {
        Ok(files) => {
            store.crash_point("object_complete:recorded");
            store.remove_files(files).await;
        }
        Err(err) => {
            store.remove_files(vec![assembled.0]).await;
            return Err(err.into());
        }
    }
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        e_tag: Some(ETag::Strong(etag)),
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        ..Default::default()
    }))
}

pub(super) async fn abort_multipart_upload(
    store: &ObjectStore,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    let (bucket, key, upload) = (input.bucket, input.key, input.upload_id);
    let files = store
        .inner
        .index
        .write(move |conn| {
            index::uploads::upload_of(index::uploads::read(conn, &upload)?, &bucket, &key)?;
            let files: Vec<String> = index::uploads::parts(conn, &upload)?
                .into_iter()
                .map(|p| p.file)
                .collect();
            index::uploads::remove(conn, &upload)?;
            Ok(files)
        })
        .await?;
    store.remove_files(files).await;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub(super) async fn list_parts(
    store: &ObjectStore,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    let max = usize::try_from(input.max_parts.unwrap_or(1000).clamp(0, 1000)).unwrap_or(1000);
    let marker = input.part_number_marker.unwrap_or(0);
    let (bucket, key, upload) = (
        input.bucket.clone(),
        input.key.clone(),
        input.upload_id.clone(),
    );
    let parts = store
        .inner
        .index
        .read_async(move |conn| {
            index::uploads::upload_of(index::uploads::read(conn, &upload)?, &bucket, &key)?;
            index::uploads::parts(conn, &upload)
        })
        .await?;
    let after: Vec<&PartRow> = parts.iter().filter(|p| p.number > marker).collect();
    let truncated = after.len() > max;
    let page: Vec<&PartRow> = after.into_iter().take(max).collect();
    let next = truncated.then(|| page.last().map(|p| p.number)).flatten();
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: next,
        max_parts: Some(i32::try_from(max).unwrap_or(1000)),
        is_truncated: Some(truncated),
        parts: Some(
            page.into_iter()
                .map(|p| Part {
                    part_number: Some(p.number),
                    size: Some(i64::try_from(p.size).unwrap_or(i64::MAX)),
                    e_tag: Some(ETag::Strong(p.etag.clone())),
                    last_modified: Some(timestamp(p.modified_ms)),
                    checksum_crc32: p.checksums.crc32.clone(),
                    checksum_crc32c: p.checksums.crc32c.clone(),
                    checksum_sha1: p.checksums.sha1.clone(),
                    checksum_sha256: p.checksums.sha256.clone(),
                    checksum_crc64nvme: p.checksums.crc64nvme.clone(),
                })
                .collect(),
        ),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        ..Default::default()
    }))
}

pub(super) async fn list_multipart_uploads(
    store: &ObjectStore,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    let max = usize::try_from(input.max_uploads.unwrap_or(1000).clamp(0, 1000)).unwrap_or(1000);
    let (bucket, prefix) = (
        input.bucket.clone(),
        input.prefix.clone().unwrap_or_default(),
    );
    let key_marker = input.key_marker.clone().unwrap_or_default();
    let id_marker = input.upload_id_marker.clone().unwrap_or_default();
    let rows = store
        .inner
        .index
        .read_async(move |conn| {
            index::uploads::list(conn, &bucket, &prefix, &key_marker, &id_marker, max)
        })
        .await?;
    let truncated = rows.len() > max;
    let page: Vec<_> = rows.into_iter().take(max).collect();
    let last = if truncated {
        page.last().cloned()
    } else {
        None
    };
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(i32::try_from(max).unwrap_or(1000)),
        is_truncated: Some(truncated),
        next_key_marker: last.as_ref().map(|l| l.0.clone()),
        next_upload_id_marker: last.map(|l| l.1),
        uploads: Some(
            page.into_iter()
                .map(|(key, id, initiated)| MultipartUpload {
                    key: Some(key),
                    upload_id: Some(id),
                    initiated: Some(timestamp(initiated)),
                    storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }))
}

impl ObjectStore {
    async fn check_upload(&self, bucket: &str, key: &str, upload: &str) -> S3Result<()> {
        let (bucket, key, upload) = (bucket.to_string(), key.to_string(), upload.to_string());
        self.inner
            .index
            .read_async(move |conn| {
                if !index::buckets::exists(conn, &bucket)? {
                    return Err(s3_error!(NoSuchBucket).into());
                }
                index::uploads::upload_of(index::uploads::read(conn, &upload)?, &bucket, &key)
                    .map(|_| ())
            })
            .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit_part(
        &self,
        bucket: &str,
        key: &str,
        upload: &str,
        number: i32,
        received: &Received,
        etag: &str,
        checksums: &Checksums,
    ) -> S3Result<()> {
        let Body::File(file) = received.body.clone() else {
            return Err(s3_error!(
                InternalError,
                "part body was not written to a file"
            ));
        };
        let (bucket, key, upload, etag) = (
            bucket.to_string(),
            key.to_string(),
            upload.to_string(),
            etag.to_string(),
        );
        let size = i64::try_from(received.size).unwrap_or(i64::MAX);
        let sums = serde_json::to_string(checksums).map_err(Error::from)?;
        let part_file = file.clone();
        self.crash_point("object_part:body_durable");
        let result = self
            .inner
            .index
            .write(move |conn| {
                index::uploads::upload_of(index::uploads::read(conn, &upload)?, &bucket, &key)?;
                index::uploads::put_part(
                    conn,
                    &upload,
                    number,
                    size,
                    &etag,
                    now_ms(),
                    &sums,
                    &part_file,
                )
            })
            .await;
        match result {
            Ok(old) => {
                self.remove_files(old.into_iter().collect()).await;
                Ok(())
            }
            Err(err) => {
                self.remove_files(vec![file]).await;
                Err(err.into())
            }
        }
    }
}
